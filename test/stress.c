/* Long randomized runs (make stress). Each scenario ends by checking counters that prove nothing
 * was lost, duplicated or leaked:
 *   churn    1M tasks spawned in waves; each sends its number, yields, exits early or just
 *            returns. Every task ends exactly once and every sent number arrives exactly once.
 *   waiters  100k callback requests waiting on 64 channels, then random cancels, deadlines,
 *            closes, try-operations and loop iterations. Every request completes exactly once;
 *            every value a send handed over is received or destroyed exactly once, and a value
 *            whose send failed never shows up.
 *   selects  1000 tasks each running 1000 selects (send and receive cases over 32 channels,
 *            with deadlines, a quarter of them due at once) against callback selects. Same
 *            conservation checks.
 * Usage: uvchan-stress [-s SEED] [-x SCALE_PERCENT] [-r ROUNDS] [-w churn|waiters|selects|all]
 * Each round runs the scenarios with its own seed, printed first: `-s SEED -r 1` replays a round
 * (deadlines make a replay follow the same program, though not always the same timing). Exits 0
 * when every check held in every round. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

static uint64_t rng_state;
static long scale = 100; /* percent of the full sizes */

static uint64_t rnd(void) {
  /* xorshift64*: enough for choosing operations */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t rnd_below(uint32_t n) {
  return (uint32_t)((rnd() >> 32) % n);
}

static long scaled(long full) {
  long n = full * scale / 100;
  return n > 0 ? n : 1;
}

static int failures;
#define CHECK(cond, ...)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "uvchan-stress: FAILED %s: ", #cond);        \
      fprintf(stderr, __VA_ARGS__);                               \
      fprintf(stderr, "\n");                                      \
      failures++;                                                 \
    }                                                             \
  } while (0)

static uv_loop_t loop;
static uvchan_ctx_t ctx;

static void ctx_open(void) {
  if (uv_loop_init(&loop) != 0 || uvchan_ctx_init(&loop, &ctx) != 0) {
    fprintf(stderr, "uvchan-stress: cannot initialise\n");
    exit(2);
  }
  uvchan_ctx_seed(&ctx, rng_state);
}

static void ctx_close_checked(const char* name) {
  CHECK(uvchan_ctx_close(&ctx, NULL) == 0, "%s: context still busy", name);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "%s: loop did not close", name);
}

/* ---- value ledger: every value is a unique number with a per-value count of each fate ---- */

typedef struct {
  uint8_t* accepted;  /* the send (or try-send) reported it handed the value over */
  uint8_t* received;
  uint8_t* destroyed; /* given to the element destructor */
  uint8_t* offered;   /* a send that did not hand it over (timeout, cancel, closed) */
  uint32_t next;
  uint32_t cap;
} ledger_t;

static ledger_t L;

static void ledger_init(uint32_t cap) {
  L.accepted = calloc(cap, 1);
  L.received = calloc(cap, 1);
  L.destroyed = calloc(cap, 1);
  L.offered = calloc(cap, 1);
  L.next = 1;
  L.cap = cap;
  if (!L.accepted || !L.received || !L.destroyed || !L.offered) {
    fprintf(stderr, "uvchan-stress: out of memory\n");
    exit(2);
  }
}

static uint32_t ledger_new(void) {
  if (L.next >= L.cap) {
    fprintf(stderr, "uvchan-stress: ledger full\n");
    exit(2);
  }
  return L.next++;
}

static void ledger_bump(uint8_t* a, uint32_t v) {
  if (v > 0 && v < L.cap && a[v] < 255)
    a[v]++;
}

static void on_destroy(uvchan_t* ch, void* value) {
  (void)ch;
  ledger_bump(L.destroyed, *(uint32_t*)value);
}

/* Every accepted value received or destroyed exactly once; nothing else ever seen. */
static void ledger_check(const char* name) {
  uint32_t v, acc = 0, bad = 0;
  for (v = 1; v < L.next; v++) {
    int seen = L.received[v] + L.destroyed[v];
    if (L.accepted[v] > 1 || (L.accepted[v] && L.offered[v]))
      bad++;
    else if (L.accepted[v] ? seen != 1 : seen != 0)
      bad++;
    acc += L.accepted[v];
  }
  CHECK(bad == 0, "%s: %u of %u values lost, duplicated or invented", name, bad, L.next - 1);
  printf("  %s: %u values created, %u handed over, all accounted for: %s\n", name, L.next - 1, acc,
         bad == 0 ? "yes" : "NO");
  free(L.accepted);
  free(L.received);
  free(L.destroyed);
  free(L.offered);
  memset(&L, 0, sizeof(L));
}

/* ---- churn: 1M tasks in waves ---- */

static uvchan_t churn_ch;
static uvchan_wg_t churn_wg;
static long churn_started, churn_ended, churn_sent_sum, churn_recv_sum, churn_recv_n, churn_sent_n;

static void churn_task(void* arg) {
  long id = (long)(intptr_t)arg;
  churn_started++;
  switch (id % 4) {
    case 0:
      if (uvchan_task_send(&churn_ch, &id) == 0) {
        churn_sent_sum += id;
        churn_sent_n++;
      }
      break;
    case 1:
      uvchan_task_yield();
      break;
    case 2:
      churn_ended++;
      uvchan_task_exit(); /* does not return */
      break;
    default:
      break;
  }
  churn_ended++;
}

static void churn_collector(void* arg) {
  long v;
  (void)arg;
  while (uvchan_task_recv(&churn_ch, &v) == 0) {
    churn_recv_sum += v;
    churn_recv_n++;
  }
}

static void churn_spawner(void* arg) {
  long total = *(long*)arg, wave = 10000, id = 0;
  uvchan_task_attr_t attr;
  memset(&attr, 0, sizeof(attr));
  attr.wg = &churn_wg;
  attr.stack_size = UVCHAN_MIN_STACK_SIZE;
  while (id < total) {
    long n = wave < total - id ? wave : total - id;
    for (long i = 0; i < n; i++, id++)
      CHECK(uvchan_task_spawn(&ctx, churn_task, (void*)(intptr_t)id, &attr) == 0, "spawn %ld", id);
    CHECK(uvchan_task_wg_wait(&churn_wg) == 0, "wave wait");
  }
  uvchan_close(&churn_ch);
}

static void run_churn(void) {
  long total = scaled(1000000);
  double t0 = (double)uv_hrtime();
  churn_started = churn_ended = churn_sent_sum = churn_recv_sum = churn_recv_n = churn_sent_n = 0;
  ctx_open();
  uvchan_init(&ctx, &churn_ch, sizeof(long), 64);
  uvchan_wg_init(&ctx, &churn_wg);
  uvchan_task_spawn(&ctx, churn_collector, NULL, NULL);
  uvchan_task_spawn(&ctx, churn_spawner, &total, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(churn_started == total && churn_ended == total, "churn: %ld started, %ld ended of %ld",
        churn_started, churn_ended, total);
  CHECK(churn_recv_n == churn_sent_n && churn_recv_sum == churn_sent_sum,
        "churn: sent %ld (sum %ld), received %ld (sum %ld)", churn_sent_n, churn_sent_sum,
        churn_recv_n, churn_recv_sum);
  CHECK(uvchan_wg_count(&churn_wg) == 0, "churn: wait group at %ld", uvchan_wg_count(&churn_wg));
  uvchan_destroy(&churn_ch);
  ctx_close_checked("churn");
  printf("  churn: %ld tasks spawned and ended, %ld values sent and received, %.2f s\n", total,
         churn_recv_n, ((double)uv_hrtime() - t0) / 1e9);
}

/* ---- waiters: 100k callback requests under random cancel, deadline and close ---- */

enum { WCH = 64 };

typedef struct {
  union {
    uvchan_req_t req;
    uvchan_send_t send;
    uvchan_recv_t recv;
  } r;
  uint32_t value;
  int send;
  int calls;
  int status;
} wreq_t;

static uvchan_t wch[WCH];
static int wch_live[WCH];

static void w_done(uvchan_req_t* req, int status) {
  wreq_t* w = (wreq_t*)req;
  w->calls++;
  w->status = status;
  if (w->send)
    ledger_bump(status == 0 ? L.accepted : L.offered, w->value);
  else if (status == 0)
    ledger_bump(L.received, w->value);
}
static void w_send_cb(uvchan_send_t* r, int st) {
  w_done((uvchan_req_t*)r, st);
}
static void w_recv_cb(uvchan_recv_t* r, int st) {
  w_done((uvchan_req_t*)r, st);
}

static void w_start(wreq_t* w) {
  int c = (int)rnd_below(WCH), err;
  uint64_t timeout = rnd_below(4) == 0 ? 1 + rnd_below(20) : 0;
  w->send = (int)rnd_below(2);
  if (w->send) {
    w->value = ledger_new();
    err = timeout ? uvchan_send_timeout(&w->r.send, &wch[c], &w->value, timeout, w_send_cb)
                  : uvchan_send(&w->r.send, &wch[c], &w->value, w_send_cb);
  } else {
    err = timeout ? uvchan_recv_timeout(&w->r.recv, &wch[c], &w->value, timeout, w_recv_cb)
                  : uvchan_recv(&w->r.recv, &wch[c], &w->value, w_recv_cb);
  }
  CHECK(err == 0, "waiters: start on channel %d: %d", c, err);
}

static void run_waiters(void) {
  long n = scaled(100000), events = scaled(300000), started = 0, calls = 0, bad = 0;
  wreq_t* w = calloc((size_t)n, sizeof(*w));
  double t0 = (double)uv_hrtime();
  uint32_t v;
  ledger_init((uint32_t)(n * 4 + events + 16));
  ctx_open();
  for (int c = 0; c < WCH; c++) {
    uvchan_init(&ctx, &wch[c], sizeof(uint32_t), c % 4 == 0 ? (size_t)(c % 7) : 0);
    uvchan_set_destructor(&wch[c], on_destroy);
    wch_live[c] = 1;
  }
  for (long i = 0; i < n; i++, started++)
    w_start(&w[i]);
  for (long e = 0; e < events; e++) {
    long i = (long)rnd_below((uint32_t)n);
    int c = (int)rnd_below(WCH);
    switch (rnd_below(16)) {
      case 0: /* cancel: 0 if it waited, UV_EBUSY if matched, UV_EINVAL if done */
        (void)uvchan_cancel(&w[i].r.req);
        break;
      case 1:
        if (rnd_below(64) == 0 && wch_live[c]) /* closes are rare: they end a channel's use */
          uvchan_close(&wch[c]);
        break;
      case 2:
        v = ledger_new();
        if (uvchan_try_send(&wch[c], &v) == 0)
          ledger_bump(L.accepted, v);
        break;
      case 3:
        if (uvchan_try_recv(&wch[c], &v) == 0)
          ledger_bump(L.received, v);
        break;
      case 4:
      case 5:
        uv_run(&loop, UV_RUN_NOWAIT);
        break;
      default: /* restart a request whose callback ran */
        if (w[i].calls > 0 && uvchan_cancel(&w[i].r.req) == UV_EINVAL) {
          calls += w[i].calls;
          bad += w[i].calls != 1;
          w[i].calls = 0;
          w_start(&w[i]);
          started++;
        }
        break;
    }
  }
  /* Let deadlines pass, then end everything: destroy cancels what waits, drains the buffers. */
  uv_sleep(25);
  uv_run(&loop, UV_RUN_NOWAIT);
  for (int c = 0; c < WCH; c++)
    uvchan_destroy(&wch[c]);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (long i = 0; i < n; i++) {
    calls += w[i].calls;
    bad += w[i].calls != 1;
  }
  CHECK(bad == 0, "waiters: %ld requests completed other than exactly once", bad);
  CHECK(calls == started, "waiters: %ld callbacks for %ld requests", calls, started);
  CHECK(uvchan_ctx_walk_waiting(&ctx, NULL, NULL) == 0, "waiters: something still waits");
  ctx_close_checked("waiters");
  printf("  waiters: %ld requests (%ld waiting at once), %ld random events, every callback "
         "exactly once: %s, %.2f s\n",
         started, n, events, bad == 0 && calls == started ? "yes" : "NO",
         ((double)uv_hrtime() - t0) / 1e9);
  ledger_check("waiters");
  free(w);
}

/* ---- selects: tasks and callback selects over shared channels ---- */

enum { SCH = 32, SCASES = 4 };
static uvchan_t sch[SCH];
static long sel_done, sel_timeouts;

/* One select in four has a deadline due at the next loop iteration, the others 1 to 3 ms. */
static uint64_t sel_timeout(void) {
  return rnd_below(4) == 0 ? 0 : 1 + rnd_below(3);
}

static void sel_record(uvchan_case_t* cases, int idx, int status, uint32_t* vals) {
  if (idx < 0)
    return;
  if (cases[idx].op == UVCHAN_OP_SEND)
    ledger_bump(status == 0 ? L.accepted : L.offered, vals[idx]);
  else if (status == 0)
    ledger_bump(L.received, vals[idx]);
}

static void sel_fill(uvchan_case_t* cases, uint32_t* vals) {
  for (int k = 0; k < SCASES; k++) {
    cases[k].chan = &sch[rnd_below(SCH)];
    cases[k].op = rnd_below(2) ? UVCHAN_OP_SEND : UVCHAN_OP_RECV;
    cases[k].value = &vals[k];
    vals[k] = cases[k].op == UVCHAN_OP_SEND ? ledger_new() : 0;
  }
}

static void sel_task(void* arg) {
  long rounds = *(long*)arg;
  uvchan_case_t cases[SCASES];
  uint32_t vals[SCASES];
  int st = 0, idx;
  memset(cases, 0, sizeof(cases));
  for (long r = 0; r < rounds; r++) {
    sel_fill(cases, vals);
    idx = uvchan_task_select_timeout(cases, SCASES, sel_timeout(), &st);
    if (idx == UV_ETIMEDOUT) {
      sel_timeouts++;
      for (int k = 0; k < SCASES; k++)
        if (cases[k].op == UVCHAN_OP_SEND)
          ledger_bump(L.offered, vals[k]);
      continue;
    }
    CHECK(idx >= 0, "selects: task select returned %d", idx);
    sel_record(cases, idx, st, vals);
    for (int k = 0; k < SCASES; k++)
      if (k != idx && cases[k].op == UVCHAN_OP_SEND)
        ledger_bump(L.offered, vals[k]);
    sel_done++;
  }
}

typedef struct {
  uvchan_select_t sel;
  uvchan_case_t cases[SCASES];
  uint32_t vals[SCASES];
  long left;
} csel_t;

static void csel_start(csel_t* s);
static void csel_cb(uvchan_select_t* req, int status) {
  csel_t* s = (csel_t*)req;
  for (int k = 0; k < SCASES; k++)
    if (k != req->index && s->cases[k].op == UVCHAN_OP_SEND)
      ledger_bump(L.offered, s->vals[k]);
  if (req->index >= 0) {
    sel_record(s->cases, req->index, status, s->vals);
    sel_done++;
  } else {
    sel_timeouts++;
  }
  if (--s->left > 0)
    csel_start(s);
}
static void csel_start(csel_t* s) {
  sel_fill(s->cases, s->vals);
  CHECK(uvchan_select_timeout(&s->sel, s->cases, SCASES, sel_timeout(), csel_cb) == 0,
        "selects: callback select start");
}

static void run_selects(void) {
  long ntasks = scaled(1000), rounds = 1000, ncb = scaled(200);
  csel_t* cs = calloc((size_t)ncb, sizeof(*cs));
  double t0 = (double)uv_hrtime();
  sel_done = sel_timeouts = 0;
  ledger_init((uint32_t)((ntasks + ncb) * rounds * SCASES + 16));
  ctx_open();
  for (int c = 0; c < SCH; c++) {
    uvchan_init(&ctx, &sch[c], sizeof(uint32_t), (size_t)(c % 3));
    uvchan_set_destructor(&sch[c], on_destroy);
  }
  for (long i = 0; i < ntasks; i++)
    uvchan_task_spawn(&ctx, sel_task, &rounds, NULL);
  for (long i = 0; i < ncb; i++) {
    cs[i].left = rounds;
    csel_start(&cs[i]);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(sel_done + sel_timeouts == (ntasks + ncb) * rounds, "selects: %ld + %ld of %ld", sel_done,
        sel_timeouts, (ntasks + ncb) * rounds);
  for (int c = 0; c < SCH; c++)
    uvchan_destroy(&sch[c]);
  uv_run(&loop, UV_RUN_DEFAULT);
  ctx_close_checked("selects");
  printf("  selects: %ld selects (%ld matched, %ld timed out), %.2f s\n", sel_done + sel_timeouts,
         sel_done, sel_timeouts, ((double)uv_hrtime() - t0) / 1e9);
  ledger_check("selects");
  free(cs);
}

int main(int argc, char** argv) {
  const char* which = "all";
  uint64_t seed = uv_hrtime() ^ (uint64_t)(uintptr_t)&seed;
  long rounds = 1;
  int all;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-s") == 0)
      seed = strtoull(argv[i + 1], NULL, 0);
    else if (strcmp(argv[i], "-x") == 0)
      scale = atol(argv[i + 1]);
    else if (strcmp(argv[i], "-r") == 0)
      rounds = atol(argv[i + 1]);
    else if (strcmp(argv[i], "-w") == 0)
      which = argv[i + 1];
  }
  if (scale < 1)
    scale = 1;
  all = strcmp(which, "all") == 0;
  for (long r = 0; r < rounds; r++, seed = seed * 6364136223846793005ull + 1442695040888963407ull) {
    rng_state = seed != 0 ? seed : 1;
    printf("uvchan-stress: round %ld of %ld, seed %llu, scale %ld%% (replay: uvchan-stress -s %llu "
           "-x %ld -w %s)\n",
           r + 1, rounds, (unsigned long long)seed, scale, (unsigned long long)seed, scale, which);
    fflush(stdout);
    if (all || strcmp(which, "churn") == 0)
      run_churn();
    if (all || strcmp(which, "waiters") == 0)
      run_waiters();
    if (all || strcmp(which, "selects") == 0)
      run_selects();
  }
  printf("uvchan-stress: %s\n", failures == 0 ? "clean" : "FAILED");
  return failures == 0 ? 0 : 1;
}
