/* echo-load: an echo load generator on plain libuv (one process, one loop), for bench/echo.sh.
 *
 * N connections each send an S-byte message and wait for all S bytes back, then send the next, as
 * fast as they can. Every connection first completes one round trip (so every one is accepted
 * and served), then a warm-up runs, then the measured window (a duration, or a count of round
 * trips). One line on stdout, in the bench format "<workload> <n> <value> <unit> [details]":
 *   echo_64x64 412345 206172.5 roundtrips/s p50_us=290.1 p99_us=612.0 secs=2.000 ...
 * With -P PID the details include the server's CPU time over the window (user + system, all
 * threads), its resident size before the first connection and at the window's end (all
 * connections open), and other_cpu_s, the CPU time the rest of the machine used meanwhile (other
 * processes of a shared machine, kernel threads): a run with a large one was disturbed.
 * Message k of connection c is the window at offset (7c + k) mod 251 of a pattern with period
 * 251, so each read is checked with one memcmp and a stale, reordered, foreign or extra byte is
 * a mismatch. A mismatch, an unexpected EOF or any I/O error ends the run with exit status 1.
 *
 * With -x BYTES one more connection sends BYTES without ever reading, and the server's resident
 * size (VmRSS of -P PID) is sampled before, during and after: a server that queues without bound
 * grows by about BYTES; one with backpressure stops reading, so the sender stalls (no progress
 * for -t seconds) and the growth stays small. With -c 0 that connection is the whole run.
 *
 * Helpers for scripts: -F prints a free loopback port, -W waits until HOST:PORT accepts.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "proc.h"

enum {
  PERIOD = 251,                /* the pattern's period: a prime, so offsets don't alias sizes */
  MAX_CONNECTING = 64,         /* connects in flight at once, so no listen backlog overflows */
  NOREAD_CHUNK = 256 * 1024,   /* one write in flight for the non-reading connection */
  READ_BUF = 64 * 1024,        /* the one receive buffer: each read is checked at once */
  SAMPLE_MS = 50,              /* the non-reader's progress check and RSS sampling period */
  HUNG_SECS = 10               /* no round trip anywhere for this long: the server is stuck */
};

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  size_t id;
  size_t offset;      /* pattern offset of the message in flight */
  size_t received;    /* bytes of it echoed so far */
  uint64_t msgs;      /* messages started */
  uint64_t sent_at;   /* uv_hrtime() when the message in flight was started */
  int writing;        /* write_req is in use */
  int send_pending;   /* the next message waits for write_req */
  int established;    /* first round trip done */
} conn_t;

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  uint64_t target;        /* bytes to send */
  uint64_t written;       /* bytes of completed writes */
  size_t chunk;           /* size of the write in flight (0: none) */
  uint64_t accepted_last; /* bytes the kernel had taken at the last check */
  uint64_t progress_at;   /* when that count last moved */
  uint64_t started_at;
  uint64_t finished_at;
  long rss_before, rss_peak, rss_end; /* kB */
  int started, finished, stalled;
  int done; /* rss_end sampled */
} noread_t;

/* options */
static const char* host = "127.0.0.1";
static int port;
static size_t nconns = 64;
static size_t size = 64;
static double duration = 2.0, warmup = 0.5, stall_secs = 1.0;
static uint64_t count_target; /* -n: measure this many round trips instead of a duration */
static uint64_t noread_bytes; /* -x */
static long server_pid;       /* -P */

static uv_loop_t loop;
static struct sockaddr_storage peer;
static unsigned char* pattern;
static char read_buf[READ_BUF];
static conn_t* conns;
static size_t next_connect, connecting, established;
static noread_t noread;
static uv_timer_t phase_timer, sample_timer, watch_timer;
static uint64_t completed, completed_seen; /* round trips in every phase, for the watchdog */
static int idle_secs;

static int measuring, stopping, load_done;
static uint64_t t_start, t_end, roundtrips;
static uint32_t* lat;   /* latencies of the measured round trips, ns */
static size_t nlat, cap_lat;
static double srv_cpu0, srv_cpu1, cli_cpu0, cli_cpu1, busy0, busy1;
static long load_rss0, load_rss1; /* the server's VmRSS before connecting and at the window's end */

static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "echo-load: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n);
  if (p == NULL)
    fail("out of memory");
  return p;
}

/* The server's CPU time (user + system, all threads) in seconds, from /proc/PID/stat. */
static double server_cpu_s(void) {
  char path[64], buf[1024], *p;
  unsigned long long ut = 0, st = 0;
  size_t n;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%ld/stat", server_pid);
  if ((f = fopen(path, "r")) == NULL)
    fail("cannot read %s: %s", path, strerror(errno));
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name may hold spaces and parentheses: fields count from the last ')'. */
  if ((p = strrchr(buf, ')')) == NULL ||
      sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    fail("cannot parse %s", path);
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU time that every process on the machine spent in user and kernel mode (user + nice +
 * system of /proc/stat), in seconds: with the client's and the server's own times subtracted, it
 * tells how much other work shared the machine during the window. */
static double machine_busy_s(void) {
  unsigned long long us = 0, ni = 0, sy = 0;
  FILE* f = fopen("/proc/stat", "r");
  if (f == NULL)
    return 0;
  if (fscanf(f, "cpu %llu %llu %llu", &us, &ni, &sy) != 3)
    us = ni = sy = 0;
  fclose(f);
  return (double)(us + ni + sy) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
  uv_rusage_t ru;
  if (uv_getrusage(&ru) != 0)
    return 0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void on_closed(uv_handle_t* handle) {
  (void)handle;
}

static void close_if_open(uv_handle_t* handle) {
  if (handle->loop != NULL && !uv_is_closing(handle))
    uv_close(handle, on_closed);
}

static void stop_all(void) {
  if (stopping)
    return;
  stopping = 1;
  for (size_t i = 0; i < next_connect; i++)
    close_if_open((uv_handle_t*)&conns[i].tcp);
  if (noread.started)
    close_if_open((uv_handle_t*)&noread.tcp);
  close_if_open((uv_handle_t*)&phase_timer);
  close_if_open((uv_handle_t*)&sample_timer);
  close_if_open((uv_handle_t*)&watch_timer);
}

/* A server that stops answering (or never accepts) fails the run instead of hanging it. */
static void on_watch(uv_timer_t* t) {
  (void)t;
  if (completed != completed_seen) {
    completed_seen = completed;
    idle_secs = 0;
  } else if (++idle_secs >= HUNG_SECS) {
    fail("no round trip completed for %d s (%zu of %zu connections established)", HUNG_SECS,
         established, nconns);
  }
}

/* ---- the echo connections ---- */

static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  (void)handle;
  (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_written(uv_write_t* req, int status);

/* Starts conn c's next message: as much as the socket takes now, the rest through write_req. */
static void send_msg(conn_t* c) {
  uv_buf_t buf;
  int n;
  if (c->writing) {
    c->send_pending = 1; /* the echo overtook the previous write's callback */
    return;
  }
  c->offset = (c->id * 7 + c->msgs) % PERIOD;
  c->msgs++;
  c->received = 0;
  c->sent_at = uv_hrtime();
  buf = uv_buf_init((char*)pattern + c->offset, (unsigned int)size);
  n = uv_try_write((uv_stream_t*)&c->tcp, &buf, 1);
  if (n == (int)size)
    return;
  if (n < 0 && n != UV_EAGAIN)
    fail("connection %zu: write: %s", c->id, uv_strerror(n));
  if (n > 0)
    buf = uv_buf_init(buf.base + n, buf.len - (unsigned int)n);
  n = uv_write(&c->write_req, (uv_stream_t*)&c->tcp, &buf, 1, on_written);
  if (n != 0)
    fail("connection %zu: write: %s", c->id, uv_strerror(n));
  c->writing = 1;
}

static void on_written(uv_write_t* req, int status) {
  conn_t* c = req->data;
  c->writing = 0;
  if (stopping)
    return;
  if (status != 0)
    fail("connection %zu: write: %s", c->id, uv_strerror(status));
  if (c->send_pending) {
    c->send_pending = 0;
    send_msg(c);
  }
}

static void on_end_timer(uv_timer_t* t);

static void start_measuring(void) {
  measuring = 1;
  if (server_pid > 0)
    srv_cpu0 = server_cpu_s();
  cli_cpu0 = self_cpu_s();
  busy0 = machine_busy_s();
  t_start = uv_hrtime();
}

static void end_measuring(void) {
  t_end = uv_hrtime();
  measuring = 0;
  cli_cpu1 = self_cpu_s();
  busy1 = machine_busy_s();
  if (server_pid > 0) {
    srv_cpu1 = server_cpu_s();
    load_rss1 = bench_rss_kb(server_pid);
  }
  load_done = 1;
  if (noread_bytes == 0 || noread.done)
    stop_all();
}

static void on_end_timer(uv_timer_t* t) {
  (void)t;
  end_measuring();
}

static void noread_start(void);

static void on_warm(uv_timer_t* t) {
  (void)t;
  start_measuring();
  if (count_target == 0)
    uv_timer_start(&phase_timer, on_end_timer, (uint64_t)(duration * 1000), 0);
}

static void on_roundtrip(conn_t* c) {
  uint64_t now = uv_hrtime();
  completed++;
  if (measuring) {
    roundtrips++;
    if (c->sent_at >= t_start) {
      uint64_t d = now - c->sent_at;
      if (nlat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 65536;
        lat = realloc(lat, cap_lat * sizeof(*lat));
        if (lat == NULL)
          fail("out of memory");
      }
      lat[nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    }
    if (count_target != 0 && roundtrips == count_target) {
      end_measuring();
      return;
    }
  } else if (!c->established) {
    c->established = 1;
    if (++established == nconns) {
      /* Every connection is accepted and served: warm up, then measure. */
      if (noread_bytes > 0)
        noread_start();
      uv_timer_start(&phase_timer, on_warm, (uint64_t)(warmup * 1000), 0);
    }
  }
  send_msg(c);
}

static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  conn_t* c = stream->data;
  if (stopping || nread == 0)
    return;
  if (nread < 0)
    fail("connection %zu dropped by the server: %s (message %" PRIu64 ", %zu of %zu bytes back)",
         c->id, uv_strerror((int)nread), c->msgs, c->received, size);
  if (c->received + (size_t)nread > size)
    fail("connection %zu: %zu bytes more than were sent", c->id, c->received + (size_t)nread - size);
  if (memcmp(buf->base, pattern + c->offset + c->received, (size_t)nread) != 0) {
    size_t i = 0;
    while (buf->base[i] == (char)pattern[c->offset + c->received + i])
      i++;
    fail("connection %zu: echoed byte %zu of message %" PRIu64 " is %u, expected %u", c->id,
         c->received + i, c->msgs, (unsigned char)buf->base[i],
         pattern[c->offset + c->received + i]);
  }
  c->received += (size_t)nread;
  if (c->received == size)
    on_roundtrip(c);
}

static void connect_more(void);

static void on_connect(uv_connect_t* req, int status) {
  conn_t* c = req->data;
  connecting--;
  if (stopping)
    return;
  if (status != 0)
    fail("connection %zu: connect to %s:%d: %s", c->id, host, port, uv_strerror(status));
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read);
  send_msg(c);
  connect_more();
}

static void connect_more(void) {
  while (connecting < MAX_CONNECTING && next_connect < nconns) {
    conn_t* c = &conns[next_connect];
    int r;
    c->id = next_connect++;
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    c->connect_req.data = c;
    c->write_req.data = c;
    r = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr*)&peer, on_connect);
    if (r != 0)
      fail("connection %zu: connect: %s", c->id, uv_strerror(r));
    connecting++;
  }
}

/* ---- the connection that never reads ---- */

static uint64_t noread_accepted(void) {
  size_t queued = uv_stream_get_write_queue_size((uv_stream_t*)&noread.tcp);
  return noread.written + (noread.chunk > queued ? noread.chunk - queued : 0);
}

static void noread_finish(int stalled) {
  noread.finished = 1;
  noread.stalled = stalled;
  noread.finished_at = uv_hrtime();
}

static void on_noread_written(uv_write_t* req, int status);

static void noread_write(void) {
  uint64_t left = noread.target - noread.written;
  uv_buf_t buf;
  int r;
  noread.chunk = left < NOREAD_CHUNK ? (size_t)left : NOREAD_CHUNK;
  buf = uv_buf_init((char*)pattern + noread.written % PERIOD, (unsigned int)noread.chunk);
  r = uv_write(&noread.write_req, (uv_stream_t*)&noread.tcp, &buf, 1, on_noread_written);
  if (r != 0)
    fail("non-reading connection: write: %s", uv_strerror(r));
}

static void on_noread_written(uv_write_t* req, int status) {
  (void)req;
  if (stopping)
    return;
  if (status != 0)
    fail("non-reading connection: write: %s (after %" PRIu64 " bytes)", uv_strerror(status),
         noread.written);
  noread.written += noread.chunk;
  noread.chunk = 0;
  if (noread.finished)
    return;
  if (noread.written == noread.target)
    noread_finish(0);
  else
    noread_write();
}

static void on_sample(uv_timer_t* t) {
  uint64_t now = uv_hrtime(), acc;
  long rss = bench_rss_kb(server_pid);
  (void)t;
  if (rss > noread.rss_peak)
    noread.rss_peak = rss;
  if (noread.finished) {
    /* Half a second for the server to take what is still in the kernel.s buffers. */
    if (!noread.done && now - noread.finished_at >= 500000000u) {
      noread.rss_end = rss;
      noread.done = 1;
      uv_timer_stop(&sample_timer);
      if (nconns == 0 || load_done)
        stop_all();
    }
    return;
  }
  acc = noread_accepted();
  if (acc != noread.accepted_last) {
    noread.accepted_last = acc;
    noread.progress_at = now;
  } else if ((double)(now - noread.progress_at) >= stall_secs * 1e9) {
    noread_finish(1);
  }
}

static void on_noread_connect(uv_connect_t* req, int status) {
  (void)req;
  if (stopping)
    return;
  if (status != 0)
    fail("non-reading connection: connect to %s:%d: %s", host, port, uv_strerror(status));
  noread.rss_before = noread.rss_peak = bench_rss_kb(server_pid);
  if (noread.rss_before < 0)
    fail("cannot read /proc/%ld/status", server_pid);
  noread.started_at = noread.progress_at = uv_hrtime();
  noread_write();
  uv_timer_start(&sample_timer, on_sample, SAMPLE_MS, SAMPLE_MS);
}

static void noread_start(void) {
  int r;
  noread.started = 1;
  noread.target = noread_bytes;
  uv_tcp_init(&loop, &noread.tcp);
  r = uv_tcp_connect(&noread.connect_req, &noread.tcp, (const struct sockaddr*)&peer,
                     on_noread_connect);
  if (r != 0)
    fail("non-reading connection: connect: %s", uv_strerror(r));
}

/* ---- reports ---- */

static int cmp_u32(const void* a, const void* b) {
  uint32_t x = *(const uint32_t*)a, y = *(const uint32_t*)b;
  return (x > y) - (x < y);
}

static void report_load(void) {
  double secs = (double)(t_end - t_start) / 1e9;
  double p50 = 0, p99 = 0;
  if (roundtrips == 0 || nlat == 0)
    fail("no round trip completed in the measured window");
  qsort(lat, nlat, sizeof(*lat), cmp_u32);
  p50 = lat[(nlat - 1) / 2] / 1e3;
  p99 = lat[(size_t)((double)(nlat - 1) * 0.99)] / 1e3;
  printf("echo_%zux%zu %" PRIu64 " %.1f roundtrips/s p50_us=%.1f p99_us=%.1f secs=%.3f "
         "client_cpu_s=%.2f",
         nconns, size, roundtrips, (double)roundtrips / secs, p50, p99, secs, cli_cpu1 - cli_cpu0);
  if (server_pid > 0)
    printf(" server_cpu_s=%.2f other_cpu_s=%.2f rss_before_kb=%ld rss_after_kb=%ld",
           srv_cpu1 - srv_cpu0, busy1 - busy0 - (srv_cpu1 - srv_cpu0) - (cli_cpu1 - cli_cpu0),
           load_rss0, load_rss1);
  printf("\n");
}

static void report_noread(void) {
  double secs = (double)(noread.finished_at - noread.started_at) / 1e9;
  uint64_t sent = noread.stalled ? noread.accepted_last : noread.written;
  if (noread.rss_end > noread.rss_peak)
    noread.rss_peak = noread.rss_end;
  printf("echo_noread %" PRIu64 " %.1f MB_server_growth rss_before_kb=%ld rss_peak_kb=%ld "
         "rss_end_kb=%ld sent_mb=%.1f %s secs=%.2f\n",
         sent, (double)(noread.rss_peak - noread.rss_before) / 1024.0, noread.rss_before,
         noread.rss_peak, noread.rss_end, (double)sent / (1024.0 * 1024.0),
         noread.stalled ? "stalled=1" : "stalled=0", secs);
}

/* ---- script helpers ---- */

static void print_free_port(void) {
  static uv_tcp_t t; /* closed by the loop run in main */
  struct sockaddr_storage a;
  struct sockaddr_in any;
  int len = sizeof(a), r;
  uv_ip4_addr(host, 0, &any);
  uv_tcp_init(&loop, &t);
  r = uv_tcp_bind(&t, (const struct sockaddr*)&any, 0);
  if (r == 0)
    r = uv_tcp_getsockname(&t, (struct sockaddr*)&a, &len);
  if (r != 0)
    fail("no free port on %s: %s", host, uv_strerror(r));
  printf("%d\n", ntohs(((struct sockaddr_in*)&a)->sin_port));
  uv_close((uv_handle_t*)&t, NULL);
}

static int wait_ok;
static uint64_t wait_deadline;
static uv_tcp_t wait_tcp;
static uv_connect_t wait_req;

static void wait_try(void);

static void on_wait_retry(uv_timer_t* t) {
  (void)t;
  wait_try();
}

static void on_wait_closed(uv_handle_t* h) {
  (void)h;
  if (!wait_ok && uv_hrtime() < wait_deadline)
    uv_timer_start(&phase_timer, on_wait_retry, 20, 0);
  else
    uv_close((uv_handle_t*)&phase_timer, NULL);
}

static void on_wait_connect(uv_connect_t* req, int status) {
  (void)req;
  wait_ok = status == 0;
  uv_close((uv_handle_t*)&wait_tcp, on_wait_closed);
}

static void wait_try(void) {
  uv_tcp_init(&loop, &wait_tcp);
  if (uv_tcp_connect(&wait_req, &wait_tcp, (const struct sockaddr*)&peer, on_wait_connect) != 0)
    fail("connect: bad address %s:%d", host, port);
}

/* ---- main ---- */

static void usage(void) {
  fprintf(stderr,
          "usage: echo-load -p PORT [-H HOST] [-c CONNS] [-s SIZE] [-d SECS | -n COUNT] [-w SECS]\n"
          "                 [-x BYTES [-t STALL_SECS]] [-P SERVER_PID]\n"
          "       echo-load -F          print a free port on HOST\n"
          "       echo-load -W -p PORT  wait (up to 10 s) until HOST:PORT accepts\n"
          "  -c connections (64), -s message bytes (64), -d measured seconds (2), -w warm-up\n"
          "  seconds (0.5), -n measure COUNT round trips instead, -x one more connection sends\n"
          "  BYTES without reading (needs -P; -c 0 for that alone), -t its stall timeout (1 s),\n"
          "  -P the server's pid: its CPU time and resident size are reported\n");
  exit(2);
}

static double num(const char* s) {
  char* end;
  double v = strtod(s, &end);
  if (end == s || v < 0)
    usage();
  /* K, M, G suffixes (binary) for sizes */
  if (*end == 'K' || *end == 'k')
    v *= 1024;
  else if (*end == 'M' || *end == 'm')
    v *= 1024 * 1024;
  else if (*end == 'G' || *end == 'g')
    v *= 1024.0 * 1024 * 1024;
  else if (*end != '\0')
    usage();
  return v;
}

int main(int argc, char** argv) {
  int opt, free_port = 0, wait_port = 0, r;
  struct rlimit rl;
  while ((opt = getopt(argc, argv, "H:p:c:s:d:n:w:x:t:P:FW")) != -1) {
    switch (opt) {
      case 'H': host = optarg; break;
      case 'p': port = (int)num(optarg); break;
      case 'c': nconns = (size_t)num(optarg); break;
      case 's': size = (size_t)num(optarg); break;
      case 'd': duration = num(optarg); break;
      case 'n': count_target = (uint64_t)num(optarg); break;
      case 'w': warmup = num(optarg); break;
      case 'x': noread_bytes = (uint64_t)num(optarg); break;
      case 't': stall_secs = num(optarg); break;
      case 'P': server_pid = (long)num(optarg); break;
      case 'F': free_port = 1; break;
      case 'W': wait_port = 1; break;
      default: usage();
    }
  }
  if (optind != argc)
    usage();
  signal(SIGPIPE, SIG_IGN); /* a write to a dropped connection is an error to report, not a kill */
  uv_loop_init(&loop);
  uv_timer_init(&loop, &phase_timer);
  if (free_port) {
    uv_close((uv_handle_t*)&phase_timer, NULL);
    print_free_port();
    goto done;
  }
  if (port <= 0 || port > 65535)
    usage();
  if (uv_ip4_addr(host, port, (struct sockaddr_in*)&peer) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6*)&peer) != 0)
    fail("bad address %s", host);
  if (wait_port) {
    wait_deadline = uv_hrtime() + 10 * (uint64_t)1000000000;
    wait_try();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (!wait_ok)
      fail("%s:%d does not accept connections", host, port);
    return 0;
  }
  if (size == 0 || size > 64 * 1024 * 1024)
    fail("message size must be 1 byte to 64 MB");
  if (nconns == 0 && noread_bytes == 0)
    fail("nothing to do: -c 0 without -x");
  if (noread_bytes > 0 && server_pid <= 0)
    fail("-x needs the server's pid (-P) to report its growth");
  /* 1000 connections need more descriptors than the usual soft limit of 1024. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < nconns + 16)
    fail("%zu connections need %zu descriptors; the limit is %llu", nconns, nconns + 16,
         (unsigned long long)rl.rlim_cur);

  /* pattern[i] = i mod PERIOD, long enough for a message at any offset and a non-reader chunk */
  {
    size_t plen = (size > NOREAD_CHUNK ? size : NOREAD_CHUNK) + PERIOD;
    pattern = xmalloc(plen);
    for (size_t i = 0; i < plen; i++)
      pattern[i] = (unsigned char)(i % PERIOD);
  }
  conns = calloc(nconns ? nconns : 1, sizeof(*conns));
  if (conns == NULL)
    fail("out of memory");
  uv_timer_init(&loop, &sample_timer);
  uv_timer_init(&loop, &watch_timer);
  if (nconns > 0) {
    if (server_pid > 0 && (load_rss0 = bench_rss_kb(server_pid)) < 0)
      fail("cannot read /proc/%ld/status", server_pid);
    connect_more();
    uv_timer_start(&watch_timer, on_watch, 1000, 1000);
  } else
    noread_start();
  uv_run(&loop, UV_RUN_DEFAULT);
  if (nconns > 0)
    report_load();
  if (noread_bytes > 0)
    report_noread();
  free(lat);
  free(conns);
  free(pattern);
done:
  uv_run(&loop, UV_RUN_DEFAULT);
  r = uv_loop_close(&loop);
  if (r != 0)
    fail("loop close: %s", uv_strerror(r));
  return 0;
}
