/* Resources (uvchan_ctx_add_resource): what a module adds to a context. A graceful shutdown calls
 * each hook once, after the last task ended and before the channels left are destroyed; the
 * resource may leave later (its threads stopping, its handles closing), and the context closes
 * only then. */
#include "test-helpers.h"

typedef struct {
  uvchan_resource_t res;
  uvchan_t* chan;      /* a channel of its own, still alive when the hook runs */
  uv_loop_t* loop;
  uv_timer_t later;    /* leaves from a timer callback: an asynchronous close */
  int hooks;
  int chan_alive;      /* the channel was live in the hook */
  int tasks_at_hook;   /* tasks still running when the hook ran */
  int removed;
} thing_t;

static int task_ended;
static int ctx_closed;

static void on_ctx_closed(uvchan_ctx_t* ctx) {
  (void)ctx;
  ctx_closed++;
}

static void on_later_closed(uv_handle_t* h) {
  thing_t* t = h->data;
  assert_int_equal(ctx_closed, 0); /* the context waited for this resource */
  assert_int_equal(uvchan_ctx_remove_resource(&t->res), 0);
  t->removed++;
}

static void on_later(uv_timer_t* timer) {
  uv_close((uv_handle_t*)timer, on_later_closed);
}

static void hook_async(uvchan_resource_t* res) {
  thing_t* t = res->data;
  t->hooks++;
  t->chan_alive = uvchan_is_closed(t->chan) == 0;
  t->tasks_at_hook = task_ended == 0;
  assert_int_equal(ctx_closed, 0);
  /* Leave later: the context must wait. */
  assert_int_equal(uv_timer_init(t->loop, &t->later), 0);
  t->later.data = t;
  assert_int_equal(uv_timer_start(&t->later, on_later, 20, 0), 0);
}

static void hook_now(uvchan_resource_t* res) {
  thing_t* t = res->data;
  t->hooks++;
  t->chan_alive = uvchan_is_closed(t->chan) == 0;
  assert_int_equal(uvchan_ctx_remove_resource(res), 0);
  t->removed++;
}

static void blocked_task(void* arg) {
  int v;
  assert_int_equal(uvchan_task_recv(arg, &v), UV_ECANCELED);
  task_ended++;
}

static void test_register_and_errors(void** state) {
  fixture_t* f = FX(state);
  uvchan_resource_t res;
  memset(&res, 0, sizeof(res));
  assert_int_equal(uvchan_ctx_add_resource(NULL, &res, hook_now), UV_EINVAL);
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, NULL, hook_now), UV_EINVAL);
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, &res, NULL), UV_EINVAL);
  assert_int_equal(uvchan_ctx_remove_resource(NULL), UV_EINVAL);
  assert_int_equal(uvchan_ctx_remove_resource(&res), UV_EINVAL); /* never registered */
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, &res, hook_now), 0);
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, &res, hook_now), UV_EBUSY);
  assert_int_equal(uvchan_ctx_close(&f->ctx, NULL), UV_EBUSY); /* registered: no close */
  assert_int_equal(uvchan_ctx_remove_resource(&res), 0);
  assert_int_equal(uvchan_ctx_remove_resource(&res), UV_EINVAL); /* twice */
  /* nothing ran: the hook is for shutdowns only */
}

static void test_shutdown_hooks_once_after_tasks(void** state) {
  fixture_t* f = FX(state);
  thing_t a, b;
  uvchan_t ch;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  task_ended = ctx_closed = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  a.chan = b.chan = &ch;
  a.res.data = &a;
  b.res.data = &b;
  a.loop = &f->loop;
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, &a.res, hook_async), 0);
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, &b.res, hook_now), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, blocked_task, &ch, NULL), 0);
  assert_int_equal(RUN(f), 0); /* the task waits: nothing keeps the loop alive */
  assert_int_equal(uvchan_ctx_shutdown(&f->ctx, on_ctx_closed), 0);
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, &b.res, hook_now), UV_ECANCELED);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(a.hooks, 1);
  assert_int_equal(b.hooks, 1);
  assert_int_equal(a.removed, 1);
  assert_int_equal(b.removed, 1);
  assert_int_equal(task_ended, 1);
  assert_int_equal(a.tasks_at_hook, 0); /* the task had ended before any hook */
  assert_int_equal(a.chan_alive, 1);    /* channels are destroyed after the hooks */
  assert_int_equal(b.chan_alive, 1);
  assert_int_equal(ctx_closed, 1);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0); /* for the fixture's teardown */
  assert_int_equal(uvchan_ctx_init(&f->loop, &f->ctx), 0);
}

static void* other_thread_result;
static int other_check[2];
static uvchan_ctx_t* other_ctx;
static void from_other_thread(void* arg) {
  other_thread_result = (void*)(intptr_t)uvchan_ctx_remove_resource(arg);
  other_check[0] = uvchan_ctx_check(other_ctx, 0);
  other_check[1] = uvchan_ctx_check(other_ctx, 1);
}

static void test_wrong_thread(void** state) {
  fixture_t* f = FX(state);
  uvchan_resource_t res;
  uv_thread_t th;
  memset(&res, 0, sizeof(res));
  assert_int_equal(uvchan_ctx_add_resource(&f->ctx, &res, hook_now), 0);
  other_ctx = &f->ctx;
  assert_int_equal(uv_thread_create(&th, from_other_thread, &res), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal((int)(intptr_t)other_thread_result, UV_EPERM);
  assert_int_equal(other_check[0], UV_EPERM);
  assert_int_equal(other_check[1], UV_EPERM);
  assert_int_equal(uvchan_ctx_remove_resource(&res), 0);
}

/* uvchan_ctx_check: what a call on the context would get now. */
static void check_shut(uvchan_ctx_t* ctx) {
  (void)ctx;
}

static void test_check(void** state) {
  fixture_t* f = FX(state);
  uvchan_ctx_t zero;
  uvchan_t ch;
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(uvchan_ctx_check(&f->ctx, 1), 0);
  assert_int_equal(uvchan_ctx_check(&f->ctx, 0), 0);
  assert_int_equal(uvchan_ctx_check(NULL, 0), UV_EINVAL);
  assert_int_equal(uvchan_ctx_check(&zero, 1), UV_EINVAL);
  /* A task blocked until the shutdown ends it: the context stays in its shutdown meanwhile. */
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, blocked_task, &ch, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_ctx_shutdown(&f->ctx, check_shut), 0);
  assert_int_equal(uvchan_ctx_check(&f->ctx, 1), UV_ECANCELED); /* no new objects */
  assert_int_equal(uvchan_ctx_check(&f->ctx, 0), 0);            /* closes still go */
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_ctx_check(&f->ctx, 1), UV_EINVAL); /* closed */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0); /* for the fixture's teardown */
  assert_int_equal(uvchan_ctx_init(&f->loop, &f->ctx), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_register_and_errors),
      TEST(test_shutdown_hooks_once_after_tasks),
      TEST(test_wrong_thread),
      TEST(test_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
