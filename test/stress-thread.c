/* make stress, threads: 8 loops on 8 threads and 8 threads without a loop share 6 channels
 * (unbuffered, buffered, one closed early, one that nobody drains), with:
 *   - producer tasks sending by plain sends, sends with random deadlines, try-sends and selects
 *     over two shared channels and the loop's own local channel;
 *   - consumer tasks selecting over every drained shared channel and the local one, some with
 *     deadlines;
 *   - victim tasks cancelled at random moments while they receive, and callback receives on
 *     short-lived ends, cancelled or left to end when their end is destroyed under them;
 *   - producer threads (blocking sends, sends with deadlines, try-sends) and consumer threads
 *     (receives with deadlines), all on the same channels.
 * Every value carries its producer and sequence number (and their complement, so a torn copy
 * shows). The ledger then proves that every value whose send succeeded was received or handed
 * to the element destructor exactly once, and that no value whose send failed (deadline, cancel,
 * closed channel) and no value never sent ever showed up.
 * Usage: uvchan-stress-thread [-s SEED] [-x SCALE_PERCENT] [-r ROUNDS]; exits 0 when every check
 * held in every round. A round's seed is printed first (timing makes a replay differ). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

enum {
  NLOOPS = 8,
  LOOP_PRODUCERS = 2,  /* producer tasks per loop */
  LOOP_CONSUMERS = 2,  /* consumer tasks per loop */
  NTHREAD_PRODUCERS = 4,
  NTHREAD_CONSUMERS = 4,
  NPROD = NLOOPS * LOOP_PRODUCERS + NTHREAD_PRODUCERS,
  NSHARED = 6,
  EARLY = 1, /* closed while producers still send to it */
  LOSSY = 5  /* no consumer drains it: only victims and callback receives; sends have deadlines */
};

static const size_t shared_caps[NSHARED] = {0, 0, 1, 16, 256, 64};

typedef struct {
  uint64_t id;    /* producer << 32 | sequence number */
  uint64_t check; /* ~id */
} val_t;

static long scale = 100;
static long per_producer; /* values each producer sends */

static unsigned char* sent;       /* [NPROD * per_producer]: 1 when the send succeeded */
static _Atomic unsigned char* got; /* times received */
static _Atomic unsigned char* destroyed; /* times handed to the destructor */
static atomic_long invented;
static atomic_long received_total;
static atomic_int failures;

#define CHECK(cond, ...)                                           \
  do {                                                             \
    if (!(cond)) {                                                 \
      if (atomic_fetch_add(&failures, 1) < 20) {                   \
        fprintf(stderr, "uvchan-stress-thread: FAILED %s: ", #cond); \
        fprintf(stderr, __VA_ARGS__);                              \
        fprintf(stderr, "\n");                                     \
      }                                                            \
    }                                                              \
  } while (0)

static uint64_t rnd(uint64_t* s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

static uint32_t below(uint64_t* s, uint32_t n) {
  return (uint32_t)((rnd(s) >> 32) % n);
}

static val_t make_val(int p, long seq) {
  val_t v;
  v.id = (uint64_t)p << 32 | (uint64_t)seq;
  v.check = ~v.id;
  return v;
}

/* Where a value came from, or -1 for one no producer made. */
static long slot_of(const val_t* v) {
  uint64_t p = v->id >> 32, seq = v->id & 0xffffffffu;
  if (v->check != ~v->id || p >= NPROD || seq >= (uint64_t)per_producer)
    return -1;
  return (long)(p * (uint64_t)per_producer + seq);
}

static void record_received(const val_t* v) {
  long s = slot_of(v);
  if (s < 0) {
    atomic_fetch_add(&invented, 1);
    return;
  }
  atomic_fetch_add_explicit(&got[s], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&received_total, 1, memory_order_relaxed);
}

static void on_destroyed(uvchan_t* ch, void* value) {
  long s = slot_of(value);
  (void)ch;
  if (s < 0)
    atomic_fetch_add(&invented, 1);
  else
    atomic_fetch_add_explicit(&destroyed[s], 1, memory_order_relaxed);
}

/* The shared channels; their first ends live on the main thread's context, which never runs a
 * loop: threads without a loop use those ends. */
static uvchan_t shared[NSHARED];
static uv_sem_t producers_done;
static atomic_int stopping; /* every producer is done: the snipers stop */

/* ---- loops ---- */

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uv_thread_t thread;
  int idx;
  uint64_t rng;
  uvchan_t ends[NSHARED];
  uvchan_t local;
  int producers_left;
  /* the sniper: victim tasks and callback receives on short-lived ends */
  uv_timer_t sniper;
  uvchan_task_ref_t victim;
  int victim_alive;
  uvchan_t temp_end;
  int temp_attached;
  uvchan_recv_t temp_req;
  val_t temp_val;
  int temp_pending;
} loop_t;

static loop_t loops[NLOOPS];

typedef struct {
  loop_t* l;
  int p; /* producer number */
} producer_arg_t;

static producer_arg_t producer_args[NLOOPS * LOOP_PRODUCERS];

static void loop_producer(void* arg) {
  producer_arg_t* pa = arg;
  loop_t* l = pa->l;
  val_t v;
  int st, idx;

  for (long seq = 0; seq < per_producer; seq++) {
    unsigned a = below(&l->rng, NSHARED), b = below(&l->rng, NSHARED);
    v = make_val(pa->p, seq);
    switch (below(&l->rng, 5)) {
      case 0: /* a plain send waits for a consumer: never to the channel nobody drains */
        st = uvchan_task_send(&l->ends[a == LOSSY ? 0 : a], &v);
        break;
      case 1:
        st = uvchan_task_send_timeout(&l->ends[a], &v, below(&l->rng, 3));
        break;
      case 2:
        st = uvchan_try_send(&l->ends[a], &v);
        break;
      default: { /* select: two shared channels and the local one, one value for all cases */
        uvchan_case_t c[3] = {UVCHAN_CASE_SEND(&l->ends[a], &v), UVCHAN_CASE_SEND(&l->ends[b], &v),
                              UVCHAN_CASE_SEND(&l->local, &v)};
        int with_deadline = a == LOSSY || b == LOSSY || below(&l->rng, 2);
        idx = with_deadline ? uvchan_task_select_timeout(c, 3, below(&l->rng, 3), &st)
                            : uvchan_task_select(c, 3, &st);
        if (idx < 0)
          st = idx;
        break;
      }
    }
    CHECK(st == 0 || st == UV_ETIMEDOUT || st == UV_EAGAIN || st == UV_EPIPE,
          "producer %d: send status %d", pa->p, st);
    sent[(long)pa->p * per_producer + seq] = st == 0;
  }
  if (--l->producers_left == 0)
    CHECK(uvchan_close(&l->local) == 0, "close local");
  uv_sem_post(&producers_done);
}

/* Receives from every drained shared channel and the local one until all of them have ended. */
static void loop_consumer(void* arg) {
  loop_t* l = arg;
  uvchan_case_t c[NSHARED + 1];
  val_t vals[NSHARED + 1];
  unsigned n = 0, live;
  int st, idx;

  for (unsigned i = 0; i < NSHARED; i++)
    if (i != LOSSY) {
      uvchan_case_t k = UVCHAN_CASE_RECV(&l->ends[i], &vals[n]);
      c[n++] = k;
    }
  {
    uvchan_case_t k = UVCHAN_CASE_RECV(&l->local, &vals[n]);
    c[n++] = k;
  }
  live = n;
  while (live > 0) {
    if (below(&l->rng, 4) == 0)
      idx = uvchan_task_select_timeout(c, n, 1 + below(&l->rng, 3), &st);
    else
      idx = uvchan_task_select(c, n, &st);
    if (idx == UV_ETIMEDOUT)
      continue;
    CHECK(idx >= 0, "consumer select: %d", idx);
    if (idx < 0)
      break;
    if (st == 0) {
      record_received(&vals[idx]);
    } else {
      CHECK(st == UV_EOF, "consumer case status %d", st);
      c[idx].chan = NULL; /* Go's nil-channel idiom: that case is off */
      live--;
    }
  }
}

/* A victim receives once, and is cancelled at a random moment by the sniper. */
static void victim(void* arg) {
  loop_t* l = arg;
  val_t v, w;
  unsigned a = below(&l->rng, NSHARED), b = below(&l->rng, NSHARED);
  int st, idx;

  switch (below(&l->rng, 3)) {
    case 0:
      st = uvchan_task_recv(&l->ends[a], &v);
      break;
    case 1:
      st = uvchan_task_recv_timeout(&l->ends[a], &v, below(&l->rng, 3));
      break;
    default: {
      uvchan_case_t c[3] = {UVCHAN_CASE_RECV(&l->ends[a], &v), UVCHAN_CASE_RECV(&l->ends[b], &w),
                            UVCHAN_CASE_RECV(&l->local, &w)};
      idx = uvchan_task_select(c, 3, &st);
      if (idx < 0)
        st = idx;
      else if (idx > 0 && st == 0)
        v = w;
      break;
    }
  }
  CHECK(st == 0 || st == UV_ECANCELED || st == UV_ETIMEDOUT || st == UV_EOF, "victim: %d", st);
  if (st == 0)
    record_received(&v);
  l->victim_alive = 0;
}

static void temp_received(uvchan_recv_t* req, int status) {
  loop_t* l = req->data;
  l->temp_pending = 0;
  CHECK(status == 0 || status == UV_ECANCELED || status == UV_ETIMEDOUT || status == UV_EOF,
        "callback receive: %d", status);
  if (status == 0)
    record_received(&l->temp_val);
}

static void sniper_closed(uv_handle_t* h) {
  (void)h;
}

static void sniper_tick(uv_timer_t* t) {
  loop_t* l = t->data;
  int stop = atomic_load(&stopping);

  if (l->victim_alive && (stop || below(&l->rng, 2) == 0))
    CHECK(uvchan_task_cancel(&l->victim) == 0, "cancel victim");
  if (l->temp_attached && (stop || below(&l->rng, 3) == 0)) {
    if (l->temp_pending && below(&l->rng, 2) == 0) {
      int r = uvchan_cancel((uvchan_req_t*)&l->temp_req);
      CHECK(r == 0 || r == UV_EBUSY, "cancel callback receive: %d", r);
    }
    /* destroying the end ends a receive still waiting on it (UV_ECANCELED) */
    CHECK(uvchan_destroy(&l->temp_end) == 0, "destroy temporary end");
    l->temp_attached = 0;
  }
  if (stop) {
    uv_close((uv_handle_t*)t, sniper_closed);
    return;
  }
  if (!l->victim_alive) {
    l->victim_alive = 1;
    CHECK(uvchan_task_spawn_ref(&l->ctx, &l->victim, victim, l, NULL) == 0, "spawn victim");
  }
  if (!l->temp_attached && !l->temp_pending) {
    unsigned a = below(&l->rng, NSHARED);
    CHECK(uvchan_attach(&l->ctx, &l->temp_end, &shared[a]) == 0, "attach");
    l->temp_attached = 1;
    l->temp_req.data = l;
    if (uvchan_recv_timeout(&l->temp_req, &l->temp_end, &l->temp_val, below(&l->rng, 4),
                            temp_received) == 0)
      l->temp_pending = 1;
  }
}

static void loop_main(void* arg) {
  loop_t* l = arg;
  if (uv_loop_init(&l->loop) != 0 || uvchan_ctx_init(&l->loop, &l->ctx) != 0) {
    fprintf(stderr, "uvchan-stress-thread: cannot initialise a loop\n");
    exit(2);
  }
  uvchan_ctx_seed(&l->ctx, l->rng);
  for (int i = 0; i < NSHARED; i++)
    CHECK(uvchan_attach(&l->ctx, &l->ends[i], &shared[i]) == 0, "attach");
  CHECK(uvchan_init(&l->ctx, &l->local, sizeof(val_t), below(&l->rng, 9)) == 0, "local");
  uvchan_set_destructor(&l->local, on_destroyed);
  l->producers_left = LOOP_PRODUCERS;
  for (int i = 0; i < LOOP_PRODUCERS; i++) {
    producer_arg_t* pa = &producer_args[l->idx * LOOP_PRODUCERS + i];
    pa->l = l;
    pa->p = l->idx * LOOP_PRODUCERS + i;
    CHECK(uvchan_task_spawn(&l->ctx, loop_producer, pa, NULL) == 0, "spawn producer");
  }
  for (int i = 0; i < LOOP_CONSUMERS; i++)
    CHECK(uvchan_task_spawn(&l->ctx, loop_consumer, l, NULL) == 0, "spawn consumer");
  uv_timer_init(&l->loop, &l->sniper);
  l->sniper.data = l;
  uv_timer_start(&l->sniper, sniper_tick, 1, 1);
  uv_run(&l->loop, UV_RUN_DEFAULT);
  CHECK(uvchan_ctx_walk_waiting(&l->ctx, NULL, NULL) == 0, "loop %d ended with waiters", l->idx);
  for (int i = 0; i < NSHARED; i++)
    CHECK(uvchan_destroy(&l->ends[i]) == 0, "destroy end");
  CHECK(uvchan_destroy(&l->local) == 0, "destroy local");
  uv_run(&l->loop, UV_RUN_DEFAULT);
  CHECK(uvchan_ctx_close(&l->ctx, NULL) == 0, "ctx close");
  uv_run(&l->loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&l->loop) == 0, "loop close");
}

/* ---- threads without a loop ---- */

typedef struct {
  uv_thread_t thread;
  int p;
  uint64_t rng;
} thread_arg_t;

static void thread_producer(void* arg) {
  thread_arg_t* t = arg;
  val_t v;
  int st;
  for (long seq = 0; seq < per_producer; seq++) {
    unsigned a = below(&t->rng, NSHARED);
    v = make_val(t->p, seq);
    switch (below(&t->rng, 3)) {
      case 0:
        st = uvchan_thread_send(&shared[a == LOSSY ? 0 : a], &v);
        break;
      case 1:
        st = uvchan_thread_send_timeout(&shared[a], &v, below(&t->rng, 3));
        break;
      default:
        st = uvchan_try_send(&shared[a], &v);
        break;
    }
    CHECK(st == 0 || st == UV_ETIMEDOUT || st == UV_EAGAIN || st == UV_EPIPE,
          "thread producer %d: %d", t->p, st);
    sent[(long)t->p * per_producer + seq] = st == 0;
  }
  uv_sem_post(&producers_done);
}

static void thread_consumer(void* arg) {
  thread_arg_t* t = arg;
  int ended[NSHARED] = {0}, live = NSHARED - 1, st;
  val_t v;
  ended[LOSSY] = 1;
  while (live > 0) {
    unsigned a = below(&t->rng, NSHARED);
    if (ended[a])
      continue;
    st = below(&t->rng, 4) == 0 ? uvchan_try_recv(&shared[a], &v)
                                 : uvchan_thread_recv_timeout(&shared[a], &v, below(&t->rng, 3));
    if (st == 0) {
      record_received(&v);
    } else if (st == UV_EOF) {
      ended[a] = 1;
      live--;
    } else {
      CHECK(st == UV_ETIMEDOUT || st == UV_EAGAIN, "thread consumer: %d", st);
    }
  }
}

/* ---- a round ---- */

static void round_run(uint64_t seed) {
  uv_loop_t main_loop;
  uvchan_ctx_t main_ctx;
  thread_arg_t producers[NTHREAD_PRODUCERS], consumers[NTHREAD_CONSUMERS];
  long n = NPROD * per_producer, nsent = 0, nget = 0, ndtor = 0;
  uint64_t rng = seed;

  sent = calloc((size_t)n, 1);
  got = calloc((size_t)n, 1);
  destroyed = calloc((size_t)n, 1);
  if (sent == NULL || got == NULL || destroyed == NULL) {
    fprintf(stderr, "uvchan-stress-thread: out of memory\n");
    exit(2);
  }
  atomic_store(&invented, 0);
  atomic_store(&received_total, 0);
  atomic_store(&stopping, 0);
  uv_sem_init(&producers_done, 0);
  uv_loop_init(&main_loop);
  memset(&main_ctx, 0, sizeof(main_ctx));
  uvchan_ctx_init(&main_loop, &main_ctx);
  for (int i = 0; i < NSHARED; i++) {
    CHECK(uvchan_init_shared(&main_ctx, &shared[i], sizeof(val_t), shared_caps[i]) == 0, "init");
    uvchan_set_destructor(&shared[i], on_destroyed);
  }
  for (int i = 0; i < NLOOPS; i++) {
    memset(&loops[i], 0, sizeof(loops[i]));
    loops[i].idx = i;
    loops[i].rng = rnd(&rng) | 1;
    uv_thread_create(&loops[i].thread, loop_main, &loops[i]);
  }
  for (int i = 0; i < NTHREAD_PRODUCERS; i++) {
    producers[i].p = NLOOPS * LOOP_PRODUCERS + i;
    producers[i].rng = rnd(&rng) | 1;
    uv_thread_create(&producers[i].thread, thread_producer, &producers[i]);
  }
  for (int i = 0; i < NTHREAD_CONSUMERS; i++) {
    consumers[i].rng = rnd(&rng) | 1;
    uv_thread_create(&consumers[i].thread, thread_consumer, &consumers[i]);
  }
  uv_sleep(1 + below(&rng, 10));
  CHECK(uvchan_close(&shared[EARLY]) == 0, "early close"); /* from a thread without a loop */
  for (int i = 0; i < NPROD; i++)
    uv_sem_wait(&producers_done);
  atomic_store(&stopping, 1);
  for (int i = 0; i < NSHARED; i++) {
    int r = uvchan_close(&shared[i]);
    CHECK(r == 0 || (i == EARLY && r == UV_EPIPE), "close %d: %d", i, r);
  }
  for (int i = 0; i < NTHREAD_PRODUCERS; i++)
    uv_thread_join(&producers[i].thread);
  for (int i = 0; i < NTHREAD_CONSUMERS; i++)
    uv_thread_join(&consumers[i].thread);
  for (int i = 0; i < NLOOPS; i++)
    uv_thread_join(&loops[i].thread);
  for (int i = 0; i < NSHARED; i++)
    CHECK(uvchan_destroy(&shared[i]) == 0, "destroy shared"); /* the rest to the destructor */
  CHECK(uvchan_ctx_close(&main_ctx, NULL) == 0, "main ctx close");
  uv_run(&main_loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&main_loop) == 0, "main loop close");
  uv_sem_destroy(&producers_done);

  /* the ledger */
  CHECK(atomic_load(&invented) == 0, "%ld values nobody sent", atomic_load(&invented));
  for (long s = 0; s < n; s++) {
    unsigned g = atomic_load(&got[s]), d = atomic_load(&destroyed[s]);
    nsent += sent[s];
    nget += g;
    ndtor += d;
    CHECK(g + d == sent[s], "value %ld/%ld: sent %u, received %u, destroyed %u", s / per_producer,
          s % per_producer, sent[s], g, d);
  }
  printf("uvchan-stress-thread: %ld values offered, %ld sent, %ld received, %ld destroyed\n", n,
         nsent, nget, ndtor);
  free(sent);
  free((void*)got);
  free((void*)destroyed);
}

int main(int argc, char** argv) {
  uint64_t seed = uv_hrtime();
  long rounds = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-s") == 0)
      seed = strtoull(argv[i + 1], NULL, 0);
    else if (strcmp(argv[i], "-x") == 0)
      scale = atol(argv[i + 1]);
    else if (strcmp(argv[i], "-r") == 0)
      rounds = atol(argv[i + 1]);
  }
  if (scale < 1)
    scale = 1;
  per_producer = 20000 * scale / 100;
  if (per_producer < 1)
    per_producer = 1;
  for (long r = 0; r < rounds; r++) {
    uint64_t s = seed + (uint64_t)r * 0x9e3779b97f4a7c15ull;
    printf("uvchan-stress-thread: round %ld of %ld, seed %llu, scale %ld%% (replay: "
           "uvchan-stress-thread -s %llu -x %ld)\n",
           r + 1, rounds, (unsigned long long)s, scale, (unsigned long long)s, scale);
    fflush(stdout);
    round_run(s | 1);
  }
  if (atomic_load(&failures) != 0) {
    fprintf(stderr, "uvchan-stress-thread: %d check(s) failed\n", atomic_load(&failures));
    return 1;
  }
  return 0;
}
