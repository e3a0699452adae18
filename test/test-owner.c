/* A context belongs to one thread: calls from any other thread (a uv_queue_work() work callback,
 * a plain thread) return UV_EPERM and change nothing. The context moves with its loop: the thread
 * that runs its delivery becomes its owner. */
#include "test-helpers.h"

typedef struct {
  uvchan_ctx_t* ctx;
  uvchan_t* ch;
  uvchan_wg_t* wg;
  int codes[18];
  int n;
} foreign_t;

static void nop_task(void* arg) {
  (void)arg;
}

static void nop_sel(uvchan_select_t* r, int s) {
  (void)r;
  (void)s;
}

static void nop_wg(uvchan_req_t* r, int s) {
  (void)r;
  (void)s;
}

/* Every non-thread-safe call a foreign thread might make. */
static void foreign_calls(foreign_t* x) {
  int v = 7;
  uvchan_send_t s;
  uvchan_recv_t r;
  uvchan_select_t sel;
  uvchan_req_t w;
  uvchan_t other;
  uvchan_timer_t tm;
  uvchan_case_t c[1] = {UVCHAN_CASE_RECV(x->ch, &v)};

  memset(&s, 0, sizeof(s));
  memset(&r, 0, sizeof(r));
  memset(&sel, 0, sizeof(sel));
  memset(&w, 0, sizeof(w));
  memset(&other, 0, sizeof(other));
  memset(&tm, 0, sizeof(tm));
  x->n = 0;
  x->codes[x->n++] = uvchan_try_send(x->ch, &v);
  x->codes[x->n++] = uvchan_try_recv(x->ch, &v);
  x->codes[x->n++] = uvchan_send(&s, x->ch, &v, nop_send);
  x->codes[x->n++] = uvchan_recv(&r, x->ch, &v, nop_recv);
  x->codes[x->n++] = uvchan_select(&sel, c, 1, nop_sel);
  x->codes[x->n++] = uvchan_try_select(c, 1, NULL);
  x->codes[x->n++] = uvchan_set_destructor(x->ch, NULL);
  x->codes[x->n++] = uvchan_set_overflow(x->ch, UVCHAN_OVERFLOW_BLOCK);
  x->codes[x->n++] = uvchan_close(x->ch);
  x->codes[x->n++] = uvchan_destroy(x->ch);
  x->codes[x->n++] = uvchan_init(x->ctx, &other, sizeof(int), 1);
  x->codes[x->n++] = uvchan_wg_add(x->wg, 1);
  x->codes[x->n++] = uvchan_wg_wait(&w, x->wg, nop_wg);
  x->codes[x->n++] = uvchan_wg_init(x->ctx, x->wg);
  x->codes[x->n++] = uvchan_task_spawn(x->ctx, nop_task, NULL, NULL);
  x->codes[x->n++] = uvchan_timer_after(x->ctx, &tm, 10);
  x->codes[x->n++] = uvchan_ctx_shutdown(x->ctx, NULL);
  x->codes[x->n++] = uvchan_ctx_close(x->ctx, NULL);
}

static void assert_all_eperm(const foreign_t* x) {
  for (int i = 0; i < x->n; i++) {
    if (x->codes[i] != UV_EPERM)
      fail_msg("call %d from the wrong thread returned %d, not UV_EPERM", i, x->codes[i]);
  }
}

/* The state the foreign calls must have left alone: one buffered value, the wait group at 1. */
static void assert_untouched(fixture_t* f, uvchan_t* ch, uvchan_wg_t* wg) {
  int v = 0;
  assert_int_equal(uvchan_len(ch), 1);
  assert_int_equal(uvchan_is_closed(ch), 0);
  assert_int_equal(uvchan_wg_count(wg), 1);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 0);
  assert_int_equal(uvchan_try_recv(ch, &v), 0);
  assert_int_equal(v, 41);
}

static void work_cb(uv_work_t* req) {
  foreign_calls(req->data);
}

/* A channel holding one value and a wait group at 1, for the calls of another thread. */
static void foreign_setup(fixture_t* f, uvchan_t* ch, uvchan_wg_t* wg, foreign_t* x) {
  int v = 41;
  assert_int_equal(uvchan_init(&f->ctx, ch, sizeof(int), 2), 0);
  assert_int_equal(uvchan_try_send(ch, &v), 0);
  assert_int_equal(uvchan_wg_init(&f->ctx, wg), 0);
  assert_int_equal(uvchan_wg_add(wg, 1), 0);
  x->ctx = &f->ctx;
  x->ch = ch;
  x->wg = wg;
}

static int after_work_calls;
static void after_work_cb(uv_work_t* req, int status) {
  (void)req;
  assert_int_equal(status, 0);
  after_work_calls++;
}

static void test_owner_work_callback_gets_eperm(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_wg_t wg;
  uv_work_t work;
  foreign_t x;

  foreign_setup(f, &ch, &wg, &x);
  work.data = &x;
  after_work_calls = 0;
  assert_int_equal(uv_queue_work(&f->loop, &work, work_cb, after_work_cb), 0);
  RUN(f);
  assert_int_equal(after_work_calls, 1);
  assert_int_equal(x.n, 18);
  assert_all_eperm(&x);
  assert_untouched(f, &ch, &wg);
  assert_int_equal(uvchan_wg_done(&wg), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void thread_main(void* arg) {
  foreign_calls(arg);
}

static void test_owner_plain_thread_gets_eperm(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_wg_t wg;
  uv_thread_t th;
  foreign_t x;

  foreign_setup(f, &ch, &wg, &x);
  assert_int_equal(uv_thread_create(&th, thread_main, &x), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_all_eperm(&x);
  assert_untouched(f, &ch, &wg);
  assert_int_equal(uvchan_wg_done(&wg), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A loop created on one thread and run on another: the context follows its loop. */
typedef struct {
  uv_loop_t* loop;
  uvchan_t* ch;
  int got;
  int status;
} runner_t;

static void got_value(uvchan_recv_t* req, int status) {
  runner_t* r = req->data;
  r->status = status;
}

static void runner_main(void* arg) {
  runner_t* r = arg;
  uv_run(r->loop, UV_RUN_DEFAULT);
}

static void test_owner_follows_the_thread_that_runs_the_loop(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t req;
  uv_thread_t th;
  runner_t r = {&f->loop, &ch, 0, 1};
  int v = 5;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  req.data = &r;
  assert_int_equal(uvchan_recv(&req, &ch, &r.got, got_value), 0);
  assert_int_equal(uv_thread_create(&th, runner_main, &r), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.got, 5);
  /* The delivery ran on the other thread, which now owns the context. */
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EPERM);
  assert_int_equal(uvchan_recv(&req, &ch, &r.got, got_value), UV_EPERM);
  assert_int_equal(uvchan_destroy(&ch), UV_EPERM);
  assert_int_equal(uvchan_len(&ch), 0);
  /* This thread takes the loop back, explicitly, once the other one is done with it. */
  assert_int_equal(uvchan_ctx_bind_thread(&f->ctx), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_try_recv(&ch, &r.got), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_owner_work_callback_gets_eperm),
      TEST(test_owner_plain_thread_gets_eperm),
      TEST(test_owner_follows_the_thread_that_runs_the_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
