/* Graceful shutdown: one call stops a context with tasks blocked anywhere; every blocked call
 * returns UV_ECANCELED, later ones fail at once, the tasks run to their end, what is left is
 * destroyed, the context closes and uv_loop_close() returns 0. */
#include <signal.h>

#include "test-helpers.h"

static int ended, cancelled_calls, later_refused, dtor_calls, closed_calls;
static uvchan_ctx_t* CTX;
static uv_sem_t gate;

static void count(int status) {
  if (status == UV_ECANCELED)
    cancelled_calls++;
}

/* After its call was cancelled, a task's later blocking calls fail at once, and it can still do
 * its cleanup (close a channel, try-receive). */
static void after(uvchan_t* ch) {
  int v = 0;
  if (uvchan_task_send(ch, &v) == UV_ECANCELED)
    later_refused++;
  ended++;
}

static void t_recv(void* arg) {
  int v;
  count(uvchan_task_recv(arg, &v));
  after(arg);
}
static void t_send(void* arg) {
  int v = 1;
  count(uvchan_task_send(arg, &v));
  after(arg);
}
static void t_select(void* arg) {
  int v = 0;
  uvchan_case_t c[2] = {UVCHAN_CASE_RECV(arg, &v), UVCHAN_CASE_RECV(NULL, &v)};
  count(uvchan_task_select(c, 2, NULL));
  after(arg);
}
static uvchan_wg_t wg;
static void t_wg(void* arg) {
  count(uvchan_task_wg_wait(&wg));
  after(arg);
}
static void t_sleep(void* arg) {
  count(uvchan_task_sleep(1000000));
  after(arg);
}
static void t_nil(void* arg) {
  int v;
  count(uvchan_task_recv(NULL, &v));
  after(arg);
}

typedef struct {
  uv_work_t work;
  uvchan_await_t aw;
} job_t;
static void job_work(uv_work_t* w) {
  (void)w;
  uv_sem_wait(&gate);
}
static void job_after(uv_work_t* w, int status) {
  uvchan_await_done(&((job_t*)w)->aw, status);
}
static void job_cancel(uvchan_await_t* aw) {
  (void)aw;
  uv_sem_post(&gate); /* the running job cannot be uv_cancel()led: let it finish now */
}
static job_t job;
static void t_await(void* arg) {
  uvchan_await_init(&job.aw, job_cancel, NULL);
  assert_int_equal(uv_queue_work(CTX->loop, &job.work, job_work, job_after), 0);
  /* the job ran to its end, so its real result (0) comes back; later calls are refused */
  assert_int_equal(uvchan_task_await(&job.aw), 0);
  after(arg);
}

static void cb_counter(uvchan_recv_t* r, int status) {
  (void)r;
  count(status);
}
static void cb_wg(uvchan_req_t* r, int status) {
  (void)r;
  count(status);
}
static void dtor(uvchan_t* ch, void* v) {
  (void)ch;
  (void)v;
  dtor_calls++;
}
static void on_closed(uvchan_ctx_t* ctx) {
  (void)ctx;
  closed_calls++;
}

static void test_shutdown_with_tasks_blocked_everywhere(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  static uvchan_t ch[8], other, buffered;
  static uvchan_timer_t ticker;
  uvchan_recv_t r;
  uvchan_req_t wr;
  uvchan_task_fn fns[] = {t_recv, t_send, t_select, t_wg, t_sleep, t_nil, t_await};
  enum { NF = sizeof(fns) / sizeof(fns[0]) };
  uvchan_send_t late;
  int v = 3;
  (void)state;

  ended = cancelled_calls = later_refused = dtor_calls = closed_calls = 0;
  assert_int_equal(uv_sem_init(&gate, 0), 0);
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&ctx, 0, sizeof(ctx));
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  CTX = &ctx;
  for (int i = 0; i < NF; i++) /* one channel each: no two of them may meet */
    assert_int_equal(uvchan_init(&ctx, &ch[i], sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&ctx, &other, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&ctx, &buffered, sizeof(int), 4), 0);
  uvchan_set_destructor(&buffered, dtor);
  assert_int_equal(uvchan_try_send(&buffered, &v), 0);
  assert_int_equal(uvchan_try_send(&buffered, &v), 0);
  assert_int_equal(uvchan_wg_init(&ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 1), 0);
  assert_int_equal(uvchan_timer_ticker(&ctx, &ticker, 1000), 0);
  for (int i = 0; i < NF; i++)
    assert_int_equal(uvchan_task_spawn(&ctx, fns[i], &ch[i], NULL), 0);
  memset(&r, 0, sizeof(r));
  memset(&wr, 0, sizeof(wr));
  assert_int_equal(uvchan_recv(&r, &other, &v, cb_counter), 0);
  assert_int_equal(uvchan_wg_wait(&wr, &wg, cb_wg), 0);
  uv_run(&loop, UV_RUN_NOWAIT); /* everyone parks */
  assert_int_equal(ended, 0);
  assert_int_equal(uvchan_ctx_walk_waiting(&ctx, NULL, NULL), NF + 2);

  assert_int_equal(uvchan_ctx_shutdown(&ctx, on_closed), 0);
  assert_int_equal(uvchan_ctx_shutdown(&ctx, on_closed), UV_EINVAL); /* once */
  memset(&late, 0, sizeof(late));
  assert_int_equal(uvchan_send(&late, &other, &v, NULL), UV_EINVAL);
  assert_int_equal(uvchan_send(&late, &other, &v, (uvchan_send_cb)cb_counter), UV_ECANCELED);
  assert_int_equal(uvchan_task_spawn(&ctx, t_nil, &ch[0], NULL), UV_ECANCELED);
  assert_int_equal(closed_calls, 0); /* never inside the call */

  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(ended, NF);
  assert_int_equal(cancelled_calls, NF - 1 + 2); /* the await got its real result */
  assert_int_equal(later_refused, NF);
  assert_int_equal(dtor_calls, 2); /* values left in a channel go to its destructor */
  assert_int_equal(closed_calls, 1);
  assert_int_equal(uvchan_destroy(&ch[0]), UV_EINVAL); /* destroyed by the shutdown */
  assert_int_equal(uvchan_wg_done(&wg), UV_EINVAL); /* its context is closed */
  assert_int_equal(uv_loop_close(&loop), 0);
  uv_sem_destroy(&gate);
}

/* The server idiom: a SIGINT handler (a uv_signal_t) starts the shutdown with one call. */
static uv_signal_t sig;
static void on_sigint(uv_signal_t* s, int signum) {
  (void)signum;
  assert_int_equal(uvchan_ctx_shutdown(s->data, on_closed), 0);
  uv_close((uv_handle_t*)s, NULL); /* our own handle: ours to close */
}

static void raiser(void* arg) {
  (void)arg;
  raise(SIGINT);
}

static void test_shutdown_from_a_signal_handler(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  static uvchan_t ch;
  (void)state;
  ended = cancelled_calls = later_refused = closed_calls = 0;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&ctx, 0, sizeof(ctx));
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_init(&ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uv_signal_init(&loop, &sig), 0);
  sig.data = &ctx;
  assert_int_equal(uv_signal_start(&sig, on_sigint, SIGINT), 0);
  for (int i = 0; i < 100; i++)
    assert_int_equal(uvchan_task_spawn(&ctx, t_recv, &ch, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&ctx, raiser, NULL, NULL), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(ended, 100);
  assert_int_equal(cancelled_calls, 100);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A shutdown with nothing running closes at once (from the loop). */
static void test_shutdown_idle_context(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  (void)state;
  closed_calls = 0;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&ctx, 0, sizeof(ctx));
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_ctx_shutdown(&ctx, on_closed), 0);
  assert_int_equal(closed_calls, 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(uvchan_ctx_shutdown(&ctx, on_closed), UV_EINVAL); /* closed */
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_shutdown_bad_input(void** state) {
  uvchan_ctx_t zero;
  (void)state;
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(uvchan_ctx_shutdown(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_ctx_shutdown(&zero, NULL), UV_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shutdown_with_tasks_blocked_everywhere),
      cmocka_unit_test(test_shutdown_from_a_signal_handler),
      cmocka_unit_test(test_shutdown_idle_context),
      cmocka_unit_test(test_shutdown_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
