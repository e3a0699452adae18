/* chat-load: a measuring client for examples/chat_server, on plain libuv (one process, one loop).
 *
 *   chat-load -p PORT [-c CLIENTS] [-r RATE] [-s BYTES] [-d SECS] [-w SECS] [-f] [-n] [-P PID]
 *
 * CLIENTS (20) chatting clients each send RATE (20) lines a second of BYTES (64) bytes, spread
 * evenly over time, and read everything. A line carries its sender, its number and its send time
 * (uv_hrtime(): one clock, one process), so each receiver measures every line's latency from
 * send to receipt and checks that each sender's lines come in order and none is missing. With -f
 * one more client floods: it writes lines as fast as the server takes them (64 KiB writes, one
 * in flight: TCP paces it) and reads and discards what it gets, so it stays in the room. With -n
 * one more client connects and never reads. With -P the server's resident size (VmRSS) is
 * sampled every 20 ms: its growth is the peak during the run less the size once every client was
 * connected. After the measured window (-d, 10 s, after a warm-up of -w, 1 s) sending stops, the
 * last lines drain, the non-reader reads to see whether the server cut it off, and one line is
 * printed:
 *
 *   chat clients=20 flood=1 noread=1 lines=... got=... lost=0 p50_ms=... p99_ms=... max_ms=...
 *        disconnected=0 noread_cut=1 flood_mb=... rss_before_kb=... rss_peak_kb=... growth_mb=...
 *
 * "lost" counts lines of chatting clients a chatting client never got (a gap in a sender's
 * numbers, or missing at the end); "disconnected" counts chatting clients the server cut off. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "proc.h"

enum { MAX_CLIENTS = 1000, READ_BUF = 64 * 1024, FLOOD_CHUNK = 64 * 1024, LINE_CAP = 1024 };

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  int idx;                   /* chatting clients: 0..n-1; the flooder n; the non-reader n + 1 */
  int connected, eof;
  char part[LINE_CAP * 2];   /* the start of a line split by a read */
  size_t plen;
  uint64_t* next_seq;        /* per sender: the number of the next line expected */
  uint64_t seq;              /* lines sent */
  uint64_t read_bytes;
} client_t;

static const char* host = "127.0.0.1";
static int port;
static int nclients = 20;
static double rate = 20, secs = 10, warm = 1;
static size_t line_bytes = 64;
static int flood, noread;
static long server_pid;

static uv_loop_t loop;
static client_t* clients;
static int ntotal, nconnected;
static uv_timer_t send_timer, sample_timer, phase_timer;
static uint64_t t_start, t_measure, t_end; /* ns */
static int phase;                           /* 0 connecting, 1 running, 2 draining, 3 done */
static uint64_t sent_total;                 /* lines sent by chatting clients */
static uint64_t lines_got, lost, disconnected, flood_bytes, noread_bytes;
static int noread_cut;
static uint32_t* lat;                       /* latencies of measured lines, us */
static size_t nlat, cap_lat;
static long rss_before = -1, rss_peak = -1;
static char flood_buf[FLOOD_CHUNK];
static uv_write_t flood_req;

static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "chat-load: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void on_sample(uv_timer_t* t) {
  long kb;
  (void)t;
  if (server_pid == 0 || (kb = bench_rss_kb(server_pid)) < 0)
    return;
  if (kb > rss_peak)
    rss_peak = kb;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char space[READ_BUF];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(space, sizeof(space));
}

/* One line received by chatting client `c` (without its "\n"). */
static void got_line(client_t* c, const char* s, size_t n) {
  unsigned long long id, seq, t;
  int from;
  char kind;
  char tmp[LINE_CAP + 1];
  if (n > LINE_CAP)
    fail("client %d: a line of %zu bytes", c->idx, n);
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  if (sscanf(tmp, "[%llu] %c %d %llu %llu", &id, &kind, &from, &seq, &t) < 2)
    fail("client %d: a line it cannot parse: %s", c->idx, tmp);
  if (kind != 'L')
    return; /* the flooder's */
  if (sscanf(tmp, "[%llu] %c %d %llu %llu", &id, &kind, &from, &seq, &t) != 5 || from < 0 ||
      from >= nclients || from == c->idx)
    fail("client %d: a bad line: %s", c->idx, tmp);
  lines_got++;
  if (seq < c->next_seq[from])
    fail("client %d: line %llu of %d again or out of order", c->idx, seq, from);
  lost += seq - c->next_seq[from];
  c->next_seq[from] = seq + 1;
  if (t >= t_measure && t < t_end) {
    if (nlat == cap_lat) {
      cap_lat = cap_lat != 0 ? cap_lat * 2 : 65536;
      if ((lat = realloc(lat, cap_lat * sizeof(*lat))) == NULL)
        fail("out of memory");
    }
    lat[nlat++] = (uint32_t)((uv_hrtime() - t) / 1000);
  }
}

static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  client_t* c = (client_t*)s;
  const char *p, *end, *nl;
  if (nread < 0) {
    uv_read_stop(s);
    c->eof = 1;
    if (c->idx < nclients && phase < 3)
      disconnected++;
    if (c->idx == nclients + 1)
      noread_cut = 1;
    return;
  }
  c->read_bytes += (uint64_t)nread;
  if (c->idx == nclients + 1)
    noread_bytes += (uint64_t)nread;
  if (c->idx >= nclients)
    return; /* the flooder and the non-reader discard */
  p = buf->base;
  end = p + nread;
  while (p < end) {
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) {
      if (c->plen + (size_t)(end - p) > sizeof(c->part))
        fail("client %d: a line too long", c->idx);
      memcpy(c->part + c->plen, p, (size_t)(end - p));
      c->plen += (size_t)(end - p);
      break;
    }
    if (c->plen > 0) {
      if (c->plen + (size_t)(nl - p) > sizeof(c->part))
        fail("client %d: a line too long", c->idx);
      memcpy(c->part + c->plen, p, (size_t)(nl - p));
      got_line(c, c->part, c->plen + (size_t)(nl - p));
      c->plen = 0;
    } else {
      got_line(c, p, (size_t)(nl - p));
    }
    p = nl + 1;
  }
}

/* ---- writing ---- */

typedef struct {
  uv_write_t req;
  char data[];
} wreq_t;

static void on_line_written(uv_write_t* req, int status) {
  (void)status; /* a client cut off: counted by its read side */
  free(req);
}

static void send_line(client_t* c) {
  char line[LINE_CAP];
  int n = snprintf(line, sizeof(line), "L %d %" PRIu64 " %" PRIu64 " ", c->idx, c->seq,
                   uv_hrtime());
  uv_buf_t b;
  wreq_t* w;
  while ((size_t)n + 1 < line_bytes && n < LINE_CAP - 2)
    line[n++] = 'x';
  line[n++] = '\n';
  c->seq++;
  sent_total++;
  b = uv_buf_init(line, (unsigned)n);
  if (uv_try_write((uv_stream_t*)&c->tcp, &b, 1) == n)
    return;
  /* the socket is full (a short write cannot happen for a line this small but is handled) */
  if ((w = malloc(sizeof(*w) + (size_t)n)) == NULL)
    fail("out of memory");
  memcpy(w->data, line, (size_t)n);
  b = uv_buf_init(w->data, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t*)&c->tcp, &b, 1, on_line_written) != 0)
    free(w);
}

/* Every millisecond: the lines due since the start, round robin over the chatting clients. */
static void on_send_tick(uv_timer_t* t) {
  static uint64_t done;
  uint64_t due = (uint64_t)((double)(uv_hrtime() - t_start) / 1e9 * rate * nclients);
  client_t* c;
  (void)t;
  if (phase != 1)
    return;
  while (done < due) {
    c = &clients[done % (uint64_t)nclients];
    if (!c->eof)
      send_line(c);
    done++;
  }
}

static void flood_more(void);

static void on_flood_written(uv_write_t* req, int status) {
  (void)req;
  if (status != 0 || phase >= 2)
    return;
  flood_bytes += FLOOD_CHUNK;
  flood_more();
}

static void flood_more(void) {
  uv_buf_t b = uv_buf_init(flood_buf, sizeof(flood_buf));
  if (uv_write(&flood_req, (uv_stream_t*)&clients[nclients].tcp, &b, 1, on_flood_written) != 0)
    fail("flooder: write failed");
}

/* ---- phases ---- */

static void print_and_close(void);

static void on_phase(uv_timer_t* t) {
  (void)t;
  if (phase == 1) { /* the window has ended: stop sending, let the last lines arrive */
    phase = 2;
    if (noread) /* the non-reader reads now: bytes, then EOF if it was cut off */
      uv_read_start((uv_stream_t*)&clients[nclients + 1].tcp, on_alloc, on_read);
    uv_timer_start(&phase_timer, on_phase, 1000, 0);
  } else if (phase == 2) {
    phase = 3;
    print_and_close();
  }
}

static void start_running(uv_timer_t* t) {
  size_t i;
  (void)t;
  t_start = uv_hrtime();
  t_measure = t_start + (uint64_t)(warm * 1e9);
  t_end = t_measure + (uint64_t)(secs * 1e9);
  if (server_pid != 0)
    rss_before = rss_peak = bench_rss_kb(server_pid);
  phase = 1;
  uv_timer_start(&send_timer, on_send_tick, 1, 1);
  uv_timer_start(&phase_timer, on_phase, (uint64_t)((warm + secs) * 1000), 0);
  if (flood) {
    memset(flood_buf, 'f', sizeof(flood_buf));
    for (i = 0; i < sizeof(flood_buf); i += 64) { /* 64-byte flood lines: "F fff...\n" */
      flood_buf[i] = 'F';
      flood_buf[i + 1] = ' ';
      flood_buf[i + 63] = '\n';
    }
    flood_more();
  }
}

static void on_connect(uv_connect_t* req, int status) {
  client_t* c = (client_t*)req->handle;
  if (status != 0)
    fail("client %d: connect: %s", c->idx, uv_strerror(status));
  c->connected = 1;
  uv_tcp_nodelay(&c->tcp, 1);
  if (c->idx != nclients + 1) /* the non-reader never reads (until the end) */
    uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read);
  if (++nconnected == ntotal)
    uv_timer_start(&phase_timer, start_running, 300, 0); /* the server accepts */
}

static int cmp_u32(const void* a, const void* b) {
  uint32_t x = *(const uint32_t*)a, y = *(const uint32_t*)b;
  return x < y ? -1 : x > y;
}

static double pct(double p) {
  size_t i;
  if (nlat == 0)
    return 0;
  i = (size_t)(p * (double)(nlat - 1));
  return lat[i] / 1000.0;
}

static void close_all(uv_handle_t* h, void* arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void print_and_close(void) {
  int i, j;
  uint64_t expected = 0;
  /* lines never received: each chatting client expected every other's lines */
  for (i = 0; i < nclients; i++) {
    if (clients[i].eof)
      continue;
    for (j = 0; j < nclients; j++)
      if (j != i) {
        expected += clients[j].seq;
        lost += clients[j].seq - clients[i].next_seq[j];
      }
  }
  qsort(lat, nlat, sizeof(*lat), cmp_u32);
  printf("chat clients=%d flood=%d noread=%d lines=%" PRIu64 " got=%" PRIu64 " expected=%" PRIu64
         " lost=%" PRIu64 " measured=%zu p50_ms=%.2f p99_ms=%.2f max_ms=%.2f disconnected=%" PRIu64
         " noread_cut=%d noread_bytes=%" PRIu64 " flood_mb=%.1f rss_before_kb=%ld rss_peak_kb=%ld"
         " growth_mb=%.1f\n",
         nclients, flood, noread, sent_total, lines_got, expected, lost, nlat, pct(0.5), pct(0.99),
         nlat ? lat[nlat - 1] / 1000.0 : 0.0, disconnected, noread_cut, noread_bytes,
         (double)flood_bytes / 1e6, rss_before, rss_peak,
         rss_before >= 0 ? (double)(rss_peak - rss_before) / 1024.0 : 0.0);
  fflush(stdout);
  uv_walk(&loop, close_all, NULL);
}

static void usage(void) {
  fprintf(stderr, "usage: chat-load -p PORT [-c CLIENTS] [-r RATE] [-s BYTES] [-d SECS] [-w SECS] "
                  "[-f] [-n] [-P PID]\n");
  exit(2);
}

int main(int argc, char** argv) {
  struct sockaddr_in addr;
  int opt, i;
  while ((opt = getopt(argc, argv, "p:c:r:s:d:w:fnP:")) != -1) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 'c': nclients = atoi(optarg); break;
      case 'r': rate = atof(optarg); break;
      case 's': line_bytes = (size_t)atol(optarg); break;
      case 'd': secs = atof(optarg); break;
      case 'w': warm = atof(optarg); break;
      case 'f': flood = 1; break;
      case 'n': noread = 1; break;
      case 'P': server_pid = atol(optarg); break;
      default: usage();
    }
  }
  if (port <= 0 || nclients < 2 || nclients > MAX_CLIENTS || rate <= 0 || line_bytes < 48 ||
      line_bytes > LINE_CAP - 64)
    usage();
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  ntotal = nclients + flood + noread;
  clients = calloc((size_t)nclients + 2, sizeof(*clients));
  uv_ip4_addr(host, port, &addr);
  for (i = 0; i < nclients + 2; i++) {
    clients[i].idx = i;
    clients[i].next_seq = calloc((size_t)nclients, sizeof(uint64_t));
    if ((i == nclients && !flood) || (i == nclients + 1 && !noread))
      continue;
    uv_tcp_init(&loop, &clients[i].tcp);
    if (uv_tcp_connect(&clients[i].connect_req, &clients[i].tcp, (const struct sockaddr*)&addr,
                       on_connect) != 0)
      fail("connect to %s:%d failed", host, port);
  }
  uv_timer_init(&loop, &send_timer);
  uv_timer_init(&loop, &sample_timer);
  uv_timer_init(&loop, &phase_timer);
  if (server_pid != 0)
    uv_timer_start(&sample_timer, on_sample, 20, 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  for (i = 0; i < nclients + 2; i++)
    free(clients[i].next_seq);
  free(clients);
  free(lat);
  return phase == 3 ? 0 : 1;
}
