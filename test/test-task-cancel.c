/* Cancelling a task (Kotlin's Job.cancel, tokio's abort): the blocking call it is parked in returns
 * UV_ECANCELED, and so does every later one, so that the task runs to its end. Also the
 * cooperative budget, and Go's nil channels, which only a cancel or a deadline ends. */
#include "test-helpers.h"

static uvchan_ctx_t* CTX;

typedef struct {
  uvchan_t* ch;
  uvchan_wg_t* wg;
  int first;  /* what the parked call returned */
  int later;  /* what a later blocking call returned */
  int ended;
} probe_t;

static void check_later(probe_t* p) {
  int v = 1;
  uvchan_t* ch = p->ch;
  /* Every later blocking call fails at once, even one that could complete. */
  p->later = uvchan_task_send(ch, &v);
  assert_int_equal(uvchan_task_recv(ch, &v), UV_ECANCELED);
  assert_int_equal(uvchan_task_sleep(0), UV_ECANCELED);
  assert_int_equal(uvchan_task_yield(), UV_ECANCELED);
  assert_int_equal(uvchan_task_cancelled(), 1);
  p->ended = 1;
}

static void parked_recv(void* arg) {
  probe_t* p = arg;
  int v;
  p->first = uvchan_task_recv(p->ch, &v);
  check_later(p);
}

static void parked_send(void* arg) {
  probe_t* p = arg;
  int v = 9;
  p->first = uvchan_task_send(p->ch, &v);
  check_later(p);
}

static void parked_select(void* arg) {
  probe_t* p = arg;
  int v = 0;
  uvchan_case_t c[2] = {UVCHAN_CASE_RECV(p->ch, &v), UVCHAN_CASE_SEND(p->ch, &v)};
  p->first = uvchan_task_select(c, 2, NULL);
  check_later(p);
}

static void parked_wg(void* arg) {
  probe_t* p = arg;
  p->first = uvchan_task_wg_wait(p->wg);
  check_later(p);
}

static void parked_sleep(void* arg) {
  probe_t* p = arg;
  p->first = uvchan_task_sleep(100000);
  check_later(p);
}

static void parked_nil(void* arg) {
  probe_t* p = arg;
  int v;
  p->first = uvchan_task_recv(NULL, &v); /* Go's nil channel: blocks forever */
  check_later(p);
}

static void parked_timeout(void* arg) {
  probe_t* p = arg;
  int v;
  p->first = uvchan_task_recv_timeout(p->ch, &v, 100000);
  check_later(p);
}

static void test_task_cancel_ends_every_kind_of_wait(void** state) {
  fixture_t* f = FX(state);
  uvchan_task_fn fns[] = {parked_recv, parked_send,  parked_select, parked_wg,
                          parked_sleep, parked_nil, parked_timeout};
  uvchan_t ch;
  uvchan_wg_t wg;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 1), 0);
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    probe_t p = {&ch, &wg, 1, 1, 0};
    uvchan_task_ref_t ref;
    assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, fns[i], &p, NULL), 0);
    assert_int_equal(uvchan_task_alive(&ref), 1);
    /* run until it parks (the sleep keeps the loop alive: one iteration is enough) */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(p.ended, 0);
    assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 1);
    assert_int_equal(uvchan_task_cancel(&ref), 0);
    assert_int_equal(uvchan_task_cancel(&ref), 0); /* twice is harmless */
    RUN(f);
    assert_int_equal(p.first, UV_ECANCELED);
    assert_int_equal(p.later, UV_ECANCELED);
    assert_int_equal(p.ended, 1);
    assert_int_equal(uvchan_task_alive(&ref), 0);
    assert_int_equal(uvchan_task_cancel(&ref), UV_ESRCH);
    assert_int_equal(uvchan_waiting_senders(&ch) + uvchan_waiting_receivers(&ch), 0);
    assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 0);
  }
  assert_int_equal(uvchan_wg_done(&wg), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A wait already matched reports its real outcome: the value was transferred. */
static void test_task_cancel_after_match_keeps_the_real_outcome(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  probe_t p;
  uvchan_task_ref_t ref;
  int v = 77;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  p = (probe_t){&ch, NULL, 1, 1, 0};
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, parked_recv, &p, NULL), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(uvchan_try_send(&ch, &v), 0); /* matched: its resumption is queued */
  assert_int_equal(uvchan_task_cancel(&ref), 0);
  RUN(f);
  assert_int_equal(p.first, 0); /* it got the value */
  assert_int_equal(p.later, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A task cancelled before it first ran starts, and its first blocking call fails. */
static void test_task_cancel_before_start(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  probe_t p;
  uvchan_task_ref_t ref;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 4), 0);
  p = (probe_t){&ch, NULL, 1, 1, 0};
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, parked_send, &p, NULL), 0);
  assert_int_equal(uvchan_task_cancel(&ref), 0);
  RUN(f);
  assert_int_equal(p.first, UV_ECANCELED); /* the buffer had room: still refused */
  assert_int_equal(uvchan_len(&ch), 0);
  assert_int_equal(p.ended, 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void self_canceller(void* arg) {
  probe_t* p = arg;
  uvchan_task_ref_t me;
  assert_int_equal(uvchan_task_ref_self(&me), 0);
  assert_int_equal(uvchan_task_cancelled(), 0);
  assert_int_equal(uvchan_task_cancel(&me), 0);
  p->first = uvchan_task_yield();
  check_later(p);
}

static void test_task_cancels_itself(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  probe_t p;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 4), 0);
  p = (probe_t){&ch, NULL, 1, 1, 0};
  assert_int_equal(uvchan_task_spawn(&f->ctx, self_canceller, &p, NULL), 0);
  RUN(f);
  assert_int_equal(p.first, UV_ECANCELED);
  assert_int_equal(p.ended, 1);
  assert_int_equal(uvchan_task_cancelled(), 0); /* outside a task */
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A server ends one connection's task from elsewhere: here, from another task. */
typedef struct {
  uvchan_task_ref_t victim;
  int code;
} killer_t;

static void killer(void* arg) {
  killer_t* k = arg;
  k->code = uvchan_task_cancel(&k->victim);
}

static void test_task_cancelled_by_another_task(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  probe_t p;
  killer_t k;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  p = (probe_t){&ch, NULL, 1, 1, 0};
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &k.victim, parked_recv, &p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, killer, &k, NULL), 0);
  RUN(f);
  assert_int_equal(k.code, 0);
  assert_int_equal(p.first, UV_ECANCELED);
  assert_int_equal(p.ended, 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A reference to an ended task stays safe while its stack is reused by a new task. */
static void quick(void* arg) {
  (void)arg;
}

static void test_task_ref_of_ended_task_names_no_task(void** state) {
  fixture_t* f = FX(state);
  uvchan_task_ref_t old, young;
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &old, quick, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(uvchan_task_alive(&old), 0);
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &young, parked_nil, &(probe_t){0}, NULL), 0);
  assert_ptr_equal(young.task, old.task); /* the same stack, reused */
  assert_int_equal(uvchan_task_alive(&old), 0);
  assert_int_equal(uvchan_task_cancel(&old), UV_ESRCH);
  assert_int_equal(uvchan_task_alive(&young), 1);
  RUN(f);
  assert_int_equal(uvchan_task_cancel(&young), 0);
  RUN(f);
  assert_int_equal(uvchan_task_alive(&young), 0);
}

/* ---- cooperative budget ---- */

static int timer_fired;
static void on_timer(uv_timer_t* t) {
  (void)t;
  timer_fired = 1;
}

/* A task whose operations always complete at once (it sends to and receives from its own
 * buffered channel) must not keep a due timer from firing. */
static long spins;
static uv_timer_t* spin_timer;
static void spinner(void* arg) {
  uvchan_t* ch = arg;
  int v = 1;
  spins = 0;
  /* Started here, not before the loop runs: a slow first iteration (valgrind on a busy machine)
   * would let it fire before the task ever spun. */
  assert_int_equal(uv_timer_start(spin_timer, on_timer, 1, 0), 0);
  while (!timer_fired) {
    assert_int_equal(uvchan_task_send(ch, &v), 0);
    assert_int_equal(uvchan_task_recv(ch, &v), 0);
    spins++;
  }
}

static void test_task_coop_budget_lets_timers_run(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uv_timer_t timer;
  timer_fired = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  assert_int_equal(uv_timer_init(&f->loop, &timer), 0);
  spin_timer = &timer;
  assert_int_equal(uvchan_task_spawn(&f->ctx, spinner, &ch, NULL), 0);
  RUN(f); /* without the budget this never returns */
  assert_int_equal(timer_fired, 1);
  assert_true(spins > 0);
  uv_close((uv_handle_t*)&timer, NULL);
  RUN(f);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* The budget yields to other ready tasks: two spinners interleave in runs of at most the budget. */
static int trace_buf[4096], trace_n;
static void budget_spinner(void* arg) {
  uvchan_t* ch = arg;
  int v = 1, me = uvchan_task_id(uvchan_task_self()) & 1;
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(uvchan_task_send(ch, &v), 0);
    if (trace_n < 4096)
      trace_buf[trace_n++] = me;
  }
}

static void test_task_coop_budget_interleaves_tasks(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  int run = 1, longest = 1;
  trace_n = 0;
  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 100000), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 100000), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, budget_spinner, &a, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, budget_spinner, &b, NULL), 0);
  RUN(f);
  assert_int_equal(trace_n, 2000);
  for (int i = 1; i < trace_n; i++) {
    run = trace_buf[i] == trace_buf[i - 1] ? run + 1 : 1;
    if (run > longest)
      longest = run;
  }
  assert_true(longest <= UVCHAN_TASK_BUDGET);
  assert_true(longest >= UVCHAN_TASK_BUDGET - 1); /* and the budget is not smaller either */
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
}

/* ---- nil channels ---- */

static void nil_sender(void* arg) {
  int* out = arg;
  int v = 1;
  *out = uvchan_task_send_timeout(NULL, &v, 5); /* blocks until its deadline */
}

static void test_task_nil_channel_blocks_until_deadline(void** state) {
  fixture_t* f = FX(state);
  int code = 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, nil_sender, &code, NULL), 0);
  RUN(f);
  assert_int_equal(code, UV_ETIMEDOUT);
}

static void test_task_nil_channel_shows_in_report(void** state) {
  fixture_t* f = FX(state);
  probe_t p = {NULL, NULL, 1, 1, 0};
  uvchan_t ch;
  uvchan_task_ref_t ref;
  uvchan_task_attr_t attr = {.name = "stuck"};
  char buf[512] = {0};
  FILE* mem;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  p.ch = &ch;
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, parked_nil, &p, &attr), 0);
  assert_int_equal(RUN(f), 0); /* nothing can wake it: the run ends */
  mem = fmemopen(buf, sizeof(buf), "w");
  assert_non_null(mem);
  assert_int_equal(uvchan_ctx_report(&f->ctx, mem), 1);
  fclose(mem);
  assert_non_null(strstr(buf, "task \"stuck\""));
  assert_non_null(strstr(buf, "receive from a nil channel (blocks forever)"));
  assert_int_equal(uvchan_task_cancel(&ref), 0);
  RUN(f);
  assert_int_equal(p.first, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* ---- bad input ---- */

static void test_task_cancel_bad_refs(void** state) {
  uvchan_task_ref_t zero = {NULL, 0};
  (void)state;
  assert_int_equal(uvchan_task_cancel(NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_cancel(&zero), UV_EINVAL);
  assert_int_equal(uvchan_task_alive(NULL), 0);
  assert_int_equal(uvchan_task_alive(&zero), 0);
  assert_int_equal(uvchan_task_ref_self(NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_ref_self(&zero), UV_EINVAL); /* outside a task */
  assert_int_equal(uvchan_task_spawn_ref(CTX, NULL, NULL, NULL, NULL), UV_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_task_cancel_ends_every_kind_of_wait),
      TEST(test_task_cancel_after_match_keeps_the_real_outcome),
      TEST(test_task_cancel_before_start),
      TEST(test_task_cancels_itself),
      TEST(test_task_cancelled_by_another_task),
      TEST(test_task_ref_of_ended_task_names_no_task),
      TEST(test_task_coop_budget_lets_timers_run),
      TEST(test_task_coop_budget_interleaves_tasks),
      TEST(test_task_nil_channel_blocks_until_deadline),
      TEST(test_task_nil_channel_shows_in_report),
      TEST(test_task_cancel_bad_refs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
