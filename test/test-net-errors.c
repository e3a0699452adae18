/* Bad input to the network calls: each gets the code docs/errors.md lists for it. */
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include "test-helpers.h"

static uv_loop_t* LOOP;
static uvchan_ctx_t* CTX;
static int done;

static void open_pair(uv_pipe_t* p, int* other) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(uv_pipe_init(LOOP, p, 0), 0);
  assert_int_equal(uv_pipe_open(p, sv[0]), 0);
  *other = sv[1];
}

/* Outside a task every call is UV_EINVAL; the queries answer 0. */
static void test_outside_a_task(void** state) {
  fixture_t* f = FX(state);
  uv_tcp_t tcp;
  struct addrinfo* res;
  struct sockaddr_in addr;
  char b;
  assert_int_equal(uv_tcp_init(&f->loop, &tcp), 0);
  uv_ip4_addr("127.0.0.1", 1, &addr);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&tcp, &b, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_read_timeout((uv_stream_t*)&tcp, &b, 1, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&tcp, &b, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_write_timeout((uv_stream_t*)&tcp, &b, 1, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&tcp), UV_EINVAL);
  assert_int_equal(uvchan_task_shutdown_timeout((uv_stream_t*)&tcp, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tcp), UV_EINVAL);
  assert_int_equal(uvchan_task_connect(&tcp, (const struct sockaddr*)&addr), UV_EINVAL);
  assert_int_equal(uvchan_task_connect_timeout(&tcp, (const struct sockaddr*)&addr, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&tcp, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&tcp, (uv_stream_t*)&tcp), UV_EINVAL);
  assert_int_equal(uvchan_task_accept_timeout((uv_stream_t*)&tcp, (uv_stream_t*)&tcp, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_getaddrinfo("127.0.0.1", NULL, NULL, &res), UV_EINVAL);
  assert_int_equal(uvchan_task_getaddrinfo_timeout("127.0.0.1", NULL, NULL, &res, 1), UV_EINVAL);
  assert_int_equal(uvchan_stream_set_hwm((uv_stream_t*)&tcp, 1), UV_EINVAL);
  assert_int_equal(uvchan_stream_queued(NULL), 0);
  assert_int_equal(uvchan_stream_queued((uv_stream_t*)&tcp), 0);
  uv_close((uv_handle_t*)&tcp, NULL);
  assert_int_equal(RUN(f), 0);
}

static uv_loop_t other_loop;

static void bad_args(void* arg) {
  uv_pipe_t* p = arg;
  static uv_tcp_t foreign;
  uv_tcp_t tcp;
  uv_timer_t timer;
  struct addrinfo* res;
  char b;
  assert_int_equal(uvchan_task_read(NULL, &b, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_write(NULL, &b, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_shutdown(NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_close(NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_connect(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_listen(NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_accept(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_read((uv_stream_t*)p, NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_write((uv_stream_t*)p, NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_read((uv_stream_t*)p, NULL, 0), 0);
  assert_int_equal(uvchan_task_write((uv_stream_t*)p, NULL, 0), 0);
  assert_int_equal(uvchan_task_getaddrinfo(NULL, NULL, NULL, &res), UV_EINVAL);
  assert_int_equal(uvchan_task_getaddrinfo("127.0.0.1", NULL, NULL, NULL), UV_EINVAL);
  /* a handle of another loop */
  assert_int_equal(uv_tcp_init(&other_loop, &foreign), 0);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&foreign, &b, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&foreign), UV_EINVAL);
  uv_close((uv_handle_t*)&foreign, NULL);
  /* not a stream */
  assert_int_equal(uv_timer_init(LOOP, &timer), 0);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&timer, &b, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&timer, &b, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&timer), 0); /* any handle closes */
  /* a connect with no address; accept on a stream nobody listens on */
  assert_int_equal(uv_tcp_init(LOOP, &tcp), 0);
  assert_int_equal(uvchan_task_connect(&tcp, NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_accept((uv_stream_t*)&tcp, (uv_stream_t*)p), UV_EINVAL);
  /* uvchan's own handles are not the caller's to close */
  assert_int_equal(uvchan_task_close((uv_handle_t*)&CTX->timer_), UV_EINVAL);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tcp), 0);
  /* closed handles: UV_EBADF, also a second close */
  assert_int_equal(uvchan_task_read((uv_stream_t*)&tcp, &b, 1), UV_EBADF);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&tcp, &b, 1), UV_EBADF);
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&tcp), UV_EBADF);
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&tcp, 1), UV_EBADF);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tcp), UV_EBADF);
  assert_int_equal(uvchan_stream_set_hwm((uv_stream_t*)&tcp, 1), UV_EBADF);
  done++;
}

static void test_bad_arguments_and_closed_handles(void** state) {
  fixture_t* f = FX(state);
  uv_pipe_t p;
  int other;
  LOOP = &f->loop;
  CTX = &f->ctx;
  done = 0;
  assert_int_equal(uv_loop_init(&other_loop), 0);
  open_pair(&p, &other);
  assert_int_equal(uvchan_task_spawn(CTX, bad_args, &p, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(done, 1);
  uv_close((uv_handle_t*)&p, NULL);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uv_run(&other_loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&other_loop), 0);
  close(other);
}

/* Two readers (or two waiting writers) on one stream: the second gets UV_EBUSY, and so does a
 * read of a stream the application reads itself. */
static uv_pipe_t busy_pipe;
static int busy_other;

static void first_reader(void* arg) {
  char b;
  (void)arg;
  assert_int_equal(uvchan_task_read_timeout((uv_stream_t*)&busy_pipe, &b, 1, 50), UV_ETIMEDOUT);
  done++;
}

static void second_reader(void* arg) {
  char b;
  static char big[1 << 20];
  (void)arg;
  assert_int_equal(uvchan_task_read((uv_stream_t*)&busy_pipe, &b, 1), UV_EBUSY);
  /* a writer blocked by a peer that never reads; a second writer meanwhile */
  done++;
  assert_true(uvchan_task_write_timeout((uv_stream_t*)&busy_pipe, big, sizeof(big), 50) > 0);
  done++;
}

static void second_writer(void* arg) {
  (void)arg;
  uvchan_task_sleep(10);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&busy_pipe, "x", 1), UV_EBUSY);
  done++;
}

static void on_app_alloc(uv_handle_t* h, size_t s, uv_buf_t* b) {
  (void)h;
  (void)s;
  b->base = NULL;
  b->len = 0;
}
static void on_app_read(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
  (void)s;
  (void)n;
  (void)b;
}
static void app_reads(void* arg) {
  char b;
  (void)arg;
  uvchan_task_sleep(100); /* after the others */
  assert_int_equal(uv_read_start((uv_stream_t*)&busy_pipe, on_app_alloc, on_app_read), 0);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&busy_pipe, &b, 1), UV_EBUSY);
  assert_int_equal(uv_read_stop((uv_stream_t*)&busy_pipe), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&busy_pipe), 0);
  done++;
}

static void test_two_readers_two_writers(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  CTX = &f->ctx;
  done = 0;
  signal(SIGPIPE, SIG_IGN);
  open_pair(&busy_pipe, &busy_other);
  assert_int_equal(uvchan_task_spawn(CTX, first_reader, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, second_reader, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, second_writer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, app_reads, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(done, 5);
  close(busy_other);
}

/* IPC pipes carry handles: not readable through uvchan; listen twice is UV_EBUSY; a failed
 * queued write comes back from the next write and from shutdown. */
static void misc_task(void* arg) {
  uv_pipe_t ipc;
  uv_tcp_t server;
  struct sockaddr_in addr;
  char b;
  (void)arg;
  assert_int_equal(uv_pipe_init(LOOP, &ipc, 1), 0);
  assert_int_equal(uvchan_task_read((uv_stream_t*)&ipc, &b, 1), UV_ENOTSUP);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&ipc), 0);
  assert_int_equal(uv_tcp_init(LOOP, &server), 0);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&server, (const struct sockaddr*)&addr, 0), 0);
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&server, 1), 0);
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&server, 1), UV_EBUSY);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&server), 0);
  done++;
}

static uv_pipe_t err_pipe;
static int err_other;
static void write_error_task(void* arg) {
  static char big[1 << 20];
  ssize_t n;
  (void)arg;
  n = uvchan_task_write_timeout((uv_stream_t*)&err_pipe, big, sizeof(big), 20);
  assert_true(n > 0 && n < (ssize_t)sizeof(big)); /* some queued */
  close(err_other); /* the peer goes away: the queued chunks fail */
  uvchan_task_sleep(20);
  n = uvchan_task_write((uv_stream_t*)&err_pipe, "x", 1);
  assert_true(n == UV_EPIPE || n == UV_ECONNRESET);
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&err_pipe), n);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&err_pipe), 0);
  done++;
}

static void test_misc_codes(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  CTX = &f->ctx;
  done = 0;
  signal(SIGPIPE, SIG_IGN);
  open_pair(&err_pipe, &err_other);
  assert_int_equal(uvchan_task_spawn(CTX, misc_task, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, write_error_task, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(done, 2);
}

/* A stream the application closes itself (uv_close) while uvchan still has writes queued:
 * uvchan forgets it on the way, and the context closes. */
static uv_pipe_t own_pipe;
static int own_other;
static void own_close_task(void* arg) {
  static char big[1 << 20];
  (void)arg;
  assert_true(uvchan_task_write_timeout((uv_stream_t*)&own_pipe, big, sizeof(big), 20) > 0);
  uv_close((uv_handle_t*)&own_pipe, NULL);
  done++;
}

static void test_application_closes_stream_itself(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  CTX = &f->ctx;
  done = 0;
  open_pair(&own_pipe, &own_other);
  assert_int_equal(uvchan_task_spawn(CTX, own_close_task, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(done, 1);
  close(own_other);
}

/* uvchan_task_close() of a stream that tasks are blocked on: each of them returns UV_ECANCELED
 * (a writer that had bytes accepted returns their count), and none touches the state again. */
static uv_pipe_t cl_rd, cl_wr;
static uv_tcp_t cl_listener, cl_client;
static int cl_other[2], closed_under;

static void blocked_reader(void* arg) {
  char b;
  (void)arg;
  if (uvchan_task_read((uv_stream_t*)&cl_rd, &b, 1) == UV_ECANCELED)
    closed_under++;
}

static void blocked_writer(void* arg) {
  static char big[1 << 20];
  ssize_t n;
  (void)arg;
  n = uvchan_task_write((uv_stream_t*)&cl_wr, big, sizeof(big));
  if (n > 0 && n < (ssize_t)sizeof(big))
    closed_under++;
}

static void blocked_acceptor(void* arg) {
  (void)arg;
  assert_int_equal(uvchan_task_listen((uv_stream_t*)&cl_listener, 1), 0);
  assert_int_equal(uv_tcp_init(LOOP, &cl_client), 0);
  if (uvchan_task_accept((uv_stream_t*)&cl_listener, (uv_stream_t*)&cl_client) == UV_ECANCELED)
    closed_under++;
  assert_int_equal(uvchan_task_close((uv_handle_t*)&cl_client), 0);
}

static void closer(void* arg) {
  (void)arg;
  uvchan_task_sleep(20); /* the others are parked by now */
  assert_int_equal(uvchan_task_close((uv_handle_t*)&cl_rd), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&cl_wr), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&cl_listener), 0);
  done++;
}

static void test_close_under_blocked_tasks(void** state) {
  fixture_t* f = FX(state);
  struct sockaddr_in addr;
  LOOP = &f->loop;
  CTX = &f->ctx;
  done = closed_under = 0;
  signal(SIGPIPE, SIG_IGN);
  open_pair(&cl_rd, &cl_other[0]);
  open_pair(&cl_wr, &cl_other[1]);
  assert_int_equal(uv_tcp_init(LOOP, &cl_listener), 0);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&cl_listener, (const struct sockaddr*)&addr, 0), 0);
  assert_int_equal(uvchan_task_spawn(CTX, blocked_reader, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, blocked_writer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, blocked_acceptor, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, closer, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(done, 1);
  assert_int_equal(closed_under, 3);
  close(cl_other[0]);
  close(cl_other[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_outside_a_task),
      TEST(test_bad_arguments_and_closed_handles),
      TEST(test_two_readers_two_writers),
      TEST(test_misc_codes),
      TEST(test_application_closes_stream_itself),
      TEST(test_close_under_blocked_tasks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
