/* The pipeline group: one callback when every member has ended; the first error stops every
 * other member at once (each closes its output, so the sink sees the end) and is the
 * pipeline's status; closing the pipeline closes every member. */
#include "pipeline-helpers.h"

static int order[16], norder;

static void pipe_end(uvchan_pipeline_t* p, int status) {
  endc_t* e = p->data;
  e->calls++;
  e->status = status;
  order[norder++] = 'P';
}

static void pipe_closed(uvchan_pipeline_t* p, int status) {
  (void)p;
  (void)status;
  order[norder++] = 'C';
}

static void member_end(uvchan_stage_t* st, int status) {
  endc_t* e = st->data;
  e->calls++;
  e->status = status;
  order[norder++] = 'S';
}

static int fn_inc_fail_at(uvchan_job_t* job, void* value) {
  int v = *(int*)value + 1;
  int fail_at = (int)(intptr_t)job->stage->data;
  if (fail_at != 0 && v == fail_at)
    return UV_EIO;
  return uvchan_job_emit(job, &v);
}

static int fn_inc(uvchan_job_t* job, void* value) {
  int v = *(int*)value + 1;
  return uvchan_job_emit(job, &v);
}

/* source -> a -> A(+1) -> b -> broadcast -> two subscribers -> B(+1) and C(+1) -> merge -> sink */
typedef struct {
  uvchan_t a, b, c, d, out;
  uvchan_stage_t sa, sb, sc;
  uvchan_broadcast_t bc;
  uvchan_sub_t s1, s2;
  uvchan_merge_t m;
  uvchan_pipeline_t p;
  src_t src;
  sink_t k;
} graph_t;

static void graph_build(fixture_t* f, graph_t* g, int fail_at) {
  uvchan_stage_opts_t so = {2, 0, NULL, &g->p};
  uvchan_broadcast_opts_t bo = {NULL, NULL, &g->p};
  uvchan_merge_opts_t mo = {0, &g->p};
  uvchan_t* ins[2] = {&g->c, &g->d};

  assert_int_equal(uvchan_pipeline_init(&f->ctx, &g->p), 0);
  assert_int_equal(uvchan_init(&f->ctx, &g->a, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &g->b, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &g->c, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &g->d, sizeof(int), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &g->out, sizeof(int), 0), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &g->sa, &g->a, &g->b, fn_inc_fail_at, &so), 0);
  g->sa.data = (void*)(intptr_t)fail_at;
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &g->bc, &g->b, &bo), 0);
  assert_int_equal(uvchan_subscribe(&g->bc, &g->s1, 1, UVCHAN_LAG_BLOCK), 0);
  assert_int_equal(uvchan_subscribe(&g->bc, &g->s2, 1, UVCHAN_LAG_BLOCK), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &g->sb, &g->s1.chan, &g->c, fn_inc, &so), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &g->sc, &g->s2.chan, &g->d, fn_inc, &so), 0);
  assert_int_equal(uvchan_merge_init(&f->ctx, &g->m, ins, 2, &g->out, &mo), 0);
}

static void graph_destroy(fixture_t* f, graph_t* g) {
  assert_int_equal(uvchan_pipeline_close(&g->p, pipe_closed), 0);
  assert_int_equal(uvchan_pipeline_close(&g->p, NULL), UV_EINVAL);
  RUN(f);
  uvchan_destroy(&g->a);
  uvchan_destroy(&g->b);
  uvchan_destroy(&g->c);
  uvchan_destroy(&g->d);
  uvchan_destroy(&g->out);
  RUN(f);
}

static void test_pipeline_succeeds(void** state) {
  fixture_t* f = FX(state);
  graph_t* g = calloc(1, sizeof(*g));
  endc_t e = {0, 1};
  int count[200] = {0};

  norder = 0;
  graph_build(f, g, 0);
  g->p.data = &e;
  assert_int_equal(uvchan_pipeline_start(&g->p, pipe_end), 0);
  assert_int_equal(uvchan_pipeline_start(&g->p, pipe_end), UV_EINVAL); /* once */
  assert_int_equal(uvchan_stage_start(&g->sa, NULL), UV_EINVAL);    /* started by it */
  src_start(&g->src, &g->a, NULL, 100, 1);
  sink_start(&g->k, &g->out);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, 0);
  assert_int_equal(g->p.status, 0);
  assert_int_equal(g->k.end, UV_EOF);
  assert_int_equal(g->k.n, 200); /* every value through both branches */
  for (int i = 0; i < 200; i++)
    count[g->k.got[i] - 2]++;
  for (int v = 0; v < 100; v++)
    assert_int_equal(count[v], 2);
  graph_destroy(f, g);
  assert_int_equal(norder, 2);
  assert_int_equal(order[0], 'P');
  assert_int_equal(order[1], 'C');
  free(g);
}

static void test_pipeline_first_error_stops_all(void** state) {
  fixture_t* f = FX(state);
  graph_t* g = calloc(1, sizeof(*g));
  endc_t e = {0, 1}, eb = {0, 1};

  norder = 0;
  graph_build(f, g, 50); /* A fails on its 50th value */
  g->p.data = &e;
  g->sb.data = &eb;
  g->sa.data = (void*)(intptr_t)50;
  assert_int_equal(uvchan_stage_start(&g->sb, member_end), 0); /* with its own callback */
  assert_int_equal(uvchan_pipeline_start(&g->p, pipe_end), 0);
  src_start(&g->src, &g->a, NULL, 100, 1);
  sink_start(&g->k, &g->out);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, UV_EIO);
  assert_int_equal(g->p.status, UV_EIO);
  assert_int_equal(g->sa.status, UV_EIO);
  assert_int_equal(eb.calls, 1);
  assert_int_equal(eb.status, UV_ECANCELED); /* stopped by the pipeline, not drained */
  assert_int_equal(g->sc.status, UV_ECANCELED);
  assert_int_equal(g->m.status, UV_ECANCELED);
  assert_int_equal(g->bc.status, UV_ECANCELED);
  assert_int_equal(g->k.end, UV_EOF); /* the sink sees the end */
  assert_true(g->k.n < 2 * 49);
  assert_int_equal(order[0], 'S'); /* members' callbacks before the pipeline's */
  assert_int_equal(order[norder - 1], 'P');
  graph_destroy(f, g);
  free(g);
}

/* Closing a running pipeline ends it with UV_ECANCELED, then closes it: end before close. */
static void test_pipeline_close_while_running(void** state) {
  fixture_t* f = FX(state);
  graph_t* g = calloc(1, sizeof(*g));
  endc_t e = {0, 1};

  norder = 0;
  graph_build(f, g, 0);
  g->p.data = &e;
  assert_int_equal(uvchan_pipeline_start(&g->p, pipe_end), 0);
  src_start(&g->src, &g->a, NULL, 100, 1);
  RUN(f); /* stalls: nobody reads `out` */
  assert_int_equal(e.calls, 0);
  graph_destroy(f, g);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, UV_ECANCELED);
  assert_int_equal(norder, 2);
  assert_int_equal(order[0], 'P');
  assert_int_equal(order[1], 'C');
  assert_int_equal(g->src.status, UV_ECANCELED); /* its waiting send: `a` destroyed */
  free(g);
}

/* Members that never ran; a pipeline without members; a pipeline closed before it started. */
static void test_pipeline_corners(void** state) {
  fixture_t* f = FX(state);
  uvchan_pipeline_t p;
  uvchan_t a, b;
  uvchan_stage_t st;
  uvchan_stage_opts_t so = {1, 0, NULL, &p};
  endc_t e = {0, 1};

  norder = 0;
  assert_int_equal(uvchan_pipeline_init(&f->ctx, &p), 0);
  assert_int_equal(uvchan_pipeline_init(&f->ctx, &p), UV_EBUSY);
  p.data = &e;
  assert_int_equal(uvchan_pipeline_start(&p, pipe_end), 0);
  assert_int_equal(e.calls, 0);
  RUN(f);
  assert_int_equal(e.calls, 1); /* nothing to wait for */
  assert_int_equal(e.status, 0);
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 1), 0);
  /* started: no member may join */
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, fn_inc, &so), UV_EINVAL);
  assert_int_equal(uvchan_pipeline_close(&p, pipe_closed), 0);
  RUN(f);
  assert_int_equal(order[norder - 1], 'C');

  /* closed before it started: its member closes, no end callback */
  e.calls = 0;
  assert_int_equal(uvchan_pipeline_init(&f->ctx, &p), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, fn_inc, &so), 0);
  assert_int_equal(uvchan_pipeline_close(&p, pipe_closed), 0);
  assert_int_equal(uvchan_pipeline_start(&p, pipe_end), UV_EINVAL);
  RUN(f);
  assert_int_equal(e.calls, 0);
  assert_int_equal(uvchan_stage_close(&st, NULL), UV_EINVAL); /* closed with the pipeline */
  uvchan_destroy(&a);
  uvchan_destroy(&b);
}

/* Every pipeline call from another thread than the context's returns UV_EPERM and changes
 * nothing. */
typedef struct {
  uvchan_ctx_t* ctx;
  uvchan_t *a, *b, *c;
  uvchan_stage_t* st;
  uvchan_merge_t* m;
  uvchan_broadcast_t* bc;
  uvchan_sub_t* sub;
  uvchan_pipeline_t* p;
  uvchan_job_t* job;
  int codes[32];
  int n;
} foreign_t;

static uvchan_job_t* held;
static int fn_hold(uvchan_job_t* job, void* value) {
  (void)value;
  held = job;
  return 0;
}

static void foreign_calls(void* arg) {
  foreign_t* x = arg;
  uvchan_stage_t st2;
  uvchan_merge_t m2;
  uvchan_broadcast_t bc2;
  uvchan_sub_t sub2;
  uvchan_pipeline_t p2;
  uvchan_t* ins[1] = {x->c};
  int v = 1;
  memset(&st2, 0, sizeof(st2));
  memset(&m2, 0, sizeof(m2));
  memset(&bc2, 0, sizeof(bc2));
  memset(&sub2, 0, sizeof(sub2));
  memset(&p2, 0, sizeof(p2));
  x->n = 0;
  x->codes[x->n++] = uvchan_stage_init(x->ctx, &st2, x->b, x->c, fn_inc, NULL);
  x->codes[x->n++] = uvchan_stage_start(x->st, NULL);
  x->codes[x->n++] = uvchan_stage_close(x->st, NULL);
  x->codes[x->n++] = uvchan_job_emit(x->job, &v);
  x->codes[x->n++] = uvchan_job_done(x->job, 0);
  x->codes[x->n++] = uvchan_merge_init(x->ctx, &m2, ins, 1, x->b, NULL);
  x->codes[x->n++] = uvchan_merge_start(x->m, NULL);
  x->codes[x->n++] = uvchan_merge_close(x->m, NULL);
  x->codes[x->n++] = uvchan_broadcast_init(x->ctx, &bc2, x->c, NULL);
  x->codes[x->n++] = uvchan_subscribe(x->bc, &sub2, 1, UVCHAN_LAG_BLOCK);
  x->codes[x->n++] = uvchan_unsubscribe(x->sub);
  x->codes[x->n++] = uvchan_broadcast_start(x->bc, NULL);
  x->codes[x->n++] = uvchan_broadcast_close(x->bc, NULL);
  x->codes[x->n++] = uvchan_pipeline_init(x->ctx, &p2);
  x->codes[x->n++] = uvchan_pipeline_start(x->p, NULL);
  x->codes[x->n++] = uvchan_pipeline_close(x->p, NULL);
}

static void test_pipeline_wrong_thread(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b, c, d;
  uvchan_t* ins[1] = {&d};
  uvchan_stage_t st;
  uvchan_stage_opts_t so = {1, UVCHAN_STAGE_ASYNC, NULL, NULL};
  uvchan_merge_t m;
  uvchan_broadcast_t bc;
  uvchan_sub_t sub;
  uvchan_pipeline_t p;
  uv_thread_t th;
  foreign_t x;
  int v = 5;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &c, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &d, sizeof(int), 1), 0);
  assert_int_equal(uvchan_stage_init(&f->ctx, &st, &a, &b, fn_hold, &so), 0);
  assert_int_equal(uvchan_stage_start(&st, NULL), 0);
  assert_int_equal(uvchan_try_send(&a, &v), 0);
  RUN(f);
  assert_non_null(held);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 1, &c, NULL), 0);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &c, NULL), 0);
  assert_int_equal(uvchan_subscribe(&bc, &sub, 1, UVCHAN_LAG_BLOCK), 0);
  assert_int_equal(uvchan_pipeline_init(&f->ctx, &p), 0);
  memset(&x, 0, sizeof(x));
  x.ctx = &f->ctx;
  x.a = &a;
  x.b = &b;
  x.c = &c;
  x.st = &st;
  x.m = &m;
  x.bc = &bc;
  x.sub = &sub;
  x.p = &p;
  x.job = held;
  assert_int_equal(uv_thread_create(&th, foreign_calls, &x), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(x.n, 16);
  for (int i = 0; i < x.n; i++)
    if (x.codes[i] != UV_EPERM)
      fail_msg("call %d from the wrong thread returned %d, not UV_EPERM", i, x.codes[i]);
  /* untouched: the job still runs, nothing was started or closed */
  v = 6;
  assert_int_equal(uvchan_job_emit(held, &v), 0);
  assert_int_equal(uvchan_job_done(held, 0), 0);
  RUN(f);
  assert_int_equal(uvchan_try_recv(&b, &v), 0);
  assert_int_equal(v, 6);
  assert_int_equal(uvchan_merge_start(&m, NULL), 0);
  assert_int_equal(uvchan_broadcast_start(&bc, NULL), 0);
  assert_int_equal(uvchan_unsubscribe(&sub), 0);
  assert_int_equal(uvchan_pipeline_start(&p, NULL), 0);
  assert_int_equal(uvchan_stage_close(&st, NULL), 0);
  assert_int_equal(uvchan_merge_close(&m, NULL), 0);
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
  assert_int_equal(uvchan_pipeline_close(&p, NULL), 0);
  RUN(f);
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  uvchan_destroy(&c);
  uvchan_destroy(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_pipeline_succeeds),
      TEST(test_pipeline_first_error_stops_all),
      TEST(test_pipeline_close_while_running),
      TEST(test_pipeline_corners),
      TEST(test_pipeline_wrong_thread),
  };
  return cmocka_run_group_tests_name("pipeline-group", tests, NULL, NULL);
}
