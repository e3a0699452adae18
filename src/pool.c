/* The threadpool: a map that feeds libuv's threadpool from one channel and sends the results to
 * another in input order, and the task helper that awaits one job.
 *
 * The map is a window of k_ job slots over the stream of items: item number i lives in slot
 * i % k_ from its receive until its result is sent. head_ counts the items received, tail_ the
 * results sent; head_ - tail_ <= k_ always, so at most k_ jobs are in the threadpool, and while
 * the window is full the map receives nothing: a slow consumer of the output stops the intake.
 * Results leave strictly in order: a job that finishes early waits in its slot until those before
 * it are sent.
 *
 * Everything the map does runs from the loop, in the callbacks of its own requests (one receive
 * and one send at most, both ordinary callback requests on the two channels) and of
 * uv_queue_work(): uvchan__map_pump() is the one place that decides what to do next, after each
 * event. While the map is active, one of those callbacks is always pending (a receive, a send, or
 * a job), so `done` is always called from one of them, never from a start or stop call.
 *
 * A job runs on a threadpool thread and touches only its own slot (the item and the result, set
 * up before uv_queue_work(), read back after its after-work callback: libuv's queue orders
 * both). */
#include "uvchan-internal.h"

#include <stdlib.h>

#define UVCHAN__MAP_MAGIC 0x756d6170u /* "umap" */

/* A slot's state. */
enum {
  UVCHAN__JOB_FREE = 0,
  UVCHAN__JOB_QUEUED,    /* handed to uv_queue_work(), its after-work callback not run yet */
  UVCHAN__JOB_DONE,      /* its result is ready to send */
  UVCHAN__JOB_FAILED,    /* the job returned an error */
  UVCHAN__JOB_CANCELLED  /* removed from the threadpool's queue before it ran */
};

/* Map flags_. */
enum {
  UVCHAN__MAP_RECV = 1u << 0, /* recv_ is pending */
  UVCHAN__MAP_SEND = 1u << 1, /* send_ is pending */
  UVCHAN__MAP_EOF = 1u << 2,  /* the input is closed and drained */
  UVCHAN__MAP_STOP = 1u << 3, /* stopping: no more receives or jobs */
  UVCHAN__MAP_CLOSE_OUT = 1u << 4,
  UVCHAN__MAP_SHUTDOWN = 1u << 5 /* the context's shutdown stopped it (uvchan__ctx_closing_begin) */
};

struct uvchan__job_s {
  uv_work_t work;
  uvchan_work_map_t* map;
  void* in;
  void* out;
  uint64_t seq;
  int status; /* what the job returned */
  unsigned state;
};

#define UVCHAN__JOB(map, seq) (&(map)->jobs_[(seq) % (map)->k_])

static void uvchan__map_pump(uvchan_work_map_t* map);

/* ---- jobs ---- */

static void uvchan__job_run(uv_work_t* w) {
  struct uvchan__job_s* j = UVCHAN__CONTAINER_OF(w, struct uvchan__job_s, work);
  j->status = j->map->work_(j->map, j->in, j->out);
}

/* Stops the map (receives nothing, starts no job) with `status` unless it is stopping already.
 * Results before `end` may still be sent; queued jobs from `end` on are cancelled, as are the
 * pending receive and, when nothing more may be sent, the pending send. */
static void uvchan__map_stop(uvchan_work_map_t* map, int status, uint64_t end) {
  uint64_t s;
  if (map->status_ == 0)
    map->status_ = status;
  if (end < map->end_)
    map->end_ = end;
  map->flags_ |= UVCHAN__MAP_STOP;
  if (map->flags_ & UVCHAN__MAP_RECV)
    (void)uvchan_cancel((uvchan_req_t*)&map->recv_); /* its callback comes from the loop */
  if ((map->flags_ & UVCHAN__MAP_SEND) && map->end_ <= map->tail_)
    (void)uvchan_cancel((uvchan_req_t*)&map->send_); /* UV_EBUSY: it was sent, fine */
  for (s = map->end_ > map->tail_ ? map->end_ : map->tail_; s < map->head_; s++)
    if (UVCHAN__JOB(map, s)->state == UVCHAN__JOB_QUEUED)
      (void)uv_cancel((uv_req_t*)&UVCHAN__JOB(map, s)->work); /* UV_EBUSY once it runs */
}

static void uvchan__job_after(uv_work_t* w, int status) {
  struct uvchan__job_s* j = UVCHAN__CONTAINER_OF(w, struct uvchan__job_s, work);
  uvchan_work_map_t* map = j->map;

  map->running_--;
  if (status == UV_ECANCELED) {
    j->state = UVCHAN__JOB_CANCELLED;
  } else if (j->status < 0) {
    j->state = UVCHAN__JOB_FAILED;
    uvchan__map_stop(map, j->status, j->seq); /* the results before it still go out */
  } else {
    j->state = UVCHAN__JOB_DONE;
  }
  uvchan__map_pump(map);
}

static void uvchan__job_start(uvchan_work_map_t* map) {
  struct uvchan__job_s* j = UVCHAN__JOB(map, map->head_);
  j->seq = map->head_++;
  j->state = UVCHAN__JOB_QUEUED;
  map->running_++;
  (void)uv_queue_work(map->ctx_->loop, &j->work, uvchan__job_run, uvchan__job_after);
}

/* ---- the two requests ---- */

static void uvchan__map_received(uvchan_recv_t* req, int status) {
  uvchan_work_map_t* map = UVCHAN__CONTAINER_OF(req, uvchan_work_map_t, recv_);
  map->flags_ &= ~UVCHAN__MAP_RECV;
  if (status == 0 && !(map->flags_ & UVCHAN__MAP_STOP)) {
    uvchan__job_start(map);
  } else if (status == 0) {
    /* matched just before a stop cancelled it: the item is the map's, dropped at the finish */
    UVCHAN__JOB(map, map->head_)->state = UVCHAN__JOB_CANCELLED;
    map->head_++;
  } else if (status == UV_EOF)
    map->flags_ |= UVCHAN__MAP_EOF;
  else if (status != 0)
    uvchan__map_stop(map, UV_ECANCELED, map->tail_); /* cancelled, or `in` destroyed */
  uvchan__map_pump(map);
}

static void uvchan__map_sent(uvchan_send_t* req, int status) {
  uvchan_work_map_t* map = UVCHAN__CONTAINER_OF(req, uvchan_work_map_t, send_);
  map->flags_ &= ~UVCHAN__MAP_SEND;
  if (status == 0) {
    UVCHAN__JOB(map, map->tail_)->state = UVCHAN__JOB_FREE;
    map->tail_++;
  } else {
    uvchan__map_stop(map, status == UV_EPIPE ? UV_EPIPE : UV_ECANCELED, map->tail_);
  }
  uvchan__map_pump(map);
}

/* ---- the state machine ---- */

/* The map has stopped and nothing of it is pending: drops what it holds, closes the output if
 * asked, and reports. The map may be freed by `done`, so nothing touches it afterwards. */
static void uvchan__map_finish(uvchan_work_map_t* map) {
  uvchan_ctx_t* ctx = map->ctx_;
  unsigned flags = map->flags_;
  struct uvchan__job_s* j;
  uint64_t s;

  for (s = map->tail_; s < map->head_; s++) {
    j = UVCHAN__JOB(map, s);
    if (map->discard_ != NULL && j->state == UVCHAN__JOB_DONE)
      map->discard_(map, j->in, j->out);
    else if (map->discard_ != NULL && j->state == UVCHAN__JOB_CANCELLED)
      map->discard_(map, j->in, NULL);
  }
  if (flags & UVCHAN__MAP_CLOSE_OUT)
    (void)uvchan_close(map->out_); /* UV_EPIPE if someone closed it already */
  free(map->jobs_);
  map->jobs_ = NULL;
  map->magic_ = 0;
  if (!(flags & UVCHAN__MAP_SHUTDOWN))
    uvchan__res_remove(ctx, &map->res_);
  map->done_(map, map->status_);
  if (flags & UVCHAN__MAP_SHUTDOWN)
    uvchan__ctx_closing_end(ctx);
}

/* Sends the results that are next in order, receives while the window has room, and finishes
 * when nothing is left to do. Try-operations first: a request only when one must wait. */
static void uvchan__map_pump(uvchan_work_map_t* map) {
  struct uvchan__job_s* j;
  int r;

  while (!(map->flags_ & UVCHAN__MAP_SEND) && map->tail_ < map->head_ && map->tail_ < map->end_) {
    j = UVCHAN__JOB(map, map->tail_);
    if (j->state != UVCHAN__JOB_DONE)
      break;
    r = uvchan_try_send(map->out_, j->out);
    if (r == 0) {
      j->state = UVCHAN__JOB_FREE;
      map->tail_++;
      continue;
    }
    if (r == UV_EAGAIN &&
        (r = uvchan_send(&map->send_, map->out_, j->out, uvchan__map_sent)) == 0) {
      map->flags_ |= UVCHAN__MAP_SEND;
      break;
    }
    uvchan__map_stop(map, r == UV_EPIPE ? UV_EPIPE : UV_ECANCELED, map->tail_);
  }
  while (!(map->flags_ & (UVCHAN__MAP_RECV | UVCHAN__MAP_EOF | UVCHAN__MAP_STOP)) &&
         map->head_ - map->tail_ < map->k_) {
    j = UVCHAN__JOB(map, map->head_);
    r = uvchan_try_recv(map->in_, j->in);
    if (r == 0) {
      uvchan__job_start(map);
      continue;
    }
    if (r == UV_EAGAIN &&
        (r = uvchan_recv(&map->recv_, map->in_, j->in, uvchan__map_received)) == 0) {
      map->flags_ |= UVCHAN__MAP_RECV;
      break;
    }
    if (r == UV_EOF)
      map->flags_ |= UVCHAN__MAP_EOF;
    else
      uvchan__map_stop(map, UV_ECANCELED, map->tail_);
  }
  if (!(map->flags_ & (UVCHAN__MAP_RECV | UVCHAN__MAP_SEND)) && map->running_ == 0 &&
      ((map->flags_ & UVCHAN__MAP_STOP) ||
       ((map->flags_ & UVCHAN__MAP_EOF) && map->tail_ == map->head_)))
    uvchan__map_finish(map);
}

/* The context's graceful shutdown stops the map; the context's close waits for its end. */
static void uvchan__map_shutdown(struct uvchan__res_s* res) {
  uvchan_work_map_t* map = UVCHAN__CONTAINER_OF(res, uvchan_work_map_t, res_);
  uvchan__res_remove(map->ctx_, res);
  uvchan__ctx_closing_begin(map->ctx_);
  map->flags_ |= UVCHAN__MAP_SHUTDOWN;
  if (!(map->flags_ & UVCHAN__MAP_STOP))
    uvchan__map_stop(map, UV_ECANCELED, map->tail_);
}

/* ---- public calls ---- */

static int uvchan__map_chan_ok(const uvchan_ctx_t* ctx, const uvchan_t* ch) {
  return uvchan__chan_live(ch) && ch->ctx_ == ctx;
}

int uvchan_work_map_start(uvchan_ctx_t* ctx, uvchan_work_map_t* map, unsigned k, uvchan_t* in,
                          uvchan_t* out, uvchan_work_fn work, uvchan_work_map_cb done,
                          const uvchan_work_map_attr_t* attr) {
  size_t in_size, out_size, per, i;
  char* mem;
  int err;

  if (!uvchan__ctx_ok(ctx) || map == NULL || k == 0 || work == NULL || done == NULL ||
      (ctx->flags_ & UVCHAN__CTX_CLOSING) || !uvchan__map_chan_ok(ctx, in) ||
      !uvchan__map_chan_ok(ctx, out))
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, &map->magic_)) != 0)
    return err;
  if (map->magic_ == UVCHAN__MAP_MAGIC)
    return UV_EINVAL; /* running */
  in_size = in->elem_size_;
  out_size = out->elem_size_;
  per = sizeof(struct uvchan__job_s) + in_size + out_size; /* element sizes fit in memory */
  if (per < in_size || k > SIZE_MAX / per)
    return UV_ENOMEM;
  mem = calloc(k, per);
  if (mem == NULL)
    return UV_ENOMEM;
  map->ctx_ = ctx;
  map->in_ = in;
  map->out_ = out;
  map->work_ = work;
  map->done_ = done;
  map->discard_ = attr != NULL ? attr->discard : NULL;
  map->jobs_ = (struct uvchan__job_s*)mem;
  map->items_ = mem + k * sizeof(struct uvchan__job_s);
  map->results_ = map->items_ + k * in_size;
  map->head_ = map->tail_ = 0;
  map->end_ = UINT64_MAX;
  map->k_ = k;
  map->running_ = 0;
  map->flags_ = attr != NULL && (attr->flags & UVCHAN_WORK_MAP_CLOSE_OUT) ? UVCHAN__MAP_CLOSE_OUT : 0;
  map->status_ = 0;
  for (i = 0; i < k; i++) {
    map->jobs_[i].map = map;
    map->jobs_[i].in = map->items_ + i * in_size;
    map->jobs_[i].out = map->results_ + i * out_size;
  }
  /* The first receive is a request even when an item waits: nothing may complete in here. */
  memset(&map->recv_, 0, sizeof(map->recv_));
  memset(&map->send_, 0, sizeof(map->send_));
  err = uvchan_recv(&map->recv_, in, map->jobs_[0].in, uvchan__map_received);
  if (err != 0) {
    free(mem);
    map->jobs_ = NULL;
    return err;
  }
  map->flags_ |= UVCHAN__MAP_RECV;
  map->magic_ = UVCHAN__MAP_MAGIC;
  uvchan__res_add(ctx, &map->res_, uvchan__map_shutdown);
  return 0;
}

int uvchan_work_map_stop(uvchan_work_map_t* map) {
  if (map == NULL || map->magic_ != UVCHAN__MAP_MAGIC || (map->flags_ & UVCHAN__MAP_STOP))
    return UV_EINVAL;
  if (!UVCHAN__ON_THREAD(map->ctx_))
    return UV_EPERM;
  uvchan__map_stop(map, UV_ECANCELED, map->tail_);
  return 0;
}

int uvchan_work_map_active(const uvchan_work_map_t* map) {
  return map != NULL && map->magic_ == UVCHAN__MAP_MAGIC;
}

/* ---- a task awaiting one job ---- */

typedef struct {
  uv_work_t req;
  uvchan_await_t aw;
  uvchan_task_work_fn fn;
  void* arg;
} uvchan__task_job_t;

static void uvchan__task_job_run(uv_work_t* w) {
  uvchan__task_job_t* j = UVCHAN__CONTAINER_OF(w, uvchan__task_job_t, req);
  j->fn(j->arg);
}

static void uvchan__task_job_after(uv_work_t* w, int status) {
  uvchan__task_job_t* j = UVCHAN__CONTAINER_OF(w, uvchan__task_job_t, req);
  uvchan_await_done(&j->aw, status);
}

static void uvchan__task_job_cancel(uvchan_await_t* aw) {
  uvchan__task_job_t* j = UVCHAN__CONTAINER_OF(aw, uvchan__task_job_t, aw);
  (void)uv_cancel((uv_req_t*)&j->req); /* UV_EBUSY once it runs: then it is waited for */
}

static int uvchan__task_work(uvchan_task_work_fn fn, void* arg, uint64_t timeout, int has_deadline) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan__task_job_t j;
  int err;

  if (t == NULL || fn == NULL)
    return UV_EINVAL;
  if (uvchan_task_cancelled())
    return UV_ECANCELED; /* as every blocking call of a cancelled task: the job never starts */
  j.fn = fn;
  j.arg = arg;
  (void)uvchan_await_init(&j.aw, uvchan__task_job_cancel, NULL);
  err = uv_queue_work(uvchan__task_own_req(t)->ctx_->loop, &j.req, uvchan__task_job_run,
                      uvchan__task_job_after);
  if (err != 0)
    return err;
  /* Without a release callback the task always waits for the after-work callback: `arg` and `j`
   * may live on its stack. */
  return (int)(has_deadline ? uvchan_task_await_timeout(&j.aw, timeout) : uvchan_task_await(&j.aw));
}

int uvchan_task_work(uvchan_task_work_fn fn, void* arg) {
  return uvchan__task_work(fn, arg, 0, 0);
}

int uvchan_task_work_timeout(uvchan_task_work_fn fn, void* arg, uint64_t timeout) {
  return uvchan__task_work(fn, arg, timeout, 1);
}
