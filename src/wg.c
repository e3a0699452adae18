/* Wait groups: Go's sync.WaitGroup, the "boss" that waits for N workers. Waiters are ordinary
 * requests (their embedded waiter linked in the group's list), so they complete, cancel and show
 * in the deadlock report like any other request. */
#include "uvchan-internal.h"

#include <limits.h>

static int uvchan__wg_ok(const uvchan_wg_t* wg) {
  return wg != NULL && wg->magic_ == UVCHAN__WG_MAGIC && uvchan__ctx_ok(wg->ctx_);
}

int uvchan_wg_init(uvchan_ctx_t* ctx, uvchan_wg_t* wg) {
  if (!uvchan__ctx_ok(ctx) || wg == NULL)
    return UV_EINVAL;
  wg->ctx_ = ctx;
  wg->count_ = 0;
  uvchan__list_init(&wg->waiters_);
  wg->magic_ = UVCHAN__WG_MAGIC;
  return 0;
}

int uvchan_wg_add(uvchan_wg_t* wg, long delta) {
  struct uvchan__waiter_s* w;
  if (!uvchan__wg_ok(wg))
    return UV_EINVAL;
  if (delta < 0 ? wg->count_ < -delta : wg->count_ > LONG_MAX - delta)
    return UV_EINVAL;
  wg->count_ += delta;
  if (wg->count_ == 0) {
    while (!uvchan__list_empty(&wg->waiters_)) {
      w = uvchan__first_waiter(&wg->waiters_);
      uvchan__wake(w, 0);
    }
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
  req->w_.value = NULL;
  req->w_.op = 0;
  req->w_.index = 0;
  uvchan__list_push(&wg->waiters_, &req->w_.link);
  req->state_ |= UVCHAN__REQ_WAITING;
  wg->ctx_->nwaiting_++;
  return 0;
}

int uvchan_wg_wait(uvchan_req_t* req, uvchan_wg_t* wg, uvchan_req_cb cb) {
  if (req == NULL || cb == NULL || !uvchan__wg_ok(wg))
    return UV_EINVAL;
  if (uvchan__req_begin(req, wg->ctx_, UVCHAN_REQ_WG_WAIT, (void (*)(void))cb) != 0)
    return UV_EBUSY;
  if (uvchan__wg_wait_start(req, wg))
    uvchan__complete(req, 0);
  return 0;
}
