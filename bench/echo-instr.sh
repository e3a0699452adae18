#!/bin/sh
# Server-side cost per echo round trip, counted rather than timed (repeatable on a shared
# machine): user-space instructions (callgrind, the difference between runs of N and 2N round
# trips, so start-up cancels out) and minor page faults (natively, /proc/PID/stat, over N round
# trips after a warm-up), for uvchan's echo_server and the plain libuv server.
#   usage: bench/echo-instr.sh BUILD_DIR   (ECHO_INSTR_N round trips, default 20000)
set -e
build=${1:-build}
load="$build/bench/echo-load"
n=${ECHO_INSTR_N:-20000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# instructions of the server for COUNT round trips of shape C x S (whole run)
instr() { # cmd c s count
  port=$("$load" -F < /dev/null)
  valgrind --tool=callgrind --callgrind-out-file="$out/cg" --log-file="$out/log" $1 "$port" \
    > /dev/null 2>&1 &
  pid=$!
  "$load" -W -p "$port" < /dev/null 2>/dev/null
  "$load" -p "$port" -c "$2" -s "$3" -n "$4" -w 0 < /dev/null > /dev/null
  stop "$pid"
  awk '/Collected/ {gsub(/,/, "", $NF); print $NF}' "$out/log"
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
for server in "uvchan $build/examples/echo_server" "libuv $build/bench/libuv-echo"; do
  name=${server%% *}
  cmd=${server#* }
  for shape in 64:64:64x64B 1:65536:1x64KB 1000:64:1000x64B; do
    c=${shape%%:*}; rest=${shape#*:}; s=${rest%%:*}; label=${rest#*:}
    m=$n
    [ "$s" -gt 1024 ] && m=$((n / 4))
    i1=$(instr "$cmd" "$c" "$s" "$m")
    i2=$(instr "$cmd" "$c" "$s" $((2 * m)))
    f=$(faults "$cmd" "$c" "$s" "$m")
    printf '%-8s %-10s %14.0f %18s\n' "$name" "$label" "$(awk -v a="$i1" -v b="$i2" -v n="$m" 'BEGIN {print (b - a) / n}')" "$f"
  done
done
