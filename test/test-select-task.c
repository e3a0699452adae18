/* Select from tasks, and timer channels (after, ticker, reset). */
#include "test-helpers.h"

static uvchan_ctx_t* CTX;
static int ran;

/* TestSelectStress: 4 channels, each with a sender task and a receiver task doing selects in
 * which cases are switched off (NULL) once their quota is done. */
enum { STRESS_N = 20000 };
static uvchan_t sc[4];

static void stress_sender(void* arg) {
  int sent[4] = {0, 0, 0, 0}, v = 0;
  uvchan_case_t c[4];
  (void)arg;
  for (;;) {
    int live = 0;
    for (int i = 0; i < 4; i++) {
      c[i] = (uvchan_case_t)UVCHAN_CASE_SEND(sent[i] < STRESS_N ? &sc[i] : NULL, &v);
      live += sent[i] < STRESS_N;
    }
    if (!live)
      break;
    int idx = uvchan_task_select(c, 4, NULL);
    assert_true(idx >= 0 && idx < 4);
    sent[idx]++;
    v++;
  }
}

static long stress_got[4];
static void stress_receiver(void* arg) {
  uvchan_case_t c[4];
  int v;
  (void)arg;
  for (;;) {
    int live = 0;
    for (int i = 0; i < 4; i++) {
      c[i] = (uvchan_case_t)UVCHAN_CASE_RECV(stress_got[i] < STRESS_N ? &sc[i] : NULL, &v);
      live += stress_got[i] < STRESS_N;
    }
    if (!live)
      break;
    int st;
    int idx = uvchan_task_select(c, 4, &st);
    assert_int_equal(st, 0);
    stress_got[idx]++;
  }
}

static void test_select_task_stress(void** state) {
  fixture_t* f = FX(state);
  size_t caps[4] = {0, 1, 3, 10};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(uvchan_init(&f->ctx, &sc[i], sizeof(int), caps[i]), 0);
    stress_got[i] = 0;
  }
  assert_int_equal(uvchan_task_spawn(&f->ctx, stress_sender, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, stress_receiver, NULL, NULL), 0);
  RUN(f);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(stress_got[i], STRESS_N);
    assert_int_equal(uvchan_destroy(&sc[i]), 0);
  }
}

/* select7: a blocked select is completed by a plain send, a plain receive, or another select. */
static uvchan_t s7;
static void s7_recv_select(void* arg) {
  int v = 0, st;
  uvchan_case_t c[2] = {UVCHAN_CASE_RECV(&s7, &v), UVCHAN_CASE_RECV(NULL, &v)};
  (void)arg;
  assert_int_equal(uvchan_task_select(c, 2, &st), 0);
  assert_int_equal(v, 77);
  ran++;
}
static void s7_send_plain(void* arg) {
  int v = 77;
  (void)arg;
  assert_int_equal(uvchan_task_send(&s7, &v), 0);
}
static void s7_send_select(void* arg) {
  int v = 77;
  uvchan_case_t c[1] = {UVCHAN_CASE_SEND(&s7, &v)};
  (void)arg;
  assert_int_equal(uvchan_task_select(c, 1, NULL), 0);
}

static void test_select_task_select7(void** state) {
  fixture_t* f = FX(state);
  ran = 0;
  assert_int_equal(uvchan_init(&f->ctx, &s7, sizeof(int), 0), 0);
  /* receiving select first, then a plain send */
  uvchan_task_spawn(&f->ctx, s7_recv_select, NULL, NULL);
  uvchan_task_spawn(&f->ctx, s7_send_plain, NULL, NULL);
  RUN(f);
  /* plain send first, then the select */
  uvchan_task_spawn(&f->ctx, s7_send_plain, NULL, NULL);
  uvchan_task_spawn(&f->ctx, s7_recv_select, NULL, NULL);
  RUN(f);
  /* select against select */
  uvchan_task_spawn(&f->ctx, s7_recv_select, NULL, NULL);
  uvchan_task_spawn(&f->ctx, s7_send_select, NULL, NULL);
  RUN(f);
  assert_int_equal(ran, 3);
  assert_int_equal(uvchan_destroy(&s7), 0);
}

/* Timeout pattern: a slow reply against a deadline. The reply comes only after the asker has
 * given up (it closes `asked`), so no deadline races it however loaded the machine is. */
static uvchan_t asked;

static void slow_reply(void* arg) {
  int v = 1;
  uvchan_task_recv(&asked, NULL); /* UV_EOF once the asker is done */
  uvchan_task_send(arg, &v);      /* nobody listens any more: cancelled at teardown */
}

/* Static: the timer's uv handle closes after the task has returned. */
static uvchan_timer_t after;

static void asker(void* arg) {
  uvchan_t* reply = arg;
  int v = 0, st;
  assert_int_equal(uvchan_timer_after(CTX, &after, 10), 0);
  uint64_t tv;
  uvchan_case_t c[2] = {UVCHAN_CASE_RECV(reply, &v), UVCHAN_CASE_RECV(&after.chan, &tv)};
  assert_int_equal(uvchan_task_select(c, 2, &st), 1); /* the timer wins */
  assert_int_equal(st, 0);
  /* and the timeout variant of select */
  assert_int_equal(uvchan_task_select_timeout(c, 1, 5, &st), UV_ETIMEDOUT);
  /* after() sent its one value and stays open, as Go's time.After: no case is ready forever */
  assert_int_equal(uvchan_task_recv_timeout(&after.chan, &tv, 5), UV_ETIMEDOUT);
  uvchan_timer_close(&after, NULL);
  uvchan_close(&asked);
  ran = 1;
}

static void test_select_task_timeout_pattern(void** state) {
  fixture_t* f = FX(state);
  uvchan_t reply;
  CTX = &f->ctx;
  ran = 0;
  assert_int_equal(uvchan_init(&f->ctx, &reply, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &asked, 0, 0), 0);
  uvchan_task_spawn(&f->ctx, asker, &reply, NULL);
  uvchan_task_spawn(&f->ctx, slow_reply, &reply, NULL);
  RUN(f);
  assert_int_equal(ran, 1);
  assert_int_equal(uvchan_waiting_senders(&reply), 1); /* the late reply still waits */
  assert_int_equal(uvchan_destroy(&reply), 0);
  assert_int_equal(uvchan_destroy(&asked), 0);
  RUN(f);
}

/* Select with a default in a task, and a deadline-only select (all cases switched off). */
static void defaults(void* arg) {
  uvchan_t* ch = arg;
  int v;
  uvchan_case_t c[1] = {UVCHAN_CASE_RECV(ch, &v)};
  assert_int_equal(uvchan_try_select(c, 1, NULL), UV_EAGAIN);
  c[0].chan = NULL;
  assert_int_equal(uvchan_task_select_timeout(c, 1, 3, NULL), UV_ETIMEDOUT);
  ran = 1;
  /* select {}: blocks forever, as in Go, until the task is cancelled */
  assert_int_equal(uvchan_task_select(c, 1, NULL), UV_ECANCELED);
  ran = 2;
}

static void test_select_task_default_and_nil(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  ran = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  uvchan_task_ref_t ref;
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, defaults, &ch, NULL), 0);
  RUN(f); /* the run ends: the task waits forever, and nothing else can happen */
  assert_int_equal(ran, 1);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 1);
  assert_int_equal(uvchan_task_cancel(&ref), 0);
  RUN(f);
  assert_int_equal(ran, 2);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* Quit channel: a worker that stops when `done` closes. */
static long work_done;
static void quitter_worker(void* arg) {
  uvchan_t* done = arg;
  uvchan_case_t c[1] = {UVCHAN_CASE_RECV(done, NULL)};
  for (;;) {
    if (uvchan_try_select(c, 1, NULL) == 0)
      return; /* done is closed */
    work_done++;
    uvchan_task_sleep(1);
  }
}

static void test_select_task_quit_channel(void** state) {
  fixture_t* f = FX(state);
  uvchan_t done;
  uvchan_timer_t t;
  uint64_t tv;
  work_done = 0;
  assert_int_equal(uvchan_init(&f->ctx, &done, 0, 0), 0);
  uvchan_task_spawn(&f->ctx, quitter_worker, &done, NULL);
  assert_int_equal(uvchan_timer_after(&f->ctx, &t, 20), 0);
  while (uvchan_try_recv(&t.chan, &tv) != 0)
    uv_run(&f->loop, UV_RUN_ONCE);
  uvchan_close(&done);
  RUN(f);
  assert_true(work_done > 0);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 0);
  uvchan_timer_close(&t, NULL);
  assert_int_equal(uvchan_destroy(&done), 0);
  RUN(f);
}

static void stop_self(uv_timer_t* t) {
  uv_timer_stop(t);
}

/* Ticker: drops ticks while the receiver lags, and stops. */
static void test_select_task_ticker_drops_and_stops(void** state) {
  fixture_t* f = FX(state);
  uvchan_timer_t tick;
  uv_timer_t stop;
  uint64_t tv;
  int n = 0;
  assert_int_equal(uvchan_timer_ticker(&f->ctx, &tick, 2), 0);
  uv_timer_init(&f->loop, &stop);
  uv_timer_start(&stop, stop_self, 30, 0);
  /* Nobody receives for 30 ms: ~15 ticks fire but the channel keeps one. */
  while (uv_is_active((uv_handle_t*)&stop))
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(uvchan_len(&tick.chan), 1);
  while (uvchan_try_recv(&tick.chan, &tv) == 0)
    n++;
  assert_int_equal(n, 1);
  assert_int_equal(uvchan_timer_stop(&tick), 0);
  RUN(f); /* a stopped ticker keeps the loop alive no more */
  assert_int_equal(uvchan_len(&tick.chan), 0);
  uv_close((uv_handle_t*)&stop, NULL);
  assert_int_equal(uvchan_timer_close(&tick, NULL), 0);
  RUN(f);
}

/* Reset (Go 1.23's Timer.Reset): an "after" timer due far away, reset while a task waits on it,
 * fires once at the new time; the waiting receive gets exactly that one tick, and the run ends
 * (a fired "after" timer keeps the loop alive no more). */
static uint64_t reset_ticks[4];
static int reset_got, reset_rc;

static void reset_receiver(void* arg) {
  uvchan_timer_t* t = arg;
  uint64_t tv = 0;
  assert_int_equal(uvchan_task_recv(&t->chan, &tv), 0);
  reset_ticks[reset_got++] = tv;
  /* No second tick: the reset re-armed the one-shot timer once. */
  reset_rc = uvchan_task_recv_timeout(&t->chan, &tv, 20);
}

static void test_timer_reset_running_after_fires_once(void** state) {
  fixture_t* f = FX(state);
  uvchan_timer_t t;
  uint64_t reset_at;
  reset_got = 0;
  reset_rc = 1;
  assert_int_equal(uvchan_timer_after(&f->ctx, &t, 3600 * 1000), 0); /* an hour: never on its own */
  assert_int_equal(uvchan_task_spawn(&f->ctx, reset_receiver, &t, NULL), 0);
  while (uvchan_waiting_receivers(&t.chan) == 0)
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 1);
  uv_update_time(&f->loop);
  reset_at = uv_now(&f->loop);
  assert_int_equal(uvchan_timer_reset(&t, 2), 0);
  assert_int_equal(uvchan_waiting_receivers(&t.chan), 1); /* waiting receivers keep waiting */
  assert_int_equal(RUN(f), 0); /* ends: the hour-long first arming is gone */
  assert_int_equal(reset_got, 1);
  assert_int_equal(reset_rc, UV_ETIMEDOUT);
  assert_true(reset_ticks[0] >= reset_at + 2); /* the tick carries the loop time it fired at */
  assert_int_equal(uvchan_len(&t.chan), 0);
  assert_int_equal(uvchan_timer_close(&t, NULL), 0);
  RUN(f);
}

/* A tick sent but not received is dropped by the reset (no stale value after it), and the timer
 * then fires once more; a stopped timer is live too, and a reset re-arms it. */
static void test_timer_reset_drops_unreceived_tick(void** state) {
  fixture_t* f = FX(state);
  uvchan_timer_t t;
  uint64_t tv, reset_at;
  assert_int_equal(uvchan_timer_after(&f->ctx, &t, 1), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_len(&t.chan), 1); /* fired, nobody received */
  reset_at = uv_now(&f->loop);
  assert_int_equal(uvchan_timer_reset(&t, 3), 0);
  assert_int_equal(uvchan_len(&t.chan), 0); /* the stale tick is gone at once */
  assert_int_equal(uvchan_try_recv(&t.chan, &tv), UV_EAGAIN);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_try_recv(&t.chan, &tv), 0); /* exactly one new tick */
  assert_true(tv >= reset_at + 3);
  assert_int_equal(uvchan_try_recv(&t.chan, &tv), UV_EAGAIN);

  /* Fired and received: a reset arms it again. */
  assert_int_equal(uvchan_timer_reset(&t, 1), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_len(&t.chan), 1);

  /* Stopped before it fires (the stop keeps the tick it holds; the reset drops it), then reset:
   * a stopped timer is still live, and the reset starts its clock again. */
  assert_int_equal(uvchan_timer_stop(&t), 0);
  assert_int_equal(uvchan_len(&t.chan), 1);
  assert_int_equal(uvchan_timer_reset(&t, 3600 * 1000), 0);
  assert_int_equal(uvchan_len(&t.chan), 0);
  assert_int_equal(uvchan_timer_stop(&t), 0);
  assert_int_equal(RUN(f), 0); /* a stopped timer does not hold the loop */
  assert_int_equal(uvchan_len(&t.chan), 0);
  assert_int_equal(uvchan_timer_reset(&t, 1), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_try_recv(&t.chan, &tv), 0);
  assert_int_equal(uvchan_try_recv(&t.chan, &tv), UV_EAGAIN);
  assert_int_equal(uvchan_timer_close(&t, NULL), 0);
  assert_int_equal(uvchan_timer_reset(&t, 1), UV_EINVAL); /* closing */
  RUN(f);
}

/* A ticker reset: its pending tick is dropped and it ticks every new period from now on. */
static void ticker_reset_receiver(void* arg) {
  uvchan_timer_t* t = arg;
  uint64_t tv = 0;
  while (reset_got < 3) {
    assert_int_equal(uvchan_task_recv(&t->chan, &tv), 0);
    reset_ticks[reset_got++] = tv;
  }
  assert_int_equal(uvchan_timer_stop(t), 0);
}

static void test_timer_reset_ticker(void** state) {
  fixture_t* f = FX(state);
  uvchan_timer_t t;
  uint64_t tv, reset_at;
  reset_got = 0;
  assert_int_equal(uvchan_timer_ticker(&f->ctx, &t, 1), 0);
  while (uvchan_len(&t.chan) == 0)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(uvchan_timer_reset(&t, 3600 * 1000), 0); /* slow it down to an hour */
  assert_int_equal(uvchan_len(&t.chan), 0);                   /* the pending tick is dropped */
  assert_int_equal(uvchan_try_recv(&t.chan, &tv), UV_EAGAIN);
  assert_int_equal(uvchan_task_spawn(&f->ctx, ticker_reset_receiver, &t, NULL), 0);
  while (uvchan_waiting_receivers(&t.chan) == 0)
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 1);
  uv_update_time(&f->loop);
  reset_at = uv_now(&f->loop);
  assert_int_equal(uvchan_timer_reset(&t, 2), 0); /* and fast again: the task gets its 3 ticks */
  assert_int_equal(RUN(f), 0); /* ends once the task stopped the ticker */
  assert_int_equal(reset_got, 3);
  assert_true(reset_ticks[0] >= reset_at + 2);
  assert_true(reset_ticks[1] > reset_ticks[0] && reset_ticks[2] > reset_ticks[1]);
  assert_int_equal(uvchan_timer_close(&t, NULL), 0);
  RUN(f);
}

/* A task's select whose channel is destroyed while it waits returns that case's index with
 * UV_ECANCELED in *status (a negative return is only for the select itself: deadline, cancel);
 * the same with a deadline pending. */
static uvchan_t dsel[3];
static int dsel_idx[2], dsel_st[2];

static void dsel_waiter(void* arg) {
  int k = (int)(intptr_t)arg, v = 5;
  uvchan_case_t c[3] = {UVCHAN_CASE_RECV(&dsel[0], &v), UVCHAN_CASE_SEND(&dsel[1], &v),
                        UVCHAN_CASE_RECV(&dsel[2], &v)};
  if (k == 0)
    dsel_idx[k] = uvchan_task_select(c, 3, &dsel_st[k]);
  else
    dsel_idx[k] = uvchan_task_select_timeout(c, 3, 3600 * 1000, &dsel_st[k]);
}

static void test_select_task_destroy_reports_the_case(void** state) {
  fixture_t* f = FX(state);
  for (int which = 0; which < 3; which++) {
    for (int i = 0; i < 3; i++)
      assert_int_equal(uvchan_init(&f->ctx, &dsel[i], sizeof(int), 0), 0);
    for (int k = 0; k < 2; k++) {
      dsel_idx[k] = -100;
      dsel_st[k] = 1;
      assert_int_equal(uvchan_task_spawn(&f->ctx, dsel_waiter, (void*)(intptr_t)k, NULL), 0);
    }
    /* Both park: nothing can complete a case (NOWAIT: the hour-long deadline holds the loop). */
    while (uvchan_waiting_receivers(&dsel[0]) < 2)
      assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 1);
    assert_int_equal(dsel_idx[0] + dsel_idx[1], -200);
    assert_int_equal(uvchan_destroy(&dsel[which]), 0);
    assert_int_equal(RUN(f), 0); /* the deadline of the second one is gone with its wait */
    for (int k = 0; k < 2; k++) {
      assert_int_equal(dsel_idx[k], which);
      assert_int_equal(dsel_st[k], UV_ECANCELED);
    }
    for (int i = 0; i < 3; i++)
      if (i != which) {
        assert_int_equal(uvchan_waiting_receivers(&dsel[i]) + uvchan_waiting_senders(&dsel[i]),
                         0);
        assert_int_equal(uvchan_destroy(&dsel[i]), 0);
      }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_select_task_stress),
      TEST(test_select_task_select7),
      TEST(test_select_task_timeout_pattern),
      TEST(test_select_task_default_and_nil),
      TEST(test_select_task_quit_channel),
      TEST(test_select_task_ticker_drops_and_stops),
      TEST(test_timer_reset_running_after_fires_once),
      TEST(test_timer_reset_drops_unreceived_tick),
      TEST(test_timer_reset_ticker),
      TEST(test_select_task_destroy_reports_the_case),
  };
  return cmocka_run_group_tests_name("select-task", tests, NULL, NULL);
}
