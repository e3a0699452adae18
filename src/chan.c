/* The channel engine.
 *
 * A channel is a ring buffer of ring_ elements plus two FIFO queues of waiters: sendq_ (parties
 * whose value could not be taken yet, and reservations waiting for a slot) and recvq_ (parties
 * with nowhere to get a value from). A waiter is a small record (Go's sudog) embedded in the
 * waiting request, or in a select case. cap_ is the number of slots a send may fill: ring_, less
 * the slots reservations hold (reserve.c).
 *
 * Invariants, kept by every function here:
 *   1. At least one of sendq_ and recvq_ is empty, except when the same select waits on both
 *      ends of one channel (a select never matches itself, see select.c), and when reservations
 *      hold every slot: then reservations (never senders) may wait beside receivers.
 *   2. recvq_ non-empty implies len_ == 0; sendq_ non-empty implies len_ == cap_. A value never
 *      waits in a queue while the buffer could take it, and a receiver never waits while the
 *      buffer holds one.
 *   3. A closed channel has an empty sendq_: close fails every waiting sender.
 *   4. A request is in exactly one of: idle (magic_ clear), waiting (linked in queues and maybe
 *      the deadline heap), queued (in the completion queue, status final). Only the loop moves it
 *      from queued back to idle, right before its callback.
 *
 * The operation that unblocks a waiter completes it: it copies the value, withdraws the waiter's
 * request from every queue, and queues its completion. The woken side never retries, and no
 * callback runs while a channel is half-updated: callbacks only run from the loop (ctx.c).
 *
 * The matching itself (uvchan__send_now, uvchan__recv_now, uvchan__wait, uvchan__wake) lives in
 * uvchan-internal.h, so that every entry point here, in select.c and in task.c inlines a copy
 * specialised for its operation; this file keeps the slow paths, close, cancel and teardown.
 */
#include "uvchan-internal.h"

#include <stdatomic.h>
#include <stdlib.h>

static _Atomic uint64_t uvchan__next_chan_id = 1;

/* The "buffer" of every buffered channel of zero-size elements: it holds only a count, but the
 * ring arithmetic (buf_ + i * 0) must not start from a null pointer, which C leaves undefined. */
static char uvchan__no_elems[1];

int uvchan_init(uvchan_ctx_t* ctx, uvchan_t* ch, size_t elem_size, size_t capacity) {
  int err;
  if (!uvchan__ctx_ok(ctx) || ch == NULL || (ctx->flags_ & UVCHAN__CTX_CLOSING))
    return UV_EINVAL;
  if (elem_size != 0 && capacity > SIZE_MAX / elem_size)
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  /* A live channel sits in its context's list: initialising it again would corrupt that list. */
  if (UVCHAN__MAGIC_IS(ch, UVCHAN__CHAN_MAGIC) || ch->magic_ == UVCHAN__XCHAN_MAGIC)
    return UV_EBUSY;
  memset(ch, 0, sizeof(*ch));
  if (elem_size != 0 && capacity != 0) {
    ch->buf_ = malloc(elem_size * capacity);
    if (ch->buf_ == NULL)
      return UV_ENOMEM;
  } else if (capacity != 0) {
    ch->buf_ = uvchan__no_elems;
  }
  ch->ctx_ = ctx;
  ch->elem_size_ = elem_size;
  ch->cap_ = capacity;
  ch->ring_ = capacity;
  ch->id_ = atomic_fetch_add_explicit(&uvchan__next_chan_id, 1, memory_order_relaxed);
  uvchan__list_init(&ch->sendq_);
  uvchan__list_init(&ch->recvq_);
  uvchan__list_push(&ctx->chans_, &ch->link_);
  ctx->nchans_++;
  ch->magic_ = UVCHAN__CHAN_MAGIC;
  return 0;
}

/* ---- waking and withdrawing ---- */

void uvchan__withdraw(uvchan_req_t* req) {
  uvchan_select_t* sel;
  unsigned i;

  if (req->type == UVCHAN_REQ_SELECT) {
    sel = (uvchan_select_t*)req;
    for (i = 0; i < sel->ncases_; i++)
      if (sel->cases_[i].w_.link.next != NULL)
        uvchan__list_remove(&sel->cases_[i].w_.link);
  } else if (req->w_.link.next != NULL) {
    uvchan__list_remove(&req->w_.link);
    if (req->type == UVCHAN_REQ_WG_WAIT) {
      req->ctx_->nwaiting_--;
      uvchan__wg_waiter_left((uvchan_wg_t*)req->w_.value);
    }
  }
  if (req->state_ & UVCHAN__REQ_DEADLINE)
    uvchan__deadline_remove(req);
}

int uvchan__abort(uvchan_req_t* req, int status, uvchan_trace_kind kind) {
  if (req->type == UVCHAN_REQ_AWAIT) {
    uvchan__await_abort(req, status); /* the operation outside uvchan decides when it ends */
    return 0;
  }
  if (UVCHAN__UNLIKELY(req->state_ & UVCHAN__REQ_SHWAIT))
    return uvchan__x_abort(req, status); /* another thread may be completing it right now */
  /* A select is traced by the operation that completes or closes it, not per case; a waiting
   * select's index is still -1, which is what its callback must see. */
  if (req->w_.chan != NULL && req->type != UVCHAN_REQ_SELECT)
    UVCHAN__TRACE(req->w_.chan, kind, req->w_.op, req, NULL, NULL);
  uvchan__withdraw(req);
  uvchan__complete(req, status);
  return 0;
}

void uvchan__wake_slow(struct uvchan__waiter_s* w, int status) {
  uvchan_req_t* req = w->req;
  if (req->type == UVCHAN_REQ_SELECT) {
    ((uvchan_select_t*)req)->index = (int)w->index;
    if (((uvchan_select_t*)req)->xsel_) {
      /* Claimed by our caller. Its other cases may sit in shared channels whose locks must not
       * be taken here: its owner withdraws them when it delivers the completion. */
      uvchan__list_remove(&w->link);
      uvchan__xsel_complete((uvchan_select_t*)req, status);
      return;
    }
  }
  uvchan__withdraw(req);
  uvchan__complete(req, status);
}

/* ---- callback API ---- */

int uvchan__req_begin(uvchan_req_t* req, uvchan_ctx_t* ctx, uvchan_req_type type,
                      void (*cb)(void)) {
  /* Reads a field of caller memory that may be uninitialised: the only way to recognise a
   * request that is still pending (the caller's UVCHAN__GATE told memcheck it is deliberate). */
  if (req->magic_ == UVCHAN__REQ_MAGIC)
    return UV_EBUSY;
  uvchan__req_prepare(req, ctx, type, cb, 0);
  return 0;
}

/* A callback start on an end of a shared channel (or on nothing valid: UV_EINVAL). */
static UVCHAN__NOINLINE int uvchan__start_shared(uvchan_req_t* req, uvchan_t* ch, void* value,
                                                 unsigned op, uint64_t timeout, int has_deadline,
                                                 void (*cb)(void)) {
  int status;
  if (req == NULL || cb == NULL || !uvchan__chan_shared(ch) ||
      (op == UVCHAN_OP_SEND && value == NULL && ch->elem_size_ != 0))
    return UV_EINVAL;
  if ((status = UVCHAN__GATE(ch->ctx_, &req->magic_)) != 0)
    return status;
  if (uvchan__req_begin(req, ch->ctx_, op == UVCHAN_OP_SEND ? UVCHAN_REQ_SEND : UVCHAN_REQ_RECV,
                        cb) != 0)
    return UV_EBUSY;
  status = uvchan__x_start(req, ch, value, op, timeout, has_deadline);
  if (status != UVCHAN__MUST_WAIT)
    uvchan__complete(req, status);
  return 0;
}

/* The body of the four callback start calls, inlined into each so `op` and `has_deadline` are
 * constants: the common match then costs no call into the engine. */
UVCHAN__INLINE int uvchan__start(uvchan_req_t* req, uvchan_t* ch, void* value, unsigned op,
                                 uint64_t timeout, int has_deadline, void (*cb)(void)) {
  int status;

  if (UVCHAN__UNLIKELY(req == NULL || cb == NULL || !uvchan__chan_ok(ch)))
    return uvchan__start_shared(req, ch, value, op, timeout, has_deadline, cb);
  if (UVCHAN__UNLIKELY(op == UVCHAN_OP_SEND && value == NULL && ch->elem_size_ != 0))
    return UV_EINVAL;
  if (UVCHAN__UNLIKELY((status = UVCHAN__GATE(ch->ctx_, &req->magic_)) != 0))
    return status;
  if (UVCHAN__UNLIKELY(uvchan__req_begin(
          req, ch->ctx_, op == UVCHAN_OP_SEND ? UVCHAN_REQ_SEND : UVCHAN_REQ_RECV, cb) != 0))
    return UV_EBUSY;
  status = op == UVCHAN_OP_SEND ? uvchan__send_now(ch, value, req)
                                : uvchan__recv_now(ch, value, req);
  if (status != UVCHAN__MUST_WAIT) {
    uvchan__complete(req, status);
    return 0;
  }
  uvchan__wait(ch, &req->w_, req, value, op, 0);
  if (has_deadline)
    uvchan__deadline_add(req, timeout);
  return 0;
}

int uvchan_send(uvchan_send_t* req, uvchan_t* ch, const void* value, uvchan_send_cb cb) {
  return uvchan__start((uvchan_req_t*)req, ch, (void*)value, UVCHAN_OP_SEND, 0, 0,
                       (void (*)(void))cb);
}

int uvchan_send_timeout(uvchan_send_t* req, uvchan_t* ch, const void* value, uint64_t timeout,
                        uvchan_send_cb cb) {
  return uvchan__start((uvchan_req_t*)req, ch, (void*)value, UVCHAN_OP_SEND, timeout, 1,
                       (void (*)(void))cb);
}

int uvchan_recv(uvchan_recv_t* req, uvchan_t* ch, void* value, uvchan_recv_cb cb) {
  return uvchan__start((uvchan_req_t*)req, ch, value, UVCHAN_OP_RECV, 0, 0, (void (*)(void))cb);
}

int uvchan_recv_timeout(uvchan_recv_t* req, uvchan_t* ch, void* value, uint64_t timeout,
                        uvchan_recv_cb cb) {
  return uvchan__start((uvchan_req_t*)req, ch, value, UVCHAN_OP_RECV, timeout, 1,
                       (void (*)(void))cb);
}

/* Try-operations on an end of a shared channel, from any thread. */
static UVCHAN__NOINLINE int uvchan__try_shared(uvchan_t* ch, void* value, unsigned op) {
  int status;
  if (!uvchan__chan_shared(ch) || (op == UVCHAN_OP_SEND && value == NULL && ch->elem_size_ != 0))
    return UV_EINVAL;
  status = uvchan__x_try(ch, value, op);
  return status != UVCHAN__MUST_WAIT ? status : UV_EAGAIN;
}

int uvchan_try_send(uvchan_t* ch, const void* value) {
  int status;
  if (UVCHAN__UNLIKELY(!uvchan__chan_ok(ch)))
    return uvchan__try_shared(ch, (void*)value, UVCHAN_OP_SEND);
  if (value == NULL && ch->elem_size_ != 0)
    return UV_EINVAL;
  if (UVCHAN__UNLIKELY(!UVCHAN__ON_THREAD(ch->ctx_)))
    return UV_EPERM;
  status = uvchan__send_now(ch, value, NULL);
  return status != UVCHAN__MUST_WAIT ? status : UV_EAGAIN;
}

int uvchan_try_recv(uvchan_t* ch, void* value) {
  int status;
  if (UVCHAN__UNLIKELY(!uvchan__chan_ok(ch)))
    return uvchan__try_shared(ch, value, UVCHAN_OP_RECV);
  if (UVCHAN__UNLIKELY(!UVCHAN__ON_THREAD(ch->ctx_)))
    return UV_EPERM;
  status = uvchan__recv_now(ch, value, NULL);
  return status != UVCHAN__MUST_WAIT ? status : UV_EAGAIN;
}

int uvchan_cancel(uvchan_req_t* req) {
  if (req == NULL || !UVCHAN__MAGIC_IS(req, UVCHAN__REQ_MAGIC))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(req->ctx_))
    return UV_EPERM;
  if (req->state_ & UVCHAN__REQ_QUEUED)
    return UV_EBUSY; /* already matched: the callback will report what really happened */
  return uvchan__abort(req, UV_ECANCELED, UVCHAN_TRACE_CANCEL);
}

uvchan_task_t* uvchan_req_task(const uvchan_req_t* req) {
  return req != NULL ? uvchan__req_task(req) : NULL;
}

/* ---- close and teardown ---- */

/* Completes every waiter of queue `q` with `status`; a receiver that gets UV_EOF gets the zero
 * value too. A select waiting on this channel leaves all its queues, possibly more entries of
 * this very queue: so pop from the head each time. */
static void uvchan__fail_queue(uvchan_t* ch, struct uvchan__link_s* q, int status) {
  struct uvchan__waiter_s* w;
  while ((w = uvchan__match_first(q)) != NULL) {
    if (status == UV_ECANCELED)
      UVCHAN__TRACE(ch, UVCHAN_TRACE_CANCEL, UVCHAN__OP(w), w->req, NULL, NULL);
    else if (status == UV_EOF && w->value != NULL)
      memset(w->value, 0, ch->elem_size_);
    uvchan__wake(w, status);
  }
}

int uvchan_close(uvchan_t* ch) {
  if (uvchan__chan_shared(ch))
    return uvchan__x_close(ch); /* from any thread */
  if (!uvchan__chan_ok(ch))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ch->ctx_))
    return UV_EPERM;
  if (ch->flags_ & UVCHAN__CHAN_CLOSED)
    return UV_EPIPE;
  ch->flags_ |= UVCHAN__CHAN_CLOSED;
  UVCHAN__TRACE(ch, UVCHAN_TRACE_CLOSE, 0, NULL, NULL, NULL);
  uvchan__fail_queue(ch, &ch->recvq_, UV_EOF);
  uvchan__fail_queue(ch, &ch->sendq_, UV_EPIPE);
  return 0;
}

int uvchan_destroy(uvchan_t* ch) {
  int err;
  if (uvchan__chan_shared(ch)) {
    if (!UVCHAN__ON_THREAD(ch->ctx_))
      return UV_EPERM;
    if ((err = uvchan__x_destroy(ch)) != 1)
      return err;
    /* it was the last end: now an ordinary channel, torn down below */
  } else if (!uvchan__chan_ok(ch)) {
    return UV_EINVAL;
  } else if (!UVCHAN__ON_THREAD(ch->ctx_)) {
    return UV_EPERM;
  }
  uvchan__fail_queue(ch, &ch->recvq_, UV_ECANCELED);
  uvchan__fail_queue(ch, &ch->sendq_, UV_ECANCELED);
  /* Values accepted by a send but never received go to the destructor, oldest first. */
  while (ch->len_ > 0) {
    if (ch->dtor_ != NULL)
      ch->dtor_(ch, ch->buf_ + ch->head_ * ch->elem_size_);
    if (++ch->head_ == ch->ring_)
      ch->head_ = 0;
    ch->len_--;
  }
  if (ch->buf_ != uvchan__no_elems)
    free(ch->buf_);
  ch->buf_ = NULL;
  uvchan__list_remove(&ch->link_);
  ch->ctx_->nchans_--;
  ch->magic_ = 0;
  return 0;
}

/* ---- overflow policies ---- */

void uvchan__overflow(uvchan_t* ch, const void* value, uvchan_req_t* req) {
  size_t i;
  ch->dropped_++;
  switch (ch->overflow_) {
    case UVCHAN_OVERFLOW_DROP_NEWEST: /* the value sent goes, the buffer stays */
      if (ch->dtor_ != NULL)
        ch->dtor_(ch, (void*)value);
      return;
    case UVCHAN_OVERFLOW_DROP_OLDEST: /* the oldest goes; the value sent joins at the back */
      if (ch->dtor_ != NULL)
        ch->dtor_(ch, ch->buf_ + ch->head_ * ch->elem_size_);
      uvchan__take(ch, NULL);
      uvchan__put(ch, value);
      break;
    default: /* UVCHAN_OVERFLOW_CONFLATE: the newest buffered value is replaced */
      i = ch->head_ + ch->len_ - 1;
      if (i >= ch->ring_)
        i -= ch->ring_;
      if (ch->dtor_ != NULL)
        ch->dtor_(ch, ch->buf_ + i * ch->elem_size_);
      uvchan__copy(ch->buf_ + i * ch->elem_size_, value, ch->elem_size_);
      break;
  }
  UVCHAN__TRACE(ch, UVCHAN_TRACE_PUT, UVCHAN_OP_SEND, req, NULL, value);
}

/* ---- settings and queries, on local channels and on ends of shared ones ---- */

/* What a query reads: a local channel's fields, or a copy of its shared core's, taken under the
 * core's lock. The queues are walked only for the query that asks for their length. */
enum { UVCHAN__SNAP_SENDQ = 1u << 0, UVCHAN__SNAP_RECVQ = 1u << 1 };
typedef struct {
  unsigned queues; /* UVCHAN__SNAP_* bits: the queues to count */
  size_t len;
  size_t nsend;
  size_t nrecv;
  uint64_t dropped;
  unsigned flags;
} uvchan__snap_t;

static size_t uvchan__count(const struct uvchan__link_s* q) {
  const struct uvchan__link_s* l;
  size_t n = 0;
  for (l = q->next; l != q; l = l->next)
    n++;
  return n;
}

static void uvchan__snap_of(uvchan_t* ch, void* arg) {
  uvchan__snap_t* s = (uvchan__snap_t*)arg;
  s->len = ch->len_;
  s->nsend = (s->queues & UVCHAN__SNAP_SENDQ) ? uvchan__count(&ch->sendq_) : 0;
  s->nrecv = (s->queues & UVCHAN__SNAP_RECVQ) ? uvchan__count(&ch->recvq_) : 0;
  s->dropped = ch->dropped_;
  s->flags = ch->flags_;
}

/* Fills `s` for a live channel, counting `queues`; returns 0 for a bad one. */
static int uvchan__snap(const uvchan_t* ch, uvchan__snap_t* s, unsigned queues) {
  s->queues = queues;
  if (uvchan__chan_shared(ch))
    uvchan__x_locked(ch, uvchan__snap_of, s);
  else if (uvchan__chan_ok(ch))
    uvchan__snap_of((uvchan_t*)ch, s);
  else
    return 0;
  return 1;
}

typedef struct {
  uvchan_overflow policy;
  int err;
} uvchan__policy_t;

static void uvchan__set_overflow(uvchan_t* ch, void* arg) {
  uvchan__policy_t* p = (uvchan__policy_t*)arg;
  if (ch->ring_ == 0 || ch->cap_ != ch->ring_) {
    p->err = UV_EINVAL;
  } else if (!uvchan__list_empty(&ch->sendq_)) {
    p->err = UV_EBUSY;
  } else {
    ch->overflow_ = p->policy;
    if (p->policy == UVCHAN_OVERFLOW_BLOCK)
      ch->flags_ &= ~UVCHAN__CHAN_OVERFLOW;
    else
      ch->flags_ |= UVCHAN__CHAN_OVERFLOW;
    p->err = 0;
  }
}

int uvchan_set_overflow(uvchan_t* ch, uvchan_overflow policy) {
  uvchan__policy_t p;
  if ((unsigned)policy > UVCHAN_OVERFLOW_CONFLATE)
    return UV_EINVAL;
  p.policy = policy;
  if (uvchan__chan_shared(ch)) {
    uvchan__x_locked(ch, uvchan__set_overflow, &p);
    return p.err;
  }
  if (!uvchan__chan_ok(ch))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ch->ctx_))
    return UV_EPERM;
  uvchan__set_overflow(ch, &p);
  return p.err;
}

uint64_t uvchan_dropped(const uvchan_t* ch) {
  uvchan__snap_t s;
  return uvchan__snap(ch, &s, 0) ? s.dropped : 0;
}

static void uvchan__set_dtor(uvchan_t* ch, void* arg) {
  ch->dtor_ = *(uvchan_elem_destroy_cb*)arg;
}

int uvchan_set_destructor(uvchan_t* ch, uvchan_elem_destroy_cb dtor) {
  if (uvchan__chan_shared(ch))
    uvchan__x_locked(ch, uvchan__set_dtor, &dtor); /* the core's: values live there */
  else if (!uvchan__chan_ok(ch))
    return UV_EINVAL;
  else if (!UVCHAN__ON_THREAD(ch->ctx_))
    return UV_EPERM; /* the loop's thread may be running it */
  else
    ch->dtor_ = dtor;
  return 0;
}

int uvchan_set_name(uvchan_t* ch, const char* name) {
  if (!uvchan__chan_live(ch))
    return UV_EINVAL;
  ch->name_ = name; /* an end's own */
  return 0;
}

const char* uvchan_name(const uvchan_t* ch) {
  return uvchan__chan_live(ch) ? ch->name_ : NULL;
}

size_t uvchan_len(const uvchan_t* ch) {
  uvchan__snap_t s;
  return uvchan__snap(ch, &s, 0) ? s.len : 0;
}

size_t uvchan_cap(const uvchan_t* ch) {
  return uvchan__chan_live(ch) ? ch->ring_ : 0;
}

size_t uvchan_elem_size(const uvchan_t* ch) {
  return uvchan__chan_live(ch) ? ch->elem_size_ : 0;
}

int uvchan_is_closed(const uvchan_t* ch) {
  uvchan__snap_t s;
  if (!uvchan__snap(ch, &s, 0))
    return UV_EINVAL;
  return (s.flags & UVCHAN__CHAN_CLOSED) != 0;
}

size_t uvchan_waiting_senders(const uvchan_t* ch) {
  uvchan__snap_t s;
  return uvchan__snap(ch, &s, UVCHAN__SNAP_SENDQ) ? s.nsend : 0;
}

size_t uvchan_waiting_receivers(const uvchan_t* ch) {
  uvchan__snap_t s;
  return uvchan__snap(ch, &s, UVCHAN__SNAP_RECVQ) ? s.nrecv : 0;
}
