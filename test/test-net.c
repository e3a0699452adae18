/* Network calls from tasks, over loopback: byte-exact echo with many clients, EOF, reset and
 * half-close, deadlines on connect/accept/read/write, a byte ledger across random deadlines, a
 * peer that never reads, pipes, the application's handle->data left alone, and the deadline and
 * cancel paths of getaddrinfo (libuv's pool held busy) and shutdown. */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "test-helpers.h"

static uv_loop_t* LOOP;
static uvchan_ctx_t* CTX;
static int port;

/* A listener on 127.0.0.1 and an ephemeral port (stored in `port`). */
static void listen_any(uv_tcp_t* server) {
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int len = sizeof(name);
  assert_int_equal(uv_tcp_init(LOOP, server), 0);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(server, (const struct sockaddr*)&addr, 0), 0);
  assert_int_equal(uv_tcp_getsockname(server, (struct sockaddr*)&name, &len), 0);
  port = ntohs(((struct sockaddr_in*)&name)->sin_port);
}

static int connect_to(uv_tcp_t* tcp, int p) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", p, &addr);
  assert_int_equal(uv_tcp_init(LOOP, tcp), 0);
  return uvchan_task_connect(tcp, (const struct sockaddr*)&addr);
}

static void setup_globals(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  CTX = &f->ctx;
  signal(SIGPIPE, SIG_IGN);
}

static uint8_t pattern(size_t i) {
  return (uint8_t)((i * 2654435761u) >> 13);
}

/* ---- byte-exact echo with many concurrent clients ---- */

enum { ECHO_CLIENTS = 32, ECHO_BYTES = 200 * 1000 };

static int echo_served, echo_ok;
static uv_tcp_t echo_server;

static void echo_conn(void* arg) {
  uv_tcp_t* c = arg;
  char buf[4096];
  ssize_t n;
  while ((n = uvchan_task_read((uv_stream_t*)c, buf, sizeof(buf))) > 0)
    assert_int_equal(uvchan_task_write((uv_stream_t*)c, buf, (size_t)n), n);
  assert_int_equal(n, UV_EOF);
  assert_int_equal(uvchan_task_read((uv_stream_t*)c, buf, sizeof(buf)), UV_EOF); /* sticky */
  assert_int_equal(uvchan_task_close((uv_handle_t*)c), 0);
  free(c);
}

static void echo_acceptor(void* arg) {
  int i;
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&echo_server, 128), 0);
  for (i = 0; i < ECHO_CLIENTS; i++) {
    uv_tcp_t* c = malloc(sizeof(*c));
    assert_int_equal(uv_tcp_init(LOOP, c), 0);
    assert_int_equal(uvchan_task_accept((uv_stream_t*)&echo_server, (uv_stream_t*)c), 0);
    assert_int_equal(uvchan_task_spawn(CTX, echo_conn, c, NULL), 0);
    echo_served++;
  }
  assert_int_equal(uvchan_task_close((uv_handle_t*)&echo_server), 0);
}

typedef struct {
  uv_tcp_t tcp;
  uvchan_wg_t wg;
  unsigned seed;
} client_t;

static void client_reader(void* arg) {
  client_t* cl = arg;
  uint8_t buf[3000];
  size_t got = 0, i;
  ssize_t n;
  while ((n = uvchan_task_read((uv_stream_t*)&cl->tcp, buf, 1 + rand_r(&cl->seed) % sizeof(buf))) > 0) {
    for (i = 0; i < (size_t)n; i++)
      assert_int_equal(buf[i], pattern(got + i));
    got += (size_t)n;
  }
  assert_int_equal(n, UV_EOF);
  assert_int_equal(got, ECHO_BYTES);
}

static void echo_client(void* arg) {
  client_t* cl = arg;
  uvchan_task_attr_t attr = {0};
  static uint8_t data[ECHO_BYTES];
  size_t off = 0, k;
  for (k = 0; k < ECHO_BYTES; k++)
    data[k] = pattern(k);
  assert_int_equal(connect_to(&cl->tcp, port), 0);
  assert_int_equal(uvchan_wg_init(CTX, &cl->wg), 0);
  attr.wg = &cl->wg;
  assert_int_equal(uvchan_task_spawn(CTX, client_reader, cl, &attr), 0);
  while (off < ECHO_BYTES) {
    k = 1 + rand_r(&cl->seed) % 20000;
    if (k > ECHO_BYTES - off)
      k = ECHO_BYTES - off;
    assert_int_equal(uvchan_task_write((uv_stream_t*)&cl->tcp, data + off, k), (ssize_t)k);
    off += k;
  }
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&cl->tcp), 0);
  assert_int_equal(uvchan_task_wg_wait(&cl->wg), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&cl->tcp), 0);
  echo_ok++;
}

static void test_echo_many_clients(void** state) {
  fixture_t* f = FX(state);
  static client_t clients[ECHO_CLIENTS];
  int i;
  setup_globals(state);
  echo_served = echo_ok = 0;
  listen_any(&echo_server);
  assert_int_equal(uvchan_task_spawn(CTX, echo_acceptor, NULL, NULL), 0);
  for (i = 0; i < ECHO_CLIENTS; i++) {
    clients[i].seed = (unsigned)i + 1;
    assert_int_equal(uvchan_task_spawn(CTX, echo_client, &clients[i], NULL), 0);
  }
  assert_int_equal(RUN(f), 0);
  assert_int_equal(echo_served, ECHO_CLIENTS);
  assert_int_equal(echo_ok, ECHO_CLIENTS);
}

/* ---- EOF, half-close, reset ---- */

static int half_steps;
static uv_tcp_t hc_server;

/* The server reads to EOF (the client shut its write half), then still writes its answer. */
static void half_server(void* arg) {
  uv_tcp_t c;
  char buf[64];
  ssize_t n, got = 0;
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&hc_server, 8), 0);
  assert_int_equal(uv_tcp_init(LOOP, &c), 0);
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&hc_server, (uv_stream_t*)&c), 0);
  while ((n = uvchan_task_read((uv_stream_t*)&c, buf + got, sizeof(buf) - (size_t)got)) > 0)
    got += n;
  assert_int_equal(n, UV_EOF);
  assert_int_equal(got, 5);
  assert_memory_equal(buf, "hello", 5);
  half_steps++;
  assert_int_equal(uvchan_task_write((uv_stream_t*)&c, "world", 5), 5);
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&hc_server), 0);
}

static void half_client(void* arg) {
  uv_tcp_t c;
  char buf[64];
  ssize_t n, got = 0;
  (void)arg;
  assert_int_equal(connect_to(&c, port), 0);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&c, "hello", 5), 5);
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&c), 0);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&c, "x", 1), UV_EPIPE); /* write half shut */
  while ((n = uvchan_task_read((uv_stream_t*)&c, buf + got, sizeof(buf) - (size_t)got)) > 0)
    got += n;
  assert_int_equal(n, UV_EOF);
  assert_int_equal(got, 5);
  assert_memory_equal(buf, "world", 5);
  half_steps++;
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
}

static void test_eof_and_half_close(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  half_steps = 0;
  listen_any(&hc_server);
  assert_int_equal(uvchan_task_spawn(CTX, half_server, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, half_client, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(half_steps, 2);
}

static int reset_seen;

static void reset_server(void* arg) {
  uv_tcp_t c;
  char buf[64];
  ssize_t n;
  int i;
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&hc_server, 8), 0);
  assert_int_equal(uv_tcp_init(LOOP, &c), 0);
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&hc_server, (uv_stream_t*)&c), 0);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&c, buf, sizeof(buf)), 3);
  n = uvchan_task_read((uv_stream_t*)&c, buf, sizeof(buf));
  assert_int_equal(n, UV_ECONNRESET);
  /* After a reset, writes fail (the first may still be taken by the kernel, then EPIPE). */
  for (i = 0; i < 4 && uvchan_task_write((uv_stream_t*)&c, "abc", 3) == 3; i++)
    uvchan_task_sleep(1);
  assert_true(i < 4);
  reset_seen = 1;
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&hc_server), 0);
}

static uv_tcp_t reset_client_tcp;
static void reset_closed(uv_handle_t* h) {
  (void)h;
}
static void reset_client(void* arg) {
  (void)arg;
  assert_int_equal(connect_to(&reset_client_tcp, port), 0);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&reset_client_tcp, "abc", 3), 3);
  uvchan_task_sleep(20); /* let the server read the bytes first */
  assert_int_equal(uv_tcp_close_reset(&reset_client_tcp, reset_closed), 0); /* RST, not FIN */
}

static void test_reset(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  reset_seen = 0;
  listen_any(&hc_server);
  assert_int_equal(uvchan_task_spawn(CTX, reset_server, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, reset_client, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(reset_seen, 1);
}

/* ---- deadlines ---- */

static int dl_steps;
static uv_tcp_t dl_server;

/* accept: nothing comes, UV_ETIMEDOUT; a connection made afterwards is accepted by the next
 * call. read: UV_ETIMEDOUT, then the byte sent later is read. */
static void dl_server_task(void* arg) {
  uv_tcp_t c;
  char b;
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&dl_server, 8), 0);
  assert_int_equal(uv_tcp_init(LOOP, &c), 0);
  assert_int_equal(uvchan_task_accept_timeout((uv_stream_t*)&dl_server, (uv_stream_t*)&c, 10),
                   UV_ETIMEDOUT);
  dl_steps++;
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&dl_server, (uv_stream_t*)&c), 0);
  assert_int_equal(uvchan_task_read_timeout((uv_stream_t*)&c, &b, 1, 10), UV_ETIMEDOUT);
  dl_steps++;
  assert_int_equal(uvchan_task_write((uv_stream_t*)&c, "?", 1), 1); /* "send now" */
  assert_int_equal(uvchan_task_read((uv_stream_t*)&c, &b, 1), 1);
  assert_int_equal(b, '!');
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&dl_server), 0);
}

static void dl_client_task(void* arg) {
  uv_tcp_t c;
  char b;
  (void)arg;
  while (dl_steps < 1) /* connect only after the first accept timed out */
    uvchan_task_sleep(1);
  assert_int_equal(connect_to(&c, port), 0);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&c, &b, 1), 1);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&c, "!", 1), 1);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&c, &b, 1), UV_EOF);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
  dl_steps++;
}

static void test_deadlines_accept_read(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  dl_steps = 0;
  listen_any(&dl_server);
  assert_int_equal(uvchan_task_spawn(CTX, dl_server_task, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, dl_client_task, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(dl_steps, 3);
}

/* A listener whose accept queue is full (a raw socket that never accepts) drops SYNs, so a
 * connect to it waits: the deadline ends it. */
static int full_listener(int* fds, int nfds) {
  struct sockaddr_in addr;
  socklen_t len = sizeof(addr);
  int s = socket(AF_INET, SOCK_STREAM, 0), i;
  assert_true(s >= 0);
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr*)&addr, sizeof(addr)), 0);
  assert_int_equal(listen(s, 0), 0);
  assert_int_equal(getsockname(s, (struct sockaddr*)&addr, &len), 0);
  for (i = 0; i < nfds; i++) { /* fill the accept queue (backlog 0 holds one or two) */
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    (void)connect(fds[i], (struct sockaddr*)&addr, sizeof(addr));
  }
  port = ntohs(addr.sin_port);
  return s;
}

static int connect_timed_out;
static void connect_dl_task(void* arg) {
  uv_tcp_t c;
  struct sockaddr_in addr;
  (void)arg;
  uvchan_task_sleep(5); /* the queue-filling connects complete */
  uv_ip4_addr("127.0.0.1", port, &addr);
  assert_int_equal(uv_tcp_init(LOOP, &c), 0);
  assert_int_equal(uvchan_task_connect_timeout(&c, (const struct sockaddr*)&addr, 30), UV_ETIMEDOUT);
  connect_timed_out = 1;
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0); /* the abandoned request is freed */
}

static void test_deadline_connect(void** state) {
  fixture_t* f = FX(state);
  int fds[3], s, i;
  setup_globals(state);
  connect_timed_out = 0;
  s = full_listener(fds, 3);
  assert_int_equal(uvchan_task_spawn(CTX, connect_dl_task, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(connect_timed_out, 1);
  for (i = 0; i < 3; i++)
    close(fds[i]);
  close(s);
}

/* ---- a peer that never reads: the writer blocks, the queue stays bounded ---- */

static size_t max_queued;
static ssize_t total_written;
static int writer_blocked, writer_done;
static uv_tcp_t nr_server;

static void nonreading_peer(void* arg) {
  uv_tcp_t c;
  (void)arg;
  assert_int_equal(connect_to(&c, port), 0);
  while (!writer_done) /* never reads */
    uvchan_task_sleep(5);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
}

static void flooding_writer(void* arg) {
  uv_tcp_t c;
  static char chunk[100000];
  ssize_t n;
  size_t q;
  int i;
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&nr_server, 8), 0);
  assert_int_equal(uv_tcp_init(LOOP, &c), 0);
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&nr_server, (uv_stream_t*)&c), 0);
  /* Write until a write's deadline passes without all of it accepted: the peer's and our
   * kernel buffers are full and our queue is at the mark. Bounded: 4000 writes of 100 kB. */
  for (i = 0; i < 4000; i++) {
    n = uvchan_task_write_timeout((uv_stream_t*)&c, chunk, sizeof(chunk), 50);
    q = uvchan_stream_queued((uv_stream_t*)&c);
    if (q > max_queued)
      max_queued = q;
    if (n > 0)
      total_written += n;
    if (n != (ssize_t)sizeof(chunk)) {
      assert_true(n == UV_ETIMEDOUT || (n > 0 && n < (ssize_t)sizeof(chunk)));
      writer_blocked = 1;
      break;
    }
  }
  assert_int_equal(writer_blocked, 1);
  /* Still blocked: a later write accepts nothing before its deadline. */
  assert_int_equal(uvchan_task_write_timeout((uv_stream_t*)&c, chunk, 10, 20), UV_ETIMEDOUT);
  writer_done = 1;
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&nr_server), 0);
}

static void test_nonreading_peer_blocks_writer(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  max_queued = 0;
  total_written = 0;
  writer_blocked = writer_done = 0;
  listen_any(&nr_server);
  assert_int_equal(uvchan_task_spawn(CTX, flooding_writer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, nonreading_peer, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(writer_blocked, 1);
  /* uvchan's own queue never passes the mark by more than one chunk. */
  assert_true(max_queued < UVCHAN_STREAM_HWM + UVCHAN_STREAM_WRITE_CHUNK);
  assert_true(max_queued >= UVCHAN_STREAM_HWM); /* it did fill up */
  print_message("non-reading peer: %zd bytes written (kernel buffers), queue peak %zu\n",
                total_written, max_queued);
}

/* ---- the byte ledger: random deadlines on reads and writes lose and duplicate nothing ---- */

enum { LEDGER_BYTES = 4 * 1000 * 1000 };
static size_t ledger_read, ledger_timeouts_r, ledger_timeouts_w, ledger_partial_w;
static uv_tcp_t ledger_server;

/* Small kernel buffers, so that the writer's deadlines hit too. */
static void small_buffers(uv_handle_t* h) {
  int v = 32768;
  assert_int_equal(uv_send_buffer_size(h, &v), 0);
  v = 32768;
  assert_int_equal(uv_recv_buffer_size(h, &v), 0);
}

static void ledger_writer(void* arg) {
  uv_tcp_t c;
  static uint8_t data[LEDGER_BYTES];
  unsigned seed = 7;
  size_t off = 0, k;
  ssize_t n;
  (void)arg;
  for (k = 0; k < LEDGER_BYTES; k++)
    data[k] = pattern(k);
  assert_int_equal(connect_to(&c, port), 0);
  assert_int_equal(uvchan_stream_set_hwm((uv_stream_t*)&c, 16 * 1024), 0);
  small_buffers((uv_handle_t*)&c);
  while (off < LEDGER_BYTES) {
    if (rand_r(&seed) % 4 == 0)
      uvchan_task_sleep(rand_r(&seed) % 2); /* a pause: the reader's deadlines hit */
    k = 1 + rand_r(&seed) % 30000;
    if (k > LEDGER_BYTES - off)
      k = LEDGER_BYTES - off;
    n = uvchan_task_write_timeout((uv_stream_t*)&c, data + off, k, rand_r(&seed) % 3);
    if (n == UV_ETIMEDOUT) {
      ledger_timeouts_w++;
      continue;
    }
    assert_true(n > 0 && (size_t)n <= k);
    if ((size_t)n < k)
      ledger_partial_w++;
    off += (size_t)n; /* a partial write: the rest is written again */
  }
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
}

static void ledger_reader(void* arg) {
  uv_tcp_t c;
  static uint8_t buf[70000];
  unsigned seed = 11;
  size_t i;
  ssize_t n;
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&ledger_server, 8), 0);
  assert_int_equal(uv_tcp_init(LOOP, &c), 0);
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&ledger_server, (uv_stream_t*)&c), 0);
  small_buffers((uv_handle_t*)&c);
  for (;;) {
    if (rand_r(&seed) % 4 == 0)
      uvchan_task_sleep(rand_r(&seed) % 2); /* a slow reader now and then: the writer waits */
    n = uvchan_task_read_timeout((uv_stream_t*)&c, buf, 1 + rand_r(&seed) % 8192,
                                 rand_r(&seed) % 2);
    if (n == UV_ETIMEDOUT) {
      ledger_timeouts_r++;
      continue;
    }
    if (n == UV_EOF)
      break;
    assert_true(n > 0);
    for (i = 0; i < (size_t)n; i++)
      if (buf[i] != pattern(ledger_read + i))
        fail_msg("byte %zu: got %d, want %d", ledger_read + i, buf[i], pattern(ledger_read + i));
    ledger_read += (size_t)n;
  }
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&ledger_server), 0);
}

static void test_ledger_random_deadlines(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  ledger_read = ledger_timeouts_r = ledger_timeouts_w = ledger_partial_w = 0;
  listen_any(&ledger_server);
  assert_int_equal(uvchan_task_spawn(CTX, ledger_reader, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, ledger_writer, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(ledger_read, LEDGER_BYTES);
  print_message("ledger: %zu read deadlines, %zu write deadlines, %zu partial writes\n",
                ledger_timeouts_r, ledger_timeouts_w, ledger_partial_w);
  assert_true(ledger_timeouts_r > 0); /* the deadlines did hit mid-stream */
  assert_true(ledger_timeouts_w + ledger_partial_w > 0);
}

/* ---- pipes, and handle->data stays the application's ---- */

static int pipe_done;
static void pipe_task(void* arg) {
  uv_pipe_t* p = arg; /* p[0] reads, p[1] writes */
  char buf[16];
  int i;
  /* 1000 calls in a row that complete at once: the cooperative budget makes the task yield
   * every UVCHAN_TASK_BUDGET of them, and each still returns its own count. */
  for (i = 0; i < 1000; i++)
    assert_int_equal(uvchan_task_write((uv_stream_t*)&p[1], "0123456789", 10), 10);
  for (i = 0; i < 1000; i++) {
    assert_int_equal(uvchan_task_read((uv_stream_t*)&p[0], buf, 10), 10);
    assert_memory_equal(buf, "0123456789", 10);
  }
  assert_int_equal(uvchan_task_write((uv_stream_t*)&p[1], "through a pipe", 14), 14);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&p[0], buf, sizeof(buf)), 14);
  assert_memory_equal(buf, "through a pipe", 14);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&p[1]), 0);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&p[0], buf, sizeof(buf)), UV_EOF);
  assert_ptr_equal(p[0].data, (void*)&pipe_done); /* never touched */
  assert_int_equal(uvchan_task_close((uv_handle_t*)&p[0]), 0);
  pipe_done = 1;
}

static void test_pipe_and_handle_data(void** state) {
  fixture_t* f = FX(state);
  static uv_pipe_t p[2];
  uv_file fds[2];
  setup_globals(state);
  pipe_done = 0;
  assert_int_equal(uv_pipe(fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE), 0);
  assert_int_equal(uv_pipe_init(LOOP, &p[0], 0), 0);
  assert_int_equal(uv_pipe_init(LOOP, &p[1], 0), 0);
  assert_int_equal(uv_pipe_open(&p[0], fds[0]), 0);
  assert_int_equal(uv_pipe_open(&p[1], fds[1]), 0);
  p[0].data = (void*)&pipe_done;
  assert_int_equal(uvchan_task_spawn(CTX, pipe_task, p, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(pipe_done, 1);
}

/* ---- name resolution ---- */

static int gai_result;
static void gai_task(void* arg) {
  struct addrinfo hints, *res = NULL;
  (void)arg;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  gai_result = uvchan_task_getaddrinfo("127.0.0.1", "80", &hints, &res);
  assert_non_null(res);
  assert_int_equal(res->ai_family, AF_INET);
  uv_freeaddrinfo(res);
  /* A failure frees what it allocated (valgrind's leak check sees it). AI_NUMERICHOST keeps
   * the lookup off the network. */
  hints.ai_flags = AI_NUMERICHOST;
  assert_int_equal(uvchan_task_getaddrinfo("not-an-address", NULL, &hints, &res), UV_EAI_NONAME);
  assert_null(res);
}

static void test_getaddrinfo(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  gai_result = 1;
  assert_int_equal(uvchan_task_spawn(CTX, gai_task, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(gai_result, 0);
}

/* ---- getaddrinfo's deadline and cancel, made deterministic: every thread of libuv's pool is
 * held by a job blocked on a semaphore, so the lookup cannot run until the test lets it ---- */

/* main() sets UV_THREADPOOL_SIZE to this before the pool starts. */
#define POOL_THREADS 4
#define POOL_STR_(x) #x
#define POOL_STR(x) POOL_STR_(x)
static uv_work_t pool_jobs[POOL_THREADS], pool_sentinel;
static uv_sem_t pool_gate, pool_sentinel_ran;
static int pool_after;

static void pool_block(uv_work_t* w) {
  (void)w;
  uv_sem_wait(&pool_gate);
}

static void pool_sentinel_work(uv_work_t* w) {
  (void)w;
  uv_sem_post(&pool_sentinel_ran);
}

static void pool_after_cb(uv_work_t* w, int status) {
  (void)w;
  assert_int_equal(status, 0);
  pool_after++;
}

static void pool_occupy(void) {
  int i;
  pool_after = 0;
  assert_int_equal(uv_sem_init(&pool_gate, 0), 0);
  assert_int_equal(uv_sem_init(&pool_sentinel_ran, 0), 0);
  for (i = 0; i < POOL_THREADS; i++)
    assert_int_equal(uv_queue_work(LOOP, &pool_jobs[i], pool_block, pool_after_cb), 0);
}

static void pool_release(int n) {
  while (n-- > 0)
    uv_sem_post(&pool_gate);
}

static void pool_done(fixture_t* f, int jobs) {
  assert_int_equal(RUN(f), 0);
  assert_int_equal(pool_after, jobs);
  uv_sem_destroy(&pool_gate);
  uv_sem_destroy(&pool_sentinel_ran);
}

static int gai_rc[2], gai_res_null[2], gai_started, gai_done;
static uint64_t gai_timeout;

/* arg: 0 for uvchan_task_getaddrinfo_timeout(gai_timeout), 1 for uvchan_task_getaddrinfo(). */
static void gai_pool_task(void* arg) {
  int k = (int)(intptr_t)arg;
  struct addrinfo hints, *res = (struct addrinfo*)&hints; /* not NULL: the call must clear it */
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST; /* off the network: instant once a thread takes it */
  gai_started++;
  if (k == 0)
    gai_rc[k] = uvchan_task_getaddrinfo_timeout("127.0.0.1", "80", &hints, &res, gai_timeout);
  else
    gai_rc[k] = uvchan_task_getaddrinfo("127.0.0.1", "80", &hints, &res);
  gai_res_null[k] = res == NULL;
  gai_done++;
}

static void gai_reset(uint64_t timeout) {
  gai_rc[0] = gai_rc[1] = 1;
  gai_res_null[0] = gai_res_null[1] = 0;
  gai_started = gai_done = 0;
  gai_timeout = timeout;
}

/* The deadline passes while the lookup waits in the pool's queue: the task gets UV_ETIMEDOUT at
 * once (the pool is still held), uvchan cancels the queued lookup and frees its request when
 * libuv reports the cancel (valgrind's and ASan's leak checks see it). */
static void test_getaddrinfo_deadline_while_queued(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  gai_reset(5);
  pool_occupy();
  assert_int_equal(uvchan_task_spawn(CTX, gai_pool_task, (void*)(intptr_t)0, NULL), 0);
  while (gai_done == 0)
    uv_run(LOOP, UV_RUN_ONCE);
  assert_int_equal(gai_rc[0], UV_ETIMEDOUT);
  assert_int_equal(gai_res_null[0], 1);
  assert_int_equal(pool_after, 0); /* it did not wait for the pool */
  pool_release(POOL_THREADS);
  pool_done(f, POOL_THREADS);
}

/* The deadline passes after the lookup ran but before its result reached the loop: uv_cancel()
 * fails (the work is done), the task still gets UV_ETIMEDOUT, and the late result (an addrinfo
 * list) is freed by uvchan when it arrives. The order is made exact: one pool thread is let go,
 * runs the lookup and then a sentinel job queued behind it (so the lookup is over when the
 * sentinel runs); the test then waits out the deadline before running the loop again, whose
 * next iteration runs due timers before it polls for the pool's completions. */
static void test_getaddrinfo_deadline_late_result_freed(void** state) {
  fixture_t* f = FX(state);
  uint64_t parked_at;
  setup_globals(state);
  gai_reset(1);
  pool_occupy();
  assert_int_equal(uvchan_task_spawn(CTX, gai_pool_task, (void*)(intptr_t)0, NULL), 0);
  while (gai_started == 0)
    assert_int_equal(uv_run(LOOP, UV_RUN_NOWAIT), 1);
  assert_int_equal(gai_done, 0); /* parked in the lookup, its deadline not yet run */
  parked_at = uv_now(LOOP);
  assert_int_equal(uv_queue_work(LOOP, &pool_sentinel, pool_sentinel_work, pool_after_cb), 0);
  pool_release(1);
  uv_sem_wait(&pool_sentinel_ran); /* the lookup has run and queued its result */
  do {
    uv_sleep(1);
    uv_update_time(LOOP);
  } while (uv_now(LOOP) <= parked_at + gai_timeout);
  pool_release(POOL_THREADS - 1);
  pool_done(f, POOL_THREADS + 1);
  assert_int_equal(gai_done, 1);
  assert_int_equal(gai_rc[0], UV_ETIMEDOUT);
  assert_int_equal(gai_res_null[0], 1);
}

/* uvchan_task_cancel() while a lookup waits (with and without a deadline): UV_ECANCELED at once,
 * `*res` NULL, and the queued lookup is cancelled and freed. */
static void test_getaddrinfo_task_cancel(void** state) {
  fixture_t* f = FX(state);
  uvchan_task_ref_t ref[2];
  int k;
  setup_globals(state);
  gai_reset(3600 * 1000);
  pool_occupy();
  for (k = 0; k < 2; k++)
    assert_int_equal(uvchan_task_spawn_ref(CTX, &ref[k], gai_pool_task, (void*)(intptr_t)k, NULL),
                     0);
  while (gai_started < 2)
    assert_int_equal(uv_run(LOOP, UV_RUN_NOWAIT), 1);
  assert_int_equal(gai_done, 0);
  for (k = 0; k < 2; k++)
    assert_int_equal(uvchan_task_cancel(&ref[k]), 0);
  while (gai_done < 2)
    uv_run(LOOP, UV_RUN_ONCE);
  for (k = 0; k < 2; k++) {
    assert_int_equal(gai_rc[k], UV_ECANCELED);
    assert_int_equal(gai_res_null[k], 1);
  }
  assert_int_equal(pool_after, 0);
  pool_release(POOL_THREADS);
  pool_done(f, POOL_THREADS);
}

/* ---- shutdown's deadline: the peer never reads and the writer's queue is over the mark, so
 * the shutdown (which libuv starts after the queued writes) cannot finish ---- */

static uv_tcp_t sd_server;
static int sd_rc, sd_writer_done;
static size_t sd_queued_before, sd_queued_after;

static void sd_peer(void* arg) {
  uv_tcp_t c;
  (void)arg;
  assert_int_equal(connect_to(&c, port), 0);
  while (!sd_writer_done) /* never reads */
    uvchan_task_sleep(5);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
}

static void sd_writer(void* arg) {
  uv_tcp_t c;
  static char chunk[65536];
  ssize_t n = 0;
  int i;
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&sd_server, 8), 0);
  assert_int_equal(uv_tcp_init(LOOP, &c), 0);
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&sd_server, (uv_stream_t*)&c), 0);
  small_buffers((uv_handle_t*)&c);
  assert_int_equal(uvchan_stream_set_hwm((uv_stream_t*)&c, 16 * 1024), 0);
  /* Bounded: at most 1000 writes of 64 KiB before a write's deadline shows the pipe is full. */
  for (i = 0; i < 1000; i++) {
    n = uvchan_task_write_timeout((uv_stream_t*)&c, chunk, sizeof(chunk), 50);
    if (n != (ssize_t)sizeof(chunk))
      break;
  }
  assert_true(n == UV_ETIMEDOUT || (n > 0 && n < (ssize_t)sizeof(chunk)));
  sd_queued_before = uvchan_stream_queued((uv_stream_t*)&c);
  sd_rc = uvchan_task_shutdown_timeout((uv_stream_t*)&c, 20);
  sd_queued_after = uvchan_stream_queued((uv_stream_t*)&c);
  sd_writer_done = 1;
  /* The shutdown is still pending in libuv: the close cancels it with the queued writes, and
   * its request is freed then. */
  assert_int_equal(uvchan_task_close((uv_handle_t*)&c), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&sd_server), 0);
}

static void test_shutdown_deadline(void** state) {
  fixture_t* f = FX(state);
  setup_globals(state);
  sd_rc = 1;
  sd_writer_done = 0;
  sd_queued_before = sd_queued_after = 0;
  listen_any(&sd_server);
  assert_int_equal(uvchan_task_spawn(CTX, sd_writer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, sd_peer, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_true(sd_queued_before >= 16 * 1024); /* at the mark: writes the shutdown waits behind */
  assert_true(sd_queued_after > 0);           /* still there when the deadline passed */
  assert_int_equal(sd_rc, UV_ETIMEDOUT);
  assert_int_equal(sd_writer_done, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_echo_many_clients),
      TEST(test_eof_and_half_close),
      TEST(test_reset),
      TEST(test_deadlines_accept_read),
      TEST(test_deadline_connect),
      TEST(test_nonreading_peer_blocks_writer),
      TEST(test_ledger_random_deadlines),
      TEST(test_pipe_and_handle_data),
      TEST(test_getaddrinfo),
      TEST(test_getaddrinfo_deadline_while_queued),
      TEST(test_getaddrinfo_deadline_late_result_freed),
      TEST(test_getaddrinfo_task_cancel),
      TEST(test_shutdown_deadline),
  };
  /* The getaddrinfo tests hold every thread of libuv's pool: they need its size known. Set
   * before the pool starts (at the first threadpool request of the process). */
  setenv("UV_THREADPOOL_SIZE", POOL_STR(POOL_THREADS), 1);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
