#!/bin/sh
# The nats_workers example as its README runs it: a nats-server of its own (JetStream, a temporary
# store, a random loopback port), two worker processes, a producer with JOBS jobs. Passes when the
# producer exits 0 with its checksum line saying OK and results from both workers, and when both
# workers exit 0 after SIGINT. Every process runs under timeout(1), which passes a signal on to it
# and kills it when its time is up (status 137); --foreground, or timeout would also signal its
# process group, and a second SIGINT finds the worker's handler already closed (status 130).
# Whatever is left is stopped on the way out.
#   usage: nats-workers.sh NATS_WORKERS NATS_SERVER [JOBS]      (JOBS: 20000 by default)
set -u
bin=$1
server=$2
jobs=${3:-20000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/uvchan-nats-workers.XXXXXX") || exit 1
spid=""
w1=""
w2=""

# SIGTERM, passed on by timeout(1): a graceful stop (a SIGKILL would kill timeout, not the program).
cleanup() {
  for p in $w1 $w2 $spid; do
    kill -TERM "$p" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "nats-workers: FAIL: $*"
  for f in "$dir"/*.log; do
    echo "==== $f"
    cat "$f"
  done
  exit 1
}

# wait_line FILE PATTERN: until a line of FILE matches (5 s at most).
wait_line() {
  i=0
  while ! grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    [ $i -le 100 ] || return 1
    sleep 0.05
  done
}

timeout --foreground -s KILL 25 "$server" -a 127.0.0.1 -p -1 -js -sd "$dir/js" > "$dir/server.log" 2>&1 &
spid=$!
wait_line "$dir/server.log" "Listening for client connections on" || fail "nats-server did not start"
port=$(sed -n 's/.*Listening for client connections on [0-9.]*:\([0-9]*\).*/\1/p' "$dir/server.log")
[ -n "$port" ] || fail "no port in the server's log"
url="nats://127.0.0.1:$port"

timeout --foreground -s KILL 20 "$bin" worker "$url" > "$dir/worker1.log" 2>&1 &
w1=$!
timeout --foreground -s KILL 20 "$bin" worker "$url" > "$dir/worker2.log" 2>&1 &
w2=$!
# A worker prints this line once its queue subscription is made (a job published before the
# server has it would only be sent again, 2 s later, by the producer).
wait_line "$dir/worker1.log" "waiting for jobs" || fail "worker 1 did not start"
wait_line "$dir/worker2.log" "waiting for jobs" || fail "worker 2 did not start"

timeout --foreground -s KILL 15 "$bin" producer "$url" "$jobs" > "$dir/producer.log" 2>&1
st=$?
[ $st -eq 0 ] || fail "the producer exited with status $st"
grep -q "^checksum [0-9a-f]* (expected [0-9a-f]*): OK$" "$dir/producer.log" ||
  fail "no checksum OK line"
grep -q "^producer: $jobs results from 2 workers" "$dir/producer.log" ||
  fail "not $jobs results from both workers"

# Ctrl-C: each worker's context shuts down, the connection closes, the program exits 0.
kill -INT "$w1" "$w2"
wait "$w1"
st=$?
[ $st -eq 0 ] || fail "worker 1 exited with status $st after SIGINT"
w1=""
wait "$w2"
st=$?
[ $st -eq 0 ] || fail "worker 2 exited with status $st after SIGINT"
w2=""
done1=$(sed -n 's/^worker [0-9]*: \([0-9]*\) jobs done$/\1/p' "$dir/worker1.log")
done2=$(sed -n 's/^worker [0-9]*: \([0-9]*\) jobs done$/\1/p' "$dir/worker2.log")
[ -n "$done1" ] && [ -n "$done2" ] || fail "a worker did not report its jobs"
# Jobs sent again (a late result) are computed twice: at least JOBS in all.
[ $((done1 + done2)) -ge "$jobs" ] || fail "the workers did $done1 + $done2 jobs, fewer than $jobs"

kill -TERM "$spid"
wait "$spid"
spid=""
sed -n 's/^\(producer: .*\)$/\1/p; s/^\(checksum .*\)$/\1/p' "$dir/producer.log"
echo "workers: $done1 + $done2 jobs done, both exited 0 after SIGINT"
