#!/bin/sh
# Instructions per operation (per round trip, item, item through all stages, select: the unit
# each workload reports), counted by callgrind as the difference between a run of N and one
# of 2N operations, so start-up and teardown cancel out. Repeatable to the instruction, unlike
# wall time on a shared machine.   usage: bench/instr.sh BUILD_DIR [WORKLOAD N]...
set -e
build=${1:-build}
shift || true
[ $# -gt 0 ] || set -- pingpong_cb 100000 pingpong 100000 buffered_cb 100000 buffered 100000 \
  pipeline 100000 select 100000 stage1_cb 100000 relay1_cb 100000 stage4_cb 50000 relay4_cb 50000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# prints "<instructions> <operations>", the operations being the count the workload reports
refs() { # workload n
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" --log-file="$out/log" \
    "$build/bench/uvchan-bench" -w "$1" -n "$2" > "$out/line"
  i=$(awk '/I *refs:/ {gsub(/,/, "", $NF); print $NF}' "$out/log")
  echo "$i $(awk '{print $2}' "$out/line")"
}
printf '%-14s %10s\n' workload instr/op
while [ $# -ge 2 ]; do
  a=$(refs "$1" "$2"); b=$(refs "$1" $(($2 * 2)))
  printf '%-14s %10.1f\n' "$1" "$(echo "$a $b" | awk '{print ($3 - $1) / ($4 - $2)}')"
  shift 2
done
