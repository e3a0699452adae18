/* Waking a loop from another thread: the spin before the poll and the uv_async_send() it saves.
 *
 * A loop that waits on a shared channel spins for a while before it sleeps; a waker that sees it
 * spinning skips uv_async_send(). These tests hand values to a loop at random moments around the
 * end of its spin, many thousands of times: a wake-up lost between the spinner's last look at its
 * inbox and its sleep would leave the loop asleep with a completion in its inbox, and the test
 * would hang (ctest's timeout fails it). No timing is asserted. */
#include "test-helpers.h"

#include <stdatomic.h>

/* Busy-waits about `ns` nanoseconds (a sleep would be far too coarse for a spin of microseconds). */
static void busy_ns(uint64_t ns) {
  uint64_t end = uv_hrtime() + ns;
  while (uv_hrtime() < end) {
  }
}

static uint64_t rng_next(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t in, out; /* the loop's ends */
  unsigned spin_us;
  long rounds;
  long got;
  long sum;
} side_t;

static uvchan_t to_loop, from_loop;
static uv_loop_t main_loop;
static uvchan_ctx_t main_ctx;

/* The loop's task: receives a value and sends it back plus one, until the channel closes. */
static void echo_task(void* arg) {
  side_t* s = arg;
  long v;
  while (uvchan_task_recv(&s->in, &v) == 0) {
    s->got++;
    s->sum += v;
    v++;
    assert_int_equal(uvchan_task_send(&s->out, &v), 0);
  }
  assert_int_equal(uvchan_destroy(&s->in), 0);
  assert_int_equal(uvchan_destroy(&s->out), 0);
}

static void loop_thread(void* arg) {
  side_t* s = arg;
  assert_int_equal(uv_loop_init(&s->loop), 0);
  memset(&s->ctx, 0, sizeof(s->ctx));
  assert_int_equal(uvchan_ctx_init(&s->loop, &s->ctx), 0);
  assert_int_equal(uvchan_ctx_set_spin(&s->ctx, s->spin_us), 0);
  assert_int_equal(uvchan_attach(&s->ctx, &s->in, &to_loop), 0);
  assert_int_equal(uvchan_attach(&s->ctx, &s->out, &from_loop), 0);
  assert_int_equal(uvchan_task_spawn(&s->ctx, echo_task, s, NULL), 0);
  assert_int_equal(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uvchan_ctx_close(&s->ctx, NULL), 0);
  assert_int_equal(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&s->loop), 0);
}

/* A thread without a loop sends each value after a random pause of 0 to 3 spins, and waits for
 * the answer: both directions cross the spin's end over and over. */
static void run_rounds(unsigned spin_us, long rounds, size_t cap) {
  side_t s;
  uv_thread_t th;
  uint64_t seed = 0x9e3779b97f4a7c15ull ^ spin_us;
  long v, expect_sum = 0;

  memset(&s, 0, sizeof(s));
  s.spin_us = spin_us;
  s.rounds = rounds;
  assert_int_equal(uv_loop_init(&main_loop), 0);
  memset(&main_ctx, 0, sizeof(main_ctx));
  assert_int_equal(uvchan_ctx_init(&main_loop, &main_ctx), 0);
  assert_int_equal(uvchan_init_shared(&main_ctx, &to_loop, sizeof(long), cap), 0);
  assert_int_equal(uvchan_init_shared(&main_ctx, &from_loop, sizeof(long), cap), 0);
  assert_int_equal(uv_thread_create(&th, loop_thread, &s), 0);
  for (long i = 0; i < rounds; i++) {
    busy_ns(rng_next(&seed) % (3 * (uint64_t)spin_us * 1000 + 1));
    assert_int_equal(uvchan_thread_send(&to_loop, &i), 0);
    expect_sum += i;
    assert_int_equal(uvchan_thread_recv(&from_loop, &v), 0);
    assert_int_equal(v, i + 1);
  }
  assert_int_equal(uvchan_close(&to_loop), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(s.got, rounds);
  assert_int_equal(s.sum, expect_sum);
  assert_int_equal(uvchan_destroy(&to_loop), 0);
  assert_int_equal(uvchan_destroy(&from_loop), 0);
  assert_int_equal(uvchan_ctx_close(&main_ctx, NULL), 0);
  assert_int_equal(uv_run(&main_loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&main_loop), 0);
}

static void test_thread_wake_no_lost_wakeup_short_spin(void** state) {
  (void)state;
  run_rounds(2, 20000, 0);
}

static void test_thread_wake_no_lost_wakeup_buffered(void** state) {
  (void)state;
  run_rounds(5, 10000, 1);
}

static void test_thread_wake_without_spinning(void** state) {
  (void)state;
  run_rounds(0, 3000, 0); /* every hop is a uv_async_send() and a wake-up */
}

/* ---- the spin leaves the loop's own work alone ---- */

/* A loop whose task waits on a shared channel that no one ever feeds still runs its timers, and
 * its task's deadline ends the wait: spinning never delays the loop past what is due. */
static int timer_fired;
static void on_timer(uv_timer_t* t) {
  timer_fired++;
  uv_close((uv_handle_t*)t, NULL);
}

static void waits_with_deadline(void* arg) {
  long v;
  assert_int_equal(uvchan_task_recv(arg, &v), 0); /* from the threadpool: the loop spins next */
  assert_int_equal(v, 42);
  assert_int_equal(uvchan_task_recv_timeout(arg, &v, 30), UV_ETIMEDOUT);
}

static void feed_from_pool(uv_work_t* w) {
  long v = 42;
  while (uvchan_try_send(w->data, &v) == UV_EAGAIN) /* until the task waits */
    uv_sleep(1);
}

static void fed(uv_work_t* w, int status) {
  (void)w;
  assert_int_equal(status, 0);
}

static void test_thread_wake_spin_keeps_timers(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uv_timer_t t;
  uv_work_t w;

  assert_int_equal(uvchan_ctx_set_spin(&f->ctx, 1000000), 0); /* a whole second, if unbounded */
  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, sizeof(long), 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, waits_with_deadline, &ch, NULL), 0);
  w.data = &ch;
  assert_int_equal(uv_queue_work(&f->loop, &w, feed_from_pool, fed), 0);
  assert_int_equal(uv_timer_init(&f->loop, &t), 0);
  assert_int_equal(uv_timer_start(&t, on_timer, 10, 0), 0);
  RUN(f);
  assert_int_equal(timer_fired, 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A busy ping-pong between two loops never lets the spin end by itself: loop A's timer and its
 * I/O must still be served while it goes on. The ping-pong only stops once both came, so a loop
 * that starved either would hang the test. */
#include <sys/socket.h>
#include <unistd.h>

static uvchan_t busy_a, busy_b;
static int busy_timer_fired, busy_io_seen, busy_fds[2];
static long busy_rounds;

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t a, b;
  uv_thread_t thread;
  int pinger;
  uv_timer_t timer;
  uv_pipe_t pipe;
  char buf[8];
} busy_side_t;

static void busy_on_timer(uv_timer_t* t) {
  busy_timer_fired = 1;
  uv_close((uv_handle_t*)t, NULL);
}

static void busy_alloc(uv_handle_t* h, size_t size, uv_buf_t* buf) {
  busy_side_t* s = h->data;
  (void)size;
  *buf = uv_buf_init(s->buf, sizeof(s->buf));
}

static void busy_on_read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
  (void)buf;
  if (n > 0) {
    busy_io_seen = 1;
    uv_close((uv_handle_t*)st, NULL);
  }
}

static void busy_ping(void* arg) {
  busy_side_t* s = arg;
  long v = 0;
  while (!(busy_timer_fired && busy_io_seen)) {
    assert_int_equal(uvchan_task_send(&s->a, &v), 0);
    assert_int_equal(uvchan_task_recv(&s->b, &v), 0);
    busy_rounds++;
  }
  assert_int_equal(uvchan_close(&s->a), 0);
}

static void busy_pong(void* arg) {
  busy_side_t* s = arg;
  long v;
  while (uvchan_task_recv(&s->a, &v) == 0) {
    v++;
    assert_int_equal(uvchan_task_send(&s->b, &v), 0);
  }
}

static void busy_loop(void* arg) {
  busy_side_t* s = arg;
  assert_int_equal(uv_loop_init(&s->loop), 0);
  memset(&s->ctx, 0, sizeof(s->ctx));
  assert_int_equal(uvchan_ctx_init(&s->loop, &s->ctx), 0);
  assert_int_equal(uvchan_ctx_set_spin(&s->ctx, 1000000), 0); /* only the spin's own limits */
  assert_int_equal(uvchan_attach(&s->ctx, &s->a, &busy_a), 0);
  assert_int_equal(uvchan_attach(&s->ctx, &s->b, &busy_b), 0);
  if (s->pinger) {
    assert_int_equal(uv_timer_init(&s->loop, &s->timer), 0);
    assert_int_equal(uv_timer_start(&s->timer, busy_on_timer, 20, 0), 0);
    assert_int_equal(uv_pipe_init(&s->loop, &s->pipe, 0), 0);
    assert_int_equal(uv_pipe_open(&s->pipe, busy_fds[0]), 0);
    s->pipe.data = s;
    assert_int_equal(uv_read_start((uv_stream_t*)&s->pipe, busy_alloc, busy_on_read), 0);
  }
  assert_int_equal(uvchan_task_spawn(&s->ctx, s->pinger ? busy_ping : busy_pong, s, NULL), 0);
  assert_int_equal(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uvchan_destroy(&s->a), 0);
  assert_int_equal(uvchan_destroy(&s->b), 0);
  assert_int_equal(uvchan_ctx_close(&s->ctx, NULL), 0);
  assert_int_equal(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&s->loop), 0);
}

static void test_thread_wake_busy_pingpong_keeps_timers_and_io(void** state) {
  busy_side_t sides[2];
  (void)state;
  memset(sides, 0, sizeof(sides));
  busy_timer_fired = busy_io_seen = 0;
  busy_rounds = 0;
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, busy_fds), 0);
  assert_int_equal(uv_loop_init(&main_loop), 0);
  memset(&main_ctx, 0, sizeof(main_ctx));
  assert_int_equal(uvchan_ctx_init(&main_loop, &main_ctx), 0);
  assert_int_equal(uvchan_init_shared(&main_ctx, &busy_a, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init_shared(&main_ctx, &busy_b, sizeof(long), 0), 0);
  sides[0].pinger = 1;
  for (int i = 0; i < 2; i++)
    assert_int_equal(uv_thread_create(&sides[i].thread, busy_loop, &sides[i]), 0);
  uv_sleep(30);
  assert_int_equal(write(busy_fds[1], "x", 1), 1); /* I/O for loop A, mid ping-pong */
  for (int i = 0; i < 2; i++)
    assert_int_equal(uv_thread_join(&sides[i].thread), 0);
  assert_int_equal(busy_timer_fired, 1);
  assert_int_equal(busy_io_seen, 1);
  assert_true(busy_rounds > 0);
  close(busy_fds[1]);
  assert_int_equal(uvchan_destroy(&busy_a), 0);
  assert_int_equal(uvchan_destroy(&busy_b), 0);
  assert_int_equal(uvchan_ctx_close(&main_ctx, NULL), 0);
  assert_int_equal(uv_run(&main_loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&main_loop), 0);
}

static void test_thread_wake_bad_input(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t bad;
  memset(&bad, 0, sizeof(bad));
  assert_int_equal(uvchan_ctx_set_spin(NULL, 10), UV_EINVAL);
  assert_int_equal(uvchan_ctx_set_spin(&bad, 10), UV_EINVAL);
  assert_int_equal(uvchan_ctx_set_spin(&f->ctx, 0), 0);
}

static void set_spin_elsewhere(void* arg) {
  *(int*)((void**)arg)[1] = uvchan_ctx_set_spin(((void**)arg)[0], 5);
}

static void test_thread_wake_set_spin_wrong_thread(void** state) {
  fixture_t* f = FX(state);
  uv_thread_t th;
  int code = 0;
  void* args[2] = {&f->ctx, &code};
  assert_int_equal(uv_thread_create(&th, set_spin_elsewhere, args), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(code, UV_EPERM);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thread_wake_no_lost_wakeup_short_spin),
      cmocka_unit_test(test_thread_wake_no_lost_wakeup_buffered),
      cmocka_unit_test(test_thread_wake_without_spinning),
      TEST(test_thread_wake_spin_keeps_timers),
      cmocka_unit_test(test_thread_wake_busy_pingpong_keeps_timers_and_io),
      TEST(test_thread_wake_bad_input),
      TEST(test_thread_wake_set_spin_wrong_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
