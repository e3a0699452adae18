/* The per-loop context: the completion queue and its delivery, the deadline heap, the random
 * source, tracing and the deadlock report.
 *
 * Delivery. Every completed request is appended to ctx->qhead_/qtail_ (a FIFO threaded through
 * the requests themselves: no allocation). While the queue is non-empty an idle handle is active;
 * its callback delivers at most ctx->batch_ completions, so a ping-pong that refills the queue
 * from its own callbacks still yields to timers and I/O once per batch. An idle handle also makes
 * the loop poll without blocking, and it is the only handle uvchan keeps active for completions:
 * requests that merely wait keep nothing alive, so a loop whose parties all wait ends its run.
 *
 * Deadlines. All requests with a deadline sit in one pairing heap ordered by due time, served by
 * one uv_timer_t armed for the earliest: 100k deadlines cost one timer, not 100k. */
#include "uvchan-internal.h"

#include <stdlib.h>

const char* uvchan_version_string(void) {
#define UVCHAN__STR2(x) #x
#define UVCHAN__STR(x) UVCHAN__STR2(x)
  return UVCHAN__STR(UVCHAN_VERSION_MAJOR) "." UVCHAN__STR(UVCHAN_VERSION_MINOR) "." UVCHAN__STR(
      UVCHAN_VERSION_PATCH);
}

unsigned int uvchan_version(void) {
  return UVCHAN_VERSION_HEX;
}

/* ---- completion delivery ---- */

/* Runs the callback of a request taken from the queue. */
static void uvchan__deliver(uvchan_req_t* req) {
  void (*cb)(void) = req->cb_;
  int status = req->status;

  switch (req->type) {
    case UVCHAN_REQ_SEND:
      ((uvchan_send_cb)cb)((uvchan_send_t*)req, status);
      break;
    case UVCHAN_REQ_RECV:
      ((uvchan_recv_cb)cb)((uvchan_recv_t*)req, status);
      break;
    case UVCHAN_REQ_SELECT:
      ((uvchan_select_cb)cb)((uvchan_select_t*)req, status);
      break;
    default:
      ((uvchan_req_cb)cb)(req, status);
      break;
  }
}

/* Delivers up to batch_ completions. Tasks share the budget: a task that parks hands over to the
 * next task in the queue directly (task.c), spending ctx->budget_, and only comes back here for
 * a callback; callbacks count against a local copy, so they cost no memory traffic for it. */
static void uvchan__on_idle(uv_idle_t* idle) {
  uvchan_ctx_t* ctx = UVCHAN__CONTAINER_OF(idle, uvchan_ctx_t, idle_);
  unsigned budget = ctx->batch_;
  uvchan_req_t* req;

  while (budget > 0 && ctx->qhead_ != NULL) {
    req = uvchan__queue_take(ctx);
    budget--;
    if (req->state_ & UVCHAN__REQ_TASK) {
      ctx->budget_ = budget;
      uvchan__task_resume(req);
      budget = ctx->budget_;
    } else {
      uvchan__deliver(req);
    }
  }
  if (ctx->qhead_ == NULL) {
    uv_idle_stop(&ctx->idle_);
    ctx->flags_ &= ~UVCHAN__CTX_IDLE_ON;
    uvchan__ctx_maybe_finish_close(ctx);
  }
}

void uvchan__idle_start(uvchan_ctx_t* ctx) {
  ctx->flags_ |= UVCHAN__CTX_IDLE_ON;
  uv_idle_start(&ctx->idle_, uvchan__on_idle);
}

/* ---- deadline heap: a pairing heap threaded through the requests ---- */

typedef struct uvchan__tmnode_s uvchan__tm;

/* Melds two detached roots; the later due becomes the first child of the earlier. */
static uvchan__tm* uvchan__tm_meld(uvchan__tm* a, uvchan__tm* b) {
  uvchan__tm* t;
  if (a == NULL)
    return b;
  if (b == NULL)
    return a;
  if (b->due < a->due) {
    t = a;
    a = b;
    b = t;
  }
  b->next = a->child;
  if (a->child != NULL)
    a->child->prev = b;
  b->prev = a;
  a->child = b;
  return a;
}

/* Two-pass pairing of a sibling list into one root. */
static uvchan__tm* uvchan__tm_merge_pairs(uvchan__tm* first) {
  uvchan__tm* stack = NULL;
  uvchan__tm* root = NULL;
  uvchan__tm *a, *b, *m, *n;

  while (first != NULL) {
    a = first;
    b = a->next;
    first = b != NULL ? b->next : NULL;
    a->next = a->prev = NULL;
    if (b != NULL)
      b->next = b->prev = NULL;
    m = uvchan__tm_meld(a, b);
    m->next = stack; /* a root's next is free: use it to stack the pairs */
    stack = m;
  }
  while (stack != NULL) {
    n = stack->next;
    stack->next = NULL;
    root = uvchan__tm_meld(root, stack);
    stack = n;
  }
  return root;
}

static void uvchan__tm_remove(uvchan_ctx_t* ctx, uvchan__tm* n) {
  uvchan__tm* sub;
  if (n == ctx->heap_) {
    ctx->heap_ = uvchan__tm_merge_pairs(n->child);
  } else {
    if (n->prev->child == n)
      n->prev->child = n->next;
    else
      n->prev->next = n->next;
    if (n->next != NULL)
      n->next->prev = n->prev;
    sub = uvchan__tm_merge_pairs(n->child);
    ctx->heap_ = uvchan__tm_meld(ctx->heap_, sub);
  }
  if (ctx->heap_ != NULL)
    ctx->heap_->prev = NULL;
  n->child = n->next = n->prev = NULL;
}

static void uvchan__on_deadline(uv_timer_t* timer);

/* Arms the timer for the earliest deadline (or stops it when there is none). */
static void uvchan__timer_arm(uvchan_ctx_t* ctx) {
  uint64_t now, due;
  if (ctx->heap_ == NULL) {
    if (ctx->timer_due_ != UINT64_MAX) {
      uv_timer_stop(&ctx->timer_);
      ctx->timer_due_ = UINT64_MAX;
    }
    return;
  }
  due = ctx->heap_->due;
  if (due == ctx->timer_due_)
    return;
  now = uv_now(ctx->loop);
  ctx->timer_due_ = due;
  uv_timer_start(&ctx->timer_, uvchan__on_deadline, due > now ? due - now : 0, 0);
}

void uvchan__deadline_add(uvchan_req_t* req, uint64_t timeout) {
  uvchan_ctx_t* ctx = req->ctx_;
  uint64_t now = uv_now(ctx->loop);
  uvchan__tm* n = &req->tm_;

  n->due = timeout > UINT64_MAX - now ? UINT64_MAX - 1 : now + timeout;
  n->child = n->next = n->prev = NULL;
  req->state_ |= UVCHAN__REQ_DEADLINE;
  ctx->heap_ = uvchan__tm_meld(ctx->heap_, n);
  if (ctx->heap_ == n)
    uvchan__timer_arm(ctx);
}

void uvchan__deadline_remove(uvchan_req_t* req) {
  uvchan_ctx_t* ctx = req->ctx_;
  int was_root = ctx->heap_ == &req->tm_;
  req->state_ &= ~UVCHAN__REQ_DEADLINE;
  uvchan__tm_remove(ctx, &req->tm_);
  if (was_root)
    uvchan__timer_arm(ctx);
}

static void uvchan__on_deadline(uv_timer_t* timer) {
  uvchan_ctx_t* ctx = UVCHAN__CONTAINER_OF(timer, uvchan_ctx_t, timer_);
  uint64_t now = uv_now(ctx->loop);
  uvchan_req_t* req;
  uvchan__tm* n;

  ctx->timer_due_ = UINT64_MAX; /* a one-shot timer that just fired is stopped */
  while ((n = ctx->heap_) != NULL && n->due <= now) {
    req = UVCHAN__CONTAINER_OF(n, uvchan_req_t, tm_);
    uvchan__abort(req, UV_ETIMEDOUT, UVCHAN_TRACE_TIMEOUT); /* also leaves the heap */
  }
  uvchan__timer_arm(ctx);
}

/* ---- random source: xoroshiro128+ (select's choice among ready cases) ---- */

static uint64_t uvchan__rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t uvchan__rand(uvchan_ctx_t* ctx) {
  uint64_t s0 = ctx->rng_[0], s1 = ctx->rng_[1], r = s0 + s1;
  s1 ^= s0;
  ctx->rng_[0] = uvchan__rotl(s0, 24) ^ s1 ^ (s1 << 16);
  ctx->rng_[1] = uvchan__rotl(s1, 37);
  return r;
}

uint32_t uvchan__rand_below(uvchan_ctx_t* ctx, uint32_t n) {
  /* Multiply-shift maps the top 32 bits onto [0, n); its bias is below n / 2^32. */
  return (uint32_t)(((uvchan__rand(ctx) >> 32) * (uint64_t)n) >> 32);
}

static uint64_t uvchan__splitmix(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int uvchan_ctx_seed(uvchan_ctx_t* ctx, uint64_t seed) {
  if (!uvchan__ctx_ok(ctx))
    return UV_EINVAL;
  ctx->rng_[0] = uvchan__splitmix(&seed);
  ctx->rng_[1] = uvchan__splitmix(&seed);
  return 0;
}

/* ---- context lifecycle ---- */

int uvchan_ctx_init(uv_loop_t* loop, uvchan_ctx_t* ctx) {
  const char* env;
  int err;

  if (loop == NULL || ctx == NULL)
    return UV_EINVAL;
  memset(ctx, 0, sizeof(*ctx));
  ctx->loop = loop;
  err = uv_idle_init(loop, &ctx->idle_);
  if (err != 0)
    return err;
  err = uv_timer_init(loop, &ctx->timer_);
  if (err != 0) {
    uv_close((uv_handle_t*)&ctx->idle_, NULL);
    return err;
  }
  ctx->timer_due_ = UINT64_MAX;
  ctx->batch_ = UVCHAN_DEFAULT_BATCH;
  ctx->next_task_id_ = 1;
  uvchan__list_init(&ctx->chans_);
  uvchan__list_init(&ctx->tasks_);
  ctx->magic_ = UVCHAN__CTX_MAGIC;
  uvchan_ctx_seed(ctx, (uint64_t)(uintptr_t)ctx ^ uv_hrtime());
  env = getenv("UVCHAN_TRACE");
  if (env != NULL && env[0] == '1')
    uvchan_ctx_set_trace(ctx, uvchan_trace_print, NULL);
  return 0;
}

static void uvchan__on_handle_closed(uv_handle_t* h) {
  uvchan_ctx_t* ctx = (uvchan_ctx_t*)h->data;
  if (--ctx->nhandles_ == 0) {
    ctx->magic_ = 0;
    if (ctx->close_cb_ != NULL)
      ctx->close_cb_(ctx);
  }
}

/* Closes the handles once the close was asked for and the last completion is delivered. */
void uvchan__ctx_maybe_finish_close(uvchan_ctx_t* ctx) {
  if (!(ctx->flags_ & UVCHAN__CTX_CLOSING) || (ctx->flags_ & UVCHAN__CTX_HANDLES_CLOSING) ||
      ctx->qhead_ != NULL)
    return;
  ctx->flags_ |= UVCHAN__CTX_HANDLES_CLOSING;
  uvchan__task_pools_free(ctx);
  ctx->nhandles_ = 2;
  ctx->idle_.data = ctx;
  ctx->timer_.data = ctx;
  uv_close((uv_handle_t*)&ctx->idle_, uvchan__on_handle_closed);
  uv_close((uv_handle_t*)&ctx->timer_, uvchan__on_handle_closed);
  if (ctx->stack_timer_.type == UV_TIMER) { /* initialised with the first task */
    ctx->nhandles_++;
    ctx->stack_timer_.data = ctx;
    uv_close((uv_handle_t*)&ctx->stack_timer_, uvchan__on_handle_closed);
  }
}

int uvchan_ctx_close(uvchan_ctx_t* ctx, uvchan_ctx_close_cb cb) {
  if (!uvchan__ctx_ok(ctx) || (ctx->flags_ & UVCHAN__CTX_CLOSING))
    return UV_EINVAL;
  if (ctx->nchans_ != 0 || ctx->ntasks_ != 0 || ctx->nwaiting_ != 0 || ctx->heap_ != NULL)
    return UV_EBUSY;
  ctx->flags_ |= UVCHAN__CTX_CLOSING;
  ctx->close_cb_ = cb;
  uvchan__ctx_maybe_finish_close(ctx);
  return 0;
}

int uvchan_ctx_set_batch(uvchan_ctx_t* ctx, unsigned batch) {
  if (!uvchan__ctx_ok(ctx) || batch == 0)
    return UV_EINVAL;
  ctx->batch_ = batch;
  return 0;
}

/* ---- tracing ---- */

int uvchan_ctx_set_trace(uvchan_ctx_t* ctx, uvchan_trace_cb cb, void* arg) {
  if (!uvchan__ctx_ok(ctx))
    return UV_EINVAL;
  ctx->trace_cb_ = cb;
  ctx->trace_arg_ = arg;
  return 0;
}

void uvchan__trace(uvchan_t* ch, uvchan_trace_kind kind, unsigned op, uvchan_req_t* req,
                   uvchan_req_t* peer, const void* value) {
  uvchan_trace_t ev;
  ev.kind = kind;
  ev.op = (uvchan_op)op;
  ev.chan = ch;
  ev.req = req;
  ev.peer = peer;
  ev.value = value;
  ev.len = ch->len_;
  ch->ctx_->trace_cb_(&ev, ch->ctx_->trace_arg_);
}

const char* uvchan_trace_kind_name(uvchan_trace_kind kind) {
  switch (kind) {
    case UVCHAN_TRACE_WAIT: return "wait";
    case UVCHAN_TRACE_HANDSHAKE: return "handshake";
    case UVCHAN_TRACE_PUT: return "put";
    case UVCHAN_TRACE_TAKE: return "take";
    case UVCHAN_TRACE_CLOSE: return "close";
    case UVCHAN_TRACE_CANCEL: return "cancel";
    case UVCHAN_TRACE_TIMEOUT: return "timeout";
  }
  return "unknown";
}

/* Describes who made a request: a task by name and number, or a callback request by address. */
static void uvchan__print_party(FILE* out, const uvchan_req_t* req) {
  const uvchan_task_t* t;
  if (req == NULL) {
    fprintf(out, "try");
    return;
  }
  t = uvchan__req_task(req);
  if (t != NULL && uvchan_task_name(t) != NULL)
    fprintf(out, "task %s#%llu", uvchan_task_name(t), (unsigned long long)uvchan_task_id(t));
  else if (t != NULL)
    fprintf(out, "task #%llu", (unsigned long long)uvchan_task_id(t));
  else
    fprintf(out, "req %p", (const void*)req);
}

static void uvchan__print_chan(FILE* out, const uvchan_t* ch) {
  if (ch->name_ != NULL)
    fprintf(out, "chan %s", ch->name_);
  else
    fprintf(out, "chan %p", (const void*)ch);
}

void uvchan_trace_print(const uvchan_trace_t* ev, void* arg) {
  FILE* out = arg != NULL ? (FILE*)arg : stderr;
  if (ev == NULL || ev->chan == NULL)
    return;
  fprintf(out, "uvchan: %-9s ", uvchan_trace_kind_name(ev->kind));
  uvchan__print_chan(out, ev->chan);
  if (ev->kind != UVCHAN_TRACE_CLOSE) {
    fprintf(out, " %s ", ev->op == UVCHAN_OP_SEND ? "send" : "recv");
    uvchan__print_party(out, ev->req);
  }
  if (ev->peer != NULL) {
    fprintf(out, " <-> ");
    uvchan__print_party(out, ev->peer);
  }
  fprintf(out, " len=%zu\n", ev->len);
}

/* ---- deadlock report ---- */

static size_t uvchan__walk_queue(uvchan_t* ch, struct uvchan__link_s* q, uvchan_walk_cb cb,
                                 void* arg) {
  struct uvchan__link_s* l;
  struct uvchan__waiter_s* w;
  uvchan_waiting_t info;
  size_t n = 0;

  for (l = q->next; l != q; l = l->next) {
    w = (struct uvchan__waiter_s*)l;
    info.req = w->req;
    info.task = uvchan__req_task(w->req);
    info.chan = ch;
    info.op = (uvchan_op)w->op;
    if (cb != NULL)
      cb(&info, arg);
    n++;
  }
  return n;
}

size_t uvchan_ctx_walk_waiting(uvchan_ctx_t* ctx, uvchan_walk_cb cb, void* arg) {
  struct uvchan__link_s* l;
  uvchan_t* ch;
  size_t n = 0;
  uvchan_task_t* t;
  uvchan_waiting_t info;

  if (!uvchan__ctx_ok(ctx))
    return 0;
  for (l = ctx->chans_.next; l != &ctx->chans_; l = l->next) {
    ch = UVCHAN__CONTAINER_OF(l, uvchan_t, link_);
    n += uvchan__walk_queue(ch, &ch->sendq_, cb, arg);
    n += uvchan__walk_queue(ch, &ch->recvq_, cb, arg);
  }
  /* Tasks waiting on a wait group wait on no channel: find them through the task list. */
  for (l = ctx->tasks_.next; l != &ctx->tasks_; l = l->next) {
    t = (uvchan_task_t*)l; /* the task's list link is its first field */
    if (uvchan__task_wait_name(t) == NULL)
      continue;
    info.req = NULL;
    info.task = t;
    info.chan = NULL;
    info.op = (uvchan_op)0;
    if (cb != NULL)
      cb(&info, arg);
    n++;
  }
  return n;
}

static void uvchan__report_one(const uvchan_waiting_t* w, void* arg) {
  FILE* out = (FILE*)arg;
  fprintf(out, "  ");
  if (w->task != NULL) {
    if (uvchan_task_name(w->task) != NULL)
      fprintf(out, "task \"%s\" (#%llu)", uvchan_task_name(w->task),
              (unsigned long long)uvchan_task_id(w->task));
    else
      fprintf(out, "task #%llu", (unsigned long long)uvchan_task_id(w->task));
  } else {
    fprintf(out, "request %p", (void*)w->req);
  }
  if (w->chan == NULL) {
    fprintf(out, ": %s\n", w->task != NULL ? uvchan__task_wait_name(w->task) : "wait");
    return;
  }
  fprintf(out, ": %s%s on ", w->req != NULL && w->req->type == UVCHAN_REQ_SELECT ? "select " : "",
          w->op == UVCHAN_OP_SEND ? "send" : "receive");
  if (w->chan->name_ != NULL)
    fprintf(out, "channel \"%s\"\n", w->chan->name_);
  else
    fprintf(out, "channel %p\n", (void*)w->chan);
}

size_t uvchan_ctx_report(uvchan_ctx_t* ctx, FILE* out) {
  size_t n = uvchan_ctx_walk_waiting(ctx, NULL, NULL);
  if (n == 0 || out == NULL)
    return n;
  fprintf(out, "uvchan: %zu operation%s waiting, and nothing in the loop can wake %s:\n", n,
          n == 1 ? " is" : "s are", n == 1 ? "it" : "them");
  uvchan_ctx_walk_waiting(ctx, uvchan__report_one, out);
  return n;
}
