#!/bin/sh
# Installs what building and testing uvchan needs on Debian/Ubuntu, if anything is missing.
# As root it runs apt-get; otherwise it prints the one command to run.
set -e
pkgs=""
command -v cmake >/dev/null 2>&1 || pkgs="$pkgs cmake"
command -v cc >/dev/null 2>&1 || pkgs="$pkgs gcc"
command -v make >/dev/null 2>&1 || pkgs="$pkgs make"
command -v pkg-config >/dev/null 2>&1 || pkgs="$pkgs pkg-config"
# The end-to-end checks of the examples (test/net-examples-check.py and the others).
command -v python3 >/dev/null 2>&1 || pkgs="$pkgs python3"
if command -v pkg-config >/dev/null 2>&1; then
  pkg-config --exists 'libuv >= 1.44' || pkgs="$pkgs libuv1-dev"
  pkg-config --exists cmocka || pkgs="$pkgs libcmocka-dev"
  # The optional NATS module (uvchan_nats) and its tests: the client library and a server.
  pkg-config --exists libnats || pkgs="$pkgs libnats-dev"
else
  pkgs="$pkgs libuv1-dev libcmocka-dev libnats-dev"
fi
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || pkgs="$pkgs nats-server"
for extra in "$@"; do
  case "$extra" in
    clang) command -v clang >/dev/null 2>&1 || pkgs="$pkgs clang" ;;
    fuzz) [ -n "$(find /usr/lib -name 'libclang_rt.fuzzer*.a' 2>/dev/null | head -n 1)" ] || pkgs="$pkgs clang libclang-rt-14-dev" ;;
    doxygen) command -v doxygen >/dev/null 2>&1 || pkgs="$pkgs doxygen" ;;
    go) command -v go >/dev/null 2>&1 || pkgs="$pkgs golang-go" ;;
    valgrind) command -v valgrind >/dev/null 2>&1 || pkgs="$pkgs valgrind" ;;
    aarch64) command -v qemu-aarch64 >/dev/null 2>&1 && command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 ||
      pkgs="$pkgs qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
  esac
done
[ -z "$pkgs" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "uvchan: installing$pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs
else
  echo "uvchan: missing build dependencies. Run:"
  echo "  sudo apt-get install$pkgs"
  exit 1
fi
