/* Wait groups, callback form: Go's sync.WaitGroup as a request. */
#include "test-helpers.h"

static void wg_cb(uvchan_req_t* req, int status) {
  counter_t* c = req->data;
  c->calls++;
  c->status = status;
}

static void test_wg_wait_completes_when_count_reaches_zero(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg;
  uvchan_req_t w[3];
  counter_t c = {0, -1};

  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 2), 0);
  for (int i = 0; i < 3; i++) {
    w[i].data = &c;
    assert_int_equal(uvchan_wg_wait(&w[i], &wg, wg_cb), 0);
  }
  RUN(f); /* waiting on a wait group keeps no loop alive */
  assert_int_equal(c.calls, 0);
  assert_int_equal(uvchan_ctx_close(&f->ctx, NULL), UV_EBUSY); /* waits are pending */
  assert_int_equal(uvchan_wg_done(&wg), 0);
  assert_int_equal(uvchan_wg_count(&wg), 1);
  RUN(f);
  assert_int_equal(c.calls, 0);
  assert_int_equal(uvchan_wg_done(&wg), 0);
  assert_int_equal(c.calls, 0); /* completed, but delivered from the loop */
  RUN(f);
  assert_int_equal(c.calls, 3); /* every waiter, once */
  assert_int_equal(c.status, 0);
}

static void test_wg_wait_at_zero_completes_from_loop(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg;
  uvchan_req_t w;
  counter_t c = {0, -1};

  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  w.data = &c;
  assert_int_equal(uvchan_wg_wait(&w, &wg, wg_cb), 0);
  assert_int_equal(c.calls, 0);
  RUN(f);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, 0);
}

static void test_wg_wait_cancel(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg;
  uvchan_req_t w;
  counter_t c = {0, -1};

  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 1), 0);
  w.data = &c;
  assert_int_equal(uvchan_wg_wait(&w, &wg, wg_cb), 0);
  assert_int_equal(uvchan_cancel(&w), 0);
  assert_int_equal(uvchan_wg_done(&wg), 0); /* the cancelled waiter is not woken again */
  RUN(f);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, UV_ECANCELED);
}

static void test_wg_reusable_after_zero(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg;
  uvchan_req_t w;
  counter_t c = {0, -1};

  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  for (int round = 1; round <= 3; round++) {
    assert_int_equal(uvchan_wg_add(&wg, 3), 0);
    w.data = &c;
    assert_int_equal(uvchan_wg_wait(&w, &wg, wg_cb), 0);
    assert_int_equal(uvchan_wg_add(&wg, -3), 0);
    RUN(f);
    assert_int_equal(c.calls, round);
  }
  assert_int_equal(uvchan_wg_add(&wg, -1), UV_EINVAL);
  assert_int_equal(uvchan_wg_count(&wg), 0);
}

static void test_wg_destroy_cancels_waiters(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg;
  uvchan_req_t w[2];
  counter_t c = {0, 1};
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 3), 0);
  for (int i = 0; i < 2; i++) {
    w[i].data = &c;
    assert_int_equal(uvchan_wg_wait(&w[i], &wg, wg_cb), 0);
  }
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 2); /* callback waits show */
  assert_int_equal(uvchan_wg_destroy(&wg), 0);
  assert_int_equal(c.calls, 0); /* from the loop */
  RUN(f);
  assert_int_equal(c.calls, 2);
  assert_int_equal(c.status, UV_ECANCELED);
  assert_int_equal(uvchan_wg_done(&wg), UV_EINVAL);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 0);
}

/* A wait group on a task's stack that is never destroyed: as in Go, nothing to clean up. */
static void yielder(void* arg) {
  (void)arg;
  assert_int_equal(uvchan_task_yield(), 0);
}

static void stack_wg_task(void* arg) {
  uvchan_wg_t wg;
  uvchan_task_attr_t attr;
  memset(&attr, 0, sizeof(attr));
  attr.wg = &wg;
  assert_int_equal(uvchan_wg_init(arg, &wg), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(uvchan_task_spawn(arg, yielder, NULL, &attr), 0);
  assert_int_equal(uvchan_task_wg_wait(&wg), 0);
}

static void test_wg_on_a_stack_needs_no_destroy(void** state) {
  fixture_t* f = FX(state);
  for (int i = 0; i < 3; i++)
    assert_int_equal(uvchan_task_spawn(&f->ctx, stack_wg_task, &f->ctx, NULL), 0);
  RUN(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_wg_wait_completes_when_count_reaches_zero),
      TEST(test_wg_wait_at_zero_completes_from_loop),
      TEST(test_wg_wait_cancel),
      TEST(test_wg_reusable_after_zero),
      TEST(test_wg_destroy_cancels_waiters),
      TEST(test_wg_on_a_stack_needs_no_destroy),
  };
  return cmocka_run_group_tests_name("wg", tests, NULL, NULL);
}
