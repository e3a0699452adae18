/* Bad input and wrong state for the calls of uvchan/thread.h and uvchan/pool.h: the rows of
 * docs/errors.md that name this file. */
#include "test-helpers.h"

static int work_nop(uvchan_work_map_t* map, const void* in, void* out) {
  (void)map;
  (void)in;
  (void)out;
  return 0;
}

static void done_nop(uvchan_work_map_t* map, int status) {
  (void)map;
  (void)status;
}

static void test_thread_errors_init_shared_and_attach(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero;
  uvchan_t ch, end, local, zch;
  memset(&zero, 0, sizeof(zero));
  memset(&zch, 0, sizeof(zch));
  memset(&end, 0, sizeof(end));

  assert_int_equal(uvchan_init_shared(NULL, &ch, 8, 1), UV_EINVAL);
  assert_int_equal(uvchan_init_shared(&zero, &ch, 8, 1), UV_EINVAL);
  assert_int_equal(uvchan_init_shared(&f->ctx, NULL, 8, 1), UV_EINVAL);
  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, SIZE_MAX / 2, 4), UV_EINVAL); /* overflows */
  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, 8, 1), 0);
  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, 8, 1), UV_EBUSY); /* live */
  assert_int_equal(uvchan_init(&f->ctx, &ch, 8, 1), UV_EBUSY);

  assert_int_equal(uvchan_attach(NULL, &end, &ch), UV_EINVAL);
  assert_int_equal(uvchan_attach(&zero, &end, &ch), UV_EINVAL);
  assert_int_equal(uvchan_attach(&f->ctx, NULL, &ch), UV_EINVAL);
  assert_int_equal(uvchan_attach(&f->ctx, &end, NULL), UV_EINVAL);
  assert_int_equal(uvchan_attach(&f->ctx, &end, &zch), UV_EINVAL); /* never initialised */
  assert_int_equal(uvchan_init(&f->ctx, &local, 8, 1), 0);
  assert_int_equal(uvchan_attach(&f->ctx, &end, &local), UV_EINVAL); /* not shared */
  assert_int_equal(uvchan_attach(&f->ctx, &local, &ch), UV_EBUSY);   /* a live channel */
  assert_int_equal(uvchan_attach(&f->ctx, &end, &ch), 0);
  assert_int_equal(uvchan_attach(&f->ctx, &end, &ch), UV_EBUSY); /* a live end */
  assert_int_equal(uvchan_is_shared(&end), 1);
  assert_int_equal(uvchan_is_shared(&ch), 1);
  assert_int_equal(uvchan_is_shared(&local), 0);
  assert_int_equal(uvchan_is_shared(NULL), 0);
  assert_int_equal(uvchan_is_shared(&zch), 0);

  assert_int_equal(uvchan_destroy(&ch), UV_EBUSY); /* the first end goes last */
  assert_int_equal(uvchan_destroy(&end), 0);
  assert_int_equal(uvchan_destroy(&end), UV_EINVAL); /* destroyed */
  assert_int_equal(uvchan_attach(&f->ctx, &end, &end), UV_EINVAL);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_destroy(&local), 0);
}

static void test_thread_errors_thread_calls(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch, local, zch, sig;
  long v = 1;
  memset(&zch, 0, sizeof(zch));

  assert_int_equal(uvchan_init(&f->ctx, &local, sizeof(long), 1), 0);
  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, sizeof(long), 1), 0);
  assert_int_equal(uvchan_init_shared(&f->ctx, &sig, 0, 0), 0);
  /* not a shared channel: NULL, never initialised, a loop's own channel */
  assert_int_equal(uvchan_thread_send(NULL, &v), UV_EINVAL);
  assert_int_equal(uvchan_thread_send(&zch, &v), UV_EINVAL);
  assert_int_equal(uvchan_thread_send(&local, &v), UV_EINVAL);
  assert_int_equal(uvchan_thread_send_timeout(&local, &v, 1), UV_EINVAL);
  assert_int_equal(uvchan_thread_recv(NULL, &v), UV_EINVAL);
  assert_int_equal(uvchan_thread_recv(&local, &v), UV_EINVAL);
  assert_int_equal(uvchan_thread_recv_timeout(&zch, &v, 1), UV_EINVAL);
  /* a NULL value with element size > 0; fine for a signal channel */
  assert_int_equal(uvchan_thread_send(&ch, NULL), UV_EINVAL);
  assert_int_equal(uvchan_thread_send_timeout(&ch, NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_thread_send_timeout(&sig, NULL, 0), UV_ETIMEDOUT); /* nobody receives */
  /* deadlines: 0 is a try, others wait */
  assert_int_equal(uvchan_thread_send_timeout(&ch, &v, 0), 0);
  assert_int_equal(uvchan_thread_send_timeout(&ch, &v, 0), UV_ETIMEDOUT); /* full */
  assert_int_equal(uvchan_thread_send_timeout(&ch, &v, 2), UV_ETIMEDOUT);
  assert_int_equal(uvchan_thread_recv_timeout(&ch, NULL, 0), 0); /* NULL drops the value */
  assert_int_equal(uvchan_thread_recv_timeout(&ch, &v, 2), UV_ETIMEDOUT);
  /* closed */
  assert_int_equal(uvchan_close(&ch), 0);
  assert_int_equal(uvchan_close(&ch), UV_EPIPE);
  assert_int_equal(uvchan_thread_send(&ch, &v), UV_EPIPE);
  v = 5;
  assert_int_equal(uvchan_thread_recv(&ch, &v), UV_EOF);
  assert_int_equal(v, 0); /* the zero value */
  assert_int_equal(uvchan_thread_recv_timeout(&ch, &v, 1), UV_EOF);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_destroy(&sig), 0);
  assert_int_equal(uvchan_destroy(&local), 0);
}

/* A thread blocked in uvchan_thread_recv() on an end that is destroyed: UV_ECANCELED. */
typedef struct {
  uvchan_t* end;
  int status;
} blocked_t;

static void recv_blocked(void* arg) {
  blocked_t* b = arg;
  long v;
  b->status = uvchan_thread_recv(b->end, &v);
}

static void test_thread_errors_thread_recv_end_destroyed(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch, end;
  blocked_t b;
  uv_thread_t th;

  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, sizeof(long), 0), 0);
  assert_int_equal(uvchan_attach(&f->ctx, &end, &ch), 0);
  b.end = &end;
  b.status = 1;
  assert_int_equal(uv_thread_create(&th, recv_blocked, &b), 0);
  while (uvchan_waiting_receivers(&ch) == 0) /* until the thread waits */
    uv_sleep(1);
  assert_int_equal(uvchan_destroy(&end), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(b.status, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void reserve_cb(uvchan_reserve_t* r, int s) {
  (void)r;
  (void)s;
}

static void test_thread_errors_not_on_shared_channels(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_permit_t p;
  uvchan_reserve_t r;
  uvchan_select_t sel;
  uvchan_case_t c[1] = {UVCHAN_CASE_RESERVE(&ch, &p)};

  memset(&r, 0, sizeof(r));
  memset(&sel, 0, sizeof(sel));
  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, sizeof(long), 4), 0);
  assert_int_equal(uvchan_try_reserve(&ch, &p), UV_EINVAL);
  assert_int_equal(uvchan_reserve(&r, &ch, reserve_cb), UV_EINVAL);
  assert_int_equal(uvchan_select(&sel, c, 1, (uvchan_select_cb)reserve_cb), UV_EINVAL);
  assert_int_equal(uvchan_try_select(c, 1, NULL), UV_EINVAL);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_thread_errors_spin(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero;
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(uvchan_ctx_set_spin(NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_ctx_set_spin(&zero, 1), UV_EINVAL);
  assert_int_equal(uvchan_ctx_set_spin(&f->ctx, 0), 0);
  assert_int_equal(uvchan_ctx_set_spin(&f->ctx, UVCHAN_DEFAULT_SPIN_US), 0);
}

/* During a shutdown, starts on the context fail with UV_ECANCELED. A task parked on a channel
 * keeps the shutdown in progress until the loop delivers its cancellation. */
static void parked(void* arg) {
  long v;
  assert_int_equal(uvchan_task_recv(arg, &v), UV_ECANCELED);
}

static void test_thread_errors_shutdown(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t ch, end, in, out, more;
  uvchan_work_map_t map;
  (void)state;

  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&ctx, 0, sizeof(ctx));
  memset(&map, 0, sizeof(map));
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_init_shared(&ctx, &ch, 8, 0), 0);
  assert_int_equal(uvchan_init(&ctx, &in, 8, 0), 0);
  assert_int_equal(uvchan_init(&ctx, &out, 8, 0), 0);
  assert_int_equal(uvchan_task_spawn(&ctx, parked, &in, NULL), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0); /* it parks */
  assert_int_equal(uvchan_ctx_shutdown(&ctx, NULL), 0);
  assert_int_equal(uvchan_attach(&ctx, &end, &ch), UV_ECANCELED);
  assert_int_equal(uvchan_init_shared(&ctx, &more, 8, 0), UV_ECANCELED);
  assert_int_equal(uvchan_work_map_start(&ctx, &map, 1, &in, &out, work_nop, done_nop, NULL),
                   UV_ECANCELED);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* the shutdown destroys the channels */
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Bad input of the threadpool calls (test-thread-pool has the rest: running map, wrong thread). */
static void task_work_outside(void* arg) {
  (void)arg;
}

static void in_task(void* arg) {
  int* r = arg;
  r[0] = uvchan_task_work(NULL, NULL);
  r[1] = uvchan_task_work_timeout(NULL, NULL, 1);
  r[2] = uvchan_task_work(task_work_outside, NULL);
}

static void test_thread_errors_pool(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out, zch;
  uvchan_work_map_t map;
  int r[3] = {1, 1, 1};

  memset(&zch, 0, sizeof(zch));
  memset(&map, 0, sizeof(map));
  assert_int_equal(uvchan_init(&f->ctx, &in, 8, 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, 8, 0), 0);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, &zch, &out, work_nop, done_nop, NULL),
                   UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, &in, NULL, work_nop, done_nop, NULL),
                   UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 0, &in, &out, work_nop, done_nop, NULL),
                   UV_EINVAL);
  assert_int_equal(uvchan_work_map_stop(&map), UV_EINVAL);
  assert_int_equal(uvchan_work_map_active(&map), 0);
  assert_int_equal(uvchan_task_work(task_work_outside, NULL), UV_EINVAL); /* outside a task */
  assert_int_equal(uvchan_task_work_timeout(task_work_outside, NULL, 1), UV_EINVAL);
  assert_int_equal(uvchan_task_spawn(&f->ctx, in_task, r, NULL), 0);
  RUN(f);
  assert_int_equal(r[0], UV_EINVAL);
  assert_int_equal(r[1], UV_EINVAL);
  assert_int_equal(r[2], 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_thread_errors_init_shared_and_attach),
      TEST(test_thread_errors_thread_calls),
      TEST(test_thread_errors_thread_recv_end_destroyed),
      TEST(test_thread_errors_not_on_shared_channels),
      TEST(test_thread_errors_spin),
      cmocka_unit_test(test_thread_errors_shutdown),
      TEST(test_thread_errors_pool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
