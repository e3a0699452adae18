/* Select, callback style, with the ideas of Go's select tests (test/chan/select*.go,
 * runtime TestSelect*). */
#include <math.h>

#include "test-helpers.h"

typedef struct {
  int calls;
  int status;
  int index;
} selres_t;

static void sel_cb(uvchan_select_t* req, int status) {
  selres_t* r = req->data;
  r->calls++;
  r->status = status;
  r->index = req->index;
}

/* select3's matrix: nil blocks, closed receive is ready, default never blocks. */
static void test_select_semantics_matrix(void** state) {
  fixture_t* f = FX(state);
  uvchan_t unbuf, buf, closed;
  uvchan_case_t c[3];
  int v = 1, out = 0, st = -1;

  assert_int_equal(uvchan_init(&f->ctx, &unbuf, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &buf, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &closed, sizeof(int), 0), 0);
  uvchan_close(&closed);

  /* nil channels only: default */
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(NULL, &out);
  c[1] = (uvchan_case_t)UVCHAN_CASE_SEND(NULL, &v);
  assert_int_equal(uvchan_try_select(c, 2, &st), UV_EAGAIN);
  /* unbuffered with nobody waiting: default */
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&unbuf, &out);
  c[1] = (uvchan_case_t)UVCHAN_CASE_SEND(&unbuf, &v);
  assert_int_equal(uvchan_try_select(c, 2, &st), UV_EAGAIN);
  /* buffered with room: the send is ready */
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&buf, &out);
  c[1] = (uvchan_case_t)UVCHAN_CASE_SEND(&buf, &v);
  assert_int_equal(uvchan_try_select(c, 2, &st), 1);
  assert_int_equal(st, 0);
  /* now full: only the receive is ready */
  assert_int_equal(uvchan_try_select(c, 2, &st), 0);
  assert_int_equal(out, 1);
  /* closed receive is ready with UV_EOF; closed send is "ready" and fails with UV_EPIPE */
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&closed, &out);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(NULL, &out);
  assert_int_equal(uvchan_try_select(c, 2, &st), 0);
  assert_int_equal(st, UV_EOF);
  c[0] = (uvchan_case_t)UVCHAN_CASE_SEND(&closed, &v);
  assert_int_equal(uvchan_try_select(c, 1, &st), 0);
  assert_int_equal(st, UV_EPIPE);

  assert_int_equal(uvchan_destroy(&unbuf), 0);
  assert_int_equal(uvchan_destroy(&buf), 0);
  assert_int_equal(uvchan_destroy(&closed), 0);
}

static void test_select_waits_then_exactly_one_case(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  uvchan_select_t sel;
  uvchan_case_t c[2];
  selres_t r = {0, 0, 0};
  int va = 0, vb = 0, x = 5;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 0), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&a, &va);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&b, &vb);
  sel.data = &r;
  assert_int_equal(uvchan_select(&sel, c, 2, sel_cb), 0);
  assert_int_equal(uvchan_waiting_receivers(&a), 1);
  assert_int_equal(uvchan_waiting_receivers(&b), 1);
  assert_int_equal(uvchan_try_send(&b, &x), 0);
  /* select6: the losing case left channel a at once */
  assert_int_equal(uvchan_waiting_receivers(&a), 0);
  assert_int_equal(uvchan_try_send(&a, &x), UV_EAGAIN);
  assert_int_equal(r.calls, 0);
  RUN(f);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.index, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(vb, 5);
  assert_int_equal(va, 0);
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
}

static void test_select_ready_completes_via_loop(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a;
  uvchan_select_t sel;
  uvchan_case_t c[1];
  selres_t r = {0, 0, -5};
  int x = 3;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 1), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_SEND(&a, &x);
  sel.data = &r;
  assert_int_equal(uvchan_select(&sel, c, 1, sel_cb), 0);
  assert_int_equal(r.calls, 0); /* ready at once, but the callback still waits for the loop */
  assert_int_equal(uvchan_len(&a), 1);
  RUN(f);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.index, 0);
  assert_int_equal(uvchan_destroy(&a), 0);
}

/* TestSelfSelect / select3: a send and a receive on one unbuffered channel in one select never
 * match each other; a third party completes exactly one of them. */
static void test_select_never_matches_itself(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_select_t sel;
  uvchan_case_t c[2];
  selres_t r = {0, 0, 0};
  int sv = 8, rv = 0, out = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_SEND(&ch, &sv);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&ch, &rv);
  sel.data = &r;
  assert_int_equal(uvchan_select(&sel, c, 2, sel_cb), 0);
  RUN(f);
  assert_int_equal(r.calls, 0); /* still waiting: it did not match itself */
  assert_int_equal(uvchan_waiting_senders(&ch), 1);
  assert_int_equal(uvchan_waiting_receivers(&ch), 1);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 8);
  assert_int_equal(uvchan_waiting_receivers(&ch), 0);
  RUN(f);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.index, 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* TestSelectDuplicateChannel: one channel in several cases. */
static void test_select_duplicate_channel(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_select_t sel;
  uvchan_case_t c[3];
  selres_t r = {0, 0, 0};
  int v[3] = {0, 0, 0}, x = 4;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  for (int i = 0; i < 3; i++)
    c[i] = (uvchan_case_t)UVCHAN_CASE_RECV(&ch, &v[i]);
  sel.data = &r;
  assert_int_equal(uvchan_select(&sel, c, 3, sel_cb), 0);
  assert_int_equal(uvchan_waiting_receivers(&ch), 3);
  assert_int_equal(uvchan_try_send(&ch, &x), 0);
  assert_int_equal(uvchan_waiting_receivers(&ch), 0); /* all three cases withdrawn */
  assert_int_equal(uvchan_try_send(&ch, &x), UV_EAGAIN);
  RUN(f);
  assert_int_equal(r.calls, 1);
  assert_int_equal(v[r.index], 4);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* Go picks uniformly between two waiting cases on one channel (pollorder); a select that always
 * completed its first case would fail this by a mile. 2000 trials: expect 1000, sigma ~22. */
static void test_select_waiting_duplicate_cases_are_fair(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  int hits[2] = {0, 0}, x = 1;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  for (int i = 0; i < 2000; i++) {
    uvchan_select_t sel;
    selres_t r = {0, 0, 0};
    int v[2];
    uvchan_case_t c[2] = {UVCHAN_CASE_RECV(&ch, &v[0]), UVCHAN_CASE_RECV(&ch, &v[1])};
    memset(&sel, 0, sizeof(sel));
    sel.data = &r;
    assert_int_equal(uvchan_select(&sel, c, 2, sel_cb), 0);
    assert_int_equal(uvchan_try_send(&ch, &x), 0); /* the select waited: this picks a case */
    RUN(f);
    assert_int_equal(r.calls, 1);
    hits[r.index]++;
  }
  assert_true(hits[0] > 1000 - 200 && hits[1] > 1000 - 200);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A receive case on a closed channel yields the zero value, as Go's `case v, ok := <-ch`. */
static void test_select_closed_case_gets_zero_value(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_select_t sel;
  selres_t r = {0, 0, 0};
  int v = -1, w = -1;
  uvchan_case_t c[1] = {UVCHAN_CASE_RECV(&ch, &v)};
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  sel.data = &r;
  assert_int_equal(uvchan_select(&sel, c, 1, sel_cb), 0); /* waits */
  assert_int_equal(uvchan_close(&ch), 0);
  RUN(f);
  assert_int_equal(r.status, UV_EOF);
  assert_int_equal(v, 0);
  c[0].value = &w;
  assert_int_equal(uvchan_try_select(c, 1, &r.status), 0); /* ready at once */
  assert_int_equal(r.status, UV_EOF);
  assert_int_equal(w, 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_select_close_wakes_cases(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  uvchan_select_t s1, s2;
  uvchan_case_t c1[1], c2[1];
  selres_t r1 = {0, 0, 0}, r2 = {0, 0, 0};
  int v = 0, x = 1;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 0), 0);
  c1[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&a, &v);
  c2[0] = (uvchan_case_t)UVCHAN_CASE_SEND(&b, &x);
  s1.data = &r1;
  s2.data = &r2;
  assert_int_equal(uvchan_select(&s1, c1, 1, sel_cb), 0);
  assert_int_equal(uvchan_select(&s2, c2, 1, sel_cb), 0);
  uvchan_close(&a);
  uvchan_close(&b);
  RUN(f);
  assert_int_equal(r1.status, UV_EOF);
  assert_int_equal(r1.index, 0);
  assert_int_equal(r2.status, UV_EPIPE);
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
}

static void test_select_cancel_and_timeout(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a;
  uvchan_select_t s1, s2;
  uvchan_case_t c1[1], c2[1];
  selres_t r1 = {0, 0, 0}, r2 = {0, 0, 0};
  int v = 0, x = 1;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 0), 0);
  c1[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&a, &v);
  c2[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&a, &v);
  s1.data = &r1;
  s2.data = &r2;
  assert_int_equal(uvchan_select(&s1, c1, 1, sel_cb), 0);
  assert_int_equal(uvchan_select_timeout(&s2, c2, 1, 10, sel_cb), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&s1), 0);
  RUN(f);
  assert_int_equal(r1.calls, 1);
  assert_int_equal(r1.status, UV_ECANCELED);
  assert_int_equal(r1.index, -1);
  assert_int_equal(r2.calls, 1);
  assert_int_equal(r2.status, UV_ETIMEDOUT);
  assert_int_equal(r2.index, -1);
  assert_int_equal(uvchan_try_send(&a, &x), UV_EAGAIN); /* nothing left on the channel */
  assert_int_equal(v, 0);
  assert_int_equal(uvchan_destroy(&a), 0);
}

/* TestSelectFairness: two always-ready cases are chosen about equally (within 10 sigma). */
static void test_select_fairness(void** state) {
  fixture_t* f = FX(state);
  enum { TRIALS = 10000 };
  uvchan_t a, b;
  uvchan_case_t c[2];
  int cnt[2] = {0, 0}, v, x = 1, st;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 1), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&a, &v);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&b, &v);
  for (int i = 0; i < TRIALS; i++) {
    if (uvchan_len(&a) == 0)
      uvchan_try_send(&a, &x);
    if (uvchan_len(&b) == 0)
      uvchan_try_send(&b, &x);
    int idx = uvchan_try_select(c, 2, &st);
    assert_true(idx == 0 || idx == 1);
    cnt[idx]++;
  }
  double sigma = sqrt(TRIALS * 0.25);
  assert_true(fabs(cnt[0] - TRIALS / 2.0) < 10 * sigma);
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
}

/* TestPseudoRandomSend: a select sending to one channel from two cases picks both. */
static void test_select_pseudo_random_send(void** state) {
  fixture_t* f = FX(state);
  enum { N = 100 };
  uvchan_t ch;
  uvchan_case_t c[2];
  int zero = 0, one = 1, v, cnt[2] = {0, 0};

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), N), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_SEND(&ch, &zero);
  c[1] = (uvchan_case_t)UVCHAN_CASE_SEND(&ch, &one);
  for (int i = 0; i < N; i++)
    assert_true(uvchan_try_select(c, 2, NULL) >= 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(uvchan_try_recv(&ch, &v), 0);
    cnt[v]++;
  }
  assert_true(cnt[0] > N / 10 && cnt[1] > N / 10);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_select_seeded_choice_repeats(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  uvchan_case_t c[2];
  int seq1[64], seq2[64], v, x = 1;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 1), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&a, &v);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&b, &v);
  for (int run = 0; run < 2; run++) {
    uvchan_ctx_seed(&f->ctx, 42);
    for (int i = 0; i < 64; i++) {
      if (uvchan_len(&a) == 0)
        uvchan_try_send(&a, &x);
      if (uvchan_len(&b) == 0)
        uvchan_try_send(&b, &x);
      (run == 0 ? seq1 : seq2)[i] = uvchan_try_select(c, 2, NULL);
    }
  }
  assert_memory_equal(seq1, seq2, sizeof(seq1));
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
}

/* doubleselect: 100k four-case sending selects against receivers; no value seen twice. */
typedef struct {
  uvchan_t* chans;
  uvchan_select_t sel;
  uvchan_case_t c[4];
  int next, limit;
} dsender_t;

static void ds_sent(uvchan_select_t* req, int status) {
  dsender_t* d = req->data;
  assert_int_equal(status, 0);
  if (++d->next == d->limit) {
    for (int i = 0; i < 4; i++)
      uvchan_close(&d->chans[i]);
    return;
  }
  for (int i = 0; i < 4; i++)
    d->c[i].value = &d->next;
  assert_int_equal(uvchan_select(&d->sel, d->c, 4, ds_sent), 0);
}

typedef struct {
  uvchan_t* ch;
  uvchan_recv_t r;
  int v;
  unsigned char* seen;
  long n;
} drecv_t;

static void dr_cb(uvchan_recv_t* req, int status) {
  drecv_t* d = req->data;
  if (status != 0)
    return;
  assert_int_equal(d->seen[d->v], 0);
  d->seen[d->v] = 1;
  d->n++;
  assert_int_equal(uvchan_recv(&d->r, d->ch, &d->v, dr_cb), 0);
}

static void test_select_doubleselect_100k(void** state) {
  fixture_t* f = FX(state);
  enum { N = 100000 };
  uvchan_t chans[4];
  dsender_t ds;
  drecv_t dr[4];
  unsigned char* seen = calloc(N, 1);
  long total = 0;

  for (int i = 0; i < 4; i++)
    assert_int_equal(uvchan_init(&f->ctx, &chans[i], sizeof(int), 0), 0);
  memset(&ds, 0, sizeof(ds));
  ds.chans = chans;
  ds.limit = N;
  ds.sel.data = &ds;
  for (int i = 0; i < 4; i++)
    ds.c[i] = (uvchan_case_t)UVCHAN_CASE_SEND(&chans[i], &ds.next);
  for (int i = 0; i < 4; i++) {
    dr[i] = (drecv_t){&chans[i], {0}, 0, seen, 0};
    dr[i].r.data = &dr[i];
    assert_int_equal(uvchan_recv(&dr[i].r, &chans[i], &dr[i].v, dr_cb), 0);
  }
  assert_int_equal(uvchan_select(&ds.sel, ds.c, 4, ds_sent), 0);
  RUN(f);
  for (int i = 0; i < 4; i++) {
    total += dr[i].n;
    assert_true(dr[i].n > N / 10); /* every channel got its share */
    assert_int_equal(uvchan_destroy(&chans[i]), 0);
  }
  assert_int_equal(total, N);
  free(seen);
}

/* select2: many selects that lose leave nothing behind (no growth in waiters). */
static void test_select_losers_leave_no_trace(void** state) {
  fixture_t* f = FX(state);
  uvchan_t idle, busy;
  uvchan_case_t c[2];
  int v, x = 1;

  assert_int_equal(uvchan_init(&f->ctx, &idle, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &busy, sizeof(int), 1), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&idle, &v);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&busy, &v);
  for (int i = 0; i < 100000; i++) {
    uvchan_select_t sel;
    selres_t r = {0, 0, 0};
    sel.data = &r;
    assert_int_equal(uvchan_select(&sel, c, 2, sel_cb), 0);
    assert_int_equal(uvchan_try_send(&busy, &x), 0);
    RUN(f);
    assert_int_equal(r.index, 1);
    assert_int_equal(uvchan_waiting_receivers(&idle), 0);
  }
  assert_int_equal(uvchan_destroy(&idle), 0);
  assert_int_equal(uvchan_destroy(&busy), 0);
}

static void test_select_destroy_cancels(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  uvchan_select_t sel;
  uvchan_case_t c[2];
  selres_t r = {0, 0, 0};
  int v;
  uvchan_recv_t other;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 0), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&a, &v);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&b, &v);
  sel.data = &r;
  assert_int_equal(uvchan_select(&sel, c, 2, sel_cb), 0);
  assert_int_equal(uvchan_recv(&other, &b, NULL, nop_recv), 0);
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_waiting_receivers(&b), 1); /* only `other` is left on b */
  RUN(f);
  assert_int_equal(r.status, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&b), 0);
  RUN(f);
}

/* The destroyed channel's case is named: UV_ECANCELED comes with req->index of that case, for
 * either position, and the other channels keep no trace of the select. */
static void test_select_destroy_reports_the_case(void** state) {
  fixture_t* f = FX(state);
  for (int which = 0; which < 3; which++) {
    uvchan_t ch[3];
    uvchan_select_t sel;
    uvchan_case_t c[3];
    selres_t r = {0, 1, -2};
    int v = 7;
    for (int i = 0; i < 3; i++)
      assert_int_equal(uvchan_init(&f->ctx, &ch[i], sizeof(int), 0), 0);
    c[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&ch[0], &v);
    c[1] = (uvchan_case_t)UVCHAN_CASE_SEND(&ch[1], &v); /* a send case is cancelled the same way */
    c[2] = (uvchan_case_t)UVCHAN_CASE_RECV(&ch[2], &v);
    sel.data = &r;
    assert_int_equal(uvchan_select(&sel, c, 3, sel_cb), 0);
    assert_int_equal(uvchan_destroy(&ch[which]), 0);
    assert_int_equal(r.calls, 0); /* never inside the call */
    RUN(f);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, UV_ECANCELED);
    assert_int_equal(r.index, which);
    for (int i = 0; i < 3; i++)
      if (i != which) {
        assert_int_equal(uvchan_waiting_receivers(&ch[i]) + uvchan_waiting_senders(&ch[i]), 0);
        assert_int_equal(uvchan_destroy(&ch[i]), 0);
      }
    RUN(f);
    assert_int_equal(r.calls, 1);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_select_semantics_matrix),
      TEST(test_select_waits_then_exactly_one_case),
      TEST(test_select_ready_completes_via_loop),
      TEST(test_select_never_matches_itself),
      TEST(test_select_duplicate_channel),
      TEST(test_select_waiting_duplicate_cases_are_fair),
      TEST(test_select_closed_case_gets_zero_value),
      TEST(test_select_close_wakes_cases),
      TEST(test_select_cancel_and_timeout),
      TEST(test_select_fairness),
      TEST(test_select_pseudo_random_send),
      TEST(test_select_seeded_choice_repeats),
      TEST(test_select_doubleselect_100k),
      TEST(test_select_losers_leave_no_trace),
      TEST(test_select_destroy_cancels),
      TEST(test_select_destroy_reports_the_case),
  };
  return cmocka_run_group_tests_name("select", tests, NULL, NULL);
}
