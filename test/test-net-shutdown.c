/* Graceful shutdown with tasks blocked in every kind of network call: read, write (a peer that
 * never reads), accept, connect (to a full listener), getaddrinfo (queued behind a busy
 * threadpool) and shutdown (behind a stuck write queue). Every call returns UV_ECANCELED, later
 * calls fail at once, closing works, and the loop closes. */
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "test-helpers.h"

static uv_loop_t loop;
static uvchan_ctx_t ctx;
static int cancelled, refused, closed_ok, ctx_closed, entering;
static uv_sem_t pool_gate;

static void after(uv_handle_t* h) {
  char b;
  if (uvchan_task_read((uv_stream_t*)h, &b, 1) == UV_ECANCELED)
    refused++;
  if (uvchan_task_close(h) == 0) /* cleanup still works */
    closed_ok++;
}

static uv_pipe_t rd_pipe, wr_pipe, sh_pipe;
static uv_tcp_t listener, accepted, connecting;

static void t_read(void* arg) {
  char b[16];
  (void)arg;
  entering++; /* the blocking call comes next */
  if (uvchan_task_read((uv_stream_t*)&rd_pipe, b, sizeof(b)) == UV_ECANCELED)
    cancelled++;
  after((uv_handle_t*)&rd_pipe);
}

static void t_write(void* arg) {
  static char big[1 << 20];
  ssize_t n;
  (void)arg;
  entering++; /* the blocking call comes next */
  n = uvchan_task_write((uv_stream_t*)&wr_pipe, big, sizeof(big));
  if (n == UV_ECANCELED || (n > 0 && n < (ssize_t)sizeof(big))) /* POSIX: partial count */
    cancelled++;
  after((uv_handle_t*)&wr_pipe);
}

static void t_shutdown(void* arg) {
  static char big[1 << 20];
  ssize_t n;
  (void)arg;
  n = uvchan_task_write_timeout((uv_stream_t*)&sh_pipe, big, sizeof(big), 20); /* queue stuck */
  assert_true(n > 0 && n < (ssize_t)sizeof(big));
  entering++; /* the blocking call comes next */
  if (uvchan_task_shutdown((uv_stream_t*)&sh_pipe) == UV_ECANCELED)
    cancelled++;
  after((uv_handle_t*)&sh_pipe);
}

static void t_accept(void* arg) {
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&listener, 8), 0);
  assert_int_equal(uv_tcp_init(&loop, &accepted), 0);
  entering++; /* the blocking call comes next */
  if (uvchan_task_accept((uv_stream_t*)&listener, (uv_stream_t*)&accepted) == UV_ECANCELED)
    cancelled++;
  assert_int_equal(uvchan_task_close((uv_handle_t*)&accepted), 0);
  after((uv_handle_t*)&listener);
}

static int full_port;
static void t_connect(void* arg) {
  struct sockaddr_in addr;
  (void)arg;
  uv_ip4_addr("127.0.0.1", full_port, &addr);
  assert_int_equal(uv_tcp_init(&loop, &connecting), 0);
  entering++; /* the blocking call comes next */
  if (uvchan_task_connect(&connecting, (const struct sockaddr*)&addr) == UV_ECANCELED)
    cancelled++;
  after((uv_handle_t*)&connecting);
}

static void t_getaddrinfo(void* arg) {
  struct addrinfo* res = NULL;
  (void)arg;
  entering++; /* the blocking call comes next */
  if (uvchan_task_getaddrinfo("127.0.0.1", NULL, NULL, &res) == UV_ECANCELED)
    cancelled++;
  assert_null(res);
  if (uvchan_task_getaddrinfo("127.0.0.1", NULL, NULL, &res) == UV_ECANCELED)
    refused++;
  closed_ok++;
}

/* Occupies libuv's only pool thread until the shutdown, so the lookup stays queued. */
static uv_work_t busy;
static void busy_work(uv_work_t* w) {
  (void)w;
  uv_sem_wait(&pool_gate);
}
static void busy_after(uv_work_t* w, int status) {
  (void)w;
  (void)status;
}

static void on_ctx_closed(uvchan_ctx_t* c) {
  (void)c;
  ctx_closed++;
}

static uv_timer_t trigger;
static int ticks_all_in;
/* Shuts down one tick after every task entered its blocking call (so that each is parked in it,
 * however slowly the machine runs: valgrind). */
static void on_trigger(uv_timer_t* t) {
  if (entering < 6 || ticks_all_in++ < 1)
    return;
  assert_int_equal(uvchan_ctx_shutdown(&ctx, on_ctx_closed), 0);
  uv_sem_post(&pool_gate); /* after: the queued lookup was cancelled by the shutdown */
  uv_close((uv_handle_t*)t, NULL);
}

static int full_listener(int* fds, int nfds) {
  struct sockaddr_in addr;
  socklen_t len = sizeof(addr);
  int s = socket(AF_INET, SOCK_STREAM, 0), i;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr*)&addr, sizeof(addr)), 0);
  assert_int_equal(listen(s, 0), 0);
  assert_int_equal(getsockname(s, (struct sockaddr*)&addr, &len), 0);
  for (i = 0; i < nfds; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    (void)connect(fds[i], (struct sockaddr*)&addr, sizeof(addr));
  }
  full_port = ntohs(addr.sin_port);
  return s;
}

static void open_pair(uv_pipe_t* p, int* other) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(uv_pipe_init(&loop, p, 0), 0);
  assert_int_equal(uv_pipe_open(p, sv[0]), 0);
  *other = sv[1]; /* the peer: never reads, never writes */
}

static void test_shutdown_with_tasks_in_every_io_call(void** state) {
  struct sockaddr_in addr;
  int peers[3], fill[3], s, i;
  uvchan_task_fn fns[] = {t_read, t_write, t_shutdown, t_accept, t_connect, t_getaddrinfo};
  enum { NF = sizeof(fns) / sizeof(fns[0]) };
  (void)state;

  signal(SIGPIPE, SIG_IGN);
  cancelled = refused = closed_ok = ctx_closed = entering = ticks_all_in = 0;
  assert_int_equal(uv_sem_init(&pool_gate, 0), 0);
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&ctx, 0, sizeof(ctx));
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  open_pair(&rd_pipe, &peers[0]);
  open_pair(&wr_pipe, &peers[1]);
  open_pair(&sh_pipe, &peers[2]);
  assert_int_equal(uv_tcp_init(&loop, &listener), 0);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&listener, (const struct sockaddr*)&addr, 0), 0);
  s = full_listener(fill, 3);
  assert_int_equal(uv_queue_work(&loop, &busy, busy_work, busy_after), 0);
  for (i = 0; i < NF; i++)
    assert_int_equal(uvchan_task_spawn(&ctx, fns[i], NULL, NULL), 0);
  assert_int_equal(uv_timer_init(&loop, &trigger), 0);
  assert_int_equal(uv_timer_start(&trigger, on_trigger, 10, 10), 0);

  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(cancelled, NF);
  assert_int_equal(refused, NF);
  assert_int_equal(closed_ok, NF);
  assert_int_equal(ctx_closed, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
  for (i = 0; i < 3; i++) {
    close(peers[i]);
    close(fill[i]);
  }
  close(s);
  uv_sem_destroy(&pool_gate);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shutdown_with_tasks_in_every_io_call),
  };
  /* One pool thread, so that one busy job holds the lookup in the queue. */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
