/* Selects across threads: a select with a case on a shared channel is completed by whichever
 * thread claims it first; its other cases stay linked until its owner delivers the completion.
 * Another select's poll must not take those leftovers for a ready partner. */
#include "test-helpers.h"

typedef struct {
  uvchan_t* ch;
  long v;
  int status;
} thread_send_t;

static void send_from_thread(void* arg) {
  thread_send_t* s = arg;
  s->status = uvchan_thread_send(s->ch, &s->v);
}

typedef struct {
  int calls, status, index;
} sel_counter_t;

static void on_sel(uvchan_select_t* req, int status) {
  sel_counter_t* c = req->data;
  c->calls++;
  c->status = status;
  c->index = req->index;
}

/* A callback select waits on shared X and on `other` (shared Y, or a local channel); a thread
 * without a loop completes it through X. Until the loop delivers that, the select's waiter on
 * `other` is a leftover. Returns with the select completed elsewhere and not delivered. */
static void select_completed_elsewhere(fixture_t* f, uvchan_t* x, uvchan_t* other,
                                       uvchan_select_t* sel, uvchan_case_t* cases, long* vals,
                                       sel_counter_t* c) {
  thread_send_t s = {x, 42, 1};
  uv_thread_t th;
  uvchan_case_t k[2] = {UVCHAN_CASE_RECV(x, &vals[0]), UVCHAN_CASE_RECV(other, &vals[1])};
  (void)f;
  cases[0] = k[0];
  cases[1] = k[1];
  sel->data = c;
  assert_int_equal(uvchan_select(sel, cases, 2, on_sel), 0);
  assert_int_equal(uv_thread_create(&th, send_from_thread, &s), 0);
  assert_int_equal(uv_thread_join(&th), 0); /* matched the select's case on X at once */
  assert_int_equal(s.status, 0);
  assert_int_equal(c->calls, 0); /* not delivered yet: its waiter on `other` is still linked */
}

static void test_thread_select_leftover_case_is_not_ready_shared(void** state) {
  fixture_t* f = FX(state);
  uvchan_t x, y;
  uvchan_select_t sel;
  uvchan_case_t cases[2];
  long vals[2], v = 7;
  sel_counter_t c = {0, 0, 0};
  int st = 99;

  assert_int_equal(uvchan_init_shared(&f->ctx, &x, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init_shared(&f->ctx, &y, sizeof(long), 0), 0);
  select_completed_elsewhere(f, &x, &y, &sel, cases, vals, &c);
  {
    uvchan_case_t k[1] = {UVCHAN_CASE_SEND(&y, &v)};
    /* Y's only receiver is the leftover: nothing can take the value */
    assert_int_equal(uvchan_try_select(k, 1, &st), UV_EAGAIN);
    assert_int_equal(uvchan_try_send(&y, &v), UV_EAGAIN);
  }
  RUN(f);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.index, 0);
  assert_int_equal(vals[0], 42);
  assert_int_equal(uvchan_waiting_receivers(&y), 0); /* withdrawn at delivery */
  assert_int_equal(uvchan_destroy(&x), 0);
  assert_int_equal(uvchan_destroy(&y), 0);
}

static void test_thread_select_leftover_case_is_not_ready_local(void** state) {
  fixture_t* f = FX(state);
  uvchan_t x, local;
  uvchan_select_t sel;
  uvchan_case_t cases[2];
  long vals[2], v = 7;
  sel_counter_t c = {0, 0, 0};
  int st = 99;

  assert_int_equal(uvchan_init_shared(&f->ctx, &x, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &local, sizeof(long), 0), 0);
  select_completed_elsewhere(f, &x, &local, &sel, cases, vals, &c);
  {
    uvchan_case_t k[1] = {UVCHAN_CASE_SEND(&local, &v)};
    assert_int_equal(uvchan_try_select(k, 1, &st), UV_EAGAIN);
  }
  RUN(f);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.index, 0);
  assert_int_equal(uvchan_destroy(&x), 0);
  assert_int_equal(uvchan_destroy(&local), 0);
}

/* A task's select meets the leftover: it must wait (here, until its deadline), not complete. */
static int task_idx, task_st;
static void select_send_task(void* arg) {
  long v = 5;
  uvchan_case_t k[1] = {UVCHAN_CASE_SEND(arg, &v)};
  task_st = 99;
  task_idx = uvchan_task_select_timeout(k, 1, 10, &task_st);
}

static void test_thread_select_leftover_case_task_waits(void** state) {
  fixture_t* f = FX(state);
  uvchan_t x, y;
  uvchan_select_t sel;
  uvchan_case_t cases[2];
  long vals[2];
  sel_counter_t c = {0, 0, 0};

  assert_int_equal(uvchan_init_shared(&f->ctx, &x, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init_shared(&f->ctx, &y, sizeof(long), 0), 0);
  select_completed_elsewhere(f, &x, &y, &sel, cases, vals, &c);
  /* The task runs from the loop, after the select's completion was taken from the inbox but
   * before or after its delivery: either way Y has no live receiver. */
  assert_int_equal(uvchan_task_spawn(&f->ctx, select_send_task, &y, NULL), 0);
  RUN(f);
  assert_int_equal(c.calls, 1);
  assert_int_equal(task_idx, UV_ETIMEDOUT);
  assert_int_equal(uvchan_destroy(&x), 0);
  assert_int_equal(uvchan_destroy(&y), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_thread_select_leftover_case_is_not_ready_shared),
      TEST(test_thread_select_leftover_case_is_not_ready_local),
      TEST(test_thread_select_leftover_case_task_waits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
