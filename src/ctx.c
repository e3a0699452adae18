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

#include <stdatomic.h>
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

UVCHAN__TLS char uvchan__thread_mark;
const char uvchan__handle_tag = 0;
int uvchan__memcheck;

/* Whether memcheck runs this process: only memcheck answers the V-bits request (1), any other
 * tool or none answers 0. */
static int uvchan__detect_memcheck(void) {
#if defined(UVCHAN__HAVE_VALGRIND)
  unsigned char x = 0, vbits = 0;
  if (RUNNING_ON_VALGRIND)
    return VALGRIND_GET_VBITS(&x, &vbits, 1) == 1;
#endif
  return 0;
}

/* Points the context's gate at the calling thread's marker, or closes it (see UVCHAN__GATE). */
static void uvchan__ctx_bind(uvchan_ctx_t* ctx) {
  ctx->thread_ = &uvchan__thread_mark;
  ctx->gate_ = (uvchan__memcheck || (ctx->flags_ & UVCHAN__CTX_SHUTDOWN)) ? NULL : ctx->thread_;
}

static uv_once_t uvchan__memcheck_once = UV_ONCE_INIT;
static void uvchan__memcheck_init(void) {
  uvchan__memcheck = uvchan__detect_memcheck();
}

int uvchan__gate_slow(uvchan_ctx_t* ctx, const void* magic) {
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  if (ctx->flags_ & UVCHAN__CTX_SHUTDOWN)
    return UV_ECANCELED;
  if (magic != NULL)
    UVCHAN__VG_DEFINED(magic, sizeof(uint32_t));
  return 0;
}

/* ---- registry of live contexts ----
 *
 * Objects that may outlive their context (wait groups) must tell that it closed without reading
 * it: its memory may be gone. Each live context holds a slot whose value is its generation, a
 * number never used twice; closing the context retires it, and an object compares the slot with
 * the generation it saved. Slots live in chunks that are never freed, so the comparison reads
 * valid memory from any thread. */
enum { UVCHAN__SLOT_CHUNK = 4096, UVCHAN__SLOT_CHUNKS = 4096 };

/* A free slot holds UVCHAN__SLOT_FREE | (next free slot + 1): never a generation. The first
 * chunk is static, so a program with fewer than 4096 live contexts allocates nothing here. */
#define UVCHAN__SLOT_FREE ((uint64_t)1 << 63)

static _Atomic uint64_t uvchan__slots0[UVCHAN__SLOT_CHUNK];
/* Chunk pointers are written once, under the lock, and read by any thread without it. */
static _Atomic uint64_t* _Atomic uvchan__slots[UVCHAN__SLOT_CHUNKS] = {uvchan__slots0};
static uint32_t uvchan__free_head; /* first free slot + 1; 0: none */
static uint32_t uvchan__nslots;    /* slots ever handed out */
static uint64_t uvchan__next_gen = 1;
static uv_once_t uvchan__registry_once = UV_ONCE_INIT;
static uv_mutex_t uvchan__registry_lock;

static void uvchan__registry_init(void) {
  if (uv_mutex_init(&uvchan__registry_lock) != 0)
    abort();
}

static _Atomic uint64_t* uvchan__slot(uint32_t slot) {
  _Atomic uint64_t* chunk =
      atomic_load_explicit(&uvchan__slots[slot / UVCHAN__SLOT_CHUNK], memory_order_acquire);
  return &chunk[slot % UVCHAN__SLOT_CHUNK];
}

static int uvchan__registry_enter(uvchan_ctx_t* ctx) {
  uint32_t slot;
  int err = 0;

  uv_once(&uvchan__registry_once, uvchan__registry_init);
  uv_mutex_lock(&uvchan__registry_lock);
  if (uvchan__free_head != 0) {
    slot = uvchan__free_head - 1;
    uvchan__free_head =
        (uint32_t)(atomic_load_explicit(uvchan__slot(slot), memory_order_relaxed) &
                   ~UVCHAN__SLOT_FREE);
  } else if (uvchan__nslots == (uint32_t)UVCHAN__SLOT_CHUNK * UVCHAN__SLOT_CHUNKS) {
    err = UV_ENOMEM;
  } else {
    _Atomic uint64_t* chunk;
    slot = uvchan__nslots;
    chunk = atomic_load_explicit(&uvchan__slots[slot / UVCHAN__SLOT_CHUNK], memory_order_relaxed);
    if (chunk == NULL) {
      chunk = calloc(UVCHAN__SLOT_CHUNK, sizeof(uint64_t));
      atomic_store_explicit(&uvchan__slots[slot / UVCHAN__SLOT_CHUNK], chunk,
                            memory_order_release);
    }
    if (chunk == NULL)
      err = UV_ENOMEM;
    else
      uvchan__nslots++;
  }
  if (err == 0) {
    ctx->slot_ = slot;
    ctx->gen_ = uvchan__next_gen++;
    atomic_store_explicit(uvchan__slot(slot), ctx->gen_, memory_order_release);
  }
  uv_mutex_unlock(&uvchan__registry_lock);
  return err;
}

static void uvchan__registry_leave(uvchan_ctx_t* ctx) {
  uv_mutex_lock(&uvchan__registry_lock);
  atomic_store_explicit(uvchan__slot(ctx->slot_), UVCHAN__SLOT_FREE | uvchan__free_head,
                        memory_order_release);
  uvchan__free_head = ctx->slot_ + 1;
  uv_mutex_unlock(&uvchan__registry_lock);
}

int uvchan__ctx_alive(uint32_t slot, uint64_t gen) {
  _Atomic uint64_t* chunk;
  if (slot / UVCHAN__SLOT_CHUNK >= UVCHAN__SLOT_CHUNKS)
    return 0;
  chunk = atomic_load_explicit(&uvchan__slots[slot / UVCHAN__SLOT_CHUNK], memory_order_acquire);
  return chunk != NULL &&
         atomic_load_explicit(&chunk[slot % UVCHAN__SLOT_CHUNK], memory_order_acquire) == gen;
}

int uvchan_handle_owned(const uv_handle_t* handle) {
  if (handle == NULL)
    return 0;
  /* libuv never initialises `data`: a handle whose owner did not set it holds garbage, which is
   * fine to compare, and memcheck is told so. */
  UVCHAN__VG_DEFINED(&handle->data, sizeof(handle->data));
  return handle->data == (void*)&uvchan__handle_tag;
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
    case UVCHAN_REQ_RESERVE:
      ((uvchan_reserve_cb)cb)((uvchan_reserve_t*)req, status);
      break;
    default:
      ((uvchan_req_cb)cb)(req, status);
      break;
  }
}

/* Delivers up to batch_ completions, from the check phase: right after the poll, so that a task
 * woken by an I/O or timer callback runs in the same loop iteration (one uv_run(UV_RUN_NOWAIT) per
 * hop is enough). Tasks share the budget: a task that parks hands over to the next task in the
 * queue directly (task.c), spending ctx->budget_, and only comes back here for a callback;
 * callbacks count against a local copy, so they cost no memory traffic for it. Delivery stops as
 * soon as uv_stop() was called, as Go's scheduler stops at once. */
static void uvchan__on_check(uv_check_t* check) {
  uvchan__deliver_batch(UVCHAN__CONTAINER_OF(check, uvchan_ctx_t, check_));
}

/* The body of the check callback; thread.c's spin also delivers with it (see uvchan__on_prepare). */
void uvchan__deliver_batch(uvchan_ctx_t* ctx) {
  uv_loop_t* loop = ctx->loop;
  unsigned budget = ctx->batch_;
  uvchan_req_t* req;

  if (UVCHAN__UNLIKELY(!UVCHAN__ON_THREAD(ctx)))
    uvchan__ctx_bind(ctx); /* the context belongs to the thread that runs its loop */
  while (budget > 0 && ctx->qhead_ != NULL && !loop->stop_flag) {
    if (UVCHAN__UNLIKELY(ctx->qhead_->state_ & UVCHAN__REQ_FINISH))
      uvchan__req_finish(ctx->qhead_);
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
    uv_check_stop(&ctx->check_);
    ctx->flags_ &= ~UVCHAN__CTX_IDLE_ON;
    if (ctx->flags_ & UVCHAN__CTX_SHUTDOWN)
      uvchan__ctx_shutdown_step(ctx);
    uvchan__ctx_maybe_finish_close(ctx);
  }
}

/* Other threads completed requests of this context (thread.c). */
static void uvchan__on_async(uv_async_t* async) {
  uvchan__inbox_drain(UVCHAN__CONTAINER_OF(async, uvchan_ctx_t, async_));
}

/* The idle handle does nothing: while it is active, the poll does not block. */
static void uvchan__on_idle(uv_idle_t* idle) {
  (void)idle;
}

void uvchan__idle_start(uvchan_ctx_t* ctx) {
  ctx->flags_ |= UVCHAN__CTX_IDLE_ON;
  uv_idle_start(&ctx->idle_, uvchan__on_idle);
  uv_check_start(&ctx->check_, uvchan__on_check);
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
  if (UVCHAN__MAGIC_IS(ctx, UVCHAN__CTX_MAGIC))
    return UV_EBUSY;
  uv_once(&uvchan__memcheck_once, uvchan__memcheck_init);
  memset(ctx, 0, sizeof(*ctx));
  ctx->loop = loop;
  err = uv_check_init(loop, &ctx->check_);
  if (err != 0)
    return err;
  uv_idle_init(loop, &ctx->idle_);   /* these three cannot fail */
  uv_timer_init(loop, &ctx->timer_);
  uv_prepare_init(loop, &ctx->prepare_);
  err = uvchan__registry_enter(ctx);
  if (err != 0)
    goto fail;
  err = uv_async_init(loop, &ctx->async_, uvchan__on_async);
  if (err != 0) {
    uvchan__registry_leave(ctx);
    goto fail;
  }
  /* The idle handle keeps the loop alive while completions are queued; the check handle that
   * delivers them never does on its own, nor does the prepare handle (thread.c's spin), nor the
   * async handle, but while a request waits on a shared channel (thread.c). */
  uv_unref((uv_handle_t*)&ctx->check_);
  uv_unref((uv_handle_t*)&ctx->async_);
  uv_unref((uv_handle_t*)&ctx->prepare_);
  ctx->check_.data = (void*)&uvchan__handle_tag;
  ctx->idle_.data = (void*)&uvchan__handle_tag;
  ctx->timer_.data = (void*)&uvchan__handle_tag;
  ctx->async_.data = (void*)&uvchan__handle_tag;
  ctx->prepare_.data = (void*)&uvchan__handle_tag;
  ctx->spin_us_ = UVCHAN_DEFAULT_SPIN_US;
  uvchan__ctx_bind(ctx);
  ctx->timer_due_ = UINT64_MAX;
  ctx->batch_ = UVCHAN_DEFAULT_BATCH;
  ctx->next_task_id_ = 1;
  uvchan__list_init(&ctx->chans_);
  uvchan__list_init(&ctx->tasks_);
  uvchan__list_init(&ctx->wgs_);
  uvchan__list_init(&ctx->res_);
  ctx->magic_ = UVCHAN__CTX_MAGIC;
  uvchan_ctx_seed(ctx, (uint64_t)(uintptr_t)ctx ^ uv_hrtime());
  env = getenv("UVCHAN_SPIN_US"); /* uvchan_ctx_set_spin() for a whole program */
  if (env != NULL && env[0] >= '0' && env[0] <= '9')
    ctx->spin_us_ = (unsigned)strtoul(env, NULL, 10);
  env = getenv("UVCHAN_TRACE");
  if (env != NULL && env[0] == '1')
    uvchan_ctx_set_trace(ctx, uvchan_trace_print, NULL);
  return 0;

fail:
  uv_close((uv_handle_t*)&ctx->check_, NULL);
  uv_close((uv_handle_t*)&ctx->idle_, NULL);
  uv_close((uv_handle_t*)&ctx->timer_, NULL);
  uv_close((uv_handle_t*)&ctx->prepare_, NULL);
  return err;
}

static void uvchan__handle_done(uvchan_ctx_t* ctx) {
  if (--ctx->nhandles_ == 0) {
    ctx->magic_ = 0;
    if (ctx->close_cb_ != NULL)
      ctx->close_cb_(ctx);
  }
}

static void uvchan__on_check_closed(uv_handle_t* h) {
  uvchan__handle_done(UVCHAN__CONTAINER_OF(h, uvchan_ctx_t, check_));
}

static void uvchan__on_idle_closed(uv_handle_t* h) {
  uvchan__handle_done(UVCHAN__CONTAINER_OF(h, uvchan_ctx_t, idle_));
}

static void uvchan__on_timer_closed(uv_handle_t* h) {
  uvchan__handle_done(UVCHAN__CONTAINER_OF(h, uvchan_ctx_t, timer_));
}

static void uvchan__on_async_closed(uv_handle_t* h) {
  uvchan__handle_done(UVCHAN__CONTAINER_OF(h, uvchan_ctx_t, async_));
}

static void uvchan__on_stack_timer_closed(uv_handle_t* h) {
  uvchan__handle_done(UVCHAN__CONTAINER_OF(h, uvchan_ctx_t, stack_timer_));
}

static void uvchan__on_prepare_closed(uv_handle_t* h) {
  uvchan__handle_done(UVCHAN__CONTAINER_OF(h, uvchan_ctx_t, prepare_));
}

static void uvchan__on_probe_closed(uv_handle_t* h) {
  uvchan__handle_done(UVCHAN__CONTAINER_OF(h, uvchan_ctx_t, probe_));
}

/* The application closed some of the context's handles itself (a uv_walk() close-all): libuv
 * will finish them, and call the application's close callback, in some later closing phase. The
 * context's memory must outlive that, so the close callback waits until none of them is still in
 * the loop's handle list. */
typedef struct {
  uvchan_ctx_t* ctx;
  int found;
} uvchan__probe_t;

static void uvchan__probe_find(uv_handle_t* h, void* arg) {
  uvchan__probe_t* p = (uvchan__probe_t*)arg;
  if (h == (uv_handle_t*)&p->ctx->check_ || h == (uv_handle_t*)&p->ctx->idle_ ||
      h == (uv_handle_t*)&p->ctx->timer_ || h == (uv_handle_t*)&p->ctx->async_ ||
      h == (uv_handle_t*)&p->ctx->stack_timer_ || h == (uv_handle_t*)&p->ctx->prepare_)
    p->found = 1;
}

static void uvchan__on_probe(uv_idle_t* idle) {
  uvchan__probe_t p;
  p.ctx = UVCHAN__CONTAINER_OF(idle, uvchan_ctx_t, probe_);
  p.found = 0;
  uv_walk(idle->loop, uvchan__probe_find, &p);
  if (!p.found)
    uv_close((uv_handle_t*)idle, uvchan__on_probe_closed);
}

static void uvchan__close_handle(uvchan_ctx_t* ctx, uv_handle_t* h, uv_close_cb cb, int* foreign) {
  if (uv_is_closing(h)) {
    *foreign = 1;
    return;
  }
  ctx->nhandles_++;
  uv_close(h, cb);
}

/* Closes the handles once the close was asked for and the last completion is delivered. */
void uvchan__ctx_maybe_finish_close(uvchan_ctx_t* ctx) {
  int foreign = 0;

  if (!(ctx->flags_ & UVCHAN__CTX_CLOSING) || (ctx->flags_ & UVCHAN__CTX_HANDLES_CLOSING) ||
      ctx->qhead_ != NULL || ctx->nclosing_ != 0)
    return;
  ctx->flags_ |= UVCHAN__CTX_HANDLES_CLOSING;
  uvchan__task_pools_free(ctx);
  ctx->nhandles_ = 1; /* held until every close below is started */
  uvchan__close_handle(ctx, (uv_handle_t*)&ctx->check_, uvchan__on_check_closed, &foreign);
  uvchan__close_handle(ctx, (uv_handle_t*)&ctx->idle_, uvchan__on_idle_closed, &foreign);
  uvchan__close_handle(ctx, (uv_handle_t*)&ctx->timer_, uvchan__on_timer_closed, &foreign);
  uvchan__close_handle(ctx, (uv_handle_t*)&ctx->async_, uvchan__on_async_closed, &foreign);
  if (ctx->stack_timer_.type == UV_TIMER) /* initialised with the first task (stack.c) */
    uvchan__close_handle(ctx, (uv_handle_t*)&ctx->stack_timer_, uvchan__on_stack_timer_closed,
                         &foreign);
  uvchan__close_handle(ctx, (uv_handle_t*)&ctx->prepare_, uvchan__on_prepare_closed, &foreign);
  if (foreign) {
    uv_idle_init(ctx->loop, &ctx->probe_); /* cannot fail */
    ctx->probe_.data = (void*)&uvchan__handle_tag;
    ctx->nhandles_++;
    uv_idle_start(&ctx->probe_, uvchan__on_probe);
  }
  ctx->nhandles_--; /* never 0 here: some close is pending, so the callback comes from the loop */
}

int uvchan_ctx_close(uvchan_ctx_t* ctx, uvchan_ctx_close_cb cb) {
  if (!uvchan__ctx_ok(ctx) || (ctx->flags_ & UVCHAN__CTX_CLOSING))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  if (ctx->nres_ != 0 && ctx->ntasks_ == 0)
    uvchan__net_ctx_release(ctx); /* streams' state that nothing uses any more */
  if (ctx->nchans_ != 0 || ctx->ntasks_ != 0 || ctx->nwaiting_ != 0 || ctx->heap_ != NULL ||
      ctx->nres_ != 0 || ctx->nxwait_ != 0)
    return UV_EBUSY;
  uvchan__registry_leave(ctx); /* its wait groups are retired from now on */
  ctx->flags_ |= UVCHAN__CTX_CLOSING;
  ctx->close_cb_ = cb;
  uvchan__ctx_maybe_finish_close(ctx);
  return 0;
}

void uvchan__ctx_closing_begin(uvchan_ctx_t* ctx) {
  ctx->nclosing_++;
}

void uvchan__ctx_closing_end(uvchan_ctx_t* ctx) {
  if (--ctx->nclosing_ == 0)
    uvchan__ctx_maybe_finish_close(ctx);
}

/* ---- graceful shutdown ---- */

void uvchan__res_add(uvchan_ctx_t* ctx, struct uvchan__res_s* res,
                     void (*shutdown)(struct uvchan__res_s*)) {
  res->shutdown = shutdown;
  uvchan__list_push(&ctx->res_, &res->link);
  ctx->nres_++;
}

void uvchan__res_remove(uvchan_ctx_t* ctx, struct uvchan__res_s* res) {
  if (res->link.next == NULL)
    return;
  uvchan__list_remove(&res->link);
  ctx->nres_--;
  if (ctx->flags_ & UVCHAN__CTX_SHUTDOWN)
    uvchan__ctx_shutdown_step(ctx);
}

/* The public form, for modules and applications. */
static void uvchan__resource_hook(struct uvchan__res_s* r) {
  uvchan_resource_t* res = UVCHAN__CONTAINER_OF(r, uvchan_resource_t, res_);
  res->shutdown_(res);
}

int uvchan_ctx_add_resource(uvchan_ctx_t* ctx, uvchan_resource_t* res,
                            uvchan_resource_cb shutdown) {
  int err;
  if (!uvchan__ctx_ok(ctx) || (ctx->flags_ & UVCHAN__CTX_CLOSING) || res == NULL ||
      shutdown == NULL)
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  if (UVCHAN__MAGIC_IS(res, UVCHAN__RES_MAGIC) && res->res_.link.next != NULL)
    return UV_EBUSY;
  res->ctx_ = ctx;
  res->shutdown_ = shutdown;
  res->magic_ = UVCHAN__RES_MAGIC;
  uvchan__res_add(ctx, &res->res_, uvchan__resource_hook);
  return 0;
}

int uvchan_ctx_check(const uvchan_ctx_t* ctx, int starting) {
  if (!uvchan__ctx_ok(ctx) || (starting && (ctx->flags_ & UVCHAN__CTX_CLOSING)))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  if (starting && (ctx->flags_ & UVCHAN__CTX_SHUTDOWN))
    return UV_ECANCELED;
  return 0;
}

int uvchan_ctx_remove_resource(uvchan_resource_t* res) {
  if (res == NULL || !UVCHAN__MAGIC_IS(res, UVCHAN__RES_MAGIC) || res->res_.link.next == NULL)
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(res->ctx_))
    return UV_EPERM;
  res->magic_ = 0;
  uvchan__res_remove(res->ctx_, &res->res_);
  return 0;
}

/* Cancels every waiter of queue `q`. A select leaves all its queues at once, so pop the head; a
 * select with a shared case that another thread completed just now leaves only this waiter. */
void uvchan__cancel_queue(struct uvchan__link_s* q) {
  struct uvchan__waiter_s* w;
  while (!uvchan__list_empty(q)) {
    w = uvchan__first_waiter(q);
    if (uvchan__abort(w->req, UV_ECANCELED, UVCHAN_TRACE_CANCEL) != 0)
      uvchan__list_remove(&w->link);
  }
}

int uvchan_ctx_shutdown(uvchan_ctx_t* ctx, uvchan_ctx_close_cb cb) {
  struct uvchan__link_s* l;
  struct uvchan__link_s* next;
  uvchan_t* ch;
  uvchan_wg_t* wg;

  if (!uvchan__ctx_ok(ctx) || (ctx->flags_ & (UVCHAN__CTX_CLOSING | UVCHAN__CTX_SHUTDOWN)))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  ctx->flags_ |= UVCHAN__CTX_SHUTDOWN;
  ctx->gate_ = NULL; /* every start call now takes the slow path, which refuses it */
  ctx->close_cb_ = cb;
  for (l = ctx->tasks_.next; l != &ctx->tasks_; l = next) {
    next = l->next;
    uvchan__task_cancel((uvchan_task_t*)l); /* the task's list link is its first field */
  }
  for (l = ctx->chans_.next; l != &ctx->chans_; l = l->next) {
    ch = UVCHAN__CONTAINER_OF(l, uvchan_t, link_);
    if (ch->flags_ & UVCHAN__CHAN_SHARED) {
      uvchan__x_cancel_end(ch); /* only this context's requests on that end */
      continue;
    }
    uvchan__cancel_queue(&ch->recvq_);
    uvchan__cancel_queue(&ch->sendq_);
  }
  while (!uvchan__list_empty(&ctx->wgs_)) { /* each leaves the list with its last waiter */
    wg = UVCHAN__CONTAINER_OF(ctx->wgs_.next, uvchan_wg_t, link_);
    uvchan__cancel_queue(&wg->waiters_);
  }
  /* Whatever still runs (tasks unwinding, cancellations to deliver) ends in the delivery, which
   * moves the shutdown on; with nothing queued, the step runs now (its close is asynchronous). */
  if (ctx->qhead_ == NULL)
    uvchan__ctx_shutdown_step(ctx);
  return 0;
}

void uvchan__ctx_shutdown_step(uvchan_ctx_t* ctx) {
  if ((ctx->flags_ & (UVCHAN__CTX_CLOSING | UVCHAN__CTX_STEPPING)) || ctx->ntasks_ != 0 ||
      ctx->qhead_ != NULL)
    return;
  ctx->flags_ |= UVCHAN__CTX_STEPPING;
  if (!(ctx->flags_ & UVCHAN__CTX_RES_CLOSED)) {
    struct uvchan__link_s pending;
    struct uvchan__res_s* res;
    ctx->flags_ |= UVCHAN__CTX_RES_CLOSED;
    /* Each hook runs once. A resource goes back on the context's list before its hook, which may
     * unregister it then or later (or unregister another one still pending here). */
    uvchan__list_init(&pending);
    if (!uvchan__list_empty(&ctx->res_)) {
      pending.next = ctx->res_.next;
      pending.prev = ctx->res_.prev;
      pending.next->prev = &pending;
      pending.prev->next = &pending;
      uvchan__list_init(&ctx->res_);
    }
    while (!uvchan__list_empty(&pending)) {
      res = (struct uvchan__res_s*)pending.next;
      uvchan__list_remove(&res->link);
      uvchan__list_push(&ctx->res_, &res->link);
      res->shutdown(res);
    }
  }
  if (ctx->nres_ == 0) {
    while (!uvchan__list_empty(&ctx->chans_))
      uvchan_destroy(UVCHAN__CONTAINER_OF(ctx->chans_.next, uvchan_t, link_));
    ctx->flags_ &= ~UVCHAN__CTX_SHUTDOWN; /* now an ordinary close */
    if (uvchan_ctx_close(ctx, ctx->close_cb_) != 0)
      ctx->flags_ |= UVCHAN__CTX_SHUTDOWN; /* not yet: uvchan__res_remove() comes back here */
  }
  ctx->flags_ &= ~UVCHAN__CTX_STEPPING;
}

int uvchan_ctx_bind_thread(uvchan_ctx_t* ctx) {
  if (!uvchan__ctx_ok(ctx))
    return UV_EINVAL;
  uvchan__ctx_bind(ctx);
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

/* Reports waiter `w` of a channel or wait group; a select only at its first waiting case. */
static size_t uvchan__walk_waiter(struct uvchan__waiter_s* w, uvchan_walk_cb cb, void* arg) {
  uvchan_req_t* req = w->req;
  uvchan_select_t* sel;
  uvchan_waiting_t info;
  unsigned i;

  info.req = req;
  info.task = uvchan__req_task(req);
  info.type = req->type;
  info.chan = w->chan;
  info.op = (uvchan_op)UVCHAN__OP(w);
  info.cases = NULL;
  info.ncases = 0;
  if (req->type == UVCHAN_REQ_SELECT) {
    sel = (uvchan_select_t*)req;
    if (sel->xsel_) {
      i = uvchan__xsel_first(sel); /* its links on shared channels are other threads' too */
    } else {
      for (i = 0; sel->cases_[i].w_.link.next == NULL; i++)
        ;
    }
    if (&sel->cases_[i].w_ != w)
      return 0;
    info.cases = sel->cases_;
    info.ncases = sel->ncases_;
  }
  if (cb != NULL)
    cb(&info, arg);
  return 1;
}

static size_t uvchan__walk_queue(struct uvchan__link_s* q, uvchan_walk_cb cb, void* arg) {
  struct uvchan__link_s* l;
  size_t n = 0;
  for (l = q->next; l != q; l = l->next)
    n += uvchan__walk_waiter((struct uvchan__waiter_s*)l, cb, arg);
  return n;
}

size_t uvchan_ctx_walk_waiting(uvchan_ctx_t* ctx, uvchan_walk_cb cb, void* arg) {
  struct uvchan__link_s* l;
  uvchan_t* ch;
  size_t n = 0;
  uvchan_waiting_t info;

  if (!uvchan__ctx_ok(ctx))
    return 0;
  for (l = ctx->chans_.next; l != &ctx->chans_; l = l->next) {
    ch = UVCHAN__CONTAINER_OF(l, uvchan_t, link_);
    if (ch->flags_ & UVCHAN__CHAN_SHARED) {
      n += uvchan__x_walk(ch, cb, arg);
      continue;
    }
    n += uvchan__walk_queue(&ch->sendq_, cb, arg);
    n += uvchan__walk_queue(&ch->recvq_, cb, arg);
  }
  for (l = ctx->wgs_.next; l != &ctx->wgs_; l = l->next)
    n += uvchan__walk_queue(&UVCHAN__CONTAINER_OF(l, uvchan_wg_t, link_)->waiters_, cb, arg);
  /* Tasks parked on no queue: sleeps, awaits, nil channels. */
  for (l = ctx->tasks_.next; l != &ctx->tasks_; l = l->next) {
    if (!uvchan__task_waits_elsewhere((uvchan_task_t*)l, &info))
      continue;
    if (cb != NULL)
      cb(&info, arg);
    n++;
  }
  return n;
}

static void uvchan__print_chan_op(FILE* out, const uvchan_t* ch, unsigned op) {
  fprintf(out, "%s ", op == UVCHAN_OP_SEND ? "send on" : "receive from");
  if (ch == NULL)
    fprintf(out, "a nil channel");
  else if (ch->name_ != NULL)
    fprintf(out, "channel \"%s\"", ch->name_);
  else
    fprintf(out, "channel %p", (const void*)ch);
}

static void uvchan__report_one(const uvchan_waiting_t* w, void* arg) {
  FILE* out = (FILE*)arg;
  unsigned i, k = 0;

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
  fprintf(out, ": ");
  switch (w->type) {
    case UVCHAN_REQ_WG_WAIT: fprintf(out, "wait on a wait group"); break;
    case UVCHAN_REQ_SLEEP: fprintf(out, "sleep"); break;
    case UVCHAN_REQ_AWAIT: fprintf(out, "await an operation"); break;
    case UVCHAN_REQ_SELECT:
      fprintf(out, "select {");
      for (i = 0; i < w->ncases; i++) {
        if (w->cases[i].chan == NULL)
          continue;
        fprintf(out, "%s", k++ == 0 ? " " : "; ");
        uvchan__print_chan_op(out, w->cases[i].chan, w->cases[i].op);
      }
      fprintf(out, "%s}", k == 0 ? "} (no usable case: blocks forever" : " ");
      if (k == 0)
        fprintf(out, ")");
      break;
    default:
      uvchan__print_chan_op(out, w->chan, w->op);
      if (w->chan == NULL)
        fprintf(out, " (blocks forever)");
      break;
  }
  fprintf(out, "\n");
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
