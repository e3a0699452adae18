#!/bin/sh
# The idle-connection part of make bench: resident memory per idle connection of each echo server
# at ECHO_IDLE_CONNS (10000) connections, each of which was served one 64-byte round trip
# (bench/echo-idle.py). Every server is started here on a free loopback port and stopped here.
#   usage: bench/echo-idle.sh BUILD_DIR
set -e
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
load="$build/bench/echo-load"
n=${ECHO_IDLE_CONNS:-10000}
[ -x "$load" ] || { echo "echo-idle.sh: $load is not built (make)"; exit 1; }
# Server and client each hold n descriptors.
ulimit -n "$(ulimit -H -n)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((n + 100)) ]; then
  echo "echo-idle.sh: needs $((n + 100)) descriptors, the limit is $(ulimit -n); skipped"
  exit 0
fi
echo
echo "echo: resident bytes per idle connection, $n connections each served once (target uvchan <= 8192)"
for server in "uvchan $build/examples/echo_server" "libuv $build/bench/libuv-echo" \
  "stream $build/examples/stream_echo"; do
  name=${server%% *}
  cmd=${server#* }
  port=$("$load" -F < /dev/null)
  $cmd "$port" > /dev/null 2>&1 &
  pid=$!
  "$load" -W -p "$port" < /dev/null 2>/dev/null
  line=$(python3 "$here/echo-idle.py" "$n" "$port" "$pid") || line="failed"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  printf '%-8s %s\n' "$name" "$line"
done
