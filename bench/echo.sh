#!/bin/sh
# The echo section of make bench: echo servers under the same load, side by side.
#   usage: bench/echo.sh BUILD_DIR ["NAME COMMAND... PORT ..."]...
# Each server listens on 127.0.0.1; the word PORT in its command line is replaced by a free port.
# Without server arguments the list below is used. For every shape (connections x message size),
# each server gets one run of build/bench/echo-load in turn, and the whole round is repeated
# ECHO_REPS times (3), so drift on a shared machine hits every server alike; the table shows
# medians. Then each server, started afresh, gets one client that sends 512 MB and never reads,
# and its growth in resident size is reported. Every server started here is stopped here.
# Knobs: ECHO_SECS (measured seconds per run, 2), ECHO_WARMUP (0.5), ECHO_REPS (3),
# ECHO_NOREAD (bytes for the non-reading client, 512M; 0 skips it).
set -e
build=${1:-build}
[ $# -gt 0 ] && shift
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
here=$(cd "$(dirname "$0")" && pwd)
load="$build/bench/echo-load"
secs=${ECHO_SECS:-2}
warm=${ECHO_WARMUP:-0.5}
reps=${ECHO_REPS:-3}
noread=${ECHO_NOREAD:-512M}

# One server per line: a name, then its command line. Add a server with one more line.
servers="
uvchan  $build/examples/echo_server PORT
libuv   $build/bench/libuv-echo PORT
go      env GOMAXPROCS=1 $build/bench/go-echo PORT
stream  $build/examples/stream_echo PORT
"
if [ $# -gt 0 ]; then
  servers=$(for s in "$@"; do echo "$s"; done)
fi
# connections, message bytes, label
shapes="64:64:64x64B 1:65536:1x64KB 1000:64:1000x64B"

[ -x "$load" ] || { echo "echo.sh: $load is not built (make)"; exit 1; }
if echo "$servers" | grep -q go-echo; then
  (cd "$here/peers/go" && GOCACHE=${GOCACHE:-$build/gocache} GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    go build -o "$build/bench/go-echo" ./echo)
fi
# 1000 connections need more descriptors than the usual soft limit, in the servers too.
# shellcheck disable=SC3045 # not POSIX, but dash and bash have both
ulimit -n "$(ulimit -H -n)" 2>/dev/null || true

out=$(mktemp -d)
pids=""
state() { # pid: its state letter (R, S, D, Z...), empty once it is gone
  sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null || true
}
alive() { # pid: running (kill -0 also succeeds on a zombie, which has exited)
  st=$(state "$1")
  [ -n "$st" ] && [ "$st" != Z ]
}
stop_server() { # pid: SIGTERM, then SIGKILL if it has not ended within 10 s; then reaped
  kill "$1" 2>/dev/null || true
  i=0
  while alive "$1" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  if alive "$1"; then
    echo "echo.sh: server $1 (state $(state "$1")) still running 10 s after SIGTERM; killed" >&2
    kill -9 "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
  pids=$(for p in $pids; do [ "$p" = "$1" ] || echo "$p"; done)
}
cleanup() {
  for p in $pids; do stop_server "$p"; done
  rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Whether process $1 holds the socket listening on 127.0.0.1:$2 (and not some other process
# that took the port between echo-load -F and the server's bind).
owns_port() {
  inode=$(awk -v p="$(printf '0100007F:%04X' "$2")" '$2 == p && $4 == "0A" {print $10; exit}' /proc/net/tcp)
  [ -n "$inode" ] || return 1
  for fd in "/proc/$1/fd"/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ] && return 0
  done
  return 1
}

# start NAME CMDLINE: starts the server on a free port; sets $pid and $port.
start() {
  for _ in 1 2 3; do
    port=$("$load" -F < /dev/null)
    cmd=$(echo "$2" | sed "s/\<PORT\>/$port/g")
    sh -c "exec $cmd" < /dev/null >> "$out/$1.log" 2>&1 &
    pid=$!
    if "$load" -W -p "$port" < /dev/null 2>/dev/null && owns_port "$pid" "$port"; then
      pids="$pids $pid"
      return 0
    fi
    stop_server "$pid"
  done
  echo "echo.sh: server $1 ($2) did not start:" >&2
  cat "$out/$1.log" >&2
  exit 1
}

cpu_ticks() { # pid -> utime + stime of all its threads, in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

names=$(echo "$servers" | awk 'NF {print $1}')
echo "$servers" | awk 'NF' > "$out/servers"
while read -r name cmd; do
  start "$name" "$cmd"
  echo "$pid $port" > "$out/$name.proc"
  cpu_ticks "$pid" > "$out/$name.cpu0"
done < "$out/servers"

# CPU time of this shell's reaped children (the load runs), in seconds, into $children_s.
# `times` must run in this shell itself: a subshell ($(...), a pipeline) has no children.
children_cpu() {
  times > "$out/times"
  children_s=$(tail -n 1 "$out/times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }')
}
busy_ticks() { # user + nice + system of every CPU, from /proc/stat
  awk '$1 == "cpu" {print $2 + $3 + $4}' /proc/stat
}
busy0=$(busy_ticks)
children_cpu
load0=$children_s
wall0=$(date +%s.%N)

# The load: shape by shape, server by server, ECHO_REPS rounds.
for rep in $(seq "$reps"); do
  for shape in $shapes; do
    c=${shape%%:*}; rest=${shape#*:}; s=${rest%%:*}; label=${rest#*:}
    for name in $names; do
      read -r pid port < "$out/$name.proc"
      if ! line=$("$load" -p "$port" -c "$c" -s "$s" -d "$secs" -w "$warm" -P "$pid"); then
        echo "echo.sh: $name failed under $label (run $rep)" >&2
        exit 1
      fi
      echo "$name $label $line" >> "$out/runs"
    done
  done
done
hz=$(getconf CLK_TCK)
busy1=$(busy_ticks)
children_cpu
load1=$children_s
wall1=$(date +%s.%N)
servers_ticks=0
for name in $names; do
  read -r pid port < "$out/$name.proc"
  echo $(( $(cpu_ticks "$pid") - $(cat "$out/$name.cpu0") )) > "$out/$name.cpu"
  servers_ticks=$((servers_ticks + $(cat "$out/$name.cpu")))
done
for name in $names; do
  read -r pid port < "$out/$name.proc"
  stop_server "$pid"
done

# The non-reading client, each server started afresh.
if [ "$noread" != 0 ]; then
  while read -r name cmd; do
    start "$name" "$cmd"
    if ! line=$("$load" -p "$port" -c 0 -x "$noread" -P "$pid" < /dev/null); then
      echo "echo.sh: $name failed with a non-reading client" >&2
      exit 1
    fi
    echo "$name noread $line" >> "$out/runs"
    stop_server "$pid"
  done < "$out/servers"
fi

cp "$out/runs" "$build/bench/echo-runs.txt"

# median over NAME LABEL's runs of a field: "value" (round trips/s), a key of the details, or
# per_cpu (round trips per second of server CPU time) or cpu_share (server CPU s per second)
median() { # name label field
  awk -v n="$1" -v l="$2" -v f="$3" '$1 == n && $2 == l {
      if (f == "value") { print $5; next }
      split("", v)
      for (i = 7; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      if (f == "per_cpu") print $4 / v["server_cpu_s"]
      else if (f == "cpu_share") print v["server_cpu_s"] / v["secs"]
      else if (f in v) print v[f] }' "$out/runs" |
    sort -g | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}'
}
first=$(echo "$names" | head -n 1)
others=$(echo "$names" | tail -n +2)

# one table row: a label, each server's median of FIELD, and (for a rate) first / each other
row() { # shape-label field format label ratio?
  printf '%-22s' "$4"
  for name in $names; do printf " %12$3" "$(median "$name" "$1" "$2")"; done
  if [ "$5" = ratio ]; then
    for name in $others; do
      printf ' %10.3f' "$(awk -v a="$(median "$first" "$1" "$2")" -v b="$(median "$name" "$1" "$2")" 'BEGIN {print a / b}')"
    done
  fi
  echo
}
echo
echo "echo: medians of $reps interleaved runs of ${secs}s each (every run: $build/bench/echo-runs.txt)"
printf '%-22s' ""
for name in $names; do printf ' %12s' "$name"; done
for name in $others; do printf ' %10s' "$first/$name"; done
echo
for shape in $shapes; do
  label=${shape##*:}
  row "$label" value .0f "$label round trips/s" ratio
  row "$label" per_cpu .0f "  per server CPU s" ratio
  row "$label" p50_us .1f "  p50 latency us"
  row "$label" p99_us .1f "  p99 latency us"
  row "$label" cpu_share .2f "  server CPUs used"
done
printf '%-22s' "server CPU s in all"
for name in $names; do printf ' %12.1f' "$(awk -v t="$(cat "$out/$name.cpu")" -v hz="$hz" 'BEGIN {print t / hz}')"; done
echo
# What else ran on the machine meanwhile (other users of a shared machine): busy CPU time
# not spent by the servers or echo-load. Loopback TCP work done in softirq is not in it.
awk -v b="$((busy1 - busy0))" -v hz="$hz" -v s="$servers_ticks" -v l="$(awk -v a="$load0" -v b="$load1" 'BEGIN {print b - a}')" \
  -v w="$(awk -v a="$wall0" -v b="$wall1" 'BEGIN {print b - a}')" -v n="$(nproc)" 'BEGIN {
  printf "load runs: %.0f s wall on %d CPUs; CPU s: servers %.1f, echo-load %.1f, other processes %.1f\n",
    w, n, s / hz, l, b / hz - s / hz - l }'
printf '%-22s' "RSS MB, 1000 conns"
for name in $names; do printf ' %12.1f' "$(median "$name" 1000x64B rss_after_kb | awk '{print $1 / 1024}')"; done
echo
awk '$2 != "noread" { n++; for (i = 7; i <= NF; i++) { split($i, kv, "=");
    if (kv[1] == "secs") t = kv[2]; if (kv[1] == "other_cpu_s") o = kv[2] }
    if (o > 0.25 * t) d++ }
  END { printf "disturbed: %d of %d runs had other work using over a quarter of a CPU meanwhile (other_cpu_s)\n", d, n }' "$out/runs"
if [ "$noread" != 0 ]; then
  printf '%-22s' "growth MB, no reader"
  for name in $names; do printf ' %12.1f' "$(median "$name" noread value)"; done
  echo "   one client sends $noread without reading:"
  for name in $names; do
    awk -v n="$name" '$1 == n && $2 == "noread" {
      for (i = 7; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "           %s: sent %s MB%s, resident %s -> %s kB\n", n, v["sent_mb"],
        v["stalled"] ? " (then stalled: the server stopped reading)" : "", v["rss_before_kb"], v["rss_peak_kb"] }' "$out/runs"
  done
fi
