#!/bin/sh
# Server-side cost per echo round trip, counted rather than timed (repeatable on a shared
# machine): user-space instructions (callgrind, counters zeroed after a warm-up) and minor page
# faults (natively, /proc/PID/stat, over N round
# trips after a warm-up), for uvchan's echo_server and the plain libuv server.
#   usage: bench/echo-instr.sh BUILD_DIR   (ECHO_INSTR_N round trips, default 20000)
set -e
build=${1:-build}
load="$build/bench/echo-load"
n=${ECHO_INSTR_N:-20000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# instructions of the server per round trip of shape C x S, in the steady state: after a
# warm-up of COUNT round trips the counters are zeroed (callgrind_control -z), COUNT more are
# run, and the counters dumped (callgrind_control -d)
instr() { # cmd c s count
  port=$("$load" -F < /dev/null)
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" --log-file="$out/log" $1 "$port" \
    > /dev/null 2>&1 &
  pid=$!
  "$load" -W -p "$port" < /dev/null 2>/dev/null
  "$load" -p "$port" -c "$2" -s "$3" -n "$4" -w 0 < /dev/null > /dev/null
  callgrind_control -z "$pid" > /dev/null
  "$load" -p "$port" -c "$2" -s "$3" -n "$4" -w 0 < /dev/null > /dev/null
  callgrind_control -d "$pid" > /dev/null
  stop "$pid"
  # the dump made by -d (numbered .1); "summary:" holds its instruction total
  awk '/^summary:/ {print $2}' "$out/cg.$pid.1"
  rm -f "$out"/cg.*
}

minflt() { awk '{sub(/.*\) /, ""); print $8}' "/proc/$1/stat"; }

faults() { # cmd c s count -> minor faults per 1000 round trips after a warm-up
  port=$("$load" -F < /dev/null)
  $1 "$port" > /dev/null 2>&1 &
  pid=$!
  "$load" -W -p "$port" < /dev/null 2>/dev/null
  "$load" -p "$port" -c "$2" -s "$3" -n "$4" -w 0 < /dev/null > /dev/null
  f0=$(minflt "$pid")
  "$load" -p "$port" -c "$2" -s "$3" -n "$4" -w 0 < /dev/null > /dev/null
  f1=$(minflt "$pid")
  stop "$pid"
  awk -v a="$f0" -v b="$f1" -v n="$4" 'BEGIN {printf "%.2f", (b - a) * 1000 / n}'
}

printf '%-8s %-10s %14s %18s\n' server shape "instr/rt" "faults/1000 rt"
for server in "uvchan $build/examples/echo_server" "libuv $build/bench/libuv-echo" \
  "stream $build/examples/stream_echo"; do
  name=${server%% *}
  cmd=${server#* }
  for shape in 64:64:64x64B 1:65536:1x64KB 1000:64:1000x64B; do
    c=${shape%%:*}; rest=${shape#*:}; s=${rest%%:*}; label=${rest#*:}
    m=$n
    [ "$s" -gt 1024 ] && m=$((n / 4))
    i=$(instr "$cmd" "$c" "$s" "$m")
    f=$(faults "$cmd" "$c" "$s" "$m")
    printf '%-8s %-10s %14.0f %18s\n' "$name" "$label" "$(awk -v a="$i" -v n="$m" 'BEGIN {print a / n}')" "$f"
  done
done
