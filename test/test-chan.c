/* The semantics contract, one test per row: send, receive, buffering, FIFO, try-operations. */
#define TEST_OWN_COUNTERS
#include "test-helpers.h"

typedef struct {
  int calls;
  int status;
  int order[64];
  int norder;
} counter_t;

static void send_cb(uvchan_send_t* req, int status) {
  counter_t* c = req->data;
  c->calls++;
  c->status = status;
  assert_int_equal(req->status, status);
}

static void recv_cb(uvchan_recv_t* req, int status) {
  counter_t* c = req->data;
  c->calls++;
  c->status = status;
}

/* Records which request (by index in data) completed, to check FIFO service of waiters. */
typedef struct {
  counter_t* log;
  int id;
} tagged_t;

static void tagged_send_cb(uvchan_send_t* req, int status) {
  tagged_t* t = req->data;
  assert_int_equal(status, 0);
  t->log->order[t->log->norder++] = t->id;
  t->log->calls++;
}

static void test_send_receiver_waiting_rendezvous(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  uvchan_recv_t r;
  counter_t sc = {0}, rc = {0};
  int in = 42, out = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  s.data = &sc;
  assert_int_equal(uvchan_recv(&r, &ch, &out, recv_cb), 0);
  assert_int_equal(uvchan_waiting_receivers(&ch), 1);
  assert_int_equal(uvchan_send(&s, &ch, &in, send_cb), 0);
  /* The value moved at once, but no callback ran inside the starting calls. */
  assert_int_equal(out, 42);
  assert_int_equal(sc.calls + rc.calls, 0);
  assert_int_equal(uvchan_waiting_receivers(&ch), 0);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(sc.status, 0);
  assert_int_equal(rc.status, 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_send_unbuffered_waits_for_receiver(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  uvchan_recv_t r;
  counter_t sc = {0}, rc = {0};
  int in = 7, out = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  s.data = &sc;
  r.data = &rc;
  assert_int_equal(uvchan_send(&s, &ch, &in, send_cb), 0);
  RUN(f); /* a waiting send alone does not keep the loop alive */
  assert_int_equal(sc.calls, 0);
  assert_int_equal(uvchan_waiting_senders(&ch), 1);
  assert_int_equal(uvchan_recv(&r, &ch, &out, recv_cb), 0);
  assert_int_equal(out, 7);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_send_buffer_has_room(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  counter_t sc = {0};
  int in = 5, out = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  s.data = &sc;
  assert_int_equal(uvchan_send(&s, &ch, &in, send_cb), 0);
  in = 99; /* the value was copied when the send was accepted */
  assert_int_equal(uvchan_len(&ch), 1);
  assert_int_equal(sc.calls, 0);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(sc.status, 0);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 5);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_send_no_room_waits_fifo(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s[4];
  tagged_t tags[4];
  counter_t log = {0};
  int vals[4] = {10, 11, 12, 13};
  int out, i;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  for (i = 0; i < 4; i++) {
    tags[i].log = &log;
    tags[i].id = i;
    s[i].data = &tags[i];
    assert_int_equal(uvchan_send(&s[i], &ch, &vals[i], tagged_send_cb), 0);
  }
  assert_int_equal(uvchan_len(&ch), 1);
  assert_int_equal(uvchan_waiting_senders(&ch), 3);
  for (i = 0; i < 4; i++) {
    assert_int_equal(uvchan_try_recv(&ch, &out), 0);
    assert_int_equal(out, 10 + i); /* values in send order */
  }
  RUN(f);
  assert_int_equal(log.calls, 4);
  for (i = 0; i < 4; i++)
    assert_int_equal(log.order[i], i); /* waiters served in arrival order */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_recv_from_buffer(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  int in = 3, out = 0;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 4), 0);
  assert_int_equal(uvchan_try_send(&ch, &in), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &ch, &out, recv_cb), 0);
  assert_int_equal(out, 3);
  assert_int_equal(rc.calls, 0);
  RUN(f);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_recv_waits_fifo(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r[3];
  counter_t rc = {0};
  int out[3] = {0, 0, 0};
  int i, v;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  for (i = 0; i < 3; i++) {
    r[i].data = &rc;
    assert_int_equal(uvchan_recv(&r[i], &ch, &out[i], recv_cb), 0);
  }
  assert_int_equal(uvchan_waiting_receivers(&ch), 3);
  for (v = 1; v <= 3; v++)
    assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_len(&ch), 0); /* handed over directly, nothing buffered */
  assert_int_equal(out[0], 1);
  assert_int_equal(out[1], 2);
  assert_int_equal(out[2], 3);
  RUN(f);
  assert_int_equal(rc.calls, 3);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_recv_full_buffer_moves_waiting_sender(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_send_t s;
  counter_t sc = {0};
  int v, extra = 100, out;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  for (v = 1; v <= 2; v++)
    assert_int_equal(uvchan_try_send(&ch, &v), 0);
  s.data = &sc;
  assert_int_equal(uvchan_send(&s, &ch, &extra, send_cb), 0);
  assert_int_equal(uvchan_waiting_senders(&ch), 1);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 1);
  /* The sender's value took the freed slot, behind the older value, and the send completed. */
  assert_int_equal(uvchan_len(&ch), 2);
  assert_int_equal(uvchan_waiting_senders(&ch), 0);
  RUN(f);
  assert_int_equal(sc.calls, 1);
  assert_int_equal(sc.status, 0);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 2);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(out, 100);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_try_send_try_recv_eagain(void** state) {
  fixture_t* f = FX(state);
  uvchan_t unbuf, buf;
  int v = 1, out;

  assert_int_equal(uvchan_init(&f->ctx, &unbuf, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &buf, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_send(&unbuf, &v), UV_EAGAIN);
  assert_int_equal(uvchan_try_recv(&unbuf, &out), UV_EAGAIN);
  assert_int_equal(uvchan_try_recv(&buf, &out), UV_EAGAIN);
  assert_int_equal(uvchan_try_send(&buf, &v), 0);
  assert_int_equal(uvchan_try_send(&buf, &v), UV_EAGAIN);
  assert_int_equal(uvchan_try_recv(&buf, NULL), 0); /* NULL drops the value */
  assert_int_equal(uvchan_len(&buf), 0);
  assert_int_equal(uvchan_destroy(&unbuf), 0);
  assert_int_equal(uvchan_destroy(&buf), 0);
}

static void test_zero_size_elements(void** state) {
  fixture_t* f = FX(state);
  uvchan_t sig, sigbuf;
  uvchan_recv_t r;
  counter_t rc = {0};

  /* chan struct{}: signals without payload, buffered and not. */
  assert_int_equal(uvchan_init(&f->ctx, &sig, 0, 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &sigbuf, 0, 3), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &sig, NULL, recv_cb), 0);
  assert_int_equal(uvchan_try_send(&sig, NULL), 0);
  assert_int_equal(uvchan_try_send(&sigbuf, NULL), 0);
  assert_int_equal(uvchan_try_send(&sigbuf, NULL), 0);
  assert_int_equal(uvchan_len(&sigbuf), 2);
  assert_int_equal(uvchan_try_recv(&sigbuf, NULL), 0);
  assert_int_equal(uvchan_len(&sigbuf), 1);
  RUN(f);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, 0);
  assert_int_equal(uvchan_destroy(&sig), 0);
  assert_int_equal(uvchan_destroy(&sigbuf), 0);
}

static void test_large_elements_copied_whole(void** state) {
  fixture_t* f = FX(state);
  typedef struct {
    char bytes[1000];
  } big_t;
  uvchan_t ch;
  big_t in, out;
  int i;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(big_t), 3), 0);
  for (i = 0; i < 1000; i++)
    in.bytes[i] = (char)i;
  assert_int_equal(uvchan_try_send(&ch, &in), 0);
  memset(&in, 0, sizeof(in));
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  for (i = 0; i < 1000; i++)
    assert_int_equal(out.bytes[i], (char)i);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_queries(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  int v = 1;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 5), 0);
  assert_int_equal(uvchan_cap(&ch), 5);
  assert_int_equal(uvchan_len(&ch), 0);
  assert_int_equal(uvchan_elem_size(&ch), sizeof(int));
  assert_int_equal(uvchan_is_closed(&ch), 0);
  assert_null(uvchan_name(&ch));
  assert_int_equal(uvchan_set_name(&ch, "jobs"), 0);
  assert_string_equal(uvchan_name(&ch), "jobs");
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_len(&ch), 1);
  assert_int_equal(uvchan_close(&ch), 0);
  assert_int_equal(uvchan_is_closed(&ch), 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_ring_wraps_around(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  int v, out, round;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 3), 0);
  for (round = 0; round < 10; round++) {
    for (v = 0; v < 2; v++) {
      int x = round * 10 + v;
      assert_int_equal(uvchan_try_send(&ch, &x), 0);
    }
    for (v = 0; v < 2; v++) {
      assert_int_equal(uvchan_try_recv(&ch, &out), 0);
      assert_int_equal(out, round * 10 + v);
    }
  }
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* Destroy hands buffered values to the destructor oldest first, also when they wrap around the
 * end of the ring. */
static int dtor_seen[8], dtor_n;
static void dtor_log(uvchan_t* ch, void* value) {
  (void)ch;
  dtor_seen[dtor_n++] = value != NULL && uvchan_elem_size(ch) != 0 ? *(int*)value : -1;
}

static void test_destroy_destructor_walk_wraps_around(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  int v, out;
  dtor_n = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 4), 0);
  uvchan_set_destructor(&ch, dtor_log);
  for (v = 1; v <= 4; v++)
    assert_int_equal(uvchan_try_send(&ch, &v), 0);
  for (v = 1; v <= 3; v++)
    assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  for (v = 5; v <= 6; v++)
    assert_int_equal(uvchan_try_send(&ch, &v), 0); /* head at 3: 4, 5, 6 wrap */
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(dtor_n, 3);
  assert_int_equal(dtor_seen[0], 4);
  assert_int_equal(dtor_seen[1], 5);
  assert_int_equal(dtor_seen[2], 6);
}

/* A signal channel's buffered "values" are counted: the destructor runs once for each. */
static void test_destroy_destructor_for_zero_size_elements(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  dtor_n = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, 0, 3), 0);
  uvchan_set_destructor(&ch, dtor_log);
  assert_int_equal(uvchan_try_send(&ch, NULL), 0);
  assert_int_equal(uvchan_try_send(&ch, NULL), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(dtor_n, 2);
}

static void test_version(void** state) {
  char expect[32];
  (void)state;
  snprintf(expect, sizeof(expect), "%d.%d.%d", UVCHAN_VERSION_MAJOR, UVCHAN_VERSION_MINOR,
           UVCHAN_VERSION_PATCH);
  assert_string_equal(uvchan_version_string(), expect);
  assert_int_equal(uvchan_version(), UVCHAN_VERSION_HEX);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_send_receiver_waiting_rendezvous),
      TEST(test_send_unbuffered_waits_for_receiver),
      TEST(test_send_buffer_has_room),
      TEST(test_send_no_room_waits_fifo),
      TEST(test_recv_from_buffer),
      TEST(test_recv_waits_fifo),
      TEST(test_recv_full_buffer_moves_waiting_sender),
      TEST(test_try_send_try_recv_eagain),
      TEST(test_zero_size_elements),
      TEST(test_large_elements_copied_whole),
      TEST(test_queries),
      TEST(test_ring_wraps_around),
      TEST(test_destroy_destructor_walk_wraps_around),
      TEST(test_destroy_destructor_for_zero_size_elements),
      cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests_name("chan", tests, NULL, NULL);
}
