/* Stages: a function between two channels, from callbacks alone. Order with parallelism (async
 * jobs completing out of order), filters and several values per input, close and error
 * propagation, finish, backpressure with and without reserved output slots, and teardown with
 * values in flight (every value received once or destroyed once). */
#include "pipeline-helpers.h"

static int fn_double(uvchan_job_t* job, void* value) {
  int v = *(int*)value * 2;
  return uvchan_job_emit(job, &v);
}

static void test_stage_map_closes_output(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  src_t src;
  sink_t* k = calloc(1, sizeof(*k));
  endc_t e = {0, 1};

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 4), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 0), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_double, NULL), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  assert_int_equal(e.calls, 0); /* never inside the start call */
  src_start(&src, &in, NULL, 300, 1);
  sink_start(k, &out);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, 0);
  assert_int_equal(st.status, 0);
  assert_int_equal(k->end, UV_EOF); /* the stage closed its output */
  assert_int_equal(k->n, 300);
  for (int i = 0; i < 300; i++)
    assert_int_equal(k->got[i], 2 * i);
  assert_int_equal(st.inputs, 300);
  assert_int_equal(st.outputs, 300);
  closes = 0;
  assert_int_equal(uvchan_stage_close(&st, stage_closed), 0);
  assert_int_equal(closes, 0);
  RUN(f);
  assert_int_equal(closes, 1);
  assert_int_equal(uvchan_stage_close(&st, NULL), UV_EINVAL); /* closed */
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  free(k);
}

/* Odd values are filtered out, even ones emitted three times: v, v+1000, v+2000. */
static int fn_filter_triple(uvchan_job_t* job, void* value) {
  int v = *(int*)value, w;
  if (v % 2 != 0)
    return 0;
  for (int i = 0; i < 3; i++) {
    w = v + 1000 * i;
    assert_int_equal(uvchan_job_emit(job, &w), 0);
  }
  return 0;
}

static void test_stage_filter_and_several_values(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {3, 0, NULL, NULL};
  src_t src;
  sink_t* k = calloc(1, sizeof(*k));

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 1), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_filter_triple, &o), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  src_start(&src, &in, NULL, 100, 1);
  sink_start(k, &out);
  RUN(f);
  assert_int_equal(k->end, UV_EOF);
  assert_int_equal(k->n, 150);
  for (int i = 0; i < 50; i++)
    for (int j = 0; j < 3; j++)
      assert_int_equal(k->got[3 * i + j], 2 * i + 1000 * j);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  free(k);
}

/* ---- async jobs, completed by the test in a chosen order ---- */

enum { MAXJOBS = 64 };
static uvchan_job_t* pending[MAXJOBS];
static int npending, max_pending, started;

static int fn_async_hold(uvchan_job_t* job, void* value) {
  assert_true(npending < MAXJOBS);
  job->data = (void*)(intptr_t) * (int*)value;
  pending[npending++] = job;
  started++;
  if (npending > max_pending)
    max_pending = npending;
  return 0;
}

/* Completes pending job number `i` (in the table), emitting 10*v and 10*v+1. */
static void complete(int i) {
  uvchan_job_t* job = pending[i];
  int v = (int)(intptr_t)job->data * 10;
  pending[i] = pending[--npending];
  assert_int_equal(uvchan_job_emit(job, &v), 0);
  v++;
  assert_int_equal(uvchan_job_emit(job, &v), 0);
  assert_int_equal(uvchan_job_done(job, 0), 0);
}

/* The newest pending job first: completions in reverse order of input. */
static void complete_newest_first(fixture_t* f) {
  int best;
  while (npending > 0) {
    best = 0;
    for (int i = 1; i < npending; i++)
      if (pending[i]->seq > pending[best]->seq)
        best = i;
    complete(best);
    RUN(f);
  }
}

static void run_async_order(fixture_t* f, unsigned flags, int* got, int* n) {
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {4, UVCHAN_STAGE_ASYNC | flags, NULL, NULL};
  sink_t* k = calloc(1, sizeof(*k));
  endc_t e = {0, 1};
  int v;

  npending = max_pending = started = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 16), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 64), 0);
  for (v = 0; v < 16; v++)
    assert_int_equal(uvchan_try_send(&in, &v), 0);
  assert_int_equal(uvchan_close(&in), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_async_hold, &o), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  RUN(f);
  assert_int_equal(npending, 4); /* parallelism 4: four inputs taken, no more */
  assert_int_equal(st.inputs, 4);
  assert_int_equal(uvchan_len(&in), 12);
  while (npending > 0)
    complete_newest_first(f);
  assert_int_equal(max_pending, 4);
  assert_int_equal(started, 16);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, 0);
  sink_start(k, &out);
  RUN(f);
  assert_int_equal(k->end, UV_EOF);
  *n = k->n;
  memcpy(got, k->got, sizeof(int) * (size_t)k->n);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  free(k);
}

static void test_stage_parallel_keeps_input_order(void** state) {
  int got[64], n;
  run_async_order(FX(state), 0, got, &n);
  assert_int_equal(n, 32);
  for (int i = 0; i < 16; i++) { /* input order, each job's two values together */
    assert_int_equal(got[2 * i], 10 * i);
    assert_int_equal(got[2 * i + 1], 10 * i + 1);
  }
}

static void test_stage_parallel_unordered(void** state) {
  int got[64], n, sorted = 1;
  run_async_order(FX(state), UVCHAN_STAGE_UNORDERED, got, &n);
  assert_int_equal(n, 32);
  /* Completion order: the newest of each batch first, so never input order, and each job's
   * two values still side by side. */
  for (int i = 0; i < 16; i++) {
    assert_int_equal(got[2 * i + 1], got[2 * i] + 1);
    if (i > 0 && got[2 * i] < got[2 * i - 2])
      sorted = 0;
  }
  assert_int_equal(got[0], 30); /* job 3 completed first */
  assert_false(sorted);
}

/* ---- errors ---- */

static int fn_fail_at_5(uvchan_job_t* job, void* value) {
  int v = *(int*)value;
  if (v == 5)
    return UV_EIO;
  return uvchan_job_emit(job, &v);
}

static void test_stage_error_closes_output(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  src_t src;
  sink_t* k = calloc(1, sizeof(*k));
  endc_t e = {0, 1};

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 0), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_fail_at_5, NULL), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  src_start(&src, &in, NULL, 20, 1);
  sink_start(k, &out);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, UV_EIO);
  assert_int_equal(st.status, UV_EIO);
  assert_int_equal(k->end, UV_EOF); /* downstream sees the end */
  assert_int_equal(k->n, 5);
  assert_int_equal(src.accepted, 6); /* 0..5 taken; 6 waits in the source, never taken */
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  RUN(f);
  assert_int_equal(src.status, UV_ECANCELED);
  free(k);
}

static int fn_async_fail(uvchan_job_t* job, void* value) {
  if (*(int*)value == 2)
    return UV_EBADF; /* fails at once: done must not be called */
  pending[npending++] = job;
  return 0;
}

static void test_stage_async_errors(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {4, UVCHAN_STAGE_ASYNC, NULL, NULL};
  endc_t e = {0, 1};
  int v;

  /* uvchan_job_done with an error */
  npending = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 8), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 8), 0);
  for (v = 0; v < 2; v++)
    assert_int_equal(uvchan_try_send(&in, &v), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_async_fail, &o), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  RUN(f);
  assert_int_equal(npending, 2);
  v = 7;
  assert_int_equal(uvchan_job_emit(pending[1], &v), 0); /* queued behind job 0 */
  assert_int_equal(uvchan_job_done(pending[1], 0), 0);
  assert_int_equal(uvchan_job_done(pending[0], UV_ETIMEDOUT), 0);
  RUN(f);
  assert_int_equal(e.status, UV_ETIMEDOUT);
  assert_int_equal(uvchan_len(&out), 0); /* job 1's value never went out */
  assert_int_equal(uvchan_is_closed(&out), 1);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);

  /* the function fails at once, while other jobs are pending: they become orphans, and the
   * close waits for their uvchan_job_done() */
  npending = 0;
  e.calls = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 8), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 8), 0);
  for (v = 0; v < 4; v++)
    assert_int_equal(uvchan_try_send(&in, &v), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_async_fail, &o), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  RUN(f);
  assert_int_equal(e.status, UV_EBADF);
  assert_int_equal(npending, 2);
  v = 1;
  assert_int_equal(uvchan_job_emit(pending[0], &v), UV_ECANCELED); /* not taken */
  closes = 0;
  assert_int_equal(uvchan_stage_close(&st, stage_closed), 0);
  RUN(f);
  assert_int_equal(closes, 0); /* two async jobs still out */
  assert_int_equal(uvchan_job_done(pending[0], 0), 0);
  RUN(f);
  assert_int_equal(closes, 0);
  assert_int_equal(uvchan_job_done(pending[1], UV_EIO), 0);
  assert_int_equal(closes, 0); /* from the loop */
  RUN(f);
  assert_int_equal(closes, 1);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
}

static void test_stage_output_closed_under_it(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  endc_t e = {0, 1};
  int v = 1;

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 4), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 1), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_double, NULL), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  assert_int_equal(uvchan_try_send(&in, &v), 0);
  assert_int_equal(uvchan_try_send(&in, &v), 0); /* the second waits in a send on `out` */
  RUN(f);
  assert_int_equal(uvchan_len(&out), 1);
  assert_int_equal(uvchan_close(&out), 0);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, UV_EPIPE);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
}

/* ---- finish: a reduction ---- */

static int sum_acc;
static int fn_sum(uvchan_job_t* job, void* value) {
  (void)job;
  sum_acc += *(int*)value;
  return 0; /* emits nothing: a filter of everything */
}
static int fn_sum_finish(uvchan_job_t* job, void* value) {
  assert_null(value);
  assert_int_equal(job->seq, 100); /* the number of inputs */
  return uvchan_job_emit(job, &sum_acc);
}

static void test_stage_finish_emits_last(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {1, 0, fn_sum_finish, NULL};
  src_t src;
  sink_t* k = calloc(1, sizeof(*k));

  sum_acc = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 8), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 0), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_sum, &o), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  src_start(&src, &in, NULL, 100, 1);
  sink_start(k, &out);
  RUN(f);
  assert_int_equal(k->n, 1);
  assert_int_equal(k->got[0], 4950);
  assert_int_equal(k->end, UV_EOF);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  free(k);
}

/* ---- backpressure ---- */

/* source -> a (cap 2) -> stage A (par 3) -> b (cap 2) -> stage B (par 3) -> c (cap 2) -> a sink
 * that takes 5 values and stops. Everything upstream is bounded by the capacities and the jobs,
 * and without reservations a stage holds at most its N inputs. */
static void run_backpressure(fixture_t* f, unsigned flags, int* accepted) {
  uvchan_t a, b, c;
  uvchan_stage_t sa, sb;
  uvchan_stage_opts_t o = {3, flags, NULL, NULL};
  src_t src;
  sink_t* k = calloc(1, sizeof(*k));

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &c, sizeof(int), 2), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &sa, &a, &b, fn_double, &o), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &sb, &b, &c, fn_double, &o), 0);
  assert_int_equal(uvchan_stage_start(&sa, NULL), 0);
  assert_int_equal(uvchan_stage_start(&sb, NULL), 0);
  src_start(&src, &a, NULL, 1000, 1);
  sink_start(k, &c);
  k->limit = 5;
  RUN(f); /* everything stalls behind the paused sink: uv_run returns */
  assert_int_equal(k->n, 5);
  *accepted = src.accepted;
  /* each stage holds exactly what it took and has not sent: at most its 3 jobs */
  assert_true(sa.inputs - sa.outputs <= 3);
  assert_true(sb.inputs - sb.outputs <= 3);
  assert_true(src.waiting);
  assert_int_equal(uvchan_len(&c), 2);
  /* Resume: everything arrives, in order. */
  for (;;) {
    sink_resume(k);
    k->limit = k->n + 100;
    RUN(f);
    if (k->end != 0)
      break;
  }
  assert_int_equal(k->end, UV_EOF);
  assert_int_equal(k->n, 1000);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(k->got[i], 4 * i);
  assert_int_equal(uvchan_stage_close(&sa, NULL), 0);
  assert_int_equal(uvchan_stage_close(&sb, NULL), 0);
  RUN(f);
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  uvchan_destroy(&c);
  free(k);
}

/* Nothing reads the output: a stage of N jobs takes exactly N inputs and stops, also when its
 * first value went straight into a waiting send. */
static void test_stage_holds_at_most_n(void** state) {
  fixture_t* f = FX(state);
  for (unsigned n = 1; n <= 3; n++) {
    uvchan_t in, out;
    uvchan_stage_t st;
    uvchan_stage_opts_t o = {n, 0, NULL, NULL};
    int v;
    assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 10), 0);
    assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 0), 0);
    for (v = 0; v < 10; v++)
      assert_int_equal(uvchan_try_send(&in, &v), 0);
    assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_double, &o), 0);
    assert_int_equal(uvchan_stage_start(&st, NULL), 0);
    RUN(f);
    assert_int_equal(st.inputs, n);
    assert_int_equal(uvchan_len(&in), 10 - n);
    assert_int_equal(uvchan_waiting_senders(&out), 1);
    for (v = 0; v < 10; v++) { /* then everything, in order */
      int got;
      assert_int_equal(uvchan_try_recv(&out, &got), 0);
      assert_int_equal(got, 2 * v);
      RUN(f);
    }
    assert_int_equal(uvchan_stage_close(&st, NULL), 0);
    RUN(f);
    uvchan_destroy(&in);
    uvchan_destroy(&out);
  }
}

static void test_stage_backpressure_bounded(void** state) {
  int accepted;
  run_backpressure(FX(state), 0, &accepted);
  /* sink 5 + c 2 + B's 3 jobs + b 2 + A's 3 jobs + a 2 */
  assert_int_equal(accepted, 5 + 2 + 3 + 2 + 3 + 2);
}

static void test_stage_backpressure_reserve(void** state) {
  int accepted;
  /* A stage that reserves its output slot first holds nothing beyond the downstream capacity:
   * its jobs live in the slots they reserved. */
  run_backpressure(FX(state), UVCHAN_STAGE_RESERVE, &accepted);
  assert_int_equal(accepted, 5 + 2 + 2 + 2);
}

/* Reserved slots with async jobs: the output's capacity bounds the jobs in flight, the values
 * still go out in input order, and a filtered job gives its slot back. */
static int fn_async_hold_or_drop(uvchan_job_t* job, void* value) {
  job->data = (void*)(intptr_t) * (int*)value;
  pending[npending++] = job;
  return 0;
}

static void test_stage_reserve_async(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {8, UVCHAN_STAGE_ASYNC | UVCHAN_STAGE_RESERVE, NULL, NULL};
  int v, got;

  npending = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 8), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 3), 0);
  for (v = 0; v < 6; v++)
    assert_int_equal(uvchan_try_send(&in, &v), 0);
  assert_int_equal(uvchan_close(&in), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_async_hold_or_drop, &o), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  RUN(f);
  assert_int_equal(npending, 3); /* 8 jobs allowed, 3 output slots */
  assert_int_equal(uvchan_try_send(&out, &v), UV_EAGAIN); /* every slot is reserved */
  /* job 1 is filtered (done without a value): its slot comes back; job 2 emits; then job 0 */
  assert_int_equal(uvchan_job_done(pending[1], 0), 0);
  v = 20;
  assert_int_equal(uvchan_job_emit(pending[2], &v), 0);
  assert_int_equal(uvchan_job_done(pending[2], 0), 0);
  RUN(f);
  assert_int_equal(uvchan_len(&out), 0); /* job 0 is first in line */
  v = 0;
  assert_int_equal(uvchan_job_emit(pending[0], &v), 0);
  assert_int_equal(uvchan_job_done(pending[0], 0), 0);
  RUN(f);
  assert_int_equal(uvchan_len(&out), 2);
  assert_int_equal(uvchan_try_recv(&out, &got), 0);
  assert_int_equal(got, 0);
  assert_int_equal(uvchan_try_recv(&out, &got), 0);
  assert_int_equal(got, 20);
  RUN(f);
  assert_int_equal(npending, 6); /* three more taken as slots came free */
  for (int i = 3; i < 6; i++) {
    v = (int)(intptr_t)pending[i]->data;
    assert_int_equal(uvchan_job_emit(pending[i], &v), 0);
    assert_int_equal(uvchan_job_done(pending[i], 0), 0);
  }
  RUN(f);
  for (int i = 3; i < 6; i++) {
    assert_int_equal(uvchan_try_recv(&out, &got), 0);
    assert_int_equal(got, i);
  }
  assert_int_equal(uvchan_try_recv(&out, &got), UV_EOF);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
}

/* ---- teardown with values in flight: heap values, a destructor on every channel ---- */

static int fn_hv_async(uvchan_job_t* job, void* value) {
  int* p = *(int**)value;
  int* q = hv_new(*p + 100);
  hv_free(p); /* the function owns its input */
  assert_int_equal(uvchan_job_emit(job, &q), 0);
  pending[npending++] = job;
  return 0;
}

static void test_stage_close_with_values_in_flight(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {4, UVCHAN_STAGE_ASYNC, NULL, NULL};
  endc_t e = {0, 1};
  int* p;

  live = destroyed = npending = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int*), 8), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int*), 1), 0);
  uvchan_set_destructor(&in, hv_dtor);
  uvchan_set_destructor(&out, hv_dtor);
  for (int i = 0; i < 8; i++) {
    p = hv_new(i);
    assert_int_equal(uvchan_try_send(&in, &p), 0);
  }
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_hv_async, &o), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  RUN(f);
  /* 4 jobs pending, each emitted one value: job 0's went into `out` (cap 1), the others are
   * queued in their jobs; 4 inputs still in `in`. */
  assert_int_equal(npending, 4);
  assert_int_equal(uvchan_len(&out), 1);
  assert_int_equal(live, 4 + 4);
  assert_int_equal(uvchan_job_done(pending[0], 0), 0);
  RUN(f); /* job 1's value now waits in a send; a new job took input 4 */
  assert_int_equal(npending, 5);
  closes = 0;
  assert_int_equal(uvchan_stage_close(&st, stage_closed), 0);
  assert_int_equal(e.calls, 0);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, UV_ECANCELED);
  /* Destroyed: job 1's value in the waiting send, the values queued in jobs 2..4. */
  assert_int_equal(destroyed, 4);
  assert_int_equal(closes, 0); /* 4 async jobs still out */
  for (int i = 1; i < 5; i++)
    assert_int_equal(uvchan_job_done(pending[i], 0), 0);
  RUN(f);
  assert_int_equal(closes, 1);
  /* What is left: 1 value in `out`, 3 inputs in `in`; destroying them frees everything. */
  assert_int_equal(live, 4);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  assert_int_equal(live, 0);
  assert_int_equal(destroyed, 8);
}

/* A received value that is still queued for the stage when it closes goes to the input's
 * destructor; a pending reservation is released. */
static void test_stage_close_with_receive_matched(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {1, UVCHAN_STAGE_RESERVE | UVCHAN_LEAVE_OPEN, NULL, NULL};
  int* p;
  int v = 0;

  live = destroyed = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int*), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int*), 1), 0);
  uvchan_set_destructor(&in, hv_dtor);
  uvchan_set_destructor(&out, hv_dtor);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_hv_async, &o), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  RUN(f); /* holds the output slot; its receive waits */
  p = hv_new(1);
  assert_int_equal(uvchan_try_send(&in, &p), 0); /* matched: the receive is queued */
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  assert_int_equal(destroyed, 1);
  assert_int_equal(live, 0);
  RUN(f);
  p = hv_new(2);
  assert_int_equal(uvchan_try_send(&out, &p), 0); /* the reserved slot is free again */
  (void)v;
  uvchan_destroy(&in);
  uvchan_destroy(&out);
}

/* ---- calls from inside the function ---- */

static uvchan_stage_t* self_close_stage;
static int fn_close_self(uvchan_job_t* job, void* value) {
  int v = *(int*)value;
  assert_int_equal(uvchan_job_emit(job, &v), 0);
  if (v == 3) {
    assert_int_equal(uvchan_stage_close(self_close_stage, stage_closed), 0);
    assert_int_equal(uvchan_job_emit(job, &v), UV_ECANCELED);
  }
  return 0;
}

static int fn_done_inside(uvchan_job_t* job, void* value) {
  int v = *(int*)value;
  assert_int_equal(uvchan_job_emit(job, &v), 0);
  assert_int_equal(uvchan_job_done(job, v == 7 ? UV_E2BIG : 0), 0);
  assert_int_equal(uvchan_job_emit(job, &v), UV_EINVAL); /* done */
  return 0;
}

static void test_stage_calls_from_inside(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {2, UVCHAN_STAGE_ASYNC, NULL, NULL};
  endc_t e = {0, 1};
  src_t src;
  sink_t* k = calloc(1, sizeof(*k));

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 100), 0);
  self_close_stage = &st;
  closes = 0;
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_close_self, NULL), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  src_start(&src, &in, NULL, 10, 0);
  RUN(f);
  assert_int_equal(e.status, UV_ECANCELED);
  assert_int_equal(closes, 1);
  assert_int_equal(uvchan_len(&out), 4); /* 0..3: the emit before the close went straight out */
  assert_int_equal(uvchan_is_closed(&out), 1);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  RUN(f);

  /* an async function that is done before it returns; value 7 fails the stage */
  e.calls = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 2), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_done_inside, &o), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  src_start(&src, &in, NULL, 20, 1);
  sink_start(k, &out);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, UV_E2BIG);
  assert_int_equal(k->end, UV_EOF);
  assert_true(k->n <= 8); /* 7 may go out before its job fails */
  for (int i = 0; i < k->n; i++)
    assert_int_equal(k->got[i], i);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
  RUN(f);
  free(k);
}

/* A graceful shutdown closes stages like any uvchan object, async jobs still out included. */
static void test_stage_ctx_shutdown(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t in, out;
  uvchan_stage_t st, idle;
  uvchan_stage_opts_t o = {2, UVCHAN_STAGE_ASYNC, NULL, NULL};
  endc_t e = {0, 1};
  int v = 1;
  (void)state;

  npending = 0;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_init(&ctx, &in, sizeof(int), 4), 0);
  assert_int_equal(uvchan_init(&ctx, &out, sizeof(int), 4), 0);
  assert_int_equal(uvchan_try_send(&in, &v), 0);
  assert_int_equal(uvchan_stage_init(&ctx, &st, &in, &out, fn_async_hold_or_drop, &o), 0);
  st.data = &e;
  assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
  assert_int_equal(uvchan_stage_init(&ctx, &idle, &out, &in, fn_double, NULL), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(npending, 1);
  assert_int_equal(uvchan_ctx_close(&ctx, NULL), UV_EBUSY); /* the stage is open */
  assert_int_equal(uvchan_ctx_shutdown(&ctx, NULL), 0);
  {
    uvchan_stage_t st2;
    uvchan_pipeline_t p;
    memset(&st2, 0, sizeof(st2));
    assert_int_equal(uvchan_stage_init(&ctx, &st2, &in, &out, fn_double, NULL), UV_ECANCELED);
    assert_int_equal(uvchan_pipeline_init(&ctx, &p), UV_ECANCELED);
    assert_int_equal(uvchan_stage_start(&idle, NULL), UV_ECANCELED); /* never started */
  }
  (void)uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(e.status, UV_ECANCELED);
  assert_int_equal(uvchan_ctx_close(&ctx, NULL), UV_EINVAL); /* shutting down: waits for the job */
  assert_int_equal(uvchan_job_done(pending[0], 0), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- randomized: every combination of options under a random schedule ---- */

static uint64_t rng;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

/* Input v (heap) becomes v % 3 values v*10+i (heap): filters and several values per input. */
static int emit_for(uvchan_job_t* job, int v) {
  int* q;
  int r;
  for (int i = 0; i < v % 3; i++) {
    q = hv_new(v * 10 + i);
    if ((r = uvchan_job_emit(job, &q)) != 0) {
      hv_free(q); /* not taken: still ours */
      return r;
    }
  }
  return 0;
}

static int fn_rand_sync(uvchan_job_t* job, void* value) {
  int* p = *(int**)value;
  int v = *p;
  hv_free(p);
  return emit_for(job, v);
}

static int fn_rand_async(uvchan_job_t* job, void* value) {
  int* p = *(int**)value;
  job->data = (void*)(intptr_t)*p;
  hv_free(p);
  assert_true(npending < MAXJOBS);
  pending[npending++] = job;
  return 0;
}

static void test_stage_random_schedules(void** state) {
  fixture_t* f = FX(state);
  for (uint64_t seed = 1; seed <= 300; seed++) {
    uvchan_t in, out;
    uvchan_stage_t st;
    uvchan_stage_opts_t o;
    endc_t e = {0, 1};
    int next = 0, nin = 1 + (int)(seed % 60), got[400], ngot = 0, eof = 0, closed = 0, steps;
    int close_at;
    int* p;

    rng = seed * 0x9e3779b97f4a7c15ull;
    live = destroyed = npending = 0;
    memset(&o, 0, sizeof(o));
    o.parallel = 1 + rnd(4);
    o.flags = (rnd(2) ? UVCHAN_STAGE_ASYNC : 0) | (rnd(2) ? UVCHAN_STAGE_UNORDERED : 0);
    assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int*), rnd(4)), 0);
    assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int*), rnd(4)), 0);
    if (uvchan_cap(&out) > 0 && rnd(2))
      o.flags |= UVCHAN_STAGE_RESERVE;
    uvchan_set_destructor(&in, hv_dtor);
    uvchan_set_destructor(&out, hv_dtor);
    assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out,
                                       (o.flags & UVCHAN_STAGE_ASYNC) ? fn_rand_async
                                                                      : fn_rand_sync,
                                       &o),
                     0);
    st.data = &e;
    assert_int_equal(uvchan_stage_start(&st, stage_end), 0);
    close_at = rnd(3) == 0 ? (int)rnd(200) : -1;
    for (steps = 0; steps < 2000 && !eof; steps++) {
      if (steps == close_at) {
        assert_int_equal(uvchan_stage_close(&st, NULL), 0);
        closed = 1;
      }
      for (unsigned k = rnd(3); k > 0 && next < nin; k--) { /* a bursty producer */
        p = hv_new(next);
        if (uvchan_try_send(&in, &p) != 0) {
          hv_free(p);
          break;
        }
        next++;
      }
      if (next == nin && !uvchan_is_closed(&in))
        assert_int_equal(uvchan_close(&in), 0);
      while (npending > 0 && rnd(2)) { /* async jobs end in a random order */
        int i = (int)rnd((unsigned)npending);
        uvchan_job_t* job = pending[i];
        pending[i] = pending[--npending];
        (void)emit_for(job, (int)(intptr_t)job->data); /* UV_ECANCELED once closed */
        assert_int_equal(uvchan_job_done(job, 0), 0);
      }
      for (unsigned k = rnd(3); k > 0; k--) { /* a slow, irregular consumer */
        int r = uvchan_try_recv(&out, &p);
        if (r == UV_EOF) {
          eof = 1;
          break;
        }
        if (r != 0)
          break;
        assert_true(ngot < 400);
        got[ngot++] = *p;
        hv_free(p);
      }
      uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    if (!closed) {
      int expect = 0;
      assert_true(eof);
      assert_int_equal(e.status, 0);
      for (int v = 0; v < nin; v++)
        expect += v % 3;
      assert_int_equal(ngot, expect);
      if (!(o.flags & UVCHAN_STAGE_UNORDERED) || !(o.flags & UVCHAN_STAGE_ASYNC) ||
          o.parallel == 1)
        for (int i = 1; i < ngot; i++)
          assert_true(got[i] > got[i - 1]); /* input order, each job's values in emit order */
      assert_int_equal(uvchan_stage_close(&st, NULL), 0);
    }
    while (npending > 0) /* orphans: the close waits for them */
      assert_int_equal(uvchan_job_done(pending[--npending], 0), 0);
    RUN(f);
    if (closed || e.calls > 0)
      assert_int_equal(e.calls, 1);
    uvchan_destroy(&in);
    uvchan_destroy(&out);
    RUN(f);
    if (live != 0)
      fail_msg("seed %llu: %d values lost or leaked", (unsigned long long)seed, live);
  }
}

/* Tasks use the same channels: a task produces, a stage transforms, a task consumes. */
typedef struct {
  uvchan_t* ch;
  int sum, n;
} task_io_t;

static void producer_task(void* arg) {
  task_io_t* t = arg;
  for (int v = 0; v < 500; v++)
    assert_int_equal(uvchan_task_send(t->ch, &v), 0);
  assert_int_equal(uvchan_close(t->ch), 0);
}

static void consumer_task(void* arg) {
  task_io_t* t = arg;
  int v;
  while (uvchan_task_recv(t->ch, &v) == 0) {
    assert_int_equal(v, 2 * t->n);
    t->sum += v;
    t->n++;
  }
}

static void test_stage_with_tasks(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_stage_t st;
  uvchan_stage_opts_t o = {3, 0, NULL, NULL};
  task_io_t p, c;

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 8), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &in, &out, fn_double, &o), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  p.ch = &in;
  c.ch = &out;
  c.sum = c.n = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, producer_task, &p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, consumer_task, &c, NULL), 0);
  RUN(f);
  assert_int_equal(c.n, 500);
  assert_int_equal(c.sum, 499 * 500);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_stage_map_closes_output),
      TEST(test_stage_filter_and_several_values),
      TEST(test_stage_parallel_keeps_input_order),
      TEST(test_stage_parallel_unordered),
      TEST(test_stage_error_closes_output),
      TEST(test_stage_async_errors),
      TEST(test_stage_output_closed_under_it),
      TEST(test_stage_finish_emits_last),
      TEST(test_stage_holds_at_most_n),
      TEST(test_stage_backpressure_bounded),
      TEST(test_stage_backpressure_reserve),
      TEST(test_stage_reserve_async),
      TEST(test_stage_close_with_values_in_flight),
      TEST(test_stage_close_with_receive_matched),
      TEST(test_stage_calls_from_inside),
      cmocka_unit_test(test_stage_ctx_shutdown),
      TEST(test_stage_random_schedules),
      TEST(test_stage_with_tasks),
  };
  return cmocka_run_group_tests_name("pipeline-stage", tests, NULL, NULL);
}
