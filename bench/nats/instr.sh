#!/bin/sh
# Instructions per message on the receiving side (callgrind, every thread of the receiving
# process: the client's reader and delivery threads, the loop, the task), at N and 2N messages;
# the difference divided by N cancels start-up and teardown. The publisher (and the stream's
# filler) is another process, not counted.
#   usage: bench/nats/instr.sh BUILD_DIR [WORKLOADS] [N]   (default: core_cb,core_task,js_cb,js_task)
set -e
build=${1:-build}
workloads=${2:-core_cb core_task js_cb js_task}
n=${3:-20000}
bin="$build/bench/nats-bench"
server=$(command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server)
dir=$(mktemp -d)
"$server" -a 127.0.0.1 -p -1 -js -sd "$dir/js" > "$dir/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM
for i in $(seq 1 100); do
  port=$(sed -n 's/.*Listening for client connections on [0-9.]*:\([0-9]*\).*/\1/p' "$dir/server.log")
  [ -n "$port" ] && break
  sleep 0.05
done
ir() { # workload n
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" "nats://127.0.0.1:$port" \
    -n "$2" -r 1 -w "$1" > /dev/null 2> "$dir/cg.log"
  sed -n 's/^summary: *//p' "$dir/cg.out"
}
for w in $workloads; do
  a=$(ir "$w" "$n"); b=$(ir "$w" $((2 * n)))
  echo "$w $(( (b - a) / n )) instructions/message"
done
