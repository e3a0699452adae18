/* Two-phase send: reserve a slot (waits like a send), then commit a value or release the slot.
 * Reservations count against capacity, work in select, and are never leaked by close or
 * destroy. */
#include "test-helpers.h"

static void reserve_cb(uvchan_reserve_t* req, int status) {
  counter_t* c = req->data;
  c->calls++;
  c->status = status;
}

static void test_reserve_counts_against_capacity(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_permit_t p1, p2, p3;
  int v = 5, out;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p1), 0);
  assert_int_equal(uvchan_permit_held(&p1), 1);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EAGAIN); /* one slot reserved, one used */
  assert_int_equal(uvchan_try_reserve(&ch, &p2), UV_EAGAIN);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p2), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p3), UV_EAGAIN);
  assert_int_equal(uvchan_try_recv(&ch, &out), UV_EAGAIN); /* reserved slots hold no value */
  v = 10;
  assert_int_equal(uvchan_commit(&p2, &v), 0); /* commits in their own order */
  v = 11;
  assert_int_equal(uvchan_commit(&p1, &v), 0);
  assert_int_equal(uvchan_permit_held(&p1), 0);
  assert_int_equal(uvchan_commit(&p1, &v), UV_EINVAL); /* spent */
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 10);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 11);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A reservation that waits is served in FIFO order with senders; a commit goes straight to a
 * waiting receiver; a release hands its slot to the next waiter. */
static void test_reserve_waits_and_release_hands_over(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_reserve_t r1, r2;
  uvchan_send_t s;
  uvchan_recv_t rr;
  counter_t c1 = {0, 1}, c2 = {0, 1}, sc = {0, 1}, rc = {0, 1};
  uvchan_permit_t p;
  int v = 1, out = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p), 0); /* the only slot */
  r1.data = &c1;
  r2.data = &c2;
  s.data = &sc;
  assert_int_equal(uvchan_reserve(&r1, &ch, reserve_cb), 0);
  assert_int_equal(uvchan_send(&s, &ch, &v, send_cb), 0);
  assert_int_equal(uvchan_reserve(&r2, &ch, reserve_cb), 0);
  assert_int_equal(uvchan_waiting_senders(&ch), 3);
  RUN(f);
  assert_int_equal(c1.calls + c2.calls + sc.calls, 0);
  assert_int_equal(uvchan_release(&p), 0); /* the slot goes to r1, first in line */
  RUN(f);
  assert_int_equal(c1.calls, 1);
  assert_int_equal(c1.status, 0);
  assert_int_equal(uvchan_permit_held(&r1.permit), 1);
  assert_int_equal(sc.calls + c2.calls, 0);
  /* A receiver arriving now finds no value (the slot is reserved) but a waiting sender behind
   * the reservation: it takes that sender's value directly. */
  rr.data = &rc;
  assert_int_equal(uvchan_recv(&rr, &ch, &out, recv_cb), 0);
  RUN(f);
  assert_int_equal(rc.status, 0);
  assert_int_equal(out, 1);
  assert_int_equal(sc.status, 0);
  /* r2 waits for a slot; a receiver waits for a value: the commit serves the receiver, and the
   * slot it frees goes to r2. */
  assert_int_equal(uvchan_recv(&rr, &ch, &out, recv_cb), 0);
  v = 42;
  assert_int_equal(uvchan_commit(&r1.permit, &v), 0);
  RUN(f);
  assert_int_equal(out, 42);
  assert_int_equal(c2.status, 0);
  assert_int_equal(uvchan_permit_held(&r2.permit), 1);
  assert_int_equal(uvchan_release(&r2.permit), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0); /* the capacity is whole again */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_reserve_on_close_and_destroy(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_permit_t p;
  uvchan_reserve_t r;
  counter_t c = {0, 1};
  int v = 3, out;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p), 0);
  r.data = &c;
  assert_int_equal(uvchan_reserve(&r, &ch, reserve_cb), 0); /* waits */
  assert_int_equal(uvchan_close(&ch), 0);
  RUN(f);
  assert_int_equal(c.status, UV_EPIPE); /* a waiting reservation fails like a sender */
  assert_int_equal(uvchan_commit(&p, &v), UV_EPIPE); /* nothing taken, the slot freed */
  assert_int_equal(uvchan_permit_held(&p), 0);
  assert_int_equal(uvchan_try_recv(&ch, &out), UV_EOF);
  assert_int_equal(uvchan_try_reserve(&ch, &p), UV_EPIPE);
  assert_int_equal(uvchan_destroy(&ch), 0);
  /* destroy: a held permit is void, and a re-created channel in the same struct is not its */
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_permit_held(&p), 0);
  assert_int_equal(uvchan_commit(&p, &v), UV_EINVAL);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  assert_int_equal(uvchan_release(&p), UV_EINVAL);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0); /* the full capacity */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A reservation case in select: ready when a slot is free, and it fills the case's permit. */
static void sel_cb(uvchan_select_t* req, int status) {
  counter_t* c = req->data;
  c->calls++;
  c->status = status;
}

static void test_reserve_in_select(void** state) {
  fixture_t* f = FX(state);
  uvchan_t full, other;
  uvchan_permit_t p, q;
  uvchan_select_t sel;
  int v = 9, out, st;
  counter_t sc = {0, 1};
  uvchan_case_t c[2];
  assert_int_equal(uvchan_init(&f->ctx, &full, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &other, sizeof(int), 0), 0);
  assert_int_equal(uvchan_try_send(&full, &v), 0);
  c[0] = (uvchan_case_t)UVCHAN_CASE_RESERVE(&full, &p);
  c[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&other, &out);
  assert_int_equal(uvchan_try_select(c, 2, &st), UV_EAGAIN);
  memset(&sel, 0, sizeof(sel));
  sel.data = &sc;
  assert_int_equal(uvchan_select(&sel, c, 2, sel_cb), 0);
  assert_int_equal(uvchan_try_recv(&full, &out), 0); /* frees the slot: granted to the select */
  RUN(f);
  assert_int_equal(sel.index, 0);
  assert_int_equal(sc.status, 0);
  assert_int_equal(uvchan_permit_held(&p), 1);
  assert_int_equal(uvchan_waiting_receivers(&other), 0); /* the other case withdrawn */
  assert_int_equal(uvchan_commit(&p, &v), 0);
  c[0].value = &q;
  assert_int_equal(uvchan_try_select(c, 2, &st), UV_EAGAIN); /* full again */
  assert_int_equal(uvchan_try_recv(&full, &out), 0);
  assert_int_equal(uvchan_try_select(c, 2, &st), 0);
  assert_int_equal(uvchan_permit_held(&q), 1);
  assert_int_equal(uvchan_release(&q), 0);
  assert_int_equal(uvchan_destroy(&full), 0);
  assert_int_equal(uvchan_destroy(&other), 0);
}

/* Tasks: reserve, build the value, commit; a reservation with a deadline. */
static void reserving_task(void* arg) {
  uvchan_t* ch = arg;
  uvchan_permit_t p;
  for (int i = 0; i < 100; i++) {
    assert_int_equal(uvchan_task_reserve(ch, &p), 0);
    assert_int_equal(uvchan_commit(&p, &i), 0);
  }
  assert_int_equal(uvchan_task_reserve_timeout(ch, &p, 100000), 0);
  assert_int_equal(uvchan_release(&p), 0); /* changed its mind: nothing sent */
  uvchan_close(ch);
}

static void draining_task(void* arg) {
  uvchan_t* ch = arg;
  int v, expect = 0;
  while (uvchan_task_recv(ch, &v) == 0)
    assert_int_equal(v, expect++);
  assert_int_equal(expect, 100);
}

static void test_reserve_in_tasks(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 3), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, reserving_task, &ch, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, draining_task, &ch, NULL), 0);
  RUN(f);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void timeout_task(void* arg) {
  uvchan_t* ch = arg;
  uvchan_permit_t p, q;
  assert_int_equal(uvchan_task_reserve(ch, &p), 0);
  assert_int_equal(uvchan_task_reserve_timeout(ch, &q, 2), UV_ETIMEDOUT);
  assert_int_equal(uvchan_permit_held(&q), 0);
  assert_int_equal(uvchan_release(&p), 0);
}

static void test_reserve_deadline(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, timeout_task, &ch, NULL), 0);
  RUN(f);
  assert_int_equal(uvchan_waiting_senders(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* The callback form: a reservation on a full channel times out holding nothing; one that a slot
 * frees before its deadline gets the slot. */
static void test_reserve_timeout_callbacks(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_reserve_t r1, r2;
  counter_t c1 = {0, 1}, c2 = {0, 1};
  uvchan_permit_t p;
  int out;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p), 0); /* the only slot */
  r1.data = &c1;
  r2.data = &c2;
  assert_int_equal(uvchan_reserve_timeout(&r1, &ch, 2, reserve_cb), 0);
  RUN(f);
  assert_int_equal(c1.calls, 1);
  assert_int_equal(c1.status, UV_ETIMEDOUT);
  assert_int_equal(uvchan_permit_held(&r1.permit), 0);
  assert_int_equal(uvchan_waiting_senders(&ch), 0);
  assert_int_equal(uvchan_reserve_timeout(&r2, &ch, 60000, reserve_cb), 0);
  assert_int_equal(c2.calls, 0); /* never from inside the call */
  assert_int_equal(uvchan_release(&p), 0); /* hands the slot to r2 */
  RUN(f);                                  /* returns at once: the deadline went with the wait */
  assert_int_equal(c2.calls, 1);
  assert_int_equal(c2.status, 0);
  assert_int_equal(uvchan_permit_held(&r2.permit), 1);
  assert_int_equal(uvchan_release(&r2.permit), 0);
  assert_int_equal(uvchan_try_recv(&ch, &out), UV_EAGAIN);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_reserve_bad_input(void** state) {
  fixture_t* f = FX(state);
  uvchan_t unbuffered, ch;
  uvchan_permit_t p;
  uvchan_reserve_t r;
  int v = 1;
  memset(&p, 0, sizeof(p));
  memset(&r, 0, sizeof(r));
  assert_int_equal(uvchan_init(&f->ctx, &unbuffered, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_reserve(&unbuffered, &p), UV_EINVAL);
  assert_int_equal(uvchan_try_reserve(NULL, &p), UV_EINVAL);
  assert_int_equal(uvchan_try_reserve(&ch, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reserve(&r, &unbuffered, reserve_cb), UV_EINVAL);
  assert_int_equal(uvchan_reserve(NULL, &ch, reserve_cb), UV_EINVAL);
  assert_int_equal(uvchan_reserve(&r, &ch, NULL), UV_EINVAL);
  assert_int_equal(uvchan_commit(NULL, &v), UV_EINVAL);
  assert_int_equal(uvchan_commit(&p, &v), UV_EINVAL); /* never filled */
  assert_int_equal(uvchan_release(&p), UV_EINVAL);
  assert_int_equal(uvchan_permit_held(NULL), 0);
  assert_int_equal(uvchan_task_reserve(&ch, &p), UV_EINVAL); /* outside a task */
  assert_int_equal(uvchan_try_reserve(&ch, &p), 0);
  assert_int_equal(uvchan_commit(&p, NULL), UV_EINVAL); /* a value is needed */
  assert_int_equal(uvchan_permit_held(&p), 1);
  assert_int_equal(uvchan_release(&p), 0);
  assert_int_equal(uvchan_destroy(&unbuffered), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_reserve_counts_against_capacity),
      TEST(test_reserve_waits_and_release_hands_over),
      TEST(test_reserve_on_close_and_destroy),
      TEST(test_reserve_in_select),
      TEST(test_reserve_in_tasks),
      TEST(test_reserve_deadline),
      TEST(test_reserve_timeout_callbacks),
      TEST(test_reserve_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
