#!/bin/sh
# The chat section of make bench: examples/chat_server under build/bench/chat-load, for each
# slow-client policy: 20 chatting clients (20 lines/s each, 64 bytes) with a client that never
# reads, with a flooder, and with both. Each scenario starts a fresh server; the table gives the
# chatting clients' line latency (p50/p99/max, ms), lines lost (0 expected), chatting clients cut
# off (0 expected), whether the non-reader was cut off, what the flooder got through, and the
# server's growth in resident size (peak less the size once everyone was connected).
#   usage: bench/chat.sh BUILD_DIR     knobs: CHAT_SECS (10), CHAT_CLIENTS (20)
set -e
build=${1:-build}
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
secs=${CHAT_SECS:-10}
nclients=${CHAT_CLIENTS:-20}
server="$build/examples/chat_server"
load="$build/bench/chat-load"
eload="$build/bench/echo-load"
[ -x "$server" ] && [ -x "$load" ] || { echo "chat.sh: build first (make)"; exit 1; }
out=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { # line key
  echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

printf '%-11s %-16s %8s %8s %8s %5s %6s %6s %9s %9s\n' policy scenario p50_ms p99_ms max_ms lost cut_off noread_cut flood_MB growth_MB
for policy in disconnect drop; do
  for scen in "noread:-n" "flood:-f" "both:-f -n"; do
    name=${scen%%:*}
    args=${scen#*:}
    port=$("$eload" -F < /dev/null)
    "$server" "$port" -p "$policy" 2> "$out/server.log" &
    pid=$!
    "$eload" -W -p "$port" < /dev/null 2>/dev/null
    # shellcheck disable=SC2086 # args holds flags
    line=$("$load" -p "$port" -c "$nclients" -d "$secs" $args -P "$pid")
    echo "$policy $name $line" >> "$out/runs"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    printf '%-11s %-16s %8s %8s %8s %5s %6s %6s %9s %9s\n' "$policy" "$name" \
      "$(field "$line" p50_ms)" "$(field "$line" p99_ms)" "$(field "$line" max_ms)" \
      "$(field "$line" lost)" "$(field "$line" disconnected)" "$(field "$line" noread_cut)" \
      "$(field "$line" flood_mb)" "$(field "$line" growth_mb)"
  done
done
cp "$out/runs" "$build/bench/chat-runs.txt"
echo "(every run: $build/bench/chat-runs.txt; $nclients chatting clients, ${secs}s measured each)"
