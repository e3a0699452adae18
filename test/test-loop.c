/* How uvchan lives in a loop: delivery from the loop only, bounded batches, waiting keeps nothing
 * alive, the deadlock report, and tracing. */
#include "test-helpers.h"

/* ---- a callback ping-pong: two chains bouncing a counter over two unbuffered channels ---- */

typedef struct {
  uvchan_t a, b;
  uvchan_send_t ping_send, pong_send;
  uvchan_recv_t ping_recv, pong_recv;
  int ping_val, pong_val;
  long rounds;
  long limit;
  int stop;
  int in_start; /* set while our own code runs a start call, to catch synchronous callbacks */
  int sync_calls;
} pingpong_t;

static void ping_recv_cb(uvchan_recv_t* req, int status);
static void pong_recv_cb(uvchan_recv_t* req, int status);

static void ping_sent(uvchan_send_t* req, int status) {
  pingpong_t* p = req->data;
  if (p->in_start)
    p->sync_calls++;
  assert_int_equal(status, 0);
  p->in_start = 1;
  assert_int_equal(uvchan_recv(&p->ping_recv, &p->b, &p->ping_val, ping_recv_cb), 0);
  p->in_start = 0;
}

static void ping_recv_cb(uvchan_recv_t* req, int status) {
  pingpong_t* p = req->data;
  if (p->in_start)
    p->sync_calls++;
  assert_int_equal(status, 0);
  p->rounds++;
  if (p->stop || (p->limit && p->rounds >= p->limit)) {
    uvchan_close(&p->a);
    return;
  }
  p->in_start = 1;
  assert_int_equal(uvchan_send(&p->ping_send, &p->a, &p->ping_val, ping_sent), 0);
  p->in_start = 0;
}

static void pong_sent(uvchan_send_t* req, int status) {
  pingpong_t* p = req->data;
  assert_int_equal(status, 0);
  assert_int_equal(uvchan_recv(&p->pong_recv, &p->a, &p->pong_val, pong_recv_cb), 0);
}

static void pong_recv_cb(uvchan_recv_t* req, int status) {
  pingpong_t* p = req->data;
  if (status == UV_EOF)
    return;
  assert_int_equal(status, 0);
  p->pong_val++;
  assert_int_equal(uvchan_send(&p->pong_send, &p->b, &p->pong_val, pong_sent), 0);
}

static void pingpong_start(fixture_t* f, pingpong_t* p) {
  memset(p, 0, sizeof(*p));
  assert_int_equal(uvchan_init(&f->ctx, &p->a, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &p->b, sizeof(int), 0), 0);
  p->ping_send.data = p->pong_send.data = p->ping_recv.data = p->pong_recv.data = p;
  assert_int_equal(uvchan_recv(&p->pong_recv, &p->a, &p->pong_val, pong_recv_cb), 0);
  assert_int_equal(uvchan_send(&p->ping_send, &p->a, &p->ping_val, ping_sent), 0);
}

static void pingpong_end(pingpong_t* p) {
  assert_int_equal(uvchan_destroy(&p->a), 0);
  assert_int_equal(uvchan_destroy(&p->b), 0);
}

static void test_callbacks_start_requests_from_callbacks(void** state) {
  fixture_t* f = FX(state);
  pingpong_t p;
  pingpong_start(f, &p);
  p.limit = 10000;
  RUN(f);
  assert_int_equal(p.rounds, 10000);
  assert_int_equal(p.ping_val, 10000); /* each round trip added one, in order */
  assert_int_equal(p.sync_calls, 0);
  pingpong_end(&p);
}

static void stop_timer_cb(uv_timer_t* t) {
  pingpong_t* p = t->data;
  p->stop = 1;
}

static void test_pingpong_never_starves_timers(void** state) {
  fixture_t* f = FX(state);
  pingpong_t p;
  uv_timer_t timer;

  pingpong_start(f, &p);
  assert_int_equal(uvchan_ctx_set_batch(&f->ctx, 64), 0);
  /* An endless ping-pong: only the timer can stop it, so it must get to run. */
  assert_int_equal(uv_timer_init(&f->loop, &timer), 0);
  timer.data = &p;
  assert_int_equal(uv_timer_start(&timer, stop_timer_cb, 20, 0), 0);
  RUN(f);
  assert_true(p.stop);
  assert_true(p.rounds > 0);
  uv_close((uv_handle_t*)&timer, NULL);
  RUN(f);
  pingpong_end(&p);
}

static int idle_ticks;
static void count_idle(uv_idle_t* h) {
  (void)h;
  idle_ticks++;
}

typedef struct {
  uvchan_t* ch;
  uvchan_recv_t r;
  int v;
  long n;
} chain_t;

static void chain_cb(uvchan_recv_t* req, int status) {
  chain_t* c = req->data;
  if (status != 0)
    return;
  c->n++;
  uvchan_try_send(c->ch, &c->v);
  uvchan_recv(&c->r, c->ch, &c->v, chain_cb);
}

static void test_completions_delivered_in_bounded_batches(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  chain_t c;
  uv_idle_t idle;
  int v = 0;

  /* A receive whose callback re-arms itself on a value it re-sends never runs dry: with a batch
   * of 10, other handles must still get one turn per 10 completions. */
  assert_int_equal(uvchan_ctx_set_batch(&f->ctx, 10), 0);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 1), 0);
  c.ch = &ch;
  c.n = 0;
  c.r.data = &c;
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  assert_int_equal(uvchan_recv(&c.r, &ch, &c.v, chain_cb), 0);
  idle_ticks = 0;
  uv_idle_init(&f->loop, &idle);
  uv_idle_start(&idle, count_idle);
  while (c.n < 1000)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(idle_ticks >= 1000 / 10 - 2);
  uv_close((uv_handle_t*)&idle, NULL);
  assert_int_equal(uvchan_destroy(&ch), 0);
  RUN(f);
}

static void test_waiting_alone_ends_run_and_is_reported(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_recv_t r;
  uvchan_send_t s;
  char buf[1024];
  FILE* mem;
  int v = 1;

  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(int), 0), 0);
  uvchan_set_name(&in, "in");
  assert_int_equal(uvchan_recv(&r, &in, NULL, nop_recv), 0);
  assert_int_equal(uvchan_send(&s, &out, &v, nop_send), 0);
  assert_int_equal(RUN(f), 0); /* nothing can wake them: the run ends */
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 2);
  mem = fmemopen(buf, sizeof(buf), "w");
  assert_non_null(mem);
  assert_int_equal(uvchan_ctx_report(&f->ctx, mem), 2);
  fclose(mem);
  assert_non_null(strstr(buf, "2 operations are waiting"));
  assert_non_null(strstr(buf, "receive from channel \"in\""));
  assert_non_null(strstr(buf, "send on channel 0x"));
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
  RUN(f);
  assert_int_equal(uvchan_ctx_report(&f->ctx, stderr), 0);
}

/* ---- trace ---- */

typedef struct {
  uvchan_trace_kind kinds[32];
  uvchan_req_t* reqs[32];
  uvchan_req_t* peers[32];
  int n;
} trace_log_t;

static void trace_cb(const uvchan_trace_t* ev, void* arg) {
  trace_log_t* log = arg;
  log->kinds[log->n] = ev->kind;
  log->reqs[log->n] = ev->req;
  log->peers[log->n] = ev->peer;
  log->n++;
}

static void test_trace_reports_each_event(void** state) {
  fixture_t* f = FX(state);
  trace_log_t log;
  uvchan_t unbuf, buf;
  uvchan_recv_t r, r2;
  uvchan_send_t s;
  int v = 1, out;

  memset(&log, 0, sizeof(log));
  assert_int_equal(uvchan_ctx_set_trace(&f->ctx, trace_cb, &log), 0);
  assert_int_equal(uvchan_init(&f->ctx, &unbuf, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &buf, sizeof(int), 1), 0);
  assert_int_equal(uvchan_recv(&r, &unbuf, &out, nop_recv), 0);     /* wait */
  assert_int_equal(uvchan_send(&s, &unbuf, &v, nop_send), 0);       /* handshake */
  assert_int_equal(uvchan_try_send(&buf, &v), 0);                   /* put */
  assert_int_equal(uvchan_try_recv(&buf, &out), 0);                 /* take */
  assert_int_equal(uvchan_recv(&r2, &buf, &out, nop_recv), 0);      /* wait */
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r2), 0);           /* cancel */
  assert_int_equal(uvchan_close(&buf), 0);                          /* close */
  assert_int_equal(log.n, 7);
  assert_int_equal(log.kinds[0], UVCHAN_TRACE_WAIT);
  assert_ptr_equal(log.reqs[0], &r);
  assert_int_equal(log.kinds[1], UVCHAN_TRACE_HANDSHAKE);
  assert_ptr_equal(log.reqs[1], &s);
  assert_ptr_equal(log.peers[1], &r);
  assert_int_equal(log.kinds[2], UVCHAN_TRACE_PUT);
  assert_null(log.reqs[2]);
  assert_int_equal(log.kinds[3], UVCHAN_TRACE_TAKE);
  assert_int_equal(log.kinds[4], UVCHAN_TRACE_WAIT);
  assert_int_equal(log.kinds[5], UVCHAN_TRACE_CANCEL);
  assert_int_equal(log.kinds[6], UVCHAN_TRACE_CLOSE);
  assert_string_equal(uvchan_trace_kind_name(UVCHAN_TRACE_HANDSHAKE), "handshake");
  assert_int_equal(uvchan_ctx_set_trace(&f->ctx, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(uvchan_destroy(&unbuf), 0);
  assert_int_equal(uvchan_destroy(&buf), 0);
}

static void test_trace_print_format(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  char buf[512];
  FILE* mem = fmemopen(buf, sizeof(buf), "w");
  int v = 4;

  assert_non_null(mem);
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 2), 0);
  uvchan_set_name(&ch, "jobs");
  assert_int_equal(uvchan_ctx_set_trace(&f->ctx, uvchan_trace_print, mem), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0);
  fclose(mem);
  assert_non_null(strstr(buf, "put"));
  assert_non_null(strstr(buf, "chan jobs"));
  assert_non_null(strstr(buf, "len=1"));
  uvchan_ctx_set_trace(&f->ctx, NULL, NULL);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* ---- uv_stop: delivery stops at once, as Go's scheduler does ---- */

typedef struct {
  uv_loop_t* loop;
  uvchan_t ch;
  uvchan_recv_t r;
  int v;
  long n, stop_at;
} stopper_t;

static void stopper_cb(uvchan_recv_t* req, int status) {
  stopper_t* s = req->data;
  if (status != 0)
    return;
  s->n++;
  if (s->n == s->stop_at)
    uv_stop(s->loop);
  uvchan_try_send(&s->ch, &s->v); /* never runs dry */
  uvchan_recv(&s->r, &s->ch, &s->v, stopper_cb);
}

static void test_uv_stop_stops_delivery_at_once(void** state) {
  fixture_t* f = FX(state);
  stopper_t s;
  int v = 0;
  memset(&s, 0, sizeof(s));
  s.loop = &f->loop;
  s.stop_at = 100;
  s.r.data = &s;
  assert_int_equal(uvchan_init(&f->ctx, &s.ch, sizeof(int), 1), 0);
  assert_int_equal(uvchan_try_send(&s.ch, &v), 0);
  assert_int_equal(uvchan_recv(&s.r, &s.ch, &s.v, stopper_cb), 0);
  assert_int_not_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* stopped, still alive */
  assert_int_equal(s.n, 100); /* not one completion after uv_stop() */
  s.stop_at = 200;
  uv_run(&f->loop, UV_RUN_DEFAULT); /* the next run carries on where it stopped */
  assert_int_equal(s.n, 200);
  assert_int_equal(uvchan_destroy(&s.ch), 0);
  RUN(f);
}

static uv_loop_t* STOP_LOOP;
static long task_rounds;
static void stopping_task(void* arg) {
  uvchan_t* ch = arg;
  int v = 0;
  for (;;) {
    if (uvchan_task_send(ch, &v) != 0)
      return;
    if (++task_rounds == 50)
      uv_stop(STOP_LOOP);
  }
}
static void draining_task(void* arg) {
  int v;
  while (uvchan_task_recv(arg, &v) == 0)
    ;
}

static void test_uv_stop_from_a_task_stops_handover(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  STOP_LOOP = &f->loop;
  task_rounds = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, stopping_task, &ch, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, draining_task, &ch, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(task_rounds, 50); /* the task parked right after uv_stop(): no more hops */
  assert_int_equal(uvchan_destroy(&ch), 0);
  RUN(f);
}

/* ---- one uv_run(UV_RUN_NOWAIT) per hop: a task woken by a timer runs in that iteration ---- */

static int woke;
static void sleeper(void* arg) {
  (void)arg;
  uvchan_task_sleep(1);
  woke = 1;
}

/* libuv up to 1.44 runs timers at the start of an iteration, before the check phase that
 * delivers: a task woken by a deadline runs in that same iteration. From 1.45 timers run at the
 * end of the iteration, after the check phase: the task runs at the start of the next uv_run,
 * before its poll (so it never waits for I/O first). */
static void test_nowait_runs_woken_task_in_same_iteration(void** state) {
  fixture_t* f = FX(state);
  int iterations = 0;
  woke = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, sleeper, NULL, NULL), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* the task starts and sleeps */
  while (!woke) {
    uv_sleep(2);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    iterations++;
  }
  assert_int_equal(iterations, uv_version() < 0x012d00 ? 1 : 2);
}

typedef struct {
  uvchan_t ch;
  int got;
} hop_t;
static void hop_recv(void* arg) {
  hop_t* h = arg;
  assert_int_equal(uvchan_task_recv(&h->ch, &h->got), 0);
}
static void send_from_timer(uv_timer_t* t) {
  hop_t* h = t->data;
  int v = 9;
  assert_int_equal(uvchan_try_send(&h->ch, &v), 0);
}

static void test_once_delivers_what_a_timer_callback_completed(void** state) {
  fixture_t* f = FX(state);
  hop_t h;
  uv_timer_t t;
  h.got = 0;
  assert_int_equal(uvchan_init(&f->ctx, &h.ch, sizeof(int), 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, hop_recv, &h, NULL), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT); /* parks */
  uv_timer_init(&f->loop, &t);
  t.data = &h;
  uv_timer_start(&t, send_from_timer, 0, 0);
  uv_run(&f->loop, UV_RUN_ONCE); /* the timer wakes the task and the task runs: one iteration */
  assert_int_equal(h.got, 9);
  uv_close((uv_handle_t*)&t, NULL);
  RUN(f);
  assert_int_equal(uvchan_destroy(&h.ch), 0);
}

/* ---- the report: one line per waiting party ---- */

static void wg_nop(uvchan_req_t* r, int s) {
  (void)r;
  (void)s;
}
static void sel_nop(uvchan_select_t* r, int s) {
  (void)r;
  (void)s;
}

static size_t walked;
static void walk_count(const uvchan_waiting_t* w, void* arg) {
  (void)arg;
  walked++;
  if (w->type == UVCHAN_REQ_SELECT) {
    assert_non_null(w->cases);
    assert_int_equal(w->ncases, 3);
  }
}

static void test_report_lists_each_party_once(void** state) {
  fixture_t* f = FX(state);
  uvchan_t a, b;
  uvchan_wg_t wg;
  uvchan_req_t wr;
  uvchan_select_t sel;
  int x = 0, y = 0;
  uvchan_case_t c[3] = {UVCHAN_CASE_RECV(&a, &x), UVCHAN_CASE_SEND(&b, &y), UVCHAN_CASE_RECV(&a, &y)};
  char buf[1024] = {0};
  FILE* mem;

  assert_int_equal(uvchan_init(&f->ctx, &a, sizeof(int), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &b, sizeof(int), 0), 0);
  uvchan_set_name(&a, "a");
  uvchan_set_name(&b, "b");
  assert_int_equal(uvchan_wg_init(&f->ctx, &wg), 0);
  assert_int_equal(uvchan_wg_add(&wg, 1), 0);
  memset(&wr, 0, sizeof(wr));
  memset(&sel, 0, sizeof(sel));
  assert_int_equal(uvchan_wg_wait(&wr, &wg, wg_nop), 0);
  assert_int_equal(uvchan_select(&sel, c, 3, sel_nop), 0);
  assert_int_equal(RUN(f), 0);
  walked = 0;
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, walk_count, NULL), 2); /* not 4 */
  assert_int_equal(walked, 2);
  mem = fmemopen(buf, sizeof(buf), "w");
  assert_int_equal(uvchan_ctx_report(&f->ctx, mem), 2);
  fclose(mem);
  assert_non_null(strstr(buf, "2 operations are waiting"));
  assert_non_null(strstr(buf, "wait on a wait group"));
  assert_non_null(strstr(buf, "select { receive from channel \"a\"; send on channel \"b\"; "
                              "receive from channel \"a\" }"));
  assert_int_equal(uvchan_wg_destroy(&wg), 0); /* the wait gets UV_ECANCELED */
  assert_int_equal(uvchan_destroy(&a), 0);
  assert_int_equal(uvchan_destroy(&b), 0);
  RUN(f);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 0);
}

/* ---- deadlines: the corners of the heap and its timer ---- */

static void test_deadline_near_uint64_max_still_waits(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t c = {0, 1};
  int v;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &c;
  assert_int_equal(uvchan_recv_timeout(&r, &ch, &v, UINT64_MAX - 1, recv_cb), 0);
  for (int i = 0; i < 5; i++)
    uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(c.calls, 0); /* the clamp must not wrap to "now" */
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), 0);
  RUN(f);
  assert_int_equal(c.status, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A request with a long deadline that is matched, or cancelled, must leave nothing armed: the
 * loop is not alive any more, so uv_run() returns at once. */
static void test_withdrawn_deadline_leaves_loop_idle(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  counter_t c = {0, 1};
  int v = 1, out;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  r.data = &c;
  assert_int_equal(uvchan_recv_timeout(&r, &ch, &out, 10000, recv_cb), 0);
  assert_int_equal(uvchan_try_send(&ch, &v), 0); /* matched */
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(c.calls, 1);
  assert_int_equal(uv_loop_alive(&f->loop), 0);
  assert_int_equal(uvchan_recv_timeout(&r, &ch, &out, 10000, recv_cb), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r), 0); /* cancelled */
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(c.calls, 2);
  assert_int_equal(uv_loop_alive(&f->loop), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static int order[4], norder;
static void order_cb(uvchan_recv_t* req, int status) {
  if (status == UV_ECANCELED)
    return; /* the withdrawn one */
  assert_int_equal(status, UV_ETIMEDOUT);
  order[norder++] = (int)(intptr_t)req->data;
}

/* A withdrawn earliest deadline re-arms the timer for the next one, and a deadline added while
 * a later one is armed re-arms it earlier: the order of expiry follows the deadlines. */
static void test_deadline_rearm_on_withdraw_and_on_earlier_add(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r[3];
  int v;
  norder = 0;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  for (int i = 0; i < 3; i++)
    r[i].data = (void*)(intptr_t)i;
  assert_int_equal(uvchan_recv_timeout(&r[0], &ch, &v, 40, order_cb), 0); /* armed: 40 */
  assert_int_equal(uvchan_recv_timeout(&r[1], &ch, &v, 5, order_cb), 0);  /* earlier: re-arm */
  assert_int_equal(uvchan_recv_timeout(&r[2], &ch, &v, 20, order_cb), 0);
  assert_int_equal(uvchan_cancel((uvchan_req_t*)&r[1]), 0); /* the earliest leaves */
  RUN(f);
  assert_int_equal(norder, 2);
  assert_int_equal(order[0], 2);
  assert_int_equal(order[1], 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

/* A deadline whose timer fires late (the loop was busy) still expires. */
static void busy_cb(uv_timer_t* t) {
  (void)t;
  uv_sleep(15); /* the loop is late for the 5 ms deadline */
}

static void test_deadline_fired_late_still_expires(void** state) {
  fixture_t* f = FX(state);
  uvchan_t ch;
  uvchan_recv_t r;
  uv_timer_t busy;
  counter_t c = {0, 1};
  int v;
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(int), 0), 0);
  uv_timer_init(&f->loop, &busy);
  uv_timer_start(&busy, busy_cb, 0, 0);
  r.data = &c;
  assert_int_equal(uvchan_recv_timeout(&r, &ch, &v, 5, recv_cb), 0);
  RUN(f);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, UV_ETIMEDOUT);
  uv_close((uv_handle_t*)&busy, NULL);
  RUN(f);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_uv_stop_stops_delivery_at_once),
      TEST(test_uv_stop_from_a_task_stops_handover),
      TEST(test_nowait_runs_woken_task_in_same_iteration),
      TEST(test_once_delivers_what_a_timer_callback_completed),
      TEST(test_report_lists_each_party_once),
      TEST(test_deadline_near_uint64_max_still_waits),
      TEST(test_withdrawn_deadline_leaves_loop_idle),
      TEST(test_deadline_rearm_on_withdraw_and_on_earlier_add),
      TEST(test_deadline_fired_late_still_expires),
      TEST(test_callbacks_start_requests_from_callbacks),
      TEST(test_pingpong_never_starves_timers),
      TEST(test_completions_delivered_in_bounded_batches),
      TEST(test_waiting_alone_ends_run_and_is_reported),
      TEST(test_trace_reports_each_event),
      TEST(test_trace_print_format),
  };
  return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
