#!/usr/bin/env python3
"""Runs the network examples end to end on 127.0.0.1, against each other and python3's own
servers and clients:

  - echo_server (one loop, then -j 2): 1 MB of random bytes over 4 connections at once comes
    back identical; a connection left open when SIGINT (SIGTERM for -j 2) arrives sees its end,
    and the server exits 0 and reports the connections it served;
  - proxy in front of echo_server: the same round trip through it, and half-close (a client that
    shuts its write side first, then reads, still gets every byte back, then EOF); SIGTERM ends it;
  - fetch against `python3 -m http.server`: an empty file, 100 bytes and 300 KB of binary, each
    byte for byte on stdout with the status line on stderr; a 404 is reported on stderr (its body
    goes to stdout and the exit status is 0, as fetch documents); a refused connect exits 1;
  - chat_server: a line from one client reaches the other as "[ID] line", and back; SIGINT ends it.

The examples take no port 0, so a free port is picked and the start retried on a clash (http.server
binds port 0 and prints its port). Every step has a deadline, the whole check an alarm; whatever it
started is killed on the way out.   usage: net-examples-check.py EXAMPLES_DIR
"""
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

STEP = 5.0       # seconds: any connect, read, process start or exit
WHOLE = 25       # seconds: the whole check
HOST = "127.0.0.1"

procs = []
tmp = tempfile.mkdtemp(prefix="uvchan-netcheck-")


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(STEP)
            except subprocess.TimeoutExpired:
                pass
    subprocess.call(["rm", "-rf", tmp])


def on_term(signum, frame):
    raise CheckFailed("interrupted by signal %d" % signum)


def on_alarm(signum, frame):
    raise CheckFailed("the whole check took over %d s" % WHOLE)


def die_with_us():
    """In the child before exec: SIGKILL when this check dies, even by SIGKILL (a ctest timeout)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log_of(p):
    with open(p.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def spawn(name, argv, ready, clash="address already in use"):
    """Starts argv (argv may contain {port}) and waits for the regex `ready` in its output; on a
    port clash (the process exits, with `clash` in its output), retries on another port."""
    for attempt in range(5):
        port = free_port()
        args = [a.format(port=port) for a in argv]
        log_path = os.path.join(tmp, "%s.%d.log" % (name, attempt))
        with open(log_path, "wb") as log:
            p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 preexec_fn=die_with_us)
        p.log_path = log_path
        p.name = name
        p.port = port
        procs.append(p)
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline:
            out = log_of(p)
            if clash in out.lower():
                break
            m = re.search(ready, out)
            if m and p.poll() is None:
                return p, m
            if p.poll() is not None:
                fail("%s exited with %d at its start: %s" % (name, p.returncode, out.strip()))
            time.sleep(0.02)
        else:
            fail("%s did not start within %.0f s: %s" % (name, STEP, log_of(p).strip()))
        p.kill()
        p.wait(STEP)
    fail("%s: no free port after 5 tries" % name)


def connect(port):
    """A connection to 127.0.0.1:port, retried while refused (the listen may lag the bind)."""
    deadline = time.monotonic() + STEP
    while True:
        try:
            return socket.create_connection((HOST, port), timeout=STEP)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                fail("127.0.0.1:%d still refuses connections after %.0f s" % (port, STEP))
            time.sleep(0.02)


def recv_all(s, limit):
    """Everything until EOF (at most limit bytes), each read within STEP seconds."""
    chunks, n = [], 0
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        n += len(b)
        if n > limit:
            fail("more bytes back than were sent (%d > %d)" % (n, limit))


def round_trip(port, data, what):
    """Sends data on one connection while reading it back (a thread each way), then shuts the
    write side: the echo (through the proxy too) must come back identical, then EOF."""
    s = connect(port)
    err = []

    def sender():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except Exception as e:
            err.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        got = recv_all(s, len(data))
    finally:
        t.join(STEP)
        s.close()
    if err:
        fail("%s: send: %s" % (what, err[0]))
    if got != data:
        fail("%s: %d bytes sent, %d came back%s" % (what, len(data), len(got),
             "" if len(got) != len(data) else " (different bytes)"))


def parallel_round_trips(port, total, conns, what):
    data = [os.urandom(total // conns) for _ in range(conns)]
    errs = []

    def one(i):
        try:
            round_trip(port, data[i], "%s, connection %d" % (what, i))
        except Exception as e:
            errs.append(e)

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(3 * STEP)
    if any(t.is_alive() for t in ts):
        fail("%s: a connection did not finish in time" % what)
    if errs:
        fail(str(errs[0]))


def half_close(port, what):
    """Writes everything, shuts the write side, and only then reads: all of it must come back."""
    data = os.urandom(48 * 1024)
    s = connect(port)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s, len(data))
    finally:
        s.close()
    if got != data:
        fail("%s: half-close: %d bytes sent, %d came back" % (what, len(data), len(got)))


def stop(p, sig, served_re=None, at_least=0):
    """Signals p and expects exit 0 within STEP, and `served_re`'s count >= at_least."""
    p.send_signal(sig)
    try:
        rc = p.wait(STEP)
    except subprocess.TimeoutExpired:
        fail("%s did not end within %.0f s of %s" % (p.name, STEP, signal.Signals(sig).name))
    out = log_of(p)
    if rc != 0:
        fail("%s exited with %d after %s: %s" % (p.name, rc, signal.Signals(sig).name, out.strip()))
    if served_re:
        m = re.search(served_re, out)
        if not m or int(m.group(1)) < at_least:
            fail("%s: expected '%s' with at least %d: %s" % (p.name, served_re, at_least, out.strip()))


def echo_checks(ex, jobs, sig):
    name = "echo_server" + (" -j %d" % jobs if jobs > 1 else "")
    argv = [os.path.join(ex, "echo_server")] + (["-j", str(jobs)] if jobs > 1 else []) + ["{port}"]
    srv, _ = spawn(name, argv, r"listening on 127\.0\.0\.1:\d+")
    parallel_round_trips(srv.port, 1 << 20, 4, name)
    if "address already in use" in log_of(srv).lower():
        fail("%s: a loop could not bind: %s" % (name, log_of(srv).strip()))
    # A connection still open at the signal: its task is cancelled, so it sees its end.
    idle = connect(srv.port)
    idle.sendall(b"x")
    if idle.recv(1) != b"x":
        fail("%s: the open connection got no echo" % name)
    stop(srv, sig, r"served (\d+) connection", 5)
    try:
        end = idle.recv(1)
    except ConnectionResetError:
        end = b""
    idle.close()
    if end != b"":
        fail("%s: the open connection got data after the shutdown" % name)


def proxy_checks(ex):
    echo, _ = spawn("echo_server (upstream)", [os.path.join(ex, "echo_server"), "{port}"],
                    r"listening on")
    proxy, _ = spawn("proxy", [os.path.join(ex, "proxy"), "{port}", HOST, str(echo.port)],
                     r"proxy: 127\.0\.0\.1:\d+ ->")
    parallel_round_trips(proxy.port, 1 << 20, 4, "proxy")
    half_close(proxy.port, "proxy")
    stop(proxy, signal.SIGTERM, r"served (\d+) connection", 5)
    stop(echo, signal.SIGINT, r"served (\d+) connection", 5)


def fetch_checks(ex):
    root = os.path.join(tmp, "www")
    os.mkdir(root)
    files = {"empty": b"", "small.txt": os.urandom(50).hex().encode(),
             "big.bin": os.urandom(300 * 1024)}
    for n, b in files.items():
        with open(os.path.join(root, n), "wb") as f:
            f.write(b)
    http, m = spawn("http.server", [sys.executable, "-u", "-m", "http.server", "0", "--bind", HOST,
                                    "--directory", root], r"Serving HTTP on \S+ port (\d+)")
    port = m.group(1)
    fetch = os.path.join(ex, "fetch")

    def run(path, p=port):
        r = subprocess.run([fetch, HOST, p, path], capture_output=True, timeout=3 * STEP)
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")

    for n, b in files.items():
        rc, out, err = run("/" + n)
        if rc != 0 or out != b or " 200 " not in err:
            fail("fetch /%s: exit %d, %d bytes of %d%s, stderr: %s" % (
                n, rc, len(out), len(b), "" if out == b or len(out) != len(b) else " (differ)",
                err.strip()))
    rc, out, err = run("/missing")
    if rc != 0 or " 404 " not in err or b"404" not in out:
        fail("fetch /missing: exit %d, stderr: %s" % (rc, err.strip()))
    http.kill()
    http.wait(STEP)
    rc, out, err = run("/", str(free_port()))
    if rc == 0 or "connect" not in err:
        fail("fetch to a closed port: exit %d, stderr: %s" % (rc, err.strip()))


def chat_checks(ex):
    chat, _ = spawn("chat_server", [os.path.join(ex, "chat_server"), "{port}"], r"chat_server: port \d+")
    a = connect(chat.port)
    b = connect(chat.port)
    try:
        bf = b.makefile("rb")
        # b may join the room a little after its connect returns: a says its line until b hears it.
        got, stop_saying = [], threading.Event()

        def say():
            i = 0
            while not stop_saying.is_set() and i < 100:
                a.sendall(b"hello %d\n" % i)
                i += 1
                stop_saying.wait(0.05)

        t = threading.Thread(target=say, daemon=True)
        t.start()
        try:
            got = bf.readline()
        finally:
            stop_saying.set()
            t.join(STEP)
        if not re.fullmatch(rb"\[\d+\] hello \d+\n", got):
            fail("chat: b got %r, expected '[ID] hello N'" % got)
        b.sendall(b"hi from b\n")
        af = a.makefile("rb")
        line = af.readline()
        if not re.fullmatch(rb"\[\d+\] hi from b\n", line):
            fail("chat: a got %r, expected '[ID] hi from b'" % line)
    finally:
        a.close()
        b.close()
    stop(chat, signal.SIGINT, r"(\d+) lines relayed", 2)


def main():
    if len(sys.argv) != 2:
        print("usage: net-examples-check.py EXAMPLES_DIR", file=sys.stderr)
        return 2
    ex = sys.argv[1]
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WHOLE)
    t0 = time.monotonic()
    step, times = "start", []
    parts = [("echo_server", lambda: echo_checks(ex, 1, signal.SIGINT)),
             ("echo_server -j 2", lambda: echo_checks(ex, 2, signal.SIGTERM)),
             ("proxy", lambda: proxy_checks(ex)),
             ("fetch", lambda: fetch_checks(ex)),
             ("chat_server", lambda: chat_checks(ex))]
    try:
        for step, part in parts:
            t = time.monotonic()
            part()
            times.append("%s %.2f s" % (step, time.monotonic() - t))
    except (CheckFailed, OSError, subprocess.TimeoutExpired) as e:
        print("net-examples: FAILED in %s: %s" % (step, e))
        return 1
    finally:
        signal.alarm(0)
        cleanup()
    print("net-examples: ok (%s) in %.1f s" % (", ".join(times), time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
