/* Library findings of the fuzz model and the stress runs (docs/reliability.md), each reduced to
 * a minimal reproducer, kept as regression tests now that the library is fixed.
 *
 * The cooperative budget (UVCHAN_TASK_BUDGET): a task's blocking call checks its arguments, then
 * spends one unit of the budget, and the call that spends the last unit first yields to the
 * loop. Whatever the call checked (the channel, the select's channels, the wait group) can be
 * destroyed by another party during that yield, and the operation then runs on the destroyed
 * object. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-helpers.h"

/* A task that completes UVCHAN_TASK_BUDGET operations at once (sends into `fill`, which has room
 * for all of them), so that its next blocking call yields before operating. */
typedef struct {
  uvchan_t* fill;
  uvchan_t* target;
  uvchan_wg_t* wg;
  int what; /* 0: send on target, 1: select sending on target, 2: wait on wg */
  int done;
  int result;
} yielder_t;

static void yielder(void* arg) {
  yielder_t* y = arg;
  uint32_t v = 7;
  uvchan_case_t cases[1] = {UVCHAN_CASE_SEND(NULL, &v)};
  int st = 0;
  for (int i = 0; i < UVCHAN_TASK_BUDGET; i++)
    assert_int_equal(uvchan_task_send(y->fill, &v), 0);
  if (y->what == 0) {
    y->result = uvchan_task_send(y->target, &v);
  } else if (y->what == 1) {
    cases[0].chan = y->target;
    y->result = uvchan_task_select(cases, 1, &st);
    if (y->result == 0)
      y->result = st;
  } else {
    y->result = uvchan_task_wg_wait(y->wg);
  }
  y->done = 1;
}

/* Spawned after the yielder: runs while the yielder is in its budget yield. */
static void destroy_target(void* arg) {
  yielder_t* y = arg;
  if (y->what == 2)
    assert_int_equal(uvchan_wg_destroy(y->wg), 0);
  else
    assert_int_equal(uvchan_destroy(y->target), 0);
}

/* Runs the scenario on `f`: the yielder's last call is on a channel (or wait group) that the
 * second task destroys during the yield. The call must end, with UV_ECANCELED, as it would had
 * the object been destroyed while the call waited. */
static void yield_then_destroy(fixture_t* f, yielder_t* y, size_t target_cap) {
  uvchan_t fill, target;
  uvchan_wg_t wg;
  uvchan_task_ref_t ref;
  assert_int_equal(uvchan_init(&f->ctx, &fill, sizeof(uint32_t), UVCHAN_TASK_BUDGET), 0);
  assert_int_equal(uvchan_init(&f->ctx, &target, sizeof(uint32_t), target_cap), 0);
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 1), 0);
  y->fill = &fill;
  y->target = &target;
  y->wg = &wg;
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, yielder, y, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, destroy_target, y, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  if (!y->done) { /* it waits on the destroyed object: end it, to report the failure cleanly */
    assert_int_equal(uvchan_task_cancel(&ref), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    y->done = -1;
  }
  assert_int_equal(uvchan_destroy(&fill), 0);
  if (y->what == 2)
    (void)uvchan_destroy(&target);
}

/* Unbuffered: the send, after the yield, waits in the destroyed channel's queue, where no close,
 * destroy or shutdown will ever find it and the deadlock report does not see it. */
static void test_budget_yield_then_destroyed_channel(void** state) {
  yielder_t y = {0};
  y.what = 0;
  yield_then_destroy(FX(state), &y, 0);
  assert_int_equal(y.done, 1); /* it was -1: the send waited in the destroyed channel */
  assert_int_equal(y.result, UV_ECANCELED);
}

/* The same with a select: its case is linked into the destroyed channel's queue. */
static void test_budget_yield_then_destroyed_select_channel(void** state) {
  yielder_t y = {0};
  y.what = 1;
  yield_then_destroy(FX(state), &y, 0);
  assert_int_equal(y.done, 1);
  assert_int_equal(y.result, UV_ECANCELED);
}

/* A wait group: the wait, after the yield, joins the destroyed wait group (and links it back
 * into its context's list), so uvchan_ctx_close() returns UV_EBUSY until the task is cancelled. */
static void test_budget_yield_then_destroyed_wait_group(void** state) {
  yielder_t y = {0};
  y.what = 2;
  yield_then_destroy(FX(state), &y, 0);
  assert_int_equal(y.done, 1);
  assert_int_equal(y.result, UV_ECANCELED);
}

/* Buffered: the send, after the yield, finds "room" in the destroyed channel and copies the
 * value into its freed buffer (a NULL pointer): the process dies (SIGSEGV; under UBSan, "applying
 * zero offset to null pointer" in uvchan__put, and exit status 1). Run in a child. */
static void test_budget_yield_then_destroyed_buffered_channel(void** state) {
  pid_t pid;
  int wstatus = 0;
  (void)state;
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    fixture_t* f = calloc(1, sizeof(*f));
    yielder_t y = {0};
    signal(SIGSEGV, SIG_DFL); /* cmocka's handlers would report and go on in the child */
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    if (f == NULL || uv_loop_init(&f->loop) != 0 || uvchan_ctx_init(&f->loop, &f->ctx) != 0)
      _exit(3);
    y.what = 0;
    yield_then_destroy(f, &y, 1);
    _exit(y.done == 1 && y.result == UV_ECANCELED ? 0 : 1);
  }
  assert_int_equal(waitpid(pid, &wstatus, 0), pid);
  if (WIFSIGNALED(wstatus))
    fprintf(stderr, "test-fuzz-findings: the child died with signal %d\n", WTERMSIG(wstatus));
  assert_true(WIFEXITED(wstatus)); /* it was SIGSEGV: the copy into the freed buffer */
  assert_int_equal(WEXITSTATUS(wstatus), 0);
}

/* The budget's count. common.h: "Operations a task may complete in a row without waiting before
 * it gives the loop a turn" is UVCHAN_TASK_BUDGET (task.h: the task gives the loop a turn "after
 * UVCHAN_TASK_BUDGET of them in a row"). A new task got one less (it yielded on its
 * UVCHAN_TASK_BUDGET-th call); every run is now UVCHAN_TASK_BUDGET calls long. A second task
 * records how many sends the first completed each time it gets a turn. */
static uvchan_t budget_ch;
static size_t budget_seen[2];
static int budget_turns;

static void budget_sender(void* arg) {
  uint32_t v = 1;
  (void)arg;
  for (int i = 0; i < 3 * UVCHAN_TASK_BUDGET; i++)
    assert_int_equal(uvchan_task_send(&budget_ch, &v), 0);
}

static void budget_watcher(void* arg) {
  (void)arg;
  for (budget_turns = 0; budget_turns < 2; budget_turns++) {
    budget_seen[budget_turns] = uvchan_len(&budget_ch);
    assert_int_equal(uvchan_task_yield(), 0);
  }
}

static void test_budget_first_run_completes_budget_operations(void** state) {
  fixture_t* f = FX(state);
  assert_int_equal(uvchan_init(&f->ctx, &budget_ch, sizeof(uint32_t), 4 * UVCHAN_TASK_BUDGET), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, budget_sender, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, budget_watcher, NULL, NULL), 0);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uvchan_destroy(&budget_ch), 0);
  assert_int_equal(budget_turns, 2);
  /* between the watcher's two turns, the sender ran one whole budget */
  assert_int_equal(budget_seen[1] - budget_seen[0], UVCHAN_TASK_BUDGET);
  /* its first run: it was 127 */
  assert_int_equal(budget_seen[0], UVCHAN_TASK_BUDGET);
}

/* The deadlock report of a task blocked on a nil channel: the header said op was 0 when `chan` is
 * NULL, the report gave the task's send/receive (from which uvchan_ctx_report() prints "send on a
 * nil channel"). The header now says what the report does. */
static void nil_sender(void* arg) {
  uint32_t v = 1;
  *(int*)arg = uvchan_task_send_timeout(NULL, &v, 0);
}

static void report_one(const uvchan_waiting_t* w, void* arg) {
  *(uvchan_waiting_t*)arg = *w;
}

static void test_report_nil_channel_op(void** state) {
  fixture_t* f = FX(state);
  uvchan_waiting_t w;
  int result = 1;
  memset(&w, 0, sizeof(w));
  assert_int_equal(uvchan_task_spawn(&f->ctx, nil_sender, &result, NULL), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* the task starts and blocks */
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, report_one, &w), 1);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* the deadline ends it */
  assert_int_equal(result, UV_ETIMEDOUT);
  assert_int_equal(w.type, UVCHAN_REQ_SEND);
  assert_null(w.chan);
  assert_int_equal(w.op, UVCHAN_OP_SEND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_budget_yield_then_destroyed_channel),
      TEST(test_budget_yield_then_destroyed_select_channel),
      TEST(test_budget_yield_then_destroyed_wait_group),
      cmocka_unit_test(test_budget_yield_then_destroyed_buffered_channel),
      TEST(test_budget_first_run_completes_budget_operations),
      TEST(test_report_nil_channel_op),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
