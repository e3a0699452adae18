/* Fuzz harness: runs its input as a program of channel operations against uvchan and, step by
 * step, against a reference model written plainly below (arrays, no intrusive lists, no
 * completion queue tricks). Any difference aborts with a message.
 *
 * What is checked, at every step:
 *   - every start call returns the code the model expects (0, UV_EBUSY for a pending request or
 *     a live object, UV_EINVAL for a destroyed channel or wait group or a nil channel in a
 *     callback request, UV_ECANCELED during a shutdown, UV_ESRCH for an ended task,
 *     UV_EAGAIN/UV_EPIPE/UV_EOF for try-operations);
 *   - every callback and every task resumption is one the model has queued, runs exactly once,
 *     never inside the call that started it, in the model's completion order (deadline expiries
 *     of one loop iteration may come in any order among themselves), with the model's status,
 *     select index and value; at most `batch` of them per loop iteration, all of them when fewer
 *     are queued, and none after uv_stop();
 *   - the destination of a receive: the value on success, the zero value (elem_size zero bytes)
 *     on UV_EOF, untouched otherwise; bytes past the element never written; a send's value never
 *     modified;
 *   - values are conserved: each value a send handed over is received once or given to the
 *     element destructor once, in FIFO order; a value whose send failed never shows up;
 *   - a select only ever completes a case the model says was ready. A waiting select links its
 *     cases in a random order, so when several of its cases wait in one queue, a party that
 *     comes may take any of them: the model takes the select's block at the head of that queue
 *     (FIFO against other requests) and follows the case the library chose, read from the
 *     select's index, which must be one of that block;
 *   - tasks: the cooperative budget (after UVCHAN_TASK_BUDGET blocking calls in a row that did
 *     not wait, a task's next call yields to the loop first), cancellation (the call a task is parked in, and
 *     every later one, returns UV_ECANCELED, unless it was matched already), nil channels and
 *     empty selects (they wait until a deadline, a cancel or the shutdown), task references
 *     (UV_ESRCH once the task ended, also when its stack now runs another task);
 *   - a wait group's waiters complete, oldest first, when its count reaches 0, and a count never
 *     goes below 0; destroy cancels its waiters, re-init of a done one is fine and of one in use
 *     UV_EBUSY; a task spawned on it counts until it ends;
 *   - buffered counts, waiting counts, the wait group's count, task liveness and the deadlock
 *     report (each waiting party once, with its type, task, channel, op and cases) match the
 *     model after every top-level operation;
 *   - at the end, either the ordinary teardown (every channel destroyed, tasks run out, the
 *     context closes) or uvchan_ctx_shutdown(): every task and waiting request cancelled in the
 *     library's order (tasks in spawn order, then channels' queues, then wait groups), later
 *     starts UV_ECANCELED, channels destroyed (values to the destructor) once the last task
 *     ended, the close callback once; then every wait group call is UV_EINVAL and
 *     uv_loop_close() returns 0.
 *
 * Input: byte 0 seeds select's random source, picks the batch size, whether a trace hook (which
 * checks every event it sees) is installed and whether the program ends with a shutdown; bytes
 * 1..NCH give each channel a capacity (0..3) and an element size (4, 8, 16, 24, or 0 for signal
 * channels, whose values the model tracks alone); then operations, each an opcode byte and its
 * arguments. A spawned task takes the next bytes as its own program, which it runs from the loop
 * with the blocking calls; a callback request may carry operations its callback runs.
 *
 * Deadlines are 0 ms (due at the next loop iteration: deterministic, since the model expires
 * every such waiter when it runs an iteration) or 2^40 ms (never due; ended by cancel, teardown
 * or shutdown). The model assumes libuv runs due timers before check handles in an iteration,
 * as libuv does.
 *
 * How the model follows tasks. A task's blocking call is modelled where the library performs it:
 * at once when it completes without waiting (the task's code, right after the call, is the
 * first to run), or at the next point where the harness runs again (a delivery, or the end of a
 * loop iteration) when it parked. A call that hits the cooperative budget first yields: its
 * operation runs only when the loop resumes the task, and is modelled then. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

enum {
  NCH = 3,   /* channels */
  NCB = 6,   /* callback request slots (send, receive, select or wait-group wait) */
  NTASK = 3, /* task slots */
  NPARTY = NCB + NTASK,
  MAXCASES = 3,
  MAXQ = NPARTY * MAXCASES,
  MAXCAP = 3,
  MAXESIZE = 24,
  MAXVAL = 1 << 17,
  MAXOPS = 400,       /* top-level operations */
  OPS_BUDGET = 3000,  /* operations in all (tasks, callbacks, repeats): keeps values below MAXVAL */
  MAXSCRIPT = 24,
  MAXREPEAT = 160     /* a task repeats an operation up to this often: past the coop budget */
};

#define HUGE_TIMEOUT ((uint64_t)1 << 40)
#define POISON 0xA5 /* what a receive's destination holds before the call */

/* FUZZ_CHAN_LOG=1 in the environment prints each operation and delivery: for reading a crash. */
static int log_on = -1;
#define LOG(...)                                \
  do {                                          \
    if (log_on < 0)                             \
      log_on = getenv("FUZZ_CHAN_LOG") != NULL; \
    if (log_on)                                 \
      fprintf(stderr, "fuzz-chan: " __VA_ARGS__); \
  } while (0)
#define MUST_WAIT 1

static void fail(const char* what, long a, long b) {
  fprintf(stderr, "fuzz-chan: model mismatch: %s (%ld vs %ld)\n", what, a, b);
  abort();
}
#define CHECK_EQ(what, got, want)             \
  do {                                        \
    long g_ = (long)(got), w_ = (long)(want); \
    if (g_ != w_)                             \
      fail(what, g_, w_);                     \
  } while (0)
#define CHECK(what, cond) \
  do {                    \
    if (!(cond))          \
      fail(what, 0, 1);   \
  } while (0)

/* ---- the reference model ---- */

typedef struct {
  int party;
  int cas; /* case index (0 for a plain send or receive) */
} mwaiter_t;

typedef struct {
  int cap, esize;
  uint32_t buf[MAXCAP];
  int head, len;
  int closed, dead;
  mwaiter_t sq[MAXQ], rq[MAXQ];
  int nsq, nrq;
  uvchan_t real;
} mchan_t;

enum { K_NONE, K_SEND, K_RECV, K_SELECT, K_WG, K_TASK };
enum { S_IDLE, S_WAITING, S_QUEUED };
/* Where a task is in a blocking call: started and not yet run (PH_START); the call made, its
 * operation performed by the library but not yet modelled (PH_OP); yielding for the budget
 * before its operation (PH_YIELD); waiting or its completion queued (PH_WAIT); modelled and
 * complete, about to return (PH_DONE); running its own code (PH_NONE). */
enum { PH_NONE, PH_START, PH_OP, PH_YIELD, PH_WAIT, PH_DONE };
/* A task's blocking call. */
enum { TC_OP, TC_SELECT, TC_WG, TC_SLEEP, TC_YIELD };

typedef struct {
  int ch;      /* channel index, or -1: a nil case (NULL channel) */
  int op;      /* UVCHAN_OP_SEND / UVCHAN_OP_RECV */
  int nullval; /* the value pointer is NULL (a receive that drops the value; any zero-size op) */
  uint32_t sval;
} mcase_t;

typedef struct {
  int kind, state;
  int dl0; /* waiting with a deadline due at the next iteration */
  int wtype; /* the uvchan_req_type it waits as, for the deadlock report */
  int ncases;
  int nullcases; /* a task select over no cases passes NULL */
  mcase_t cases[MAXCASES];
  /* the completion the model predicts */
  int exp_status, exp_index;
  uint32_t exp_val; /* what a receive gets */
  /* the real objects */
  union {
    uvchan_req_t req;
    uvchan_send_t send;
    uvchan_recv_t recv;
    uvchan_select_t sel;
  } r;
  uvchan_case_t rcases[MAXCASES];
  unsigned char vbuf[MAXCASES][MAXESIZE];
  /* a callback request's follow-up: operations its callback runs */
  unsigned char follow[8];
  int nfollow;
  /* tasks */
  int task_live, cancelled, has_wg;
  int coop, refill; /* mirror of the task's cooperative budget */
  int phase, tc, tdl;
  uvchan_task_ref_t ref, oldref; /* this task's, and the slot's previous task's */
  unsigned char script[MAXSCRIPT];
  int nscript;
} party_t;

typedef struct {
  int party, group; /* group > 0: deadline expiries of one iteration, in any order */
} mqent_t;

typedef struct {
  int ch;
  uint32_t v;
} dtor_ent_t;

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  mchan_t ch[NCH];
  int chorder[NCH]; /* the context's list of channels: creation order */
  int nchorder;
  int torder[NTASK]; /* the context's list of tasks: spawn order */
  int ntorder;
  party_t p[NPARTY];
  mqent_t q[NPARTY * 2];
  int nq;
  int group;
  unsigned batch;
  int delivered; /* in the current loop iteration */
  int stopped;   /* uv_stop() was called in the current loop iteration */
  int yield_last; /* the last thing the loop did was to park a task for its budget yield */
  int turn_ended; /* the loop ended this iteration's delivery at a budget yield */
  int in_run, in_call;
  int ops_left;
  uint32_t next_val;
  unsigned char accepted[MAXVAL], received[MAXVAL], destroyed[MAXVAL];
  /* destructor calls: 0 not allowed now, 1 inside uvchan_destroy() (dtor_vals), 2 the
   * shutdown's destruction of the remaining channels (dtor_step) */
  int dtor_mode;
  uint32_t dtor_vals[MAXCAP];
  int ndtor;
  dtor_ent_t dtor_step[NCH * MAXCAP];
  int ndtor_step;
  /* one wait group: alive or destroyed, its count and its waiters, oldest first */
  uvchan_wg_t wg;
  int wg_live;
  long wg_count;
  mwaiter_t wgq[NPARTY];
  int nwgq;
  /* shutdown: begun, and its final step (channels destroyed, context closing) done */
  int shutdown, stepped, closed, close_cbs;
} model_t;

static model_t M;

/* What the inputs exercised, over the whole process: FUZZ_CHAN_STATS=1 makes fuzz-replay print
 * it after a run (docs/reliability.md quotes it for the committed corpus). */
static struct {
  long programs, shutdown_ends, step_values, deliveries, ambiguous, budget_yields;
  long cancel_waiting, cancel_queued, cancel_unstarted, cancel_self, cancel_ended;
  long eof_zero, nil_waits, empty_selects, stops, wg_destroys, wg_reinits, wg_busy, init_busy;
  long turn_ends;
} stats;

void fuzz_chan_print_stats(FILE* out);

void fuzz_chan_print_stats(FILE* out) {
  fprintf(out,
          "fuzz-chan: %ld programs (%ld ended by a shutdown, whose last step destroyed %ld "
          "buffered values), %ld deliveries\n"
          "fuzz-chan: %ld matches took one of several cases of a select in one queue; %ld budget "
          "yields (%ld ended the iteration's delivery)\n"
          "fuzz-chan: task cancels: %ld while waiting, %ld with the wait matched or a yield "
          "queued, %ld before the task ran, %ld by the task itself, %ld of ended tasks "
          "(UV_ESRCH)\n"
          "fuzz-chan: %ld zero values checked after UV_EOF; %ld waits on nil channels, %ld "
          "selects with no usable case; %ld uv_stop()s\n"
          "fuzz-chan: wait group: %ld destroys, %ld re-inits, %ld UV_EBUSY; %ld inits of a live "
          "channel\n",
          stats.programs, stats.shutdown_ends, stats.step_values, stats.deliveries, stats.ambiguous,
          stats.budget_yields, stats.turn_ends, stats.cancel_waiting, stats.cancel_queued, stats.cancel_unstarted,
          stats.cancel_self, stats.cancel_ended, stats.eof_zero, stats.nil_waits, stats.empty_selects, stats.stops,
          stats.wg_destroys, stats.wg_reinits, stats.wg_busy, stats.init_busy);
}

/* Where the library keeps a task's own request (the one the deadlock report names), relative to
 * the task: learnt once per process from the report (probe_task_req()). It lets the model read
 * the index a task's select completed with at the moment the match happened. */
static ptrdiff_t task_req_off;

static const uvchan_select_t* task_sel(const party_t* p) {
  return (const uvchan_select_t*)((const char*)p->ref.task + task_req_off);
}

/* A value of `esize` bytes carrying id `v`, with a pattern that shows a torn copy. */
static void val_fill(unsigned char* b, int esize, uint32_t v) {
  if (esize == 0)
    return;
  memcpy(b, &v, 4);
  for (int i = 4; i < esize; i++)
    b[i] = (unsigned char)(v * 31u + (unsigned)i);
}

static uint32_t val_read(const unsigned char* b, int esize) {
  uint32_t v;
  memcpy(&v, b, 4);
  for (int i = 4; i < esize; i++)
    CHECK_EQ("value bytes intact", b[i], (unsigned char)(v * 31u + (unsigned)i));
  return v;
}

static void check_poison(const unsigned char* b, int from, const char* what) {
  for (int i = from; i < MAXESIZE; i++)
    CHECK_EQ(what, b[i], POISON);
}

static uint32_t val_new(void) {
  if (M.next_val + 1 >= MAXVAL)
    abort(); /* OPS_BUDGET keeps far below this */
  return ++M.next_val;
}

static void q_push(int party, int group) {
  M.q[M.nq].party = party;
  M.q[M.nq].group = group;
  M.nq++;
}

static void mq_remove(mwaiter_t* q, int* n, int party) {
  int j = 0;
  for (int i = 0; i < *n; i++)
    if (q[i].party != party)
      q[j++] = q[i];
  *n = j;
}

/* The party leaves every queue and completes: its callback or resumption is queued. */
static void m_complete(int pi, int status, int index, uint32_t val, int group) {
  party_t* p = &M.p[pi];
  for (int c = 0; c < NCH; c++) {
    mq_remove(M.ch[c].sq, &M.ch[c].nsq, pi);
    mq_remove(M.ch[c].rq, &M.ch[c].nrq, pi);
  }
  mq_remove(M.wgq, &M.nwgq, pi);
  LOG("  complete party %d status %d index %d\n", pi, status, index);
  p->state = S_QUEUED;
  p->dl0 = 0;
  p->exp_status = status;
  p->exp_index = index;
  p->exp_val = val;
  q_push(pi, group);
}

static void m_accept(uint32_t v) {
  CHECK_EQ("value accepted once", M.accepted[v], 0);
  M.accepted[v] = 1;
}

/* The select index of party pi as the library set it (a callback's request, or a task's own). */
static int lib_index(int pi) {
  party_t* p = &M.p[pi];
  if (p->kind == K_TASK)
    return task_sel(p)->index;
  return p->r.sel.index;
}

/* The case a match at the head of queue q (n > 0 entries) takes. A select's cases in one queue
 * form one block (they were linked together), in an order the select drew at random: any of
 * them may be first. With one case it is that one; with several, the library's choice, which
 * the match wrote into the select's index, must be one of the block. Called after the library
 * call that made the match. */
static int m_pick(const mwaiter_t* q, int n) {
  int pi = q[0].party, k = 1, idx;
  while (k < n && q[k].party == pi)
    k++;
  if (k == 1)
    return q[0].cas;
  idx = lib_index(pi);
  for (int i = 0; i < k; i++)
    if (q[i].cas == idx) {
      stats.ambiguous++;
      return idx;
    }
  fail("the match took a case of the select's block at the head of the queue", idx, q[0].cas);
  return -1;
}

/* Go's send: to the oldest waiting receiver, else into the buffer, else wait. */
static int m_send_now(int c, uint32_t v) {
  mchan_t* ch = &M.ch[c];
  if (ch->closed)
    return UV_EPIPE;
  if (ch->nrq > 0) {
    int pi = ch->rq[0].party, k = m_pick(ch->rq, ch->nrq);
    m_accept(v);
    m_complete(pi, 0, k, v, 0);
    return 0;
  }
  if (ch->len < ch->cap) {
    m_accept(v);
    ch->buf[(ch->head + ch->len) % ch->cap] = v;
    ch->len++;
    return 0;
  }
  return MUST_WAIT;
}

/* Go's receive: from the buffer (refilled by the oldest waiting sender), else from the oldest
 * waiting sender, else UV_EOF if closed, else wait. */
static int m_recv_now(int c, uint32_t* out) {
  mchan_t* ch = &M.ch[c];
  if (ch->len > 0) {
    *out = ch->buf[ch->head];
    ch->head = (ch->head + 1) % ch->cap;
    ch->len--;
    if (ch->nsq > 0) {
      int pi = ch->sq[0].party, k = m_pick(ch->sq, ch->nsq);
      uint32_t sv = M.p[pi].cases[k].sval;
      m_accept(sv);
      ch->buf[(ch->head + ch->len) % ch->cap] = sv;
      ch->len++;
      m_complete(pi, 0, k, 0, 0);
    }
    return 0;
  }
  if (ch->nsq > 0) {
    int pi = ch->sq[0].party, k = m_pick(ch->sq, ch->nsq);
    *out = M.p[pi].cases[k].sval;
    m_accept(*out);
    m_complete(pi, 0, k, 0, 0);
    return 0;
  }
  if (ch->closed)
    return UV_EOF;
  return MUST_WAIT;
}

static void m_wait(int pi, int cas) {
  mcase_t* k = &M.p[pi].cases[cas];
  mchan_t* ch = &M.ch[k->ch];
  mwaiter_t w = {pi, cas};
  if (k->op == UVCHAN_OP_SEND)
    ch->sq[ch->nsq++] = w;
  else
    ch->rq[ch->nrq++] = w;
}

/* Party pi waits in every case's queue (a plain send or receive has one case; a nil case waits
 * in none: the party then waits for its deadline, a cancel or the shutdown). */
static void m_wait_all(int pi, int dl) {
  party_t* p = &M.p[pi];
  for (int i = 0; i < p->ncases; i++)
    if (p->cases[i].ch >= 0)
      m_wait(pi, i);
  p->state = S_WAITING;
  p->dl0 = dl == 1;
}

static int m_case_ready(const mcase_t* k) {
  const mchan_t* ch;
  if (k->ch < 0)
    return 0; /* a nil case is never ready */
  ch = &M.ch[k->ch];
  if (k->op == UVCHAN_OP_SEND)
    return ch->closed || ch->nrq > 0 || ch->len < ch->cap;
  return ch->len > 0 || ch->nsq > 0 || ch->closed;
}

static int any_ready(const party_t* p) {
  for (int i = 0; i < p->ncases; i++)
    if (m_case_ready(&p->cases[i]))
      return 1;
  return 0;
}

static int cases_dead(const party_t* p) {
  for (int i = 0; i < p->ncases; i++)
    if (p->cases[i].ch >= 0 && M.ch[p->cases[i].ch].dead)
      return 1;
  return 0;
}

static int all_nil(const party_t* p) {
  for (int i = 0; i < p->ncases; i++)
    if (p->cases[i].ch >= 0)
      return 0;
  return 1;
}

/* Close and destroy fail the receivers first, then the senders, oldest first; a select leaves
 * with the case it was found by. Called after the library call. */
static void m_fail_queues(int c, int rstatus, int sstatus) {
  mchan_t* ch = &M.ch[c];
  while (ch->nrq > 0)
    m_complete(ch->rq[0].party, rstatus, m_pick(ch->rq, ch->nrq), 0, 0);
  while (ch->nsq > 0)
    m_complete(ch->sq[0].party, sstatus, m_pick(ch->sq, ch->nsq), 0, 0);
}

/* A select's choice: `idx` is what the library picked; it must be a ready case, and the model
 * then performs that case. Returns the case's status. */
static int m_select_apply(party_t* p, int idx, uint32_t* got) {
  mcase_t* k;
  int st;
  CHECK("select picked a case", idx >= 0 && idx < p->ncases);
  k = &p->cases[idx];
  CHECK("select picked a ready case", m_case_ready(k));
  st = k->op == UVCHAN_OP_SEND ? m_send_now(k->ch, k->sval) : m_recv_now(k->ch, got);
  CHECK("a ready case completes", st != MUST_WAIT);
  return st;
}

/* ---- the wait group ---- */

static void m_wg_release(void) {
  while (M.nwgq > 0)
    m_complete(M.wgq[0].party, 0, -1, 0, 0);
}

/* The model of uvchan_wg_add(delta): its code. */
static int m_wg_add(long delta) {
  if (!M.wg_live || M.wg_count + delta < 0)
    return UV_EINVAL;
  M.wg_count += delta;
  if (M.wg_count == 0)
    m_wg_release();
  return 0;
}

static void m_wg_wait(int pi) {
  M.wgq[M.nwgq].party = pi;
  M.wgq[M.nwgq].cas = 0;
  M.nwgq++;
  M.p[pi].state = S_WAITING;
  M.p[pi].dl0 = 0;
}

/* ---- checks against the real library ---- */

static int expect_index_chan(const party_t* p, int* op) {
  for (int i = 0; i < p->ncases; i++)
    if (p->cases[i].ch >= 0) {
      *op = p->cases[i].op;
      return p->cases[i].ch;
    }
  *op = 0;
  return -1;
}

static int party_of(const void* req);

static int walk_seen[NPARTY];

/* One party uvchan_ctx_walk_waiting() reports: a waiting party of the model, once, as it waits. */
static void on_walk(const uvchan_waiting_t* w, void* arg) {
  int pi = -1, ch, op;
  party_t* p;
  (void)arg;
  if (w->task != NULL) {
    for (int i = NCB; i < NPARTY; i++)
      if (M.p[i].task_live && M.p[i].ref.task == w->task)
        pi = i;
    CHECK("report names a live task", pi >= 0);
    CHECK("report names the task's own request", (const void*)w->req == (const void*)task_sel(&M.p[pi]));
  } else {
    pi = party_of(w->req);
    CHECK("report names a callback request", pi < NCB);
  }
  p = &M.p[pi];
  CHECK("report names a waiting party", p->state == S_WAITING);
  CHECK_EQ("report names each party once", walk_seen[pi]++, 0);
  CHECK_EQ("report type", w->type, p->wtype);
  switch (p->wtype) {
    case UVCHAN_REQ_SELECT:
      ch = expect_index_chan(p, &op);
      CHECK("report: a select's cases", w->cases == (p->nullcases ? NULL : p->rcases));
      CHECK_EQ("report: a select's number of cases", w->ncases, p->ncases);
      break;
    case UVCHAN_REQ_SEND:
    case UVCHAN_REQ_RECV:
      ch = p->cases[0].ch;
      op = p->cases[0].op;
      CHECK("report: no cases", w->cases == NULL && w->ncases == 0);
      break;
    default:
      ch = -1;
      op = 0;
      CHECK("report: no cases", w->cases == NULL && w->ncases == 0);
      break;
  }
  CHECK("report channel", w->chan == (ch >= 0 ? &M.ch[ch].real : NULL));
  /* FINDING (test/test-fuzz-findings.c, test_report_nil_channel_op_is_zero): uvchan.h says `op` is
   * 0 when `chan` is NULL, but a task on a nil channel is reported with its send/receive op. The
   * model accepts both until the header or the code changes. */
  if (ch < 0 && w->type <= UVCHAN_REQ_RECV)
    CHECK("report op of a nil-channel operation", (int)w->op == 0 || (int)w->op == op);
  else
    CHECK_EQ("report op", w->op, ch >= 0 ? op : 0);
}

static void check_counts(void) {
  int waiting = 0;
  for (int c = 0; c < NCH; c++) {
    mchan_t* ch = &M.ch[c];
    if (ch->dead)
      continue;
    CHECK_EQ("uvchan_len", uvchan_len(&ch->real), ch->len);
    CHECK_EQ("waiting senders", uvchan_waiting_senders(&ch->real), ch->nsq);
    CHECK_EQ("waiting receivers", uvchan_waiting_receivers(&ch->real), ch->nrq);
    CHECK_EQ("closed", uvchan_is_closed(&ch->real), ch->closed);
  }
  memset(walk_seen, 0, sizeof(walk_seen));
  for (int i = 0; i < NPARTY; i++)
    waiting += M.p[i].state == S_WAITING;
  CHECK_EQ("walk_waiting", uvchan_ctx_walk_waiting(&M.ctx, on_walk, NULL), waiting);
  CHECK_EQ("wait group count", uvchan_wg_count(&M.wg), M.wg_live && !M.stepped ? M.wg_count : UV_EINVAL);
  if (!M.stepped) /* a reference is valid until the context closes */
    for (int i = NCB; i < NPARTY; i++)
      if (M.p[i].ref.task != NULL)
        CHECK_EQ("task alive", uvchan_task_alive(&M.p[i].ref), M.p[i].task_live);
}

/* A value arrived in buffer `b` from channel `c`: it must be the model's, intact, and the first
 * arrival of that value. */
static void got_value(const unsigned char* b, int c, uint32_t want) {
  /* zero-size elements carry nothing to read: the model's accounting is all there is */
  uint32_t v = M.ch[c].esize != 0 && b != NULL ? val_read(b, M.ch[c].esize) : want;
  CHECK_EQ("received value", v, want);
  CHECK_EQ("received once", M.received[v], 0);
  M.received[v] = 1;
}

/* Party p's operation ended: case `idx` (-1: none) completed with `status`, with `want` if it
 * received. Every destination must hold what it should: the value, the zero value for UV_EOF,
 * nothing new otherwise; every sent value must be intact. */
static void check_bufs(party_t* p, int idx, int status, uint32_t want) {
  for (int i = 0; i < p->ncases; i++) {
    mcase_t* k = &p->cases[i];
    const unsigned char* b = p->vbuf[i];
    int esize;
    if (k->ch < 0) {
      check_poison(b, 0, "a nil case's buffer untouched");
      continue;
    }
    esize = M.ch[k->ch].esize;
    if (k->op == UVCHAN_OP_SEND) {
      if (esize != 0)
        CHECK_EQ("a sent value is not modified", val_read(b, esize), k->sval);
      check_poison(b, esize, "nothing written past a sent value");
      continue;
    }
    if (k->nullval || esize == 0) {
      check_poison(b, 0, "nothing written through a dropped or zero-size receive");
      if (i == idx && status == 0)
        got_value(NULL, k->ch, want);
      continue;
    }
    if (i == idx && status == 0) {
      got_value(b, k->ch, want);
    } else if (i == idx && status == UV_EOF) {
      stats.eof_zero++; /* with an element to check (the branches above took the others) */
      for (int j = 0; j < esize; j++)
        CHECK_EQ("UV_EOF leaves the zero value", b[j], 0);
    } else {
      check_poison(b, 0, "a receive that got nothing leaves its destination untouched");
      continue;
    }
    check_poison(b, esize, "nothing written past the element");
  }
}

static int party_of(const void* req) {
  for (int i = 0; i < NPARTY; i++)
    if ((const void*)&M.p[i].r == req)
      return i;
  abort();
}

/* ---- deliveries and tasks' calls ---- */

static int m_task_apply(int pi, int got);
static int yield_uses_wg(void);

/* A completion of party pi is delivered now: it must be queued in the model, behind only other
 * deadline expiries of its own group. */
static void deliver_raw(int pi) {
  int i, j;
  LOG("  deliver party %d\n", pi);
  CHECK("delivered from the loop", M.in_run);
  CHECK("never inside the starting call", !M.in_call);
  CHECK("nothing delivered after uv_stop()", !M.stopped);
  for (i = 0; i < M.nq && M.q[i].party != pi; i++) {
  }
  CHECK("delivered only when completed, and once", i < M.nq);
  for (j = 0; j < i; j++)
    CHECK("completion order", M.q[j].group != 0 && M.q[j].group == M.q[i].group);
  memmove(&M.q[i], &M.q[i + 1], (size_t)(M.nq - i - 1) * sizeof(M.q[0]));
  M.nq--;
  M.p[pi].state = S_IDLE;
  M.yield_last = 0;
  M.delivered++;
  stats.deliveries++;
  CHECK("at most batch deliveries per iteration", (unsigned)M.delivered <= M.batch);
}

/* The harness runs again, as task `self` returning from a call (-1: a callback's delivery, or
 * the end of a loop iteration, `top`). Everything the library did since the harness last ran is
 * modelled now, in the order it happened:
 *   1. a task whose call's operation was performed but not modelled, and that is not `self`,
 *      parked in it (had it completed, that task's own code would have been the first to run);
 *   2. tasks yielding for the budget at the head of the queue were resumed, in queue order (at
 *      the end of an iteration only while the batch had room), and their operations performed:
 *      each parked again, except `self`, which returns;
 *   3. `self` returns: its call completed at once (then nothing else ran: step 2 is skipped), or
 *      its completion is delivered now. */
static void sync_tasks(int self, int top, int got) {
  party_t* t;
  LOG("  sync: %s %d (got %d)\n", top ? "loop iteration end" : self >= 0 ? "task returns" : "delivery", self, got);
  for (int i = NCB; i < NPARTY; i++) {
    t = &M.p[i];
    if (t->phase != PH_OP || i == self)
      continue;
    if (m_task_apply(i, -1))
      fail("a task whose call completed at once did not return from it", i, 0);
    t->phase = PH_WAIT;
  }
  if (self >= 0 && M.p[self].phase == PH_OP)
    M.p[self].phase = m_task_apply(self, got) ? PH_DONE : PH_WAIT;
  while (M.nq > 0 && (self < 0 || M.p[self].phase != PH_DONE)) {
    int h = M.q[0].party;
    t = &M.p[h];
    if (t->kind != K_TASK || t->phase != PH_YIELD)
      break;
    if (top && (M.stopped || (unsigned)M.delivered >= M.batch))
      break;
    if (top && task_sel(t)->type == UVCHAN_REQ_TASK) {
      M.turn_ended = 1; /* still in its budget yield: the delivery ended there (top_run()) */
      break;
    }
    LOG("  task %d resumed from its budget yield\n", h);
    deliver_raw(h);
    /* the call that yielded is the first of the next run (a cancelled task's refill is 1) */
    t->coop = t->refill == 1 ? 1 : UVCHAN_TASK_BUDGET;
    if (h == self) {
      t->phase = m_task_apply(h, got) ? PH_DONE : PH_WAIT;
      continue;
    }
    if (m_task_apply(h, -1))
      fail("a task resumed from its budget yield completed its call but did not return", h, 0);
    t->phase = PH_WAIT;
  }
  if (self >= 0) {
    t = &M.p[self];
    if (t->phase == PH_WAIT || t->phase == PH_START) {
      deliver_raw(self);
      t->coop = t->refill; /* a task that waited starts a new run of its budget */
      t->phase = PH_DONE;
    }
    CHECK("a task's call returns when the model says it completed", t->phase == PH_DONE);
    t->phase = PH_NONE;
  }
}

/* A callback of party pi runs now. */
static void deliver(int pi) {
  sync_tasks(-1, 0, 0);
  deliver_raw(pi);
}

typedef struct reader_s reader_t;
enum { W_TOP, W_CALLBACK, W_TASK };
static void exec_op(reader_t* r, int where, int op);
static void run_follow_up(party_t* p);

static void on_req(uvchan_req_t* req, int status) {
  int pi = party_of(req);
  party_t* p = &M.p[pi];
  deliver(pi);
  CHECK_EQ("callback status", status, p->exp_status);
  CHECK_EQ("request status field", req->status, status);
  if (p->kind == K_SELECT) {
    CHECK_EQ("select index", p->r.sel.index, p->exp_index);
    check_bufs(p, p->exp_index, status, p->exp_val);
  } else if (p->kind == K_SEND || p->kind == K_RECV) {
    check_bufs(p, 0, status, p->exp_val);
  }
  run_follow_up(p);
}

static void on_send(uvchan_send_t* r, int st) {
  on_req((uvchan_req_t*)r, st);
}
static void on_recv(uvchan_recv_t* r, int st) {
  on_req((uvchan_req_t*)r, st);
}
static void on_wg(uvchan_req_t* r, int st) {
  on_req(r, st);
}
static void on_select(uvchan_select_t* r, int st) {
  on_req((uvchan_req_t*)r, st);
}

static void on_dtor(uvchan_t* ch, void* value) {
  int c;
  uint32_t v;
  for (c = 0; c < NCH && ch != &M.ch[c].real; c++) {
  }
  CHECK("destructor for one of our channels", c < NCH);
  v = uvchan_elem_size(ch) != 0 ? val_read(value, (int)uvchan_elem_size(ch)) : 0;
  if (M.dtor_mode == 1) {
    CHECK("destructor: at most a buffer's worth", M.ndtor < MAXCAP);
    M.dtor_vals[M.ndtor++] = v;
  } else if (M.dtor_mode == 2) {
    CHECK("destructor: at most the buffers' worth", M.ndtor_step < NCH * MAXCAP);
    M.dtor_step[M.ndtor_step].ch = c;
    M.dtor_step[M.ndtor_step].v = v;
    M.ndtor_step++;
  } else {
    fail("destructor only inside uvchan_destroy() or the shutdown's last step", c, (long)v);
  }
}

static void on_close(uvchan_ctx_t* ctx) {
  CHECK("close callback for our context", ctx == &M.ctx);
  CHECK("close callback from the loop", !M.in_call);
  M.close_cbs++;
}

/* The trace hook sees every event synchronously: each must name one of our channels and, for
 * the requests it names, a request of ours or of a task. */
static void on_trace(const uvchan_trace_t* ev, void* arg) {
  int c;
  CHECK("trace arg", arg == &M);
  CHECK("trace kind", strcmp(uvchan_trace_kind_name(ev->kind), "unknown") != 0);
  for (c = 0; c < NCH && ev->chan != &M.ch[c].real; c++) {
  }
  CHECK("trace names one of our channels", c < NCH);
  CHECK("trace len", ev->len <= (size_t)M.ch[c].cap);
  if (ev->kind == UVCHAN_TRACE_CLOSE)
    return;
  CHECK("trace op", ev->op == UVCHAN_OP_SEND || ev->op == UVCHAN_OP_RECV);
  if (ev->req != NULL && uvchan_req_task(ev->req) == NULL)
    (void)party_of(ev->req);
  if (ev->peer != NULL && uvchan_req_task(ev->peer) == NULL)
    (void)party_of(ev->peer);
}

/* ---- reading the program ---- */

struct reader_s {
  const uint8_t* p;
  size_t n, i;
};

static int rd(reader_t* r) {
  return r->i < r->n ? r->p[r->i++] : 0;
}

static int rd_more(const reader_t* r) {
  return r->i < r->n;
}

/* 0: no deadline, 1: due at the next iteration, 2: never due */
static int rd_deadline(reader_t* r) {
  return rd(r) % 3;
}

static uint64_t timeout_of(int dl) {
  return dl == 1 ? 0 : HUGE_TIMEOUT;
}

/* Fills case i of party p from one program byte: its channel (or, when `allow_nil`, sometimes
 * none), its direction (unless `op_fixed`), and whether it passes a NULL value pointer (a
 * receive that drops the value). Send cases get fresh values; every buffer starts as POISON. */
static void rd_case(reader_t* r, party_t* p, int i, int op_fixed, int allow_nil) {
  int b = rd(r), rest = b / NCH;
  mcase_t* k = &p->cases[i];
  int esize;
  k->ch = b % NCH;
  k->op = op_fixed ? op_fixed : (rest & 1) ? UVCHAN_OP_SEND : UVCHAN_OP_RECV;
  rest >>= 1;
  if (allow_nil && rest % 8 == 7)
    k->ch = -1;
  k->nullval = (rest / 8) % 3 == 2;
  k->sval = 0;
  memset(p->vbuf[i], POISON, sizeof(p->vbuf[i]));
  esize = k->ch >= 0 ? M.ch[k->ch].esize : 0;
  if (k->op == UVCHAN_OP_SEND && k->ch >= 0) {
    k->sval = val_new();
    val_fill(p->vbuf[i], esize, k->sval);
  }
  if (esize != 0 && k->op == UVCHAN_OP_SEND)
    k->nullval = 0; /* a value is required there */
  if (esize == 0)
    k->nullval = !k->nullval; /* zero-size elements: mostly NULL, as signal channels are used */
  p->rcases[i].chan = k->ch >= 0 ? &M.ch[k->ch].real : NULL;
  p->rcases[i].op = (uvchan_op)k->op;
  p->rcases[i].value = k->nullval ? NULL : p->vbuf[i];
}

static void rd_cases(reader_t* r, party_t* p, int n, int op_fixed, int allow_nil) {
  p->ncases = n;
  p->nullcases = 0;
  for (int i = 0; i < n; i++)
    rd_case(r, p, i, op_fixed, allow_nil);
}

/* ---- operations ---- */

enum {
  OP_SEND,
  OP_RECV,
  OP_TRY_SEND,
  OP_TRY_RECV,
  OP_SELECT,
  OP_TRY_SELECT,
  OP_CANCEL,
  OP_CLOSE,
  OP_RUN,      /* top level: one loop iteration; callback: uv_stop(); task: yield */
  OP_DESTROY,  /* top level, callback: destroy and re-create a channel; task: sleep */
  OP_SPAWN,    /* top level, callback: spawn a task; task: exit */
  OP_BATCH,    /* top level: change the batch; task: another receive */
  OP_CTX,      /* context checks: close or init while busy, init a live channel, the report,
                  the shutdown */
  OP_WG,       /* the wait group: add, done, wait, destroy, init */
  OP_TCANCEL,  /* cancel a task through its reference (or the slot's previous task's) */
  OP_NIL,      /* nil channels: a task blocks on one (or on a select without cases); a callback
                  request or a try-operation on one fails */
  OP_REPEAT,   /* task: run the next operation up to MAXREPEAT times (past the coop budget) */
  NOPS
};

static int take_op(void) {
  if (M.ops_left <= 0)
    return 0;
  M.ops_left--;
  return 1;
}

static void op_try_send(reader_t* r) {
  int c = rd(r) % NCH;
  unsigned char b[MAXESIZE];
  uint32_t v = val_new();
  int want, got;
  memset(b, POISON, sizeof(b));
  val_fill(b, M.ch[c].esize, v);
  M.in_call = 1;
  got = uvchan_try_send(&M.ch[c].real, M.ch[c].esize != 0 ? b : NULL);
  M.in_call = 0;
  want = M.ch[c].dead ? UV_EINVAL : m_send_now(c, v);
  CHECK_EQ("try_send", got, want == MUST_WAIT ? UV_EAGAIN : want);
}

static void op_try_recv(reader_t* r) {
  int c = rd(r) % NCH, want, got, esize = M.ch[c].esize;
  unsigned char b[MAXESIZE];
  uint32_t want_v = 0;
  memset(b, POISON, sizeof(b));
  M.in_call = 1;
  got = uvchan_try_recv(&M.ch[c].real, esize != 0 ? b : NULL);
  M.in_call = 0;
  want = M.ch[c].dead ? UV_EINVAL : m_recv_now(c, &want_v);
  CHECK_EQ("try_recv", got, want == MUST_WAIT ? UV_EAGAIN : want);
  if (got == 0) {
    got_value(esize != 0 ? b : NULL, c, want_v);
    check_poison(b, esize, "try_recv writes only the element");
  } else if (got == UV_EOF) {
    stats.eof_zero += esize != 0;
    for (int j = 0; j < esize; j++)
      CHECK_EQ("try_recv UV_EOF leaves the zero value", b[j], 0);
    check_poison(b, esize, "try_recv writes only the element");
  } else {
    check_poison(b, 0, "a failed try_recv leaves its destination untouched");
  }
}

static void op_try_select(reader_t* r) {
  static party_t tmp; /* a try-select needs no request: its cases live here */
  int n = 1 + rd(r) % MAXCASES, got, st = 0, want_st;
  uint32_t v = 0;
  memset(&tmp, 0, sizeof(tmp));
  rd_cases(r, &tmp, n, 0, 1);
  M.in_call = 1;
  got = uvchan_try_select(tmp.rcases, (unsigned)n, &st);
  M.in_call = 0;
  if (cases_dead(&tmp)) {
    CHECK_EQ("try_select on a destroyed channel", got, UV_EINVAL);
    return;
  }
  if (!any_ready(&tmp)) {
    CHECK_EQ("try_select with nothing ready", got, UV_EAGAIN);
    check_bufs(&tmp, -1, got, 0);
    return;
  }
  want_st = m_select_apply(&tmp, got, &v);
  CHECK_EQ("try_select status", st, want_st);
  check_bufs(&tmp, got, st, v);
}

static void op_cancel(reader_t* r) {
  int pi = rd(r) % NCB;
  party_t* p = &M.p[pi];
  int want = p->state == S_WAITING ? 0 : p->state == S_QUEUED ? UV_EBUSY : UV_EINVAL, got;
  if (want == 0)
    m_complete(pi, UV_ECANCELED, -1, 0, 0);
  M.in_call = 1;
  got = uvchan_cancel(&p->r.req);
  M.in_call = 0;
  CHECK_EQ("cancel", got, want);
}

static void op_close(reader_t* r) {
  int c = rd(r) % NCH, want, got;
  mchan_t* ch = &M.ch[c];
  M.in_call = 1;
  got = uvchan_close(&ch->real);
  M.in_call = 0;
  if (ch->dead)
    want = UV_EINVAL;
  else if (ch->closed)
    want = UV_EPIPE;
  else {
    want = 0;
    ch->closed = 1;
    m_fail_queues(c, UV_EOF, UV_EPIPE);
  }
  CHECK_EQ("close", got, want);
}

/* ---- the library's calls, one place each ---- */

/* Starts p's callback request of `kind` on `cases` (one for a plain send or receive) with
 * deadline mode `dl`; returns the start call's code. */
static int real_start(party_t* p, int kind, uvchan_case_t* cases, unsigned n, int dl) {
  uvchan_t* ch = cases[0].chan;
  void* val = cases[0].value;
  uint64_t to = timeout_of(dl);
  int got;
  M.in_call = 1;
  if (kind == K_SEND)
    got = dl == 0 ? uvchan_send(&p->r.send, ch, val, on_send)
                  : uvchan_send_timeout(&p->r.send, ch, val, to, on_send);
  else if (kind == K_RECV)
    got = dl == 0 ? uvchan_recv(&p->r.recv, ch, val, on_recv)
                  : uvchan_recv_timeout(&p->r.recv, ch, val, to, on_recv);
  else
    got = dl == 0 ? uvchan_select(&p->r.sel, cases, n, on_select)
                  : uvchan_select_timeout(&p->r.sel, cases, n, to, on_select);
  M.in_call = 0;
  return got;
}

/* A task's blocking call, as the model describes it in p->tc, p->tdl and p's cases. */
static int task_real_call(party_t* p, int* st) {
  const uvchan_case_t* c = &p->rcases[0];
  uvchan_case_t* cases = p->nullcases ? NULL : p->rcases;
  int dl = p->tdl;
  switch (p->tc) {
    case TC_OP:
      if (c->op == UVCHAN_OP_SEND)
        return dl == 0 ? uvchan_task_send(c->chan, c->value)
                       : uvchan_task_send_timeout(c->chan, c->value, timeout_of(dl));
      return dl == 0 ? uvchan_task_recv(c->chan, c->value)
                     : uvchan_task_recv_timeout(c->chan, c->value, timeout_of(dl));
    case TC_SELECT:
      return dl == 0 ? uvchan_task_select(cases, (unsigned)p->ncases, st)
                     : uvchan_task_select_timeout(cases, (unsigned)p->ncases, timeout_of(dl), st);
    case TC_WG:
      return uvchan_task_wg_wait(&M.wg);
    default:
      return uvchan_task_sleep(dl == 2 ? HUGE_TIMEOUT : 0);
  }
}

/* ---- tasks ---- */

/* The model of a task's blocking call, performed now (when the library performed it): returns 1
 * if it completed at once (p->exp_* hold the outcome), 0 if the task waits. `got` is what the
 * call returned, when the task has returned from it (the index a select that completed at once
 * chose); -1 otherwise. */
static int m_task_apply(int pi, int got) {
  party_t* p = &M.p[pi];
  uint32_t v = 0;
  int st;
  p->exp_index = -1;
  p->exp_val = 0;
  if (p->cancelled) {
    p->exp_status = UV_ECANCELED; /* every blocking call of a cancelled task */
    return 1;
  }
  switch (p->tc) {
    case TC_OP:
      p->wtype = p->cases[0].op == UVCHAN_OP_SEND ? UVCHAN_REQ_SEND : UVCHAN_REQ_RECV;
      if (p->cases[0].ch < 0) {
        stats.nil_waits++;
        break; /* a nil channel: blocks forever */
      }
      st = p->cases[0].op == UVCHAN_OP_SEND ? m_send_now(p->cases[0].ch, p->cases[0].sval)
                                            : m_recv_now(p->cases[0].ch, &v);
      if (st == MUST_WAIT)
        break;
      p->exp_status = st;
      p->exp_index = 0;
      p->exp_val = v;
      return 1;
    case TC_SELECT:
      p->wtype = UVCHAN_REQ_SELECT;
      stats.empty_selects += all_nil(p);
      if (!any_ready(p))
        break;
      if (got < 0)
        return 1; /* the task did not return: the caller reports it */
      p->exp_status = m_select_apply(p, got, &v);
      p->exp_index = got;
      p->exp_val = v;
      return 1;
    case TC_WG:
      p->wtype = UVCHAN_REQ_WG_WAIT;
      if (M.wg_count == 0) {
        p->exp_status = 0;
        return 1;
      }
      m_wg_wait(pi);
      return 0;
    default:
      p->wtype = UVCHAN_REQ_SLEEP;
      p->ncases = 0;
      break;
  }
  m_wait_all(pi, p->tc == TC_SLEEP ? (p->tdl == 2 ? 2 : 1) : p->tdl);
  return 0;
}

/* Task pi makes blocking call `tc` (its cases and deadline mode are set): spends one unit of its
 * budget (a cancelled task's calls fail at once), yields first when the budget ran out, and
 * checks what the call returns against the model. */
static void task_call(int pi, int tc, int dl) {
  party_t* p = &M.p[pi];
  int got, st = 0, want;
  p->tc = tc;
  p->tdl = dl;
  if (!p->cancelled && --p->coop == 0) {
    LOG("task %d yields for its budget\n", pi);
    stats.budget_yields++;
    M.yield_last = 1;
    p->phase = PH_YIELD;
    p->state = S_QUEUED;
    q_push(pi, 0);
  } else {
    p->phase = PH_OP;
  }
  LOG("task %d call %d (deadline mode %d)\n", pi, tc, dl);
  got = task_real_call(p, &st);
  sync_tasks(pi, 0, got);
  switch (tc) {
    case TC_SELECT:
      if (p->exp_index < 0) {
        CHECK_EQ("task select without a case", got, p->exp_status);
      } else {
        CHECK_EQ("task select index", got, p->exp_index);
        CHECK_EQ("task select status", st, p->exp_status);
      }
      break;
    case TC_SLEEP:
      want = p->exp_status == UV_ETIMEDOUT ? 0 : p->exp_status;
      CHECK_EQ("task sleep", got, want);
      break;
    default:
      CHECK_EQ("task call status", got, p->exp_status);
      break;
  }
  check_bufs(p, p->exp_index, p->exp_status, p->exp_val);
}

/* Task pi ends (returns, or calls uvchan_task_exit()): the library says the wait group it was
 * spawned on is done, a uvchan_wg_done() whose code the model follows. */
static void task_end(int pi) {
  party_t* p = &M.p[pi];
  int j = 0;
  LOG("task %d ends\n", pi);
  p->task_live = 0;
  for (int i = 0; i < M.ntorder; i++)
    if (M.torder[i] != pi)
      M.torder[j++] = M.torder[i];
  M.ntorder = j;
  if (p->has_wg)
    (void)m_wg_add(-1);
}

/* The model of cancelling the live task qi: its parked wait ends unless matched already, and
 * every later blocking call fails. */
static void m_task_cancel(int qi) {
  party_t* q = &M.p[qi];
  q->cancelled = 1;
  q->coop = 1;
  q->refill = 1;
  if (q->state == S_WAITING)
    m_complete(qi, UV_ECANCELED, -1, 0, 0);
}

static void tcancel(int slot, int use_old) {
  party_t* q = &M.p[NCB + slot];
  const uvchan_task_ref_t* ref = use_old ? &q->oldref : &q->ref;
  int alive = !use_old && q->task_live, want, got;
  if (M.stepped)
    return; /* references are valid until the context closes */
  want = ref->task == NULL ? UV_EINVAL : alive ? 0 : UV_ESRCH;
  CHECK_EQ("task alive", uvchan_task_alive(ref), alive);
  if (want == UV_ESRCH)
    stats.cancel_ended++;
  if (want == 0) {
    if (q->state == S_WAITING)
      stats.cancel_waiting++;
    else if (q->phase == PH_START)
      stats.cancel_unstarted++;
    else if (q->state == S_QUEUED)
      stats.cancel_queued++;
    else
      stats.cancel_self++;
    m_task_cancel(NCB + slot);
  }
  M.in_call = 1;
  got = uvchan_task_cancel(ref);
  M.in_call = 0;
  CHECK_EQ("task cancel", got, want);
}

static void op_tcancel(reader_t* r) {
  int b = rd(r);
  tcancel(b % NTASK, (b / NTASK) % 4 == 3);
}

/* ---- the wait group ---- */

static void wg_add(long delta) {
  int got, want;
  M.in_call = 1;
  got = uvchan_wg_add(&M.wg, delta);
  M.in_call = 0;
  want = M.stepped ? UV_EINVAL : m_wg_add(delta);
  CHECK_EQ("wait group add", got, want);
}

static void wg_destroy(void) {
  int got, want = M.wg_live && !M.stepped ? 0 : UV_EINVAL;
  if (want == 0 && yield_uses_wg())
    return; /* WORKAROUND, see yield_uses_chan() */
  M.in_call = 1;
  got = uvchan_wg_destroy(&M.wg);
  M.in_call = 0;
  CHECK_EQ("wait group destroy", got, want);
  if (want == 0) {
    while (M.nwgq > 0)
      m_complete(M.wgq[0].party, UV_ECANCELED, -1, 0, 0);
    M.wg_live = 0;
    stats.wg_destroys++;
  }
}

static void wg_init(void) {
  int got, want;
  if (M.stepped)
    want = UV_EINVAL;
  else if (M.shutdown)
    want = UV_ECANCELED;
  else if (M.wg_live && (M.wg_count > 0 || M.nwgq > 0))
    want = UV_EBUSY;
  else
    want = 0;
  M.in_call = 1;
  got = uvchan_wg_init(&M.ctx, &M.wg);
  M.in_call = 0;
  CHECK_EQ("wait group init", got, want);
  stats.wg_busy += want == UV_EBUSY;
  stats.wg_reinits += want == 0 && M.wg_live;
  if (want == 0) {
    M.wg_live = 1;
    M.wg_count = 0;
  }
}

/* A wait group operation: from the top level or a callback (task_pi < 0, waits with a callback
 * request), or from task task_pi (waits in the task). */
static void op_wg(reader_t* r, int task_pi) {
  int b = rd(r), pi, got, want;
  party_t* p;
  switch (b % 10) {
    case 0: wg_add(1); return;
    case 1: wg_add(2); return;
    case 2: wg_add(-1); return;
    case 3: wg_add(-3); return;
    case 4: wg_destroy(); return;
    case 5: wg_init(); return;
    default: break;
  }
  if (task_pi >= 0) {
    p = &M.p[task_pi];
    if (!M.wg_live) { /* checked before the budget is spent */
      CHECK_EQ("task wait on a destroyed wait group", uvchan_task_wg_wait(&M.wg), UV_EINVAL);
      return;
    }
    p->ncases = 0;
    task_call(task_pi, TC_WG, 0);
    return;
  }
  pi = (b / 10) % NCB;
  p = &M.p[pi];
  if (!M.wg_live || M.stepped)
    want = UV_EINVAL;
  else if (M.shutdown)
    want = UV_ECANCELED;
  else
    want = p->state != S_IDLE ? UV_EBUSY : 0;
  M.in_call = 1;
  got = uvchan_wg_wait(&p->r.req, &M.wg, on_wg);
  M.in_call = 0;
  CHECK_EQ("wait group wait", got, want);
  if (want != 0)
    return;
  p->kind = K_WG;
  p->wtype = UVCHAN_REQ_WG_WAIT;
  p->ncases = 0;
  p->nfollow = 0;
  if (M.wg_count == 0)
    m_complete(pi, 0, -1, 0, 0);
  else
    m_wg_wait(pi);
}

/* ---- top-level operations ---- */

/* A request may carry a few operations its callback runs: requests started from callbacks, the
 * way callback code chains its work. They come from the program, so every chain ends. */
static void rd_follow_up(reader_t* r, party_t* p) {
  int f = rd(r), n = (f >> 1) % 8;
  p->nfollow = 0;
  if (f & 1)
    while (p->nfollow < n && rd_more(r))
      p->follow[p->nfollow++] = (unsigned char)rd(r);
}

static void run_follow_up(party_t* p) {
  unsigned char buf[sizeof(p->follow)];
  reader_t fr;
  if (p->nfollow == 0)
    return;
  /* copied first: an operation below may restart this very request */
  memcpy(buf, p->follow, (size_t)p->nfollow);
  fr.p = buf;
  fr.n = (size_t)p->nfollow;
  fr.i = 0;
  p->nfollow = 0;
  while (rd_more(&fr))
    exec_op(&fr, W_CALLBACK, -1);
}

static void top_start(reader_t* r, int kind) {
  int pi = rd(r) % NCB, dl, n, got, want;
  party_t* p = &M.p[pi];
  uint32_t v = 0;

  if (p->state != S_IDLE) {
    /* Still pending: any start on it must say so and change nothing (arguments are checked
     * first: a destroyed channel is UV_EINVAL; then the shutdown's UV_ECANCELED). */
    int c = pi % NCH;
    unsigned char b[MAXESIZE] = {0};
    uvchan_case_t probe[1] = {UVCHAN_CASE_RECV(&M.ch[c].real, b)};
    got = real_start(p, kind, probe, 1, 0);
    CHECK_EQ("start on a pending request", got,
             M.ch[c].dead ? UV_EINVAL : M.shutdown ? UV_ECANCELED : UV_EBUSY);
    return;
  }
  n = kind == K_SELECT ? 1 + rd(r) % MAXCASES : 1;
  rd_cases(r, p, n, kind == K_SEND ? UVCHAN_OP_SEND : kind == K_RECV ? UVCHAN_OP_RECV : 0,
           kind == K_SELECT);
  dl = rd_deadline(r);
  rd_follow_up(r, p);
  p->kind = kind;
  p->wtype = kind == K_SEND ? UVCHAN_REQ_SEND : kind == K_RECV ? UVCHAN_REQ_RECV : UVCHAN_REQ_SELECT;
  got = real_start(p, kind, p->rcases, (unsigned)n, dl);
  if (cases_dead(p) || all_nil(p)) {
    CHECK_EQ("start on a destroyed channel, or with no channel", got, UV_EINVAL);
    return;
  }
  if (M.shutdown) {
    CHECK_EQ("start during a shutdown", got, UV_ECANCELED);
    return;
  }
  CHECK_EQ("start", got, 0);
  if (kind == K_SELECT) {
    if (any_ready(p)) {
      /* The library completed one case at once; its index is already final. */
      int idx = p->r.sel.index;
      want = m_select_apply(p, idx, &v);
      m_complete(pi, want, idx, v, 0);
    } else {
      CHECK_EQ("waiting select has no index", p->r.sel.index, -1);
      m_wait_all(pi, dl);
    }
    return;
  }
  want = kind == K_SEND ? m_send_now(p->cases[0].ch, p->cases[0].sval)
                        : m_recv_now(p->cases[0].ch, &v);
  if (want != MUST_WAIT)
    m_complete(pi, want, 0, v, 0);
  else
    m_wait_all(pi, dl);
}

static void m_step(void);

/* One loop iteration: deadline-0 waiters expire first (libuv's timer phase), then the check
 * handle delivers up to `batch` completions (none after a uv_stop()).
 *
 * The library may also end the delivery at a budget yield once the iteration has been
 * delivering for a while (real time, so the model cannot say when; it is not in every version
 * of the library): then the last thing the loop did must have been to park a task for its
 * budget yield, that task must still be in it, and the iteration must have run 1 ms at least. */
static void top_run(void) {
  uint64_t t0;
  M.group++;
  for (int i = 0; i < NPARTY; i++)
    if (M.p[i].state == S_WAITING && M.p[i].dl0)
      m_complete(i, UV_ETIMEDOUT, -1, 0, M.group);
  M.delivered = 0;
  M.stopped = 0;
  M.yield_last = 0;
  M.turn_ended = 0;
  M.in_run = 1;
  t0 = uv_hrtime();
  uv_run(&M.loop, UV_RUN_NOWAIT);
  sync_tasks(-1, 1, 0); /* what that run did and no delivery showed */
  M.in_run = 0;
  if ((unsigned)M.delivered < M.batch && !M.stopped && M.nq > 0) {
    CHECK("completions left behind in an iteration with budget", M.turn_ended || M.yield_last);
    CHECK("the delivery ended at a budget yield only after 1 ms", uv_hrtime() - t0 >= 1000000);
    stats.turn_ends++;
  }
  M.stopped = 0;
  m_step();
}

static void chorder_remove(int c) {
  int j = 0;
  for (int i = 0; i < M.nchorder; i++)
    if (M.chorder[i] != c)
      M.chorder[j++] = M.chorder[i];
  M.nchorder = j;
}

/* WORKAROUND (test/test-fuzz-findings.c, test_budget_yield_*): a task's blocking call checks its
 * channels and wait group, then spends its budget, and when the budget is out yields before it
 * operates; what it checked may be destroyed during that yield. The library was fixed to check
 * again after the yield (the call then ends with UV_ECANCELED), and the cmocka tests named above
 * hold it; the model does not predict that outcome yet, so the harness still does not destroy a
 * channel or the wait group that a task yielding for its budget is about to use. */
static int yield_uses_chan(int c) {
  for (int i = NCB; i < NPARTY; i++) {
    party_t* t = &M.p[i];
    if (t->phase != PH_YIELD || t->cancelled || (t->tc != TC_OP && t->tc != TC_SELECT))
      continue;
    for (int k = 0; k < t->ncases; k++)
      if (t->cases[k].ch == c)
        return 1;
  }
  return 0;
}

static int yield_uses_wg(void) {
  for (int i = NCB; i < NPARTY; i++)
    if (M.p[i].phase == PH_YIELD && !M.p[i].cancelled && M.p[i].tc == TC_WG)
      return 1;
  return 0;
}

static int any_yield(void) {
  for (int i = NCB; i < NPARTY; i++)
    if (M.p[i].phase == PH_YIELD)
      return 1;
  return 0;
}

static void destroy_chan(int c, int recreate) {
  mchan_t* ch = &M.ch[c];
  int n, got, mode = M.dtor_mode;
  if (!ch->dead && yield_uses_chan(c))
    return; /* WORKAROUND, see yield_uses_chan() */
  if (ch->dead) {
    M.in_call = 1;
    CHECK_EQ("destroy a destroyed channel", uvchan_destroy(&ch->real), UV_EINVAL);
    M.in_call = 0;
    return;
  }
  M.ndtor = 0;
  M.dtor_mode = 1;
  M.in_call = 1;
  got = uvchan_destroy(&ch->real);
  M.in_call = 0;
  M.dtor_mode = mode;
  CHECK_EQ("destroy", got, 0);
  m_fail_queues(c, UV_ECANCELED, UV_ECANCELED);
  CHECK_EQ("destructor calls", M.ndtor, ch->len);
  for (n = 0; n < ch->len; n++) {
    uint32_t v = ch->buf[(ch->head + n) % ch->cap];
    if (ch->esize != 0)
      CHECK_EQ("destroyed value, in order", M.dtor_vals[n], v);
    CHECK_EQ("destroyed once", M.destroyed[v], 0);
    M.destroyed[v] = 1;
  }
  ch->len = ch->head = 0;
  ch->closed = 0;
  ch->dead = 1;
  chorder_remove(c);
  if (!recreate)
    return;
  /* A channel destroyed is a struct like any other: initialising it again is fine, except
   * during a shutdown. */
  M.in_call = 1;
  got = uvchan_init(&M.ctx, &ch->real, (size_t)ch->esize, (size_t)ch->cap);
  M.in_call = 0;
  CHECK_EQ("re-create", got, M.shutdown ? UV_ECANCELED : 0);
  if (got != 0)
    return;
  ch->dead = 0;
  M.chorder[M.nchorder++] = c;
  uvchan_set_destructor(&ch->real, on_dtor);
}

/* uvchan_init on a live channel: UV_EBUSY, nothing changed (UV_ECANCELED first during a
 * shutdown, UV_EINVAL once the context closes). */
static void init_live_chan(int c) {
  mchan_t* ch = &M.ch[c];
  int got;
  if (ch->dead)
    return;
  M.in_call = 1;
  got = uvchan_init(&M.ctx, &ch->real, (size_t)ch->esize, (size_t)ch->cap);
  M.in_call = 0;
  CHECK_EQ("init a live channel", got, M.shutdown ? UV_ECANCELED : UV_EBUSY);
  stats.init_busy++;
}

static void check_report(void) {
  static FILE* devnull;
  int waiting = 0;
  if (devnull == NULL)
    devnull = fopen("/dev/null", "w");
  for (int i = 0; i < NPARTY; i++)
    waiting += M.p[i].state == S_WAITING;
  CHECK_EQ("report", uvchan_ctx_report(&M.ctx, devnull), waiting);
}

/* ---- the shutdown ---- */

static void never_runs(void* arg) {
  (void)arg;
  abort();
}

/* Right after the shutdown call, every start call fails with UV_ECANCELED, once its arguments
 * passed their checks (UV_EINVAL once the last step closed the context), and starts nothing. */
static void shutdown_probes(void) {
  int pi, c = M.nchorder > 0 ? M.chorder[0] : -1, closing = M.stepped;
  unsigned char b[MAXESIZE];
  uvchan_case_t cases[1];
  uvchan_task_ref_t ref;
  party_t* p;
  for (pi = 0; pi < NCB && M.p[pi].state != S_IDLE; pi++) {
  }
  M.in_call = 1;
  memset(&ref, 0, sizeof(ref));
  CHECK_EQ("spawn after the shutdown",
           uvchan_task_spawn_ref(&M.ctx, &ref, never_runs, NULL, NULL),
           closing ? UV_EINVAL : UV_ECANCELED);
  CHECK("a refused spawn fills no reference", ref.task == NULL);
  if (pi < NCB) {
    p = &M.p[pi];
    memset(b, POISON, sizeof(b));
    if (c >= 0) {
      cases[0].chan = &M.ch[c].real;
      cases[0].op = UVCHAN_OP_RECV;
      cases[0].value = b;
      CHECK_EQ("receive after the shutdown", uvchan_recv(&p->r.recv, &M.ch[c].real, b, on_recv),
               UV_ECANCELED);
      CHECK_EQ("select after the shutdown", uvchan_select(&p->r.sel, cases, 1, on_select),
               UV_ECANCELED);
    }
    CHECK_EQ("wait group wait after the shutdown", uvchan_wg_wait(&p->r.req, &M.wg, on_wg),
             M.wg_live && !closing ? UV_ECANCELED : UV_EINVAL);
    check_poison(b, 0, "a refused start writes nothing");
  }
  M.in_call = 0;
}

/* uvchan_ctx_shutdown(), from the top level, a callback or a task: every task cancelled (in the
 * context's order: spawn order), then every waiting callback request (channel by channel in
 * creation order, receivers before senders, oldest first), then the wait group's waiters. Once
 * no completion is queued and no task lives, the remaining channels are destroyed (m_step). */
static void shutdown_now(void) {
  int got;
  LOG("shutdown\n");
  M.shutdown = 1;
  for (int i = 0; i < M.ntorder; i++)
    m_task_cancel(M.torder[i]);
  for (int i = 0; i < M.nchorder; i++) {
    mchan_t* ch = &M.ch[M.chorder[i]];
    while (ch->nrq > 0)
      m_complete(ch->rq[0].party, UV_ECANCELED, -1, 0, 0);
    while (ch->nsq > 0)
      m_complete(ch->sq[0].party, UV_ECANCELED, -1, 0, 0);
  }
  while (M.nwgq > 0)
    m_complete(M.wgq[0].party, UV_ECANCELED, -1, 0, 0);
  M.dtor_mode = 2; /* from now on the last step may destroy the channels */
  M.in_call = 1;
  got = uvchan_ctx_shutdown(&M.ctx, on_close);
  M.in_call = 0;
  CHECK_EQ("shutdown", got, 0);
  M.in_call = 1;
  CHECK_EQ("shutdown twice", uvchan_ctx_shutdown(&M.ctx, on_close), UV_EINVAL);
  M.in_call = 0;
  m_step();
  shutdown_probes();
}

/* The shutdown's last step, once nothing is queued and no task lives: the library has destroyed
 * the remaining channels, in creation order, their values going to the destructor, and closes
 * the context. Checked right after the call that may have run it. */
static void m_step(void) {
  int k = 0;
  if (!M.shutdown || M.stepped)
    return;
  if (M.nq > 0 || M.ntorder > 0) {
    CHECK_EQ("no channel destroyed before the last task ended", M.ndtor_step, 0);
    return;
  }
  LOG("shutdown: last step\n");
  M.stepped = 1;
  for (int i = 0; i < M.nchorder; i++) {
    mchan_t* ch = &M.ch[M.chorder[i]];
    CHECK("nothing waits at the last step", ch->nsq == 0 && ch->nrq == 0);
    for (int n = 0; n < ch->len; n++, k++) {
      uint32_t v = ch->buf[(ch->head + n) % ch->cap];
      CHECK("a buffered value goes to the destructor", k < M.ndtor_step);
      CHECK_EQ("destroyed at the last step: channel", M.dtor_step[k].ch, M.chorder[i]);
      if (ch->esize != 0)
        CHECK_EQ("destroyed at the last step: value, in order", M.dtor_step[k].v, v);
      CHECK_EQ("destroyed once", M.destroyed[v], 0);
      M.destroyed[v] = 1;
    }
    ch->len = ch->head = 0;
    ch->dead = 1;
  }
  CHECK_EQ("destructor calls at the last step", M.ndtor_step, k);
  stats.step_values += k;
  M.nchorder = 0;
  M.dtor_mode = 0;
}

/* ---- a task's program ---- */

static void task_op(int pi, reader_t* r);

static void task_plain_op(int pi, reader_t* r, int op) {
  party_t* p = &M.p[pi];
  int dl;
  rd_cases(r, p, 1, op, 0);
  dl = rd_deadline(r);
  if (cases_dead(p)) { /* checked before the budget is spent */
    p->tc = TC_OP;
    p->tdl = dl;
    CHECK_EQ("task op on a destroyed channel", task_real_call(p, NULL), UV_EINVAL);
    check_bufs(p, -1, UV_EINVAL, 0);
    return;
  }
  task_call(pi, TC_OP, dl);
}

static void task_select(int pi, reader_t* r) {
  party_t* p = &M.p[pi];
  int n = 1 + rd(r) % MAXCASES, dl, st;
  rd_cases(r, p, n, 0, 1);
  dl = rd_deadline(r);
  if (cases_dead(p)) {
    p->tc = TC_SELECT;
    p->tdl = dl;
    CHECK_EQ("task select on a destroyed channel", task_real_call(p, &st), UV_EINVAL);
    check_bufs(p, -1, UV_EINVAL, 0);
    return;
  }
  task_call(pi, TC_SELECT, dl);
}

/* A task on a nil channel: a send, a receive, or a select with no usable case (none at all, or
 * only NULL channels) blocks until its deadline, a cancel or the shutdown. */
static void task_nil(int pi, reader_t* r) {
  party_t* p = &M.p[pi];
  int b = rd(r), n, dl;
  switch (b % 4) {
    case 0:
    case 1:
      rd_cases(r, p, 1, b % 4 == 0 ? UVCHAN_OP_SEND : UVCHAN_OP_RECV, 0);
      p->cases[0].ch = -1;
      p->cases[0].sval = 0;
      memset(p->vbuf[0], POISON, sizeof(p->vbuf[0]));
      p->rcases[0].chan = NULL;
      p->rcases[0].value = p->vbuf[0];
      dl = rd_deadline(r);
      task_call(pi, TC_OP, dl);
      break;
    default:
      n = (b / 4) % (MAXCASES + 1);
      rd_cases(r, p, n, 0, 0);
      for (int i = 0; i < n; i++) {
        p->cases[i].ch = -1;
        p->cases[i].sval = 0;
        memset(p->vbuf[i], POISON, sizeof(p->vbuf[i]));
        p->rcases[i].chan = NULL;
      }
      p->nullcases = n == 0 && b % 4 == 3; /* select {} with a NULL array */
      dl = rd_deadline(r);
      task_call(pi, TC_SELECT, dl);
      break;
  }
}

static void task_op(int pi, reader_t* r) {
  party_t* p = &M.p[pi];
  int op = rd(r) % NOPS, b, k, save;
  if (!take_op())
    return;
  LOG("task %d op %d\n", pi, op);
  switch (op) {
    case OP_SEND: task_plain_op(pi, r, UVCHAN_OP_SEND); break;
    case OP_RECV:
    case OP_BATCH: task_plain_op(pi, r, UVCHAN_OP_RECV); break;
    case OP_SELECT: task_select(pi, r); break;
    case OP_NIL: task_nil(pi, r); break;
    case OP_RUN: /* yield: queued behind everything ready now; fails at once when cancelled */
      if (p->cancelled) {
        CHECK_EQ("yield of a cancelled task", uvchan_task_yield(), UV_ECANCELED);
        break;
      }
      p->tc = TC_YIELD;
      p->ncases = 0;
      p->phase = PH_WAIT;
      p->state = S_QUEUED;
      q_push(pi, 0);
      b = uvchan_task_yield();
      sync_tasks(pi, 0, b);
      CHECK_EQ("yield", b, p->cancelled ? UV_ECANCELED : 0);
      break;
    case OP_DESTROY: /* sleep: 0 ms (due at the next iteration) or forever (until cancelled) */
      p->ncases = 0;
      task_call(pi, TC_SLEEP, rd(r) % 3 == 2 ? 2 : 0);
      break;
    case OP_SPAWN: /* exit */
      task_end(pi);
      uvchan_task_exit();
      abort();
    case OP_WG: op_wg(r, pi); break;
    case OP_REPEAT:
      k = 1 + rd(r) % MAXREPEAT;
      save = (int)r->i;
      for (int j = 0; j < k && M.ops_left > 0; j++) {
        r->i = (size_t)save;
        task_op(pi, r);
      }
      break;
    default: exec_op(r, W_TASK, op); break;
  }
}

static void task_body(void* arg) {
  int pi = (int)(intptr_t)arg;
  party_t* p = &M.p[pi];
  reader_t r = {p->script, (size_t)p->nscript, 0};

  sync_tasks(pi, 0, 0); /* the start is a delivery like any other */
  while (rd_more(&r))
    task_op(pi, &r);
  task_end(pi);
}

/* Spawns a task in the slot the program names, on the wait group or not; a slot whose task still
 * lives is left alone. */
static void top_spawn(reader_t* r) {
  int b = rd(r), pi = NCB + b % NTASK, want, got;
  party_t* p = &M.p[pi];
  uvchan_task_attr_t attr;
  uvchan_task_ref_t ref;
  int n = 1 + rd(r) % MAXSCRIPT;
  if (p->task_live)
    return;
  memset(&attr, 0, sizeof(attr));
  memset(&ref, 0, sizeof(ref));
  if ((b / NTASK) % 4 == 3)
    attr.wg = &M.wg;
  p->nscript = 0;
  while (p->nscript < n && rd_more(r))
    p->script[p->nscript++] = (unsigned char)rd(r);
  if (M.stepped)
    want = UV_EINVAL;
  else if (M.shutdown)
    want = UV_ECANCELED;
  else if (attr.wg != NULL && !M.wg_live)
    want = UV_EINVAL;
  else
    want = 0;
  M.in_call = 1;
  got = uvchan_task_spawn_ref(&M.ctx, &ref, task_body, (void*)(intptr_t)pi, &attr);
  M.in_call = 0;
  CHECK_EQ("spawn", got, want);
  if (got != 0)
    return;
  p->oldref = p->ref;
  p->ref = ref;
  p->kind = K_TASK;
  p->task_live = 1;
  p->cancelled = 0;
  p->has_wg = attr.wg != NULL;
  p->coop = p->refill = UVCHAN_TASK_BUDGET + 1; /* a run counts the call that ends it */
  p->phase = PH_START;
  p->state = S_QUEUED;
  p->ncases = 0;
  M.torder[M.ntorder++] = pi;
  if (p->has_wg)
    CHECK_EQ("a task counts on its wait group", m_wg_add(1), 0);
  q_push(pi, 0);
}

/* Nil channels outside tasks: a callback request on one fails (it could never complete), as do
 * the try-operations, and a try-select with only nil cases is the default (UV_EAGAIN). */
static void op_nil_callback(reader_t* r) {
  int b = rd(r), pi = (b / 5) % NCB, n = (b / 5 / NCB) % (MAXCASES + 1), got;
  party_t* p = &M.p[pi];
  uvchan_case_t cases[MAXCASES];
  unsigned char buf[MAXESIZE];
  memset(buf, POISON, sizeof(buf));
  for (int i = 0; i < MAXCASES; i++) {
    cases[i].chan = NULL;
    cases[i].op = i & 1 ? UVCHAN_OP_SEND : UVCHAN_OP_RECV;
    cases[i].value = buf;
  }
  M.in_call = 1;
  switch (b % 5) {
    case 0: got = uvchan_send(&p->r.send, NULL, buf, on_send); break;
    case 1: got = uvchan_recv(&p->r.recv, NULL, buf, on_recv); break;
    case 2: got = uvchan_select(&p->r.sel, n > 0 ? cases : NULL, (unsigned)n, on_select); break;
    case 3: got = (b / 5) & 1 ? uvchan_try_send(NULL, buf) : uvchan_try_recv(NULL, buf); break;
    default: got = uvchan_try_select(n > 0 ? cases : NULL, (unsigned)n, NULL); break;
  }
  M.in_call = 0;
  CHECK_EQ("nil channel outside a task", got, b % 5 == 4 ? UV_EAGAIN : UV_EINVAL);
  check_poison(buf, 0, "nothing written for a nil channel");
}

/* Context-wide calls. From the top level: closing or initialising the busy context fails, a live
 * channel cannot be initialised again, the report counts what waits, and the shutdown. From a
 * callback or a task: the last three. A shutdown ends the program: the top level then only
 * drains the loop. */
static void op_ctx(reader_t* r, int where) {
  int b = rd(r), c = (b / 8) % NCH;
  if (where != W_TOP) {
    b %= 16;
    b = b == 15 ? 7 : b == 14 ? 4 : 6;
  }
  switch (b % 8) {
    case 0:
    case 1:
    case 2:
      if (!M.shutdown) { /* channels exist until the end, so closing must fail */
        M.in_call = 1;
        CHECK_EQ("ctx close while busy", uvchan_ctx_close(&M.ctx, NULL), UV_EBUSY);
        M.in_call = 0;
      }
      break;
    case 3:
      if (!M.stepped)
        CHECK_EQ("ctx init on a live context", uvchan_ctx_init(&M.loop, &M.ctx), UV_EBUSY);
      break;
    case 4:
    case 5: init_live_chan(c); break;
    case 6: check_report(); break;
    default:
      if (!M.shutdown)
        shutdown_now();
      break;
  }
}

/* One operation of the program: from the top level, a callback (which may not run the loop it
 * is called from, nor change the batch of the iteration it is in) or a task (whose blocking
 * calls are in task_op(), which read the opcode `op`; -1: read it here). */
static void exec_op(reader_t* r, int where, int op) {
  if (op < 0) {
    op = rd(r) % NOPS;
    if (!take_op())
      return;
  }
  LOG("%s op %d\n", where == W_TOP ? "top" : where == W_CALLBACK ? "callback" : "task", op);
  switch (op) {
    case OP_SEND: top_start(r, K_SEND); break;
    case OP_RECV: top_start(r, K_RECV); break;
    case OP_SELECT: top_start(r, K_SELECT); break;
    case OP_TRY_SEND: op_try_send(r); break;
    case OP_TRY_RECV: op_try_recv(r); break;
    case OP_TRY_SELECT: op_try_select(r); break;
    case OP_CANCEL: op_cancel(r); break;
    case OP_CLOSE: op_close(r); break;
    case OP_RUN:
      if (where == W_TOP) {
        top_run();
      } else if (where == W_CALLBACK) {
        uv_stop(&M.loop); /* delivery stops at once: nothing more in this iteration */
        stats.stops++;
        M.stopped = 1;
      }
      break;
    case OP_DESTROY: destroy_chan(rd(r) % NCH, 1); break;
    case OP_SPAWN: top_spawn(r); break;
    case OP_BATCH:
      if (where == W_TOP) {
        M.batch = 1u + (unsigned)(rd(r) % 8);
        CHECK_EQ("set batch", uvchan_ctx_set_batch(&M.ctx, M.batch), 0);
      }
      break;
    case OP_CTX: op_ctx(r, where); break;
    case OP_WG: op_wg(r, -1); break;
    case OP_TCANCEL: op_tcancel(r); break;
    case OP_NIL: op_nil_callback(r); break;
    case OP_REPEAT:
      if (where == W_TOP)
        check_counts();
      break;
  }
}

/* ---- the program ---- */

static void probe_walk(const uvchan_waiting_t* w, void* arg) {
  *(ptrdiff_t*)arg = (const char*)w->req - (const char*)w->task;
}

static void probe_task(void* arg) {
  unsigned char b[8];
  (void)arg;
  (void)uvchan_task_recv_timeout(NULL, b, 0);
}

/* Learns where a task's own request sits in the task, from the deadlock report of a task parked
 * on a nil channel (see task_sel()). */
static void probe_task_req(void) {
  static uv_loop_t loop;
  static uvchan_ctx_t ctx;
  CHECK_EQ("probe loop", uv_loop_init(&loop), 0);
  CHECK_EQ("probe ctx", uvchan_ctx_init(&loop, &ctx), 0);
  CHECK_EQ("probe spawn", uvchan_task_spawn(&ctx, probe_task, NULL, NULL), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK_EQ("probe report", uvchan_ctx_walk_waiting(&ctx, probe_walk, &task_req_off), 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ("probe close", uvchan_ctx_close(&ctx, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ("probe loop close", uv_loop_close(&loop), 0);
}

static int setup(reader_t* r) {
  int b0 = rd(r);
  static const int esizes[5] = {4, 8, 16, 24, 0};
  size_t used = (size_t)M.next_val + 1; /* the value ledgers are large: clear what was used */
  memset(M.accepted, 0, used);
  memset(M.received, 0, used);
  memset(M.destroyed, 0, used);
  memset(&M, 0, offsetof(model_t, accepted));
  memset(&M.dtor_mode, 0, sizeof(M) - offsetof(model_t, dtor_mode));
  CHECK_EQ("loop init", uv_loop_init(&M.loop), 0);
  CHECK_EQ("ctx init", uvchan_ctx_init(&M.loop, &M.ctx), 0);
  uvchan_ctx_seed(&M.ctx, (uint64_t)b0 * 0x9e3779b97f4a7c15ull);
  M.batch = (b0 & 7) == 7 ? 1024 : 1u + (unsigned)(b0 & 7);
  CHECK_EQ("batch", uvchan_ctx_set_batch(&M.ctx, M.batch), 0);
  if (b0 & 0x80)
    CHECK_EQ("trace", uvchan_ctx_set_trace(&M.ctx, on_trace, &M), 0);
  for (int c = 0; c < NCH; c++) {
    int b = rd(r);
    M.ch[c].cap = b % (MAXCAP + 1);
    M.ch[c].esize = esizes[(b / (MAXCAP + 1)) % 5];
    CHECK_EQ("chan init",
             uvchan_init(&M.ctx, &M.ch[c].real, (size_t)M.ch[c].esize, (size_t)M.ch[c].cap), 0);
    uvchan_set_destructor(&M.ch[c].real, on_dtor);
    M.chorder[M.nchorder++] = c;
  }
  CHECK_EQ("wg init", uvchan_wg_init(&M.ctx, &M.wg), 0);
  M.wg_live = 1;
  M.ops_left = OPS_BUDGET;
  return ((b0 >> 3) & 3) == 3; /* end with a shutdown */
}

/* Value conservation, then the context is gone: every wait group call fails, the loop closes. */
static void final_checks(void) {
  uvchan_req_t req;
  for (uint32_t v = 1; v <= M.next_val; v++) {
    if (M.accepted[v])
      CHECK_EQ("accepted value received or destroyed exactly once", M.received[v] + M.destroyed[v],
               1);
    else
      CHECK_EQ("a value never accepted never shows up", M.received[v] + M.destroyed[v], 0);
  }
  for (int i = 0; i < NPARTY; i++)
    CHECK("every request completed and delivered", M.p[i].state == S_IDLE && !M.p[i].task_live);
  CHECK_EQ("loop drains", uv_run(&M.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ("close callback once", M.close_cbs, 1);
  M.stepped = 1;
  memset(&req, 0, sizeof(req));
  CHECK_EQ("wg add after close", uvchan_wg_add(&M.wg, 1), UV_EINVAL);
  CHECK_EQ("wg count after close", uvchan_wg_count(&M.wg), UV_EINVAL);
  CHECK_EQ("wg wait after close", uvchan_wg_wait(&req, &M.wg, on_wg), UV_EINVAL);
  CHECK_EQ("wg destroy after close", uvchan_wg_destroy(&M.wg), UV_EINVAL);
  CHECK_EQ("wg init after close", uvchan_wg_init(&M.ctx, &M.wg), UV_EINVAL);
  CHECK_EQ("shutdown after close", uvchan_ctx_shutdown(&M.ctx, NULL), UV_EINVAL);
  CHECK_EQ("loop close", uv_loop_close(&M.loop), 0);
}

static void shutdown_drain(void);

static void teardown(void) {
  int rounds;
  /* WORKAROUND (see yield_uses_chan()): tasks yielding for their budget operate first. */
  for (rounds = 0; rounds < 100000 && any_yield(); rounds++)
    top_run();
  for (int c = 0; c < NCH; c++)
    destroy_chan(c, 0);
  /* What waits on a channel is cancelled now; sleeps of 0 ms end at the next iteration; tasks
   * run out their programs, where every channel operation is UV_EINVAL. The wait group is
   * released each round, and a task waiting forever (nil channel, select {}, a long sleep) is
   * cancelled once nothing else can happen. */
  for (rounds = 0; rounds < 100000; rounds++) {
    int busy = M.nq > 0;
    if (M.shutdown) { /* a task or a callback shut the context down: that ends it */
      shutdown_drain();
      return;
    }
    if (M.wg_live && M.wg_count > 0)
      wg_add(-M.wg_count);
    for (int i = 0; i < NPARTY; i++)
      busy |= M.p[i].state != S_IDLE || M.p[i].task_live;
    if (!busy)
      break;
    if (M.nq == 0)
      for (int i = NCB; i < NPARTY; i++)
        if (M.p[i].task_live && M.p[i].state == S_WAITING && !M.p[i].dl0)
          tcancel(i - NCB, 0);
    top_run();
  }
  CHECK("teardown ends", rounds < 100000);
  check_counts();
  M.in_call = 1;
  CHECK_EQ("ctx close", uvchan_ctx_close(&M.ctx, on_close), 0);
  M.in_call = 0;
  final_checks();
}

/* The program's end by uvchan_ctx_shutdown() (or after one that an operation made): the loop
 * runs until the last task ended and the last step destroyed the channels. */
static void shutdown_drain(void) {
  int rounds;
  if (!M.shutdown) {
    shutdown_now();
    check_counts();
  }
  for (rounds = 0; rounds < 100000 && !M.stepped; rounds++)
    top_run();
  CHECK("shutdown ends", M.stepped);
  stats.shutdown_ends++;
  check_counts();
  final_checks();
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int probed;
  reader_t r = {data, size > 4096 ? 4096 : size, 0};
  int ops = 0, end_shutdown;

  if (!probed) {
    probe_task_req();
    probed = 1;
  }
  stats.programs++;
  end_shutdown = setup(&r);
  while (rd_more(&r) && ops++ < MAXOPS && !M.shutdown) {
    exec_op(&r, W_TOP, -1);
    check_counts();
  }
  if (end_shutdown || M.shutdown)
    shutdown_drain();
  else
    teardown();
  return 0;
}
