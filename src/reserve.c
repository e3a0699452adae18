/* Two-phase send: reserve a buffer slot, then commit a value into it or release it (tokio's
 * reserve/Permit).
 *
 * A reservation holds capacity, not a place in the ring: the channel's cap_ is the number of
 * slots a send may fill now, the ring's size (ring_) less the slots reserved. So every ordinary
 * send and receive keeps testing len_ < cap_ and never looks at reservations, and invariant 2 of
 * chan.c reads "sendq_ non-empty implies len_ == cap_" with the reduced cap_.
 *
 * A reservation that must wait sits in sendq_ (op UVCHAN_OP_RESERVE, its waiter's value the
 * permit to fill), in FIFO order with waiting senders: the slot a receive frees goes to whichever
 * came first (uvchan__grant). When reservations hold every slot, a receive finds len_ == 0 and
 * may find reservations at the head of sendq_: they have no value, so it takes the first sender
 * behind them (uvchan__first_sender), or waits. Both queues can then be non-empty at once; the
 * commit or release that frees a slot rebalances them (uvchan__rebalance). */
#include "uvchan-internal.h"

static void uvchan__permit_fill(uvchan_permit_t* permit, uvchan_t* ch) {
  permit->chan_ = ch;
  permit->chan_id_ = ch->id_;
  permit->magic_ = UVCHAN__PERMIT_MAGIC;
}

/* Takes a free slot for `permit`; the caller checked len_ < cap_. */
static void uvchan__take_slot(uvchan_t* ch, uvchan_permit_t* permit) {
  ch->cap_--;
  uvchan__permit_fill(permit, ch);
}

void uvchan__grant(uvchan_t* ch, struct uvchan__waiter_s* w) {
  uvchan__take_slot(ch, (uvchan_permit_t*)w->value);
}

struct uvchan__waiter_s* uvchan__first_sender(uvchan_t* ch, int claim) {
  struct uvchan__link_s* l = ch->sendq_.next;
  struct uvchan__link_s* next;
  for (; l != &ch->sendq_; l = next) {
    next = l->next;
    if (UVCHAN__OP((struct uvchan__waiter_s*)l) != UVCHAN_OP_SEND)
      continue;
    if (!claim || uvchan__claim_waiter((struct uvchan__waiter_s*)l))
      return (struct uvchan__waiter_s*)l;
  }
  return NULL;
}

/* A slot came free (a commit or a release): hand waiting senders to waiting receivers, then fill
 * free slots from the head of sendq_ (a sender's value, or a reservation), so that the
 * invariants hold again. */
static void uvchan__rebalance(uvchan_t* ch) {
  struct uvchan__waiter_s* w;
  struct uvchan__waiter_s* r;

  while (!uvchan__list_empty(&ch->sendq_)) {
    w = uvchan__first_waiter(&ch->sendq_);
    if (UVCHAN__OP(w) == UVCHAN_OP_SEND && !uvchan__list_empty(&ch->recvq_)) {
      if (!uvchan__claim_waiter(w))
        continue;
      if ((r = uvchan__match_first(&ch->recvq_)) == NULL) {
        /* the receivers were all claimed elsewhere: put the value instead, below */
        if (ch->len_ < ch->cap_) {
          uvchan__put(ch, w->value);
          uvchan__wake(w, 0);
          continue;
        }
        /* No receiver and no room: the sender waits on. A plain sender's claim took nothing,
         * so it stays queued. A select's claim cannot be undone (threads that lost it have
         * withdrawn its other cases), and it can no more complete here: a rare race between a
         * commit on a full channel and other threads completing every waiting receiver's
         * select at that moment, left as it was (the select is dropped from the queue). */
        if (!uvchan__is_xsel(w))
          break;
        uvchan__list_remove(&w->link);
        continue;
      }
      if (r->value != NULL)
        uvchan__copy(r->value, w->value, ch->elem_size_);
      UVCHAN__TRACE(ch, UVCHAN_TRACE_HANDSHAKE, UVCHAN_OP_SEND, w->req, r->req, w->value);
      uvchan__wake(r, 0);
      uvchan__wake(w, 0);
    } else if (ch->len_ < ch->cap_) {
      if (!uvchan__claim_waiter(w))
        continue;
      if (UVCHAN__OP(w) == UVCHAN_OP_RESERVE) {
        uvchan__grant(ch, w);
      } else {
        uvchan__put(ch, w->value);
        UVCHAN__TRACE(ch, UVCHAN_TRACE_PUT, UVCHAN_OP_SEND, w->req, NULL, w->value);
      }
      uvchan__wake(w, 0);
    } else {
      break;
    }
  }
}

int uvchan__reserve_now(uvchan_t* ch, uvchan_permit_t* permit) {
  if (ch->flags_ & UVCHAN__CHAN_CLOSED)
    return UV_EPIPE;
  if (ch->len_ < ch->cap_) {
    uvchan__take_slot(ch, permit);
    return 0;
  }
  return UVCHAN__MUST_WAIT;
}

static int uvchan__reserve(uvchan_reserve_t* req, uvchan_t* ch, uint64_t timeout,
                           int has_deadline, uvchan_reserve_cb cb) {
  int status;
  if (req == NULL || cb == NULL || !uvchan__chan_ok(ch) || !uvchan__reservable(ch))
    return UV_EINVAL;
  if ((status = UVCHAN__GATE(ch->ctx_, &req->magic_)) != 0)
    return status;
  if (uvchan__req_begin((uvchan_req_t*)req, ch->ctx_, UVCHAN_REQ_RESERVE, (void (*)(void))cb) != 0)
    return UV_EBUSY;
  req->permit.magic_ = 0;
  status = uvchan__reserve_now(ch, &req->permit);
  if (status != UVCHAN__MUST_WAIT) {
    uvchan__complete((uvchan_req_t*)req, status);
    return 0;
  }
  uvchan__wait(ch, &req->w_, (uvchan_req_t*)req, &req->permit, UVCHAN_OP_RESERVE, 0);
  if (has_deadline)
    uvchan__deadline_add((uvchan_req_t*)req, timeout);
  return 0;
}

int uvchan_reserve(uvchan_reserve_t* req, uvchan_t* ch, uvchan_reserve_cb cb) {
  return uvchan__reserve(req, ch, 0, 0, cb);
}

int uvchan_reserve_timeout(uvchan_reserve_t* req, uvchan_t* ch, uint64_t timeout,
                           uvchan_reserve_cb cb) {
  return uvchan__reserve(req, ch, timeout, 1, cb);
}

int uvchan_try_reserve(uvchan_t* ch, uvchan_permit_t* permit) {
  int status;
  if (permit == NULL || !uvchan__chan_ok(ch) || !uvchan__reservable(ch))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ch->ctx_))
    return UV_EPERM;
  status = uvchan__reserve_now(ch, permit);
  return status != UVCHAN__MUST_WAIT ? status : UV_EAGAIN;
}

/* The channel of a held permit, or NULL: a permit whose channel was destroyed (or re-created)
 * holds nothing any more. */
static uvchan_t* uvchan__permit_chan(const uvchan_permit_t* permit) {
  /* a permit never filled may be garbage: memcheck is told that this read is deliberate */
  if (permit == NULL || !UVCHAN__MAGIC_IS(permit, UVCHAN__PERMIT_MAGIC) ||
      !uvchan__chan_ok(permit->chan_) ||
      permit->chan_->id_ != permit->chan_id_)
    return NULL;
  return permit->chan_;
}

int uvchan_permit_held(const uvchan_permit_t* permit) {
  return uvchan__permit_chan(permit) != NULL;
}

int uvchan_commit(uvchan_permit_t* permit, const void* value) {
  uvchan_t* ch = uvchan__permit_chan(permit);
  int status;
  if (ch == NULL || (value == NULL && ch->elem_size_ != 0))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ch->ctx_))
    return UV_EPERM;
  permit->magic_ = 0;
  ch->cap_++; /* the slot is the value's now, or free again if the channel closed */
  status = uvchan__send_now(ch, value, NULL);
  uvchan__rebalance(ch);
  return status;
}

int uvchan_release(uvchan_permit_t* permit) {
  uvchan_t* ch = uvchan__permit_chan(permit);
  if (ch == NULL)
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(ch->ctx_))
    return UV_EPERM;
  permit->magic_ = 0;
  ch->cap_++;
  uvchan__rebalance(ch);
  return 0;
}
