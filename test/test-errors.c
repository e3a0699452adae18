/* Bad input and wrong state for every public function: an error code, never a crash. Each
 * block below is a row group of docs/errors.md. */
#include <limits.h>

#include "test-helpers.h"

static void nop_sel(uvchan_select_t* r, int s) {
  (void)r;
  (void)s;
}
static void nop_req(uvchan_req_t* r, int s) {
  (void)r;
  (void)s;
}
static void nop_task(void* arg) {
  (void)arg;
}

static void test_errors_ctx(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero;
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(uvchan_ctx_init(NULL, &zero), UV_EINVAL);
  assert_int_equal(uvchan_ctx_init(&f->loop, NULL), UV_EINVAL);
  assert_int_equal(uvchan_ctx_close(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_ctx_close(&zero, NULL), UV_EINVAL); /* never initialised */
  assert_int_equal(uvchan_ctx_set_batch(&f->ctx, 0), UV_EINVAL);
  assert_int_equal(uvchan_ctx_set_batch(NULL, 10), UV_EINVAL);
  assert_int_equal(uvchan_ctx_seed(NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_ctx_set_trace(NULL, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_ctx_walk_waiting(NULL, NULL, NULL), 0);
  assert_int_equal(uvchan_ctx_report(NULL, stderr), 0);
}

static void test_errors_chan_init(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero;
  uvchan_t ch;
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(uvchan_init(NULL, &ch, 4, 1), UV_EINVAL);
  assert_int_equal(uvchan_init(&zero, &ch, 4, 1), UV_EINVAL);
  assert_int_equal(uvchan_init(&f->ctx, NULL, 4, 1), UV_EINVAL);
  assert_int_equal(uvchan_init(&f->ctx, &ch, SIZE_MAX / 2, 4), UV_EINVAL); /* overflow */
  assert_int_equal(uvchan_init(&f->ctx, &ch, 1, SIZE_MAX / 2), UV_ENOMEM);
}

static void test_errors_chan_ops_null_and_uninitialised(void** state) {
  uvchan_t zero;
  uvchan_send_t s;
  uvchan_recv_t r;
  int v = 0;
  (void)state;
  memset(&zero, 0, sizeof(zero));
  memset(&s, 0, sizeof(s));
  memset(&r, 0, sizeof(r));
  assert_int_equal(uvchan_destroy(NULL), UV_EINVAL);
  assert_int_equal(uvchan_destroy(&zero), UV_EINVAL);
  assert_int_equal(uvchan_close(NULL), UV_EINVAL);
  assert_int_equal(uvchan_close(&zero), UV_EINVAL);
  assert_int_equal(uvchan_send(&s, NULL, &v, nop_send), UV_EINVAL);
  assert_int_equal(uvchan_send(&s, &zero, &v, nop_send), UV_EINVAL);
  assert_int_equal(uvchan_recv(&r, NULL, &v, nop_recv), UV_EINVAL);
  assert_int_equal(uvchan_recv(&r, &zero, &v, nop_recv), UV_EINVAL);
  assert_int_equal(uvchan_send_timeout(&s, &zero, &v, 1, nop_send), UV_EINVAL);
  assert_int_equal(uvchan_recv_timeout(&r, &zero, &v, 1, nop_recv), UV_EINVAL);
  assert_int_equal(uvchan_try_send(NULL, &v), UV_EINVAL);
  assert_int_equal(uvchan_try_send(&zero, &v), UV_EINVAL);
  assert_int_equal(uvchan_try_recv(NULL, &v), UV_EINVAL);
  assert_int_equal(uvchan_try_recv(&zero, &v), UV_EINVAL);
  assert_int_equal(uvchan_set_destructor(&zero, NULL), UV_EINVAL);
  assert_int_equal(uvchan_set_name(NULL, "x"), UV_EINVAL);
  assert_null(uvchan_name(NULL));
  assert_int_equal(uvchan_len(NULL), 0);
  assert_int_equal(uvchan_cap(&zero), 0);
  assert_int_equal(uvchan_elem_size(&zero), 0);
  assert_int_equal(uvchan_is_closed(NULL), UV_EINVAL);
  assert_int_equal(uvchan_waiting_senders(NULL), 0);
  assert_int_equal(uvchan_waiting_receivers(&zero), 0);
}

static void test_errors_request_args(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  uvchan_recv_t r;
  int v = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_send(NULL, &ch, &v, nop_send), UV_EINVAL);
  assert_int_equal(uvchan_send(&s, &ch, &v, NULL), UV_EINVAL);
  assert_int_equal(uvchan_send(&s, &ch, NULL, nop_send), UV_EINVAL); /* no value to copy */
  assert_int_equal(uvchan_try_send(&ch, NULL), UV_EINVAL);
  assert_int_equal(uvchan_recv(NULL, &ch, &v, nop_recv), UV_EINVAL);
  assert_int_equal(uvchan_recv(&r, &ch, &v, NULL), UV_EINVAL);
  /* A request still pending cannot be started again. */
  assert_int_equal(uvchan_recv(&r, &ch, &v, nop_recv), 0);
  assert_int_equal(uvchan_recv(&r, &ch, &v, nop_recv), UV_EBUSY);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), 0);
  assert_int_equal(uvchan_recv(&r, &ch, &v, nop_recv), UV_EBUSY); /* queued, not yet delivered */
  RUN(f);
  assert_int_equal(uvchan_cancel(NULL), UV_EINVAL);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), UV_EINVAL); /* not pending */
  assert_null(uvchan_req_task(NULL));
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_errors_select(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch, zero;
  uvchan_select_t sel;
  uvchan_case_t cases[2];
  int v = 0;

  memset(&zero, 0, sizeof(zero));
  memset(&sel, 0, sizeof(sel));
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  cases[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&ch, &v);
  cases[1] = (uvchan_case_t)UVCHAN_CASE_RECV(NULL, &v);
  assert_int_equal(uvchan_select(NULL, cases, 2, nop_sel), UV_EINVAL);
  assert_int_equal(uvchan_select(&sel, cases, 2, NULL), UV_EINVAL);
  assert_int_equal(uvchan_select(&sel, NULL, 2, nop_sel), UV_EINVAL);
  assert_int_equal(uvchan_select(&sel, cases + 1, 1, nop_sel), UV_EINVAL); /* only nil cases */
  assert_int_equal(uvchan_select(&sel, cases, 0, nop_sel), UV_EINVAL);
  cases[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&zero, &v);
  assert_int_equal(uvchan_select(&sel, cases, 2, nop_sel), UV_EINVAL); /* bad channel */
  assert_int_equal(uvchan_try_select(cases, 2, NULL), UV_EINVAL);
  cases[1] = (uvchan_case_t)UVCHAN_CASE_SEND(&ch, NULL);
  assert_int_equal(uvchan_select(&sel, cases, 2, nop_sel), UV_EINVAL); /* send without value */
  cases[1].op = (uvchan_op)7;
  assert_int_equal(uvchan_select(&sel, cases, 2, nop_sel), UV_EINVAL); /* bad op */
  assert_int_equal(uvchan_try_select(NULL, 1, NULL), UV_EINVAL);
  assert_int_equal(uvchan_try_select(cases, 0, NULL), UV_EAGAIN); /* select {default:} */
  assert_int_equal(uvchan_select(&sel, cases, 1, nop_sel), 0);
  assert_int_equal(uvchan_select(&sel, cases, 1, nop_sel), UV_EBUSY);
  assert_int_equal(uvchan_destroy(&ch), 0);
  RUN(f);
}

static void test_errors_wg(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg, zero;
  uvchan_req_t req;
  memset(&zero, 0, sizeof(zero));
  memset(&req, 0, sizeof(req));
  assert_int_equal(uvchan_wg_init(NULL, &wg), UV_EINVAL);
  assert_int_equal(uvchan_wg_init(&f->ctx, NULL), UV_EINVAL);
  assert_int_equal(uvchan_wg_add(&zero, 1), UV_EINVAL);
  assert_int_equal(uvchan_wg_done(NULL), UV_EINVAL);
  assert_int_equal(uvchan_wg_count(&zero), UV_EINVAL);
  assert_int_equal(uvchan_wg_wait(&req, &zero, nop_req), UV_EINVAL);
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_done(&wg), UV_EINVAL); /* would go negative */
  assert_int_equal(uvchan_wg_count(&wg), 0);
  assert_int_equal(uvchan_wg_wait(NULL, &wg, nop_req), UV_EINVAL);
  assert_int_equal(uvchan_wg_wait(&req, &wg, NULL), UV_EINVAL);
}

static void test_errors_timer(void** state) {
  fixture_t* f = FX(state);
  uvchan_timer_t t, zero;
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(uvchan_timer_after(NULL, &t, 1), UV_EINVAL);
  assert_int_equal(uvchan_timer_after(&f->ctx, NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_timer_ticker(&f->ctx, &t, 0), UV_EINVAL);
  assert_int_equal(uvchan_timer_stop(&zero), UV_EINVAL);
  assert_int_equal(uvchan_timer_close(&zero, NULL), UV_EINVAL);
  assert_int_equal(uvchan_timer_stop(NULL), UV_EINVAL);
  assert_int_equal(uvchan_timer_after(&f->ctx, &t, 1), 0);
  assert_int_equal(uvchan_timer_close(&t, NULL), 0);
  assert_int_equal(uvchan_timer_close(&t, NULL), UV_EINVAL); /* already closing */
  RUN(f);
}

static void test_errors_task_calls_outside_task(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_wg_t wg;
  uvchan_case_t c[1];
  uvchan_task_attr_t attr;
  int v = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&ch, &v);
  assert_null(uvchan_task_self());
  assert_int_equal(uvchan_task_send(&ch, &v), UV_EINVAL);
  assert_int_equal(uvchan_task_send_timeout(&ch, &v, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_recv(&ch, &v), UV_EINVAL);
  assert_int_equal(uvchan_task_recv_timeout(&ch, &v, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_select(c, 1, NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_select_timeout(c, 1, 1, NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_wg_wait(&wg), UV_EINVAL);
  assert_int_equal(uvchan_task_sleep(1), UV_EINVAL);
  assert_int_equal(uvchan_task_yield(), UV_EINVAL);
  assert_int_equal(uvchan_task_exit(), UV_EINVAL);
  assert_null(uvchan_task_name(NULL));
  assert_int_equal(uvchan_task_id(NULL), 0);
  /* spawn arguments */
  assert_int_equal(uvchan_task_spawn(NULL, nop_task, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_spawn(&f->ctx, NULL, NULL, NULL), UV_EINVAL);
  memset(&attr, 0, sizeof(attr));
  attr.stack_size = 100; /* below UVCHAN_MIN_STACK_SIZE */
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), UV_EINVAL);
  attr.stack_size = UVCHAN_MAX_STACK_SIZE + 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), UV_EINVAL);
  attr.stack_size = (size_t)1 << 40; /* 1 TiB */
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), UV_EINVAL);
  memset(&attr, 0, sizeof(attr));
  attr.wg = (uvchan_wg_t*)&ch; /* not a wait group */
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), UV_EINVAL);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* Initialising a live object again is refused: it would corrupt the context's lists or a libuv
 * handle the loop holds. */
static void test_errors_double_init(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_wg_t wg;
  uvchan_timer_t t;
  memset(&t, 0, sizeof(t));
  assert_int_equal(uvchan_ctx_init(&f->loop, &f->ctx), UV_EBUSY);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), UV_EBUSY);
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0); /* done: reusing it is fine, as in Go */
  assert_int_equal(uvchan_wg_add(&wg, 1), 0);
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), UV_EBUSY); /* in use */
  assert_int_equal(uvchan_wg_done(&wg), 0);
  assert_int_equal(uvchan_timer_after(&f->ctx, &t, 10000), 0);
  assert_int_equal(uvchan_timer_after(&f->ctx, &t, 10000), UV_EBUSY);
  assert_int_equal(uvchan_timer_ticker(&f->ctx, &t, 10), UV_EBUSY);
  assert_int_equal(uvchan_timer_close(&t, NULL), 0);
  assert_int_equal(uvchan_timer_after(&f->ctx, &t, 1), UV_EBUSY); /* until its close callback */
  RUN(f);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0); /* destroyed: fine */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_errors_wg_count_limits(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg;
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, LONG_MIN), UV_EINVAL);
  assert_int_equal(uvchan_wg_add(&wg, LONG_MAX), 0);
  assert_int_equal(uvchan_wg_add(&wg, 1), UV_EINVAL); /* would overflow */
  assert_int_equal(uvchan_wg_add(&wg, LONG_MIN), UV_EINVAL);
  assert_int_equal(uvchan_wg_count(&wg), LONG_MAX);
  assert_int_equal(uvchan_wg_add(&wg, -LONG_MAX), 0);
  assert_int_equal(uvchan_wg_count(&wg), 0);
  assert_int_equal(uvchan_wg_destroy(&wg), 0);
  assert_int_equal(uvchan_wg_destroy(&wg), UV_EINVAL);
  assert_int_equal(uvchan_wg_destroy(NULL), UV_EINVAL);
  assert_int_equal(uvchan_wg_add(&wg, 1), UV_EINVAL); /* destroyed */
}

/* A wait group outlives its context: every call answers UV_EINVAL, and none reads the context,
 * whose memory is gone (AddressSanitizer would report the read). */
static void test_errors_wg_after_ctx_closed_and_freed(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t* ctx = calloc(1, sizeof(*ctx));
  uvchan_wg_t wg;
  uvchan_req_t req;
  (void)state;
  assert_non_null(ctx);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, ctx), 0);
  assert_int_equal(uvchan_wg_init(ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 2), 0);
  assert_int_equal(uvchan_ctx_close(ctx, NULL), 0);
  memset(&req, 0, sizeof(req));
  assert_int_equal(uvchan_wg_init(ctx, &wg), UV_EINVAL);           /* the context is closing */
  assert_int_equal(uvchan_wg_wait(&req, &wg, nop_req), UV_EINVAL); /* retired with it */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(ctx);
  assert_int_equal(uvchan_wg_done(&wg), UV_EINVAL);
  assert_int_equal(uvchan_wg_add(&wg, 1), UV_EINVAL);
  assert_int_equal(uvchan_wg_count(&wg), UV_EINVAL);
  assert_int_equal(uvchan_wg_wait(&req, &wg, nop_req), UV_EINVAL);
  assert_int_equal(uvchan_wg_destroy(&wg), UV_EINVAL);
}

static void test_errors_new_calls(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero;
  uvchan_timer_t t;
  (void)f;
  memset(&zero, 0, sizeof(zero));
  memset(&t, 0, sizeof(t));
  assert_int_equal(uvchan_handle_owned(NULL), 0);
  assert_int_equal(uvchan_handle_owned((uv_handle_t*)&f->loop), 0); /* not a handle of ours */
  assert_int_equal(uvchan_handle_owned((uv_handle_t*)&f->ctx.idle_), 1);
  assert_int_equal(uvchan_ctx_bind_thread(NULL), UV_EINVAL);
  assert_int_equal(uvchan_ctx_bind_thread(&zero), UV_EINVAL);
  assert_int_equal(uvchan_ctx_shutdown(&zero, NULL), UV_EINVAL);
  assert_int_equal(uvchan_timer_reset(NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_timer_reset(&t, 1), UV_EINVAL);
  assert_int_equal(uvchan_timer_ticker(&f->ctx, &t, 10), 0);
  assert_int_equal(uvchan_timer_reset(&t, 0), UV_EINVAL); /* a ticker's period must be > 0 */
  assert_int_equal(uvchan_timer_close(&t, NULL), 0);
  assert_int_equal(uvchan_timer_reset(&t, 1), UV_EINVAL); /* closing */
  RUN(f);
}

/* The functions without a failure code still take any input without crashing. */
static void test_errors_no_code_functions(void** state) {
  uvchan_trace_t ev;
  (void)state;
  uvchan_trace_print(NULL, NULL); /* prints nothing */
  memset(&ev, 0, sizeof(ev));
  uvchan_trace_print(&ev, NULL); /* no channel: prints nothing */
  assert_string_equal(uvchan_trace_kind_name((uvchan_trace_kind)0), "unknown");
  assert_string_equal(uvchan_trace_kind_name((uvchan_trace_kind)999), "unknown");
  assert_string_equal(uvchan_trace_kind_name(UVCHAN_TRACE_WAIT), "wait");
  assert_null(uvchan_task_self());
  assert_int_equal(uvchan_version(), UVCHAN_VERSION_HEX);
  assert_non_null(uvchan_version_string());
}

/* ---- pipelines (uvchan/pipeline.h) ---- */

static int nop_fn(uvchan_job_t* job, void* value) {
  (void)job;
  (void)value;
  return 0;
}

static uvchan_job_t* held_job;
static int hold_fn(uvchan_job_t* job, void* value) {
  (void)value;
  held_job = job;
  return 0;
}

static void test_errors_stage(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero, other;
  uvchan_t a, b, unbuf, big, foreign, zch;
  uvchan_stage_t st, zst;
  uvchan_pipeline_t p, p2, zp;
  uvchan_stage_opts_t o;
  int v = 1;

  memset(&zero, 0, sizeof(zero));
  memset(&zst, 0, sizeof(zst));
  memset(&zch, 0, sizeof(zch));
  memset(&zp, 0, sizeof(zp));
  assert_int_equal(uvchan_ctx_init(&f->loop, &other), 0);
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &unbuf, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &big, SIZE_MAX / 4, 0), 0);
  assert_int_equal(uvchan_init(&other, &foreign, sizeof(int), 1), 0);
  assert_int_equal(uvchan_stage_init(NULL, &st, &a, &b, nop_fn, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&zero, &st, &a, &b, nop_fn, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&f->ctx, NULL, &a, &b, nop_fn, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, NULL, &b, nop_fn, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &zch, nop_fn, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &a, nop_fn, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &foreign, nop_fn, NULL), UV_EINVAL);
  memset(&o, 0, sizeof(o));
  o.flags = 1u << 20; /* no such flag */
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, &o), UV_EINVAL);
  o.flags = UVCHAN_STAGE_RESERVE; /* needs a buffered output whose sends block */
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &unbuf, nop_fn, &o), UV_EINVAL);
  assert_int_equal(uvchan_set_overflow(&b, UVCHAN_OVERFLOW_DROP_NEWEST), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, &o), UV_EINVAL);
  assert_int_equal(uvchan_set_overflow(&b, UVCHAN_OVERFLOW_BLOCK), 0);
  o.flags = 0;
  o.parallel = 65537; /* above the bound */
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, &o), UV_EINVAL);
  o.parallel = 8; /* 8 input buffers of SIZE_MAX / 4 bytes overflow */
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &big, &b, nop_fn, &o), UV_EINVAL);
  o.parallel = 0;
  o.pipeline = &zp; /* not initialised */
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, &o), UV_EINVAL);
  assert_int_equal(uvchan_stage_start(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_start(&zst, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_close(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_close(&zst, NULL), UV_EINVAL);
  /* a pipeline of another context */
  assert_int_equal(uvchan_pipeline_init(&other, &p), 0);
  o.pipeline = &p;
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, &o), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_close(&p, NULL), 0);
  assert_int_equal(uvchan_pipeline_init(&f->ctx, &p2), 0);
  assert_int_equal(uvchan_pipeline_close(&p2, NULL), 0);
  o.pipeline = &p2;
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, &o), UV_EINVAL); /* closing */
  RUN(f);
  /* live, started, closing */
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, NULL), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, NULL), UV_EBUSY);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  assert_int_equal(uvchan_stage_close(&st, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_start(&st, NULL), UV_EINVAL);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, NULL), UV_EBUSY); /* closing */
  RUN(f);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, nop_fn, NULL), 0); /* closed: fine */
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  (void)v;
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  uvchan_destroy(&unbuf);
  uvchan_destroy(&big);
  uvchan_destroy(&foreign);
  RUN(f);
  assert_int_equal(uvchan_ctx_close(&other, NULL), 0);
  RUN(f);
}

static void test_errors_job(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {1, UVCHAN_STAGE_ASYNC, NULL, NULL};
  uvchan_job_t zjob;
  int v = 1;

  memset(&zjob, 0, sizeof(zjob));
  assert_int_equal(uvchan_job_emit(NULL, &v), UV_EINVAL);
  assert_int_equal(uvchan_job_emit(&zjob, &v), UV_EINVAL);
  assert_int_equal(uvchan_job_done(NULL, 0), UV_EINVAL);
  assert_int_equal(uvchan_job_done(&zjob, 0), UV_EINVAL);
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 2), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, hold_fn, &o), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  assert_int_equal(uvchan_try_send(&a, &v), 0);
  RUN(f);
  assert_int_equal(uvchan_job_emit(held_job, NULL), UV_EINVAL); /* element size 4 */
  assert_int_equal(uvchan_close(&b), 0); /* the output, closed under the stage */
  assert_int_equal(uvchan_job_emit(held_job, &v), UV_EPIPE);    /* not taken; the stage ends */
  assert_int_equal(uvchan_job_emit(held_job, &v), UV_ECANCELED); /* ended: not taken */
  assert_int_equal(uvchan_job_done(held_job, 0), 0);
  assert_int_equal(st.status, UV_EPIPE);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  /* a synchronous stage's job has no uvchan_job_done(); a done job takes no more */
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 2), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, hold_fn, NULL), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  assert_int_equal(uvchan_try_send(&a, &v), 0);
  RUN(f);
  assert_int_equal(uvchan_job_done(held_job, 0), UV_EINVAL);
  assert_int_equal(uvchan_job_emit(held_job, &v), UV_EINVAL); /* its function returned */
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&a);
  uvchan_destroy(&b);
}

static void test_errors_merge(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero, other;
  uvchan_t a, b, out, wide, foreign, zch;
  uvchan_merge_t m, zm;
  uvchan_merge_opts_t mo = {1u << 20, NULL};
  uvchan_t* ins[2] = {&a, &b};
  uvchan_t* dup[2] = {&a, &a};
  uvchan_t* self[2] = {&a, &out};
  uvchan_t* badin[2] = {&a, &zch};
  uvchan_t* wid[2] = {&a, &wide};
  uvchan_t* forin[2] = {&a, &foreign};

  memset(&zero, 0, sizeof(zero));
  memset(&zm, 0, sizeof(zm));
  memset(&zch, 0, sizeof(zch));
  assert_int_equal(uvchan_ctx_init(&f->loop, &other), 0);
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &wide, sizeof(long double), 1), 0);
  assert_int_equal(uvchan_init(&other, &foreign, sizeof(int), 1), 0);
  assert_int_equal(uvchan_merge_init(NULL, &m, ins, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&zero, &m, ins, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, NULL, ins, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, NULL, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 0, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 2, &zch, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 2, &foreign, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, dup, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, self, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, badin, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, wid, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, forin, 2, &out, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 2, &out, &mo), UV_EINVAL);
  assert_int_equal(uvchan_merge_start(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_start(&zm, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_close(&zm, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 2, &out, NULL), 0);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 2, &out, NULL), UV_EBUSY);
  assert_int_equal(uvchan_merge_start(&m, NULL), 0);
  assert_int_equal(uvchan_merge_start(&m, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_close(&m, NULL), 0);
  assert_int_equal(uvchan_merge_close(&m, NULL), UV_EINVAL);
  RUN(f);
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  uvchan_destroy(&out);
  uvchan_destroy(&wide);
  uvchan_destroy(&foreign);
  assert_int_equal(uvchan_ctx_close(&other, NULL), 0);
  RUN(f);
}

static void test_errors_broadcast(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero, other;
  uvchan_t in, foreign, zch;
  uvchan_broadcast_t bc, zbc;
  uvchan_sub_t sub, zsub;

  memset(&zero, 0, sizeof(zero));
  memset(&zbc, 0, sizeof(zbc));
  memset(&zsub, 0, sizeof(zsub));
  memset(&zch, 0, sizeof(zch));
  assert_int_equal(uvchan_ctx_init(&f->loop, &other), 0);
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&other, &foreign, sizeof(int), 1), 0);
  assert_int_equal(uvchan_broadcast_init(NULL, &bc, &in, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_init(&zero, &bc, &in, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, NULL, &in, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &zch, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &foreign, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_start(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_start(&zbc, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_close(&zbc, NULL), UV_EINVAL);
  assert_int_equal(uvchan_subscribe(&zbc, &sub, 1, UVCHAN_LAG_BLOCK), UV_EINVAL);
  assert_int_equal(uvchan_unsubscribe(NULL), UV_EINVAL);
  assert_int_equal(uvchan_unsubscribe(&zsub), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, NULL), 0);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, NULL), UV_EBUSY);
  assert_int_equal(uvchan_subscribe(&bc, NULL, 1, UVCHAN_LAG_BLOCK), UV_EINVAL);
  assert_int_equal(uvchan_subscribe(&bc, &sub, 1, (uvchan_lag)9), UV_EINVAL);
  assert_int_equal(uvchan_subscribe(&bc, &sub, 0, UVCHAN_LAG_DROP_OLDEST), UV_EINVAL);
  assert_int_equal(uvchan_subscribe(&bc, &sub, 0, UVCHAN_LAG_DISCONNECT), UV_EINVAL);
  assert_int_equal(uvchan_subscribe(&bc, &sub, 0, UVCHAN_LAG_BLOCK), 0); /* unbuffered: fine */
  assert_int_equal(uvchan_subscribe(&bc, &sub, 0, UVCHAN_LAG_BLOCK), UV_EBUSY);
  assert_int_equal(uvchan_unsubscribe(&sub), 0);
  assert_int_equal(uvchan_unsubscribe(&sub), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_start(&bc, NULL), 0);
  assert_int_equal(uvchan_broadcast_start(&bc, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), UV_EINVAL);
  assert_int_equal(uvchan_subscribe(&bc, &sub, 1, UVCHAN_LAG_BLOCK), UV_EPIPE); /* closing */
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&foreign);
  assert_int_equal(uvchan_ctx_close(&other, NULL), 0);
  RUN(f);
}

static void test_errors_pipeline(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero;
  uvchan_pipeline_t p, zp;
  memset(&zero, 0, sizeof(zero));
  memset(&zp, 0, sizeof(zp));
  assert_int_equal(uvchan_pipeline_init(NULL, &p), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_init(&zero, &p), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_init(&f->ctx, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_start(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_start(&zp, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_close(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_close(&zp, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_init(&f->ctx, &p), 0);
  assert_int_equal(uvchan_pipeline_init(&f->ctx, &p), UV_EBUSY);
  assert_int_equal(uvchan_pipeline_start(&p, NULL), 0);
  assert_int_equal(uvchan_pipeline_start(&p, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_close(&p, NULL), 0);
  assert_int_equal(uvchan_pipeline_close(&p, NULL), UV_EINVAL);
  RUN(f);
}

/* Objects of a closing context cannot be made. */
static void test_errors_pipeline_ctx_closing(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t a, b;
  uvchan_stage_t st;
  uvchan_pipeline_t p;
  uvchan_broadcast_t bc;
  uvchan_merge_t m;
  uvchan_t* ins[1] = {&a};
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_init(&ctx, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&ctx, &b, sizeof(int), 1), 0);
  /* channels the user forgot are still in the struct: close() refuses while they live, so
   * destroy them and keep their memory for the calls below */
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  assert_int_equal(uvchan_ctx_close(&ctx, NULL), 0);
  a.magic_ = b.magic_ = 0x7563686eu; /* pose as live channels of the closing context */
  assert_int_equal(uvchan_stage_init(&ctx, &st, &a, &b, nop_fn, NULL), UV_EINVAL);
  assert_int_equal(uvchan_merge_init(&ctx, &m, ins, 1, &b, NULL), UV_EINVAL);
  assert_int_equal(uvchan_broadcast_init(&ctx, &bc, &a, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_init(&ctx, &p), UV_EINVAL);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_errors_ctx),
      TEST(test_errors_chan_init),
      cmocka_unit_test(test_errors_chan_ops_null_and_uninitialised),
      TEST(test_errors_request_args),
      TEST(test_errors_select),
      TEST(test_errors_wg),
      TEST(test_errors_timer),
      TEST(test_errors_task_calls_outside_task),
      cmocka_unit_test(test_errors_no_code_functions),
      TEST(test_errors_double_init),
      TEST(test_errors_wg_count_limits),
      cmocka_unit_test(test_errors_wg_after_ctx_closed_and_freed),
      TEST(test_errors_new_calls),
      TEST(test_errors_stage),
      TEST(test_errors_job),
      TEST(test_errors_merge),
      TEST(test_errors_broadcast),
      TEST(test_errors_pipeline),
      cmocka_unit_test(test_errors_pipeline_ctx_closing),
  };
  return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
