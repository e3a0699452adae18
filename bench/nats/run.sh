#!/bin/sh
# The NATS module's part of `make bench`: a nats-server of its own (JetStream, a temporary store,
# a random loopback port), nats-bench run ROUNDS times with every workload interleaved, then the
# median of each and its ratio to the NATS C client's own subscriber (or publisher).
#   usage: bench/nats/run.sh BUILD_DIR      (ROUNDS=5 N=200000 by default)
set -e
build=${1:-build}
rounds=${ROUNDS:-5}
n=${N:-200000}
bin="$build/bench/nats-bench"
server=$(command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server)
[ -x "$bin" ] || { echo "nats-bench not built (the NATS module needs libnats-dev)"; exit 0; }
[ -x "$server" ] || { echo "nats-server not found: skipping the NATS benchmark"; exit 0; }
dir=$(mktemp -d)
"$server" -a 127.0.0.1 -p -1 -js -sd "$dir/js" > "$dir/server.log" 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM
port=""
for i in $(seq 1 100); do
  port=$(sed -n 's/.*Listening for client connections on [0-9.]*:\([0-9]*\).*/\1/p' "$dir/server.log")
  [ -n "$port" ] && break
  sleep 0.05
done
[ -n "$port" ] || { cat "$dir/server.log"; exit 1; }
echo "NATS: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $("$server" --version), libnats $(pkg-config --modversion libnats 2>/dev/null), $n messages of 16 bytes, $rounds rounds interleaved"
"$bin" "nats://127.0.0.1:$port" -n "$n" -r "$rounds" > "$dir/out.txt"
median() { # workload field
  awk -v w="$1" -v f="$2" '$1==w {print $f}' "$dir/out.txt" | sort -g |
    awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'
}
printf '%-13s %12s %8s %10s %10s   %s\n' workload "msgs/s" ratio "CPU ns/msg" "minflt" "peer"
row() { # workload peer
  v=$(median "$1" 3); p=$(median "$2" 3)
  r=$(awk -v a="$v" -v b="$p" 'BEGIN {printf "%.2f", b ? a/b : 0}')
  printf '%-13s %12s %8s %10s %10s   %s\n' "$1" "$v" "$r" "$(median "$1" 4)" "$(median "$1" 5)" "$2"
}
row core_cb core_cb
row core_task core_cb
row core_adapter core_cb
row js_cb js_cb
row js_fetch js_cb
row js_task js_cb
row jspub_async jspub_async
row jspub_task jspub_async
