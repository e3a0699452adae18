/* Close: Go's semantics, with error codes instead of panics. */
#include "test-helpers.h"


static void test_close_later_sends_fail_epipe(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  counter_t sc = {0};
  int v = 1;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 4), 0);
  assert_int_equal(uvchan_close(&ch), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EPIPE);
  s.data = &sc;
  assert_int_equal(uvchan_send(&s, &ch, &v, send_cb), 0);
  assert_int_equal(sc.calls, 0);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(sc.status, UV_EPIPE);
  assert_int_equal(uvchan_len(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_close_waiting_senders_get_epipe_and_keep_value(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s[3];
  counter_t sc[3] = {{0, 1}, {0, 1}, {0, 1}};
  int vals[3] = {1, 2, 3};
  int i, out;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  for (i = 0; i < 3; i++) {
    s[i].data = &sc[i];
    assert_int_equal(uvchan_send(&s[i], &ch, &vals[i], send_cb), 0);
  }
  assert_int_equal(uvchan_close(&ch), 0);
  RUN(f);
  /* The first send was buffered (status 0); the two waiting ones failed, values untouched. */
  for (i = 0; i < 3; i++)
    assert_int_equal(sc[i].calls, 1);
  assert_int_equal(sc[0].status, 0);
  assert_int_equal(sc[1].status, UV_EPIPE);
  assert_int_equal(sc[2].status, UV_EPIPE);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 1);
  assert_int_equal(uvchan_try_recv(&ch, &out), UV_EOF);
  assert_int_equal(vals[1], 2);
  assert_int_equal(vals[2], 3);
  assert_int_equal(uvchan_waiting_senders(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_close_receivers_drain_then_eof(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  int v, out = -1;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 3), 0);
  for (v = 1; v <= 3; v++)
    assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_close(&ch), 0);
  for (v = 1; v <= 3; v++) {
    assert_int_equal(uvchan_try_recv(&ch, &out), 0);
    assert_int_equal(out, v);
  }
  out = -1;
  assert_int_equal(uvchan_try_recv(&ch, &out), UV_EOF);
  assert_int_equal(out, 0); /* Go's zero value */
  out = -1;
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &ch, &out, recv_cb), 0);
  RUN(f);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, UV_EOF);
  assert_int_equal(out, 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_close_waiting_receivers_get_eof(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r[4];
  counter_t rc = {0};
  int out[4] = {-1, -1, -1, -1};
  int i;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  for (i = 0; i < 4; i++) {
    r[i].data = &rc;
    assert_int_equal(uvchan_recv(&r[i], &ch, &out[i], recv_cb), 0);
  }
  assert_int_equal(uvchan_close(&ch), 0);
  assert_int_equal(rc.calls, 0);
  RUN(f);
  assert_int_equal(rc.calls, 4);
  assert_int_equal(rc.status, UV_EOF);
  for (i = 0; i < 4; i++)
    assert_int_equal(out[i], 0); /* the zero value, also for receivers that waited */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_close_twice_is_epipe(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_close(&ch), 0);
  assert_int_equal(uvchan_close(&ch), UV_EPIPE);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_close_zero_capacity_signal_broadcast(void** state) {
  fixture_t* f = FX(state);
  uvchan_t done;
  uvchan_recv_t r[10];
  counter_t rc = {0};
  int i;

  /* The "done channel" idiom: closing wakes every waiter at once. */
  assert_int_equal(uvchan_init(&f->ctx, &done, 0, 0), 0);
  for (i = 0; i < 10; i++) {
    r[i].data = &rc;
    assert_int_equal(uvchan_recv(&r[i], &done, NULL, recv_cb), 0);
  }
  assert_int_equal(uvchan_close(&done), 0);
  RUN(f);
  assert_int_equal(rc.calls, 10);
  assert_int_equal(rc.status, UV_EOF);
  assert_int_equal(uvchan_destroy(&done), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_close_later_sends_fail_epipe),
      TEST(test_close_waiting_senders_get_epipe_and_keep_value),
      TEST(test_close_receivers_drain_then_eof),
      TEST(test_close_waiting_receivers_get_eof),
      TEST(test_close_twice_is_epipe),
      TEST(test_close_zero_capacity_signal_broadcast),
  };
  return cmocka_run_group_tests_name("close", tests, NULL, NULL);
}
