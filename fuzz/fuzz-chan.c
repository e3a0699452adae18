/* Fuzz harness: runs its input as a program of channel operations against uvchan and, step by
 * step, against a reference model written plainly below (arrays, no intrusive lists, no
 * completion queue tricks). Any difference aborts with a message.
 *
 * What is checked, at every step:
 *   - every start call returns the code the model expects (0, UV_EBUSY for a pending request,
 *     UV_EINVAL for a destroyed channel, UV_EAGAIN/UV_EPIPE/UV_EOF for try-operations);
 *   - every callback and every task resumption is one the model has queued, runs exactly once,
 *     never inside the call that started it, in the model's completion order (deadline expiries
 *     of one loop iteration may come in any order among themselves), with the model's status,
 *     select index and value; at most `batch` of them per loop iteration, and all of them when
 *     fewer are queued;
 *   - values are conserved: each value a send handed over is received once or given to the
 *     element destructor once, in FIFO order; a value whose send failed never shows up;
 *   - a select only ever completes a case the model says was ready;
 *   - a wait group's waiters complete, oldest first, when its count reaches 0, and a count never
 *     goes below 0;
 *   - buffered counts, waiting counts and the wait group's count match the model after every
 *     top-level operation;
 *   - at the end, after destroying every channel, every request has completed, every task has
 *     ended, the context closes and uv_loop_close() returns 0.
 *
 * Input: byte 0 seeds select's random source, picks the batch size and whether a trace hook
 * (which checks every event it sees) is installed; bytes 1..NCH give each channel a capacity
 * (0..3) and an element size (4, 8, 16, 24, or 0 for signal channels, whose values the model
 * tracks alone); then operations, each an
 * opcode byte and its arguments. A spawned task takes the next bytes as its own program, which
 * it runs from the loop with the blocking calls.
 *
 * Deadlines are 0 ms (due at the next loop iteration: deterministic, since the model expires
 * every such waiter when it runs an iteration) or 2^40 ms (never due; ended by cancel or
 * teardown). The model assumes libuv runs due timers before idle handles in an iteration, as
 * libuv does. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

enum {
  NCH = 3,         /* channels */
  NCB = 6,         /* callback request slots (send, receive or select) */
  NTASK = 3,       /* task slots */
  NPARTY = NCB + NTASK,
  MAXCASES = 3,
  MAXQ = NPARTY * MAXCASES,
  MAXCAP = 3,
  MAXESIZE = 24,
  MAXVAL = 1 << 14,
  MAXOPS = 400,
  MAXSCRIPT = 24
};

#define HUGE_TIMEOUT ((uint64_t)1 << 40)

/* FUZZ_CHAN_LOG=1 in the environment prints each operation and delivery: for reading a crash. */
static int log_on = -1;
#define LOG(...)                                     \
  do {                                               \
    if (log_on < 0)                                  \
      log_on = getenv("FUZZ_CHAN_LOG") != NULL;      \
    if (log_on)                                      \
      fprintf(stderr, "fuzz-chan: " __VA_ARGS__);    \
  } while (0)
#define MUST_WAIT 1

static void fail(const char* what, long a, long b) {
  fprintf(stderr, "fuzz-chan: model mismatch: %s (%ld vs %ld)\n", what, a, b);
  abort();
}
#define CHECK_EQ(what, got, want)                 \
  do {                                            \
    long g_ = (long)(got), w_ = (long)(want);     \
    if (g_ != w_)                                 \
      fail(what, g_, w_);                         \
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

typedef struct {
  int ch, op; /* UVCHAN_OP_SEND / UVCHAN_OP_RECV */
  uint32_t sval;
} mcase_t;

typedef struct {
  int kind, state;
  int dl0; /* waiting with a deadline due at the next iteration */
  int ncases;
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
  int task_live;
  unsigned char script[MAXSCRIPT];
  int nscript;
} party_t;

typedef struct {
  int party, group; /* group > 0: deadline expiries of one iteration, in any order */
} mqent_t;

static struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  mchan_t ch[NCH];
  party_t p[NPARTY];
  mqent_t q[NPARTY * 2];
  int nq;
  int group;
  unsigned batch;
  int delivered; /* in the current loop iteration */
  int in_run, in_call;
  uint32_t next_val;
  unsigned char accepted[MAXVAL], received[MAXVAL], destroyed[MAXVAL];
  /* what the element destructor saw during one uvchan_destroy() */
  uint32_t dtor_vals[MAXCAP];
  int ndtor;
  /* one wait group: its count and its waiters, oldest first */
  uvchan_wg_t wg;
  long wg_count;
  mwaiter_t wgq[NPARTY];
  int nwgq;
} M;

/* A value of `esize` bytes carrying id `v`, with a pattern that shows a torn copy. */
static void val_fill(unsigned char* b, int esize, uint32_t v) {
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

static uint32_t val_new(void) {
  if (M.next_val + 1 >= MAXVAL)
    abort(); /* MAXOPS keeps far below this */
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

/* Go's send: to the oldest waiting receiver, else into the buffer, else wait. */
static int m_send_now(int c, uint32_t v) {
  mchan_t* ch = &M.ch[c];
  if (ch->closed)
    return UV_EPIPE;
  if (ch->nrq > 0) {
    mwaiter_t w = ch->rq[0];
    m_accept(v);
    m_complete(w.party, 0, w.cas, v, 0);
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
      mwaiter_t w = ch->sq[0];
      uint32_t sv = M.p[w.party].cases[w.cas].sval;
      m_accept(sv);
      ch->buf[(ch->head + ch->len) % ch->cap] = sv;
      ch->len++;
      m_complete(w.party, 0, w.cas, 0, 0);
    }
    return 0;
  }
  if (ch->nsq > 0) {
    mwaiter_t w = ch->sq[0];
    *out = M.p[w.party].cases[w.cas].sval;
    m_accept(*out);
    m_complete(w.party, 0, w.cas, 0, 0);
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

static int m_case_ready(const mcase_t* k) {
  const mchan_t* ch = &M.ch[k->ch];
  if (k->op == UVCHAN_OP_SEND)
    return ch->closed || ch->nrq > 0 || ch->len < ch->cap;
  return ch->len > 0 || ch->nsq > 0 || ch->closed;
}

/* The library's random source, mirrored: select picks among ready cases and links a waiting
 * select's cases in an order drawn from the context's xoroshiro128+ (seeded by splitmix64 in
 * uvchan_ctx_seed()). The model draws the same numbers at the same points, so it knows the order
 * in which two cases of one select sit in a channel's queue. */
static uint64_t m_rng[2];

static uint64_t m_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t m_splitmix(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void m_seed(uint64_t seed) {
  m_rng[0] = m_splitmix(&seed);
  m_rng[1] = m_splitmix(&seed);
}

static uint32_t m_rand_below(uint32_t n) {
  uint64_t s0 = m_rng[0], s1 = m_rng[1], r = s0 + s1;
  s1 ^= s0;
  m_rng[0] = m_rotl(s0, 24) ^ s1 ^ (s1 << 16);
  m_rng[1] = m_rotl(s1, 37);
  return (uint32_t)(((r >> 32) * (uint64_t)n) >> 32);
}

/* The draws of a select's poll that finds ready cases: one per ready case after the first
 * (reservoir sampling). Call before the model performs the chosen case. */
static void m_poll_draws(const mcase_t* cases, int n) {
  uint32_t k = 0;
  for (int i = 0; i < n; i++)
    if (m_case_ready(&cases[i]) && ++k > 1)
      (void)m_rand_below(k);
}

/* Close and destroy fail the receivers first, then the senders, oldest first; a select leaves
 * with the case it was found by. */
static void m_fail_queues(int c, int rstatus, int sstatus) {
  mchan_t* ch = &M.ch[c];
  while (ch->nrq > 0)
    m_complete(ch->rq[0].party, rstatus, ch->rq[0].cas, 0, 0);
  while (ch->nsq > 0)
    m_complete(ch->sq[0].party, sstatus, ch->sq[0].cas, 0, 0);
}

/* ---- checks against the real library ---- */

/* What uvchan_ctx_walk_waiting() finds: every party that waits, once (a select however many of
 * its cases wait; a task on a channel, a wait group or a sleep; a callback wait-group wait). */
static size_t count_waiters(void) {
  size_t n = 0;
  for (int i = 0; i < NPARTY; i++)
    n += M.p[i].state == S_WAITING;
  return n;
}

static void check_counts(void) {
  for (int c = 0; c < NCH; c++) {
    mchan_t* ch = &M.ch[c];
    if (ch->dead)
      continue;
    CHECK_EQ("uvchan_len", uvchan_len(&ch->real), ch->len);
    CHECK_EQ("waiting senders", uvchan_waiting_senders(&ch->real), ch->nsq);
    CHECK_EQ("waiting receivers", uvchan_waiting_receivers(&ch->real), ch->nrq);
    CHECK_EQ("closed", uvchan_is_closed(&ch->real), ch->closed);
  }
  CHECK_EQ("walk_waiting", uvchan_ctx_walk_waiting(&M.ctx, NULL, NULL), count_waiters());
  CHECK_EQ("wait group count", uvchan_wg_count(&M.wg), M.wg_count);
}

/* A callback or task resumption for party `pi` happens now: it must be queued in the model,
 * behind only other deadline expiries of its own group. */
static void deliver(int pi) {
  int i, j;
  LOG("  deliver party %d\n", pi);
  CHECK("delivered from the loop", M.in_run);
  CHECK("never inside the starting call", !M.in_call);
  for (i = 0; i < M.nq && M.q[i].party != pi; i++) {
  }
  CHECK("delivered only when completed, and once", i < M.nq);
  for (j = 0; j < i; j++)
    CHECK("completion order", M.q[j].group != 0 && M.q[j].group == M.q[i].group);
  memmove(&M.q[i], &M.q[i + 1], (size_t)(M.nq - i - 1) * sizeof(M.q[0]));
  M.nq--;
  M.p[pi].state = S_IDLE;
  M.delivered++;
  CHECK("at most batch deliveries per iteration", (unsigned)M.delivered <= M.batch);
}

/* A value arrived in buffer `b` from channel `c`: it must be the model's, intact, and the first
 * arrival of that value. */
static void got_value(const unsigned char* b, int c, uint32_t want) {
  /* zero-size elements carry nothing to read: the model's accounting is all there is */
  uint32_t v = M.ch[c].esize != 0 ? val_read(b, M.ch[c].esize) : want;
  CHECK_EQ("received value", v, want);
  CHECK_EQ("received once", M.received[v], 0);
  M.received[v] = 1;
}

/* Case `cas` of party p completed with `status`: if it was a successful receive, check it. */
static void check_received(party_t* p, int cas, int status, uint32_t want) {
  if (status == 0 && p->cases[cas].op == UVCHAN_OP_RECV)
    got_value(p->vbuf[cas], p->cases[cas].ch, want);
}

static int party_of(const void* req) {
  for (int i = 0; i < NPARTY; i++)
    if ((const void*)&M.p[i].r == req)
      return i;
  abort();
}

typedef struct reader_s reader_t;
enum { W_TOP, W_CALLBACK };
static void exec_op(reader_t* r, int where);
static void run_follow_up(party_t* p);

static void on_req(uvchan_req_t* req, int status) {
  int pi = party_of(req);
  party_t* p = &M.p[pi];
  deliver(pi);
  CHECK_EQ("callback status", status, p->exp_status);
  CHECK_EQ("request status field", req->status, status);
  if (p->kind == K_SELECT) {
    CHECK_EQ("select index", p->r.sel.index, p->exp_index);
    if (p->exp_index >= 0)
      check_received(p, p->exp_index, status, p->exp_val);
  } else if (p->kind == K_RECV) {
    check_received(p, 0, status, p->exp_val);
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
  (void)ch;
  CHECK("destructor only inside uvchan_destroy", M.ndtor < MAXCAP);
  M.dtor_vals[M.ndtor++] = uvchan_elem_size(ch) != 0 ? val_read(value, (int)uvchan_elem_size(ch)) : 0;
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

/* Fills party p's cases (1..MAXCASES, or exactly one for a plain op) from the program; send
 * cases get fresh values in their buffers. */
static void rd_cases(reader_t* r, party_t* p, int n, int op_fixed) {
  p->ncases = n;
  for (int i = 0; i < n; i++) {
    int b = rd(r);
    mcase_t* k = &p->cases[i];
    k->ch = b % NCH;
    k->op = op_fixed ? op_fixed : ((b / NCH) & 1) ? UVCHAN_OP_SEND : UVCHAN_OP_RECV;
    k->sval = 0;
    memset(p->vbuf[i], 0, sizeof(p->vbuf[i]));
    if (k->op == UVCHAN_OP_SEND) {
      k->sval = val_new();
      val_fill(p->vbuf[i], M.ch[k->ch].esize, k->sval);
    }
    p->rcases[i].chan = &M.ch[k->ch].real;
    p->rcases[i].op = (uvchan_op)k->op;
    p->rcases[i].value = M.ch[k->ch].esize != 0 ? p->vbuf[i] : NULL; /* NULL is allowed there */
  }
}

static int cases_dead(const party_t* p) {
  for (int i = 0; i < p->ncases; i++)
    if (M.ch[p->cases[i].ch].dead)
      return 1;
  return 0;
}

/* A select's choice: `idx` is what the library picked; it must be a ready case, and the model
 * then performs that case. Returns the case's status. */
static int m_select_apply(int pi, int idx, uint32_t* got) {
  party_t* p = &M.p[pi];
  mcase_t* k;
  int st;
  CHECK("select picked a case", idx >= 0 && idx < p->ncases);
  k = &p->cases[idx];
  CHECK("select picked a ready case", m_case_ready(k));
  st = k->op == UVCHAN_OP_SEND ? m_send_now(k->ch, k->sval) : m_recv_now(k->ch, got);
  CHECK("a ready case completes", st != MUST_WAIT);
  return st;
}

static int any_ready(const party_t* p) {
  for (int i = 0; i < p->ncases; i++)
    if (m_case_ready(&p->cases[i]))
      return 1;
  return 0;
}

/* ---- operations shared by the top level and tasks ---- */

enum {
  OP_SEND,
  OP_RECV,
  OP_TRY_SEND,
  OP_TRY_RECV,
  OP_SELECT,
  OP_TRY_SELECT,
  OP_CANCEL,
  OP_CLOSE,
  OP_RUN,      /* top level: one loop iteration; task: yield */
  OP_DESTROY,  /* top level: destroy and re-create a channel; task: sleep 0 */
  OP_SPAWN,    /* top level: spawn a task; task: exit */
  OP_BATCH,    /* top level: change the batch; task: another receive */
  OP_CTX_BUSY, /* top level: closing the context fails while channels exist; task: send */
  OP_WG,       /* the wait group: add 1 or 2, done, or wait (a callback request, or the task) */
  NOPS
};

static void op_try_send(reader_t* r) {
  int c = rd(r) % NCH;
  unsigned char b[MAXESIZE];
  uint32_t v = val_new();
  int want, got;
  val_fill(b, M.ch[c].esize, v);
  want = M.ch[c].dead ? UV_EINVAL : m_send_now(c, v);
  M.in_call = 1;
  got = uvchan_try_send(&M.ch[c].real, M.ch[c].esize != 0 ? b : NULL);
  M.in_call = 0;
  CHECK_EQ("try_send", got, want == MUST_WAIT ? UV_EAGAIN : want);
}

static void op_try_recv(reader_t* r) {
  int c = rd(r) % NCH;
  unsigned char b[MAXESIZE];
  uint32_t want_v = 0;
  int want, got;
  want = M.ch[c].dead ? UV_EINVAL : m_recv_now(c, &want_v);
  M.in_call = 1;
  got = uvchan_try_recv(&M.ch[c].real, M.ch[c].esize != 0 ? b : NULL);
  M.in_call = 0;
  CHECK_EQ("try_recv", got, want == MUST_WAIT ? UV_EAGAIN : want);
  if (got == 0)
    got_value(b, c, want_v);
}

static void op_try_select(reader_t* r) {
  party_t tmp; /* a try-select needs no request: its cases live here */
  int n = 1 + rd(r) % MAXCASES, got, st = 0, want_st;
  uint32_t v = 0;
  memset(&tmp, 0, sizeof(tmp));
  /* rd_cases fills a party's cases; this one lives only for the call */
  rd_cases(r, &tmp, n, 0);
  if (cases_dead(&tmp)) {
    CHECK_EQ("try_select on a destroyed channel", uvchan_try_select(tmp.rcases, (unsigned)n, &st),
             UV_EINVAL);
    return;
  }
  M.in_call = 1;
  got = uvchan_try_select(tmp.rcases, (unsigned)n, &st);
  M.in_call = 0;
  if (!any_ready(&tmp)) {
    CHECK_EQ("try_select with nothing ready", got, UV_EAGAIN);
    return;
  }
  m_poll_draws(tmp.cases, n);
  CHECK("try_select picked a case", got >= 0 && got < n);
  CHECK("try_select picked a ready case", m_case_ready(&tmp.cases[got]));
  want_st = tmp.cases[got].op == UVCHAN_OP_SEND ? m_send_now(tmp.cases[got].ch, tmp.cases[got].sval)
                                                : m_recv_now(tmp.cases[got].ch, &v);
  CHECK_EQ("try_select status", st, want_st);
  check_received(&tmp, got, st, v);
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
  if (ch->dead)
    want = UV_EINVAL;
  else if (ch->closed)
    want = UV_EPIPE;
  else {
    want = 0;
    ch->closed = 1;
    m_fail_queues(c, UV_EOF, UV_EPIPE);
  }
  M.in_call = 1;
  got = uvchan_close(&ch->real);
  M.in_call = 0;
  CHECK_EQ("close", got, want);
}

/* ---- the library's calls, one place each ---- */

/* Party pi waits in every case's queue (a plain send or receive has one case). */
static void m_wait_all(int pi, int dl) {
  int order[MAXCASES], j;
  /* the library links a select's cases in a random order (Fisher-Yates, as select.c) */
  for (int i = 0; i < M.p[pi].ncases; i++) {
    j = i > 0 ? (int)m_rand_below((uint32_t)i + 1) : 0;
    order[i] = order[j];
    order[j] = i;
  }
  for (int i = 0; i < M.p[pi].ncases; i++)
    m_wait(pi, order[i]);
  M.p[pi].state = S_WAITING;
  M.p[pi].dl0 = dl == 1;
}

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

/* A task's blocking send or receive of case `c` with deadline mode `dl`. */
static int task_real_op(const uvchan_case_t* c, int dl) {
  if (c->op == UVCHAN_OP_SEND)
    return dl == 0 ? uvchan_task_send(c->chan, c->value)
                   : uvchan_task_send_timeout(c->chan, c->value, timeout_of(dl));
  return dl == 0 ? uvchan_task_recv(c->chan, c->value)
                 : uvchan_task_recv_timeout(c->chan, c->value, timeout_of(dl));
}

/* A task's blocking select over p's first n cases with deadline mode `dl`. */
static int task_real_select(party_t* p, unsigned n, int dl, int* st) {
  return dl == 0 ? uvchan_task_select(p->rcases, n, st)
                 : uvchan_task_select_timeout(p->rcases, n, timeout_of(dl), st);
}

/* ---- the wait group ---- */

/* Adds `delta`: refused (UV_EINVAL) below zero; at zero every waiter completes, oldest first. */
static void wg_add(long delta) {
  int want = M.wg_count + delta < 0 ? UV_EINVAL : 0;
  if (want == 0) {
    M.wg_count += delta;
    if (M.wg_count == 0)
      while (M.nwgq > 0)
        m_complete(M.wgq[0].party, 0, 0, 0, 0);
  }
  M.in_call = 1;
  CHECK_EQ("wait group add", uvchan_wg_add(&M.wg, delta), want);
  M.in_call = 0;
}

/* Party pi waits on the wait group, unless its count is 0 already: returns 1 then (the caller
 * completes a callback request; a task's call just returns). */
static int m_wg_wait(int pi) {
  party_t* p = &M.p[pi];
  p->ncases = 0;
  if (M.wg_count == 0)
    return 1;
  M.wgq[M.nwgq].party = pi;
  M.wgq[M.nwgq].cas = 0;
  M.nwgq++;
  p->state = S_WAITING;
  p->dl0 = 0;
  return 0;
}

/* A wait group operation: from the top level or a callback (task_pi < 0, waits with a callback
 * request), or from task task_pi (waits in the task). */
static void op_wg(reader_t* r, int task_pi) {
  int b = rd(r), pi;
  party_t* p;
  switch (b % 4) {
    case 0: wg_add(1); return;
    case 1: wg_add(2); return;
    case 2: wg_add(-1); return;
    default: break;
  }
  if (task_pi >= 0) {
    int done = m_wg_wait(task_pi), got;
    got = uvchan_task_wg_wait(&M.wg);
    if (!done)
      deliver(task_pi);
    CHECK_EQ("task wait group wait", got, done ? 0 : M.p[task_pi].exp_status);
    return;
  }
  pi = (b / 4) % NCB;
  p = &M.p[pi];
  if (p->state != S_IDLE) {
    M.in_call = 1;
    CHECK_EQ("wait on a pending request", uvchan_wg_wait(&p->r.req, &M.wg, on_wg), UV_EBUSY);
    M.in_call = 0;
    return;
  }
  p->kind = K_WG;
  p->nfollow = 0;
  if (m_wg_wait(pi))
    m_complete(pi, 0, 0, 0, 0);
  M.in_call = 1;
  CHECK_EQ("wait group wait", uvchan_wg_wait(&p->r.req, &M.wg, on_wg), 0);
  M.in_call = 0;
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
    exec_op(&fr, W_CALLBACK);
}

static void top_start(reader_t* r, int kind) {
  int pi = rd(r) % NCB, dl, n, got, want, st;
  party_t* p = &M.p[pi];
  uint32_t v = 0;

  if (p->state != S_IDLE) {
    /* Still pending: any start on it must say so and change nothing (arguments are checked
     * first: during teardown the channels are gone). */
    int c = p->cases[0].ch;
    unsigned char b[MAXESIZE] = {0};
    uvchan_case_t probe[1] = {UVCHAN_CASE_RECV(&M.ch[c].real, b)};
    got = real_start(p, kind, probe, 1, 0);
    CHECK_EQ("start on a pending request", got, M.ch[c].dead ? UV_EINVAL : UV_EBUSY);
    return;
  }
  n = kind == K_SELECT ? 1 + rd(r) % MAXCASES : 1;
  rd_cases(r, p, n, kind == K_SEND ? UVCHAN_OP_SEND : kind == K_RECV ? UVCHAN_OP_RECV : 0);
  dl = rd_deadline(r);
  rd_follow_up(r, p);
  p->kind = kind;
  if (cases_dead(p)) {
    CHECK_EQ("start on a destroyed channel", real_start(p, kind, p->rcases, (unsigned)n, dl),
             UV_EINVAL);
    return;
  }
  if (kind == K_SELECT) {
    CHECK_EQ("select start", real_start(p, kind, p->rcases, (unsigned)n, dl), 0);
    if (any_ready(p)) {
      /* The library completed one case at once; its index is already final. */
      m_poll_draws(p->cases, n);
      st = m_select_apply(pi, p->r.sel.index, &v);
      m_complete(pi, st, p->r.sel.index, v, 0);
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
  CHECK_EQ("start", real_start(p, kind, p->rcases, 1, dl), 0);
}

/* One loop iteration: deadline-0 waiters expire first (libuv's timer phase), then the idle
 * handle delivers up to `batch` completions. */
static void top_run(void) {
  M.group++;
  for (int i = 0; i < NPARTY; i++)
    if (M.p[i].state == S_WAITING && M.p[i].dl0)
      m_complete(i, UV_ETIMEDOUT, -1, 0, M.group);
  M.delivered = 0;
  M.in_run = 1;
  uv_run(&M.loop, UV_RUN_NOWAIT);
  M.in_run = 0;
  if ((unsigned)M.delivered < M.batch)
    CHECK_EQ("completions left behind in an iteration with budget", M.nq, 0);
}

static void destroy_chan(int c, int recreate) {
  mchan_t* ch = &M.ch[c];
  int n;
  if (ch->dead)
    return;
  m_fail_queues(c, UV_ECANCELED, UV_ECANCELED);
  M.ndtor = 0;
  M.in_call = 1;
  CHECK_EQ("destroy", uvchan_destroy(&ch->real), 0);
  M.in_call = 0;
  CHECK_EQ("destructor calls", M.ndtor, ch->len);
  for (n = 0; n < ch->len; n++) {
    uint32_t v = ch->buf[(ch->head + n) % ch->cap];
    if (ch->esize != 0)
      CHECK_EQ("destroyed value, in order", M.dtor_vals[n], v);
    CHECK_EQ("destroyed once", M.destroyed[v], 0);
    M.destroyed[v] = 1;
  }
  M.ndtor = MAXCAP; /* any later destructor call is a bug */
  ch->len = ch->head = 0;
  ch->closed = 0;
  if (!recreate) {
    ch->dead = 1;
    return;
  }
  CHECK_EQ("re-create", uvchan_init(&M.ctx, &ch->real, (size_t)ch->esize, (size_t)ch->cap), 0);
  uvchan_set_destructor(&ch->real, on_dtor);
}

/* ---- tasks ---- */

static void task_body(void* arg) {
  int pi = (int)(intptr_t)arg;
  party_t* p = &M.p[pi];
  reader_t r = {p->script, (size_t)p->nscript, 0};

  deliver(pi); /* the start is a delivery like any other */
  while (rd_more(&r)) {
    int op = rd(&r) % NOPS;
    LOG("task %d op %d\n", pi, op);
    int got, want, st, dl, n;
    uint32_t v = 0;
    switch (op) {
      case OP_SEND:
      case OP_RECV:
      case OP_BATCH:
      case OP_CTX_BUSY: {
        int send = op == OP_SEND || op == OP_CTX_BUSY;
        rd_cases(&r, p, 1, send ? UVCHAN_OP_SEND : UVCHAN_OP_RECV);
        dl = rd_deadline(&r);
        if (cases_dead(p)) {
          CHECK_EQ("task op on a destroyed channel", task_real_op(&p->rcases[0], dl), UV_EINVAL);
          break;
        }
        want = send ? m_send_now(p->cases[0].ch, p->cases[0].sval) : m_recv_now(p->cases[0].ch, &v);
        if (want == MUST_WAIT)
          m_wait_all(pi, dl);
        got = task_real_op(&p->rcases[0], dl);
        if (want == MUST_WAIT) {
          deliver(pi); /* the call returned: that was its resumption */
          want = p->exp_status;
          v = p->exp_val;
        }
        CHECK_EQ("task op status", got, want);
        check_received(p, 0, got, v);
        break;
      }
      case OP_SELECT: {
        n = 1 + rd(&r) % MAXCASES;
        rd_cases(&r, p, n, 0);
        dl = rd_deadline(&r);
        if (cases_dead(p)) {
          CHECK_EQ("task select on a destroyed channel", task_real_select(p, (unsigned)n, dl, &st),
                   UV_EINVAL);
          break;
        }
        if (any_ready(p)) {
          m_poll_draws(p->cases, n);
          got = task_real_select(p, (unsigned)n, dl, &st);
          want = m_select_apply(pi, got, &v);
          CHECK_EQ("task select status", st, want);
        } else {
          m_wait_all(pi, dl);
          st = 0;
          got = task_real_select(p, (unsigned)n, dl, &st);
          deliver(pi); /* the call returned: that was its resumption */
          v = p->exp_val;
          if (p->exp_index < 0) {
            CHECK_EQ("task select without a case", got, p->exp_status);
            break;
          }
          CHECK_EQ("task select index", got, p->exp_index);
          CHECK_EQ("task select status", st, p->exp_status);
        }
        check_received(p, got, st, v);
        break;
      }
      case OP_TRY_SEND: op_try_send(&r); break;
      case OP_TRY_RECV: op_try_recv(&r); break;
      case OP_TRY_SELECT: op_try_select(&r); break;
      case OP_CANCEL: op_cancel(&r); break;
      case OP_CLOSE: op_close(&r); break;
      case OP_RUN: /* yield: queued behind everything ready now */
        q_push(pi, 0);
        p->state = S_QUEUED;
        CHECK_EQ("yield", uvchan_task_yield(), 0);
        deliver(pi); /* the call returned: that was its resumption */
        break;
      case OP_DESTROY: /* sleep 0: due at the next iteration */
        p->state = S_WAITING;
        p->dl0 = 1;
        p->ncases = 0;
        CHECK_EQ("sleep", uvchan_task_sleep(0), 0);
        deliver(pi); /* the call returned: that was its resumption */
        CHECK_EQ("sleep ends by its deadline", p->exp_status, UV_ETIMEDOUT);
        break;
      case OP_WG: op_wg(&r, pi); break;
      case OP_SPAWN: /* exit */
        p->task_live = 0;
        uvchan_task_exit();
        abort();
    }
  }
  p->task_live = 0;
}

static void top_spawn(reader_t* r) {
  int pi = NCB + rd(r) % NTASK;
  party_t* p = &M.p[pi];
  uvchan_task_attr_t attr;
  int n = 1 + rd(r) % MAXSCRIPT;
  if (p->task_live)
    return;
  memset(&attr, 0, sizeof(attr));
  p->kind = K_TASK;
  p->task_live = 1;
  p->nscript = 0;
  while (p->nscript < n && rd_more(r))
    p->script[p->nscript++] = (unsigned char)rd(r);
  M.in_call = 1;
  CHECK_EQ("spawn", uvchan_task_spawn(&M.ctx, task_body, (void*)(intptr_t)pi, &attr), 0);
  M.in_call = 0;
  p->state = S_QUEUED;
  q_push(pi, 0);
}

/* ---- the program ---- */

static void setup(reader_t* r) {
  int b0 = rd(r);
  static const int esizes[5] = {4, 8, 16, 24, 0};
  memset(&M, 0, sizeof(M));
  CHECK_EQ("loop init", uv_loop_init(&M.loop), 0);
  CHECK_EQ("ctx init", uvchan_ctx_init(&M.loop, &M.ctx), 0);
  uvchan_ctx_seed(&M.ctx, (uint64_t)b0 * 0x9e3779b97f4a7c15ull);
  m_seed((uint64_t)b0 * 0x9e3779b97f4a7c15ull);
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
  }
  M.ndtor = MAXCAP;
  CHECK_EQ("wg init", uvchan_wg_init(&M.ctx, &M.wg), 0);
}

static void teardown(void) {
  int rounds;
  for (int c = 0; c < NCH; c++)
    destroy_chan(c, 0);
  /* Everything waiting was on a channel (cancelled now) or sleeps until the next iteration;
   * tasks run out their programs, where every channel operation is UV_EINVAL. */
  for (rounds = 0; rounds < 100000; rounds++) {
    int busy = M.nq > 0;
    if (M.wg_count > 0) /* tasks may still add to it: release its waiters each round */
      wg_add(-M.wg_count);
    for (int i = 0; i < NPARTY; i++)
      busy |= M.p[i].state != S_IDLE || M.p[i].task_live;
    if (!busy)
      break;
    top_run();
  }
  CHECK("teardown ends", rounds < 100000);
  CHECK_EQ("nothing waits", count_waiters(), 0);
  for (uint32_t v = 1; v <= M.next_val; v++) {
    if (M.accepted[v])
      CHECK_EQ("accepted value received or destroyed exactly once", M.received[v] + M.destroyed[v], 1);
    else
      CHECK_EQ("a value never accepted never shows up", M.received[v] + M.destroyed[v], 0);
  }
  CHECK_EQ("ctx close", uvchan_ctx_close(&M.ctx, NULL), 0);
  CHECK_EQ("loop drains", uv_run(&M.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ("loop close", uv_loop_close(&M.loop), 0);
}

/* One operation of the program, from the top level or from a callback (which may not run the
 * loop it is called from, nor change the batch of the iteration it is in). */
static void exec_op(reader_t* r, int where) {
  int op = rd(r) % NOPS;
  LOG("%s op %d\n", where == W_TOP ? "top" : "callback", op);
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
      if (where == W_TOP)
        top_run();
      break;
    case OP_DESTROY: destroy_chan(rd(r) % NCH, 1); break;
    case OP_SPAWN: top_spawn(r); break;
    case OP_BATCH:
      if (where == W_TOP) {
        M.batch = 1u + (unsigned)(rd(r) % 8);
        CHECK_EQ("set batch", uvchan_ctx_set_batch(&M.ctx, M.batch), 0);
      }
      break;
    case OP_CTX_BUSY:
      if (!M.ch[0].dead) /* channels exist until teardown, so closing must fail */
        CHECK_EQ("ctx close while busy", uvchan_ctx_close(&M.ctx, NULL), UV_EBUSY);
      break;
    case OP_WG: op_wg(r, -1); break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reader_t r = {data, size > 4096 ? 4096 : size, 0}; /* keeps value ids below MAXVAL */
  int ops = 0;

  setup(&r);
  while (rd_more(&r) && ops++ < MAXOPS) {
    exec_op(&r, W_TOP);
    check_counts();
  }
  teardown();
  return 0;
}
