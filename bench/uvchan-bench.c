/* uvchan's benchmarks: the same workloads as bench/peers/go, one line per run:
 *   <workload> <n> <value> <unit> [details]
 * usage: uvchan-bench -w WORKLOAD|all [-n N] */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "uvchan.h"

static uv_loop_t loop;
static uvchan_ctx_t ctx;
static long N = 1000000;

static double now_ns(void) {
  return (double)uv_hrtime();
}

static void ctx_open(void) {
  uv_loop_init(&loop);
  uvchan_ctx_init(&loop, &ctx);
}

static void ctx_done_on(uv_loop_t* l, uvchan_ctx_t* c) {
  uv_run(l, UV_RUN_DEFAULT);
  if (uvchan_ctx_close(c, NULL) != 0) {
    fprintf(stderr, "uvchan-bench: context still busy\n");
    exit(1);
  }
  uv_run(l, UV_RUN_DEFAULT);
  uv_loop_close(l);
}

static void ctx_done(void) {
  ctx_done_on(&loop, &ctx);
}

/* Resident set size in bytes, from /proc/self/statm. */
static long rss_bytes(void) {
  long pages = 0, resident = 0;
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = 0;
  fclose(f);
  return resident * 4096;
}

/* Minor page faults of the process so far (getrusage). A fault is counted whether it maps a new
 * page or the kernel's shared zero page, so the count is what a machine without a zero page would
 * pay in memory and time; the resident size alone is not. */
static long minor_faults(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  return ru.ru_minflt;
}

/* Page faults taken as traps (perf's software event; -1 where perf events are unavailable). A page
 * faulted in ahead by MADV_POPULATE_WRITE counts in minor_faults() but costs no trap. */
static long fault_traps(void) {
#if defined(__linux__) && defined(SYS_perf_event_open)
  static int fd = -2;
  struct perf_event_attr pe;
  long long n;
  if (fd == -2) {
    memset(&pe, 0, sizeof(pe));
    pe.type = PERF_TYPE_SOFTWARE;
    pe.size = sizeof(pe);
    pe.config = PERF_COUNT_SW_PAGE_FAULTS;
    pe.exclude_kernel = 1; /* what perf_event_paranoid 2 allows anyone; user faults still count */
    pe.exclude_hv = 1;
    fd = (int)syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
  }
  if (fd >= 0 && read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
    return (long)n;
#endif
  return -1;
}

/* Bytes of page tables (VmPTE in /proc/self/status): not in the resident size, but memory too. */
static long page_table_bytes(void) {
  char line[128];
  long kb = 0;
  FILE* f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmPTE: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb * 1024;
}

/* ---- pingpong (tasks) ---- */

static uvchan_t pa, pb;
static double t0, t1;

static void pong(void* arg) {
  long v;
  (void)arg;
  while (uvchan_task_recv(&pa, &v) == 0) {
    v++;
    uvchan_task_send(&pb, &v);
  }
  uvchan_close(&pb);
}

static void ping(void* arg) {
  long v;
  (void)arg;
  t0 = now_ns();
  for (long i = 0; i < N; i++) {
    uvchan_task_send(&pa, &i);
    uvchan_task_recv(&pb, &v);
  }
  t1 = now_ns();
  uvchan_close(&pa);
}

static void bench_pingpong(void) {
  ctx_open();
  uvchan_init(&ctx, &pa, sizeof(long), 0);
  uvchan_init(&ctx, &pb, sizeof(long), 0);
  uvchan_task_spawn(&ctx, pong, NULL, NULL);
  uvchan_task_spawn(&ctx, ping, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("pingpong %ld %.1f ns/roundtrip\n", N, (t1 - t0) / (double)N);
  uvchan_destroy(&pa);
  uvchan_destroy(&pb);
  ctx_done();
}

/* ---- buffered (tasks): cap 1024, N*10 items ---- */

static uvchan_t bc, bdone;

static void bsum(void* arg) {
  long v, s = 0;
  (void)arg;
  while (uvchan_task_recv(&bc, &v) == 0)
    s += v;
  uvchan_task_send(&bdone, &s);
}

static void bprod(void* arg) {
  long items = N * 10, s;
  (void)arg;
  t0 = now_ns();
  for (long i = 0; i < items; i++)
    uvchan_task_send(&bc, &i);
  uvchan_close(&bc);
  uvchan_task_recv(&bdone, &s);
  t1 = now_ns();
  if (s != items * (items - 1) / 2)
    fprintf(stderr, "buffered: wrong sum\n"), exit(1);
}

static void bench_buffered(void) {
  ctx_open();
  uvchan_init(&ctx, &bc, sizeof(long), 1024);
  uvchan_init(&ctx, &bdone, sizeof(long), 0);
  uvchan_task_spawn(&ctx, bsum, NULL, NULL);
  uvchan_task_spawn(&ctx, bprod, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("buffered1024 %ld %.1f ns/item\n", N * 10, (t1 - t0) / (double)(N * 10));
  uvchan_destroy(&bc);
  uvchan_destroy(&bdone);
  ctx_done();
}

/* ---- pipeline (tasks): 4 stages of unbuffered channels ---- */

enum { STAGES = 4 };
static uvchan_t pipe_ch[STAGES + 1];

static void stage(void* arg) {
  long k = (long)(intptr_t)arg, v;
  while (uvchan_task_recv(&pipe_ch[k], &v) == 0) {
    v = v * 2 % 1000003;
    uvchan_task_send(&pipe_ch[k + 1], &v);
  }
  uvchan_close(&pipe_ch[k + 1]);
}

static void pipe_src(void* arg) {
  (void)arg;
  for (long i = 0; i < N; i++)
    uvchan_task_send(&pipe_ch[0], &i);
  uvchan_close(&pipe_ch[0]);
}

static void pipe_sink(void* arg) {
  long v, cnt = 0;
  (void)arg;
  t0 = now_ns();
  while (uvchan_task_recv(&pipe_ch[STAGES], &v) == 0)
    cnt++;
  t1 = now_ns();
  if (cnt != N)
    fprintf(stderr, "pipeline: lost items\n"), exit(1);
}

static void bench_pipeline(void) {
  ctx_open();
  for (int i = 0; i <= STAGES; i++)
    uvchan_init(&ctx, &pipe_ch[i], sizeof(long), 0);
  for (long s = 0; s < STAGES; s++)
    uvchan_task_spawn(&ctx, stage, (void*)(intptr_t)s, NULL);
  uvchan_task_spawn(&ctx, pipe_sink, NULL, NULL);
  uvchan_task_spawn(&ctx, pipe_src, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("pipeline%d %ld %.1f ns/item/stage\n", STAGES, N, (t1 - t0) / (double)(N * STAGES));
  for (int i = 0; i <= STAGES; i++)
    uvchan_destroy(&pipe_ch[i]);
  ctx_done();
}

/* ---- select (tasks): send to one of 4 buffered channels, select-receive from all 4 ---- */

static void select_task(void* arg) {
  uvchan_t cs[4];
  long v;
  (void)arg;
  for (int i = 0; i < 4; i++)
    uvchan_init(&ctx, &cs[i], sizeof(long), 1);
  uvchan_case_t cases[4] = {UVCHAN_CASE_RECV(&cs[0], &v), UVCHAN_CASE_RECV(&cs[1], &v),
                            UVCHAN_CASE_RECV(&cs[2], &v), UVCHAN_CASE_RECV(&cs[3], &v)};
  t0 = now_ns();
  for (long i = 0; i < N; i++) {
    uvchan_task_send(&cs[i % 4], &i);
    uvchan_task_select(cases, 4, NULL);
  }
  t1 = now_ns();
  for (int i = 0; i < 4; i++)
    uvchan_destroy(&cs[i]);
}

static void bench_select(void) {
  ctx_open();
  uvchan_task_spawn(&ctx, select_task, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("select4 %ld %.1f ns/op\n", N, (t1 - t0) / (double)N);
  ctx_done();
}

/* ---- sieve (tasks): 2000 primes ---- */

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

static int last_prime;
static void sieve_main(void* arg) {
  enum { P = 2000 };
  uvchan_t* ch = calloc(P + 1, sizeof(uvchan_t));
  filt_t* fs = calloc(P, sizeof(filt_t));
  uvchan_task_attr_t small = {.stack_size = 16 * 1024};
  (void)arg;
  t0 = now_ns();
  uvchan_init(&ctx, &ch[0], sizeof(int), 0);
  uvchan_task_spawn(&ctx, gen, &ch[0], &small);
  for (int i = 0; i < P; i++) {
    uvchan_task_recv(&ch[i], &last_prime);
    uvchan_init(&ctx, &ch[i + 1], sizeof(int), 0);
    fs[i] = (filt_t){&ch[i], &ch[i + 1], last_prime};
    uvchan_task_spawn(&ctx, filt, &fs[i], &small);
  }
  t1 = now_ns();
  for (int i = 0; i <= P; i++)
    uvchan_destroy(&ch[i]);
  uvchan_task_yield();
  free(ch);
  free(fs);
}

static void bench_sieve(void) {
  long f0, x0;
  ctx_open();
  f0 = minor_faults();
  x0 = fault_traps();
  uvchan_task_spawn(&ctx, sieve_main, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("sieve 2000 %.3f ms (last prime %d), %ld page faults, %ld as traps\n", (t1 - t0) / 1e6,
         last_prime, minor_faults() - f0, x0 < 0 ? -1 : fault_traps() - x0);
  ctx_done();
}

/* ---- parked (tasks): 100k tasks parked on one receive; resident bytes per task ---- */

static uvchan_t park_c;
static void parked_task(void* arg) {
  long v;
  (void)arg;
  uvchan_task_recv(&park_c, &v);
}

/* 100k tasks at the default stack size, or 1M with the smallest stacks (parked1m). */
static void parked_run(long n, size_t stack_size) {
  uvchan_task_attr_t attr = {.stack_size = stack_size};
  long r0, r1, f0, f1, p0, p1, x0, x1;
  double ts, tw;
  ctx_open();
  uvchan_init(&ctx, &park_c, sizeof(long), 0);
  r0 = rss_bytes();
  p0 = page_table_bytes();
  x0 = fault_traps();
  f0 = minor_faults();
  t0 = now_ns();
  for (long i = 0; i < n; i++)
    if (uvchan_task_spawn(&ctx, parked_task, NULL, &attr) != 0)
      fprintf(stderr, "parked: spawn %ld failed\n", i), exit(1);
  uv_run(&loop, UV_RUN_DEFAULT); /* all start and park */
  ts = now_ns();
  f1 = minor_faults();
  x1 = fault_traps();
  r1 = rss_bytes();
  p1 = page_table_bytes();
  uvchan_close(&park_c);
  uv_run(&loop, UV_RUN_DEFAULT);
  tw = now_ns();
  printf("%s %ld %.0f bytes/task rss, spawn+park %.1f ns/task, spawn+wake+exit %.1f ns/task, "
         "%.2f faults/task, %.0f page-table bytes/task, %.3f fault traps/task\n",
         n == 100000 ? "parked" : "parked1m", n, (double)(r1 - r0) / (double)n,
         (ts - t0) / (double)n, (tw - t0) / (double)n, (double)(f1 - f0) / (double)n,
         (double)(p1 - p0) / (double)n, x0 < 0 ? -1.0 : (double)(x1 - x0) / (double)n);
  uvchan_destroy(&park_c);
  ctx_done();
}

static void bench_parked(void) {
  parked_run(100000, 0);
}

static void bench_parked1m(void) {
  parked_run(1000000, UVCHAN_MIN_STACK_SIZE);
}

/* ---- spawn: tasks started and finished in waves of 10k (a task per connection, say) ---- */

static uvchan_wg_t spawn_wg;
static void spawned(void* arg) {
  (void)arg;
}
static void spawner(void* arg) {
  uvchan_task_attr_t attr = {.wg = &spawn_wg};
  (void)arg;
  t0 = now_ns();
  for (long done = 0; done < N;) {
    long wave = N - done < 10000 ? N - done : 10000;
    for (long i = 0; i < wave; i++)
      if (uvchan_task_spawn(&ctx, spawned, NULL, &attr) != 0)
        fprintf(stderr, "spawn: failed\n"), exit(1);
    uvchan_task_wg_wait(&spawn_wg);
    done += wave;
  }
  t1 = now_ns();
}

static void bench_spawn(void) {
  long f0;
  ctx_open();
  uvchan_wg_init(&ctx, &spawn_wg);
  f0 = minor_faults();
  uvchan_task_spawn(&ctx, spawner, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("spawn %ld %.1f ns/task (spawn, run, exit), %.4f faults/task\n", N, (t1 - t0) / (double)N,
         (double)(minor_faults() - f0) / (double)N);
  ctx_done();
}

/* ---- pingpong_cb: two callback chains bouncing a value over two unbuffered channels ---- */

static struct {
  uvchan_send_t ps, qs;
  uvchan_recv_t pr, qr;
  long pv, qv, i;
} cb;

static void cb_ping_recv(uvchan_recv_t* r, int st);
static void cb_ping_sent(uvchan_send_t* r, int st) {
  (void)r;
  (void)st;
  uvchan_recv(&cb.pr, &pb, &cb.pv, cb_ping_recv);
}
static void cb_ping_recv(uvchan_recv_t* r, int st) {
  (void)r;
  (void)st;
  if (++cb.i == N) {
    t1 = now_ns();
    uvchan_close(&pa);
    return;
  }
  uvchan_send(&cb.ps, &pa, &cb.i, cb_ping_sent);
}
static void cb_pong_recv(uvchan_recv_t* r, int st);
static void cb_pong_sent(uvchan_send_t* r, int st) {
  (void)r;
  (void)st;
  uvchan_recv(&cb.qr, &pa, &cb.qv, cb_pong_recv);
}
static void cb_pong_recv(uvchan_recv_t* r, int st) {
  (void)r;
  if (st != 0)
    return;
  cb.qv++;
  uvchan_send(&cb.qs, &pb, &cb.qv, cb_pong_sent);
}

static void bench_pingpong_cb(void) {
  ctx_open();
  uvchan_init(&ctx, &pa, sizeof(long), 0);
  uvchan_init(&ctx, &pb, sizeof(long), 0);
  cb.i = 0;
  uvchan_recv(&cb.qr, &pa, &cb.qv, cb_pong_recv);
  t0 = now_ns();
  uvchan_send(&cb.ps, &pa, &cb.i, cb_ping_sent);
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("pingpong_cb %ld %.1f ns/roundtrip\n", N, (t1 - t0) / (double)N);
  uvchan_destroy(&pa);
  uvchan_destroy(&pb);
  ctx_done();
}

/* ---- buffered_cb: a callback producer and consumer over a cap-1024 channel ---- */

static struct {
  uvchan_send_t s;
  uvchan_recv_t r;
  long sv, rv, items, sum, got;
} bb;

static void bb_sent(uvchan_send_t* r, int st) {
  (void)r;
  (void)st;
  /* Fill what the buffer takes now, then wait with one request. */
  while (++bb.sv < bb.items && uvchan_try_send(&bc, &bb.sv) == 0) {
  }
  if (bb.sv >= bb.items) {
    uvchan_close(&bc);
    return;
  }
  uvchan_send(&bb.s, &bc, &bb.sv, bb_sent);
}

static void bb_recv(uvchan_recv_t* r, int st) {
  (void)r;
  if (st != 0) {
    t1 = now_ns();
    return;
  }
  bb.sum += bb.rv;
  bb.got++;
  while (uvchan_try_recv(&bc, &bb.rv) == 0) {
    bb.sum += bb.rv;
    bb.got++;
  }
  uvchan_recv(&bb.r, &bc, &bb.rv, bb_recv);
}

static void bench_buffered_cb(void) {
  ctx_open();
  uvchan_init(&ctx, &bc, sizeof(long), 1024);
  memset(&bb, 0, sizeof(bb));
  bb.items = N * 10;
  t0 = now_ns();
  uvchan_recv(&bb.r, &bc, &bb.rv, bb_recv);
  uvchan_send(&bb.s, &bc, &bb.sv, bb_sent);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (bb.got != bb.items || bb.sum != bb.items * (bb.items - 1) / 2)
    fprintf(stderr, "buffered_cb: lost items\n"), exit(1);
  printf("buffered_cb %ld %.1f ns/item\n", bb.items, (t1 - t0) / (double)bb.items);
  uvchan_destroy(&bc);
  ctx_done();
}

/* ---- parked_cb: 1M pending receive requests; bytes per request ---- */

static void nop_recv(uvchan_recv_t* r, int st) {
  (void)r;
  (void)st;
}

static void bench_parked_cb(void) {
  const long n = 1000000;
  uvchan_recv_t* reqs;
  long r0, r1;
  ctx_open();
  uvchan_init(&ctx, &park_c, sizeof(long), 0);
  r0 = rss_bytes();
  reqs = malloc((size_t)n * sizeof(*reqs));
  t0 = now_ns();
  for (long i = 0; i < n; i++)
    uvchan_recv(&reqs[i], &park_c, NULL, nop_recv);
  t1 = now_ns();
  r1 = rss_bytes();
  printf("parked_cb %ld %.0f bytes/request rss (sizeof %zu), %.1f ns/start\n", n,
         (double)(r1 - r0) / (double)n, sizeof(uvchan_recv_t), (t1 - t0) / (double)n);
  uvchan_destroy(&park_c);
  uv_run(&loop, UV_RUN_DEFAULT);
  free(reqs);
  ctx_done();
}

/* ---- scale: cost of one send+receive with K other requests waiting elsewhere ---- */

static void bench_scale(void) {
  long ks[] = {1, 1000, 100000, 1000000};
  for (int k = 0; k < 4; k++) {
    uvchan_t busy, other;
    uvchan_recv_t* reqs = malloc((size_t)ks[k] * sizeof(*reqs));
    long v = 0;
    ctx_open();
    uvchan_init(&ctx, &busy, sizeof(long), 1);
    uvchan_init(&ctx, &other, sizeof(long), 0);
    for (long i = 0; i < ks[k]; i++)
      uvchan_recv(&reqs[i], &other, NULL, nop_recv);
    t0 = now_ns();
    for (long i = 0; i < N; i++) {
      uvchan_try_send(&busy, &i);
      uvchan_try_recv(&busy, &v);
    }
    t1 = now_ns();
    printf("scale %ld %.1f ns/op (%ld other requests waiting)\n", N, (t1 - t0) / (double)N, ks[k]);
    uvchan_destroy(&other);
    uvchan_destroy(&busy);
    uv_run(&loop, UV_RUN_DEFAULT);
    free(reqs);
    ctx_done();
  }
}

/* ---- stages (callbacks): a source, K stages (x*2 % p, one job each), a sink, over unbuffered
 * channels like the task pipeline; relayK_cb is the same chain written by hand with one receive
 * and one send request per hop, so the difference is what a uvchan_stage_t costs. ---- */

enum { MAXSTAGES = 4 };
static uvchan_t st_ch[MAXSTAGES + 1];
static struct {
  uvchan_send_t s;
  uvchan_recv_t r;
  long sv, rv, got, sum;
} sp;

static void sp_sent(uvchan_send_t* r, int st) {
  (void)r;
  (void)st;
  while (++sp.sv < N && uvchan_try_send(&st_ch[0], &sp.sv) == 0) {
  }
  if (sp.sv >= N) {
    uvchan_close(&st_ch[0]);
    return;
  }
  uvchan_send(&sp.s, &st_ch[0], &sp.sv, sp_sent);
}

static int sp_k;
static void sp_recv(uvchan_recv_t* r, int st) {
  if (st != 0) {
    t1 = now_ns();
    return;
  }
  do {
    sp.sum += sp.rv;
    sp.got++;
  } while (uvchan_try_recv(&st_ch[sp_k], &sp.rv) == 0);
  uvchan_recv(r, &st_ch[sp_k], &sp.rv, sp_recv);
}

static int stage_fn(uvchan_job_t* job, void* value) {
  long v = *(long*)value * 2 % 1000003;
  return uvchan_job_emit(job, &v);
}

/* One hand-written hop: receive, compute, send, and again. */
typedef struct {
  uvchan_recv_t r;
  uvchan_send_t s;
  uvchan_t* in;
  uvchan_t* out;
  long v;
} relay_t;
static relay_t relays[MAXSTAGES];

static void relay_sent(uvchan_send_t* r, int st);
static void relay_recv(uvchan_recv_t* r, int st);

/* Moves values while both ends are ready, then parks one request. */
static void relay_next(relay_t* h) {
  int st;
  for (;;) {
    st = uvchan_try_recv(h->in, &h->v);
    if (st == UV_EAGAIN) {
      uvchan_recv(&h->r, h->in, &h->v, relay_recv);
      return;
    }
    if (st != 0) {
      uvchan_close(h->out);
      return;
    }
    h->v = h->v * 2 % 1000003;
    if (uvchan_try_send(h->out, &h->v) != 0) {
      uvchan_send(&h->s, h->out, &h->v, relay_sent);
      return;
    }
  }
}

static void relay_recv(uvchan_recv_t* r, int st) {
  relay_t* h = r->data;
  if (st != 0) {
    uvchan_close(h->out);
    return;
  }
  h->v = h->v * 2 % 1000003;
  if (uvchan_try_send(h->out, &h->v) != 0) {
    uvchan_send(&h->s, h->out, &h->v, relay_sent);
    return;
  }
  relay_next(h);
}

static void relay_sent(uvchan_send_t* r, int st) {
  (void)st;
  relay_next(r->data);
}

static void stages_run(int k, int hand) {
  uvchan_stage_t stg[MAXSTAGES];
  long expect = 0, v;
  ctx_open();
  for (int i = 0; i <= k; i++)
    uvchan_init(&ctx, &st_ch[i], sizeof(long), 0);
  for (int i = 0; i < k; i++) {
    if (hand) {
      relays[i].in = &st_ch[i];
      relays[i].out = &st_ch[i + 1];
      relays[i].r.data = relays[i].s.data = &relays[i];
    } else {
      uvchan_stage_init(&ctx, &stg[i], &st_ch[i], &st_ch[i + 1], stage_fn, NULL);
    }
  }
  memset(&sp, 0, sizeof(sp));
  sp_k = k;
  t0 = now_ns();
  for (int i = 0; i < k; i++) {
    if (hand)
      uvchan_recv(&relays[i].r, relays[i].in, &relays[i].v, relay_recv);
    else
      uvchan_stage_start(&stg[i], NULL);
  }
  uvchan_recv(&sp.r, &st_ch[k], &sp.rv, sp_recv);
  uvchan_send(&sp.s, &st_ch[0], &sp.sv, sp_sent);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (long i = 0; i < N; i++) {
    v = i;
    for (int j = 0; j < k; j++)
      v = v * 2 % 1000003;
    expect += v;
  }
  if (sp.got != N || sp.sum != expect)
    fprintf(stderr, "stages: lost items\n"), exit(1);
  printf("%s%d_cb %ld %.1f ns/item (%.1f ns/item/stage)\n", hand ? "relay" : "stage", k, N,
         (t1 - t0) / (double)N, (t1 - t0) / (double)(N * k));
  if (!hand) {
    for (int i = 0; i < k; i++)
      uvchan_stage_close(&stg[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  for (int i = 0; i <= k; i++)
    uvchan_destroy(&st_ch[i]);
  ctx_done();
}

static void bench_stage1_cb(void) {
  stages_run(1, 0);
}
static void bench_stage4_cb(void) {
  stages_run(4, 0);
}
static void bench_relay1_cb(void) {
  stages_run(1, 1);
}
static void bench_relay4_cb(void) {
  stages_run(4, 1);
}

/* ---- thread_pingpong, thread_buffered: two loops on two threads, a task on each side ---- */

/* One side: a loop on its own thread, with its own context and its ends of the shared channels.
 * The shared channels' first ends live on the main thread's context, which never runs. */
typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t a, b; /* this side's ends */
  uvchan_t *sa, *sb;
  uvchan_task_fn fn;
  uv_thread_t thread;
} side_t;

static side_t sides[2];
static uvchan_t xa, xb; /* the shared channels */

static void side_main(void* arg) {
  side_t* s = arg;
  if (uv_loop_init(&s->loop) != 0 || uvchan_ctx_init(&s->loop, &s->ctx) != 0 ||
      uvchan_attach(&s->ctx, &s->a, s->sa) != 0 ||
      (s->sb != NULL && uvchan_attach(&s->ctx, &s->b, s->sb) != 0) ||
      uvchan_task_spawn(&s->ctx, s->fn, s, NULL) != 0) {
    fprintf(stderr, "uvchan-bench: thread side setup failed\n");
    exit(1);
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uvchan_destroy(&s->a);
  if (s->sb != NULL)
    uvchan_destroy(&s->b);
  ctx_done_on(&s->loop, &s->ctx);
}

/* Runs the two sides on two threads; the shared channels are made first, destroyed last. */
static void sides_run(size_t cap, int two, uvchan_task_fn f0, uvchan_task_fn f1) {
  ctx_open();
  uvchan_init_shared(&ctx, &xa, sizeof(long), cap);
  if (two)
    uvchan_init_shared(&ctx, &xb, sizeof(long), cap);
  for (int i = 0; i < 2; i++) {
    memset(&sides[i], 0, sizeof(sides[i]));
    sides[i].sa = &xa;
    sides[i].sb = two ? &xb : NULL;
    sides[i].fn = i == 0 ? f0 : f1;
  }
  for (int i = 0; i < 2; i++)
    uv_thread_create(&sides[i].thread, side_main, &sides[i]);
  for (int i = 0; i < 2; i++)
    uv_thread_join(&sides[i].thread);
  uvchan_destroy(&xa);
  if (two)
    uvchan_destroy(&xb);
  ctx_done();
}

static void tp_ping(void* arg) {
  side_t* s = arg;
  long v;
  t0 = now_ns();
  for (long i = 0; i < N; i++) {
    uvchan_task_send(&s->a, &i);
    if (uvchan_task_recv(&s->b, &v) != 0 || v != i + 1)
      fprintf(stderr, "thread_pingpong: wrong value\n"), exit(1);
  }
  t1 = now_ns();
  uvchan_close(&s->a);
}

static void tp_pong(void* arg) {
  side_t* s = arg;
  long v;
  while (uvchan_task_recv(&s->a, &v) == 0) {
    v++;
    uvchan_task_send(&s->b, &v);
  }
}

static void bench_thread_pingpong(void) {
  sides_run(0, 1, tp_ping, tp_pong);
  printf("thread_pingpong %ld %.1f ns/roundtrip\n", N, (t1 - t0) / (double)N);
}

static void tb_prod(void* arg) {
  side_t* s = arg;
  long items = N * 10;
  t0 = now_ns();
  for (long i = 0; i < items; i++)
    uvchan_task_send(&s->a, &i);
  uvchan_close(&s->a);
}

static void tb_cons(void* arg) {
  side_t* s = arg;
  long v, sum = 0, items = N * 10;
  while (uvchan_task_recv(&s->a, &v) == 0)
    sum += v;
  t1 = now_ns();
  if (sum != items * (items - 1) / 2)
    fprintf(stderr, "thread_buffered: wrong sum\n"), exit(1);
}

static void bench_thread_buffered(void) {
  sides_run(1024, 0, tb_prod, tb_cons);
  printf("thread_buffered %ld %.1f ns/item\n", N * 10, (t1 - t0) / (double)(N * 10));
}

/* ---- thread_floor: the machine's own floor for the two above, without uvchan ----
 * Two threads hand a counter back and forth through two cache lines, waiting by spinning (pause,
 * then yielding the CPU between short spins, as uvchan's loops do): no channel, no loop, no
 * wake-up. No cross-thread round trip can be cheaper on this machine. */

static _Atomic long floor_a __attribute__((aligned(64)));
static _Atomic long floor_b __attribute__((aligned(64)));

static void floor_wait(_Atomic long* x, long want) {
  for (unsigned i = 1; atomic_load_explicit(x, memory_order_acquire) != want; i++) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (i > 1024 && (i & 15) == 0)
      sched_yield();
  }
}

static void floor_pong(void* arg) {
  (void)arg;
  for (long i = 1; i <= N; i++) {
    floor_wait(&floor_a, i);
    atomic_store_explicit(&floor_b, i, memory_order_release);
  }
}

static void bench_thread_floor(void) {
  uv_thread_t t;
  atomic_store(&floor_a, 0);
  atomic_store(&floor_b, 0);
  uv_thread_create(&t, floor_pong, NULL);
  t0 = now_ns();
  for (long i = 1; i <= N; i++) {
    atomic_store_explicit(&floor_a, i, memory_order_release);
    floor_wait(&floor_b, i);
  }
  t1 = now_ns();
  uv_thread_join(&t);
  printf("thread_floor %ld %.1f ns/roundtrip\n", N, (t1 - t0) / (double)N);
}

static const struct {
  const char* name;
  void (*fn)(void);
} workloads[] = {
    {"pingpong", bench_pingpong},       {"buffered", bench_buffered},
    {"pipeline", bench_pipeline},       {"select", bench_select},
    {"sieve", bench_sieve},             {"parked", bench_parked},
    {"pingpong_cb", bench_pingpong_cb}, {"buffered_cb", bench_buffered_cb},
    {"parked_cb", bench_parked_cb},     {"scale", bench_scale},
    {"parked1m", bench_parked1m},       {"spawn", bench_spawn},
    {"stage1_cb", bench_stage1_cb},     {"stage4_cb", bench_stage4_cb},
    {"relay1_cb", bench_relay1_cb},     {"relay4_cb", bench_relay4_cb},
    {"thread_pingpong", bench_thread_pingpong}, {"thread_buffered", bench_thread_buffered},
    {"thread_floor", bench_thread_floor},
};

int main(int argc, char** argv) {
  const char* w = "all";
  int found = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-w") == 0)
      w = argv[i + 1];
    else if (strcmp(argv[i], "-n") == 0)
      N = atol(argv[i + 1]);
  }
  if (N < 1)
    N = 1;
  for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
    if (strcmp(w, "all") == 0 || strcmp(w, workloads[i].name) == 0) {
      workloads[i].fn();
      fflush(stdout);
      found = 1;
    }
  if (!found) {
    fprintf(stderr, "usage: uvchan-bench -w WORKLOAD|all [-n N]\n");
    return 2;
  }
  return 0;
}
