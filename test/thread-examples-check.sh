#!/bin/sh
# Runs the thread examples to completion and checks their result lines:
#   thread_producer  1000 readings summing to 499500 from a plain thread, through backpressure;
#   thread_pingpong  100000 round trips between two loops on two threads, last value 100000;
#   work_map         Collatz stopping times of 1..100000 on the threadpool, in order: the ten
#                    progress lines, longest 350 steps at 77031, total 10753840, and 837799's 524
#                    steps from uvchan_task_work (values computed independently, in python3).
# Each must exit 0 within its deadline (generous: the ping-pong takes 1-3 s on an idle 2-core
# machine, 25 s seen with five make test runs beside it).   usage: thread-examples-check.sh EXAMPLES_DIR
ex=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)
times=""

fail() {
  echo "thread-examples: FAILED: $*"
  exit 1
}

# run NAME SECONDS: runs the example with a deadline; its output lands in $tmp/NAME.
run() {
  s=$(date +%s%N)
  timeout -k 2 "$2" "$ex/$1" > "$tmp/$1" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - s) / 1000000))
  times="$times $1 $((ms / 1000)).$((ms % 1000 / 100)) s,"
  [ $rc -eq 124 ] && fail "$1 did not finish within $2 s: $(cat "$tmp/$1")"
  [ $rc -eq 0 ] || fail "$1 exited with $rc: $(cat "$tmp/$1")"
}

# has NAME LINE: the output of NAME has LINE as a whole line.
has() {
  grep -qxF -- "$2" "$tmp/$1" || fail "$1: no line '$2' in: $(cat "$tmp/$1")"
}

run thread_producer 20
grep -qx 'Result: 1000 readings, sum 499500 (producer waited for room [0-9]* times)' \
  "$tmp/thread_producer" || fail "thread_producer: wrong result: $(cat "$tmp/thread_producer")"

run thread_pingpong 90
grep -qx 'Result: 100000 round trips between two threads, last value 100000 ([0-9]* ns per round trip)' \
  "$tmp/thread_pingpong" || fail "thread_pingpong: wrong result: $(cat "$tmp/thread_pingpong")"

run work_map 30
has work_map 'Result: 100000 results in order, longest 350 steps at 77031, total 10753840'
has work_map 'Result: 837799 takes 524 steps (uvchan_task_work)'
grep -v '^Result: ' "$tmp/work_map" > "$tmp/progress"
printf '  %6d: %d steps\n' 10000 29 20000 30 30000 178 40000 31 50000 127 60000 179 70000 81 \
  80000 32 90000 164 100000 128 > "$tmp/progress.ref"
cmp -s "$tmp/progress" "$tmp/progress.ref" ||
  fail "work_map: progress lines differ: $(cat "$tmp/work_map")"

echo "thread-examples: ok (${times# }) in $(($(date +%s) - t0)) s" | sed 's/, *)/)/'
