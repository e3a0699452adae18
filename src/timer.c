/* Timer channels: a channel fed by a uv_timer_t, like Go's time.After/NewTimer and time.Ticker.
 * The channel holds one element, so a ticker whose receiver lags drops ticks instead of queueing
 * them (try-send fails with UV_EAGAIN and the tick is gone). An "after" timer sends once and
 * never closes its channel: a closed channel would make a select case on it ready forever, and a
 * task's select loop would spin.
 *
 * A timer is a resource of its context, so that a graceful shutdown closes it. */
#include "uvchan-internal.h"

enum { UVCHAN__TIMER_ONESHOT = 1u << 0, UVCHAN__TIMER_CLOSING = 1u << 1 };

static int uvchan__timer_ok(const uvchan_timer_t* t) {
  return t != NULL && t->magic_ == UVCHAN__TIMER_MAGIC && !(t->flags_ & UVCHAN__TIMER_CLOSING);
}

static void uvchan__on_tick(uv_timer_t* handle) {
  uvchan_timer_t* t = UVCHAN__CONTAINER_OF(handle, uvchan_timer_t, timer_);
  uint64_t now = uv_now(handle->loop);
  (void)uvchan_try_send(&t->chan, &now); /* UV_EAGAIN: the receiver lags, drop the tick */
}

static void uvchan__timer_shutdown(struct uvchan__res_s* res) {
  (void)uvchan_timer_close(UVCHAN__CONTAINER_OF(res, uvchan_timer_t, res_), NULL);
}

static int uvchan__timer_start(uvchan_ctx_t* ctx, uvchan_timer_t* t, uint64_t timeout,
                               uint64_t repeat) {
  int err;
  if (!uvchan__ctx_ok(ctx) || t == NULL)
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  /* A live timer (running, or closing until its close callback) must not be initialised again:
   * its libuv handle would be re-initialised while the loop holds it. */
  if (UVCHAN__MAGIC_IS(t, UVCHAN__TIMER_MAGIC))
    return UV_EBUSY;
  memset(&t->chan, 0, sizeof(t->chan));
  err = uvchan_init(ctx, &t->chan, sizeof(uint64_t), 1);
  if (err != 0)
    return err;
  err = uv_timer_init(ctx->loop, &t->timer_);
  if (err != 0) {
    uvchan_destroy(&t->chan);
    return err;
  }
  t->timer_.data = (void*)&uvchan__handle_tag;
  t->close_cb_ = NULL;
  t->period_ = repeat;
  t->flags_ = repeat == 0 ? UVCHAN__TIMER_ONESHOT : 0;
  t->magic_ = UVCHAN__TIMER_MAGIC;
  uvchan__res_add(ctx, &t->res_, uvchan__timer_shutdown);
  uv_timer_start(&t->timer_, uvchan__on_tick, timeout, repeat);
  return 0;
}

int uvchan_timer_after(uvchan_ctx_t* ctx, uvchan_timer_t* timer, uint64_t timeout) {
  return uvchan__timer_start(ctx, timer, timeout, 0);
}

int uvchan_timer_ticker(uvchan_ctx_t* ctx, uvchan_timer_t* timer, uint64_t period) {
  if (period == 0)
    return UV_EINVAL;
  return uvchan__timer_start(ctx, timer, period, period);
}

int uvchan_timer_reset(uvchan_timer_t* timer, uint64_t timeout) {
  if (!uvchan__timer_ok(timer) || (!(timer->flags_ & UVCHAN__TIMER_ONESHOT) && timeout == 0))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(timer->chan.ctx_))
    return UV_EPERM;
  uv_timer_stop(&timer->timer_);
  (void)uvchan_try_recv(&timer->chan, NULL); /* no stale tick after a reset (Go 1.23) */
  if (!(timer->flags_ & UVCHAN__TIMER_ONESHOT))
    timer->period_ = timeout;
  uv_timer_start(&timer->timer_, uvchan__on_tick, timeout, timer->period_);
  return 0;
}

int uvchan_timer_stop(uvchan_timer_t* timer) {
  if (!uvchan__timer_ok(timer))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(timer->chan.ctx_))
    return UV_EPERM;
  uv_timer_stop(&timer->timer_);
  return 0;
}

static void uvchan__on_timer_closed(uv_handle_t* handle) {
  uvchan_timer_t* t = UVCHAN__CONTAINER_OF(handle, uvchan_timer_t, timer_);
  uvchan_timer_close_cb cb = t->close_cb_;
  uvchan_ctx_t* ctx = t->chan.ctx_; /* the destroyed channel still names its context */
  t->magic_ = 0;
  if (cb != NULL)
    cb(t); /* may free the struct */
  uvchan__ctx_closing_end(ctx);
}

int uvchan_timer_close(uvchan_timer_t* timer, uvchan_timer_close_cb cb) {
  if (!uvchan__timer_ok(timer))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(timer->chan.ctx_))
    return UV_EPERM;
  timer->flags_ |= UVCHAN__TIMER_CLOSING;
  timer->close_cb_ = cb;
  uv_timer_stop(&timer->timer_);
  uvchan__res_remove(timer->chan.ctx_, &timer->res_);
  uvchan__ctx_closing_begin(timer->chan.ctx_);
  uvchan_destroy(&timer->chan);
  uv_close((uv_handle_t*)&timer->timer_, uvchan__on_timer_closed);
  return 0;
}
