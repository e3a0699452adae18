/* Overflow policies: what a send does when the buffer is full and no receiver waits. Dropped
 * values go to the element destructor and are counted. */
#include "test-helpers.h"

static int dropped_vals[64], ndropped;
static void dtor(uvchan_t* ch, void* value) {
  (void)ch;
  dropped_vals[ndropped++] = *(int*)value;
}

/* Sends 1..n with try_send (never UV_EAGAIN under a dropping policy), then drains into out[]. */
static int fill_and_drain(uvchan_t* ch, int n, int* out) {
  int v, k = 0;
  for (v = 1; v <= n; v++)
    assert_int_equal(uvchan_try_send(ch, &v), 0);
  while (uvchan_try_recv(ch, &v) == 0)
    out[k++] = v;
  return k;
}

static void test_overflow_drop_newest(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  int out[8];
  ndropped = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 3), 0);
  uvchan_set_destructor(&ch, dtor);
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_DROP_NEWEST), 0);
  assert_int_equal(fill_and_drain(&ch, 5, out), 3);
  assert_int_equal(out[0], 1);
  assert_int_equal(out[2], 3);
  assert_int_equal(uvchan_dropped(&ch), 2);
  assert_int_equal(ndropped, 2);
  assert_int_equal(dropped_vals[0], 4);
  assert_int_equal(dropped_vals[1], 5);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_overflow_drop_oldest_slides(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  int out[8];
  ndropped = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 3), 0);
  uvchan_set_destructor(&ch, dtor);
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_DROP_OLDEST), 0);
  assert_int_equal(fill_and_drain(&ch, 7, out), 3);
  assert_int_equal(out[0], 5); /* the last three, in order */
  assert_int_equal(out[1], 6);
  assert_int_equal(out[2], 7);
  assert_int_equal(uvchan_dropped(&ch), 4);
  assert_int_equal(ndropped, 4);
  for (int i = 0; i < 4; i++)
    assert_int_equal(dropped_vals[i], i + 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_overflow_conflate_keeps_latest(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  int out[8];
  ndropped = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  uvchan_set_destructor(&ch, dtor);
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_CONFLATE), 0);
  assert_int_equal(fill_and_drain(&ch, 4, out), 1);
  assert_int_equal(out[0], 4);
  assert_int_equal(uvchan_dropped(&ch), 3);
  /* with more capacity the older values stay and the newest one is replaced */
  assert_int_equal(uvchan_destroy(&ch), 0);
  ndropped = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 3), 0);
  uvchan_set_destructor(&ch, dtor);
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_CONFLATE), 0);
  assert_int_equal(fill_and_drain(&ch, 5, out), 3);
  assert_int_equal(out[0], 1);
  assert_int_equal(out[1], 2);
  assert_int_equal(out[2], 5);
  assert_int_equal(ndropped, 2);
  assert_int_equal(dropped_vals[0], 3);
  assert_int_equal(dropped_vals[1], 4);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A dropping channel still hands values to waiting receivers first, and its sends never wait:
 * callback sends, task sends and select send cases all complete at once. */
static void producer(void* arg) {
  uvchan_t* ch = arg;
  for (int v = 1; v <= 100; v++)
    assert_int_equal(uvchan_task_send(ch, &v), 0); /* never parks */
}

static void test_overflow_sends_never_wait(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  uvchan_recv_t r;
  counter_t sc = {0, 1}, rc = {0, 1};
  int v = 7, got = 0, st;
  uvchan_case_t c[1] = {UVCHAN_CASE_SEND(&ch, &v)};
  ndropped = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_DROP_OLDEST), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &ch, &got, recv_cb), 0); /* waits */
  assert_int_equal(uvchan_try_send(&ch, &v), 0);              /* goes to the receiver */
  assert_int_equal(uvchan_len(&ch), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, producer, &ch, NULL), 0);
  RUN(f);
  assert_int_equal(rc.status, 0);
  assert_int_equal(got, 7);
  assert_int_equal(uvchan_len(&ch), 2);
  assert_int_equal(uvchan_dropped(&ch), 98);
  s.data = &sc;
  assert_int_equal(uvchan_send(&s, &ch, &v, send_cb), 0);
  assert_int_equal(uvchan_try_select(c, 1, &st), 0); /* a send case is always ready */
  RUN(f);
  assert_int_equal(sc.status, 0);
  assert_int_equal(uvchan_dropped(&ch), 100);
  assert_int_equal(uvchan_close(&ch), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EPIPE); /* closed still wins */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_overflow_bad_input(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch, unbuffered;
  uvchan_send_t s;
  counter_t sc = {0, 1};
  int v = 1;
  uvchan_permit_t p;
  assert_int_equal(uvchan_set_overflow(NULL, UVCHAN_OVERFLOW_DROP_OLDEST), UV_EINVAL);
  assert_int_equal(uvchan_dropped(NULL), 0);
  assert_int_equal(uvchan_init(&f->ctx, &unbuffered, sizeof(int), 0), 0);
  assert_int_equal(uvchan_set_overflow(&unbuffered, UVCHAN_OVERFLOW_DROP_OLDEST), UV_EINVAL);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_set_overflow(&ch, (uvchan_overflow)42), UV_EINVAL);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  s.data = &sc;
  assert_int_equal(uvchan_send(&s, &ch, &v, send_cb), 0); /* waits */
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_DROP_NEWEST), UV_EBUSY);
  assert_int_equal(uvchan_try_recv(&ch, &v), 0); /* the waiting send moves in */
  RUN(f);
  assert_int_equal(uvchan_try_recv(&ch, &v), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p), 0);
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_DROP_NEWEST), UV_EINVAL); /* held */
  assert_int_equal(uvchan_release(&p), 0);
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_DROP_NEWEST), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p), UV_EINVAL); /* no reservations on a dropper */
  assert_int_equal(uvchan_set_overflow(&ch, UVCHAN_OVERFLOW_BLOCK), 0); /* back to blocking */
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EAGAIN);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_destroy(&unbuffered), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_overflow_drop_newest),
      TEST(test_overflow_drop_oldest_slides),
      TEST(test_overflow_conflate_keeps_latest),
      TEST(test_overflow_sends_never_wait),
      TEST(test_overflow_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
