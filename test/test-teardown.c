/* Teardown: destroying channels with waiters and buffered values, closing the context. */
#include "test-helpers.h"


typedef struct {
  int seen[16];
  int n;
} dtor_log_t;

static void dtor(uvchan_t* ch, void* value) {
  dtor_log_t* log = ch->data;
  log->seen[log->n++] = *(int*)value;
}

static void test_destroy_calls_destructor_exactly_for_buffered(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  dtor_log_t log = {{0}, 0};
  int v, out;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 5), 0);
  ch.data = &log;
  assert_int_equal(uvchan_set_destructor(&ch, dtor), 0);
  for (v = 1; v <= 5; v++)
    assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_try_recv(&ch, &out), 0); /* received: never destroyed */
  assert_int_equal(uvchan_try_recv(&ch, &out), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(log.n, 3);
  assert_int_equal(log.seen[0], 3);
  assert_int_equal(log.seen[1], 4);
  assert_int_equal(log.seen[2], 5);
}

static void test_destroy_with_waiters_cancels_each_once(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  uvchan_recv_t r[3];
  uvchan_send_t s[2];
  counter_t rc = {0}, sc = {0};
  dtor_log_t log = {{0}, 0};
  int vals[2] = {1, 2}, i, x = 9;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 1), 0);
  b.data = &log;
  uvchan_set_destructor(&b, dtor);
  for (i = 0; i < 3; i++) {
    r[i].data = &rc;
    assert_int_equal(uvchan_recv(&r[i], &a, NULL, recv_cb), 0);
  }
  assert_int_equal(uvchan_try_send(&b, &x), 0);
  for (i = 0; i < 2; i++) {
    s[i].data = &sc;
    assert_int_equal(uvchan_send(&s[i], &b, &vals[i], send_cb), 0);
  }
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
  /* Waiting senders' values were never accepted: only the buffered 9 is destroyed. */
  assert_int_equal(log.n, 1);
  assert_int_equal(log.seen[0], 9);
  assert_int_equal(rc.calls + sc.calls, 0);
  RUN(f);
  assert_int_equal(rc.calls, 3);
  assert_int_equal(rc.status, UV_ECANCELED);
  assert_int_equal(sc.calls, 2);
  assert_int_equal(sc.status, UV_ECANCELED);
}

static void test_destroyed_channel_rejects_everything(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  uvchan_send_t s;
  int v = 1;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch), UV_EINVAL);
  assert_int_equal(uvchan_close(&ch), UV_EINVAL);
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EINVAL);
  assert_int_equal(uvchan_try_recv(&ch, &v), UV_EINVAL);
  memset(&r, 0, sizeof(r));
  memset(&s, 0, sizeof(s));
  assert_int_equal(uvchan_send(&s, &ch, &v, (uvchan_send_cb)send_cb), UV_EINVAL);
  assert_int_equal(uvchan_recv(&r, &ch, &v, recv_cb), UV_EINVAL);
  assert_int_equal(uvchan_is_closed(&ch), UV_EINVAL);
  assert_int_equal(uvchan_len(&ch), 0);
}

static void test_ctx_close_busy_while_channels_live(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_ctx_close(&f->ctx, NULL), UV_EBUSY);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static int closed_calls;
static void on_ctx_closed(uvchan_ctx_t* ctx) {
  (void)ctx;
  closed_calls++;
}

static void test_ctx_close_delivers_pending_then_closes(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  (void)state;

  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_init(&ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv(&r, &ch, NULL, recv_cb), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  closed_calls = 0;
  assert_int_equal(uvchan_ctx_close(&ctx, on_ctx_closed), 0);
  assert_int_equal(uvchan_ctx_close(&ctx, on_ctx_closed), UV_EINVAL); /* already closing */
  assert_int_equal(uvchan_init(&ctx, &ch, 4, 0), UV_EINVAL);          /* closing: no new ones */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(rc.calls, 1);
  assert_int_equal(rc.status, UV_ECANCELED);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_ctx_never_touches_loop_data(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t rc = {0};
  int marker = 0, v = 1;
  (void)state;

  assert_int_equal(uv_loop_init(&loop), 0);
  loop.data = &marker;
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_init(&ctx, &ch, sizeof(int), 0), 0);
  r.data = &rc;
  assert_int_equal(uvchan_recv_timeout(&r, &ch, NULL, 1000, recv_cb), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_ctx_close(&ctx, NULL), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_ptr_equal(loop.data, &marker);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_two_contexts_on_one_loop(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t c1, c2;
  uvchan_t a, b;
  uvchan_case_t cases[2];
  int v = 1;
  (void)state;

  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &c1), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &c2), 0);
  assert_int_equal(uvchan_init(&c1, &a, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(&c2, &b, sizeof(int), 1), 0);
  /* A select may not mix channels of two contexts. */
  cases[0] = (uvchan_case_t)UVCHAN_CASE_SEND(&a, &v);
  cases[1] = (uvchan_case_t)UVCHAN_CASE_SEND(&b, &v);
  assert_int_equal(uvchan_try_select(cases, 2, NULL), UV_EINVAL);
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
  assert_int_equal(uvchan_ctx_close(&c1, NULL), 0);
  assert_int_equal(uvchan_ctx_close(&c2, NULL), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The uv_walk() close-all idiom: an application closes every handle of its loop, then closes
 * the context. uvchan's own handles are recognisable, and a close the application already
 * started on them is waited out, never repeated. */
static int app_closes;
static void app_close_cb(uv_handle_t* h) {
  (void)h;
  app_closes++;
}
static void close_all(uv_handle_t* h, void* arg) {
  int skip_owned = *(int*)arg;
  if (uv_is_closing(h) || (skip_owned && uvchan_handle_owned(h)))
    return;
  uv_close(h, app_close_cb);
}
static int ctx_closed;
static void on_walk_ctx_closed(uvchan_ctx_t* ctx) {
  (void)ctx;
  ctx_closed++;
}

static void walk_close_all(int skip_owned) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_timer_t* t = malloc(sizeof(*t));
  uv_timer_t mine;
  uvchan_t ch;
  int v = 1;

  app_closes = ctx_closed = 0;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&ctx, 0, sizeof(ctx));
  memset(t, 0, sizeof(*t));
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uv_timer_init(&loop, &mine), 0);
  mine.data = NULL; /* libuv leaves it unset, and close_all() asks uvchan_handle_owned() */
  assert_int_equal(uvchan_init(&ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_timer_after(&ctx, t, 100000), 0);
  /* shutdown, application style: uvchan objects first, then every handle, then the context */
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_timer_close(t, NULL), 0);
  uv_walk(&loop, close_all, &skip_owned);
  assert_int_equal(uvchan_ctx_close(&ctx, on_walk_ctx_closed), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(ctx_closed, 1);
  assert_int_equal(app_closes, skip_owned ? 1 : 6); /* mine, or mine and the context's five */
  assert_int_equal(uv_loop_close(&loop), 0);
  free(t);
}

static void test_uv_walk_close_all_skipping_owned(void** state) {
  (void)state;
  walk_close_all(1);
}

static void test_uv_walk_close_all_including_owned(void** state) {
  (void)state;
  walk_close_all(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_destroy_calls_destructor_exactly_for_buffered),
      TEST(test_destroy_with_waiters_cancels_each_once),
      TEST(test_destroyed_channel_rejects_everything),
      TEST(test_ctx_close_busy_while_channels_live),
      cmocka_unit_test(test_ctx_close_delivers_pending_then_closes),
      cmocka_unit_test(test_ctx_never_touches_loop_data),
      cmocka_unit_test(test_two_contexts_on_one_loop),
      cmocka_unit_test(test_uv_walk_close_all_skipping_owned),
      cmocka_unit_test(test_uv_walk_close_all_including_owned),
  };
  return cmocka_run_group_tests_name("teardown", tests, NULL, NULL);
}
