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

/* What a receive's destination holds before the call: it must hold the value after a receive,
 * the zero value after UV_EOF (Go's v, ok := <-ch), and this still after anything else. */
#define POISON 0xa5a5a5a5u

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

/* Doubles the ledger (a round driven by time, like cancels, creates as many values as the
 * machine's speed allows). Values are below L.cap, so POISON is never one of them. */
static void ledger_grow(void) {
  uint8_t** a[4] = {&L.accepted, &L.received, &L.destroyed, &L.offered};
  uint32_t ncap = L.cap < 0x40000000u ? L.cap * 2 : 0;
  for (int i = 0; i < 4 && ncap != 0; i++) {
    uint8_t* p = realloc(*a[i], ncap);
    if (p == NULL) {
      ncap = 0;
      break;
    }
    memset(p + L.cap, 0, ncap - L.cap);
    *a[i] = p;
  }
  if (ncap == 0) {
    fprintf(stderr, "uvchan-stress: ledger full\n");
    exit(2);
  }
  L.cap = ncap;
}

static uint32_t ledger_new(void) {
  if (L.next >= L.cap)
    ledger_grow();
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
    acc += L.accepted[v];
    if (L.accepted[v] > 1 || (L.accepted[v] && L.offered[v]))
      bad++;
    else if (L.accepted[v] ? seen != 1 : seen != 0)
      bad++;
    else
      continue;
    if (bad <= 5)
      fprintf(stderr, "uvchan-stress: %s: value %u accepted %d offered %d received %d destroyed %d\n",
              name, v, L.accepted[v], L.offered[v], L.received[v], L.destroyed[v]);
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

static long w_eofs;

static void w_done(uvchan_req_t* req, int status) {
  wreq_t* w = (wreq_t*)req;
  w->calls++;
  w->status = status;
  if (w->send) {
    ledger_bump(status == 0 ? L.accepted : L.offered, w->value);
  } else if (status == 0) {
    ledger_bump(L.received, w->value);
  } else if (status == UV_EOF) {
    w_eofs++;
    CHECK(w->value == 0, "waiters: UV_EOF left %#x, not the zero value", w->value);
  } else {
    CHECK(w->value == POISON, "waiters: a receive that got nothing (%d) wrote %#x", status,
          w->value);
  }
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
    w->value = POISON;
    err = timeout ? uvchan_recv_timeout(&w->r.recv, &wch[c], &w->value, timeout, w_recv_cb)
                  : uvchan_recv(&w->r.recv, &wch[c], &w->value, w_recv_cb);
  }
  CHECK(err == 0, "waiters: start on channel %d: %d", c, err);
}

static void run_waiters(void) {
  long n = scaled(100000), events = scaled(300000), started = 0, calls = 0, bad = 0;
  int err;
  wreq_t* w = calloc((size_t)n, sizeof(*w));
  double t0 = (double)uv_hrtime();
  uint32_t v;
  ledger_init((uint32_t)(n * 4 + events + 16));
  w_eofs = 0;
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
        v = POISON;
        err = uvchan_try_recv(&wch[c], &v);
        if (err == 0)
          ledger_bump(L.received, v);
        else
          CHECK(v == (err == UV_EOF ? 0 : POISON), "waiters: try_recv %d left %#x", err, v);
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
  printf("  waiters: %ld requests (%ld waiting at once), %ld random events, %ld receives ended "
         "by close with the zero value, every callback exactly once: %s, %.2f s\n",
         started, n, events, w_eofs, bad == 0 && calls == started ? "yes" : "NO",
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

/* Records a select's outcome: the case that completed (idx >= 0) with `status`; every other
 * receive case's destination must be untouched. */
static void sel_record(uvchan_case_t* cases, int idx, int status, uint32_t* vals) {
  for (int k = 0; k < SCASES; k++) {
    if (cases[k].op != UVCHAN_OP_RECV || cases[k].chan == NULL)
      continue;
    if (k != idx)
      CHECK(vals[k] == POISON, "select: case %d did not complete but got %#x", k, vals[k]);
    else if (status == UV_EOF)
      CHECK(vals[k] == 0, "select: UV_EOF left %#x, not the zero value", vals[k]);
  }
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
    vals[k] = cases[k].op == UVCHAN_OP_SEND ? ledger_new() : POISON;
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
      sel_record(cases, -1, idx, vals);
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
  sel_record(s->cases, req->index, status, s->vals);
  if (req->index >= 0)
    sel_done++;
  else
    sel_timeouts++;
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

/* ---- cancels: workers under random task cancels, then a shutdown under load ---- */

enum { KCH = 32, KCASES = 3 };

typedef struct {
  uvchan_task_ref_t ref;
  int started, ended;
  int cancel_ok;      /* uvchan_task_cancel() returned 0 for it */
  int saw_cancel;     /* a blocking call returned UV_ECANCELED */
  int early;          /* cancelled before it ran */
  int real_after;     /* cancelled while its wait was matched already: the real outcome came */
} kworker_t;

typedef struct {
  union {
    uvchan_req_t req;
    uvchan_send_t send;
    uvchan_recv_t recv;
    uvchan_select_t sel;
  } r;
  uvchan_case_t cases[KCASES];
  uint32_t vals[KCASES];
  int kind; /* 0 send, 1 receive, 2 select, 3 wait-group wait */
  int pending;
  long calls;
} kreq_t;

static uvchan_t kch[KCH];
static uvchan_wg_t kwg;
static kworker_t* kw;
static long nkw, kw_cap, k_rounds;
static kreq_t* kr;
static long nkr;
static uv_timer_t k_timer;
static kreq_t k_late; /* a request first started during the shutdown */
static long k_ops, k_ok, k_alive_at_shutdown;
static long k_ticks, k_ticks_total, k_close_cbs, k_cancels, k_esrch, k_refused, k_eofs;
static int k_shutdown;

/* Records a blocking or callback operation over `cases` (n of them) that ended with case `idx`
 * (-1: none) and `status`; checks every receive destination. */
static void k_record(uvchan_case_t* cases, uint32_t* vals, int n, int idx, int status) {
  for (int k = 0; k < n; k++) {
    if (cases[k].chan == NULL)
      continue;
    if (cases[k].op == UVCHAN_OP_SEND) {
      ledger_bump(k == idx && status == 0 ? L.accepted : L.offered, vals[k]);
    } else if (k != idx) {
      CHECK(vals[k] == POISON, "cancels: a receive that got nothing wrote %#x", vals[k]);
    } else if (status == 0) {
      ledger_bump(L.received, vals[k]);
    } else if (status == UV_EOF) {
      k_eofs++;
      CHECK(vals[k] == 0, "cancels: UV_EOF left %#x, not the zero value", vals[k]);
    } else {
      CHECK(vals[k] == POISON, "cancels: a receive ending %d wrote %#x", status, vals[k]);
    }
  }
}

static void k_fill(uvchan_case_t* cases, uint32_t* vals, int n, int allow_nil) {
  for (int k = 0; k < n; k++) {
    cases[k].chan = allow_nil && rnd_below(8) == 0 ? NULL : &kch[rnd_below(KCH)];
    cases[k].op = rnd_below(2) ? UVCHAN_OP_SEND : UVCHAN_OP_RECV;
    cases[k].value = &vals[k];
    vals[k] = cases[k].op == UVCHAN_OP_SEND && cases[k].chan != NULL ? ledger_new() : POISON;
  }
}

/* One blocking call of a worker, at random; returns its status. */
static int k_one_op(void) {
  uvchan_case_t cases[KCASES];
  uint32_t vals[KCASES];
  uint64_t to = 1 + rnd_below(3);
  int timed = rnd_below(4) != 0, st = 0, idx; /* untimed waits last until matched or cancelled */
  switch (rnd_below(13)) {
    case 0:
    case 1:
    case 2:
      k_fill(cases, vals, 1, 0);
      cases[0].op = UVCHAN_OP_SEND;
      vals[0] = ledger_new();
      st = timed ? uvchan_task_send_timeout(cases[0].chan, &vals[0], to)
                 : uvchan_task_send(cases[0].chan, &vals[0]);
      k_record(cases, vals, 1, 0, st);
      return st;
    case 3:
    case 4:
    case 5:
      k_fill(cases, vals, 1, 0);
      cases[0].op = UVCHAN_OP_RECV;
      vals[0] = POISON;
      st = timed ? uvchan_task_recv_timeout(cases[0].chan, &vals[0], to)
                 : uvchan_task_recv(cases[0].chan, &vals[0]);
      k_record(cases, vals, 1, 0, st);
      return st;
    case 6:
    case 7:
      k_fill(cases, vals, KCASES, 1);
      idx = timed ? uvchan_task_select_timeout(cases, KCASES, to, &st)
                  : uvchan_task_select(cases, KCASES, &st);
      k_record(cases, vals, KCASES, idx, idx >= 0 ? st : idx);
      return idx >= 0 ? st : idx;
    case 8:
      return uvchan_task_wg_wait(&kwg);
    case 9:
      return uvchan_task_sleep(rnd_below(3));
    case 10: /* a nil channel: only the deadline, a cancel or the shutdown ends it */
      vals[0] = POISON;
      st = rnd_below(2) ? uvchan_task_recv_timeout(NULL, &vals[0], to) : uvchan_task_recv(NULL, &vals[0]);
      CHECK(vals[0] == POISON, "cancels: a receive from a nil channel wrote %#x", vals[0]);
      CHECK(st == UV_ETIMEDOUT || st == UV_ECANCELED, "cancels: nil channel: %d", st);
      return st;
    case 11: /* select {} */
      st = rnd_below(2) ? uvchan_task_select_timeout(NULL, 0, to, NULL) : uvchan_task_select(NULL, 0, NULL);
      CHECK(st == UV_ETIMEDOUT || st == UV_ECANCELED, "cancels: select {}: %d", st);
      return st;
    default:
      return uvchan_task_yield();
  }
}

static void k_worker(void* arg) {
  kworker_t* w = &kw[(long)(intptr_t)arg];
  uint32_t v;
  w->started++;
  for (long r = 0; r < k_rounds; r++) {
    int st = k_one_op();
    k_ops++;
    k_ok += st == 0;
    if (st == UV_ECANCELED) {
      /* this scenario destroys no channel while tasks run: UV_ECANCELED is the cancel */
      CHECK(uvchan_task_cancelled(), "cancels: UV_ECANCELED in a task not cancelled");
      w->saw_cancel = 1;
      /* every later blocking call fails too, without touching anything */
      v = ledger_new();
      CHECK(uvchan_task_send(&kch[rnd_below(KCH)], &v) == UV_ECANCELED, "cancels: send after cancel");
      ledger_bump(L.offered, v);
      CHECK(uvchan_task_yield() == UV_ECANCELED, "cancels: yield after cancel");
      CHECK(uvchan_task_sleep(0) == UV_ECANCELED, "cancels: sleep after cancel");
      CHECK(uvchan_task_select(NULL, 0, NULL) == UV_ECANCELED, "cancels: select {} after cancel");
      break;
    }
    if (uvchan_task_cancelled() && !w->saw_cancel)
      w->real_after = 1; /* matched before the cancel came: the next call fails */
  }
  w->ended++;
}

static void k_spawn(int cancel_now) {
  uvchan_task_attr_t attr;
  int err;
  if (nkw == kw_cap)
    return;
  memset(&attr, 0, sizeof(attr));
  /* The default stack: these tasks make real calls, and under AddressSanitizer the smallest
   * stack overflows (the landing task's stack also runs the reaping of a task that ended,
   * realloc included) past the canary into its neighbour. */
  attr.wg = rnd_below(4) == 0 ? &kwg : NULL;
  err = uvchan_task_spawn_ref(&ctx, &kw[nkw].ref, k_worker, (void*)(intptr_t)nkw, &attr);
  if (k_shutdown) {
    CHECK(err == UV_ECANCELED, "cancels: spawn during the shutdown: %d", err);
    return;
  }
  CHECK(err == 0, "cancels: spawn: %d", err);
  if (err != 0)
    return;
  if (cancel_now) { /* not started yet: every blocking call it makes fails */
    CHECK(uvchan_task_cancel(&kw[nkw].ref) == 0, "cancels: cancel of a task not started");
    kw[nkw].cancel_ok = kw[nkw].early = 1;
  }
  nkw++;
}

static void k_req_start(kreq_t* q);

static void k_req_done(kreq_t* q, int idx, int status) {
  CHECK(q->pending == 1, "cancels: a callback ran for a request not pending");
  q->pending = 0;
  q->calls++;
  if (q->kind == 0 || q->kind == 1)
    k_record(q->cases, q->vals, 1, 0, status);
  else if (q->kind == 2)
    k_record(q->cases, q->vals, KCASES, idx, status);
  k_req_start(q);
}

static void k_send_cb(uvchan_send_t* r, int st) {
  k_req_done((kreq_t*)r, 0, st);
}
static void k_recv_cb(uvchan_recv_t* r, int st) {
  k_req_done((kreq_t*)r, 0, st);
}
static void k_sel_cb(uvchan_select_t* r, int st) {
  k_req_done((kreq_t*)r, r->index, st);
}
static void k_wg_cb(uvchan_req_t* r, int st) {
  k_req_done((kreq_t*)r, 0, st);
}

/* (Re)starts a callback request; during the shutdown every start fails with UV_ECANCELED (and
 * then no callback comes). */
static void k_req_start(kreq_t* q) {
  uint64_t to = 1 + rnd_below(3);
  int timed = rnd_below(3) == 0, err;
  q->kind = (int)rnd_below(7);
  if (q->kind > 3)
    q->kind = q->kind == 4 ? 0 : q->kind == 5 ? 1 : 2;
  k_fill(q->cases, q->vals, q->kind == 2 ? KCASES : 1, q->kind == 2);
  if (q->kind == 0) {
    q->cases[0].op = UVCHAN_OP_SEND;
    q->vals[0] = ledger_new();
    err = timed ? uvchan_send_timeout(&q->r.send, q->cases[0].chan, &q->vals[0], to, k_send_cb)
                : uvchan_send(&q->r.send, q->cases[0].chan, &q->vals[0], k_send_cb);
  } else if (q->kind == 1) {
    q->cases[0].op = UVCHAN_OP_RECV;
    q->vals[0] = POISON;
    err = timed ? uvchan_recv_timeout(&q->r.recv, q->cases[0].chan, &q->vals[0], to, k_recv_cb)
                : uvchan_recv(&q->r.recv, q->cases[0].chan, &q->vals[0], k_recv_cb);
  } else if (q->kind == 2) {
    if (q->cases[0].chan == NULL && q->cases[1].chan == NULL && q->cases[2].chan == NULL)
      q->cases[0].chan = &kch[0]; /* a callback select needs a channel */
    if (q->cases[0].op == UVCHAN_OP_SEND && q->vals[0] == POISON)
      q->vals[0] = ledger_new();
    err = timed ? uvchan_select_timeout(&q->r.sel, q->cases, KCASES, to, k_sel_cb)
                : uvchan_select(&q->r.sel, q->cases, KCASES, k_sel_cb);
  } else {
    err = uvchan_wg_wait(&q->r.req, &kwg, k_wg_cb);
  }
  if (k_shutdown) {
    CHECK(err == UV_ECANCELED, "cancels: a start during the shutdown returned %d", err);
    k_record(q->cases, q->vals, q->kind == 2 ? KCASES : q->kind < 2 ? 1 : 0, -1, err);
    k_refused++;
    return;
  }
  CHECK(err == 0, "cancels: start: %d", err);
  q->pending = err == 0;
}

static void k_on_closed(uvchan_ctx_t* c) {
  (void)c;
  k_close_cbs++;
}

/* The controller, a libuv timer of the application's (as a server's signal handler would be):
 * cancels random workers (ended ones answer UV_ESRCH), spawns new ones (some cancelled before
 * they run), moves the wait group, closes a few channels, and at the end shuts the context down
 * while everything is busy. */
static void k_tick(uv_timer_t* t) {
  uint32_t v;
  int err;
  k_ticks++;
  for (int i = 0; i < 15; i++) {
    long j = nkw > 0 ? (long)rnd_below((uint32_t)nkw) : 0;
    if (nkw == 0)
      break;
    err = uvchan_task_cancel(&kw[j].ref);
    if (kw[j].ended) {
      CHECK(err == UV_ESRCH, "cancels: cancel of an ended task: %d", err);
      k_esrch++;
    } else {
      CHECK(err == 0, "cancels: cancel of a live task: %d", err);
      kw[j].cancel_ok = 1;
      k_cancels++;
    }
  }
  for (int i = 0; i < 20; i++)
    k_spawn(rnd_below(8) == 0);
  if (rnd_below(2))
    (void)uvchan_wg_add(&kwg, 1);
  else
    (void)uvchan_wg_add(&kwg, -uvchan_wg_count(&kwg));
  for (int i = 0; i < 20; i++) {
    int c = (int)rnd_below(KCH);
    v = ledger_new();
    if (uvchan_try_send(&kch[c], &v) == 0)
      ledger_bump(L.accepted, v);
    v = POISON;
    err = uvchan_try_recv(&kch[c], &v);
    if (err == 0)
      ledger_bump(L.received, v);
    else
      CHECK(v == (err == UV_EOF ? 0 : POISON), "cancels: try_recv %d left %#x", err, v);
  }
  if (k_ticks == k_ticks_total / 2)
    for (int c = 0; c < 3; c++)
      uvchan_close(&kch[c]);
  if (k_ticks < k_ticks_total)
    return;
  /* The shutdown, with workers and callback requests waiting everywhere. */
  for (long i = 0; i < nkw; i++)
    k_alive_at_shutdown += uvchan_task_alive(&kw[i].ref);
  CHECK(uvchan_ctx_shutdown(&ctx, k_on_closed) == 0, "cancels: shutdown");
  k_shutdown = 1;
  k_spawn(0); /* UV_ECANCELED from now on */
  k_req_start(&k_late);
  uv_close((uv_handle_t*)t, NULL); /* the application's own handle */
}

static void run_cancels(void) {
  long total = scaled(20000), live = scaled(1000) < 20 ? 20 : scaled(1000), ends = 0, starts = 0;
  long early = 0, real_after = 0, pend = 0, calls = 0;
  double t0 = (double)uv_hrtime();
  kw_cap = total;
  nkw = 0;
  k_rounds = 400;
  nkr = scaled(2000);
  k_ticks = k_close_cbs = k_cancels = k_esrch = k_refused = k_eofs = k_ops = k_ok = 0;
  memset(&k_late, 0, sizeof(k_late));
  k_alive_at_shutdown = 0;
  k_ticks_total = scaled(1000) < 20 ? 20 : scaled(1000);
  k_shutdown = 0;
  kw = calloc((size_t)kw_cap, sizeof(*kw));
  kr = calloc((size_t)nkr, sizeof(*kr));
  ledger_init((uint32_t)(kw_cap * (k_rounds * KCASES + 8) / 4 + nkr * 64 + k_ticks_total * 64 + 1024));
  ctx_open();
  for (int c = 0; c < KCH; c++) {
    uvchan_init(&ctx, &kch[c], sizeof(uint32_t), (size_t)(c % 4));
    uvchan_set_destructor(&kch[c], on_destroy);
  }
  uvchan_wg_init(&ctx, &kwg);
  for (long i = 0; i < live; i++)
    k_spawn(0);
  for (long i = 0; i < nkr; i++)
    k_req_start(&kr[i]);
  uv_timer_init(&loop, &k_timer);
  uv_timer_start(&k_timer, k_tick, 1, 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(k_close_cbs == 1, "cancels: %ld close callbacks", k_close_cbs);
  for (long i = 0; i < nkw; i++) {
    starts += kw[i].started;
    ends += kw[i].ended;
    early += kw[i].early;
    real_after += kw[i].real_after;
    CHECK(kw[i].started == 1 && kw[i].ended == 1, "cancels: task %ld started %d, ended %d", i,
          kw[i].started, kw[i].ended);
  }
  for (long i = 0; i < nkr; i++) {
    pend += kr[i].pending;
    calls += kr[i].calls;
  }
  CHECK(pend == 0, "cancels: %ld callback requests never completed", pend);
  CHECK(uv_loop_close(&loop) == 0, "cancels: loop did not close");
  printf("  cancels: %ld tasks, %ld blocking calls (%ld completed with 0), %ld cancels by "
         "reference (%ld before the task ran, %ld after its wait was matched; %ld more on ended "
         "tasks: UV_ESRCH), %ld callbacks, %ld receives ended by close with the zero value, then "
         "a shutdown with %ld tasks alive: every task ended once, every callback once, %ld starts "
         "refused: %s, %.2f s\n",
         nkw, k_ops, k_ok, k_cancels, early, real_after, k_esrch, calls, k_eofs, k_alive_at_shutdown,
         k_refused,
         starts == nkw && ends == nkw && pend == 0 && k_close_cbs == 1 ? "yes" : "NO",
         ((double)uv_hrtime() - t0) / 1e9);
  ledger_check("cancels");
  free(kw);
  free(kr);
}

/* ---- order: a waiting select's cases on one channel are served with equal odds ---- */

/* Chi-square statistic of counts against a uniform distribution. */
static double chi2_uniform(const long* count, int k, long n) {
  double e = (double)n / k, x = 0;
  for (int i = 0; i < k; i++)
    x += ((double)count[i] - e) * ((double)count[i] - e) / e;
  return x;
}

/* The chi-square value a uniform source exceeds with probability 1e-6, for k - 1 degrees of
 * freedom: exact for k = 2..5, the Wilson-Hilferty approximation beyond. */
static double root(double x) { /* Newton's method: the stress program does not link libm */
  double r = x > 1 ? x : 1;
  for (int i = 0; i < 60; i++)
    r = (r + x / r) / 2;
  return r;
}

static double chi2_limit(int k) {
  static const double limit[] = {0, 0, 23.93, 27.63, 30.66, 33.38};
  double d = k - 1, c;
  if (k <= 5)
    return limit[k];
  c = 1 - 2 / (9 * d) + 4.753 * root(2 / (9 * d)); /* 4.753: the normal's 1e-6 upper quantile */
  return d * c * c * c;
}

enum { ORD_BIG = 70 }; /* past 64 cases, a select draws its order through a heap array */
static uvchan_t ord_ch, ord_other;
static long ord_count[ORD_BIG];
static int ord_cb_index;

static void ord_sel_cb(uvchan_select_t* req, int status) {
  CHECK(status == 0, "order: select status %d", status);
  ord_cb_index = req->index;
}

static void ord_recv_cb(uvchan_recv_t* req, int status) {
  (void)req;
  CHECK(status == 0, "order: receive status %d", status);
}

/* One trial: a select with k cases of direction `op` on ord_ch (and, with `other`, one more on
 * another channel) waits; sometimes a plain receiver or sender waits before it, and must be
 * served first (FIFO against other requests); then one party comes. Returns the case taken. */
static int ord_trial(int k, uvchan_op op, int other) {
  uvchan_select_t sel;
  uvchan_recv_t before_r;
  uvchan_send_t before_s;
  uvchan_case_t cases[ORD_BIG + 1];
  uint32_t vals[ORD_BIG + 1], v = 0, bv = 999;
  int before = rnd_below(2), idx = -1;
  memset(&sel, 0, sizeof(sel));
  memset(&before_r, 0, sizeof(before_r));
  memset(&before_s, 0, sizeof(before_s));
  if (before) {
    if (op == UVCHAN_OP_RECV)
      CHECK(uvchan_recv(&before_r, &ord_ch, &bv, ord_recv_cb) == 0, "order: receive");
    else
      CHECK(uvchan_send(&before_s, &ord_ch, &bv, (uvchan_send_cb)ord_recv_cb) == 0, "order: send");
  }
  for (int i = 0; i < k; i++) {
    cases[i].chan = &ord_ch;
    cases[i].op = op;
    cases[i].value = &vals[i];
    vals[i] = op == UVCHAN_OP_SEND ? 100u + (uint32_t)i : POISON;
  }
  if (other) { /* a case on another channel, first in the array, never ready */
    cases[k] = cases[0];
    cases[k].value = &vals[k];
    vals[k] = vals[0];
    cases[0].chan = &ord_other;
    vals[0] = POISON;
  }
  ord_cb_index = -2;
  CHECK(uvchan_select(&sel, cases, (unsigned)(k + other), ord_sel_cb) == 0, "order: select");
  if (before) { /* the earlier request takes the first party */
    if (op == UVCHAN_OP_RECV) {
      v = 7;
      CHECK(uvchan_try_send(&ord_ch, &v) == 0 && sel.index == -1, "order: FIFO before the select");
    } else {
      CHECK(uvchan_try_recv(&ord_ch, &v) == 0 && v == 999 && sel.index == -1,
            "order: FIFO before the select");
    }
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  if (op == UVCHAN_OP_RECV) {
    v = 5;
    CHECK(uvchan_try_send(&ord_ch, &v) == 0, "order: send to the select");
  } else {
    CHECK(uvchan_try_recv(&ord_ch, &v) == 0, "order: receive from the select");
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  idx = ord_cb_index;
  CHECK(idx >= other && idx < k + other, "order: case %d taken", idx);
  if (idx < other || idx >= k + other)
    return 0;
  if (op == UVCHAN_OP_SEND)
    CHECK(v == vals[idx], "order: received %u from case %d", v, idx);
  else
    CHECK(vals[idx] == 5, "order: case %d got %u", idx, vals[idx]);
  return idx - other;
}

/* The same from a task: it selects, a second task sends (or receives) and yields, so the select
 * always waits before the other party comes. */
static long ord_task_n;
static int ord_task_k;

static void ord_selector(void* arg) {
  uvchan_case_t cases[5];
  uint32_t vals[5];
  int st = 0, idx;
  (void)arg;
  for (long t = 0; t < ord_task_n; t++) {
    for (int i = 0; i < ord_task_k; i++) {
      cases[i].chan = &ord_ch;
      cases[i].op = UVCHAN_OP_RECV;
      cases[i].value = &vals[i];
      vals[i] = POISON;
    }
    idx = uvchan_task_select(cases, (unsigned)ord_task_k, &st);
    CHECK(idx >= 0 && idx < ord_task_k && st == 0 && vals[idx] == (uint32_t)t,
          "order: task select %d status %d", idx, st);
    if (idx >= 0 && idx < ord_task_k)
      ord_count[idx]++;
  }
}

static void ord_sender(void* arg) {
  (void)arg;
  for (long t = 0; t < ord_task_n; t++) {
    uint32_t v = (uint32_t)t;
    CHECK(uvchan_task_send(&ord_ch, &v) == 0, "order: task send");
    uvchan_task_yield();
  }
}

static void ord_check(const char* what, int k, long n) {
  double x = chi2_uniform(ord_count, k, n);
  if (k > 4) {
    CHECK(x < chi2_limit(k), "order: %s, %d cases: chi-square %.1f", what, k, x);
    printf("  order: %-32s k=%d n=%ld chi-square %5.2f (limit %.2f)\n", what, k, n, x, chi2_limit(k));
    return;
  }
  CHECK(x < chi2_limit(k), "order: %s, %d cases: chi-square %.1f (counts %ld %ld %ld %ld)", what,
        k, x, ord_count[0], ord_count[1], k > 2 ? ord_count[2] : 0, k > 3 ? ord_count[3] : 0);
  printf("  order: %-32s k=%d n=%ld chi-square %5.2f (limit %.2f)\n", what, k, n, x, chi2_limit(k));
}

static void run_order(void) {
  long n = scaled(40000) < 200 ? 200 : scaled(40000);
  double t0 = (double)uv_hrtime();
  ctx_open();
  uvchan_init(&ctx, &ord_ch, sizeof(uint32_t), 0);
  uvchan_init(&ctx, &ord_other, sizeof(uint32_t), 0);
  for (int k = 2; k <= 4; k++) {
    static const struct {
      uvchan_op op;
      int other;
      const char* what;
    } modes[3] = {{UVCHAN_OP_RECV, 0, "callback select, receive cases"},
                  {UVCHAN_OP_SEND, 0, "callback select, send cases"},
                  {UVCHAN_OP_RECV, 1, "callback select, with another chan"}};
    for (int m = 0; m < 3; m++) {
      memset(ord_count, 0, sizeof(ord_count));
      for (long t = 0; t < n; t++)
        ord_count[ord_trial(k, modes[m].op, modes[m].other)]++;
      ord_check(modes[m].what, k, n);
    }
    memset(ord_count, 0, sizeof(ord_count));
    ord_task_n = n;
    ord_task_k = k;
    uvchan_task_spawn(&ctx, ord_selector, NULL, NULL);
    uvchan_task_spawn(&ctx, ord_sender, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ord_check("task select, receive cases", k, n);
  }
  /* 70 cases on one channel: at least 10 trials per case even in the smoke run */
  n = scaled(70000) < 10 * ORD_BIG ? 10 * ORD_BIG : scaled(70000);
  memset(ord_count, 0, sizeof(ord_count));
  for (long t = 0; t < n; t++)
    ord_count[ord_trial(ORD_BIG, UVCHAN_OP_RECV, 0)]++;
  ord_check("callback select, receive cases", ORD_BIG, n);
  uvchan_destroy(&ord_ch);
  uvchan_destroy(&ord_other);
  ctx_close_checked("order");
  printf("  order: %.2f s\n", ((double)uv_hrtime() - t0) / 1e9);
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
    if (all || strcmp(which, "cancels") == 0)
      run_cancels();
    if (all || strcmp(which, "order") == 0)
      run_order();
  }
  printf("uvchan-stress: %s\n", failures == 0 ? "clean" : "FAILED");
  return failures == 0 ? 0 : 1;
}
