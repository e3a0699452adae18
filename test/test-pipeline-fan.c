/* Fan-out (several stages on one channel), fan-in (merge) and broadcast: every value once to
 * exactly one worker, every input's values in order into one channel, every value to every
 * subscriber; the slow subscriber under each lag policy, with drop counts and destructor calls. */
#include "pipeline-helpers.h"

static int fn_tag(uvchan_job_t* job, void* value) {
  /* tags the value with the worker: values below 1000, workers as thousands */
  int v = *(int*)value + 1000 * (int)(intptr_t)job->stage->data;
  return uvchan_job_emit(job, &v);
}

static void merge_end(uvchan_merge_t* m, int status) {
  endc_t* e = m->data;
  e->calls++;
  e->status = status;
}

static void bcast_end(uvchan_broadcast_t* b, int status) {
  endc_t* e = b->data;
  e->calls++;
  e->status = status;
}

/* Three stages read one channel (fan-out); a merge joins their outputs (fan-in). */
static void test_fan_out_and_in(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, outs[3], all;
  uvchan_t* ins[3] = {&outs[0], &outs[1], &outs[2]};
  uvchan_stage_t st[3];
  uvchan_merge_t m;
  endc_t e = {0, 1};
  src_t src;
  sink_t* k = calloc(1, sizeof(*k));
  int seen[500] = {0}, per[3] = {0, 0, 0};

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 4), 0);
  assert_int_equal(uvchan_init(&f->ctx, &all, sizeof(int), 0), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(uvchan_init(&f->ctx, &outs[i], sizeof(int), 1), 0);
    assert_int_equal(uvchan_stage_init(&f->ctx, &st[i], &in, &outs[i], fn_tag, NULL), 0);
    st[i].data = (void*)(intptr_t)(i + 1);
    assert_int_equal(uvchan_stage_start(&st[i], NULL), 0);
  }
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 3, &all, NULL), 0);
  m.data = &e;
  assert_int_equal(uvchan_merge_start(&m, merge_end), 0);
  src_start(&src, &in, NULL, 500, 1);
  sink_start(k, &all);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, 0);
  assert_int_equal(k->end, UV_EOF); /* closed once every input closed */
  assert_int_equal(k->n, 500);
  assert_int_equal(m.outputs, 500);
  for (int i = 0; i < 500; i++) {
    int w = k->got[i] / 1000 - 1, v = k->got[i] % 1000;
    assert_true(w >= 0 && w < 3);
    seen[v]++;
    per[w]++;
  }
  for (int v = 0; v < 500; v++)
    assert_int_equal(seen[v], 1); /* each value to exactly one worker */
  assert_true(per[0] > 0 && per[1] > 0 && per[2] > 0); /* all three worked */
  for (int i = 0; i < 3; i++)
    assert_int_equal(uvchan_stage_close(&st[i], NULL), 0);
  assert_int_equal(uvchan_merge_close(&m, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  uvchan_destroy(&all);
  for (int i = 0; i < 3; i++)
    uvchan_destroy(&outs[i]);
  free(k);
}

/* Each input's values keep their order through the merge. */
static void test_merge_keeps_each_input_in_order(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b, c, out;
  uvchan_t* ins[3] = {&a, &b, &c};
  uvchan_merge_t m;
  uvchan_merge_opts_t mo = {UVCHAN_LEAVE_OPEN, NULL};
  int va[100], vb[100], vc[100], last[3] = {-1, -1, -1};
  src_t sa, sb, sc;
  sink_t* k = calloc(1, sizeof(*k));
  endc_t e = {0, 1};

  for (int i = 0; i < 100; i++) {
    va[i] = i;
    vb[i] = 1000 + i;
    vc[i] = 2000 + i;
  }
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 3), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &c, sizeof(int), 7), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 2), 0);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 3, &out, &mo), 0);
  m.data = &e;
  assert_int_equal(uvchan_merge_start(&m, merge_end), 0);
  src_start(&sa, &a, va, 100, 1);
  src_start(&sb, &b, vb, 100, 1);
  src_start(&sc, &c, vc, 100, 1);
  sink_start(k, &out);
  RUN(f);
  assert_int_equal(e.status, 0);
  assert_int_equal(k->n, 300);
  assert_int_equal(k->end, 0);                 /* UVCHAN_LEAVE_OPEN: still open */
  assert_int_equal(uvchan_is_closed(&out), 0);
  for (int i = 0; i < 300; i++) {
    int w = k->got[i] / 1000;
    assert_true(k->got[i] % 1000 > last[w]);
    last[w] = k->got[i] % 1000;
  }
  assert_int_equal(uvchan_close(&out), 0);
  RUN(f);
  assert_int_equal(k->end, UV_EOF);
  assert_int_equal(uvchan_merge_close(&m, NULL), 0);
  RUN(f);
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  uvchan_destroy(&c);
  uvchan_destroy(&out);
  free(k);
}

/* A merge takes one value at a time: with nowhere to put it, it holds exactly one, and that one
 * goes to the output's destructor when the merge closes. */
static void test_merge_holds_one_value(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b, out;
  uvchan_t* ins[2] = {&a, &b};
  uvchan_merge_t m;
  endc_t e = {0, 1};
  int* p;

  live = destroyed = 0;
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int*), 4), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int*), 4), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int*), 0), 0);
  uvchan_set_destructor(&a, hv_dtor);
  uvchan_set_destructor(&b, hv_dtor);
  uvchan_set_destructor(&out, hv_dtor);
  for (int i = 0; i < 4; i++) {
    p = hv_new(i);
    assert_int_equal(uvchan_try_send(&a, &p), 0);
    p = hv_new(10 + i);
    assert_int_equal(uvchan_try_send(&b, &p), 0);
  }
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 2, &out, NULL), 0);
  m.data = &e;
  assert_int_equal(uvchan_merge_start(&m, merge_end), 0);
  RUN(f);
  assert_int_equal(uvchan_len(&a) + uvchan_len(&b), 7);
  assert_int_equal(uvchan_waiting_senders(&out), 1);
  assert_int_equal(uvchan_merge_close(&m, NULL), 0);
  assert_int_equal(destroyed, 1);
  assert_int_equal(uvchan_is_closed(&out), 1);
  RUN(f);
  assert_int_equal(e.status, UV_ECANCELED);
  uvchan_destroy(&a);
  uvchan_destroy(&b);
  uvchan_destroy(&out);
  assert_int_equal(live, 0);
  assert_int_equal(destroyed, 8);
}

static void test_merge_output_closed_under_it(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, out;
  uvchan_t* ins[1] = {&a};
  uvchan_merge_t m;
  endc_t e = {0, 1};
  int v = 1;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 4), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 1), 0);
  assert_int_equal(uvchan_merge_init(&f->ctx, &m, ins, 1, &out, NULL), 0);
  m.data = &e;
  assert_int_equal(uvchan_merge_start(&m, merge_end), 0);
  assert_int_equal(uvchan_try_send(&a, &v), 0);
  assert_int_equal(uvchan_try_send(&a, &v), 0);
  RUN(f);
  assert_int_equal(uvchan_close(&out), 0);
  RUN(f);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.status, UV_EPIPE);
  assert_int_equal(m.status, UV_EPIPE);
  assert_int_equal(uvchan_merge_close(&m, NULL), 0);
  RUN(f);
  uvchan_destroy(&a);
  uvchan_destroy(&out);
}

/* ---- broadcast ---- */

static int ndtor, dtor_sum;
static void count_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  ndtor++;
  dtor_sum += *(int*)value;
}

static void test_broadcast_every_subscriber_gets_every_value(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in;
  uvchan_broadcast_t bc;
  uvchan_sub_t subs[3];
  sink_t* k[3];
  src_t src;
  endc_t e = {0, 1};

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 1), 0);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, NULL), 0);
  bc.data = &e;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(uvchan_subscribe(&bc, &subs[i], (size_t)i, UVCHAN_LAG_BLOCK), 0);
    k[i] = calloc(1, sizeof(sink_t));
    sink_start(k[i], &subs[i].chan);
  }
  assert_int_equal(uvchan_subscribe(&bc, &subs[0], 1, UVCHAN_LAG_BLOCK), UV_EBUSY);
  assert_int_equal(uvchan_broadcast_start(&bc, bcast_end), 0);
  src_start(&src, &in, NULL, 200, 1);
  RUN(f);
  assert_int_equal(e.status, 0);
  assert_int_equal(bc.inputs, 200);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(k[i]->n, 200);
    for (int j = 0; j < 200; j++)
      assert_int_equal(k[i]->got[j], j);
    assert_int_equal(k[i]->end, UV_EOF);
    assert_int_equal(subs[i].status, UV_EOF);
    free(k[i]);
  }
  assert_int_equal(uvchan_subscribe(&bc, &subs[0], 1, UVCHAN_LAG_BLOCK), UV_EBUSY);
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
}

/* A fast subscriber that reads and a slow one that never does, with a buffer of 4. Under the
 * dropping policies and DISCONNECT the producer is never held back: it sends all 100 values
 * while the slow one reads nothing. */
static void run_slow_subscriber(fixture_t* f, uvchan_lag policy, int* slow_got, int* nslow,
                                uint64_t* dropped, int* sub_status) {
  uvchan_t in;
  uvchan_broadcast_t bc;
  uvchan_broadcast_opts_t bo = {NULL, count_dtor, NULL};
  uvchan_sub_t fast, slow;
  sink_t* k = calloc(1, sizeof(*k));
  src_t src;
  int v;

  ndtor = dtor_sum = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 1), 0);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, &bo), 0);
  assert_int_equal(uvchan_subscribe(&bc, &fast, 2, UVCHAN_LAG_BLOCK), 0);
  assert_int_equal(uvchan_subscribe(&bc, &slow, 4, policy), 0);
  sink_start(k, &fast.chan);
  assert_int_equal(uvchan_broadcast_start(&bc, NULL), 0);
  src_start(&src, &in, NULL, 100, 1);
  RUN(f);
  assert_int_equal(src.accepted, 100); /* the producer was never blocked */
  assert_int_equal(k->n, 100);
  assert_int_equal(k->end, UV_EOF);
  *dropped = uvchan_dropped(&slow.chan);
  *sub_status = slow.status;
  *nslow = 0;
  while (uvchan_try_recv(&slow.chan, &v) == 0)
    slow_got[(*nslow)++] = v;
  assert_int_equal(uvchan_try_recv(&slow.chan, &v), UV_EOF);
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  free(k);
}

static void test_broadcast_slow_subscriber_drop_oldest(void** state) {
  int got[8], n, st;
  uint64_t dropped;
  run_slow_subscriber(FX(state), UVCHAN_LAG_DROP_OLDEST, got, &n, &dropped, &st);
  assert_int_equal(n, 4);
  for (int i = 0; i < 4; i++)
    assert_int_equal(got[i], 96 + i); /* the newest four */
  assert_int_equal(dropped, 96);
  assert_int_equal(ndtor, 96); /* every drop went to the destructor */
  assert_int_equal(dtor_sum, 95 * 96 / 2);
  assert_int_equal(st, UV_EOF);
}

static void test_broadcast_slow_subscriber_drop_newest(void** state) {
  int got[8], n, st;
  uint64_t dropped;
  run_slow_subscriber(FX(state), UVCHAN_LAG_DROP_NEWEST, got, &n, &dropped, &st);
  assert_int_equal(n, 4);
  for (int i = 0; i < 4; i++)
    assert_int_equal(got[i], i); /* the first four */
  assert_int_equal(dropped, 96);
  assert_int_equal(ndtor, 96);
  assert_int_equal(dtor_sum, 99 * 100 / 2 - 6);
  assert_int_equal(st, UV_EOF);
}

static void test_broadcast_slow_subscriber_disconnected(void** state) {
  int got[8], n, st;
  uint64_t dropped;
  run_slow_subscriber(FX(state), UVCHAN_LAG_DISCONNECT, got, &n, &dropped, &st);
  assert_int_equal(n, 4); /* what it had when it fell behind, then UV_EOF */
  for (int i = 0; i < 4; i++)
    assert_int_equal(got[i], i);
  assert_int_equal(st, UV_ENOBUFS);
  assert_int_equal(dropped, 0);
  assert_int_equal(ndtor, 0); /* plain values: a copy never made is not destroyed */
}

/* Under BLOCK the slow subscriber paces everything: the producer waits. */
static void test_broadcast_slow_subscriber_blocks(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in;
  uvchan_broadcast_t bc;
  uvchan_sub_t fast, slow;
  sink_t* k = calloc(1, sizeof(*k));
  sink_t* ks = calloc(1, sizeof(*ks));
  src_t src;

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 1), 0);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, NULL), 0);
  assert_int_equal(uvchan_subscribe(&bc, &fast, 2, UVCHAN_LAG_BLOCK), 0);
  assert_int_equal(uvchan_subscribe(&bc, &slow, 4, UVCHAN_LAG_BLOCK), 0);
  sink_start(k, &fast.chan);
  assert_int_equal(uvchan_broadcast_start(&bc, NULL), 0);
  src_start(&src, &in, NULL, 100, 1);
  RUN(f);
  /* slow's buffer 4 + the value the broadcast waits to hand it + the input's buffer 1 */
  assert_int_equal(src.accepted, 6);
  assert_true(src.waiting);
  assert_int_equal(k->n, 5);
  assert_int_equal(uvchan_len(&slow.chan), 4);
  sink_start(ks, &slow.chan);
  RUN(f);
  assert_int_equal(src.accepted, 100);
  assert_int_equal(k->n, 100);
  assert_int_equal(ks->n, 100);
  for (int i = 0; i < 100; i++)
    assert_int_equal(ks->got[i], i);
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
  free(k);
  free(ks);
}

/* ---- values that own memory: a reference count per value ---- */

typedef struct {
  int refs;
  int v;
} rc_t;
static int rc_live;

static rc_t* rc_new(int v) {
  rc_t* r = malloc(sizeof(*r));
  assert_non_null(r);
  r->refs = 1;
  r->v = v;
  rc_live++;
  return r;
}

static void rc_put(rc_t* r) {
  assert_true(r->refs > 0);
  if (--r->refs == 0) {
    rc_live--;
    free(r);
  }
}

static int rc_copies;
static int rc_copy(uvchan_broadcast_t* bc, void* dst, const void* src) {
  rc_t* r = *(rc_t* const*)src;
  (void)bc;
  r->refs++;
  rc_copies++;
  *(rc_t**)dst = r;
  return 0;
}

static void rc_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  rc_put(*(rc_t**)value);
}

/* A subscriber that reads n references and releases them. */
typedef struct {
  uvchan_recv_t req;
  uvchan_t* ch;
  rc_t* got;
  int n, limit, end;
} rc_sink_t;

static void rc_sink_recv(uvchan_recv_t* r, int st) {
  rc_sink_t* k = r->data;
  if (st != 0) {
    k->end = st;
    return;
  }
  assert_int_equal(k->got->v, k->n);
  rc_put(k->got);
  if (++k->n < k->limit)
    assert_int_equal(uvchan_recv(&k->req, k->ch, &k->got, rc_sink_recv), 0);
}

static void rc_sink_start(rc_sink_t* k, uvchan_t* ch, int limit) {
  memset(k, 0, sizeof(*k));
  k->ch = ch;
  k->limit = limit;
  k->req.data = k;
  assert_int_equal(uvchan_recv(&k->req, ch, &k->got, rc_sink_recv), 0);
}

/* Each subscriber gets its own reference; every reference is released once: received, dropped,
 * left in a buffer at teardown, or (the broadcast's own) after the round. One subscriber is
 * unsubscribed while the broadcast waits for room in its buffer. */
static void test_broadcast_copies_and_teardown(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in;
  uvchan_broadcast_t bc;
  uvchan_broadcast_opts_t bo = {rc_copy, rc_dtor, NULL};
  uvchan_sub_t reader, sliding, blocking;
  rc_sink_t k;
  endc_t e = {0, 1};
  rc_t* r;
  int sent = 0;

  rc_live = rc_copies = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(rc_t*), 4), 0);
  uvchan_set_destructor(&in, rc_dtor);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, &bo), 0);
  bc.data = &e;
  assert_int_equal(uvchan_subscribe(&bc, &reader, 1, UVCHAN_LAG_BLOCK), 0);
  assert_int_equal(uvchan_subscribe(&bc, &sliding, 3, UVCHAN_LAG_DROP_OLDEST), 0);
  assert_int_equal(uvchan_subscribe(&bc, &blocking, 2, UVCHAN_LAG_BLOCK), 0);
  rc_sink_start(&k, &reader.chan, 1000);
  assert_int_equal(uvchan_broadcast_start(&bc, bcast_end), 0);
  for (; sent < 4; sent++) {
    r = rc_new(sent);
    assert_int_equal(uvchan_try_send(&in, &r), 0);
  }
  RUN(f);
  /* blocking holds 0 and 1, and the broadcast waits to hand it 2 */
  assert_int_equal(uvchan_len(&blocking.chan), 2);
  assert_int_equal(k.n, 3);
  assert_int_equal(uvchan_unsubscribe(&blocking), 0); /* its two references released */
  assert_int_equal(uvchan_unsubscribe(&blocking), UV_EINVAL);
  RUN(f);
  assert_int_equal(k.n, 4);
  for (; sent < 10; sent++) {
    r = rc_new(sent);
    assert_int_equal(uvchan_try_send(&in, &r), 0);
    RUN(f);
  }
  assert_int_equal(k.n, 10);
  assert_int_equal(uvchan_len(&sliding.chan), 3);
  assert_int_equal(uvchan_dropped(&sliding.chan), 7);
  /* Now close with a value in the input and the sliding buffer full. */
  r = rc_new(sent++);
  assert_int_equal(uvchan_try_send(&in, &r), 0);
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
  RUN(f);
  assert_int_equal(e.status, UV_ECANCELED);
  assert_int_equal(k.end, UV_EOF); /* the close ended the broadcast: its channel closed */
  uvchan_destroy(&in); /* value 10 was in the broadcast's receive: the close released it */
  assert_int_equal(rc_live, 0);
  assert_true(rc_copies >= 10 * 2);
}

/* With no subscriber a value is consumed and destroyed; a subscriber's channel closed by
 * somebody else counts as gone. */
static void test_broadcast_without_subscribers(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in;
  uvchan_broadcast_t bc;
  uvchan_broadcast_opts_t bo = {NULL, count_dtor, NULL};
  uvchan_sub_t s;
  src_t src;
  int v;

  ndtor = dtor_sum = 0;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 0), 0);
  assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, &bo), 0);
  assert_int_equal(uvchan_broadcast_start(&bc, NULL), 0);
  src_start(&src, &in, NULL, 10, 0);
  RUN(f);
  assert_int_equal(ndtor, 10);
  assert_int_equal(dtor_sum, 45);
  assert_int_equal(uvchan_subscribe(&bc, &s, 2, UVCHAN_LAG_DROP_NEWEST), 0);
  assert_int_equal(uvchan_close(&s.chan), 0); /* not the subscriber's to do, but survivable */
  v = 7;
  assert_int_equal(uvchan_try_send(&in, &v), 0);
  RUN(f);
  assert_int_equal(s.status, UV_EPIPE);
  assert_int_equal(ndtor, 11); /* nobody took 7 */
  assert_int_equal(uvchan_close(&in), 0);
  RUN(f);
  assert_int_equal(uvchan_subscribe(&bc, &s, 2, UVCHAN_LAG_BLOCK), UV_EBUSY);
  assert_int_equal(uvchan_unsubscribe(&s), 0);
  assert_int_equal(uvchan_subscribe(&bc, &s, 2, UVCHAN_LAG_BLOCK), UV_EPIPE); /* ended */
  assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
  RUN(f);
  uvchan_destroy(&in);
}

/* ---- randomized broadcast: random policies, capacities, consumers, unsubscribes, closes ---- */

static uint64_t rng;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

static void test_broadcast_random_schedules(void** state) {
  fixture_t* f = FX(state);
  enum { NSUB = 4 };
  for (uint64_t seed = 1; seed <= 200; seed++) {
    uvchan_t in;
    uvchan_broadcast_t bc;
    uvchan_broadcast_opts_t bo = {rc_copy, rc_dtor, NULL};
    uvchan_sub_t subs[NSUB];
    uvchan_lag pol[NSUB];
    int last[NSUB], ngot[NSUB], subbed[NSUB], next = 0, nin = 1 + (int)(seed % 50), closed = 0;
    int close_at;
    rc_t* r;

    rng = seed * 0x9e3779b97f4a7c15ull;
    rc_live = 0;
    assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(rc_t*), rnd(3)), 0);
    uvchan_set_destructor(&in, rc_dtor);
    assert_int_equal(uvchan_broadcast_init(&f->ctx, &bc, &in, &bo), 0);
    for (int i = 0; i < NSUB; i++) {
      pol[i] = (uvchan_lag)rnd(4);
      assert_int_equal(uvchan_subscribe(&bc, &subs[i], 1 + rnd(3), pol[i]), 0);
      last[i] = -1;
      ngot[i] = 0;
      subbed[i] = 1;
    }
    assert_int_equal(uvchan_broadcast_start(&bc, NULL), 0);
    close_at = rnd(3) == 0 ? (int)rnd(150) : -1;
    for (int step = 0; step < 3000; step++) {
      int all_done = 1;
      if (step == close_at) {
        assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
        closed = 1;
        for (int i = 0; i < NSUB; i++)
          subbed[i] = 0;
      }
      for (unsigned k = rnd(3); k > 0 && next < nin; k--) {
        r = rc_new(next);
        if (uvchan_try_send(&in, &r) != 0) {
          rc_put(r);
          break;
        }
        next++;
      }
      if (next == nin && !uvchan_is_closed(&in))
        assert_int_equal(uvchan_close(&in), 0);
      for (int i = 0; i < NSUB; i++) {
        if (!subbed[i])
          continue;
        if (rnd(100) == 0 && !closed) { /* gone for good */
          assert_int_equal(uvchan_unsubscribe(&subs[i]), 0);
          subbed[i] = 0;
          continue;
        }
        for (unsigned k = rnd(i == 0 ? 2 : 4); k > 0; k--) { /* subscriber 0 is the slowest */
          int st = uvchan_try_recv(&subs[i].chan, &r);
          if (st == UV_EOF) {
            subbed[i] = -1; /* ended */
            break;
          }
          if (st != 0)
            break;
          assert_true(r->v > last[i]); /* each subscriber sees values in order */
          if (pol[i] == UVCHAN_LAG_BLOCK)
            assert_int_equal(r->v, last[i] + 1); /* and a blocking one sees all of them */
          last[i] = r->v;
          ngot[i]++;
          rc_put(r);
        }
        if (subbed[i] == 1)
          all_done = 0;
      }
      uv_run(&f->loop, UV_RUN_NOWAIT);
      if (all_done && next == nin)
        break;
    }
    if (!closed) {
      assert_int_equal(bc.status, 0);
      for (int i = 0; i < NSUB; i++) {
        if (subbed[i] != -1)
          continue; /* unsubscribed midway */
        if (pol[i] == UVCHAN_LAG_BLOCK)
          assert_int_equal(ngot[i], nin);
        if (pol[i] == UVCHAN_LAG_DISCONNECT && ngot[i] < nin)
          assert_int_equal(subs[i].status, UV_ENOBUFS);
        if (pol[i] == UVCHAN_LAG_DROP_OLDEST || pol[i] == UVCHAN_LAG_DROP_NEWEST)
          assert_int_equal((uint64_t)ngot[i] + uvchan_dropped(&subs[i].chan), (uint64_t)nin);
      }
      assert_int_equal(uvchan_broadcast_close(&bc, NULL), 0);
    }
    RUN(f);
    uvchan_destroy(&in);
    if (rc_live != 0)
      fail_msg("seed %llu: %d values lost or leaked", (unsigned long long)seed, rc_live);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_fan_out_and_in),
      TEST(test_merge_keeps_each_input_in_order),
      TEST(test_merge_holds_one_value),
      TEST(test_merge_output_closed_under_it),
      TEST(test_broadcast_every_subscriber_gets_every_value),
      TEST(test_broadcast_slow_subscriber_drop_oldest),
      TEST(test_broadcast_slow_subscriber_drop_newest),
      TEST(test_broadcast_slow_subscriber_disconnected),
      TEST(test_broadcast_slow_subscriber_blocks),
      TEST(test_broadcast_copies_and_teardown),
      TEST(test_broadcast_without_subscribers),
      TEST(test_broadcast_random_schedules),
  };
  return cmocka_run_group_tests_name("pipeline-fan", tests, NULL, NULL);
}
