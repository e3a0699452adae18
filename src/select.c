/* Select: one request waiting on several channels at once.
 *
 * As in Go's selectgo, a select first polls every case; if some are ready it completes one of
 * them, chosen uniformly at random, and never waits. Otherwise it links one waiter per case (the
 * waiter lives in the caller's case array) into each channel's queue. The first party that
 * matches any of those waiters completes the select through uvchan__wake(), which withdraws every
 * other waiter at once, so a losing case leaves no trace on its channel.
 *
 * A select never matches itself: matching only happens when an operation starts, and a select's
 * own waiters are linked only after its poll found nothing. A send case and a receive case on the
 * same unbuffered channel therefore wait for a third party, as in Go.
 *
 * A waiting select links its cases in a random order (Go's pollorder): two cases on one channel
 * then sit in that channel's queue in either order with equal odds, and the party that comes is
 * matched with either of them, not always with the first in the array.
 */
#include "uvchan-internal.h"

#include <limits.h>
#include <stdlib.h>

static int uvchan__case_ready(const uvchan_case_t* c) {
  const uvchan_t* ch = c->chan;
  if (c->op == UVCHAN_OP_RECV) /* a waiting reservation in sendq_ holds no value: see below */
    return ch->len_ > 0 || (ch->flags_ & UVCHAN__CHAN_CLOSED) ||
           (!uvchan__list_empty(&ch->sendq_) &&
            (uvchan__first_waiter((struct uvchan__link_s*)&ch->sendq_)->op == UVCHAN_OP_SEND ||
             uvchan__first_sender((uvchan_t*)ch) != NULL));
  if (c->op == UVCHAN_OP_SEND)
    return (ch->flags_ & (UVCHAN__CHAN_CLOSED | UVCHAN__CHAN_OVERFLOW)) ||
           !uvchan__list_empty(&ch->recvq_) || ch->len_ < ch->cap_;
  return (ch->flags_ & UVCHAN__CHAN_CLOSED) || ch->len_ < ch->cap_;
}

/* Checks the cases and finds their context (used by task.c too). Returns the number of cases
 * with a channel, or UV_EINVAL for a bad case or cases on channels of different contexts. */
int uvchan__select_check(uvchan_case_t* cases, unsigned n, uvchan_ctx_t** ctx) {
  const uvchan_case_t* c;
  unsigned i;
  int usable = 0;

  if ((cases == NULL && n != 0) || n > INT_MAX)
    return UV_EINVAL;
  for (i = 0; i < n; i++) {
    c = &cases[i];
    if (c->chan == NULL)
      continue;
    if (!uvchan__chan_ok(c->chan))
      return UV_EINVAL;
    if (c->op != UVCHAN_OP_RECV) { /* receive cases, the common ones, need no more checks */
      if (c->op == UVCHAN_OP_SEND) {
        if (c->value == NULL && c->chan->elem_size_ != 0)
          return UV_EINVAL;
      } else if (c->op != UVCHAN_OP_RESERVE || c->value == NULL || c->chan->ring_ == 0 ||
                 (c->chan->flags_ & UVCHAN__CHAN_OVERFLOW)) {
        return UV_EINVAL;
      }
    }
    if (*ctx == NULL)
      *ctx = c->chan->ctx_;
    else if (*ctx != c->chan->ctx_)
      return UV_EINVAL;
    usable++;
  }
  return usable;
}

/* Completes one ready case, picked uniformly among the ready ones (reservoir sampling: the k-th
 * ready case replaces the choice with probability 1/k). Returns its index, or -1 if none. */
static int uvchan__select_poll(uvchan_ctx_t* ctx, uvchan_case_t* cases, unsigned n,
                               uvchan_req_t* req, int* status) {
  uvchan_case_t* c;
  int chosen = -1;
  uint32_t k = 0;
  unsigned i;

  for (i = 0; i < n; i++) {
    if (cases[i].chan == NULL || !uvchan__case_ready(&cases[i]))
      continue;
    k++;
    if (k == 1 || uvchan__rand_below(ctx, k) == 0)
      chosen = (int)i;
  }
  if (chosen < 0)
    return -1;
  c = &cases[chosen];
  /* A ready case completes: never UVCHAN__MUST_WAIT. */
  if (c->op == UVCHAN_OP_RECV)
    *status = uvchan__recv_now(c->chan, c->value, req);
  else if (c->op == UVCHAN_OP_SEND)
    *status = uvchan__send_now(c->chan, c->value, req);
  else
    *status = uvchan__reserve_now(c->chan, (uvchan_permit_t*)c->value);
  return chosen;
}

static void uvchan__case_wait(uvchan_select_t* sel, unsigned i) {
  uvchan_case_t* c = &sel->cases_[i];
  uvchan__wait(c->chan, &c->w_, (uvchan_req_t*)sel, c->value, c->op, i);
}

/* Links the waiter of every case with a channel, in a uniformly random order (Fisher-Yates over
 * the usable cases). Large selects get their order array from the heap; should that fail, a
 * random rotation still breaks the bias towards the first case. */
static void uvchan__select_link(uvchan_select_t* sel, unsigned n) {
  uvchan_ctx_t* ctx = sel->ctx_;
  unsigned char small[64];
  unsigned* big = NULL;
  unsigned i, j, k = 0, t;

  for (i = 0; i < n; i++)
    sel->cases_[i].w_.link.next = NULL;
  if (n > sizeof(small))
    big = malloc(n * sizeof(*big));
  if (n > sizeof(small) && big == NULL) {
    j = uvchan__rand_below(ctx, n);
    for (i = 0; i < n; i++, j = j + 1 == n ? 0 : j + 1)
      if (sel->cases_[j].chan != NULL)
        uvchan__case_wait(sel, j);
    return;
  }
  for (i = 0; i < n; i++) {
    if (sel->cases_[i].chan == NULL)
      continue;
    j = k > 0 ? uvchan__rand_below(ctx, k + 1) : 0;
    if (big != NULL) {
      big[k] = big[j];
      big[j] = i;
    } else {
      small[k] = small[j];
      small[j] = (unsigned char)i;
    }
    k++;
  }
  for (i = 0; i < k; i++) {
    t = big != NULL ? big[i] : small[i];
    uvchan__case_wait(sel, t);
  }
  free(big);
}

int uvchan__select_start(uvchan_select_t* sel, uvchan_case_t* cases, unsigned n,
                         uint64_t timeout, int has_deadline) {
  uvchan_req_t* req = (uvchan_req_t*)sel;
  int status = 0;
  int idx;

  sel->cases_ = cases;
  sel->ncases_ = n;
  sel->index = -1;
  idx = uvchan__select_poll(sel->ctx_, cases, n, req, &status);
  if (idx >= 0) {
    sel->index = idx;
    sel->status = status;
    return 1;
  }
  uvchan__select_link(sel, n);
  req->state_ |= UVCHAN__REQ_WAITING; /* also with no usable case: Go's select {} */
  if (has_deadline)
    uvchan__deadline_add(req, timeout);
  return 0;
}

static int uvchan__select(uvchan_select_t* sel, uvchan_case_t* cases, unsigned n,
                          uint64_t timeout, int has_deadline, uvchan_select_cb cb) {
  uvchan_ctx_t* ctx = NULL;
  int usable;

  if (sel == NULL || cb == NULL)
    return UV_EINVAL;
  usable = uvchan__select_check(cases, n, &ctx);
  if (usable < 0)
    return usable;
  if (usable == 0)
    return UV_EINVAL; /* nothing could ever complete it, and there is no context to wait on */
  if ((usable = UVCHAN__GATE(ctx, &sel->magic_)) != 0)
    return usable;
  if (uvchan__req_begin((uvchan_req_t*)sel, ctx, UVCHAN_REQ_SELECT, (void (*)(void))cb) != 0)
    return UV_EBUSY;
  if (uvchan__select_start(sel, cases, n, timeout, has_deadline))
    uvchan__complete((uvchan_req_t*)sel, sel->status);
  return 0;
}

int uvchan_select(uvchan_select_t* sel, uvchan_case_t* cases, unsigned n, uvchan_select_cb cb) {
  return uvchan__select(sel, cases, n, 0, 0, cb);
}

int uvchan_select_timeout(uvchan_select_t* sel, uvchan_case_t* cases, unsigned n,
                          uint64_t timeout, uvchan_select_cb cb) {
  return uvchan__select(sel, cases, n, timeout, 1, cb);
}

int uvchan_try_select(uvchan_case_t* cases, unsigned n, int* status) {
  uvchan_ctx_t* ctx = NULL;
  int usable = uvchan__select_check(cases, n, &ctx);
  int st = 0;
  int idx;

  if (usable < 0)
    return usable;
  if (usable == 0)
    return UV_EAGAIN; /* only nil cases: Go runs the default */
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  idx = uvchan__select_poll(ctx, cases, n, NULL, &st);
  if (idx < 0)
    return UV_EAGAIN;
  if (status != NULL)
    *status = st;
  return idx;
}
