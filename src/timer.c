/* Timer channels: a channel fed by a uv_timer_t, like Go's time.After and time.Ticker. The
 * channel holds one element, so a ticker whose receiver lags drops ticks instead of queueing
 * them (try-send fails with UV_EAGAIN and the tick is gone). */
#include "uvchan-internal.h"

enum { UVCHAN__TIMER_ONESHOT = 1u << 0, UVCHAN__TIMER_CLOSING = 1u << 1 };

static int uvchan__timer_ok(const uvchan_timer_t* t) {
  return t != NULL && t->magic_ == UVCHAN__TIMER_MAGIC && !(t->flags_ & UVCHAN__TIMER_CLOSING);
}

static void uvchan__on_tick(uv_timer_t* handle) {
  uvchan_timer_t* t = (uvchan_timer_t*)handle->data;
  uint64_t now = uv_now(handle->loop);
  (void)uvchan_try_send(&t->chan, &now); /* UV_EAGAIN: the receiver lags, drop the tick */
  if (t->flags_ & UVCHAN__TIMER_ONESHOT)
    (void)uvchan_close(&t->chan);
}

static int uvchan__timer_start(uvchan_ctx_t* ctx, uvchan_timer_t* t, uint64_t timeout,
                               uint64_t repeat) {
  int err;
  if (!uvchan__ctx_ok(ctx) || t == NULL)
    return UV_EINVAL;
  err = uvchan_init(ctx, &t->chan, sizeof(uint64_t), 1);
  if (err != 0)
    return err;
  err = uv_timer_init(ctx->loop, &t->timer_);
  if (err != 0) {
    uvchan_destroy(&t->chan);
    return err;
  }
  t->timer_.data = t;
  t->close_cb_ = NULL;
  t->flags_ = repeat == 0 ? UVCHAN__TIMER_ONESHOT : 0;
  t->magic_ = UVCHAN__TIMER_MAGIC;
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

int uvchan_timer_stop(uvchan_timer_t* timer) {
  if (!uvchan__timer_ok(timer))
    return UV_EINVAL;
  uv_timer_stop(&timer->timer_);
  return 0;
}

static void uvchan__on_timer_closed(uv_handle_t* handle) {
  uvchan_timer_t* t = (uvchan_timer_t*)handle->data;
  t->magic_ = 0;
  if (t->close_cb_ != NULL)
    t->close_cb_(t);
}

int uvchan_timer_close(uvchan_timer_t* timer, uvchan_timer_close_cb cb) {
  if (!uvchan__timer_ok(timer))
    return UV_EINVAL;
  timer->flags_ |= UVCHAN__TIMER_CLOSING;
  timer->close_cb_ = cb;
  uv_timer_stop(&timer->timer_);
  uvchan_destroy(&timer->chan);
  uv_close((uv_handle_t*)&timer->timer_, uvchan__on_timer_closed);
  return 0;
}
