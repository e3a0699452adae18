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

/* Whether an operation `op` on (the state of) `ch` could complete now. */
UVCHAN__INLINE int uvchan__case_ready(const uvchan_t* ch, unsigned op) {
  if (op == UVCHAN_OP_RECV) /* a waiting reservation in sendq_ holds no value: see reserve.c */
    return ch->len_ > 0 || (ch->flags_ & UVCHAN__CHAN_CLOSED) ||
           (!uvchan__list_empty(&ch->sendq_) &&
            (uvchan__first_waiter((struct uvchan__link_s*)&ch->sendq_)->op == UVCHAN_OP_SEND ||
             uvchan__first_sender((uvchan_t*)ch, 0) != NULL));
  if (op == UVCHAN_OP_SEND)
    return (ch->flags_ & (UVCHAN__CHAN_CLOSED | UVCHAN__CHAN_OVERFLOW)) ||
           !uvchan__list_empty(&ch->recvq_) || ch->len_ < ch->cap_;
  return (ch->flags_ & UVCHAN__CHAN_CLOSED) || ch->len_ < ch->cap_;
}

/* Checks the cases and finds their context (used by task.c too). Returns the number of cases
 * with a channel, or UV_EINVAL for a bad case or cases on channels of different contexts; sets
 * *xsel when a case is on a shared channel. */
int uvchan__select_check(uvchan_case_t* cases, unsigned n, uvchan_ctx_t** ctx, int* xsel) {
  const uvchan_case_t* c;
  unsigned i;
  int usable = 0;

  if ((cases == NULL && n != 0) || n > INT_MAX)
    return UV_EINVAL;
  for (i = 0; i < n; i++) {
    c = &cases[i];
    if (c->chan == NULL)
      continue;
    if (UVCHAN__UNLIKELY(!uvchan__chan_ok(c->chan))) {
      if (!uvchan__chan_shared(c->chan))
        return UV_EINVAL;
      *xsel = 1;
    }
    if (c->op != UVCHAN_OP_RECV) { /* receive cases, the common ones, need no more checks */
      if (c->op == UVCHAN_OP_SEND) {
        if (c->value == NULL && c->chan->elem_size_ != 0)
          return UV_EINVAL;
      } else if (c->op != UVCHAN_OP_RESERVE || c->value == NULL || !uvchan__reservable(c->chan)) {
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
 * ready case replaces the choice with probability 1/k). Returns its index, or -1 if none.
 * `xsel` (a constant at each call site) says whether some cases are on shared channels, whose
 * cores the caller locked: their state is the core's, and their wakes may cross threads. */
UVCHAN__INLINE int uvchan__select_poll(uvchan_ctx_t* ctx, uvchan_case_t* cases, unsigned n,
                                       uvchan_req_t* req, int* status, int xsel) {
  uvchan_case_t* c;
  uvchan_t* ch;
  int chosen = -1, shared = 0;
  uint32_t k;
  unsigned i;

again:
  k = 0;
  for (i = 0; i < n; i++) {
    if ((ch = cases[i].chan) == NULL)
      continue;
    if (xsel && (ch->flags_ & UVCHAN__CHAN_SHARED))
      ch = ch->core_;
    if (!uvchan__case_ready(ch, cases[i].op))
      continue;
    k++;
    if (k == 1 || uvchan__rand_below(ctx, k) == 0)
      chosen = (int)i;
  }
  if (chosen < 0)
    return -1;
  c = &cases[chosen];
  ch = c->chan;
  if (xsel && (ch->flags_ & UVCHAN__CHAN_SHARED)) {
    ch = ch->core_;
    shared = 1;
  }
  /* A ready case completes: never UVCHAN__MUST_WAIT. */
  if (c->op == UVCHAN_OP_RECV)
    *status = shared ? uvchan__recv_x(ch, c->value, req, 1, ctx) : uvchan__recv_now(ch, c->value, req);
  else if (c->op == UVCHAN_OP_SEND)
    *status = shared ? uvchan__send_x(ch, c->value, req, 1, ctx) : uvchan__send_now(ch, c->value, req);
  else
    *status = uvchan__reserve_now(ch, (uvchan_permit_t*)c->value);
  /* The case looked ready only because of waiters of selects another thread has just completed
   * (claimed): the match unlinked them, so polling again cannot find them twice. */
  if (UVCHAN__UNLIKELY(*status == UVCHAN__MUST_WAIT)) {
    chosen = -1;
    goto again;
  }
  return chosen;
}

static void uvchan__case_wait(uvchan_select_t* sel, unsigned i) {
  uvchan_case_t* c = &sel->cases_[i];
  if (UVCHAN__UNLIKELY(c->chan->flags_ & UVCHAN__CHAN_SHARED))
    uvchan__x_case_wait(sel, i);
  else
    uvchan__wait(c->chan, &c->w_, (uvchan_req_t*)sel, c->value,
                 c->op | (sel->xsel_ ? UVCHAN__OP_XSEL : 0), i);
}

/* Links the waiter of every case with a channel, in a uniformly random order (Fisher-Yates over
 * the usable cases). Large selects get their order array from the heap; should that fail, a
 * random rotation still breaks the bias towards the first case. */
static void uvchan__select_link(uvchan_select_t* sel, unsigned n) {
  uvchan_ctx_t* ctx = sel->ctx_;
  unsigned small[64];
  unsigned* order = small;
  unsigned i, j, k = 0;

  for (i = 0; i < n; i++)
    sel->cases_[i].w_.link.next = NULL;
  if (n > sizeof(small) / sizeof(small[0]) && (order = malloc(n * sizeof(*order))) == NULL) {
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
    order[k] = order[j];
    order[j] = i;
    k++;
  }
  for (i = 0; i < k; i++)
    uvchan__case_wait(sel, order[i]);
  if (order != small)
    free(order);
}

/* A select with cases on shared channels: polls and enqueues with every one of their cores
 * locked, so that no party can slip between the poll and the enqueue (Go's sellock). */
static UVCHAN__NOINLINE int uvchan__select_start_x(uvchan_select_t* sel, unsigned n,
                                                   uint64_t timeout, int has_deadline) {
  uvchan_req_t* req = (uvchan_req_t*)sel;
  uvchan_t* small[8];
  uvchan_t** cores;
  int status = 0, idx, d;

  d = uvchan__sel_lock(sel->cases_, n, &cores, small, 8);
  if (d < 0)
    return d;
  idx = uvchan__select_poll(sel->ctx_, sel->cases_, n, req, &status, 1);
  if (idx >= 0) {
    uvchan__sel_unlock(cores, d, small);
    sel->index = idx;
    sel->status = status;
    return 1;
  }
  sel->claim_ = 0;
  sel->xsel_ = 1; /* from here on, any thread that matches a case claims the select first */
  uvchan__select_link(sel, n);
  uvchan__xsel_waits(sel);
  if (has_deadline)
    uvchan__deadline_add(req, timeout);
  uvchan__sel_unlock(cores, d, small);
  return 0;
}

int uvchan__select_start(uvchan_select_t* sel, uvchan_case_t* cases, unsigned n,
                         uint64_t timeout, int has_deadline, int xsel) {
  uvchan_req_t* req = (uvchan_req_t*)sel;
  int status = 0;
  int idx;

  sel->cases_ = cases;
  sel->ncases_ = n;
  sel->index = -1;
  sel->xsel_ = 0;
  if (UVCHAN__UNLIKELY(xsel))
    return uvchan__select_start_x(sel, n, timeout, has_deadline);
  idx = uvchan__select_poll(sel->ctx_, cases, n, req, &status, 0);
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
  int usable, xsel = 0;

  if (sel == NULL || cb == NULL)
    return UV_EINVAL;
  usable = uvchan__select_check(cases, n, &ctx, &xsel);
  if (usable < 0)
    return usable;
  if (usable == 0)
    return UV_EINVAL; /* nothing could ever complete it, and there is no context to wait on */
  if ((usable = UVCHAN__GATE(ctx, &sel->magic_)) != 0)
    return usable;
  if (uvchan__req_begin((uvchan_req_t*)sel, ctx, UVCHAN_REQ_SELECT, (void (*)(void))cb) != 0)
    return UV_EBUSY;
  usable = uvchan__select_start(sel, cases, n, timeout, has_deadline, xsel);
  if (usable < 0) {
    sel->magic_ = 0; /* not started: no callback */
    return usable;
  }
  if (usable)
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
  int xsel = 0;
  int usable = uvchan__select_check(cases, n, &ctx, &xsel);
  uvchan_t* small[8];
  uvchan_t** cores;
  int st = 0, d;
  int idx;

  if (usable < 0)
    return usable;
  if (usable == 0)
    return UV_EAGAIN; /* only nil cases: Go runs the default */
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  if (xsel) {
    if ((d = uvchan__sel_lock(cases, n, &cores, small, 8)) < 0)
      return d;
    idx = uvchan__select_poll(ctx, cases, n, NULL, &st, 1);
    uvchan__sel_unlock(cores, d, small);
  } else {
    idx = uvchan__select_poll(ctx, cases, n, NULL, &st, 0);
  }
  if (idx < 0)
    return UV_EAGAIN;
  if (status != NULL)
    *status = st;
  return idx;
}
