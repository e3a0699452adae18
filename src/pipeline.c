/* Pipelines: stages, merge, broadcast and the pipeline group, built only on channel requests
 * and the context's completion queue.
 *
 * Every object is a small state machine driven by the callbacks of its own requests (one
 * intake request and one send request at a time) and, for async stages, by uvchan_job_done().
 * Each entry point updates the state and then "pumps": moves values as far as the try-operations
 * allow, and parks one request where it must wait. A pump moves a bounded number of inputs
 * before it parks a request even when more are ready, so a busy pipeline still lets the loop
 * deliver other completions, timers and I/O.
 *
 * Custody. A value is always in exactly one place: a channel, a request's buffer, a job's queue
 * of emitted values, or the user's hands. When an object ends early (an error, a close, its
 * pipeline failing) it decides at once, while the channels are certainly alive, the fate of
 * every value it holds: a request still waiting is cancelled (its value was not taken), one
 * already matched reports the real outcome in its status; what was not taken goes to an element
 * destructor. The callbacks that come back afterwards only count down.
 *
 * Notices. An object's end callback and close callback are delivered by queueing one of its own
 * requests (type UVCHAN_REQ_NOTIFY) on the completion queue, so they run from the loop like any
 * completion, in FIFO order: the end callback always before the close callback.
 *
 * Life cycle: INIT -> RUNNING -> ENDED -> CLOSING -> CLOSED (close notice queued; the magic
 * clears when it is delivered). `busy` counts what must come back before the memory can be
 * freed: requests in flight, a stage function running, async jobs not done. */
#include "uvchan-internal.h"

#include <stdlib.h>

#define UVCHAN__JOB_MAGIC 0x756a6f62u   /* "ujob" */
#define UVCHAN__SUB_MAGIC 0x75737562u   /* "usub" */
#define UVCHAN__PIPE_MAGIC 0x75706970u  /* "upip" */

/* Object kinds and states: src/pipeline.h. */
/* Pipeline state_ bits. */
enum { UVCHAN__P_STARTED = 1u << 0, UVCHAN__P_CLOSING = 1u << 1, UVCHAN__P_ENDED = 1u << 2 };

/* Inputs a pump takes with try-operations before it parks a request (which completes at once if
 * a value is ready, but from the loop). */
#define UVCHAN__PUMP_BUDGET 64

/* The most jobs a stage may run at once: a sanity bound on the job table's size. */
#define UVCHAN__MAX_PARALLEL 65536u

static void uvchan__notify(uvchan_req_t* req, uvchan_ctx_t* ctx, uvchan_req_cb cb, int status) {
  uvchan__req_prepare(req, ctx, UVCHAN_REQ_NOTIFY, (void (*)(void))cb, 0);
  uvchan__complete(req, status);
}

/* The element destructor of `ch`, for a value that leaves an object's custody untaken. A
 * channel destroyed under the object (a misuse the header warns against) has none to call. */
void uvchan__destroy_value(uvchan_t* ch, void* value) {
  if (uvchan__chan_ok(ch) && ch->dtor_ != NULL)
    ch->dtor_(ch, value);
}

/* A context new objects may join: live and not closing. */
int uvchan__ctx_open(const uvchan_ctx_t* ctx) {
  return uvchan__ctx_ok(ctx) && !(ctx->flags_ & UVCHAN__CTX_CLOSING);
}

/* ==== the pipeline group ==== */

static void uvchan__stage_abort(uvchan__node* node, int status);
static void uvchan__merge_abort(uvchan__node* node, int status);
static void uvchan__bcast_abort(uvchan__node* node, int status);

static void uvchan__node_abort(uvchan__node* node, int status) {
  switch (node->kind) {
    case UVCHAN__STAGE: uvchan__stage_abort(node, status); break;
    case UVCHAN__MERGE: uvchan__merge_abort(node, status); break;
    case UVCHAN__BCAST: uvchan__bcast_abort(node, status); break;
    default: node->ops->abort(node, status); break;
  }
}

static int uvchan__pipe_ok(const uvchan_pipeline_t* p) {
  return p != NULL && p->magic_ == UVCHAN__PIPE_MAGIC;
}

static void uvchan__pipe_on_end(uvchan_req_t* req, int status) {
  uvchan_pipeline_t* p = UVCHAN__CONTAINER_OF(req, uvchan_pipeline_t, end_req_);
  if (p->cb_ != NULL)
    p->cb_(p, status);
}

static void uvchan__pipe_on_closed(uvchan_req_t* req, int status) {
  uvchan_pipeline_t* p = UVCHAN__CONTAINER_OF(req, uvchan_pipeline_t, close_req_);
  uvchan_pipeline_cb cb = p->close_cb_;
  (void)status;
  p->magic_ = 0;
  if (cb != NULL)
    cb(p, p->status); /* may free the struct */
}

/* A member has ended (or will never run): the pipeline ends when the last one has. */
static void uvchan__pipe_maybe_ended(uvchan_pipeline_t* p) {
  if (p->nrunning_ == 0 && (p->state_ & UVCHAN__P_STARTED) && !(p->state_ & UVCHAN__P_ENDED)) {
    p->state_ |= UVCHAN__P_ENDED;
    uvchan__notify(&p->end_req_, p->ctx_, uvchan__pipe_on_end, p->status);
  }
}

static void uvchan__pipe_member_done(uvchan_pipeline_t* p) {
  p->nrunning_--;
  uvchan__pipe_maybe_ended(p);
}

/* Member `node` ended with `status`. The first error stops every other member, and members not
 * started yet never will be. Aborting a member re-enters here for it, which only counts it. */
static void uvchan__pipe_member_ended(uvchan_pipeline_t* p, uvchan__node* node, int status) {
  struct uvchan__link_s* l;
  uvchan__node* m;

  if (status < 0 && p->status == 0) {
    p->status = status;
    for (l = p->members_.next; l != &p->members_; l = l->next) {
      m = UVCHAN__CONTAINER_OF(l, uvchan__node, plink);
      if (m == node)
        continue;
      if (m->state == UVCHAN__N_RUNNING) {
        uvchan__node_abort(m, UV_ECANCELED);
      } else if (m->state == UVCHAN__N_INIT) {
        m->state = UVCHAN__N_ENDED;
        m->status = UV_ECANCELED;
        uvchan__pipe_member_done(p);
      }
    }
  }
  uvchan__pipe_member_done(p);
}

/* Member `node`'s close is complete: it leaves the pipeline; a closing pipeline closes with its
 * last member. */
static void uvchan__pipe_member_left(uvchan_pipeline_t* p, uvchan__node* node) {
  uvchan__list_remove(&node->plink);
  if ((p->state_ & UVCHAN__P_CLOSING) && uvchan__list_empty(&p->members_))
    uvchan__notify(&p->close_req_, p->ctx_, uvchan__pipe_on_closed, 0);
}

/* ==== what every pipeline object shares ==== */

static void uvchan__node_shutdown(struct uvchan__res_s* res);

/* Checks and joins: the caller checked the context. Returns 0 or UV_EINVAL. */
int uvchan__node_check_pipe(uvchan_ctx_t* ctx, uvchan_pipeline_t* p) {
  if (p == NULL)
    return 0;
  if (!uvchan__pipe_ok(p) || p->ctx_ != ctx || p->state_ != 0)
    return UV_EINVAL;
  return 0;
}

void uvchan__node_init(uvchan__node* node, uvchan_ctx_t* ctx, unsigned kind, uvchan_pipeline_t* p,
                       const struct uvchan__pnode_ops_s* ops) {
  node->ctx = ctx;
  node->kind = kind;
  node->ops = ops;
  node->state = UVCHAN__N_INIT;
  node->busy = 0;
  node->status = 0;
  node->end_cb = NULL;
  node->close_cb = NULL;
  node->pipeline = p;
  node->magic_ = UVCHAN__PNODE_MAGIC;
  uvchan__res_add(ctx, &node->res, uvchan__node_shutdown);
  if (p != NULL) {
    uvchan__list_push(&p->members_, &node->plink);
    p->nrunning_++;
  }
}

/* The last checks of every object's init, after its arguments: the context's thread, then an
 * object that is live already. */
int uvchan__node_gate(uvchan_ctx_t* ctx, const uvchan__node* node) {
  int err;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  return UVCHAN__MAGIC_IS(node, UVCHAN__PNODE_MAGIC) ? UV_EBUSY : 0;
}

/* The common checks of a start or close call: the object is live and of `kind`. */
int uvchan__node_ok(const uvchan__node* node, unsigned kind) {
  return UVCHAN__MAGIC_IS(node, UVCHAN__PNODE_MAGIC) && node->kind == kind;
}

static int uvchan__node_start(uvchan__node* node, void (*cb)(void)) {
  int err;
  if ((err = UVCHAN__GATE(node->ctx, NULL)) != 0)
    return err;
  if (node->state != UVCHAN__N_INIT)
    return UV_EINVAL;
  node->end_cb = cb;
  node->state = UVCHAN__N_RUNNING;
  return 0;
}

int uvchan__node_ext_start(uvchan__node* node, void (*cb)(void)) {
  int err;
  if ((err = uvchan__node_start(node, cb)) != 0)
    return err;
  node->ops->start(node);
  return 0;
}

static void uvchan__node_on_end(uvchan_req_t* req, int status) {
  uvchan__node* node = UVCHAN__CONTAINER_OF(req, uvchan__node, end_req);
  switch (node->kind) {
    case UVCHAN__STAGE:
      ((uvchan_stage_cb)node->end_cb)(UVCHAN__CONTAINER_OF(node, uvchan_stage_t, node_), status);
      break;
    case UVCHAN__MERGE:
      ((uvchan_merge_cb)node->end_cb)(UVCHAN__CONTAINER_OF(node, uvchan_merge_t, node_), status);
      break;
    case UVCHAN__BCAST:
      ((uvchan_broadcast_cb)node->end_cb)(UVCHAN__CONTAINER_OF(node, uvchan_broadcast_t, node_),
                                          status);
      break;
    default:
      node->ops->call_end(node, node->end_cb, status);
      break;
  }
}

/* The object has ended (it was running): queue its end callback and tell its pipeline. */
void uvchan__node_end(uvchan__node* node, int status) {
  node->state = UVCHAN__N_ENDED;
  node->status = status;
  if (node->end_cb != NULL)
    uvchan__notify(&node->end_req, node->ctx, uvchan__node_on_end, status);
  if (node->pipeline != NULL)
    uvchan__pipe_member_ended(node->pipeline, node, status);
}

static void uvchan__node_on_closed(uvchan_req_t* req, int status) {
  uvchan__node* node = UVCHAN__CONTAINER_OF(req, uvchan__node, close_req);
  uvchan_ctx_t* ctx = node->ctx;
  void (*cb)(void) = node->close_cb;
  (void)status;
  node->magic_ = 0;
  if (node->pipeline != NULL)
    uvchan__pipe_member_left(node->pipeline, node);
  if (cb != NULL) { /* may free the struct */
    switch (node->kind) {
      case UVCHAN__STAGE:
        ((uvchan_stage_close_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_stage_t, node_));
        break;
      case UVCHAN__MERGE:
        ((uvchan_merge_close_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_merge_t, node_));
        break;
      case UVCHAN__BCAST:
        ((uvchan_broadcast_close_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_broadcast_t, node_));
        break;
      default:
        node->ops->call_close(node, cb);
        break;
    }
  }
  uvchan__ctx_closing_end(ctx);
}

static void uvchan__stage_release(uvchan_stage_t* st);
static void uvchan__merge_release(uvchan_merge_t* mg);

/* A closing object whose last request or job came back frees its memory and queues its close
 * notice. */
void uvchan__node_maybe_closed(uvchan__node* node) {
  if (node->state != UVCHAN__N_CLOSING || node->busy != 0)
    return;
  node->state = UVCHAN__N_CLOSED;
  if (node->kind == UVCHAN__STAGE)
    uvchan__stage_release(UVCHAN__CONTAINER_OF(node, uvchan_stage_t, node_));
  else if (node->kind == UVCHAN__MERGE)
    uvchan__merge_release(UVCHAN__CONTAINER_OF(node, uvchan_merge_t, node_));
  else if (node->kind == UVCHAN__BCAST)
    free(UVCHAN__CONTAINER_OF(node, uvchan_broadcast_t, node_)->cur_);
  else if (node->ops->release != NULL)
    node->ops->release(node);
  uvchan__notify(&node->close_req, node->ctx, uvchan__node_on_closed, 0);
}

int uvchan__node_close(uvchan__node* node, void (*cb)(void)) {
  uvchan_ctx_t* ctx = node->ctx;
  if (!UVCHAN__ON_THREAD(ctx))
    return UV_EPERM;
  if (node->state >= UVCHAN__N_CLOSING)
    return UV_EINVAL;
  if (node->state == UVCHAN__N_RUNNING) {
    uvchan__node_abort(node, UV_ECANCELED);
  } else if (node->state == UVCHAN__N_INIT && node->pipeline != NULL) {
    node->state = UVCHAN__N_ENDED;
    uvchan__pipe_member_done(node->pipeline);
  }
  node->state = UVCHAN__N_CLOSING;
  node->close_cb = cb;
  /* Announce the close before leaving the resource list: during a shutdown, leaving it may let
   * the context go on to close, and it must wait for this close to finish. */
  uvchan__ctx_closing_begin(ctx);
  uvchan__res_remove(ctx, &node->res);
  if (node->kind == UVCHAN__PNODE_EXT && node->ops->closing != NULL)
    node->ops->closing(node);
  uvchan__node_maybe_closed(node);
  return 0;
}

/* A request of the object (or an async job) came back. */
void uvchan__node_back(uvchan__node* node) {
  node->busy--;
  uvchan__node_maybe_closed(node);
}

/* ==== stage ==== */

/* Job states (the low bits of state_) and flags. */
enum {
  UVCHAN__J_FREE = 0,
  UVCHAN__J_RECV,   /* the stage's waiting receive fills its input */
  UVCHAN__J_RUN,    /* its function runs (sync) or has not called uvchan_job_done() (async) */
  UVCHAN__J_DONE,   /* finished; its emitted values may still be queued */
  UVCHAN__J_ORPHAN, /* the stage ended while it ran: its values were discarded */
  UVCHAN__J_MASK = 7,
  UVCHAN__J_QUEUED = 1u << 3, /* in the drain queue */
  UVCHAN__J_PERMIT = 1u << 4  /* holds a reserved output slot for its first value */
};

enum { UVCHAN__IN_IDLE = 0, UVCHAN__IN_RECV, UVCHAN__IN_RESERVE, UVCHAN__IN_EOF };

#define UVCHAN__STAGE_FLAGS \
  (UVCHAN_STAGE_ASYNC | UVCHAN_STAGE_UNORDERED | UVCHAN_STAGE_RESERVE | UVCHAN_LEAVE_OPEN)

static void uvchan__stage_pump(uvchan_stage_t* st, uvchan_job_t* job);

static unsigned uvchan__job_state(const uvchan_job_t* job) {
  return job->state_ & UVCHAN__J_MASK;
}

static void uvchan__job_set(uvchan_job_t* job, unsigned state) {
  job->state_ = (job->state_ & ~(unsigned)UVCHAN__J_MASK) | state;
}

static void uvchan__drain_push(uvchan_stage_t* st, uvchan_job_t* job) {
  job->next_ = NULL;
  job->state_ |= UVCHAN__J_QUEUED;
  if (st->dtail_ != NULL)
    st->dtail_->next_ = job;
  else
    st->dhead_ = job;
  st->dtail_ = job;
}

static void uvchan__drain_pop(uvchan_stage_t* st) {
  uvchan_job_t* job = st->dhead_;
  st->dhead_ = job->next_;
  if (st->dhead_ == NULL)
    st->dtail_ = NULL;
  job->state_ &= ~(unsigned)UVCHAN__J_QUEUED;
}

/* Returns a job to the free list; a slot it still reserved is given back. */
static void uvchan__job_free(uvchan_stage_t* st, uvchan_job_t* job) {
  if (job->state_ & UVCHAN__J_PERMIT)
    (void)uvchan_release(&job->permit_);
  job->state_ = UVCHAN__J_FREE;
  job->hout_ = 0;
  job->nout_ = 0;
  job->next_ = st->free_;
  st->free_ = job;
  st->nfree_++;
}

static uvchan_job_t* uvchan__job_take(uvchan_stage_t* st) {
  uvchan_job_t* job = st->free_;
  st->free_ = job->next_;
  st->nfree_--;
  return job;
}

/* Appends a copy of `value` to the job's queue of emitted values (a ring that doubles). */
static int uvchan__job_push(uvchan_stage_t* st, uvchan_job_t* job, const void* value) {
  size_t sz = st->out_size_, i, k;
  char* outs;
  if (job->nout_ == job->capout_) {
    k = job->capout_ != 0 ? job->capout_ * 2 : 4;
    if (sz != 0) {
      outs = malloc(k * sz);
      if (outs == NULL)
        return UV_ENOMEM;
      for (i = 0; i < job->nout_; i++) /* unwrap the ring into the new buffer */
        memcpy(outs + i * sz, job->outs_ + ((job->hout_ + i) % job->capout_) * sz, sz);
      free(job->outs_);
      job->outs_ = outs;
    }
    job->hout_ = 0;
    job->capout_ = k;
  }
  if (sz != 0)
    memcpy(job->outs_ + ((job->hout_ + job->nout_) % job->capout_) * sz, value, sz);
  job->nout_++;
  return 0;
}

static void* uvchan__job_front(uvchan_stage_t* st, uvchan_job_t* job) {
  return job->outs_ + job->hout_ * st->out_size_;
}

static void uvchan__job_pop(uvchan_job_t* job) {
  if (++job->hout_ == job->capout_)
    job->hout_ = 0;
  job->nout_--;
}

/* Hands every value the job still holds to the output's destructor. */
static void uvchan__job_discard(uvchan_stage_t* st, uvchan_job_t* job) {
  while (job->nout_ > 0) {
    uvchan__destroy_value(st->out_, uvchan__job_front(st, job));
    uvchan__job_pop(job);
  }
}

/* Sends `value`: into the job's reserved slot (never waits) or with a try-send. */
UVCHAN__INLINE int uvchan__stage_put(uvchan_stage_t* st, uvchan_job_t* job, const void* value) {
  if (job->state_ & UVCHAN__J_PERMIT) {
    job->state_ &= ~(unsigned)UVCHAN__J_PERMIT; /* spent either way */
    return uvchan_commit(&job->permit_, value);
  }
  return uvchan__try_send(st->out_, value);
}

static void uvchan__stage_fail(uvchan_stage_t* st, int status) {
  uvchan__stage_abort(&st->node_, status);
}

static void uvchan__stage_on_sent(uvchan_send_t* req, int status);
static void uvchan__stage_on_recv(uvchan_recv_t* req, int status);
static void uvchan__stage_on_reserved(uvchan_reserve_t* req, int status);

/* Parks a send of `value` (copied to sendbuf_: the job's ring may grow while it waits). */
static void uvchan__stage_park_send(uvchan_stage_t* st, const void* value) {
  int r;
  memcpy(st->sendbuf_, value, st->out_size_);
  r = uvchan_send(&st->send_, st->out_, st->sendbuf_, uvchan__stage_on_sent);
  if (r != 0) {
    uvchan__destroy_value(st->out_, st->sendbuf_);
    uvchan__stage_fail(st, uvchan__gone(r));
    return;
  }
  st->sending_ = 1;
  st->node_.busy++;
}

/* Sends what the jobs at the head of the drain queue emitted, in order, until a send must wait;
 * frees the jobs that are done and drained. */
static void uvchan__stage_drain(uvchan_stage_t* st) {
  uvchan_job_t* job;
  void* v;
  int r;

  while (!st->sending_ && (job = st->dhead_) != NULL) {
    if (job->nout_ > 0) {
      v = uvchan__job_front(st, job);
      r = uvchan__stage_put(st, job, v);
      if (r == 0) {
        uvchan__job_pop(job);
        st->outputs++;
        continue;
      }
      if (r == UV_EAGAIN) {
        uvchan__job_pop(job); /* the value moves to sendbuf_, which stays put while it waits */
        uvchan__stage_park_send(st, v);
        return;
      }
      uvchan__stage_fail(st, uvchan__gone(r)); /* the value stays queued: the abort destroys it */
      return;
    }
    if (uvchan__job_state(job) == UVCHAN__J_DONE) {
      uvchan__drain_pop(st);
      uvchan__job_free(st, job);
    } else if (!st->ordered_) {
      uvchan__drain_pop(st); /* it rejoins at the back when it emits or finishes */
    } else {
      return; /* input order: wait for this job */
    }
  }
}

/* A job's function has finished (sync return or uvchan_job_done()). */
static void uvchan__stage_job_finished(uvchan_stage_t* st, uvchan_job_t* job, int status) {
  uvchan__job_set(job, UVCHAN__J_DONE);
  if (status < 0) {
    uvchan__stage_fail(st, status);
    return;
  }
  if (!(job->state_ & UVCHAN__J_QUEUED)) { /* not ordered_: freed at once when nothing waits */
    if (job->nout_ > 0)
      uvchan__drain_push(st, job);
    else
      uvchan__job_free(st, job);
  }
}

/* Runs `fn` on a job just filled. `busy` covers the call, so that a close from inside the
 * function cannot free the job table under it; for an async job that returns 0 it then covers
 * the wait for uvchan_job_done(). */
static void uvchan__stage_run(uvchan_stage_t* st, uvchan_job_t* job, uvchan_stage_fn fn,
                              void* value) {
  unsigned s;
  int r;
  job->seq = st->inputs;
  job->data = NULL;
  job->state_ = UVCHAN__J_RUN;
  if (value != NULL)
    st->inputs++;
  if (st->held_) { /* the slot reserved for this input */
    job->permit_ = st->permit_;
    job->state_ |= UVCHAN__J_PERMIT;
    st->held_ = 0;
  }
  if (st->ordered_)
    uvchan__drain_push(st, job);
  st->node_.busy++;
  st->infn_ = job;
  r = fn(job, value);
  st->infn_ = NULL;
  s = uvchan__job_state(job);
  if (st->flags_ & UVCHAN_STAGE_ASYNC) {
    if ((s == UVCHAN__J_RUN || s == UVCHAN__J_ORPHAN) && r >= 0)
      return; /* pending: uvchan_job_done() ends it */
    if (s != UVCHAN__J_RUN && s != UVCHAN__J_ORPHAN) {
      /* uvchan_job_done() was called from inside (a returned error is then ignored): it left
       * the call's count to this function. */
      uvchan__node_back(&st->node_);
      return;
    }
  }
  st->node_.busy--;
  if (s == UVCHAN__J_ORPHAN) /* the stage ended during the call */
    uvchan__job_free(st, job);
  else
    uvchan__stage_job_finished(st, job, r);
  if (UVCHAN__UNLIKELY(st->node_.state == UVCHAN__N_CLOSING)) /* closed from the function */
    uvchan__node_maybe_closed(&st->node_);
}

/* Parks the intake's request: a reservation first when the stage reserves and holds no slot,
 * else a receive into a free job. */
static void uvchan__stage_wait_input(uvchan_stage_t* st) {
  uvchan_job_t* job;
  int r;
  if ((st->flags_ & UVCHAN_STAGE_RESERVE) && !st->held_) {
    r = uvchan_reserve(&st->reserve_, st->out_, uvchan__stage_on_reserved);
    if (r != 0) {
      uvchan__stage_fail(st, uvchan__gone(r));
      return;
    }
    st->intake_ = UVCHAN__IN_RESERVE;
  } else {
    job = uvchan__job_take(st);
    uvchan__job_set(job, UVCHAN__J_RECV);
    r = uvchan_recv(&st->recv_, st->in_, job->in_, uvchan__stage_on_recv);
    if (r != 0) {
      uvchan__job_free(st, job);
      uvchan__stage_fail(st, uvchan__gone(r));
      return;
    }
    st->rjob_ = job;
    st->intake_ = UVCHAN__IN_RECV;
  }
  st->node_.busy++;
}

static void uvchan__stage_eof(uvchan_stage_t* st) {
  st->intake_ = UVCHAN__IN_EOF;
  if (st->held_) {
    st->held_ = 0;
    (void)uvchan_release(&st->permit_);
  }
}

/* Takes inputs while a job is free, running the function on each, within the pump's budget. */
static void uvchan__stage_intake(uvchan_stage_t* st, unsigned* budget) {
  uvchan_job_t* job;
  int r;

  while (st->node_.state == UVCHAN__N_RUNNING && st->intake_ == UVCHAN__IN_IDLE &&
         st->free_ != NULL) {
    if (*budget == 0) {
      uvchan__stage_wait_input(st); /* completes at once if ready, but from the loop */
      return;
    }
    (*budget)--;
    if ((st->flags_ & UVCHAN_STAGE_RESERVE) && !st->held_) {
      if (uvchan__chan_ok(st->in_) && (st->in_->flags_ & UVCHAN__CHAN_CLOSED) &&
          st->in_->len_ == 0) {
        uvchan__stage_eof(st); /* no slot needed to learn that the input ended */
        return;
      }
      r = uvchan_try_reserve(st->out_, &st->permit_);
      if (r == UV_EAGAIN) {
        uvchan__stage_wait_input(st);
        return;
      }
      if (r != 0) {
        uvchan__stage_fail(st, uvchan__gone(r));
        return;
      }
      st->held_ = 1;
    }
    job = st->free_;
    r = uvchan__try_recv(st->in_, job->in_);
    if (r == 0) {
      uvchan__job_take(st);
      uvchan__stage_run(st, job, st->fn_, job->in_);
    } else if (r == UV_EAGAIN) {
      uvchan__stage_wait_input(st);
      return;
    } else if (r == UV_EOF) {
      uvchan__stage_eof(st);
      return;
    } else {
      uvchan__stage_fail(st, uvchan__gone(r));
      return;
    }
  }
}

/* The input is drained and every job done and sent: run `finish` once, then end. */
static void uvchan__stage_check_end(uvchan_stage_t* st) {
  if (st->node_.state != UVCHAN__N_RUNNING || st->intake_ != UVCHAN__IN_EOF ||
      st->nfree_ != st->par_ || st->sending_ || st->dhead_ != NULL)
    return;
  if (st->finish_ != NULL && !st->finished_) {
    st->finished_ = 1;
    st->again_ = 1;
    uvchan__stage_run(st, uvchan__job_take(st), st->finish_, NULL);
    return;
  }
  if (!(st->flags_ & UVCHAN_LEAVE_OPEN))
    (void)uvchan_close(st->out_); /* UV_EPIPE: somebody closed it already, nothing was lost */
  uvchan__node_end(&st->node_, 0);
}

/* Moves everything as far as it goes. Re-entrant calls (from a function's emit or done) only
 * ask the running pump for another round. `job`, if not NULL, was just received: run it first. */
static void uvchan__stage_pump(uvchan_stage_t* st, uvchan_job_t* job) {
  unsigned budget = UVCHAN__PUMP_BUDGET;
  if (st->pumping_) {
    st->again_ = 1;
    return;
  }
  st->pumping_ = 1;
  if (job != NULL)
    uvchan__stage_run(st, job, st->fn_, job->in_);
  do {
    st->again_ = 0;
    if (st->node_.state != UVCHAN__N_RUNNING)
      break;
    uvchan__stage_drain(st);
    uvchan__stage_intake(st, &budget);
    uvchan__stage_drain(st);
    uvchan__stage_check_end(st);
    /* The intake stops only when it parks a request, meets the end, or runs out of free jobs:
     * if the last drain freed one, go round again. */
    if (st->node_.state == UVCHAN__N_RUNNING && st->intake_ == UVCHAN__IN_IDLE &&
        st->free_ != NULL)
      st->again_ = 1;
  } while (st->again_);
  st->pumping_ = 0;
}

static void uvchan__stage_on_recv(uvchan_recv_t* req, int status) {
  uvchan_stage_t* st = UVCHAN__CONTAINER_OF(req, uvchan_stage_t, recv_);
  uvchan_job_t* job = st->rjob_;
  st->node_.busy--;
  st->intake_ = UVCHAN__IN_IDLE;
  st->rjob_ = NULL;
  if (st->node_.state != UVCHAN__N_RUNNING) { /* the abort took care of the job */
    uvchan__node_maybe_closed(&st->node_);
    return;
  }
  if (status == 0) {
    uvchan__stage_pump(st, job);
    return;
  }
  uvchan__job_free(st, job);
  if (status == UV_EOF) {
    uvchan__stage_eof(st);
    uvchan__stage_pump(st, NULL);
  } else {
    uvchan__stage_fail(st, status);
  }
}

static void uvchan__stage_on_reserved(uvchan_reserve_t* req, int status) {
  uvchan_stage_t* st = UVCHAN__CONTAINER_OF(req, uvchan_stage_t, reserve_);
  st->node_.busy--;
  st->intake_ = UVCHAN__IN_IDLE;
  if (st->node_.state != UVCHAN__N_RUNNING) {
    uvchan__node_maybe_closed(&st->node_);
    return;
  }
  if (status != 0) {
    uvchan__stage_fail(st, status); /* UV_EPIPE: the output was closed under the stage */
    return;
  }
  st->permit_ = req->permit;
  st->held_ = 1;
  uvchan__stage_pump(st, NULL);
}

static void uvchan__stage_on_sent(uvchan_send_t* req, int status) {
  uvchan_stage_t* st = UVCHAN__CONTAINER_OF(req, uvchan_stage_t, send_);
  st->node_.busy--;
  st->sending_ = 0;
  if (st->node_.state != UVCHAN__N_RUNNING) { /* the abort decided the value's fate */
    uvchan__node_maybe_closed(&st->node_);
    return;
  }
  if (status != 0) {
    uvchan__destroy_value(st->out_, st->sendbuf_);
    uvchan__stage_fail(st, status);
    return;
  }
  st->outputs++;
  uvchan__stage_pump(st, NULL);
}

/* Ends a running stage early: decides the fate of every value it holds while the channels are
 * alive, closes the output, and queues the end. Requests still out come back later and only
 * count down; async jobs still running become orphans. */
static void uvchan__stage_abort(uvchan__node* node, int status) {
  uvchan_stage_t* st = UVCHAN__CONTAINER_OF(node, uvchan_stage_t, node_);
  uvchan_job_t* job;
  unsigned i;
  int r;

  if (node->state != UVCHAN__N_RUNNING)
    return;
  node->state = UVCHAN__N_ENDED; /* nothing below pumps again */
  st->status = status;
  if (st->intake_ == UVCHAN__IN_RECV) {
    r = uvchan_cancel((uvchan_req_t*)&st->recv_);
    if (r == UV_EBUSY && st->recv_.status == 0) /* received, never given to the function */
      uvchan__destroy_value(st->in_, st->rjob_->in_);
    uvchan__job_free(st, st->rjob_);
    st->rjob_ = NULL;
  } else if (st->intake_ == UVCHAN__IN_RESERVE) {
    r = uvchan_cancel((uvchan_req_t*)&st->reserve_);
    if (r == UV_EBUSY && st->reserve_.status == 0)
      (void)uvchan_release(&st->reserve_.permit);
  }
  if (st->held_) {
    st->held_ = 0;
    (void)uvchan_release(&st->permit_);
  }
  if (st->sending_) {
    r = uvchan_cancel((uvchan_req_t*)&st->send_);
    if (r == 0 || st->send_.status != 0) /* still waiting, or failed: not taken */
      uvchan__destroy_value(st->out_, st->sendbuf_);
  }
  for (i = 0; i < st->par_; i++) {
    job = &st->jobs_[i];
    switch (uvchan__job_state(job)) {
      case UVCHAN__J_RUN:
        uvchan__job_discard(st, job);
        if (job->state_ & UVCHAN__J_PERMIT)
          (void)uvchan_release(&job->permit_);
        job->state_ = UVCHAN__J_ORPHAN;
        break;
      case UVCHAN__J_DONE:
        uvchan__job_discard(st, job);
        uvchan__job_free(st, job);
        break;
      default:
        break;
    }
  }
  st->dhead_ = st->dtail_ = NULL;
  if (!(st->flags_ & UVCHAN_LEAVE_OPEN))
    (void)uvchan_close(st->out_);
  uvchan__node_end(node, status);
}

static void uvchan__stage_release(uvchan_stage_t* st) {
  unsigned i;
  for (i = 0; i < st->par_; i++) {
    free(st->jobs_[i].outs_);
    st->jobs_[i].magic_ = 0;
  }
  free(st->jobs_);
  free(st->inbuf_);
  free(st->sendbuf_);
  st->jobs_ = NULL;
  st->inbuf_ = NULL;
  st->sendbuf_ = NULL;
}

int uvchan_stage_init(uvchan_ctx_t* ctx, uvchan_stage_t* stage, uvchan_t* in, uvchan_t* out,
                      uvchan_stage_fn fn, const uvchan_stage_opts_t* opts) {
  uvchan_stage_opts_t o;
  unsigned i;
  int err;

  if (opts != NULL)
    o = *opts;
  else
    memset(&o, 0, sizeof(o));
  if (o.parallel == 0)
    o.parallel = 1;
  if (!uvchan__ctx_open(ctx) || stage == NULL || fn == NULL || !uvchan__chan_ok(in) ||
      !uvchan__chan_ok(out) || in == out || in->ctx_ != ctx || out->ctx_ != ctx ||
      (o.flags & ~(unsigned)UVCHAN__STAGE_FLAGS) != 0 || o.parallel > UVCHAN__MAX_PARALLEL ||
      (in->elem_size_ != 0 && o.parallel > SIZE_MAX / in->elem_size_) ||
      ((o.flags & UVCHAN_STAGE_RESERVE) && !uvchan__reservable(out)) ||
      uvchan__node_check_pipe(ctx, o.pipeline) != 0)
    return UV_EINVAL;
  if ((err = uvchan__node_gate(ctx, &stage->node_)) != 0)
    return err;
  memset(stage, 0, sizeof(*stage));
  stage->in_ = in;
  stage->out_ = out;
  stage->fn_ = fn;
  stage->finish_ = o.finish;
  stage->flags_ = o.flags;
  stage->par_ = o.parallel;
  /* Input order needs places held in the drain queue only when several functions can be under
   * way at once: a synchronous function runs to its end before the next input is taken, so its
   * emits come in input order already. */
  stage->ordered_ = (o.flags & UVCHAN_STAGE_ASYNC) && o.parallel > 1 &&
                    !(o.flags & UVCHAN_STAGE_UNORDERED);
  stage->in_size_ = in->elem_size_;
  stage->out_size_ = out->elem_size_;
  stage->jobs_ = calloc(o.parallel, sizeof(uvchan_job_t));
  stage->inbuf_ = malloc(o.parallel * (in->elem_size_ != 0 ? in->elem_size_ : 1));
  stage->sendbuf_ = malloc(out->elem_size_ != 0 ? out->elem_size_ : 1);
  if (stage->jobs_ == NULL || stage->inbuf_ == NULL || stage->sendbuf_ == NULL) {
    uvchan__stage_release(stage);
    return UV_ENOMEM;
  }
  for (i = o.parallel; i-- > 0;) { /* the free list hands out jobs_[0] first */
    stage->jobs_[i].stage = stage;
    stage->jobs_[i].in_ = stage->inbuf_ + i * (in->elem_size_ != 0 ? in->elem_size_ : 1);
    stage->jobs_[i].magic_ = UVCHAN__JOB_MAGIC;
    uvchan__job_free(stage, &stage->jobs_[i]);
  }
  uvchan__node_init(&stage->node_, ctx, UVCHAN__STAGE, o.pipeline, NULL);
  return 0;
}

int uvchan_stage_start(uvchan_stage_t* stage, uvchan_stage_cb cb) {
  int err;
  if (stage == NULL || !uvchan__node_ok(&stage->node_, UVCHAN__STAGE))
    return UV_EINVAL;
  if ((err = uvchan__node_start(&stage->node_, (void (*)(void))cb)) != 0)
    return err;
  /* The first input comes through a request, so the function never runs inside this call. */
  uvchan__stage_wait_input(stage);
  return 0;
}

int uvchan_stage_close(uvchan_stage_t* stage, uvchan_stage_close_cb cb) {
  if (stage == NULL || !uvchan__node_ok(&stage->node_, UVCHAN__STAGE))
    return UV_EINVAL;
  return uvchan__node_close(&stage->node_, (void (*)(void))cb);
}

int uvchan_job_emit(uvchan_job_t* job, const void* value) {
  uvchan_stage_t* st;
  unsigned s;
  int r;

  if (job == NULL || job->magic_ != UVCHAN__JOB_MAGIC)
    return UV_EINVAL;
  st = job->stage;
  if (UVCHAN__UNLIKELY(!UVCHAN__ON_THREAD(st->node_.ctx)))
    return UV_EPERM;
  s = uvchan__job_state(job);
  if (s == UVCHAN__J_ORPHAN)
    return UV_ECANCELED;
  if (s != UVCHAN__J_RUN || (value == NULL && st->out_size_ != 0))
    return UV_EINVAL;
  if (!(job->state_ & UVCHAN__J_QUEUED) && (st->dhead_ != NULL || st->sending_))
    uvchan__drain_push(st, job); /* not ordered: values go out in the order jobs emit them */
  if ((st->dhead_ == job || st->dhead_ == NULL) && job->nout_ == 0 && !st->sending_) {
    /* Next in line with nothing before it: straight to the output when it has room. */
    r = uvchan__stage_put(st, job, value);
    if (r == 0) {
      st->outputs++;
      return 0;
    }
    if (r == UV_EAGAIN) { /* the output is not ready: this value waits in the stage's send */
      if (!(job->state_ & UVCHAN__J_QUEUED))
        uvchan__drain_push(st, job); /* the job stays busy until its value is out */
      uvchan__stage_park_send(st, value);
      return 0;
    }
    r = uvchan__gone(r);
    uvchan__stage_fail(st, r);
    return r;
  }
  if ((r = uvchan__job_push(st, job, value)) != 0)
    return r;
  uvchan__stage_pump(st, NULL); /* from an async operation: start sending */
  return 0;
}

int uvchan_job_done(uvchan_job_t* job, int status) {
  uvchan_stage_t* st;
  unsigned s;
  int inside;

  if (job == NULL || job->magic_ != UVCHAN__JOB_MAGIC)
    return UV_EINVAL;
  st = job->stage;
  if (!UVCHAN__ON_THREAD(st->node_.ctx))
    return UV_EPERM;
  s = uvchan__job_state(job);
  if (!(st->flags_ & UVCHAN_STAGE_ASYNC) || (s != UVCHAN__J_RUN && s != UVCHAN__J_ORPHAN))
    return UV_EINVAL;
  /* From inside the function, the call still counts in busy: uvchan__stage_run() ends it. */
  inside = st->infn_ == job;
  if (s == UVCHAN__J_ORPHAN) { /* the stage ended while the job ran */
    uvchan__job_free(st, job);
    if (!inside)
      uvchan__node_back(&st->node_);
    return 0;
  }
  if (!inside)
    st->node_.busy--;
  uvchan__stage_job_finished(st, job, status);
  uvchan__stage_pump(st, NULL);
  if (!inside)
    uvchan__node_maybe_closed(&st->node_);
  return 0;
}

/* ==== merge ==== */

static void uvchan__merge_on_select(uvchan_select_t* req, int status);
static void uvchan__merge_on_sent(uvchan_send_t* req, int status);

static void uvchan__merge_fail(uvchan_merge_t* mg, int status) {
  uvchan__merge_abort(&mg->node_, status);
}

/* Forwards the value in buf_; returns 1 if the send must wait (a request is parked). */
static int uvchan__merge_forward(uvchan_merge_t* mg) {
  int r = uvchan__try_send(mg->out_, mg->buf_);
  if (r == 0) {
    mg->outputs++;
    return 0;
  }
  if (r == UV_EAGAIN)
    r = uvchan_send(&mg->send_, mg->out_, mg->buf_, uvchan__merge_on_sent);
  if (r != 0) {
    uvchan__destroy_value(mg->out_, mg->buf_);
    uvchan__merge_fail(mg, uvchan__gone(r));
    return 1;
  }
  mg->waiting_ = 2;
  mg->node_.busy++;
  return 1;
}

/* Case `i` of the select completed with `status`; returns 1 when the merge must stop pumping. */
static int uvchan__merge_got(uvchan_merge_t* mg, int i, int status) {
  if (status == 0)
    return uvchan__merge_forward(mg);
  if (status == UV_EOF) {
    mg->cases_[i].chan = NULL; /* that input is done: switch its case off */
    if (--mg->nopen_ == 0) {
      if (!(mg->flags_ & UVCHAN_LEAVE_OPEN))
        (void)uvchan_close(mg->out_);
      uvchan__node_end(&mg->node_, 0);
      return 1;
    }
    return 0;
  }
  uvchan__merge_fail(mg, uvchan__gone(status));
  return 1;
}

static void uvchan__merge_wait(uvchan_merge_t* mg) {
  int r = uvchan_select(&mg->sel_, mg->cases_, mg->n_, uvchan__merge_on_select);
  if (r != 0) {
    uvchan__merge_fail(mg, uvchan__gone(r));
    return;
  }
  mg->waiting_ = 1;
  mg->node_.busy++;
}

static void uvchan__merge_pump(uvchan_merge_t* mg) {
  unsigned budget = UVCHAN__PUMP_BUDGET;
  int i, status;
  while (mg->node_.state == UVCHAN__N_RUNNING && mg->waiting_ == 0) {
    if (budget-- == 0) {
      uvchan__merge_wait(mg);
      return;
    }
    i = uvchan_try_select(mg->cases_, mg->n_, &status);
    if (i == UV_EAGAIN) {
      uvchan__merge_wait(mg);
      return;
    }
    if (i < 0) {
      uvchan__merge_fail(mg, uvchan__gone(i));
      return;
    }
    if (uvchan__merge_got(mg, i, status))
      return;
  }
}

static void uvchan__merge_on_select(uvchan_select_t* req, int status) {
  uvchan_merge_t* mg = UVCHAN__CONTAINER_OF(req, uvchan_merge_t, sel_);
  mg->node_.busy--;
  mg->waiting_ = 0;
  if (mg->node_.state != UVCHAN__N_RUNNING) {
    uvchan__node_maybe_closed(&mg->node_);
    return;
  }
  if (!uvchan__merge_got(mg, req->index, status))
    uvchan__merge_pump(mg);
}

static void uvchan__merge_on_sent(uvchan_send_t* req, int status) {
  uvchan_merge_t* mg = UVCHAN__CONTAINER_OF(req, uvchan_merge_t, send_);
  mg->node_.busy--;
  mg->waiting_ = 0;
  if (mg->node_.state != UVCHAN__N_RUNNING) {
    uvchan__node_maybe_closed(&mg->node_);
    return;
  }
  if (status != 0) {
    uvchan__destroy_value(mg->out_, mg->buf_);
    uvchan__merge_fail(mg, status);
    return;
  }
  mg->outputs++;
  uvchan__merge_pump(mg);
}

static void uvchan__merge_abort(uvchan__node* node, int status) {
  uvchan_merge_t* mg = UVCHAN__CONTAINER_OF(node, uvchan_merge_t, node_);
  int r;
  if (node->state != UVCHAN__N_RUNNING)
    return;
  node->state = UVCHAN__N_ENDED;
  mg->status = status;
  if (mg->waiting_ == 1) {
    r = uvchan_cancel((uvchan_req_t*)&mg->sel_);
    if (r == UV_EBUSY && mg->sel_.status == 0) /* a value arrived: the merge held it */
      uvchan__destroy_value(mg->out_, mg->buf_);
  } else if (mg->waiting_ == 2) {
    r = uvchan_cancel((uvchan_req_t*)&mg->send_);
    if (r == 0 || mg->send_.status != 0)
      uvchan__destroy_value(mg->out_, mg->buf_);
  }
  if (!(mg->flags_ & UVCHAN_LEAVE_OPEN))
    (void)uvchan_close(mg->out_);
  uvchan__node_end(node, status);
}

static void uvchan__merge_release(uvchan_merge_t* mg) {
  free(mg->cases_);
  free(mg->buf_);
  mg->cases_ = NULL;
  mg->buf_ = NULL;
}

int uvchan_merge_init(uvchan_ctx_t* ctx, uvchan_merge_t* merge, uvchan_t* const* ins, unsigned n,
                      uvchan_t* out, const uvchan_merge_opts_t* opts) {
  unsigned i, j, flags = opts != NULL ? opts->flags : 0;
  uvchan_pipeline_t* p = opts != NULL ? opts->pipeline : NULL;
  int err;

  if (!uvchan__ctx_open(ctx) || merge == NULL || ins == NULL || n == 0 || !uvchan__chan_ok(out) ||
      out->ctx_ != ctx || (flags & ~(unsigned)UVCHAN_LEAVE_OPEN) != 0 ||
      uvchan__node_check_pipe(ctx, p) != 0)
    return UV_EINVAL;
  for (i = 0; i < n; i++) {
    if (!uvchan__chan_ok(ins[i]) || ins[i] == out || ins[i]->ctx_ != ctx ||
        ins[i]->elem_size_ != out->elem_size_)
      return UV_EINVAL;
    for (j = 0; j < i; j++)
      if (ins[j] == ins[i])
        return UV_EINVAL;
  }
  if ((err = uvchan__node_gate(ctx, &merge->node_)) != 0)
    return err;
  memset(merge, 0, sizeof(*merge));
  merge->cases_ = malloc(n * sizeof(uvchan_case_t));
  merge->buf_ = malloc(out->elem_size_ != 0 ? out->elem_size_ : 1);
  if (merge->cases_ == NULL || merge->buf_ == NULL) {
    uvchan__merge_release(merge);
    return UV_ENOMEM;
  }
  for (i = 0; i < n; i++) {
    memset(&merge->cases_[i], 0, sizeof(uvchan_case_t));
    merge->cases_[i].chan = ins[i];
    merge->cases_[i].op = UVCHAN_OP_RECV;
    merge->cases_[i].value = merge->buf_;
  }
  merge->out_ = out;
  merge->n_ = n;
  merge->nopen_ = n;
  merge->flags_ = flags;
  uvchan__node_init(&merge->node_, ctx, UVCHAN__MERGE, p, NULL);
  return 0;
}

int uvchan_merge_start(uvchan_merge_t* merge, uvchan_merge_cb cb) {
  int err;
  if (merge == NULL || !uvchan__node_ok(&merge->node_, UVCHAN__MERGE))
    return UV_EINVAL;
  if ((err = uvchan__node_start(&merge->node_, (void (*)(void))cb)) != 0)
    return err;
  uvchan__merge_wait(merge);
  return 0;
}

int uvchan_merge_close(uvchan_merge_t* merge, uvchan_merge_close_cb cb) {
  if (merge == NULL || !uvchan__node_ok(&merge->node_, UVCHAN__MERGE))
    return UV_EINVAL;
  return uvchan__node_close(&merge->node_, (void (*)(void))cb);
}

/* ==== broadcast ==== */

static void uvchan__bcast_on_recv(uvchan_recv_t* req, int status);
static void uvchan__bcast_on_sent(uvchan_send_t* req, int status);

static void uvchan__bcast_fail(uvchan_broadcast_t* bc, int status) {
  uvchan__bcast_abort(&bc->node_, status);
}

static void uvchan__bcast_dtor(uvchan_broadcast_t* bc, void* value) {
  if (bc->dtor_ != NULL)
    bc->dtor_(bc->in_, value);
}

/* A subscriber's copy that was not taken: only a made copy owns anything. */
static void uvchan__bcast_discard_copy(uvchan_broadcast_t* bc) {
  if (bc->copy_ != NULL)
    uvchan__bcast_dtor(bc, bc->tmp_);
}

/* The round of cur_ is over: the broadcast's own value goes, if it was copied or nobody took it. */
static void uvchan__bcast_round_over(uvchan_broadcast_t* bc) {
  if (bc->copy_ != NULL || bc->taken_ == 0)
    uvchan__bcast_dtor(bc, bc->cur_);
  bc->have_ = 0;
}

/* Offers cur_ to the subscribers from next_ on; returns 1 when a send waits (or it failed). */
static int uvchan__bcast_offer(uvchan_broadcast_t* bc) {
  uvchan_sub_t* sub;
  int r;
  while (bc->next_ != &bc->subs_) {
    sub = UVCHAN__CONTAINER_OF(bc->next_, uvchan_sub_t, link_);
    bc->next_ = bc->next_->next;
    if (sub->status != 0)
      continue;
    if (bc->copy_ != NULL) {
      if ((r = bc->copy_(bc, bc->tmp_, bc->cur_)) < 0) {
        uvchan__bcast_fail(bc, r);
        return 1;
      }
    } else {
      memcpy(bc->tmp_, bc->cur_, bc->size_);
    }
    r = uvchan__try_send(&sub->chan, bc->tmp_);
    if (r == 0) {
      bc->taken_++;
      continue;
    }
    if (r == UV_EAGAIN && sub->policy_ == UVCHAN_LAG_BLOCK) {
      r = uvchan_send(&bc->send_, &sub->chan, bc->tmp_, uvchan__bcast_on_sent);
      if (r != 0) {
        uvchan__bcast_discard_copy(bc);
        uvchan__bcast_fail(bc, uvchan__gone(r));
        return 1;
      }
      bc->wsub_ = sub;
      bc->waiting_ = 2;
      bc->node_.busy++;
      return 1;
    }
    uvchan__bcast_discard_copy(bc);
    if (r == UV_EAGAIN) { /* UVCHAN_LAG_DISCONNECT */
      sub->status = UV_ENOBUFS;
      (void)uvchan_close(&sub->chan);
    } else {
      sub->status = uvchan__gone(r); /* its channel was closed or destroyed by someone else */
    }
  }
  uvchan__bcast_round_over(bc);
  return 0;
}

/* Every subscriber still connected: its channel closes, it drains and sees UV_EOF. */
static void uvchan__bcast_close_subs(uvchan_broadcast_t* bc, int status) {
  struct uvchan__link_s* l;
  uvchan_sub_t* sub;
  for (l = bc->subs_.next; l != &bc->subs_; l = l->next) {
    sub = UVCHAN__CONTAINER_OF(l, uvchan_sub_t, link_);
    if (sub->status == 0) {
      sub->status = status;
      (void)uvchan_close(&sub->chan);
    }
  }
}

static void uvchan__bcast_pump(uvchan_broadcast_t* bc) {
  unsigned budget = UVCHAN__PUMP_BUDGET;
  int r;

  if (bc->pumping_)
    return;
  bc->pumping_ = 1;
  while (bc->node_.state == UVCHAN__N_RUNNING && bc->waiting_ == 0) {
    if (bc->have_) {
      if (uvchan__bcast_offer(bc))
        break;
      continue;
    }
    r = budget-- == 0 ? UV_EAGAIN : uvchan__try_recv(bc->in_, bc->cur_);
    if (r == 0) {
      bc->inputs++;
      bc->have_ = 1;
      bc->taken_ = 0;
      bc->next_ = bc->subs_.next;
    } else if (r == UV_EAGAIN) {
      r = uvchan_recv(&bc->recv_, bc->in_, bc->cur_, uvchan__bcast_on_recv);
      if (r != 0) {
        uvchan__bcast_fail(bc, uvchan__gone(r));
        break;
      }
      bc->waiting_ = 1;
      bc->node_.busy++;
    } else if (r == UV_EOF) {
      uvchan__bcast_close_subs(bc, UV_EOF);
      uvchan__node_end(&bc->node_, 0);
    } else {
      uvchan__bcast_fail(bc, uvchan__gone(r));
    }
  }
  bc->pumping_ = 0;
}

static void uvchan__bcast_on_recv(uvchan_recv_t* req, int status) {
  uvchan_broadcast_t* bc = UVCHAN__CONTAINER_OF(req, uvchan_broadcast_t, recv_);
  bc->node_.busy--;
  bc->waiting_ = 0;
  if (bc->node_.state != UVCHAN__N_RUNNING) {
    uvchan__node_maybe_closed(&bc->node_);
    return;
  }
  if (status == 0) {
    bc->inputs++;
    bc->have_ = 1;
    bc->taken_ = 0;
    bc->next_ = bc->subs_.next;
  } else if (status == UV_EOF) {
    uvchan__bcast_close_subs(bc, UV_EOF);
    uvchan__node_end(&bc->node_, 0);
    return;
  } else {
    uvchan__bcast_fail(bc, status);
    return;
  }
  uvchan__bcast_pump(bc);
}

static void uvchan__bcast_on_sent(uvchan_send_t* req, int status) {
  uvchan_broadcast_t* bc = UVCHAN__CONTAINER_OF(req, uvchan_broadcast_t, send_);
  uvchan_sub_t* sub = bc->wsub_;
  bc->node_.busy--;
  bc->waiting_ = 0;
  bc->wsub_ = NULL;
  if (bc->node_.state != UVCHAN__N_RUNNING) { /* the abort settled the copy */
    uvchan__node_maybe_closed(&bc->node_);
    return;
  }
  if (status == 0) {
    bc->taken_++;
  } else {
    uvchan__bcast_discard_copy(bc);
    if (sub != NULL) /* NULL: unsubscribed meanwhile */
      sub->status = status;
  }
  uvchan__bcast_pump(bc);
}

static void uvchan__bcast_abort(uvchan__node* node, int status) {
  uvchan_broadcast_t* bc = UVCHAN__CONTAINER_OF(node, uvchan_broadcast_t, node_);
  int r;
  if (node->state != UVCHAN__N_RUNNING)
    return;
  node->state = UVCHAN__N_ENDED;
  bc->status = status;
  if (bc->waiting_ == 1) {
    r = uvchan_cancel((uvchan_req_t*)&bc->recv_);
    if (r == UV_EBUSY && bc->recv_.status == 0) { /* received, offered to nobody */
      bc->have_ = 1;
      bc->taken_ = 0;
    }
  } else if (bc->waiting_ == 2) {
    r = uvchan_cancel((uvchan_req_t*)&bc->send_);
    if (r == UV_EBUSY && bc->send_.status == 0)
      bc->taken_++;
    else
      uvchan__bcast_discard_copy(bc);
  }
  if (bc->have_)
    uvchan__bcast_round_over(bc);
  uvchan__bcast_close_subs(bc, status);
  uvchan__node_end(node, status);
}

int uvchan_broadcast_init(uvchan_ctx_t* ctx, uvchan_broadcast_t* bc, uvchan_t* in,
                          const uvchan_broadcast_opts_t* opts) {
  uvchan_pipeline_t* p = opts != NULL ? opts->pipeline : NULL;
  size_t sz;
  int err;
  if (!uvchan__ctx_open(ctx) || bc == NULL || !uvchan__chan_ok(in) || in->ctx_ != ctx ||
      uvchan__node_check_pipe(ctx, p) != 0)
    return UV_EINVAL;
  if ((err = uvchan__node_gate(ctx, &bc->node_)) != 0)
    return err;
  memset(bc, 0, sizeof(*bc));
  sz = in->elem_size_ != 0 ? in->elem_size_ : 1;
  bc->cur_ = malloc(2 * sz); /* cur_ and tmp_ in one block */
  if (bc->cur_ == NULL)
    return UV_ENOMEM;
  bc->tmp_ = bc->cur_ + sz;
  bc->in_ = in;
  bc->size_ = in->elem_size_;
  if (opts != NULL) {
    bc->copy_ = opts->copy;
    bc->dtor_ = opts->dtor;
  }
  uvchan__list_init(&bc->subs_);
  bc->next_ = &bc->subs_;
  uvchan__node_init(&bc->node_, ctx, UVCHAN__BCAST, p, NULL);
  return 0;
}

int uvchan_subscribe(uvchan_broadcast_t* bc, uvchan_sub_t* sub, size_t capacity,
                     uvchan_lag policy) {
  static const uvchan_overflow overflow[] = {UVCHAN_OVERFLOW_BLOCK, UVCHAN_OVERFLOW_DROP_OLDEST,
                                             UVCHAN_OVERFLOW_DROP_NEWEST, UVCHAN_OVERFLOW_BLOCK};
  int err;
  if (bc == NULL || !uvchan__node_ok(&bc->node_, UVCHAN__BCAST) || sub == NULL ||
      (unsigned)policy > UVCHAN_LAG_DISCONNECT || (capacity == 0 && policy != UVCHAN_LAG_BLOCK))
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(bc->node_.ctx, NULL)) != 0)
    return err;
  if (UVCHAN__MAGIC_IS(sub, UVCHAN__SUB_MAGIC))
    return UV_EBUSY;
  if (bc->node_.state > UVCHAN__N_RUNNING)
    return UV_EPIPE;
  memset(&sub->chan, 0, sizeof(sub->chan));
  if ((err = uvchan_init(bc->node_.ctx, &sub->chan, bc->size_, capacity)) != 0)
    return err;
  if (overflow[policy] != UVCHAN_OVERFLOW_BLOCK)
    (void)uvchan_set_overflow(&sub->chan, overflow[policy]);
  (void)uvchan_set_destructor(&sub->chan, bc->dtor_);
  sub->status = 0;
  sub->bc_ = bc;
  sub->policy_ = policy;
  sub->magic_ = UVCHAN__SUB_MAGIC;
  uvchan__list_push(&bc->subs_, &sub->link_);
  return 0;
}

int uvchan_unsubscribe(uvchan_sub_t* sub) {
  uvchan_broadcast_t* bc;
  if (sub == NULL || !UVCHAN__MAGIC_IS(sub, UVCHAN__SUB_MAGIC))
    return UV_EINVAL;
  bc = sub->bc_;
  if (!UVCHAN__ON_THREAD(bc->node_.ctx))
    return UV_EPERM;
  if (bc->wsub_ == sub) {
    /* The send comes back cancelled (its copy is then discarded), or with the real outcome if it
     * was matched: then the copy is in the channel destroyed below, which hands it to dtor. */
    (void)uvchan_cancel((uvchan_req_t*)&bc->send_);
    bc->wsub_ = NULL;
  }
  if (bc->next_ == &sub->link_)
    bc->next_ = sub->link_.next;
  uvchan__list_remove(&sub->link_);
  (void)uvchan_destroy(&sub->chan);
  sub->magic_ = 0;
  sub->bc_ = NULL;
  return 0;
}

int uvchan_broadcast_start(uvchan_broadcast_t* bc, uvchan_broadcast_cb cb) {
  int err;
  if (bc == NULL || !uvchan__node_ok(&bc->node_, UVCHAN__BCAST))
    return UV_EINVAL;
  if ((err = uvchan__node_start(&bc->node_, (void (*)(void))cb)) != 0)
    return err;
  err = uvchan_recv(&bc->recv_, bc->in_, bc->cur_, uvchan__bcast_on_recv);
  if (err != 0) { /* only a channel destroyed since init */
    uvchan__bcast_fail(bc, uvchan__gone(err));
    return 0;
  }
  bc->waiting_ = 1;
  bc->node_.busy++;
  return 0;
}

int uvchan_broadcast_close(uvchan_broadcast_t* bc, uvchan_broadcast_close_cb cb) {
  int err;
  if (bc == NULL || !uvchan__node_ok(&bc->node_, UVCHAN__BCAST))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(bc->node_.ctx))
    return UV_EPERM;
  if (bc->node_.state >= UVCHAN__N_CLOSING)
    return UV_EINVAL;
  if (bc->node_.state == UVCHAN__N_RUNNING)
    uvchan__bcast_abort(&bc->node_, UV_ECANCELED);
  while (!uvchan__list_empty(&bc->subs_))
    (void)uvchan_unsubscribe(UVCHAN__CONTAINER_OF(bc->subs_.next, uvchan_sub_t, link_));
  err = uvchan__node_close(&bc->node_, (void (*)(void))cb);
  return err;
}

/* ==== the pipeline group's calls ==== */

static void uvchan__node_close_any(uvchan__node* node) {
  switch (node->kind) {
    case UVCHAN__STAGE:
      (void)uvchan_stage_close(UVCHAN__CONTAINER_OF(node, uvchan_stage_t, node_), NULL);
      break;
    case UVCHAN__MERGE:
      (void)uvchan_merge_close(UVCHAN__CONTAINER_OF(node, uvchan_merge_t, node_), NULL);
      break;
    case UVCHAN__BCAST:
      (void)uvchan_broadcast_close(UVCHAN__CONTAINER_OF(node, uvchan_broadcast_t, node_), NULL);
      break;
    default:
      (void)uvchan__node_close(node, NULL);
      break;
  }
}

/* A graceful shutdown of the context closes the object (uvchan_ctx_shutdown()). */
static void uvchan__node_shutdown(struct uvchan__res_s* res) {
  uvchan__node_close_any(UVCHAN__CONTAINER_OF(res, uvchan__node, res));
}

int uvchan_pipeline_init(uvchan_ctx_t* ctx, uvchan_pipeline_t* pipeline) {
  int err;
  if (!uvchan__ctx_open(ctx) || pipeline == NULL)
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  if (UVCHAN__MAGIC_IS(pipeline, UVCHAN__PIPE_MAGIC))
    return UV_EBUSY;
  memset(pipeline, 0, sizeof(*pipeline));
  pipeline->ctx_ = ctx;
  uvchan__list_init(&pipeline->members_);
  pipeline->magic_ = UVCHAN__PIPE_MAGIC;
  return 0;
}

int uvchan_pipeline_start(uvchan_pipeline_t* pipeline, uvchan_pipeline_cb cb) {
  struct uvchan__link_s* l;
  uvchan__node* m;
  int err;
  if (!uvchan__pipe_ok(pipeline))
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(pipeline->ctx_, NULL)) != 0)
    return err;
  if (pipeline->state_ != 0)
    return UV_EINVAL;
  pipeline->cb_ = cb;
  pipeline->state_ = UVCHAN__P_STARTED;
  for (l = pipeline->members_.next; l != &pipeline->members_; l = l->next) {
    m = UVCHAN__CONTAINER_OF(l, uvchan__node, plink);
    if (m->state != UVCHAN__N_INIT)
      continue;
    switch (m->kind) {
      case UVCHAN__STAGE:
        (void)uvchan_stage_start(UVCHAN__CONTAINER_OF(m, uvchan_stage_t, node_), NULL);
        break;
      case UVCHAN__MERGE:
        (void)uvchan_merge_start(UVCHAN__CONTAINER_OF(m, uvchan_merge_t, node_), NULL);
        break;
      case UVCHAN__BCAST:
        (void)uvchan_broadcast_start(UVCHAN__CONTAINER_OF(m, uvchan_broadcast_t, node_), NULL);
        break;
      default:
        (void)uvchan__node_ext_start(m, NULL);
        break;
    }
  }
  uvchan__pipe_maybe_ended(pipeline); /* no members, or all ended already */
  return 0;
}

int uvchan_pipeline_close(uvchan_pipeline_t* pipeline, uvchan_pipeline_cb cb) {
  struct uvchan__link_s* l;
  uvchan__node* m;
  if (!uvchan__pipe_ok(pipeline))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(pipeline->ctx_))
    return UV_EPERM;
  if (pipeline->state_ & UVCHAN__P_CLOSING)
    return UV_EINVAL;
  pipeline->state_ |= UVCHAN__P_CLOSING;
  pipeline->close_cb_ = cb;
  for (l = pipeline->members_.next; l != &pipeline->members_; l = l->next) {
    m = UVCHAN__CONTAINER_OF(l, uvchan__node, plink);
    if (m->state < UVCHAN__N_CLOSING)
      uvchan__node_close_any(m);
  }
  if (uvchan__list_empty(&pipeline->members_))
    uvchan__notify(&pipeline->close_req_, pipeline->ctx_, uvchan__pipe_on_closed, 0);
  return 0;
}
