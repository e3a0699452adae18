/* Await: a task blocking on an operation outside uvchan (a libuv request, an application's own
 * event), completed by that operation's callback through uvchan_await_done().
 *
 * The wait is the task's own request, of type UVCHAN_REQ_AWAIT, waiting in no queue; its waiter's
 * `value` points at the uvchan_await_t. It completes like any request (the loop resumes the task),
 * and a deadline, a cancel or a shutdown reaches it through uvchan__abort(), which hands it to
 * uvchan__await_abort() below: there is no second wait mechanism.
 *
 * An await is in one state at a time:
 *   ARMED      initialised, the task has not waited yet (the operation may finish first: DONE);
 *   WAITING    the task is parked on it;
 *   DONE       uvchan_await_done() came before the task waited; the result is kept;
 *   ABANDONED  a deadline or cancel ended the task's wait of an await with a release callback:
 *              the next uvchan_await_done() releases it instead.
 * The operation may still be running after the task's wait ended only in ABANDONED: without a
 * release callback the task keeps waiting for it, so that nothing the operation uses is freed
 * while libuv still holds it. */
#include "uvchan-internal.h"

#define UVCHAN__AWAIT_MAGIC 0x75617774u /* "uawt" */

enum { UVCHAN__AW_ARMED = 1, UVCHAN__AW_WAITING, UVCHAN__AW_DONE, UVCHAN__AW_ABANDONED };

int uvchan_await_init(uvchan_await_t* aw, uvchan_await_cb cancel, uvchan_await_cb release) {
  if (aw == NULL)
    return UV_EINVAL;
  aw->result = 0;
  aw->task_ = NULL;
  aw->cancel_ = cancel;
  aw->release_ = release;
  aw->aborted_ = 0;
  aw->state_ = UVCHAN__AW_ARMED;
  aw->magic_ = UVCHAN__AWAIT_MAGIC;
  return 0;
}

/* The status the task's wait ends with once the operation reported `result`: the real result,
 * unless the operation was cancelled because a deadline or cancel came first, whose code then
 * says why. */
static ssize_t uvchan__await_outcome(const uvchan_await_t* aw) {
  if (aw->aborted_ != 0 && aw->result == UV_ECANCELED)
    return aw->aborted_;
  return aw->result;
}

void uvchan_await_done(uvchan_await_t* aw, ssize_t result) {
  uvchan_req_t* req;

  if (aw == NULL || aw->magic_ != UVCHAN__AWAIT_MAGIC)
    return;
  if (aw->state_ == UVCHAN__AW_ABANDONED) {
    aw->magic_ = 0;
    aw->result = result;
    if (aw->release_ != NULL)
      aw->release_(aw); /* may free `aw` */
    return;
  }
  aw->result = result;
  if (aw->state_ != UVCHAN__AW_WAITING) {
    aw->state_ = UVCHAN__AW_DONE; /* the task has not waited yet */
    return;
  }
  req = uvchan__task_own_req(aw->task_);
  if (req->state_ & UVCHAN__REQ_DEADLINE)
    uvchan__deadline_remove(req);
  aw->state_ = UVCHAN__AW_DONE;
  uvchan__complete(req, 0); /* the task reads the outcome from `aw` */
}

void uvchan__await_abort(uvchan_req_t* req, int status) {
  uvchan_await_t* aw = (uvchan_await_t*)req->w_.value;
  uvchan_await_cb cancel = aw->cancel_;

  if (req->state_ & UVCHAN__REQ_DEADLINE)
    uvchan__deadline_remove(req);
  if (aw->aborted_ != 0)
    return; /* cancelled once already; the operation's callback is on its way */
  aw->aborted_ = status;
  if (aw->release_ != NULL) {
    /* The task leaves now; the operation ends on its own and is released then. */
    aw->state_ = UVCHAN__AW_ABANDONED;
    aw->task_ = NULL;
    uvchan__complete(req, status);
  }
  /* Last: `cancel` may report the result at once, which completes (or releases) the await. */
  if (cancel != NULL)
    cancel(aw);
}

ssize_t uvchan__task_await_ex(uvchan_await_t* aw, uint64_t timeout, int has_deadline,
                              int* abandoned) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_req_t* req;
  int status;

  *abandoned = 0;
  if (t == NULL || aw == NULL || aw->magic_ != UVCHAN__AWAIT_MAGIC ||
      (aw->state_ != UVCHAN__AW_ARMED && aw->state_ != UVCHAN__AW_DONE))
    return UV_EINVAL;
  if (aw->state_ == UVCHAN__AW_DONE) {
    aw->magic_ = 0; /* finished before the task waited: nothing to park for */
    return aw->result;
  }
  req = uvchan__task_own_req(t);
  uvchan__req_prepare(req, req->ctx_, UVCHAN_REQ_AWAIT, NULL, UVCHAN__REQ_TASK);
  req->w_.value = aw;
  req->state_ |= UVCHAN__REQ_WAITING;
  aw->task_ = t;
  aw->state_ = UVCHAN__AW_WAITING;
  if (uvchan_task_cancelled())
    uvchan__await_abort(req, UV_ECANCELED); /* the operation is in flight: end it as a cancel */
  else if (has_deadline)
    uvchan__deadline_add(req, timeout);
  status = uvchan__task_block(t);
  if (status != 0) {
    *abandoned = 1;
    return status; /* abandoned: UV_ETIMEDOUT or UV_ECANCELED; `aw` belongs to the operation */
  }
  aw->magic_ = 0;
  return uvchan__await_outcome(aw);
}

int uvchan_await_abandoned(const uvchan_await_t* aw) {
  return aw != NULL && aw->magic_ == UVCHAN__AWAIT_MAGIC && aw->state_ == UVCHAN__AW_ABANDONED;
}

ssize_t uvchan_task_await(uvchan_await_t* aw) {
  int abandoned;
  return uvchan__task_await_ex(aw, 0, 0, &abandoned);
}

ssize_t uvchan_task_await_timeout(uvchan_await_t* aw, uint64_t timeout) {
  int abandoned;
  return uvchan__task_await_ex(aw, timeout, 1, &abandoned);
}
