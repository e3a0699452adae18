/* Shared channels: one channel used from several threads, each loop through an end of its own.
 *
 * The state (ring, queues, closed flag) lives in the first end, the core; every end points at
 * it, and its lock guards it. The matching is the engine's own (uvchan__send_x/_recv_x with
 * `shared` set), run under the core's lock, so semantics cannot drift between local and shared
 * channels. What differs is waking: a waiter may belong to another thread. uvchan__wake_shared
 * completes it in place when it is the calling thread's own, signals it when it is a thread
 * without a loop (uvchan_thread_send/_recv), and otherwise hands it to its context's inbox (a
 * lock-free stack) and wakes that loop with uv_async_send(), unless the loop spins before its
 * poll watching that inbox; the loop delivers its inbox from the async callback or from the
 * spin, everything at once, since wake-ups coalesce.
 *
 * Rules that keep this deadlock-free and race-free:
 *   - A request's own fields (state_, the deadline heap, its context's queues) are only touched
 *     by its owner's thread. Another thread that matches it only unlinks its waiter (under the
 *     core's lock, which guards that link) and sets its status, then publishes it by pushing it on
 *     the inbox (the push releases what it wrote). The owner finishes the rest (deadline,
 *     counting) when it drains the inbox. The waker still holds the core's lock while it pushes
 *     and wakes: the owner cannot destroy its end, nor so close its context, under it.
 *   - A thread holds at most one core lock at a time, except a select that locks all the cores
 *     of its cases, in address order (as Go's sellock), to poll and enqueue atomically.
 *   - A select with a case on a shared channel (xsel_) may be matched by several threads at
 *     once, each holding a different lock: the first to exchange its claim_ from 0 to 1 wins (Go's
 *     selectDone); the others unlink the loser waiter they hold and move on. The winner leaves the
 *     select's other cases where they are: its owner withdraws them when it delivers the
 *     completion (uvchan__req_finish), taking each core's lock then.
 *   - A waiting request of another thread keeps its context alive: its context counts it
 *     (nxwait_) and refs its async handle meanwhile, so its loop waits for the other thread. */
#include "uvchan-internal.h"

#include <stdlib.h>
#if !defined(_WIN32)
#include <poll.h>
#include <sched.h>
#endif

/* ---- the core's lock ----
 *
 * A spinlock in the core itself, near its flags: one atomic exchange to take it,
 * one store to release it, and no separate line to fetch from the other core. Critical sections
 * are short (a match, a link). A thread that finds the lock taken backs off, doubling its wait
 * up to 256 pauses, then yields the CPU between tries (a holder that was preempted gets to run).
 * The backoff matters more than the lock: a producer and a consumer on two cores that kept
 * reading the taken lock pulled its line away from the holder at every operation (thread
 * buffered: 232 ns per item); backing off lets each side run a streak of operations on lines it
 * keeps (96 ns). */
#if defined(__x86_64__) || defined(__i386__)
#define UVCHAN__PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define UVCHAN__PAUSE() __asm__ __volatile__("yield")
#else
#define UVCHAN__PAUSE() ((void)0)
#endif

#if !defined(_WIN32)
#define UVCHAN__YIELD() ((void)sched_yield())
#else
#define UVCHAN__YIELD() ((void)0)
#endif

static UVCHAN__NOINLINE void uvchan__lock_slow(uvchan_t* core) {
  unsigned delay = 1, i;
  for (;;) {
    for (i = 0; i < delay; i++)
      UVCHAN__PAUSE();
    if (__atomic_load_n(&core->lock_, __ATOMIC_RELAXED) == 0 &&
        __atomic_exchange_n(&core->lock_, 1, __ATOMIC_ACQUIRE) == 0)
      return;
    if (delay < 256)
      delay *= 2;
    else
      UVCHAN__YIELD();
  }
}

UVCHAN__INLINE void uvchan__lock(uvchan_t* core) {
  if (UVCHAN__UNLIKELY(__atomic_exchange_n(&core->lock_, 1, __ATOMIC_ACQUIRE) != 0))
    uvchan__lock_slow(core);
}

UVCHAN__INLINE void uvchan__unlock(uvchan_t* core) {
  __atomic_store_n(&core->lock_, 0, __ATOMIC_RELEASE);
}

/* ---- claims and the owner's finishing touches ---- */

static int uvchan__claim(uvchan_select_t* sel) {
  int expected = 0;
  return __atomic_compare_exchange_n(&sel->claim_, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE);
}

int uvchan__claim_waiter(struct uvchan__waiter_s* w) {
  if (!uvchan__is_xsel(w) || uvchan__claim((uvchan_select_t*)w->req))
    return 1;
  uvchan__list_remove(&w->link); /* its select was completed elsewhere */
  return 0;
}

struct uvchan__waiter_s* uvchan__claim_first(struct uvchan__link_s* q) {
  struct uvchan__waiter_s* w;
  while (!uvchan__list_empty(q)) {
    w = uvchan__first_waiter(q);
    if (uvchan__claim_waiter(w))
      return w;
  }
  return NULL;
}

static void uvchan__on_prepare(uv_prepare_t* prepare);

static void uvchan__xwait_begin(uvchan_ctx_t* ctx, uvchan_req_t* req) {
  req->state_ |= UVCHAN__REQ_WAITING | UVCHAN__REQ_SHWAIT;
  if (ctx->nxwait_++ == 0) {
    uv_ref((uv_handle_t*)&ctx->async_);
    uv_prepare_start(&ctx->prepare_, uvchan__on_prepare);
  }
}

/* Completes a request of the calling thread's context that another thread matched (or whose
 * select it claimed): its deadline goes now, the rest at delivery (uvchan__req_finish). */
UVCHAN__INLINE void uvchan__complete_finish(uvchan_req_t* req, int status) {
  if (req->state_ & UVCHAN__REQ_DEADLINE)
    uvchan__deadline_remove(req);
  req->state_ |= UVCHAN__REQ_FINISH;
  uvchan__complete(req, status);
}

void uvchan__xsel_complete(uvchan_select_t* sel, int status) {
  uvchan__complete_finish((uvchan_req_t*)sel, status);
}

/* Unlinks a waiter of a case, taking its core's lock when the case is on a shared channel: there
 * another thread may unlink it at any moment (a claim that lost), so even the look at its link
 * needs the lock. */
static void uvchan__unlink_case(struct uvchan__waiter_s* w) {
  uvchan_t* core;
  if (!(w->chan->flags_ & UVCHAN__CHAN_SHARED)) {
    if (w->link.next != NULL)
      uvchan__list_remove(&w->link);
    return;
  }
  core = w->chan->core_;
  uvchan__lock(core);
  if (w->link.next != NULL)
    uvchan__list_remove(&w->link);
  uvchan__unlock(core);
}

void uvchan__req_finish(uvchan_req_t* req) {
  uvchan_select_t* sel;
  uvchan_ctx_t* ctx = req->ctx_;
  unsigned i;

  if (req->type == UVCHAN_REQ_SELECT) {
    sel = (uvchan_select_t*)req;
    for (i = 0; i < sel->ncases_; i++)
      if (sel->cases_[i].chan != NULL)
        uvchan__unlink_case(&sel->cases_[i].w_);
  }
  if ((req->state_ & UVCHAN__REQ_SHWAIT) && --ctx->nxwait_ == 0) {
    uv_unref((uv_handle_t*)&ctx->async_);
    uv_prepare_stop(&ctx->prepare_);
  }
}

/* ---- waking ---- */

/* A thread without a loop waiting in uvchan_thread_send/_recv. */
typedef struct {
  uvchan_req_t req;
  uv_mutex_t m;
  uv_cond_t c;
  int done;
} uvchan__fwait_t;

static void uvchan__fwake(uvchan_req_t* req, int status) {
  uvchan__fwait_t* fw = UVCHAN__CONTAINER_OF(req, uvchan__fwait_t, req);
  uv_mutex_lock(&fw->m);
  req->status = status;
  __atomic_store_n(&fw->done, 1, __ATOMIC_RELEASE); /* the waiter may be spinning on it */
  uv_cond_signal(&fw->c);
  uv_mutex_unlock(&fw->m);
}

/* The inbox is a lock-free stack: wakers push, the owner takes the whole stack at once, so there
 * is no ABA problem (nothing is ever popped alone). The waker's push and its read of spinning_,
 * and the spinner's clear of spinning_ and its last look at the inbox, are sequentially
 * consistent (Dekker): either the waker sees the loop spinning, and the loop then sees the push,
 * or the waker wakes the loop. The caller holds the core lock of the channel the request waited
 * on, which keeps the context alive: its end cannot be destroyed (nor the context closed) before
 * the lock is released. */
static void uvchan__inbox_push(uvchan_ctx_t* ctx, uvchan_req_t* req) {
  uvchan_req_t* head = __atomic_load_n(&ctx->inbox_, __ATOMIC_RELAXED);
  do
    req->qnext_ = head;
  while (!__atomic_compare_exchange_n(&ctx->inbox_, &head, req, 1, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED));
  if (!__atomic_load_n(&ctx->spinning_, __ATOMIC_SEQ_CST))
    uv_async_send(&ctx->async_);
}

void uvchan__wake_shared(struct uvchan__waiter_s* w, int status, uvchan_ctx_t* here) {
  uvchan_req_t* req = w->req;

  uvchan__list_remove(&w->link);
  if (req->type == UVCHAN_REQ_SELECT)
    ((uvchan_select_t*)req)->index = (int)w->index;
  if (req->ctx_ == NULL) {
    uvchan__fwake(req, status);
  } else if (req->ctx_ == here) {
    uvchan__complete_finish(req, status);
  } else {
    req->status = status;
    uvchan__inbox_push(req->ctx_, req);
    if (here != NULL)
      here->xactive_ = 1; /* an answer may come soon: worth spinning for */
  }
}

/* Delivers what other threads completed for this context, oldest first. */
void uvchan__inbox_drain(uvchan_ctx_t* ctx) {
  uvchan_req_t* list;
  uvchan_req_t* prev = NULL;
  uvchan_req_t* next;

  list = __atomic_exchange_n(&ctx->inbox_, NULL, __ATOMIC_ACQUIRE);
  if (list == NULL)
    return;
  ctx->xactive_ = 1;
  while (list != NULL) { /* pushed newest first */
    next = list->qnext_;
    list->qnext_ = prev;
    prev = list;
    list = next;
  }
  for (list = prev; list != NULL; list = next) {
    next = list->qnext_;
    uvchan__complete_finish(list, list->status);
  }
}

/* ---- spinning before the poll ---- */

enum { UVCHAN__SPIN_IO_NS = 20000 }; /* how often a spin looks for ready I/O (a poll(2)) */

/* 1 when the loop's backend (epoll, kqueue) has events ready: I/O must not wait for a spin. */
static int uvchan__io_ready(uv_loop_t* loop) {
#if !defined(_WIN32)
  struct pollfd p;
  p.fd = uv_backend_fd(loop);
  p.events = POLLIN;
  p.revents = 0;
  return p.fd >= 0 && poll(&p, 1, 0) > 0;
#else
  (void)loop;
  return 0;
#endif
}

/* Spins until the inbox has something (1) or until `end`, ready I/O or uv_stop() (0). After the
 * first microseconds it yields the CPU between short spins: on a machine with more runnable
 * threads than cores, the thread it waits for may need this very CPU (measured on 2 busy vCPUs:
 * a thread ping-pong took 50-78 us per round trip spinning without yielding, 6-10 us with). */
static int uvchan__spin_wait(uvchan_ctx_t* ctx, uint64_t end, uint64_t* io_at) {
  uint64_t now;
  unsigned i;
  for (i = 1;; i++) {
    if (__atomic_load_n(&ctx->inbox_, __ATOMIC_RELAXED) != NULL)
      return 1;
    if (ctx->loop->stop_flag)
      return 0;
    UVCHAN__PAUSE();
    if ((i & 15) == 0) {
      now = uv_hrtime();
      if (now >= end)
        return 0;
      if (i > 64)
        UVCHAN__YIELD();
      if (now >= *io_at) {
        if (uvchan__io_ready(ctx->loop))
          return 0;
        *io_at = now + UVCHAN__SPIN_IO_NS;
      }
    }
  }
}

/* The prepare handle, active while a request of this context waits on a shared channel: right
 * before the loop would sleep in the poll, it watches the inbox instead, when cross-thread
 * traffic was seen since the loop last slept (xactive_). With spinning_ set, wakers skip
 * uv_async_send(), and what arrives is delivered right here, as the check phase would, and the
 * watch goes on: a hop between two busy loops costs no system call on either side, not even a
 * poll. The watch lasts until spin_us_ have passed without traffic (then xactive_ is cleared:
 * the loop sleeps, and spins again only after its next wake-up); it ends early for a due timer
 * (it never runs past the poll's own timeout), for ready I/O (looked at every few microseconds),
 * for anything else the loop must do first (closing handles, pending callbacks, uv_stop(): the
 * poll's timeout is 0 then), and after UVCHAN__SPIN_ROUNDS deliveries, leaving the last ones
 * queued so that the loop goes round once (a poll without waiting). */
enum { UVCHAN__SPIN_ROUNDS = 1024 };

static void uvchan__on_prepare(uv_prepare_t* prepare) {
  uvchan_ctx_t* ctx = UVCHAN__CONTAINER_OF(prepare, uvchan_ctx_t, prepare_);
  uv_loop_t* loop = ctx->loop;
  uint64_t now, deadline, end, io_at;
  unsigned rounds = 0;
  int timeout;

  if (!ctx->xactive_ || ctx->spin_us_ == 0 || ctx->qhead_ != NULL)
    return;
  timeout = uv_backend_timeout(loop);
  if (timeout == 0)
    return; /* the poll will not block */
  now = uv_hrtime();
  /* libuv runs a timer once the loop time (uv_hrtime() in whole ms) reaches its due time */
  deadline = timeout > 0 ? (uv_now(loop) + (uint64_t)timeout) * 1000000 : UINT64_MAX;
  io_at = now + UVCHAN__SPIN_IO_NS;
  __atomic_store_n(&ctx->spinning_, 1, __ATOMIC_SEQ_CST);
  for (;;) {
    end = now + (uint64_t)ctx->spin_us_ * 1000;
    if (!uvchan__spin_wait(ctx, end < deadline ? end : deadline, &io_at)) {
      if (uv_hrtime() >= end)
        ctx->xactive_ = 0;
      break;
    }
    /* Delivered right here: the idle and check handles need not start (IDLE_ON says they
     * are), unless something is left for the loop. */
    ctx->flags_ |= UVCHAN__CTX_IDLE_ON;
    uvchan__inbox_drain(ctx);
    if (++rounds == UVCHAN__SPIN_ROUNDS) {
      ctx->flags_ &= ~UVCHAN__CTX_IDLE_ON;
      uvchan__idle_start(ctx); /* the check phase delivers, after a poll that does not wait */
      break;
    }
    if ((rounds & 7) == 0) { /* the clock costs as much as a hop here: every 8 rounds */
      uv_update_time(loop);  /* deadlines started by what runs now count from about now */
      now = uv_hrtime();
      if (now >= io_at) { /* busy rounds never idle long enough for the spin's own look */
        if (uvchan__io_ready(loop)) {
          ctx->flags_ &= ~UVCHAN__CTX_IDLE_ON;
          uvchan__idle_start(ctx);
          break;
        }
        io_at = now + UVCHAN__SPIN_IO_NS;
      }
    }
    uvchan__deliver_batch(ctx);
    if (ctx->qhead_ != NULL) { /* the batch ran out, or uv_stop(): the loop goes on */
      ctx->flags_ &= ~UVCHAN__CTX_IDLE_ON;
      uvchan__idle_start(ctx);
      break;
    }
    if (ctx->nxwait_ == 0 || (ctx->flags_ & UVCHAN__CTX_CLOSING))
      break;
    timeout = uv_backend_timeout(loop); /* a delivery may have started a timer */
    if (timeout == 0)
      break;
    if (timeout > 0 && (uv_now(loop) + (uint64_t)timeout) * 1000000 < deadline)
      deadline = (uv_now(loop) + (uint64_t)timeout) * 1000000;
  }
  __atomic_store_n(&ctx->spinning_, 0, __ATOMIC_SEQ_CST);
  /* A waker that still saw spinning_ set skipped its uv_async_send(): its push is visible now. */
  if (__atomic_load_n(&ctx->inbox_, __ATOMIC_SEQ_CST) != NULL)
    uvchan__inbox_drain(ctx); /* queues completions: the poll will not block */
}

int uvchan_ctx_set_spin(uvchan_ctx_t* ctx, unsigned usec) {
  if (!uvchan__ctx_ok(ctx))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  ctx->spin_us_ = usec;
  return 0;
}

/* ---- cancel and deadline of a request waiting on a shared channel (its owner's thread) ---- */

int uvchan__x_abort(uvchan_req_t* req, int status) {
  uvchan_t* core;
  int linked;

  if (req->type == UVCHAN_REQ_SELECT) {
    if (!uvchan__claim((uvchan_select_t*)req)) {
      if (req->state_ & UVCHAN__REQ_DEADLINE)
        uvchan__deadline_remove(req);
      return UV_EBUSY; /* another thread completed it: its outcome is on its way */
    }
    ((uvchan_select_t*)req)->index = -1;
    uvchan__xsel_complete((uvchan_select_t*)req, status);
    return 0;
  }
  core = req->w_.chan->core_;
  uvchan__lock(core);
  linked = req->w_.link.next != NULL;
  if (linked)
    uvchan__list_remove(&req->w_.link);
  uvchan__unlock(core);
  if (req->state_ & UVCHAN__REQ_DEADLINE)
    uvchan__deadline_remove(req);
  if (!linked)
    return UV_EBUSY;
  req->state_ |= UVCHAN__REQ_FINISH;
  uvchan__complete(req, status);
  return 0;
}

/* ---- ends ---- */

static void uvchan__end_link(uvchan_ctx_t* ctx, uvchan_t* end) {
  uvchan__list_init(&end->sendq_);
  uvchan__list_init(&end->recvq_);
  uvchan__list_push(&ctx->chans_, &end->link_);
  ctx->nchans_++;
  end->magic_ = UVCHAN__XCHAN_MAGIC;
}

int uvchan_init_shared(uvchan_ctx_t* ctx, uvchan_t* ch, size_t elem_size, size_t capacity) {
  int err = uvchan_init(ctx, ch, elem_size, capacity);
  if (err != 0)
    return err;
  ch->flags_ |= UVCHAN__CHAN_SHARED;
  ch->core_ = ch;
  ch->lock_ = 0;
  ch->refs_ = 1;
  ch->magic_ = UVCHAN__XCHAN_MAGIC;
  return 0;
}

int uvchan_attach(uvchan_ctx_t* ctx, uvchan_t* end, uvchan_t* shared) {
  uvchan_t* core;
  int err;

  if (!uvchan__ctx_ok(ctx) || end == NULL || !uvchan__chan_shared(shared) ||
      (ctx->flags_ & UVCHAN__CTX_CLOSING))
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  if (UVCHAN__MAGIC_IS(end, UVCHAN__CHAN_MAGIC) || end->magic_ == UVCHAN__XCHAN_MAGIC)
    return UV_EBUSY;
  core = shared->core_;
  memset(end, 0, sizeof(*end));
  end->ctx_ = ctx;
  end->core_ = core;
  end->elem_size_ = core->elem_size_;
  end->ring_ = end->cap_ = core->ring_;
  end->id_ = core->id_;
  end->flags_ = UVCHAN__CHAN_SHARED;
  uvchan__lock(core);
  core->refs_++;
  uvchan__unlock(core);
  uvchan__end_link(ctx, end);
  return 0;
}

int uvchan_is_shared(const uvchan_t* ch) {
  return uvchan__chan_shared(ch);
}

void uvchan__x_locked(const uvchan_t* end, void (*fn)(uvchan_t* core, void* arg), void* arg) {
  uvchan_t* core = end->core_;
  uvchan__lock(core);
  fn(core, arg);
  uvchan__unlock(core);
}

/* Ends every waiter of queue `q` that was started on `end` with `status`: its own context's
 * requests, and threads without a loop that waited through it. */
static void uvchan__fail_end_waiters(uvchan_t* end, struct uvchan__link_s* q, int status) {
  struct uvchan__link_s* l = q->next;
  struct uvchan__link_s* next;
  struct uvchan__waiter_s* w;

  for (; l != q; l = next) {
    next = l->next;
    w = (struct uvchan__waiter_s*)l;
    if (w->chan != end)
      continue;
    if (uvchan__is_xsel(w) && !uvchan__claim((uvchan_select_t*)w->req)) {
      uvchan__list_remove(&w->link); /* completed elsewhere */
      continue;
    }
    uvchan__wake_shared(w, status, end->ctx_);
  }
}

/* Destroys an end (uvchan_destroy() on a shared channel): requests started on it get
 * UV_ECANCELED. Returns 0 when the end is gone; 1 when it was the core's last end, now an
 * ordinary channel for uvchan_destroy() to tear down; UV_EBUSY for a core other ends still use. */
int uvchan__x_destroy(uvchan_t* end) {
  uvchan_t* core = end->core_;

  uvchan__lock(core);
  if (end == core && core->refs_ > 1) {
    uvchan__unlock(core);
    return UV_EBUSY;
  }
  uvchan__fail_end_waiters(end, &core->recvq_, UV_ECANCELED);
  uvchan__fail_end_waiters(end, &core->sendq_, UV_ECANCELED);
  if (end != core) {
    core->refs_--;
    uvchan__unlock(core);
    uvchan__list_remove(&end->link_);
    end->ctx_->nchans_--;
    end->magic_ = 0;
    return 0;
  }
  uvchan__unlock(core);
  /* The last end: no other thread can reach the core any more. */
  core->flags_ &= ~UVCHAN__CHAN_SHARED;
  return 1;
}

/* ---- operations on an end ---- */

/* Links `req`'s waiter `w` into the core's queue for `op`; the caller holds the core's lock and
 * is `req`'s owner. The waiter names the end, so that destroying an end finds its requests. */
static void uvchan__x_wait(uvchan_t* end, struct uvchan__waiter_s* w, uvchan_req_t* req,
                           void* value, unsigned op, unsigned index) {
  uvchan_t* core = end->core_;
  w->req = req;
  w->chan = end;
  w->value = value;
  w->op = op;
  w->index = index;
  uvchan__list_push((op & ~UVCHAN__OP_XSEL) == UVCHAN_OP_RECV ? &core->recvq_ : &core->sendq_,
                    &w->link);
}

/* Unlocked before the caller queues an immediate completion or parks a task: another thread may
 * complete a waiting request at once, but only this thread's loop delivers it. */
int uvchan__x_start(uvchan_req_t* req, uvchan_t* end, void* value, unsigned op,
                    uint64_t timeout, int has_deadline) {
  uvchan_t* core = end->core_;
  uvchan_ctx_t* ctx = end->ctx_;
  int status;

  uvchan__lock(core);
  status = op == UVCHAN_OP_SEND ? uvchan__send_x(core, value, req, 1, ctx)
                                : uvchan__recv_x(core, value, req, 1, ctx);
  if (status == UVCHAN__MUST_WAIT) {
    uvchan__x_wait(end, &req->w_, req, value, op, 0);
    uvchan__xwait_begin(ctx, req);
    if (has_deadline)
      uvchan__deadline_add(req, timeout);
  }
  uvchan__unlock(core);
  return status;
}

int uvchan__x_try(uvchan_t* end, void* value, unsigned op) {
  uvchan_t* core = end->core_;
  int status;
  uvchan__lock(core);
  status = op == UVCHAN_OP_SEND ? uvchan__send_x(core, value, NULL, 1, NULL)
                                : uvchan__recv_x(core, value, NULL, 1, NULL);
  uvchan__unlock(core);
  return status;
}

/* Fails every waiter of a shared core's queue (close: receivers UV_EOF with the zero value,
 * senders UV_EPIPE), whoever owns it. */
static void uvchan__x_fail_queue(uvchan_t* core, struct uvchan__link_s* q, int status) {
  struct uvchan__waiter_s* w;
  while ((w = uvchan__claim_first(q)) != NULL) {
    if (status == UV_EOF && w->value != NULL)
      memset(w->value, 0, core->elem_size_);
    uvchan__wake_shared(w, status, NULL);
  }
}

int uvchan__x_close(uvchan_t* end) {
  uvchan_t* core = end->core_;
  int err = 0;
  uvchan__lock(core);
  if (core->flags_ & UVCHAN__CHAN_CLOSED) {
    err = UV_EPIPE;
  } else {
    core->flags_ |= UVCHAN__CHAN_CLOSED;
    uvchan__x_fail_queue(core, &core->recvq_, UV_EOF);
    uvchan__x_fail_queue(core, &core->sendq_, UV_EPIPE);
  }
  uvchan__unlock(core);
  return err;
}

/* A shutdown of `end`'s context cancels the callback requests it started on `end`. */
void uvchan__x_cancel_end(uvchan_t* end) {
  uvchan_t* core = end->core_;
  uvchan__lock(core);
  uvchan__fail_end_waiters(end, &core->recvq_, UV_ECANCELED);
  uvchan__fail_end_waiters(end, &core->sendq_, UV_ECANCELED);
  uvchan__unlock(core);
}

/* ---- select over shared channels ---- */

/* Locks (or unlocks) the distinct cores of the shared cases, in address order (Go's sellock):
 * two selects that lock the same cores can never wait for each other. */
static int uvchan__core_cmp(const void* a, const void* b) {
  uintptr_t x = (uintptr_t)*(uvchan_t* const*)a, y = (uintptr_t)*(uvchan_t* const*)b;
  return x < y ? -1 : x > y;
}

int uvchan__sel_lock(uvchan_case_t* cases, unsigned n, uvchan_t*** cores_out,
                     uvchan_t** small, unsigned nsmall) {
  uvchan_t** cores = small;
  unsigned i, k = 0, d = 0;

  for (i = 0; i < n; i++)
    if (cases[i].chan != NULL && (cases[i].chan->flags_ & UVCHAN__CHAN_SHARED))
      k++;
  if (k > nsmall && (cores = malloc(k * sizeof(*cores))) == NULL)
    return UV_ENOMEM;
  for (i = 0, k = 0; i < n; i++)
    if (cases[i].chan != NULL && (cases[i].chan->flags_ & UVCHAN__CHAN_SHARED))
      cores[k++] = cases[i].chan->core_;
  qsort(cores, k, sizeof(*cores), uvchan__core_cmp);
  for (i = 0; i < k; i++)
    if (d == 0 || cores[d - 1] != cores[i])
      cores[d++] = cores[i];
  for (i = 0; i < d; i++)
    uvchan__lock(cores[i]);
  *cores_out = cores;
  return (int)d;
}

void uvchan__sel_unlock(uvchan_t** cores, int d, uvchan_t** small) {
  int i;
  for (i = d - 1; i >= 0; i--)
    uvchan__unlock(cores[i]);
  if (cores != small)
    free(cores);
}

/* Links a select's case on an end into its core (the select holds every core's lock). */
void uvchan__x_case_wait(uvchan_select_t* sel, unsigned i) {
  uvchan_case_t* c = &sel->cases_[i];
  uvchan__x_wait(c->chan, &c->w_, (uvchan_req_t*)sel, c->value, c->op | UVCHAN__OP_XSEL, i);
}

/* A select with a shared case starts waiting: it can now be claimed by any thread. */
void uvchan__xsel_waits(uvchan_select_t* sel) {
  uvchan__xwait_begin(sel->ctx_, (uvchan_req_t*)sel);
}

/* ---- threads without a loop ---- */

/* A blocked thread first spins for a while, as a loop does before it sleeps: the other side is
 * often a busy loop that answers within microseconds, and a sleep on the condition variable would
 * cost a futex wake-up on both sides. */
static void uvchan__fwait_spin(uvchan__fwait_t* fw, uint64_t due) {
  uint64_t end = uv_hrtime() + (uint64_t)UVCHAN_DEFAULT_SPIN_US * 1000;
  unsigned i;
  if (due < end)
    end = due;
  for (i = 1; !__atomic_load_n(&fw->done, __ATOMIC_ACQUIRE); i++) {
    UVCHAN__PAUSE();
    if ((i & 15) == 0) {
      if (uv_hrtime() >= end)
        return;
      if (i > 64)
        UVCHAN__YIELD();
    }
  }
}

static int uvchan__thread_op(uvchan_t* end, void* value, unsigned op, uint64_t timeout,
                             int has_deadline) {
  uvchan_t* core;
  uvchan__fwait_t fw;
  int status, linked;
  uint64_t due = 0;

  if (!uvchan__chan_shared(end) || (op == UVCHAN_OP_SEND && value == NULL && end->elem_size_ != 0))
    return UV_EINVAL;
  core = end->core_;
  uvchan__lock(core);
  status = op == UVCHAN_OP_SEND ? uvchan__send_x(core, value, NULL, 1, NULL)
                                : uvchan__recv_x(core, value, NULL, 1, NULL);
  if (status != UVCHAN__MUST_WAIT) {
    uvchan__unlock(core);
    return status;
  }
  if (has_deadline && timeout == 0) { /* nothing to wait for: a try */
    uvchan__unlock(core);
    return UV_ETIMEDOUT;
  }
  memset(&fw, 0, sizeof(fw));
  if (uv_mutex_init(&fw.m) != 0 || uv_cond_init(&fw.c) != 0) {
    uvchan__unlock(core);
    return UV_ENOMEM;
  }
  fw.req.type = op == UVCHAN_OP_SEND ? UVCHAN_REQ_SEND : UVCHAN_REQ_RECV;
  fw.req.ctx_ = NULL; /* wakes go to uvchan__fwake() */
  uvchan__x_wait(end, &fw.req.w_, &fw.req, value, op, 0);
  uvchan__unlock(core);

  if (has_deadline)
    due = uv_hrtime() + (timeout > UINT64_MAX / 1000000 ? UINT64_MAX / 2 : timeout * 1000000);
  uvchan__fwait_spin(&fw, has_deadline ? due : UINT64_MAX);
  /* Even when the spin saw `done`, the waker may still be in uvchan__fwake(): taking the mutex
   * waits it out before `fw` goes. */
  uv_mutex_lock(&fw.m);
  while (!fw.done) {
    if (!has_deadline) {
      uv_cond_wait(&fw.c, &fw.m);
    } else {
      uint64_t now = uv_hrtime();
      if (now >= due || uv_cond_timedwait(&fw.c, &fw.m, due - now) == UV_ETIMEDOUT) {
        if (fw.done)
          break;
        /* Withdraw, unless a match is being made right now: then wait for it. */
        uv_mutex_unlock(&fw.m);
        uvchan__lock(core);
        linked = fw.req.w_.link.next != NULL;
        if (linked)
          uvchan__list_remove(&fw.req.w_.link);
        uvchan__unlock(core);
        uv_mutex_lock(&fw.m);
        if (linked) {
          fw.done = 1;
          fw.req.status = UV_ETIMEDOUT;
        }
      }
    }
  }
  status = fw.req.status;
  uv_mutex_unlock(&fw.m);
  uv_cond_destroy(&fw.c);
  uv_mutex_destroy(&fw.m);
  return status;
}

int uvchan_thread_send(uvchan_t* ch, const void* value) {
  return uvchan__thread_op(ch, (void*)value, UVCHAN_OP_SEND, 0, 0);
}

int uvchan_thread_send_timeout(uvchan_t* ch, const void* value, uint64_t timeout) {
  return uvchan__thread_op(ch, (void*)value, UVCHAN_OP_SEND, timeout, 1);
}

int uvchan_thread_recv(uvchan_t* ch, void* value) {
  return uvchan__thread_op(ch, value, UVCHAN_OP_RECV, 0, 0);
}

int uvchan_thread_recv_timeout(uvchan_t* ch, void* value, uint64_t timeout) {
  return uvchan__thread_op(ch, value, UVCHAN_OP_RECV, timeout, 1);
}

/* ---- the deadlock report ---- */

/* The case at which the report lists a select with a shared case: its first case with a channel.
 * (A select of local channels only is listed at its first waiting case; here the links of the
 * other cases cannot be read without their cores' locks.) */
unsigned uvchan__xsel_first(const uvchan_select_t* sel) {
  unsigned i;
  for (i = 0; sel->cases_[i].chan == NULL; i++)
    ;
  return i;
}

size_t uvchan__x_walk(uvchan_t* end, uvchan_walk_cb cb, void* arg) {
  uvchan_t* core = end->core_;
  struct uvchan__link_s* queues[2];
  struct uvchan__link_s* l;
  struct uvchan__waiter_s* w;
  uvchan_select_t* sel;
  uvchan_waiting_t info;
  size_t n = 0;
  unsigned i, q;

  queues[0] = &core->sendq_;
  queues[1] = &core->recvq_;
  uvchan__lock(core);
  for (q = 0; q < 2; q++) {
    for (l = queues[q]->next; l != queues[q]; l = l->next) {
      w = (struct uvchan__waiter_s*)l;
      if (w->chan != end || w->req->ctx_ != end->ctx_)
        continue; /* another end's, or a thread without a loop */
      info.req = w->req;
      info.task = uvchan__req_task(w->req);
      info.type = w->req->type;
      info.chan = end;
      info.op = (uvchan_op)UVCHAN__OP(w);
      info.cases = NULL;
      info.ncases = 0;
      if (w->req->type == UVCHAN_REQ_SELECT) {
        /* once per select: at its first case (uvchan__xsel_first()), if that is on this end */
        sel = (uvchan_select_t*)w->req;
        i = uvchan__xsel_first(sel);
        if (i != w->index || sel->cases_[i].chan != end)
          continue;
        info.cases = sel->cases_;
        info.ncases = sel->ncases_;
      }
      if (cb != NULL)
        cb(&info, arg);
      n++;
    }
  }
  uvchan__unlock(core);
  return n;
}
