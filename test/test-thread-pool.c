/* The threadpool: a map from one channel to another through uv_queue_work() (order kept, at most
 * K jobs in flight, backpressure, errors, close, stop, shutdown), and a task awaiting one job. */
#include "test-helpers.h"

#include <stdatomic.h>
#include <time.h>

static void sleep_us(unsigned us) {
  struct timespec ts = {0, (long)us * 1000};
  nanosleep(&ts, NULL);
}

/* A job's duration, random but fixed per item: jobs finish out of order. */
static unsigned duration_us(long item) {
  uint64_t x = (uint64_t)item * 0x9e3779b97f4a7c15ull;
  x ^= x >> 29;
  return (unsigned)(x % 300);
}

/* What the jobs of a test share: concurrency counters, the item that fails, the thread seen. */
typedef struct {
  atomic_int cur;
  atomic_int max;
  atomic_int ran;
  long fail_at;   /* this item's job returns UV_EIO (-1: none) */
  int slow_us;    /* every job at least this long */
  uv_sem_t* gate; /* jobs wait on it when set */
} jobs_t;

static int square(uvchan_work_map_t* map, const void* in, void* out) {
  jobs_t* js = map->data;
  long v = *(const long*)in;
  int now = atomic_fetch_add(&js->cur, 1) + 1;
  int m = atomic_load(&js->max);
  while (now > m && !atomic_compare_exchange_weak(&js->max, &m, now)) {
  }
  if (js->gate != NULL)
    uv_sem_wait(js->gate);
  sleep_us(duration_us(v) + (unsigned)js->slow_us);
  atomic_fetch_add(&js->ran, 1);
  atomic_fetch_sub(&js->cur, 1);
  if (v == js->fail_at)
    return UV_EIO;
  *(long*)out = v * v;
  return 0;
}

typedef struct {
  int calls;
  int status;
} done_t;

/* The maps of these tests carry a jobs_t in `data`; the done counter lives beside it. */
typedef struct {
  jobs_t jobs; /* first: square() reads map->data as a jobs_t* */
  done_t done;
  long discarded_items;   /* items whose job never ran */
  long discarded_results; /* results computed, never sent */
} mapctx_t;

static void map_done(uvchan_work_map_t* map, int status) {
  mapctx_t* m = map->data;
  m->done.calls++;
  m->done.status = status;
  assert_int_equal(atomic_load(&m->jobs.cur), 0); /* no job runs any more */
}

static void map_discard(uvchan_work_map_t* map, void* in, void* out) {
  mapctx_t* m = map->data;
  (void)in;
  if (out == NULL)
    m->discarded_items++;
  else
    m->discarded_results++;
}

static void mapctx_init(mapctx_t* m) {
  memset(m, 0, sizeof(*m));
  atomic_init(&m->jobs.cur, 0);
  atomic_init(&m->jobs.max, 0);
  atomic_init(&m->jobs.ran, 0);
  m->jobs.fail_at = -1;
}

/* ---- producer and consumer tasks ---- */

typedef struct {
  uvchan_t* ch;
  long n;         /* items to send */
  long sent;      /* sends that succeeded */
  int last;       /* the status that ended it */
  int close_at_end;
} producer_t;

static void producer(void* arg) {
  producer_t* p = arg;
  int st = 0;
  for (long i = 0; i < p->n; i++) {
    if ((st = uvchan_task_send(p->ch, &i)) != 0)
      break;
    p->sent++;
  }
  p->last = st;
  if (p->close_at_end && st == 0)
    assert_int_equal(uvchan_close(p->ch), 0);
}

typedef struct {
  uvchan_t* ch;
  long got;
  long stop_after; /* close the channel after this many (0: never) */
  int last;
} consumer_t;

static void consumer(void* arg) {
  consumer_t* c = arg;
  long v;
  int st;
  while ((st = uvchan_task_recv(c->ch, &v)) == 0) {
    assert_int_equal(v, c->got * c->got); /* in order: the square of item number `got` */
    c->got++;
    if (c->stop_after != 0 && c->got == c->stop_after) {
      assert_int_equal(uvchan_close(c->ch), 0);
      st = UV_EPIPE;
      break;
    }
  }
  c->last = st;
}

/* ---- order and concurrency ---- */

static void run_ordered(fixture_t* f, unsigned k, long n, size_t in_cap, size_t out_cap) {
  uvchan_t in, out;
  uvchan_work_map_t map;
  uvchan_work_map_attr_t attr = {UVCHAN_WORK_MAP_CLOSE_OUT, map_discard};
  mapctx_t m;
  producer_t p = {&in, n, 0, 0, 1};
  consumer_t c = {&out, 0, 0, 0};

  mapctx_init(&m);
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), in_cap), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), out_cap), 0);
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, k, &in, &out, square, map_done, &attr), 0);
  assert_int_equal(uvchan_work_map_active(&map), 1);
  assert_int_equal(m.done.calls, 0); /* nothing runs inside the start */
  assert_int_equal(uvchan_task_spawn(&f->ctx, producer, &p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, consumer, &c, NULL), 0);
  RUN(f);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, 0);
  assert_int_equal(uvchan_work_map_active(&map), 0);
  assert_int_equal(p.sent, n);
  assert_int_equal(c.got, n);
  assert_int_equal(c.last, UV_EOF); /* UVCHAN_WORK_MAP_CLOSE_OUT */
  assert_int_equal(atomic_load(&m.jobs.ran), n);
  assert_true(atomic_load(&m.jobs.max) >= 1);
  assert_true(atomic_load(&m.jobs.max) <= (int)k); /* never more than K in flight */
  assert_int_equal(m.discarded_items + m.discarded_results, 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

static void test_pool_map_keeps_order_with_random_durations(void** state) {
  run_ordered(FX(state), 4, 600, 0, 0);
}

static void test_pool_map_k1_is_sequential(void** state) {
  run_ordered(FX(state), 1, 100, 8, 8);
}

static void test_pool_map_k_beyond_the_threadpool(void** state) {
  run_ordered(FX(state), 12, 400, 32, 3); /* the threadpool has 4 threads: the rest queue */
}

/* ---- backpressure ---- */

static void test_pool_map_backpressure_takes_at_most_k(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_work_map_t map;
  uvchan_work_map_attr_t attr = {UVCHAN_WORK_MAP_CLOSE_OUT, map_discard};
  mapctx_t m;
  producer_t p = {&in, 50, 0, 0, 1};
  consumer_t c = {&out, 0, 0, 0};

  mapctx_init(&m);
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 0), 0);
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 3, &in, &out, square, map_done, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, producer, &p, NULL), 0);
  /* No consumer: the loop runs until every job is done and everything waits. */
  RUN(f);
  assert_int_equal(p.sent, 3); /* the window is full: the map takes nothing more */
  assert_int_equal(atomic_load(&m.jobs.ran), 3);
  assert_int_equal(uvchan_waiting_senders(&out), 1); /* the first result, waiting its turn */
  assert_int_equal(m.done.calls, 0);
  /* a consumer comes: everything flows */
  assert_int_equal(uvchan_task_spawn(&f->ctx, consumer, &c, NULL), 0);
  RUN(f);
  assert_int_equal(c.got, 50);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

/* ---- errors, close, stop ---- */

static void test_pool_map_job_error_stops_after_earlier_results(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_work_map_t map;
  uvchan_work_map_attr_t attr = {UVCHAN_WORK_MAP_CLOSE_OUT, map_discard};
  mapctx_t m;
  producer_t p = {&in, 200, 0, 0, 1};
  consumer_t c = {&out, 0, 0, 0};

  mapctx_init(&m);
  m.jobs.fail_at = 37;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), 4), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 2), 0);
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 6, &in, &out, square, map_done, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, producer, &p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, consumer, &c, NULL), 0);
  RUN(f);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, UV_EIO);
  assert_int_equal(c.got, 37); /* every result before the failed item, in order */
  assert_int_equal(c.last, UV_EOF);
  /* Ledger: what the map took went out, failed (one), or was discarded. The producer is still
   * blocked on `in` (the map stopped receiving): whatever it got through, the map took, or it
   * sits in `in`'s buffer. */
  assert_int_equal(p.sent - (long)uvchan_len(&in),
                   c.got + 1 + m.discarded_items + m.discarded_results);
  assert_int_equal(uvchan_destroy(&in), 0); /* the producer's pending send: UV_ECANCELED */
  RUN(f);
  assert_int_equal(p.last, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&out), 0);
}

static void test_pool_map_out_closed_by_consumer(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_work_map_t map;
  uvchan_work_map_attr_t attr = {0, map_discard};
  mapctx_t m;
  producer_t p = {&in, 1000, 0, 0, 1};
  consumer_t c = {&out, 0, 25, 0};

  mapctx_init(&m);
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 0), 0);
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 4, &in, &out, square, map_done, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, producer, &p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, consumer, &c, NULL), 0);
  RUN(f);
  assert_int_equal(c.got, 25);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, UV_EPIPE);
  assert_int_equal(p.sent, c.got + m.discarded_items + m.discarded_results);
  assert_int_equal(uvchan_destroy(&in), 0);
  RUN(f);
  assert_int_equal(uvchan_destroy(&out), 0);
}

static void test_pool_map_in_destroyed(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_work_map_t map;
  mapctx_t m;

  mapctx_init(&m);
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 0), 0);
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 2, &in, &out, square, map_done, NULL), 0);
  assert_int_equal(uvchan_destroy(&in), 0); /* the map's receive: UV_ECANCELED */
  RUN(f);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, UV_ECANCELED);
  assert_int_equal(uvchan_is_closed(&out), 0); /* no UVCHAN_WORK_MAP_CLOSE_OUT */
  assert_int_equal(uvchan_destroy(&out), 0);
}

/* Stop with jobs queued behind a full threadpool and results waiting: every item the map took is
 * sent, or handed to discard exactly once; `done` only after the running jobs returned. */
static uv_sem_t gate;

static void open_gate(uv_timer_t* t) {
  for (int i = 0; i < 16; i++)
    uv_sem_post(&gate);
  uv_close((uv_handle_t*)t, NULL);
}

typedef struct {
  uvchan_work_map_t* map;
  uvchan_t* out;
  long got;
} stopper_t;

static void stopper(void* arg) {
  stopper_t* s = arg;
  long v;
  /* take two results, then stop the map with the rest in flight */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(uvchan_task_recv(s->out, &v), 0);
    assert_int_equal(v, s->got * s->got);
    s->got++;
  }
  assert_int_equal(uvchan_work_map_stop(s->map), 0);
  assert_int_equal(uvchan_work_map_stop(s->map), UV_EINVAL); /* stopping already */
}

static void test_pool_map_stop_with_jobs_in_flight(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_work_map_t map;
  uvchan_work_map_attr_t attr = {UVCHAN_WORK_MAP_CLOSE_OUT, map_discard};
  mapctx_t m;
  producer_t p = {&in, 100, 0, 0, 1};
  stopper_t s = {&map, &out, 0};
  uv_timer_t t;

  mapctx_init(&m);
  assert_int_equal(uv_sem_init(&gate, 2), 0); /* two jobs may pass at once, the rest wait */
  m.jobs.gate = &gate;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), 0), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 0), 0);
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 10, &in, &out, square, map_done, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, producer, &p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, stopper, &s, NULL), 0);
  assert_int_equal(uv_timer_init(&f->loop, &t), 0);
  assert_int_equal(uv_timer_start(&t, open_gate, 50, 0), 0); /* lets the blocked jobs end */
  RUN(f);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, UV_ECANCELED);
  assert_int_equal(s.got, 2);
  assert_int_equal(p.sent, s.got + m.discarded_items + m.discarded_results);
  assert_int_equal(atomic_load(&m.jobs.ran) + m.discarded_items, p.sent);
  assert_int_equal(uvchan_is_closed(&out), 1);
  assert_int_equal(uvchan_destroy(&in), 0);
  RUN(f);
  assert_int_equal(uvchan_destroy(&out), 0);
  uv_sem_destroy(&gate);
}

/* ---- teardown: the context's shutdown with jobs in flight ---- */

static int ctx_closed;
static void on_ctx_closed(uvchan_ctx_t* ctx) {
  (void)ctx;
  ctx_closed++;
}

static void shut_down_soon(uv_timer_t* t) {
  fixture_t* f = t->data;
  assert_int_equal(uvchan_ctx_shutdown(&f->ctx, on_ctx_closed), 0);
  uv_close((uv_handle_t*)t, NULL);
}

static void test_pool_map_shutdown_with_jobs_in_flight(void** state) {
  fixture_t fx;
  uvchan_t* in = malloc(sizeof(uvchan_t));
  uvchan_t* out = malloc(sizeof(uvchan_t));
  uvchan_work_map_t map;
  mapctx_t m;
  producer_t p = {in, 100000, 0, 0, 0};
  uv_timer_t t;
  (void)state;

  memset(in, 0, sizeof(*in));
  memset(out, 0, sizeof(*out));
  assert_int_equal(uv_loop_init(&fx.loop), 0);
  memset(&fx.ctx, 0, sizeof(fx.ctx));
  assert_int_equal(uvchan_ctx_init(&fx.loop, &fx.ctx), 0);
  mapctx_init(&m);
  m.jobs.slow_us = 2000;
  assert_int_equal(uvchan_init(&fx.ctx, in, sizeof(long), 4), 0);
  assert_int_equal(uvchan_init(&fx.ctx, out, sizeof(long), 4), 0);
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&fx.ctx, &map, 8, in, out, square, map_done, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&fx.ctx, producer, &p, NULL), 0);
  assert_int_equal(uvchan_ctx_close(&fx.ctx, NULL), UV_EBUSY); /* the map (and more) is open */
  t.data = &fx;
  assert_int_equal(uv_timer_init(&fx.loop, &t), 0);
  assert_int_equal(uv_timer_start(&t, shut_down_soon, 20, 0), 0);
  ctx_closed = 0;
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, UV_ECANCELED);
  assert_int_equal(ctx_closed, 1);
  assert_int_equal(uv_loop_close(&fx.loop), 0);
  free(in);
  free(out);
}

/* ---- a producer thread without a loop, through a shared channel ---- */

static uvchan_t shared_in;
static void thread_feeder(void* arg) {
  long n = *(long*)arg;
  for (long i = 0; i < n; i++)
    assert_int_equal(uvchan_thread_send(&shared_in, &i), 0);
  assert_int_equal(uvchan_close(&shared_in), 0);
}

static void test_pool_map_from_a_shared_channel(void** state) {
  fixture_t* f = FX(state);
  uvchan_t out;
  uvchan_work_map_t map;
  uvchan_work_map_attr_t attr = {UVCHAN_WORK_MAP_CLOSE_OUT, NULL};
  mapctx_t m;
  consumer_t c = {&out, 0, 0, 0};
  uv_thread_t th;
  long n = 300;

  mapctx_init(&m);
  assert_int_equal(uvchan_init_shared(&f->ctx, &shared_in, sizeof(long), 2), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 0), 0);
  map.data = &m;
  assert_int_equal(
      uvchan_work_map_start(&f->ctx, &map, 3, &shared_in, &out, square, map_done, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, consumer, &c, NULL), 0);
  assert_int_equal(uv_thread_create(&th, thread_feeder, &n), 0);
  RUN(f);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(c.got, n);
  assert_int_equal(m.done.status, 0);
  assert_true(atomic_load(&m.jobs.max) <= 3);
  assert_int_equal(uvchan_destroy(&shared_in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

/* ---- bad input ---- */

static void test_pool_map_bad_input(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out, dead;
  uvchan_work_map_t map;
  mapctx_t m;
  uv_loop_t loop2;
  uvchan_ctx_t ctx2;
  uvchan_t other;

  mapctx_init(&m);
  memset(&map, 0, sizeof(map));
  memset(&dead, 0, sizeof(dead));
  map.data = &m;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 1), 0);
  assert_int_equal(uv_loop_init(&loop2), 0);
  memset(&ctx2, 0, sizeof(ctx2));
  assert_int_equal(uvchan_ctx_init(&loop2, &ctx2), 0);
  assert_int_equal(uvchan_init(&ctx2, &other, sizeof(long), 1), 0);

  assert_int_equal(uvchan_work_map_start(NULL, &map, 1, &in, &out, square, map_done, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, NULL, 1, &in, &out, square, map_done, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 0, &in, &out, square, map_done, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, NULL, &out, square, map_done, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, &in, &dead, square, map_done, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, &in, &out, NULL, map_done, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, &in, &out, square, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, &other, &out, square, map_done, NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_stop(&map), UV_EINVAL); /* not running */
  assert_int_equal(uvchan_work_map_stop(NULL), UV_EINVAL);
  assert_int_equal(uvchan_work_map_active(NULL), 0);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 2, &in, &out, square, map_done, NULL), 0);
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 2, &in, &out, square, map_done, NULL), UV_EINVAL); /* running */
  assert_int_equal(uvchan_work_map_stop(&map), 0);
  RUN(f);
  assert_int_equal(m.done.calls, 1);
  assert_int_equal(m.done.status, UV_ECANCELED);
  assert_int_equal(uvchan_task_work(NULL, NULL), UV_EINVAL); /* outside a task */

  assert_int_equal(uvchan_destroy(&other), 0);
  assert_int_equal(uvchan_ctx_close(&ctx2, NULL), 0);
  assert_int_equal(uv_run(&loop2, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop2), 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

typedef struct {
  uvchan_ctx_t* ctx;
  uvchan_work_map_t* map;
  uvchan_t *in, *out;
  int start, stop;
} wrong_t;

static void wrong_thread(void* arg) {
  wrong_t* w = arg;
  uvchan_work_map_t other;
  memset(&other, 0, sizeof(other));
  w->start = uvchan_work_map_start(w->ctx, &other, 1, w->in, w->out, square, map_done, NULL);
  w->stop = uvchan_work_map_stop(w->map);
}

static void test_pool_map_wrong_thread(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_work_map_t map;
  mapctx_t m;
  wrong_t w = {&f->ctx, &map, &in, &out, 0, 0};
  uv_thread_t th;

  mapctx_init(&m);
  map.data = &m;
  assert_int_equal(uvchan_init(&f->ctx, &in, sizeof(long), 1), 0);
  assert_int_equal(uvchan_init(&f->ctx, &out, sizeof(long), 1), 0);
  memset(&map, 0, sizeof(map));
  map.data = &m;
  assert_int_equal(uvchan_work_map_start(&f->ctx, &map, 1, &in, &out, square, map_done, NULL), 0);
  assert_int_equal(uv_thread_create(&th, wrong_thread, &w), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.start, UV_EPERM);
  assert_int_equal(w.stop, UV_EPERM);
  assert_int_equal(uvchan_work_map_stop(&map), 0);
  RUN(f);
  assert_int_equal(m.done.status, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

/* ---- a task awaiting one job ---- */

static uv_thread_t loop_thread_id;
static atomic_int job_ran;
static uv_sem_t hold;       /* keeps the threadpool's threads busy */
static uv_sem_t started;    /* a blocker signals it runs */

static void count_job(void* arg) {
  uv_thread_t self = uv_thread_self();
  assert_int_equal(uv_thread_equal(&self, &loop_thread_id), 0); /* not the loop's thread */
  *(long*)arg *= 2;
  atomic_fetch_add(&job_ran, 1);
}

static void blocker(uv_work_t* w) {
  (void)w;
  uv_sem_post(&started);
  uv_sem_wait(&hold);
}

static void blocker_done(uv_work_t* w, int status) {
  (void)w;
  assert_int_equal(status, 0);
}

typedef struct {
  int r_plain, r_timeout, r_cancelled;
  long x;
} awaiter_t;

static void awaiter(void* arg) {
  awaiter_t* a = arg;
  a->x = 21;
  a->r_plain = uvchan_task_work(count_job, &a->x);
}

static void test_pool_task_work_runs_on_the_pool(void** state) {
  fixture_t* f = FX(state);
  awaiter_t a;
  memset(&a, 0, sizeof(a));
  loop_thread_id = uv_thread_self();
  atomic_store(&job_ran, 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, awaiter, &a, NULL), 0);
  RUN(f);
  assert_int_equal(a.r_plain, 0);
  assert_int_equal(a.x, 42);
  assert_int_equal(atomic_load(&job_ran), 1);
}

/* With every threadpool thread held, a job stays queued: a deadline or a cancel removes it and it
 * never runs. */
static void queued_timeout(void* arg) {
  awaiter_t* a = arg;
  long x = 1; /* on the task's stack: the job never runs, or is waited for */
  a->r_timeout = uvchan_task_work_timeout(count_job, &x, 10);
}

static void queued_cancelled(void* arg) {
  awaiter_t* a = arg;
  long x = 1;
  a->r_cancelled = uvchan_task_work(count_job, &x);
  assert_int_equal(uvchan_task_work(count_job, &x), UV_ECANCELED); /* and every later one */
}

static void cancel_it(uv_timer_t* t) {
  assert_int_equal(uvchan_task_cancel(t->data), 0);
  uv_close((uv_handle_t*)t, NULL);
}

static void release_all(uv_timer_t* t) {
  for (int i = 0; i < 4; i++)
    uv_sem_post(&hold);
  uv_close((uv_handle_t*)t, NULL);
}

static void test_pool_task_work_deadline_and_cancel_while_queued(void** state) {
  fixture_t* f = FX(state);
  uv_work_t blockers[4];
  awaiter_t a;
  uvchan_task_ref_t ref;
  uv_timer_t t1, t2;

  memset(&a, 0, sizeof(a));
  loop_thread_id = uv_thread_self();
  atomic_store(&job_ran, 0);
  assert_int_equal(uv_sem_init(&hold, 0), 0);
  assert_int_equal(uv_sem_init(&started, 0), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(uv_queue_work(&f->loop, &blockers[i], blocker, blocker_done), 0);
  for (int i = 0; i < 4; i++)
    uv_sem_wait(&started); /* all four threads are held now */
  assert_int_equal(uvchan_task_spawn(&f->ctx, queued_timeout, &a, NULL), 0);
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, queued_cancelled, &a, NULL), 0);
  t1.data = &ref;
  assert_int_equal(uv_timer_init(&f->loop, &t1), 0);
  assert_int_equal(uv_timer_start(&t1, cancel_it, 20, 0), 0);
  assert_int_equal(uv_timer_init(&f->loop, &t2), 0);
  assert_int_equal(uv_timer_start(&t2, release_all, 40, 0), 0);
  RUN(f);
  assert_int_equal(a.r_timeout, UV_ETIMEDOUT);
  assert_int_equal(a.r_cancelled, UV_ECANCELED);
  assert_int_equal(atomic_load(&job_ran), 0);
  uv_sem_destroy(&hold);
  uv_sem_destroy(&started);
}

/* A cancel while the job runs: the task waits for it and gets 0 (it ran). */
static uv_sem_t in_job, let_go;
static void long_job(void* arg) {
  uv_sem_post(&in_job);
  uv_sem_wait(&let_go);
  *(long*)arg = 7;
}

static void running_awaiter(void* arg) {
  awaiter_t* a = arg;
  long x = 0; /* on the task's stack: the job still writes it after the cancel */
  a->r_cancelled = uvchan_task_work(long_job, &x);
  a->x = x;
}

static void cancel_when_running(uv_timer_t* t) {
  if (uv_sem_trywait(&in_job) != 0)
    return; /* not running yet: the repeating timer looks again */
  assert_int_equal(uvchan_task_cancel(t->data), 0);
  uv_sem_post(&let_go);
  uv_close((uv_handle_t*)t, NULL);
}

static void test_pool_task_work_cancel_while_running_waits(void** state) {
  fixture_t* f = FX(state);
  awaiter_t a;
  uvchan_task_ref_t ref;
  uv_timer_t t;

  memset(&a, 0, sizeof(a));
  assert_int_equal(uv_sem_init(&in_job, 0), 0);
  assert_int_equal(uv_sem_init(&let_go, 0), 0);
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, running_awaiter, &a, NULL), 0);
  t.data = &ref;
  assert_int_equal(uv_timer_init(&f->loop, &t), 0);
  assert_int_equal(uv_timer_start(&t, cancel_when_running, 1, 1), 0);
  RUN(f);
  assert_int_equal(a.r_cancelled, 0);
  assert_int_equal(a.x, 7);
  uv_sem_destroy(&in_job);
  uv_sem_destroy(&let_go);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_pool_map_keeps_order_with_random_durations),
      TEST(test_pool_map_k1_is_sequential),
      TEST(test_pool_map_k_beyond_the_threadpool),
      TEST(test_pool_map_backpressure_takes_at_most_k),
      TEST(test_pool_map_job_error_stops_after_earlier_results),
      TEST(test_pool_map_out_closed_by_consumer),
      TEST(test_pool_map_in_destroyed),
      TEST(test_pool_map_stop_with_jobs_in_flight),
      cmocka_unit_test(test_pool_map_shutdown_with_jobs_in_flight),
      TEST(test_pool_map_from_a_shared_channel),
      TEST(test_pool_map_bad_input),
      TEST(test_pool_map_wrong_thread),
      TEST(test_pool_task_work_runs_on_the_pool),
      TEST(test_pool_task_work_deadline_and_cancel_while_queued),
      TEST(test_pool_task_work_cancel_while_running_waits),
  };
  /* The tests that hold the threadpool's threads count on its size. */
  setenv("UV_THREADPOOL_SIZE", "4", 1);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
