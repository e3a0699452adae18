#!/bin/sh
# make bench: uvchan's workloads and the Go peer's, run alternately three times on this machine;
# prints the median of each and the ratio uvchan / Go; then the echo servers (bench/echo.sh).
#   usage: bench/run.sh BUILD_DIR
set -e
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export GOCACHE="$PWD/$build/gocache" GOFLAGS=-mod=mod GOTOOLCHAIN=local
(cd "$here/peers/go" && go build -o "$OLDPWD/$build/bench/go-peer" .)
c="$build/bench/uvchan-bench"
g="$build/bench/go-peer"
# Go runs on one thread (GOMAXPROCS=1), as uvchan's loop does, except for the thread workloads,
# whose uvchan side is two loops on two threads.
gorun() { # workload
  case "$1" in
    thread_*) GOMAXPROCS=2 "$g" -w "$1" ;;
    *) GOMAXPROCS=1 "$g" -w "$1" ;;
  esac
}
for run in 1 2 3; do
  for w in pingpong buffered pipeline select sieve parked spawn thread_pingpong thread_buffered; do
    "$c" -w "$w" >> "$out/c.txt"
    gorun "$w" >> "$out/go.txt"
  done
  for w in pingpong_cb buffered_cb parked_cb scale stage1_cb relay1_cb stage4_cb relay4_cb \
    thread_floor; do
    "$c" -w $w >> "$out/c.txt"
  done
done
# median of a field (3 unless given) per workload name (field 1); scale lines are keyed by their
# waiting count
median() { # file key [field]
  awk -v k="$2" -v f="${3:-3}" '{key=$1; if ($1=="scale") {w=$5; gsub(/[(]/, "", w); key="scale_" w}} key==k {v=$f; gsub(/,/, "", v); print v}' "$1" | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}
printf '%-14s %12s %12s %8s %8s\n' workload uvchan go ratio target
row() { # key go-key unit target [field [label]]
  cv=$(median "$out/c.txt" "$1" "$5"); gv=$(median "$out/go.txt" "$2" "$5")
  if [ -n "$gv" ] && [ -n "$cv" ]; then r=$(awk -v a="$cv" -v b="$gv" 'BEGIN {printf "%.3f", a/b}'); else r=-; fi
  [ -n "$cv" ] || cv=-
  [ -n "$gv" ] || gv=-
  printf '%-14s %12s %12s %8s %8s  %s\n' "${6:-$1}" "$cv" "$gv" "$r" "$4" "$3"
}
row pingpong pingpong ns/roundtrip 0.25
row buffered1024 buffered1024 ns/item 0.25
row pipeline4 pipeline4 ns/item/stage 0.25
row select4 select4 ns/op 0.35
row sieve sieve ms 0.35
row parked parked "bytes/task (uvchan: resident; Go: Sys)" "4.5KB"
row parked parked "ns/task spawn+park, 100k tasks" 1 7 parked_spawn
row parked - "page faults/task (spawn+park; pages faulted in)" 1 12 parked_faults
row parked - "of which taken as traps (perf)" - 17 parked_traps
row parked - "page-table bytes/task" - 14 parked_ptes
row spawn spawn "ns/task spawned, run, ended (waves of 10k)" -
row pingpong_cb pingpong "ns/roundtrip (vs Go pingpong)" 0.15
row buffered_cb buffered1024 "ns/item (vs Go buffered)" -
row parked_cb - bytes/request "128B"
for k in 1 1000 100000 1000000; do row "scale_$k" - "ns/op with $k requests waiting" flat; done
row stage1_cb - "ns/item, 1 callback stage (uvchan_stage_t)" -
row relay1_cb - "ns/item, 1 hand-written callback relay (its peer)" -
row stage4_cb - "ns/item, 4 callback stages" -
row relay4_cb - "ns/item, 4 hand-written callback relays" -
row thread_pingpong thread_pingpong "ns/roundtrip, two threads (Go: GOMAXPROCS=2)" 0.5
row thread_buffered thread_buffered "ns/item, two threads (Go: GOMAXPROCS=2)" 0.5
row thread_floor - "ns/roundtrip, two bare threads on two cache lines: this machine's floor" -
if [ -x "$build/bench/echo-load" ] && [ -x "$build/bench/libuv-echo" ]; then
  sh "$here/echo.sh" "$build"
  # A server on every core: echo_server -j N (N loops on N threads, SO_REUSEPORT). On a small
  # machine the load generator takes a core too, so read the rates beside the server's CPU
  # seconds: round trips per server CPU-second is what must stay flat as N grows.
  echo
  echo "echo_server -j N (loops on threads):"
  ECHO_NOREAD=0 sh "$here/echo.sh" "$build" \
    "j1 $build/examples/echo_server -j 1 PORT" \
    "j2 $build/examples/echo_server -j 2 PORT" \
    "j4 $build/examples/echo_server -j 4 PORT"
fi
# The NATS module's workloads, when it was built (libnats found).
if [ -x "$build/bench/nats-bench" ]; then
  echo
  sh "$here/nats/run.sh" "$build"
fi
if [ -x "$build/bench/chat-load" ] && [ -x "$build/examples/chat_server" ]; then
  echo
  echo "chat_server: 20 chatting clients beside a client that never reads and/or a flooder"
  sh "$here/chat.sh" "$build"
fi
