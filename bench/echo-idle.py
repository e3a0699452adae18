#!/usr/bin/env python3
"""Resident memory per idle connection of an echo server (part of make bench).

usage: echo-idle.py N PORT PID
Opens N connections to 127.0.0.1:PORT; each sends one 64-byte message and reads the echo, so that
the server has served it once (its task, buffers and socket state are real), then all stay open
and idle. Prints the server's resident size (VmRSS of PID) before and after, and the growth per
connection. The connections are closed at the end. Loopback only, bounded: N connections, one
round trip each.
"""
import resource
import socket
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    n, port, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    msg = bytes(range(64))
    # One warm-up connection, so that one-time allocations (the first task stack chunk, the
    # loop's buffers) are not counted per connection.
    w = socket.create_connection(("127.0.0.1", port))
    w.sendall(msg)
    w.recv(64)
    time.sleep(0.2)
    before = rss_kb(pid)
    conns = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(msg)
        got = b""
        while len(got) < 64:
            part = s.recv(64 - len(got))
            if not part:
                raise RuntimeError("server closed connection %d" % i)
            got += part
        if got != msg:
            raise RuntimeError("bad echo on connection %d" % i)
        conns.append(s)
    time.sleep(0.5)
    after = rss_kb(pid)
    print("idle n=%d rss_before_kb=%d rss_after_kb=%d bytes_per_conn=%.0f"
          % (n, before, after, (after - before) * 1024.0 / n))
    for s in conns:
        s.close()
    w.close()


main()
