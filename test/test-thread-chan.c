/* Shared channels: two loops on two threads, threads without a loop, select across both, and
 * the lifetimes of ends. Every loop runs on its own thread with its own context and end. */
#include "test-helpers.h"

typedef struct loop_s {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uv_thread_t thread;
  void (*setup)(struct loop_s*);
  void* arg;
} loop_t;

static void loop_main(void* arg) {
  loop_t* l = arg;
  assert_int_equal(uv_loop_init(&l->loop), 0);
  memset(&l->ctx, 0, sizeof(l->ctx));
  assert_int_equal(uvchan_ctx_init(&l->loop, &l->ctx), 0);
  l->setup(l);
  assert_int_equal(uv_run(&l->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uvchan_ctx_close(&l->ctx, NULL), 0);
  assert_int_equal(uv_run(&l->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&l->loop), 0);
}

static void loops_run(loop_t* ls, int n) {
  for (int i = 0; i < n; i++)
    assert_int_equal(uv_thread_create(&ls[i].thread, loop_main, &ls[i]), 0);
  for (int i = 0; i < n; i++)
    assert_int_equal(uv_thread_join(&ls[i].thread), 0);
}

/* The shared channels of a test, created on the main thread's context (which never runs a loop
 * of its own); each loop attaches ends. */
static uv_loop_t main_loop;
static uvchan_ctx_t main_ctx;

static void main_open(void) {
  assert_int_equal(uv_loop_init(&main_loop), 0);
  memset(&main_ctx, 0, sizeof(main_ctx));
  assert_int_equal(uvchan_ctx_init(&main_loop, &main_ctx), 0);
}

static void main_close(void) {
  assert_int_equal(uvchan_ctx_close(&main_ctx, NULL), 0);
  assert_int_equal(uv_run(&main_loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&main_loop), 0);
}

/* ---- ping-pong between two loops, tasks on both sides ---- */

enum { ROUNDS = 20000 };
static uvchan_t ping, pong;

typedef struct {
  uvchan_t in, out; /* this loop's ends */
  long sum;
  int first;
} pp_t;

static void pp_task(void* arg) {
  pp_t* p = arg;
  long v;
  if (p->first) {
    v = 0;
    assert_int_equal(uvchan_task_send(&p->out, &v), 0);
  }
  for (int i = 0; i < ROUNDS; i++) {
    if (uvchan_task_recv(&p->in, &v) != 0)
      break;
    p->sum += v;
    v++;
    if (p->first && i == ROUNDS - 1)
      break;
    assert_int_equal(uvchan_task_send(&p->out, &v), 0);
  }
  assert_int_equal(uvchan_destroy(&p->in), 0);
  assert_int_equal(uvchan_destroy(&p->out), 0);
}

static void pp_setup(loop_t* l) {
  pp_t* p = l->arg;
  assert_int_equal(uvchan_attach(&l->ctx, &p->in, p->first ? &pong : &ping), 0);
  assert_int_equal(uvchan_attach(&l->ctx, &p->out, p->first ? &ping : &pong), 0);
  assert_int_equal(uvchan_task_spawn(&l->ctx, pp_task, p, NULL), 0);
}

static void test_thread_pingpong_two_loops(void** state) {
  loop_t ls[2];
  pp_t p[2];
  (void)state;
  main_open();
  assert_int_equal(uvchan_init_shared(&main_ctx, &ping, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init_shared(&main_ctx, &pong, sizeof(long), 0), 0);
  memset(p, 0, sizeof(p));
  p[0].first = 1;
  for (int i = 0; i < 2; i++) {
    ls[i].setup = pp_setup;
    ls[i].arg = &p[i];
  }
  loops_run(ls, 2);
  /* side 0 received 1, 3, 5, ...; side 1 received 0, 2, 4, ... */
  assert_int_equal(p[1].sum, (long)ROUNDS * (ROUNDS - 1));
  assert_int_equal(p[0].sum, (long)ROUNDS * ROUNDS);
  assert_int_equal(uvchan_destroy(&ping), 0);
  assert_int_equal(uvchan_destroy(&pong), 0);
  main_close();
}

/* ---- buffered: a producer loop and a consumer loop, FIFO and close ---- */

enum { ITEMS = 200000 };
static uvchan_t pipe_ch;

static void producer_task(void* arg) {
  uvchan_t* end = arg;
  for (long i = 0; i < ITEMS; i++)
    assert_int_equal(uvchan_task_send(end, &i), 0);
  assert_int_equal(uvchan_close(end), 0);
  assert_int_equal(uvchan_destroy(end), 0);
}

static long consumed;
static void consumer_task(void* arg) {
  uvchan_t* end = arg;
  long v, expect = 0;
  int st;
  while ((st = uvchan_task_recv(end, &v)) == 0) {
    assert_int_equal(v, expect); /* FIFO across threads */
    expect++;
  }
  assert_int_equal(st, UV_EOF);
  assert_int_equal(v, 0); /* the zero value */
  consumed = expect;
  assert_int_equal(uvchan_destroy(end), 0);
}

static uvchan_t ends[8];
static void prod_setup(loop_t* l) {
  assert_int_equal(uvchan_attach(&l->ctx, &ends[0], &pipe_ch), 0);
  assert_int_equal(uvchan_task_spawn(&l->ctx, producer_task, &ends[0], NULL), 0);
}
static void cons_setup(loop_t* l) {
  assert_int_equal(uvchan_attach(&l->ctx, &ends[1], &pipe_ch), 0);
  assert_int_equal(uvchan_task_spawn(&l->ctx, consumer_task, &ends[1], NULL), 0);
}

static void test_thread_buffered_fifo_and_close(void** state) {
  loop_t ls[2];
  size_t caps[] = {0, 1, 64};
  (void)state;
  for (size_t c = 0; c < 3; c++) {
    main_open();
    assert_int_equal(uvchan_init_shared(&main_ctx, &pipe_ch, sizeof(long), caps[c]), 0);
    ls[0].setup = prod_setup;
    ls[1].setup = cons_setup;
    consumed = 0;
    loops_run(ls, 2);
    assert_int_equal(consumed, ITEMS);
    assert_int_equal(uvchan_destroy(&pipe_ch), 0);
    main_close();
  }
}

/* ---- threads without a loop: blocking sends into a loop, blocking receives out of it ---- */

enum { PRODUCERS = 4, PER = 5000 };
static uvchan_t in_ch, out_ch;

static void thread_producer(void* arg) {
  long base = (long)(intptr_t)arg * 1000000;
  for (long i = 0; i < PER; i++) {
    long v = base + i;
    assert_int_equal(uvchan_thread_send(&in_ch, &v), 0);
  }
}

static long seen_count;
static unsigned char seen[PRODUCERS][PER];
static void relay_task(void* arg) {
  uvchan_t* e = arg; /* e[0]: in, e[1]: out */
  long v;
  for (long n = 0; n < (long)PRODUCERS * PER; n++) {
    assert_int_equal(uvchan_task_recv(&e[0], &v), 0);
    assert_int_equal(seen[v / 1000000][v % 1000000], 0); /* exactly once */
    seen[v / 1000000][v % 1000000] = 1;
    seen_count++;
    assert_int_equal(uvchan_task_send(&e[1], &v), 0); /* to the receiving threads */
  }
  assert_int_equal(uvchan_close(&e[1]), 0);
  assert_int_equal(uvchan_destroy(&e[0]), 0);
  assert_int_equal(uvchan_destroy(&e[1]), 0);
}

static void relay_setup(loop_t* l) {
  assert_int_equal(uvchan_attach(&l->ctx, &ends[0], &in_ch), 0);
  assert_int_equal(uvchan_attach(&l->ctx, &ends[1], &out_ch), 0);
  assert_int_equal(uvchan_task_spawn(&l->ctx, relay_task, ends, NULL), 0);
}

static long received_by_threads[2];
static void thread_receiver(void* arg) {
  long v, n = 0;
  int st;
  while ((st = uvchan_thread_recv(&out_ch, &v)) == 0)
    n++;
  assert_int_equal(st, UV_EOF);
  received_by_threads[(intptr_t)arg] = n;
}

static void test_thread_foreign_threads_block_on_both_sides(void** state) {
  loop_t relay;
  uv_thread_t prod[PRODUCERS], recv[2];
  (void)state;
  main_open();
  memset(seen, 0, sizeof(seen));
  seen_count = 0;
  assert_int_equal(uvchan_init_shared(&main_ctx, &in_ch, sizeof(long), 16), 0);
  assert_int_equal(uvchan_init_shared(&main_ctx, &out_ch, sizeof(long), 0), 0);
  relay.setup = relay_setup;
  assert_int_equal(uv_thread_create(&relay.thread, loop_main, &relay), 0);
  for (intptr_t i = 0; i < PRODUCERS; i++)
    assert_int_equal(uv_thread_create(&prod[i], thread_producer, (void*)i), 0);
  for (intptr_t i = 0; i < 2; i++)
    assert_int_equal(uv_thread_create(&recv[i], thread_receiver, (void*)i), 0);
  for (int i = 0; i < PRODUCERS; i++)
    assert_int_equal(uv_thread_join(&prod[i]), 0);
  for (int i = 0; i < 2; i++)
    assert_int_equal(uv_thread_join(&recv[i]), 0);
  assert_int_equal(uv_thread_join(&relay.thread), 0);
  assert_int_equal(seen_count, (long)PRODUCERS * PER);
  assert_int_equal(received_by_threads[0] + received_by_threads[1], (long)PRODUCERS * PER);
  assert_int_equal(uvchan_destroy(&in_ch), 0);
  assert_int_equal(uvchan_destroy(&out_ch), 0);
  main_close();
}

/* ---- select: a shared end, a local channel and a deadline in one select, on both sides ---- */

enum { SEL_ROUNDS = 5000 };
static uvchan_t sel_shared;

static void sel_sender(void* arg) {
  uvchan_t* end = arg;
  uvchan_t local;
  long v = 0, got = 0;
  int idx, st, timeouts = 0;
  assert_int_equal(uvchan_init((uvchan_ctx_t*)end->data, &local, sizeof(long), 1), 0);
  for (long i = 0; i < SEL_ROUNDS;) {
    uvchan_case_t c[2] = {UVCHAN_CASE_SEND(end, &v), UVCHAN_CASE_RECV(&local, &got)};
    idx = uvchan_task_select_timeout(c, 2, 1000, &st);
    if (idx == UV_ETIMEDOUT) {
      timeouts++;
      continue;
    }
    assert_int_equal(idx, 0); /* the local channel stays empty */
    assert_int_equal(st, 0);
    v++;
    i++;
  }
  assert_int_equal(uvchan_close(end), 0);
  assert_int_equal(uvchan_destroy(&local), 0);
  assert_int_equal(uvchan_destroy(end), 0);
}

static long sel_sum;
static void sel_receiver(void* arg) {
  uvchan_t* end = arg;
  uvchan_t local;
  long v, other;
  int idx, st;
  assert_int_equal(uvchan_init((uvchan_ctx_t*)end->data, &local, sizeof(long), 0), 0);
  for (;;) {
    uvchan_case_t c[2] = {UVCHAN_CASE_RECV(&local, &other), UVCHAN_CASE_RECV(end, &v)};
    idx = uvchan_task_select(c, 2, &st);
    assert_int_equal(idx, 1);
    if (st == UV_EOF)
      break;
    sel_sum += v;
  }
  assert_int_equal(uvchan_destroy(&local), 0);
  assert_int_equal(uvchan_destroy(end), 0);
}

static void sel_send_setup(loop_t* l) {
  assert_int_equal(uvchan_attach(&l->ctx, &ends[2], &sel_shared), 0);
  ends[2].data = &l->ctx;
  assert_int_equal(uvchan_task_spawn(&l->ctx, sel_sender, &ends[2], NULL), 0);
}
static void sel_recv_setup(loop_t* l) {
  assert_int_equal(uvchan_attach(&l->ctx, &ends[3], &sel_shared), 0);
  ends[3].data = &l->ctx;
  assert_int_equal(uvchan_task_spawn(&l->ctx, sel_receiver, &ends[3], NULL), 0);
}

static void test_thread_select_on_both_sides(void** state) {
  loop_t ls[2];
  (void)state;
  main_open();
  sel_sum = 0;
  assert_int_equal(uvchan_init_shared(&main_ctx, &sel_shared, sizeof(long), 0), 0);
  ls[0].setup = sel_send_setup;
  ls[1].setup = sel_recv_setup;
  loops_run(ls, 2);
  assert_int_equal(sel_sum, (long)SEL_ROUNDS * (SEL_ROUNDS - 1) / 2);
  assert_int_equal(uvchan_destroy(&sel_shared), 0);
  main_close();
}

/* ---- on one thread: deadlines, cancel, try from a work callback, ends' lifetimes ---- */

static int at_last_wait;
static void recv_to(void* arg) {
  uvchan_t* end = arg;
  long v = 5;
  assert_int_equal(uvchan_task_recv_timeout(end, &v, 5), UV_ETIMEDOUT); /* empty */
  assert_int_equal(uvchan_try_send(end, &v), 0);
  assert_int_equal(uvchan_task_send_timeout(end, &v, 5), UV_ETIMEDOUT); /* full */
  assert_int_equal(uvchan_try_recv(end, &v), 0);
  at_last_wait = 1;
  assert_int_equal(uvchan_task_recv(end, &v), UV_ECANCELED); /* cancelled below */
}

static void try_from_work(uv_work_t* w) {
  long v = 77;
  /* a shared channel takes try-operations from any thread */
  assert_int_equal(uvchan_try_send(w->data, &v), 0);
  assert_int_equal(uvchan_try_send(w->data, &v), UV_EAGAIN);
}
static void after_work(uv_work_t* w, int status) {
  (void)w;
  assert_int_equal(status, 0);
}

static void test_thread_deadline_cancel_try_and_ends(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch, end2;
  uvchan_task_ref_t ref;
  uv_work_t work;
  uvchan_recv_t r;
  counter_t c = {0, 1};
  long v = 0;

  assert_int_equal(uvchan_init_shared(&f->ctx, &ch, sizeof(long), 1), 0);
  assert_int_equal(uvchan_is_shared(&ch), 1);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), UV_EAGAIN); /* capacity 1 */
  assert_int_equal(uvchan_try_recv(&ch, &v), 0);
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, recv_to, &ch, NULL), 0);
  at_last_wait = 0;
  while (!at_last_wait)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 1);
  /* the task is parked in its last, untimed receive: the loop stays alive for it */
  assert_int_equal(uv_loop_alive(&f->loop), 1);
  assert_int_equal(uvchan_task_cancel(&ref), 0);
  RUN(f);
  assert_int_equal(uvchan_task_alive(&ref), 0);

  work.data = &ch;
  assert_int_equal(uv_queue_work(&f->loop, &work, try_from_work, after_work), 0);
  RUN(f);
  assert_int_equal(uvchan_len(&ch), 1);

  /* a second end on the same context: its requests are cancelled when it goes */
  assert_int_equal(uvchan_attach(&f->ctx, &end2, &ch), 0);
  assert_int_equal(uvchan_attach(&f->ctx, &end2, &ch), UV_EBUSY);
  assert_int_equal(uvchan_try_recv(&end2, &v), 0);
  assert_int_equal(v, 77);
  r.data = &c;
  assert_int_equal(uvchan_recv(&r, &end2, &v, recv_cb), 0);
  assert_int_equal(uvchan_destroy(&ch), UV_EBUSY); /* the first end goes last */
  assert_int_equal(uvchan_destroy(&end2), 0);
  RUN(f);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_thread_bad_input(void** state) {
  fixture_t* f = FX(state);
  uvchan_t local, end;
  uvchan_permit_t p;
  long v = 1;
  memset(&end, 0, sizeof(end));
  assert_int_equal(uvchan_init(&f->ctx, &local, sizeof(long), 1), 0);
  assert_int_equal(uvchan_attach(&f->ctx, &end, &local), UV_EINVAL); /* not shared */
  assert_int_equal(uvchan_attach(NULL, &end, &local), UV_EINVAL);
  assert_int_equal(uvchan_thread_send(&local, &v), UV_EINVAL);
  assert_int_equal(uvchan_thread_recv(&local, &v), UV_EINVAL);
  assert_int_equal(uvchan_thread_send(NULL, &v), UV_EINVAL);
  assert_int_equal(uvchan_is_shared(&local), 0);
  assert_int_equal(uvchan_destroy(&local), 0);
  assert_int_equal(uvchan_init_shared(&f->ctx, &local, sizeof(long), 1), 0);
  assert_int_equal(uvchan_thread_send(&local, NULL), UV_EINVAL);
  assert_int_equal(uvchan_try_reserve(&local, &p), UV_EINVAL); /* not on shared channels */
  assert_int_equal(uvchan_thread_send_timeout(&local, &v, 0), 0);
  assert_int_equal(uvchan_thread_send_timeout(&local, &v, 0), UV_ETIMEDOUT);
  assert_int_equal(uvchan_thread_send_timeout(&local, &v, 3), UV_ETIMEDOUT);
  assert_int_equal(uvchan_thread_recv_timeout(&local, &v, 3), 0);
  assert_int_equal(uvchan_thread_recv_timeout(&local, &v, 3), UV_ETIMEDOUT);
  assert_int_equal(uvchan_close(&local), 0);
  assert_int_equal(uvchan_close(&local), UV_EPIPE);
  assert_int_equal(uvchan_thread_recv(&local, &v), UV_EOF);
  assert_int_equal(uvchan_destroy(&local), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_thread_pingpong_two_loops),
      cmocka_unit_test(test_thread_buffered_fifo_and_close),
      cmocka_unit_test(test_thread_foreign_threads_block_on_both_sides),
      cmocka_unit_test(test_thread_select_on_both_sides),
      TEST(test_thread_deadline_cancel_try_and_ends),
      TEST(test_thread_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
