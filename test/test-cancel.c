/* Cancel and deadlines on single operations: nothing transferred, exactly one callback. */
#include "test-helpers.h"


static void test_cancel_waiting_recv(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  int out = -1, v = 5;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &ch, &out, recv_cb), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), 0);
  assert_int_equal(rc.calls, 0);
  assert_int_equal(uvchan_waiting_receivers(&ch), 0);
  /* The cancelled receiver no longer takes values. */
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EAGAIN);
  RUN(f);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, UV_ECANCELED);
  assert_int_equal(out, -1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_cancel_waiting_send_keeps_value_out(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  counter_t sc = {0};
  int v = 5, out;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  s.data = &sc;
  assert_int_equal(uvchan_send(&s, &ch, &v, send_cb), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&s), 0);
  assert_int_equal(uvchan_try_recv(&ch, &out), UV_EAGAIN);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(sc.status, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_cancel_after_match_is_ebusy_and_reports_real_outcome(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  int out = -1, v = 9;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &ch, &out, recv_cb), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), UV_EBUSY);
  RUN(f);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, 0);
  assert_int_equal(out, 9);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_cancel_immediate_completion_is_ebusy(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  counter_t sc = {0};
  int v = 1;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  s.data = &sc;
  assert_int_equal(uvchan_send(&s, &ch, &v, send_cb), 0); /* buffered: done, callback queued */
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&s), UV_EBUSY);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(sc.status, 0);
  assert_int_equal(uvchan_len(&ch), 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_double_cancel(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &ch, NULL, recv_cb), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), UV_EBUSY);
  RUN(f);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), UV_EINVAL); /* after the callback */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_cancel_keeps_fifo_of_others(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r[3];
  counter_t rc[3] = {{0, 0}, {0, 0}, {0, 0}};
  int out[3] = {0, 0, 0};
  int i, v;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  for (i = 0; i < 3; i++) {
    r[i].data = &rc[i];
    assert_int_equal(uvchan_recv(&r[i], &ch, &out[i], recv_cb), 0);
  }
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r[1]), 0);
  v = 10;
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  v = 20;
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  RUN(f);
  assert_int_equal(out[0], 10);
  assert_int_equal(out[1], 0);
  assert_int_equal(out[2], 20);
  assert_int_equal(rc[1].status, UV_ECANCELED);
  for (i = 0; i < 3; i++)
    assert_int_equal(rc[i].calls, 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_recv_deadline_times_out(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  int out = -1, v = 3;
  uint64_t t0 = uv_now(&f->loop);

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv_timeout(&r, &ch, &out, 20, recv_cb), 0);
  RUN(f); /* the deadline keeps the loop alive until it fires */
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, UV_ETIMEDOUT);
  assert_true(uv_now(&f->loop) - t0 >= 20);
  assert_int_equal(out, -1);
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EAGAIN); /* no receiver left behind */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_send_deadline_times_out_nothing_transferred(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  counter_t sc = {0};
  int v = 1, w = 2;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  s.data = &sc;
  assert_int_equal(uvchan_send_timeout(&s, &ch, &w, 5, send_cb), 0);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(sc.status, UV_ETIMEDOUT);
  assert_int_equal(uvchan_len(&ch), 1);
  assert_int_equal(uvchan_waiting_senders(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_deadline_met_before_expiry(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  int out = 0, v = 77;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv_timeout(&r, &ch, &out, 10000, recv_cb), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  RUN(f); /* returns at once: the matched request left the deadline heap */
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, 0);
  assert_int_equal(out, 77);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_many_deadlines_with_cancels(void** state) {
  fixture_t* f = FX(state);
  enum { N = 200 };
  uvchan_t ch;
  uvchan_recv_t* r = calloc(N, sizeof(*r));
  counter_t rc = {0};
  int i;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  /* Deadlines inserted in scrambled order; cancel some to exercise removal from the heap. */
  for (i = 0; i < N; i++) {
    r[i].data = &rc;
    assert_int_equal(uvchan_recv_timeout(&r[i], &ch, NULL, (uint64_t)((i * 37) % 50), recv_cb), 0);
  }
  for (i = 0; i < N; i += 3)
    assert_int_equal(uvchan_cancel((uvchan_req_t*)&r[i]), 0);
  RUN(f);
  assert_int_equal(rc.calls, N);
  for (i = 0; i < N; i++)
    assert_int_equal(r[i].status, i % 3 == 0 ? UV_ECANCELED : UV_ETIMEDOUT);
  assert_int_equal(uvchan_waiting_receivers(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_cancel_waiting_recv),
      TEST(test_cancel_waiting_send_keeps_value_out),
      TEST(test_cancel_after_match_is_ebusy_and_reports_real_outcome),
      TEST(test_cancel_immediate_completion_is_ebusy),
      TEST(test_double_cancel),
      TEST(test_cancel_keeps_fifo_of_others),
      TEST(test_recv_deadline_times_out),
      TEST(test_send_deadline_times_out_nothing_transferred),
      TEST(test_deadline_met_before_expiry),
      TEST(test_many_deadlines_with_cancels),
  };
  return cmocka_run_group_tests_name("cancel", tests, NULL, NULL);
}
