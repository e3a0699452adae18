/* Tasks, with the ideas of Go's channel tests (runtime/chan_test.go, test/chan) ported to them. */

#include <stdio.h>

#include "test-helpers.h"

static uvchan_ctx_t* CTX; /* the running test's context, for task bodies */

/* ---- basics ---- */

static int ran;
static void set_ran(void* arg) {
  ran += (int)(intptr_t)arg;
}

static void test_task_runs_from_loop_not_inside_spawn(void** state) {
  fixture_t* f = FX(state);
  ran = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, set_ran, (void*)1, NULL), 0);
  assert_int_equal(ran, 0);
  RUN(f);
  assert_int_equal(ran, 1);
}

typedef struct {
  uvchan_t* ch;
  int n;
  long sum;
} prod_t;

static void producer(void* arg) {
  prod_t* p = arg;
  for (int i = 0; i < p->n; i++)
    assert_int_equal(uvchan_task_send(p->ch, &i), 0);
  uvchan_close(p->ch);
}

static void consumer(void* arg) {
  prod_t* p = arg;
  int v, expect = 0;
  while (uvchan_task_recv(p->ch, &v) == 0) {
    assert_int_equal(v, expect); /* FIFO */
    expect++;
    p->sum += v;
  }
}

static void test_task_fifo_buffered_and_unbuffered(void** state) {
  fixture_t* f = FX(state);
  size_t caps[] = {0, 1, 7, 100};
  for (size_t c = 0; c < 4; c++) {
    uvchan_t ch;
    prod_t p = {&ch, 1000, 0};
    assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), caps[c]), 0);
    assert_int_equal(uvchan_task_spawn(&f->ctx, consumer, &p, NULL), 0);
    assert_int_equal(uvchan_task_spawn(&f->ctx, producer, &p, NULL), 0);
    RUN(f);
    assert_int_equal(p.sum, 999 * 1000 / 2);
    assert_int_equal(uvchan_destroy(&ch), 0);
  }
}

/* A buffered send with room completes without leaving the task: a producer fills the buffer in
 * one go before anyone else runs. */
static int fill_order[8], fill_n;
static void filler(void* arg) {
  uvchan_t* ch = arg;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(uvchan_task_send(ch, &i), 0);
    fill_order[fill_n++] = i;
  }
}
static void observer(void* arg) {
  (void)arg;
  fill_order[fill_n++] = 100;
}

static void test_task_buffered_ops_complete_without_switch(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  fill_n = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 4), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, filler, &ch, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, observer, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(fill_n, 5);
  assert_int_equal(fill_order[3], 3);
  assert_int_equal(fill_order[4], 100);
  assert_int_equal(uvchan_len(&ch), 4);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* ---- Go's daisy chain: 10,000 tasks each passing a value one step along ---- */

typedef struct {
  uvchan_t* left;
  uvchan_t* right;
} link_t;

static void whisper(void* arg) {
  link_t* l = arg;
  int v;
  assert_int_equal(uvchan_task_recv(l->right, &v), 0);
  v++;
  assert_int_equal(uvchan_task_send(l->left, &v), 0);
}

static int chain_result;
static void chain_main(void* arg) {
  enum { N = 10000 };
  uvchan_t* chans = calloc(N + 1, sizeof(uvchan_t));
  link_t* links = calloc(N, sizeof(link_t));
  uvchan_task_attr_t attr = {.stack_size = 16 * 1024};
  int one = 1;
  (void)arg;
  for (int i = 0; i <= N; i++)
    assert_int_equal(uvchan_init(CTX, &chans[i], sizeof(int), 0), 0);
  for (int i = 0; i < N; i++) {
    links[i] = (link_t){&chans[i], &chans[i + 1]};
    assert_int_equal(uvchan_task_spawn(CTX, whisper, &links[i], &attr), 0);
  }
  assert_int_equal(uvchan_task_send(&chans[N], &one), 0);
  assert_int_equal(uvchan_task_recv(&chans[0], &chain_result), 0);
  for (int i = 0; i <= N; i++)
    uvchan_destroy(&chans[i]);
  free(chans);
  free(links);
}

static void test_task_daisy_chain_10000(void** state) {
  fixture_t* f = FX(state);
  CTX = &f->ctx;
  chain_result = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, chain_main, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(chain_result, 10001);
}

/* ---- the prime sieve ---- */

typedef struct {
  uvchan_t *in, *out;
  int p;
} filt_t;

static void gen(void* arg) {
  for (int i = 2;; i++)
    if (uvchan_task_send(arg, &i) != 0)
      return;
}

static void filt(void* arg) {
  filt_t* f = arg;
  int i;
  while (uvchan_task_recv(f->in, &i) == 0)
    if (i % f->p != 0 && uvchan_task_send(f->out, &i) != 0)
      return;
}

static int primes[100];
static void sieve_main(void* arg) {
  enum { N = 100 };
  uvchan_t chans[N + 1];
  filt_t filts[N];
  (void)arg;
  uvchan_init(CTX, &chans[0], sizeof(int), 0);
  uvchan_task_spawn(CTX, gen, &chans[0], NULL);
  for (int i = 0; i < N; i++) {
    assert_int_equal(uvchan_task_recv(&chans[i], &primes[i]), 0);
    uvchan_init(CTX, &chans[i + 1], sizeof(int), 0);
    filts[i] = (filt_t){&chans[i], &chans[i + 1], primes[i]};
    uvchan_task_spawn(CTX, filt, &filts[i], NULL);
  }
  for (int i = 0; i <= N; i++)
    uvchan_destroy(&chans[i]);
  uvchan_task_yield(); /* the cancelled tasks finish before filts goes out of scope */
}

static void test_task_prime_sieve(void** state) {
  fixture_t* f = FX(state);
  CTX = &f->ctx;
  assert_int_equal(uvchan_task_spawn(&f->ctx, sieve_main, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(primes[0], 2);
  assert_int_equal(primes[9], 29);
  assert_int_equal(primes[99], 541);
}

/* ---- non-blocking operations inside tasks ---- */

static void nonblocking(void* arg) {
  uvchan_t* ch = arg;
  int v = 1, out;
  assert_int_equal(uvchan_try_recv(ch, &out), UV_EAGAIN);
  assert_int_equal(uvchan_try_send(ch, &v), UV_EAGAIN); /* unbuffered, nobody waiting */
  ran = 1;
}

static void test_task_nonblocking_ops(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  ran = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, nonblocking, &ch, NULL), 0);
  RUN(f);
  assert_int_equal(ran, 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* ---- zero-size elements ---- */

static void signaller(void* arg) {
  for (int i = 0; i < 100; i++)
    assert_int_equal(uvchan_task_send(arg, NULL), 0);
  uvchan_close(arg);
}

static void test_task_zero_size_elements(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  prod_t dummy;
  (void)dummy;
  assert_int_equal(uvchan_init(&f->ctx, &ch, 0, 3), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, signaller, &ch, NULL), 0);
  RUN(f); /* the signaller waits with the buffer full */
  int n = 0;
  while (uvchan_try_recv(&ch, NULL) == 0 || (RUN(f), uvchan_try_recv(&ch, NULL) == 0))
    n++;
  assert_int_equal(n, 100);
  assert_int_equal(uvchan_try_recv(&ch, NULL), UV_EOF);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* ---- Go's TestChan matrix, capacities 0..N ---- */

typedef struct {
  uvchan_t* ch;
  int* seen;
  int id;
  int count;
} mat_t;

static void mat_send(void* arg) {
  mat_t* m = arg;
  for (int i = 0; i < m->count; i++) {
    int v = m->id * 1000 + i;
    assert_int_equal(uvchan_task_send(m->ch, &v), 0);
  }
}

static void mat_recv(void* arg) {
  mat_t* m = arg;
  int v;
  while (uvchan_task_recv(m->ch, &v) == 0)
    m->seen[v]++;
}

static int blocked_flag;
static void blocking_recv(void* arg) {
  int v;
  uvchan_task_recv(arg, &v);
  blocked_flag = 1;
}
static void blocking_send(void* arg) {
  int v = 1;
  uvchan_task_send(arg, &v);
  blocked_flag = 1;
}

static void test_task_testchan_matrix(void** state) {
  fixture_t* f = FX(state);
  for (size_t cap = 0; cap < 10; cap++) {
    uvchan_t ch;
    int v, out;
    /* Receive from empty channel blocks. */
    assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), cap), 0);
    blocked_flag = 0;
    uvchan_task_spawn(&f->ctx, blocking_recv, &ch, NULL);
    RUN(f);
    assert_int_equal(blocked_flag, 0);
    v = 1;
    assert_int_equal(uvchan_try_send(&ch, &v), 0); /* unblocks it */
    RUN(f);
    assert_int_equal(blocked_flag, 1);
    /* Send to full channel blocks. */
    for (size_t i = 0; i < cap; i++)
      assert_int_equal(uvchan_try_send(&ch, &v), 0);
    blocked_flag = 0;
    uvchan_task_spawn(&f->ctx, blocking_send, &ch, NULL);
    RUN(f);
    assert_int_equal(blocked_flag, 0);
    assert_int_equal(uvchan_try_recv(&ch, &out), 0);
    RUN(f);
    assert_int_equal(blocked_flag, 1);
    /* Close then drain: the values buffered come out, then EOF. */
    assert_int_equal(uvchan_close(&ch), 0);
    for (size_t i = 0; i < cap; i++)
      assert_int_equal(uvchan_try_recv(&ch, &out), 0);
    assert_int_equal(uvchan_try_recv(&ch, &out), UV_EOF);
    assert_int_equal(uvchan_destroy(&ch), 0);

    /* 4 senders x 4 receivers: each value received exactly once. */
    {
      enum { P = 4, L = 1000 };
      int* seen = calloc(P * 1000, sizeof(int));
      mat_t ms[P], mr[P];
      uvchan_wg_t wg;
      uvchan_task_attr_t attr = {.wg = &wg};
      assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), cap), 0);
      assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
      for (int p = 0; p < P; p++) {
        ms[p] = (mat_t){&ch, seen, p, L};
        mr[p] = (mat_t){&ch, seen, p, L};
        uvchan_task_spawn(&f->ctx, mat_send, &ms[p], &attr);
        uvchan_task_spawn(&f->ctx, mat_recv, &mr[p], NULL);
      }
      /* close once all senders are done */
      while (uvchan_wg_count(&wg) > 0)
        uv_run(&f->loop, UV_RUN_ONCE);
      uvchan_close(&ch);
      RUN(f);
      for (int p = 0; p < P; p++)
        for (int i = 0; i < L; i++)
          assert_int_equal(seen[p * 1000 + i], 1);
      assert_int_equal(uvchan_destroy(&ch), 0);
      free(seen);
    }
  }
}

/* ---- Go's TestMultiConsumer: 23 workers, 271828 items, count and sum match ---- */

typedef struct {
  uvchan_t *q, *r;
} mc_t;

static void mc_worker(void* arg) {
  mc_t* m = arg;
  int v;
  while (uvchan_task_recv(m->q, &v) == 0)
    assert_int_equal(uvchan_task_send(m->r, &v), 0);
}

static long mc_n, mc_s;
static void mc_collect(void* arg) {
  int v;
  while (uvchan_task_recv(arg, &v) == 0) {
    mc_n++;
    mc_s += v;
  }
}

static void mc_main(void* arg) {
  enum { NWORK = 23, NITER = 271828 };
  uvchan_t q, r;
  uvchan_wg_t wg;
  mc_t m = {&q, &r};
  uvchan_task_attr_t attr = {.wg = &wg};
  uvchan_wg_t cwg;
  uvchan_task_attr_t cattr = {.wg = &cwg};
  long expect_s = 0;
  (void)arg;
  uvchan_init(CTX, &q, sizeof(int), NWORK * 3);
  uvchan_init(CTX, &r, sizeof(int), NWORK * 3);
  uvchan_wg_init(CTX, &wg);
  uvchan_wg_init(CTX, &cwg);
  for (int i = 0; i < NWORK; i++)
    uvchan_task_spawn(CTX, mc_worker, &m, &attr);
  uvchan_task_spawn(CTX, mc_collect, &r, &cattr);
  for (int i = 0; i < NITER; i++) {
    int v = i % 1000; /* keep the sum in range, like Go's test does with its values */
    expect_s += v;
    assert_int_equal(uvchan_task_send(&q, &v), 0);
  }
  uvchan_close(&q);
  assert_int_equal(uvchan_task_wg_wait(&wg), 0);
  uvchan_close(&r);
  assert_int_equal(uvchan_task_wg_wait(&cwg), 0);
  assert_int_equal(mc_n, NITER);
  assert_int_equal(mc_s, expect_s);
  uvchan_destroy(&q);
  uvchan_destroy(&r);
}

static void test_task_multi_consumer(void** state) {
  fixture_t* f = FX(state);
  CTX = &f->ctx;
  mc_n = mc_s = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, mc_main, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(mc_n, 271828);
}

/* ---- lifecycle: exit, spawning from callbacks and tasks, teardown with parked tasks ---- */

static void exits_early(void* arg) {
  (*(int*)arg)++;
  uvchan_task_exit();
  (*(int*)arg) += 100; /* never reached */
}

static void waits_for_group(void* arg) {
  uvchan_wg_t* wg = arg;
  assert_int_equal(uvchan_task_wg_wait(wg), 0);
  ran++;
}

static void test_task_exit_while_others_wait_on_it(void** state) {
  fixture_t* f = FX(state);
  uvchan_wg_t wg;
  uvchan_task_attr_t attr = {.name = "quitter", .wg = &wg};
  int counter = 0;
  ran = 0;
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, waits_for_group, &wg, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, exits_early, &counter, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, exits_early, &counter, &attr), 0);
  assert_int_equal(uvchan_wg_count(&wg), 2);
  RUN(f);
  assert_int_equal(counter, 2);
  assert_int_equal(ran, 1);
  assert_int_equal(uvchan_wg_count(&wg), 0);
}

static void spawner(void* arg) {
  uvchan_ctx_t* ctx = arg;
  assert_non_null(uvchan_task_self());
  assert_int_equal(uvchan_task_spawn(ctx, set_ran, (void*)10, NULL), 0);
  assert_int_equal(ran, 0); /* the child runs later, from the loop */
}

static void spawn_from_timer(uv_timer_t* t) {
  assert_int_equal(uvchan_task_spawn(t->data, spawner, t->data, NULL), 0);
}

static void test_task_spawn_from_callbacks_and_tasks(void** state) {
  fixture_t* f = FX(state);
  uv_timer_t timer;
  ran = 0;
  uv_timer_init(&f->loop, &timer);
  timer.data = &f->ctx;
  uv_timer_start(&timer, spawn_from_timer, 1, 0);
  RUN(f);
  assert_int_equal(ran, 10);
  uv_close((uv_handle_t*)&timer, NULL);
  RUN(f);
}

static int cancelled;
static void parked_forever(void* arg) {
  int v;
  if (uvchan_task_recv(arg, &v) == UV_ECANCELED)
    cancelled++;
}

/* Each waiting operation names its task, and the request leads back to the same task. */
static int walked;
static void check_waiting(const uvchan_waiting_t* w, void* arg) {
  assert_ptr_equal(w->chan, arg);
  assert_int_equal(w->op, UVCHAN_OP_RECV);
  assert_non_null(w->task);
  assert_string_equal(uvchan_task_name(w->task), "parked");
  assert_ptr_equal(uvchan_req_task(w->req), w->task);
  assert_int_equal(w->req->type, UVCHAN_REQ_RECV);
  walked++;
}

static void test_task_teardown_with_parked_tasks(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_task_attr_t attr = {.name = "parked"};
  cancelled = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  for (int i = 0; i < 100; i++)
    assert_int_equal(uvchan_task_spawn(&f->ctx, parked_forever, &ch, &attr), 0);
  RUN(f);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 100);
  walked = 0;
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, check_waiting, &ch), 100);
  assert_int_equal(walked, 100);
  assert_int_equal(uvchan_ctx_close(&f->ctx, NULL), UV_EBUSY); /* tasks live */
  assert_int_equal(uvchan_destroy(&ch), 0);
  RUN(f);
  assert_int_equal(cancelled, 100);
}

static long slept_ms;
static void sleeper(void* arg) {
  uv_loop_t* loop = arg;
  uint64_t t0 = uv_now(loop);
  assert_int_equal(uvchan_task_sleep(15), 0);
  slept_ms = (long)(uv_now(loop) - t0);
}

static void test_task_sleep(void** state) {
  fixture_t* f = FX(state);
  assert_int_equal(uvchan_task_spawn(&f->ctx, sleeper, &f->loop, NULL), 0);
  RUN(f);
  assert_true(slept_ms >= 15);
}

static char yield_log[16];
static int yield_n;
static void yielder(void* arg) {
  for (int i = 0; i < 3; i++) {
    yield_log[yield_n++] = *(char*)arg;
    assert_int_equal(uvchan_task_yield(), 0);
  }
}

static void test_task_yield_round_robin(void** state) {
  fixture_t* f = FX(state);
  yield_n = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, yielder, "a", NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, yielder, "b", NULL), 0);
  RUN(f);
  yield_log[yield_n] = 0;
  assert_string_equal(yield_log, "ababab");
}

/* Handover: a parking task switches straight to the next task in the completion queue, but
 * only when that task is the queue's head; a callback ahead of it runs first, from the loop. */
static char order_log[16];
static int order_n;
static uvchan_t order_ch;
static void order_task(void* arg) {
  order_log[order_n++] = *(char*)arg;
}
static void order_recv_cb(uvchan_recv_t* req, int status) {
  (void)req;
  assert_int_equal(status, 0);
  order_log[order_n++] = 'x';
}

static void test_task_handover_keeps_completion_order(void** state) {
  fixture_t* f = FX(state);
  uvchan_recv_t r;
  long v = 7;
  order_n = 0;
  assert_int_equal(uvchan_init(&f->ctx, &order_ch, sizeof(long), 0), 0);
  assert_int_equal(uvchan_recv(&r, &order_ch, &v, order_recv_cb), 0);
  /* Queue: task a, the callback (completed by the try-send), task b. */
  assert_int_equal(uvchan_task_spawn(&f->ctx, order_task, "a", NULL), 0);
  assert_int_equal(uvchan_try_send(&order_ch, &v), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, order_task, "b", NULL), 0);
  RUN(f);
  order_log[order_n] = 0;
  assert_string_equal(order_log, "axb");
  assert_int_equal(uvchan_destroy(&order_ch), 0);
}

/* Two tasks that hand over to each other still share the loop's batch: a zero-delay timer armed
 * before them fires long before their 10000 round trips end. */
static uvchan_t hb_a, hb_b;
static long hb_rounds, hb_round_at_timer;
static void hb_ping(void* arg) {
  long v = 0;
  (void)arg;
  for (hb_rounds = 0; hb_rounds < 10000; hb_rounds++) {
    assert_int_equal(uvchan_task_send(&hb_a, &v), 0);
    assert_int_equal(uvchan_task_recv(&hb_b, &v), 0);
  }
  uvchan_close(&hb_a);
}
static void hb_pong(void* arg) {
  long v;
  (void)arg;
  while (uvchan_task_recv(&hb_a, &v) == 0)
    assert_int_equal(uvchan_task_send(&hb_b, &v), 0);
}
static void hb_timer_cb(uv_timer_t* t) {
  (void)t;
  hb_round_at_timer = hb_rounds;
}

static void test_task_handover_shares_the_batch(void** state) {
  fixture_t* f = FX(state);
  uv_timer_t timer;
  hb_round_at_timer = -1;
  assert_int_equal(uvchan_ctx_set_batch(&f->ctx, 64), 0);
  assert_int_equal(uvchan_init(&f->ctx, &hb_a, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &hb_b, sizeof(long), 0), 0);
  assert_int_equal(uv_timer_init(&f->loop, &timer), 0);
  assert_int_equal(uv_timer_start(&timer, hb_timer_cb, 0, 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, hb_pong, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, hb_ping, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(hb_rounds, 10000);
  /* 4 resumptions per round trip, 64 per loop iteration: the timer waits at most a few. */
  assert_true(hb_round_at_timer >= 0 && hb_round_at_timer < 100);
  uv_close((uv_handle_t*)&timer, NULL);
  RUN(f);
  assert_int_equal(uvchan_destroy(&hb_a), 0);
  assert_int_equal(uvchan_destroy(&hb_b), 0);
}

/* A task yielding with nothing else ready carries on at once, yet the loop still runs once per
 * batch: a check handle counts the iterations. */
static int yield_iterations;
static void yield_check_cb(uv_check_t* c) {
  (void)c;
  yield_iterations++;
}
static void lone_yielder(void* arg) {
  uv_check_t* c = arg;
  for (int i = 0; i < 100; i++)
    assert_int_equal(uvchan_task_yield(), 0);
  uv_check_stop(c);
}

static void test_task_lone_yield_still_lets_loop_run(void** state) {
  fixture_t* f = FX(state);
  uv_check_t check;
  yield_iterations = 0;
  assert_int_equal(uvchan_ctx_set_batch(&f->ctx, 10), 0);
  assert_int_equal(uv_check_init(&f->loop, &check), 0);
  assert_int_equal(uv_check_start(&check, yield_check_cb), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, lone_yielder, &check, NULL), 0);
  RUN(f);
  /* 101 resumptions (start + 100 yields) at 10 per iteration. */
  assert_true(yield_iterations >= 10);
  uv_close((uv_handle_t*)&check, NULL);
  RUN(f);
}

/* A task that exits from nested calls never unwinds its frames; the next task on its stack
 * must start clean (under AddressSanitizer the dead frames' redzones stayed poisoned). */
static int deep_exits, fresh_runs;
static void deep_exit(int depth) {
  volatile char pad[256];
  pad[0] = (char)depth;
  if (depth > 0) {
    deep_exit(depth - 1);
  } else {
    deep_exits++;
    uvchan_task_exit();
  }
  (void)pad[0];
}
static void exit_deep_task(void* arg) {
  (void)arg;
  deep_exit(8);
}
static void fresh_task(void* arg) {
  volatile char buf[4096];
  (void)arg;
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[i] = (char)i;
  fresh_runs++;
}

static void test_task_stack_reused_after_exit_from_nested_calls(void** state) {
  fixture_t* f = FX(state);
  deep_exits = fresh_runs = 0;
  for (int i = 0; i < 100; i++)
    assert_int_equal(uvchan_task_spawn(&f->ctx, exit_deep_task, NULL, NULL), 0);
  RUN(f);
  for (int i = 0; i < 100; i++)
    assert_int_equal(uvchan_task_spawn(&f->ctx, fresh_task, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(deep_exits, 100);
  assert_int_equal(fresh_runs, 100);
}

static void named(void* arg) {
  (void)arg;
  assert_string_equal(uvchan_task_name(uvchan_task_self()), "alpha");
  assert_true(uvchan_task_id(uvchan_task_self()) >= 1);
  ran = 1;
}

static void test_task_name_and_id(void** state) {
  fixture_t* f = FX(state);
  uvchan_task_attr_t attr = {.name = "alpha"};
  ran = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, named, NULL, &attr), 0);
  RUN(f);
  assert_int_equal(ran, 1);
}

static void timeout_task(void* arg) {
  int v = 5;
  assert_int_equal(uvchan_task_recv_timeout(arg, &v, 5), UV_ETIMEDOUT);
  assert_int_equal(v, 5);
  assert_int_equal(uvchan_task_send_timeout(arg, &v, 5), UV_ETIMEDOUT);
  ran = 1;
}

static void test_task_deadlines(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  ran = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, timeout_task, &ch, NULL), 0);
  RUN(f);
  assert_int_equal(ran, 1);
  assert_int_equal(uvchan_waiting_senders(&ch) + uvchan_waiting_receivers(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* ---- stacks ---- */

static void park_on(void* arg) {
  int v;
  uvchan_task_recv(arg, &v);
}

static void test_task_100k_parked(void** state) {
  fixture_t* f = FX(state);
  enum { N = 100000 };
  uvchan_t ch;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  for (int i = 0; i < N; i++)
    assert_int_equal(uvchan_task_spawn(&f->ctx, park_on, &ch, NULL), 0);
  RUN(f);
  assert_int_equal(uvchan_waiting_receivers(&ch), N);
  assert_int_equal(uvchan_close(&ch), 0);
  RUN(f);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* ---- a closed, drained channel gives UV_EOF and the zero value (Go's v, ok := <-ch) ---- */

typedef struct {
  int64_t a;
  char b[40];
} big_t;

static const big_t big_zero; /* all bytes 0 */
static int zv_done;

/* The four receiving forms, k = 0..3: recv, recv_timeout, select, select_timeout. Returns the
 * call's status (a select's case status, after checking it named the channel's case). */
static int zv_recv(int k, uvchan_t* ch, big_t* v) {
  int st = 1, idx;
  uvchan_case_t c[2] = {UVCHAN_CASE_RECV(NULL, v), UVCHAN_CASE_RECV(ch, v)};
  switch (k) {
    case 0:
      return uvchan_task_recv(ch, v);
    case 1:
      return uvchan_task_recv_timeout(ch, v, 3600 * 1000);
    case 2:
      idx = uvchan_task_select(c, 2, &st);
      break;
    default:
      idx = uvchan_task_select_timeout(c, 2, 3600 * 1000, &st);
      break;
  }
  assert_int_equal(idx, 1);
  return st;
}

/* On a channel closed with one value left: the value, then each form gets UV_EOF and overwrites
 * the garbage in its destination with the zero value, without waiting. */
static void zv_drained(void* arg) {
  uvchan_t* ch = arg;
  big_t v;
  memset(&v, 0xA5, sizeof(v));
  assert_int_equal(uvchan_task_recv(ch, &v), 0);
  assert_int_equal(v.a, 42);
  for (int k = 0; k < 4; k++) {
    memset(&v, 0xA5, sizeof(v));
    assert_int_equal(zv_recv(k, ch, &v), UV_EOF);
    assert_memory_equal(&v, &big_zero, sizeof(v));
  }
  zv_done++;
}

/* Parked in form k on an empty channel that is then closed: UV_EOF and the zero value too. */
static uvchan_t zv_open;
static void zv_parked(void* arg) {
  big_t v;
  memset(&v, 0xA5, sizeof(v));
  assert_int_equal(zv_recv((int)(intptr_t)arg, &zv_open, &v), UV_EOF);
  assert_memory_equal(&v, &big_zero, sizeof(v));
  zv_done++;
}

static void test_task_recv_closed_gives_zero_value(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  big_t one;
  memset(&one, 0x5A, sizeof(one));
  one.a = 42;
  zv_done = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(big_t), 2), 0);
  assert_int_equal(uvchan_try_send(&ch, &one), 0);
  assert_int_equal(uvchan_close(&ch), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, zv_drained, &ch, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(zv_done, 1);

  assert_int_equal(uvchan_init(&f->ctx, &zv_open, sizeof(big_t), 0), 0);
  for (int k = 0; k < 4; k++)
    assert_int_equal(uvchan_task_spawn(&f->ctx, zv_parked, (void*)(intptr_t)k, NULL), 0);
  while (uvchan_waiting_receivers(&zv_open) < 4) /* NOWAIT: the hour-long deadlines hold the loop */
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 1);
  assert_int_equal(zv_done, 1);
  assert_int_equal(uvchan_close(&zv_open), 0);
  assert_int_equal(RUN(f), 0); /* and the deadlines went with the waits */
  assert_int_equal(zv_done, 5);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_destroy(&zv_open), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_task_runs_from_loop_not_inside_spawn),
      TEST(test_task_fifo_buffered_and_unbuffered),
      TEST(test_task_buffered_ops_complete_without_switch),
      TEST(test_task_daisy_chain_10000),
      TEST(test_task_prime_sieve),
      TEST(test_task_nonblocking_ops),
      TEST(test_task_zero_size_elements),
      TEST(test_task_testchan_matrix),
      TEST(test_task_multi_consumer),
      TEST(test_task_exit_while_others_wait_on_it),
      TEST(test_task_spawn_from_callbacks_and_tasks),
      TEST(test_task_teardown_with_parked_tasks),
      TEST(test_task_sleep),
      TEST(test_task_yield_round_robin),
      TEST(test_task_handover_keeps_completion_order),
      TEST(test_task_handover_shares_the_batch),
      TEST(test_task_lone_yield_still_lets_loop_run),
      TEST(test_task_stack_reused_after_exit_from_nested_calls),
      TEST(test_task_name_and_id),
      TEST(test_task_deadlines),
      TEST(test_task_recv_closed_gives_zero_value),
      TEST(test_task_100k_parked),
  };
  return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
