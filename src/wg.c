/* Wait groups: Go's sync.WaitGroup, the "boss" that waits for N workers. Waiters are ordinary
 * requests (their embedded waiter linked in the group's list), so they complete, cancel and show
 * in the deadlock report like any other request.
 *
 * Lifetime. A wait group needs no destroy, as in Go, so it may outlive its context: it keeps its
 * context's generation, and the registry of live contexts (ctx.c) tells whether that context
 * closed without the context being read. A wait group that has waiters is linked in its context's
 * list, for the deadlock report and the shutdown; it cannot go away then, since its waiters
 * refer to it. */
#include "uvchan-internal.h"

#include <limits.h>

static int uvchan__wg_ok(const uvchan_wg_t* wg) {
  return wg != NULL && wg->magic_ == UVCHAN__WG_MAGIC && uvchan__ctx_alive(wg->slot_, wg->gen_);
}

int uvchan_wg_init(uvchan_ctx_t* ctx, uvchan_wg_t* wg) {
  int err;
  if (!uvchan__ctx_ok(ctx) || wg == NULL || (ctx->flags_ & UVCHAN__CTX_CLOSING))
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  /* Re-initialising a wait group that is done (count 0, no waiter) is harmless, as reusing a Go
   * WaitGroup is; one in use would lose its count or strand its waiters. */
  if (UVCHAN__MAGIC_IS(wg, UVCHAN__WG_MAGIC) && uvchan__ctx_alive(wg->slot_, wg->gen_) &&
      (wg->count_ != 0 || !uvchan__list_empty(&wg->waiters_)))
    return UV_EBUSY;
  wg->ctx_ = ctx;
  wg->count_ = 0;
  wg->slot_ = ctx->slot_;
  wg->gen_ = ctx->gen_;
  uvchan__list_init(&wg->waiters_);
  wg->link_.next = NULL;
  wg->magic_ = UVCHAN__WG_MAGIC;
  return 0;
}

void uvchan__wg_waiter_left(uvchan_wg_t* wg) {
  if (uvchan__list_empty(&wg->waiters_) && wg->link_.next != NULL)
    uvchan__list_remove(&wg->link_);
}

int uvchan_wg_destroy(uvchan_wg_t* wg) {
  if (!uvchan__wg_ok(wg))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(wg->ctx_))
    return UV_EPERM;
  uvchan__cancel_queue(&wg->waiters_);
  wg->magic_ = 0;
  return 0;
}

int uvchan_wg_add(uvchan_wg_t* wg, long delta) {
  if (!uvchan__wg_ok(wg))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(wg->ctx_))
    return UV_EPERM;
  /* count_ >= 0 always, so -count_ cannot overflow; -delta could (LONG_MIN). */
  if (delta < 0 ? delta < -wg->count_ : wg->count_ > LONG_MAX - delta)
    return UV_EINVAL;
  wg->count_ += delta;
  if (wg->count_ == 0) {
    while (!uvchan__list_empty(&wg->waiters_))
      uvchan__wake(uvchan__first_waiter(&wg->waiters_), 0);
  }
  return 0;
}

int uvchan_wg_done(uvchan_wg_t* wg) {
  return uvchan_wg_add(wg, -1);
}

long uvchan_wg_count(const uvchan_wg_t* wg) {
  return uvchan__wg_ok(wg) ? wg->count_ : UV_EINVAL;
}

/* Starts a wait on `wg` for `req` (prepared by the caller). Returns 1 if the count is 0 already. */
int uvchan__wg_wait_start(uvchan_req_t* req, uvchan_wg_t* wg) {
  if (wg->count_ == 0) {
    req->status = 0;
    return 1;
  }
  req->w_.req = req;
  req->w_.chan = NULL;
  req->w_.value = wg; /* so that the waiter's withdrawal can unlink an emptied wait group */
  req->w_.op = 0;
  req->w_.index = 0;
  if (uvchan__list_empty(&wg->waiters_))
    uvchan__list_push(&wg->ctx_->wgs_, &wg->link_);
  uvchan__list_push(&wg->waiters_, &req->w_.link);
  req->state_ |= UVCHAN__REQ_WAITING;
  wg->ctx_->nwaiting_++;
  return 0;
}

int uvchan_wg_wait(uvchan_req_t* req, uvchan_wg_t* wg, uvchan_req_cb cb) {
  int err;
  if (req == NULL || cb == NULL || !uvchan__wg_ok(wg))
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(wg->ctx_, &req->magic_)) != 0)
    return err;
  if (uvchan__req_begin(req, wg->ctx_, UVCHAN_REQ_WG_WAIT, (void (*)(void))cb) != 0)
    return UV_EBUSY;
  if (uvchan__wg_wait_start(req, wg))
    uvchan__complete(req, 0);
  return 0;
}
