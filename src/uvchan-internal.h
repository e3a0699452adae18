/* Internal declarations shared by the engine files. Nothing here is public API. */
#ifndef UVCHAN_INTERNAL_H
#define UVCHAN_INTERNAL_H

#include "uvchan.h"

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__)
#define UVCHAN__LIKELY(x) __builtin_expect(!!(x), 1)
#define UVCHAN__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UVCHAN__LIKELY(x) (x)
#define UVCHAN__UNLIKELY(x) (x)
#endif

/* For the few small functions on the hot path that must inline whatever the optimiser thinks. */
#if defined(__GNUC__)
#define UVCHAN__INLINE static inline __attribute__((always_inline))
#define UVCHAN__NOINLINE __attribute__((noinline, cold))
#else
#define UVCHAN__INLINE static inline
#define UVCHAN__NOINLINE
#endif

#define UVCHAN__CONTAINER_OF(ptr, type, field) ((type*)((char*)(ptr) - offsetof(type, field)))

/* Thread-local state is reached with the initial-exec model: one %fs-relative load, also in the
 * shared library, where the default model would call __tls_get_addr on every task operation. */
#if defined(__GNUC__) && !defined(_WIN32)
#define UVCHAN__TLS _Thread_local __attribute__((tls_model("initial-exec")))
#else
#define UVCHAN__TLS _Thread_local
#endif

/* Each thread's marker: a context stores the address of its owning thread's, and the check that a
 * call comes from that thread is one address comparison. */
extern UVCHAN__TLS char uvchan__thread_mark;
#define UVCHAN__ON_THREAD(ctx) ((ctx)->thread_ == (const void*)&uvchan__thread_mark)

/* The `data` of every libuv handle uvchan owns points here (uvchan_handle_owned()); uvchan finds
 * its structs from its handles with UVCHAN__CONTAINER_OF, never through `data`. */
extern const char uvchan__handle_tag;

/* Memcheck support. uvchan recognises live structs by a magic field, which means reading a field
 * of caller memory that may never have been written: telling memcheck that this one read is
 * deliberate keeps users' programs clean without a suppression file. Outside valgrind the hot-path
 * form costs one load and a branch. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define UVCHAN__HAVE_VALGRIND 1
#endif
#endif
#if defined(UVCHAN__HAVE_VALGRIND)
#define UVCHAN__VG_DEFINED(addr, len) ((void)VALGRIND_MAKE_MEM_DEFINED((addr), (len)))
#else
#define UVCHAN__VG_DEFINED(addr, len) ((void)(addr), (void)(len))
#endif
/* 1 when memcheck watches this process (set by uvchan_ctx_init()): only then do request starts
 * take the path that marks the magic field they read (see UVCHAN__GATE). Other valgrind tools,
 * callgrind among them, see the native fast path. */
extern int uvchan__memcheck;

/* Reads the magic field of caller memory that may hold garbage (see above). */
#define UVCHAN__MAGIC_IS(obj, magic) (UVCHAN__VG_DEFINED(&(obj)->magic_, sizeof((obj)->magic_)), (obj)->magic_ == (magic))

/* Magic values tell live structs from destroyed or never-initialised ones. A struct of random
 * garbage matches by chance with odds of 2^-32: good enough to turn most misuse into UV_EINVAL. */
#define UVCHAN__CTX_MAGIC 0x75637478u   /* "uctx" */
#define UVCHAN__CHAN_MAGIC 0x7563686eu  /* "uchn" */
#define UVCHAN__XCHAN_MAGIC 0x75786368u /* "uxch": an end of a shared channel (thread.c). Its own
                                           magic keeps shared ends off every local fast path,
                                           whose check of the local magic then diverts them. */
#define UVCHAN__REQ_MAGIC 0x75726571u   /* "ureq": set while a request is pending */
#define UVCHAN__WG_MAGIC 0x75776721u    /* "uwg!" */
#define UVCHAN__TIMER_MAGIC 0x75746d72u /* "utmr" */
#define UVCHAN__RES_MAGIC 0x75727363u   /* "ursc": a registered uvchan_resource_t */

/* Request state_ bits. WAITING/QUEUED/DEADLINE are the lifecycle, cleared before the callback;
 * TASK marks a request embedded in a task and stays. */
enum {
  UVCHAN__REQ_WAITING = 1u << 0,  /* linked in a channel's or wait group's queue */
  UVCHAN__REQ_QUEUED = 1u << 1,   /* matched: in the completion queue, status final */
  UVCHAN__REQ_DEADLINE = 1u << 2, /* in the deadline heap */
  UVCHAN__REQ_TASK = 1u << 3,
  UVCHAN__REQ_SHWAIT = 1u << 4,   /* waits on a shared channel (thread.c) */
  UVCHAN__REQ_FINISH = 1u << 5    /* completed with work left for its owner's thread: the
                                     select's other cases to withdraw, the shared wait to count
                                     out (uvchan__req_finish, run at delivery) */
};

/* Context flags_. */
enum {
  UVCHAN__CTX_IDLE_ON = 1u << 0, /* idle and check started: completions are pending */
  UVCHAN__CTX_CLOSING = 1u << 1,
  UVCHAN__CTX_HANDLES_CLOSING = 1u << 2,
  UVCHAN__CTX_SHUTDOWN = 1u << 3, /* uvchan_ctx_shutdown() runs: starts fail with UV_ECANCELED */
  UVCHAN__CTX_RES_CLOSED = 1u << 4, /* the shutdown asked every resource to close */
  UVCHAN__CTX_STEPPING = 1u << 5    /* uvchan__ctx_shutdown_step() runs (closes re-enter it) */
};

/* Channel flags_. */
enum {
  UVCHAN__CHAN_CLOSED = 1u << 0,
  UVCHAN__CHAN_OVERFLOW = 1u << 1, /* a dropping overflow policy: sends never wait */
  UVCHAN__CHAN_SHARED = 1u << 2    /* an end of a channel shared between threads (thread.c) */
};

#define UVCHAN__PERMIT_MAGIC 0x75706d74u /* "upmt": set while a permit holds a slot */

/* ---- intrusive circular list: a sentinel link is the empty list ---- */

static inline void uvchan__list_init(struct uvchan__link_s* l) {
  l->next = l;
  l->prev = l;
}

static inline int uvchan__list_empty(const struct uvchan__link_s* l) {
  return l->next == l;
}

static inline void uvchan__list_push(struct uvchan__link_s* l, struct uvchan__link_s* n) {
  n->prev = l->prev;
  n->next = l;
  l->prev->next = n;
  l->prev = n;
}

/* Unlinks `n`; a NULL `next` afterwards marks it as in no list. */
static inline void uvchan__list_remove(struct uvchan__link_s* n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = NULL;
  n->prev = NULL;
}

static inline struct uvchan__waiter_s* uvchan__first_waiter(struct uvchan__link_s* q) {
  return (struct uvchan__waiter_s*)q->next; /* the link is the waiter's first field */
}

/* ---- validity ---- */

static inline int uvchan__ctx_ok(const uvchan_ctx_t* ctx) {
  return ctx != NULL && ctx->magic_ == UVCHAN__CTX_MAGIC;
}

/* A live channel of the loop's own: what every fast path accepts. */
static inline int uvchan__chan_ok(const uvchan_t* ch) {
  return ch != NULL && ch->magic_ == UVCHAN__CHAN_MAGIC;
}

/* A live end of a shared channel. */
static inline int uvchan__chan_shared(const uvchan_t* ch) {
  return ch != NULL && ch->magic_ == UVCHAN__XCHAN_MAGIC;
}

/* A live channel of either kind: what calls that read only an end's own fields accept. */
static inline int uvchan__chan_live(const uvchan_t* ch) {
  return uvchan__chan_ok(ch) || uvchan__chan_shared(ch);
}

/* The gate of every call that starts something on `ctx` (a request, a channel, a task...): 0
 * when it may go on, UV_EPERM from another thread than the context's, UV_ECANCELED once a
 * shutdown began. ctx->gate_ holds the owner's thread marker only while none of that applies and
 * memcheck is not watching, so the fast path is one comparison. The slow path also tells memcheck
 * that the start is about to read `magic` (a request's magic field, possibly never written; may
 * be NULL). */
int uvchan__gate_slow(uvchan_ctx_t* ctx, const void* magic);
#define UVCHAN__GATE(ctx, magic)                                                    \
  (UVCHAN__LIKELY((ctx)->gate_ == (const void*)&uvchan__thread_mark) ? 0          \
                                                                     : uvchan__gate_slow((ctx), (magic)))

/* ---- ctx.c: completion queue, deadlines, trace, random ---- */

void uvchan__idle_start(uvchan_ctx_t* ctx);
/* Delivers up to batch_ completions from the queue (the check phase's work). */
void uvchan__deliver_batch(uvchan_ctx_t* ctx);

/* Sets the final status and queues the callback (or the task's resumption) for the loop. */
static inline void uvchan__complete(uvchan_req_t* req, int status) {
  uvchan_ctx_t* ctx = req->ctx_;

  req->status = status;
  req->state_ = (req->state_ & (UVCHAN__REQ_TASK | UVCHAN__REQ_FINISH | UVCHAN__REQ_SHWAIT)) |
                UVCHAN__REQ_QUEUED;
  req->qnext_ = NULL;
  if (ctx->qtail_ != NULL) {
    ctx->qtail_->qnext_ = req;
  } else {
    ctx->qhead_ = req;
    if (UVCHAN__UNLIKELY(!(ctx->flags_ & UVCHAN__CTX_IDLE_ON)))
      uvchan__idle_start(ctx);
  }
  ctx->qtail_ = req;
}

/* Unlinks the head of the (non-empty) completion queue for delivery. The request is its owner's
 * again: idle, status and type final. The caller counts it against the delivery's budget, and
 * has run uvchan__req_finish() first if the request had UVCHAN__REQ_FINISH. */
void uvchan__req_finish(uvchan_req_t* req);

static inline uvchan_req_t* uvchan__queue_take(uvchan_ctx_t* ctx) {
  uvchan_req_t* req = ctx->qhead_;
  ctx->qhead_ = req->qnext_;
  if (ctx->qhead_ == NULL)
    ctx->qtail_ = NULL;
  req->magic_ = 0;
  req->state_ &= UVCHAN__REQ_TASK;
  return req;
}

/* Prepares a request for a start call: who it is, where it completes, how. `state` is 0 for a
 * user's request (whose fields may hold garbage before) and UVCHAN__REQ_TASK for a task's. */
static inline void uvchan__req_prepare(uvchan_req_t* req, uvchan_ctx_t* ctx, uvchan_req_type type,
                                       void (*cb)(void), unsigned state) {
  req->type = type;
  req->status = 0;
  req->ctx_ = ctx;
  req->cb_ = cb;
  req->magic_ = UVCHAN__REQ_MAGIC;
  req->state_ = state;
  req->w_.link.next = NULL;
  req->w_.chan = NULL;
}

void uvchan__deadline_add(uvchan_req_t* req, uint64_t timeout);
void uvchan__deadline_remove(uvchan_req_t* req);
uint32_t uvchan__rand_below(uvchan_ctx_t* ctx, uint32_t n);
void uvchan__trace(uvchan_t* ch, uvchan_trace_kind kind, unsigned op, uvchan_req_t* req,
                   uvchan_req_t* peer, const void* value);
void uvchan__ctx_maybe_finish_close(uvchan_ctx_t* ctx);
/* 1 while the context registered with (slot, gen) has not started closing; reads only the
 * registry, never the context, so it is safe after the context's memory was freed. */
int uvchan__ctx_alive(uint32_t slot, uint64_t gen);
/* Registers / unregisters something the context's graceful shutdown must close. The shutdown
 * calls `shutdown` once per resource; the resource unregisters itself, before the hook returns
 * (a timer: a close that goes on asynchronously is then announced with
 * uvchan__ctx_closing_begin()) or later (a public uvchan_resource_t: a module's connection whose
 * threads must stop first), and the shutdown goes on when the last one has left. An open
 * resource makes uvchan_ctx_close() return UV_EBUSY. */
void uvchan__res_add(uvchan_ctx_t* ctx, struct uvchan__res_s* res, void (*shutdown)(struct uvchan__res_s*));
void uvchan__res_remove(uvchan_ctx_t* ctx, struct uvchan__res_s* res);
/* An object of the context began / ended the asynchronous close of its libuv handle: the
 * context's own close waits for every one to end. */
void uvchan__ctx_closing_begin(uvchan_ctx_t* ctx);
void uvchan__ctx_closing_end(uvchan_ctx_t* ctx);
/* Cancels every waiter of a channel's or wait group's queue `q` (UV_ECANCELED). */
void uvchan__cancel_queue(struct uvchan__link_s* q);
/* Moves a shutdown on: once no task is left, closes what remains and then the context. */
void uvchan__ctx_shutdown_step(uvchan_ctx_t* ctx);

#define UVCHAN__TRACE(ch, kind, op, req, peer, value)          \
  do {                                                         \
    if (UVCHAN__UNLIKELY((ch)->ctx_->trace_cb_ != NULL))       \
      uvchan__trace((ch), (kind), (op), (req), (peer), (value)); \
  } while (0)

/* ---- chan.c: the engine ---- */

/* What uvchan__send_now()/uvchan__recv_now() return when the operation cannot complete now; a
 * positive value, apart from every status (0 or a negative UV_E* code). */
#define UVCHAN__MUST_WAIT 1

/* uvchan__wake() for a select, a wait-group wait or a request with a deadline. */
void uvchan__wake_slow(struct uvchan__waiter_s* w, int status);
/* uvchan__wake() for a waiter of a shared channel's core, whose lock the caller holds, called
 * from a thread whose context is `here` (NULL for a thread without one): the waiter's owner
 * may be another thread (thread.c). */
void uvchan__wake_shared(struct uvchan__waiter_s* w, int status, uvchan_ctx_t* here);
/* A select that has a case on a shared channel is claimed by whoever completes it first, by an
 * atomic exchange (Go's selectDone): the first waiter of `q` that is no such select, or such a
 * select this call claimed; the waiters of selects claimed elsewhere are unlinked on the way.
 * NULL when none is left. */
struct uvchan__waiter_s* uvchan__claim_first(struct uvchan__link_s* q);
/* The same for one waiter about to be matched: 1 if it may be (claimed, or no such select); 0
 * if its select was completed elsewhere, in which case it is unlinked. */
int uvchan__claim_waiter(struct uvchan__waiter_s* w);
/* A waiter's op carries this bit when it belongs to a select with a shared case (it must be
 * claimed before a match): the engine's existing test of the op then notices it, at no cost. */
#define UVCHAN__OP_XSEL 8u
#define UVCHAN__OP(w) ((w)->op & ~UVCHAN__OP_XSEL)
static inline int uvchan__is_xsel(const struct uvchan__waiter_s* w) {
  return (w->op & UVCHAN__OP_XSEL) != 0;
}
/* Unlinks every waiter and the deadline of `req`. */
void uvchan__withdraw(uvchan_req_t* req);
/* Ends a waiting request without a transfer (cancel: UV_ECANCELED, deadline: UV_ETIMEDOUT):
 * traces it as `kind`, withdraws it and queues its completion. Returns 0, or UV_EBUSY when the
 * request waits on a shared channel and another thread has just matched it (its completion,
 * with the real outcome, is on its way). */
int uvchan__abort(uvchan_req_t* req, int status, uvchan_trace_kind kind);
/* uvchan__abort() for a request waiting on a shared channel (thread.c). */
int uvchan__x_abort(uvchan_req_t* req, int status);
/* Completes a select with a shared case that its caller claimed (and whose matched waiter, if
 * any, it unlinked): the rest is left to uvchan__req_finish() on its owner's thread. */
void uvchan__xsel_complete(uvchan_select_t* sel, int status);
/* The start of every callback-API request: UV_EBUSY if `req` is still pending, else prepares it
 * as a user request and returns 0. */
int uvchan__req_begin(uvchan_req_t* req, uvchan_ctx_t* ctx, uvchan_req_type type,
                      void (*cb)(void));

/* ---- the two operations, inline at every call site ---- */

/* Links waiter `w` of `req` at the tail of ch's queue for `op`. */
UVCHAN__INLINE void uvchan__wait(uvchan_t* ch, struct uvchan__waiter_s* w, uvchan_req_t* req,
                                 void* value, unsigned op, unsigned index) {
  w->req = req;
  w->chan = ch;
  w->value = value;
  w->op = op;
  w->index = index;
  uvchan__list_push((op & ~UVCHAN__OP_XSEL) == UVCHAN_OP_RECV ? &ch->recvq_ : &ch->sendq_,
                    &w->link);
  req->state_ |= UVCHAN__REQ_WAITING;
  UVCHAN__TRACE(ch, UVCHAN_TRACE_WAIT, op & ~UVCHAN__OP_XSEL, req, NULL, value);
}

/* A waiter was matched, or its channel closed/destroyed under it: withdraws its request from
 * every queue and completes it with `status`. A plain send or receive without a deadline waits
 * in exactly one queue, so it only leaves that one. */
UVCHAN__INLINE void uvchan__wake(struct uvchan__waiter_s* w, int status) {
  uvchan_req_t* req = w->req;
  if (UVCHAN__LIKELY(req->type <= UVCHAN_REQ_RECV && !(req->state_ & UVCHAN__REQ_DEADLINE))) {
    uvchan__list_remove(&w->link);
    uvchan__complete(req, status);
  } else {
    uvchan__wake_slow(w, status);
  }
}

/* The engine's two operations take where they run as constants, so that every local call site
 * compiles to the plain local code: `shared` 0 is a local channel on its owner's thread; 1 is a
 * shared channel's core, whose lock the caller holds, on a thread whose context is `here`. */
#define UVCHAN__WAKE(w, status, shared, here) \
  ((shared) ? uvchan__wake_shared((w), (status), (here)) : uvchan__wake((w), (status)))
#define UVCHAN__TRACE_X(shared, ch, kind, op, req, peer, value) \
  do {                                                          \
    if (!(shared))                                              \
      UVCHAN__TRACE((ch), (kind), (op), (req), (peer), (value)); \
  } while (0)

/* Element copy, with the common sizes as fixed-size copies the compiler turns into moves. */
UVCHAN__INLINE void uvchan__copy(void* dst, const void* src, size_t n) {
  switch (n) {
    case 0: break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, n); break;
  }
}

/* Appends `value` to the ring; the caller checked there is room. */
UVCHAN__INLINE void uvchan__put(uvchan_t* ch, const void* value) {
  size_t i = ch->head_ + ch->len_;
  if (i >= ch->ring_)
    i -= ch->ring_;
  uvchan__copy(ch->buf_ + i * ch->elem_size_, value, ch->elem_size_);
  ch->len_++;
}

/* Takes the oldest element into `value` (NULL drops it); the caller checked there is one. */
UVCHAN__INLINE void uvchan__take(uvchan_t* ch, void* value) {
  if (value != NULL)
    uvchan__copy(value, ch->buf_ + ch->head_ * ch->elem_size_, ch->elem_size_);
  if (++ch->head_ == ch->ring_)
    ch->head_ = 0;
  ch->len_--;
}

/* A full buffer under a dropping overflow policy takes `value` anyway (chan.c). */
void uvchan__overflow(uvchan_t* ch, const void* value, uvchan_req_t* req);
/* The slot a receive just freed goes to waiting reservation `w` (reserve.c). */
void uvchan__grant(uvchan_t* ch, struct uvchan__waiter_s* w);
/* A receive finds no value but waiting parties in sendq_: only reservations, or senders behind
 * them, can be there when reservations hold every slot (reserve.c). Returns the first sender,
 * or NULL. */
struct uvchan__waiter_s* uvchan__first_sender(uvchan_t* ch, int claim);

/* The first waiter of `q` to match (see uvchan__claim_first), or NULL. */
UVCHAN__INLINE struct uvchan__waiter_s* uvchan__match_first(struct uvchan__link_s* q) {
  struct uvchan__waiter_s* w;
  if (uvchan__list_empty(q))
    return NULL;
  w = uvchan__first_waiter(q);
  if (UVCHAN__UNLIKELY(uvchan__is_xsel(w)))
    w = uvchan__claim_first(q);
  return w;
}

/* Completes a send of `value` by `req` (NULL for a try-send) if it can be done now: returns its
 * status (0, or UV_EPIPE on a closed channel), or UVCHAN__MUST_WAIT. A waiting receiver it
 * matches is woken. `req` is only named in trace events; nothing in it is read or written. */
UVCHAN__INLINE int uvchan__send_x(uvchan_t* ch, const void* value, uvchan_req_t* req, int shared,
                                  uvchan_ctx_t* here) {
  struct uvchan__waiter_s* w;

  if (UVCHAN__UNLIKELY(ch->flags_ & UVCHAN__CHAN_CLOSED))
    return UV_EPIPE;
  if ((w = uvchan__match_first(&ch->recvq_)) != NULL) {
    /* By invariant 2 the buffer is empty: hand the value straight to the oldest receiver. */
    if (w->value != NULL)
      uvchan__copy(w->value, value, ch->elem_size_);
    UVCHAN__TRACE_X(shared, ch, UVCHAN_TRACE_HANDSHAKE, UVCHAN_OP_SEND, req, w->req, value);
    UVCHAN__WAKE(w, 0, shared, here);
    return 0;
  }
  if (ch->len_ < ch->cap_) {
    uvchan__put(ch, value);
    UVCHAN__TRACE_X(shared, ch, UVCHAN_TRACE_PUT, UVCHAN_OP_SEND, req, NULL, value);
    return 0;
  }
  if (UVCHAN__UNLIKELY(ch->flags_ & UVCHAN__CHAN_OVERFLOW)) {
    uvchan__overflow(ch, value, req);
    return 0;
  }
  return UVCHAN__MUST_WAIT;
}

/* Completes a receive into `value` (NULL drops the value) if it can be done now: returns its
 * status (0, or UV_EOF on a closed and drained channel), or UVCHAN__MUST_WAIT. A waiting sender
 * it frees is woken. `req` as for uvchan__send_x(). */
UVCHAN__INLINE int uvchan__recv_x(uvchan_t* ch, void* value, uvchan_req_t* req, int shared,
                                  uvchan_ctx_t* here) {
  struct uvchan__waiter_s* w;

  if (ch->len_ > 0) {
    uvchan__take(ch, value);
    UVCHAN__TRACE_X(shared, ch, UVCHAN_TRACE_TAKE, UVCHAN_OP_RECV, req, NULL, value);
    if (UVCHAN__UNLIKELY((w = uvchan__match_first(&ch->sendq_)) != NULL)) {
      /* The buffer was full (invariant 2): the oldest sender's value takes the freed slot, which
       * keeps send order and completes that sender; a waiting reservation takes the slot. */
      if (UVCHAN__UNLIKELY(UVCHAN__OP(w) == UVCHAN_OP_RESERVE)) {
        uvchan__grant(ch, w);
      } else {
        uvchan__put(ch, w->value);
        UVCHAN__TRACE_X(shared, ch, UVCHAN_TRACE_PUT, UVCHAN_OP_SEND, w->req, NULL, w->value);
      }
      UVCHAN__WAKE(w, 0, shared, here);
    }
    return 0;
  }
  if (!uvchan__list_empty(&ch->sendq_)) {
    /* Unbuffered (or zero-capacity) rendezvous with the oldest sender. A buffered channel whose
     * slots are all reserved can have reservations waiting here too: they hold no value, so
     * the first sender behind them is taken (a select's claimed first). */
    w = uvchan__first_waiter(&ch->sendq_);
    if (UVCHAN__UNLIKELY(w->op != UVCHAN_OP_SEND) && /* a reservation, or a select to claim */
        (w = uvchan__first_sender(ch, 1)) == NULL)
      goto none;
    if (value != NULL)
      uvchan__copy(value, w->value, ch->elem_size_);
    UVCHAN__TRACE_X(shared, ch, UVCHAN_TRACE_HANDSHAKE, UVCHAN_OP_RECV, req, w->req, value);
    UVCHAN__WAKE(w, 0, shared, here);
    return 0;
  }
none:
  if (ch->flags_ & UVCHAN__CHAN_CLOSED) {
    if (value != NULL)
      memset(value, 0, ch->elem_size_); /* Go's zero value from a closed channel */
    return UV_EOF;
  }
  return UVCHAN__MUST_WAIT;
}

#define uvchan__send_now(ch, value, req) uvchan__send_x((ch), (value), (req), 0, NULL)
#define uvchan__recv_now(ch, value, req) uvchan__recv_x((ch), (value), (req), 0, NULL)

/* ---- thread.c: shared channels (see the top of thread.c) ---- */

/* The context's async callback: delivers what other threads completed for it. */
void uvchan__inbox_drain(uvchan_ctx_t* ctx);
/* Starts a send or receive on an end for `req` (a callback request, or a task's own, prepared by
 * the caller): returns its status when it completed at once, else UVCHAN__MUST_WAIT (it waits,
 * counted, with its deadline; a task then parks). */
int uvchan__x_start(uvchan_req_t* req, uvchan_t* end, void* value, unsigned op,
                    uint64_t timeout, int has_deadline);
/* Try-send / try-receive on an end, from any thread: a status or UVCHAN__MUST_WAIT. */
int uvchan__x_try(uvchan_t* end, void* value, unsigned op);
int uvchan__x_close(uvchan_t* end);
int uvchan__x_destroy(uvchan_t* end);
void uvchan__x_cancel_end(uvchan_t* end);
size_t uvchan__x_walk(uvchan_t* end, uvchan_walk_cb cb, void* arg);
/* The case at which the deadlock report lists a waiting select with a shared case. */
unsigned uvchan__xsel_first(const uvchan_select_t* sel);
/* Runs `fn` on the core of `end` under its lock (queries, settings). */
void uvchan__x_locked(const uvchan_t* end, void (*fn)(uvchan_t* core, void* arg), void* arg);
/* Select: locks the distinct cores of the shared cases in address order, returning how many
 * (`*cores` holds them; `small` is a caller array of `nsmall`), or UV_ENOMEM; and unlocks them. */
int uvchan__sel_lock(uvchan_case_t* cases, unsigned n, uvchan_t*** cores, uvchan_t** small,
                     unsigned nsmall);
void uvchan__sel_unlock(uvchan_t** cores, int d, uvchan_t** small);
void uvchan__x_case_wait(uvchan_select_t* sel, unsigned i);
void uvchan__xsel_waits(uvchan_select_t* sel);

/* ---- reserve.c ---- */

/* Whether `ch` (a live channel or end) takes reservations: buffered, sends that block (no
 * dropping overflow policy), and not shared between threads. */
static inline int uvchan__reservable(const uvchan_t* ch) {
  return ch->ring_ != 0 && !(ch->flags_ & (UVCHAN__CHAN_OVERFLOW | UVCHAN__CHAN_SHARED));
}
/* Reserves a slot for `permit` if one is free now: 0, UV_EPIPE (closed), or UVCHAN__MUST_WAIT. */
int uvchan__reserve_now(uvchan_t* ch, uvchan_permit_t* permit);

/* ---- select.c ---- */

/* Starts a select: returns 1 if a case completed at once (req->status, req->index set), 0 if it
 * waits, or UV_ENOMEM. The request is prepared (its ctx_ set) by the caller. */
int uvchan__select_start(uvchan_select_t* sel, uvchan_case_t* cases, unsigned n,
                         uint64_t timeout, int has_deadline, int xsel);
/* Checks select cases: the number with a channel, or UV_EINVAL. Sets *ctx from the channels,
 * and *xsel when a case is on a shared channel. */
int uvchan__select_check(uvchan_case_t* cases, unsigned n, uvchan_ctx_t** ctx, int* xsel);

/* ---- wg.c ---- */

/* Starts a wait on `wg` for a prepared `req`: returns 1 (status 0) if the count is 0 already. */
int uvchan__wg_wait_start(uvchan_req_t* req, uvchan_wg_t* wg);
/* A waiter of `wg` was withdrawn or woken: unlinks the wait group from its context's list of
 * wait groups with waiters when none is left. */
void uvchan__wg_waiter_left(uvchan_wg_t* wg);

/* ---- await.c ---- */

/* A deadline, cancel or shutdown ends the await of a task's request (see uvchan_await_t). */
void uvchan__await_abort(uvchan_req_t* req, int status);
/* uvchan_task_await(_timeout) that also tells whether the wait was abandoned (`*abandoned` = 1:
 * the await then belongs to its operation, whose release callback frees it; the result alone
 * cannot tell, since an operation may itself end with UV_ETIMEDOUT or UV_ECANCELED). */
ssize_t uvchan__task_await_ex(uvchan_await_t* aw, uint64_t timeout, int has_deadline,
                              int* abandoned);

/* ---- net.c (and src/net.h) ---- */

/* uvchan_ctx_close(): frees the state of streams of `ctx` that have nothing in flight (streams
 * the application closed itself, or never closed through uvchan). */
void uvchan__net_ctx_release(uvchan_ctx_t* ctx);

/* ---- stack.c ---- */

#include "stack.h"

/* ---- task.c ---- */

/* Resumes the task owning `req` (its start, or the end of its wait). */
void uvchan__task_resume(uvchan_req_t* req);
/* Cancels task `t` (uvchan_task_cancel(), the shutdown). */
void uvchan__task_cancel(uvchan_task_t* t);
/* The running task, or NULL. */
uvchan_task_t* uvchan__task_current(void);
/* Parks the running task on its own request, prepared as `type` by the caller and marked waiting;
 * returns the request's final status. */
int uvchan__task_block(uvchan_task_t* t);
/* Spends one unit of the running task's cooperative budget (a task is running): 0 to go on, or
 * UV_ECANCELED for a cancelled task. It may yield first, so the caller checks what it uses
 * (handles, states) after it, never before. For blocking calls built outside task.c (net.c). */
int uvchan__task_spend_self(void);
/* The task's own request. */
uvchan_req_t* uvchan__task_own_req(uvchan_task_t* t);
/* The task that owns the request, if any. */
uvchan_task_t* uvchan__req_task(const uvchan_req_t* req);
/* Frees the task runtime and the stacks of a context that has no tasks left. */
void uvchan__task_pools_free(uvchan_ctx_t* ctx);
/* A task's stack (async-signal-safe: the fault handler asks). */
const uvchan__stack_t* uvchan__task_stack(const uvchan_task_t* t);
/* The stacks of a context's tasks (NULL before its first task). */
uvchan__stacks_t* uvchan__task_stacks(uvchan_ctx_t* ctx);
/* Fills `info` and returns 1 when `t` is parked on no channel or wait group (a sleep, an await,
 * a nil channel); else returns 0. */
int uvchan__task_waits_elsewhere(uvchan_task_t* t, uvchan_waiting_t* info);

#include "net.h"
#include "pipeline.h"

#endif /* UVCHAN_INTERNAL_H */
