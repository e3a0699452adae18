/* uvchan_nats connections: connect and close off the loop, the event queue the client's threads
 * post to, the inbox that replies and JetStream acknowledgements come back on, task calls, and
 * the mapping of the client's statuses to libuv codes. */
#include "nats-internal.h"

#include <stdio.h>

/* ---- codes ---- */

int uvchan_nats_err(natsStatus s) {
  switch (s) {
    case NATS_OK: return 0;
    case NATS_TIMEOUT:
    case NATS_MISSED_HEARTBEAT: return UV_ETIMEDOUT;
    case NATS_NO_SERVER: return UV_ECONNREFUSED;
    case NATS_CONNECTION_CLOSED: return UV_ENOTCONN;
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_STALE_CONNECTION: return UV_ECONNRESET;
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_ARG:
    case NATS_INVALID_TIMEOUT:
    case NATS_ADDRESS_MISSING:
    case NATS_INVALID_QUEUE_NAME: return UV_EINVAL;
    case NATS_INVALID_SUBSCRIPTION:
    case NATS_ILLEGAL_STATE: return UV_EBADF;
    case NATS_NO_RESPONDERS:
    case NATS_NOT_FOUND: return UV_ENOENT;
    case NATS_SLOW_CONSUMER:
    case NATS_INSUFFICIENT_BUFFER: return UV_ENOBUFS;
    case NATS_MAX_PAYLOAD: return UV_E2BIG;
    case NATS_NO_MEMORY: return UV_ENOMEM;
    case NATS_NOT_PERMITTED:
    case NATS_CONNECTION_AUTH_FAILED: return UV_EACCES;
    case NATS_PROTOCOL_ERROR:
    case NATS_SSL_ERROR:
    case NATS_SECURE_CONNECTION_WANTED:
    case NATS_SECURE_CONNECTION_REQUIRED: return UV_EPROTO;
    case NATS_NO_SERVER_SUPPORT: return UV_ENOTSUP;
    case NATS_DRAINING: return UV_ECANCELED;
    default: return UV_EIO;
  }
}

int uvchan_nats_js_err(natsStatus s, jsErrCode code) {
  switch ((int)code) {
    case 0: return uvchan_nats_err(s);
    case JSStreamNotFoundErr:
    case JSConsumerNotFoundErr:
    case JSNoMessageFoundErr: return UV_ENOENT;
    case JSStreamNameExistErr:
    case JSConsumerNameExistErr: return UV_EEXIST;
    case JSStreamMessageExceedsMaximumErr: return UV_E2BIG;
    case JSAccountResourcesExceededErr:
    case JSInsufficientResourcesErr:
    case JSMemoryResourcesExceededErr:
    case JSStorageResourcesExceededErr:
    case JSStreamLimitsErr:
    case JSStreamStoreFailedErr: return UV_ENOSPC; /* "maximum messages exceeded" and the like */
    default: return s == NATS_OK ? UV_EIO : uvchan_nats_err(s);
  }
}

int uvchan_nats_subject_check(const char* subject, int wildcards) {
  const char* p;
  const char* tok;
  size_t n;

  if (subject == NULL || *subject == '\0' || strlen(subject) > 1024)
    return UV_EINVAL;
  for (p = tok = subject;; p++) {
    if (*p == '.' || *p == '\0') {
      n = (size_t)(p - tok);
      if (n == 0)
        return UV_EINVAL; /* an empty token */
      if (n == 1 && (*tok == '*' || *tok == '>')) {
        if (!wildcards || (*tok == '>' && *p != '\0'))
          return UV_EINVAL;
      }
      if (*p == '\0')
        return 0;
      tok = p + 1;
    } else if ((unsigned char)*p <= ' ' || *p == 0x7f) {
      return UV_EINVAL; /* white space would split the protocol line */
    }
  }
}

/* ---- threads ---- */

int uvchan_nats__on_thread(const uvchan_nats_t* nc) {
  return uvchan_ctx_check(nc->ctx, 0) == 0;
}

void uvchan_nats__bury(uvchan_nats_t* nc, natsSubscription* sub) {
  natsSubscription** g = realloc(nc->graves_, (nc->ngraves_ + 1) * sizeof(*g));
  if (g == NULL) {
    natsSubscription_Destroy(sub); /* out of memory: late acknowledgements are the user's risk */
    return;
  }
  nc->graves_ = g;
  g[nc->ngraves_++] = sub;
}

void uvchan_nats__free_msg_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  natsMsg_Destroy(*(natsMsg**)value);
}

/* ---- the event queue ---- */

static int uvchan_nats__grow(uvchan_nats_t* nc) {
  size_t cap = nc->evcap_ * 2;
  void* q = realloc(nc->evq_, cap * sizeof(uvchan_nats__ev_t));
  if (q == NULL)
    return UV_ENOMEM;
  nc->evq_ = q;
  nc->evcap_ = cap;
  return 0;
}

int uvchan_nats__post(uvchan_nats_t* nc, int kind, void* a, void* b, int status) {
  uvchan_nats__ev_t* ev;

  for (;;) {
    uv_mutex_lock(&nc->lock_);
    if (nc->evclosed_) {
      uv_mutex_unlock(&nc->lock_);
      return UV_ECANCELED;
    }
    if (nc->evlen_ < nc->evcap_ || uvchan_nats__grow(nc) == 0)
      break;
    uv_mutex_unlock(&nc->lock_);
    /* Out of memory: an event may not be lost (the close waits for some), so wait for some. */
    uv_sleep(1);
  }
  ev = (uvchan_nats__ev_t*)nc->evq_ + nc->evlen_++;
  ev->kind = kind;
  ev->status = status;
  ev->a = a;
  ev->b = b;
  /* Wake-ups coalesce: one per batch. Under the lock, so that the close (which sets evclosed_
   * under it before closing the handle) never races with uv_async_send. */
  if (nc->evlen_ == 1)
    uv_async_send(&nc->async_);
  uv_mutex_unlock(&nc->lock_);
  return 0;
}

void uvchan_nats__defer(uvchan_nats_t* nc, void* obj, void (*fn)(void*)) {
  /* From the loop's thread, so that a callback never runs inside the call that asked for it. A
   * function pointer travels as data in `b`: POSIX guarantees the round trip. */
  void* f;
  memcpy(&f, &fn, sizeof(f));
  (void)uvchan_nats__post(nc, UVCHAN_NATS__EV_CALLBACK, obj, f, 0);
}

static void uvchan_nats__job_main(void* arg) {
  uvchan_nats__job_t* job = arg;
  job->work(job);
  /* Its last touch: the loop joins the thread, then calls done. (A connect that was called off
   * before it began has no one to tell: its starter joins it.) */
  if (job->nc != NULL)
    (void)uvchan_nats__post(job->nc, UVCHAN_NATS__EV_JOB_DONE, job, NULL, 0);
}

int uvchan_nats__job_start(uvchan_nats_t* nc, uvchan_nats__job_t* job) {
  int err;
  job->nc = nc;
  if ((err = uv_thread_create(&job->tid, uvchan_nats__job_main, job)) != 0)
    return err;
  if (UVCHAN__MAGIC_IS(nc, UVCHAN_NATS__MAGIC))
    uvchan_nats__active(nc, 1); /* its end comes through the async handle */
  return 0;
}

/* The connection's own job (its connect, then its close): its thread starts before the async
 * handle exists, so that no failure can leave a handle to close in memory that is the caller's
 * again; it waits for `go` before the connect. */
typedef struct {
  uvchan_nats__job_t job;
  uv_sem_t go;
  int cancel;
} uvchan_nats__conn_job_t;

static void uvchan_nats__job_done(uvchan_nats_t* nc, uvchan_nats__job_t* job) {
  uv_thread_join(&job->tid); /* it posted as its last act: no wait to speak of */
  uvchan_nats__active(nc, -1);
  job->done(job);
}

void uvchan_nats__active(uvchan_nats_t* nc, int delta) {
  nc->nactive_ += (size_t)(ssize_t)delta;
  if (nc->nactive_ > 0 && !(nc->flags_ & UVCHAN_NATS__F_REFD)) {
    nc->flags_ |= UVCHAN_NATS__F_REFD;
    uv_ref((uv_handle_t*)&nc->async_);
  } else if (nc->nactive_ == 0 && (nc->flags_ & UVCHAN_NATS__F_REFD)) {
    nc->flags_ &= ~UVCHAN_NATS__F_REFD;
    uv_unref((uv_handle_t*)&nc->async_);
  }
}

void uvchan_nats__event(uvchan_nats_t* nc, uvchan_nats_event ev, uvchan_nats_sub_t* sub,
                        int status) {
  if (nc->event_cb_ != NULL)
    nc->event_cb_(nc, ev, sub, status);
}

/* ---- pending replies: token -> waiter ---- */

void uvchan_nats__reply_subject(const uvchan_nats_t* nc, uint64_t token, char* buf) {
  memcpy(buf, nc->inbox_, nc->inbox_len_);
  uvchan_nats__u64(buf + nc->inbox_len_, token);
}

static int uvchan_nats__map_grow(uvchan_nats_t* nc) {
  size_t n = nc->nbuckets_ == 0 ? 64 : nc->nbuckets_ * 2, i;
  uvchan_nats__pending_t** b = calloc(n, sizeof(*b));
  uvchan_nats__pending_t* p;
  uvchan_nats__pending_t* next;
  if (b == NULL)
    return UV_ENOMEM;
  for (i = 0; i < nc->nbuckets_; i++) {
    for (p = nc->map_[i]; p != NULL; p = next) {
      next = p->hnext;
      p->hnext = b[p->token & (n - 1)];
      b[p->token & (n - 1)] = p;
    }
  }
  free(nc->map_);
  nc->map_ = b;
  nc->nbuckets_ = n;
  return 0;
}

/* Tokens count up, so the low bits spread them over the buckets evenly. Returns the token, or 0
 * when the table could not be allocated. */
uint64_t uvchan_nats__map_add(uvchan_nats_t* nc, uvchan_nats__pending_t* p) {
  size_t h;
  if (nc->nmap_ >= nc->nbuckets_ && uvchan_nats__map_grow(nc) != 0 && nc->nbuckets_ == 0)
    return 0;
  p->token = ++nc->next_token_;
  h = p->token & (nc->nbuckets_ - 1);
  p->hnext = nc->map_[h];
  nc->map_[h] = p;
  nc->nmap_++;
  return p->token;
}

static uvchan_nats__pending_t** uvchan_nats__map_slot(uvchan_nats_t* nc, uint64_t token) {
  uvchan_nats__pending_t** pp;
  if (nc->nbuckets_ == 0)
    return NULL;
  for (pp = &nc->map_[token & (nc->nbuckets_ - 1)]; *pp != NULL; pp = &(*pp)->hnext)
    if ((*pp)->token == token)
      return pp;
  return NULL;
}

static uvchan_nats__pending_t* uvchan_nats__map_unlink(uvchan_nats_t* nc,
                                                       uvchan_nats__pending_t** pp) {
  uvchan_nats__pending_t* p = *pp;
  *pp = p->hnext;
  p->hnext = NULL;
  nc->nmap_--;
  return p;
}

int uvchan_nats__map_remove(uvchan_nats_t* nc, uvchan_nats__pending_t* p) {
  uvchan_nats__pending_t** pp = uvchan_nats__map_slot(nc, p->token);
  if (pp == NULL || *pp != p)
    return 0;
  (void)uvchan_nats__map_unlink(nc, pp);
  return 1;
}

static void uvchan_nats__on_reply(uvchan_nats_t* nc, natsMsg* msg) {
  const char* subj = natsMsg_GetSubject(msg);
  uvchan_nats__pending_t** pp;
  uvchan_nats__pending_t* p;
  uint64_t token = 0;
  const char* d;

  if (subj == NULL || strncmp(subj, nc->inbox_, nc->inbox_len_) != 0) {
    natsMsg_Destroy(msg);
    return;
  }
  for (d = subj + nc->inbox_len_; *d >= '0' && *d <= '9'; d++)
    token = token * 10 + (uint64_t)(*d - '0');
  pp = *d == '\0' ? uvchan_nats__map_slot(nc, token) : NULL;
  if (pp == NULL) { /* late: its waiter gave up (deadline, cancel) */
    natsMsg_Destroy(msg);
    return;
  }
  p = uvchan_nats__map_unlink(nc, pp);
  p->on_reply(p, msg, 0);
}

/* Ends every waiter with `status` (the connection closes or was lost). */
static void uvchan_nats__fail_pending(uvchan_nats_t* nc, int status) {
  uvchan_nats__pending_t* p;
  size_t i;
  for (i = 0; i < nc->nbuckets_; i++) {
    while (nc->map_[i] != NULL) {
      p = uvchan_nats__map_unlink(nc, &nc->map_[i]);
      p->on_reply(p, NULL, status);
    }
  }
}

/* ---- the client's callbacks (its threads) ---- */

static void uvchan_nats__on_closed(natsConnection* conn, void* closure) {
  (void)conn;
  (void)uvchan_nats__post(closure, UVCHAN_NATS__EV_CLOSED, NULL, NULL, 0);
}

static void uvchan_nats__on_disconnected(natsConnection* conn, void* closure) {
  (void)conn;
  (void)uvchan_nats__post(closure, UVCHAN_NATS__EV_DISCONNECTED, NULL, NULL, 0);
}

static void uvchan_nats__on_reconnected(natsConnection* conn, void* closure) {
  (void)conn;
  (void)uvchan_nats__post(closure, UVCHAN_NATS__EV_RECONNECTED, NULL, NULL, 0);
}

static void uvchan_nats__on_error(natsConnection* conn, natsSubscription* s, natsStatus err,
                                  void* closure) {
  (void)conn;
  (void)uvchan_nats__post(closure, UVCHAN_NATS__EV_ERROR, s, NULL, (int)err);
}

/* ---- the loop side of the queue ---- */

static void uvchan_nats__dispatch(uvchan_nats_t* nc, uvchan_nats__ev_t* ev) {
  switch (ev->kind) {
    case UVCHAN_NATS__EV_REPLY:
      uvchan_nats__on_reply(nc, ev->a);
      break;
    case UVCHAN_NATS__EV_SUB_DONE:
      uvchan_nats__sub_done(ev->a);
      break;
    case UVCHAN_NATS__EV_INBOX_DONE:
      free(nc->inbox_gate_); /* its thread is gone */
      nc->inbox_gate_ = NULL;
      uvchan_nats__close_step(nc);
      break;
    case UVCHAN_NATS__EV_CLOSED:
      nc->flags_ |= UVCHAN_NATS__F_GOT_CLOSED;
      if (nc->state_ != UVCHAN_NATS__CLOSING) {
        /* The client gave up for good: nothing will come any more. */
        nc->state_ = UVCHAN_NATS__LOST;
        uvchan_nats__fail_pending(nc, UV_ENOTCONN);
        uvchan_nats__sub_conn_closed(nc);
        uvchan_nats__pull_conn_closed(nc);
        uvchan_nats__pub_conn_closed(nc);
      }
      uvchan_nats__event(nc, UVCHAN_NATS_EV_CLOSED, NULL, 0);
      uvchan_nats__close_step(nc);
      break;
    case UVCHAN_NATS__EV_DISCONNECTED:
      nc->disconnects_++;
      uvchan_nats__event(nc, UVCHAN_NATS_EV_DISCONNECTED, NULL, 0);
      break;
    case UVCHAN_NATS__EV_RECONNECTED:
      nc->reconnects_++;
      uvchan_nats__event(nc, UVCHAN_NATS_EV_RECONNECTED, NULL, 0);
      break;
    case UVCHAN_NATS__EV_ERROR:
      uvchan_nats__sub_error(nc, ev->a, ev->status);
      break;
    case UVCHAN_NATS__EV_PULL_READY:
    case UVCHAN_NATS__EV_FETCH:
    case UVCHAN_NATS__EV_PULL_EXIT:
      uvchan_nats__pull_event(ev);
      break;
    case UVCHAN_NATS__EV_JOB_DONE:
      uvchan_nats__job_done(nc, ev->a);
      break;
    case UVCHAN_NATS__EV_CALLBACK: {
      void (*fn)(void*);
      memcpy(&fn, &ev->b, sizeof(fn));
      fn(ev->a);
      break;
    }
    default:
      break;
  }
}

static void uvchan_nats__on_async(uv_async_t* handle) {
  uvchan_nats_t* nc = UVCHAN__CONTAINER_OF(handle, uvchan_nats_t, async_);
  uvchan_nats__ev_t* batch;
  size_t n, cap, i;

  /* Swap the queue for the spare one and deliver the batch without the lock: threads post into
   * the other meanwhile (and the loop itself, which wakes the next round). */
  uv_mutex_lock(&nc->lock_);
  batch = nc->evq_;
  cap = nc->evcap_;
  n = nc->evlen_;
  nc->evq_ = nc->evspare_;
  nc->evcap_ = nc->evsparecap_;
  nc->evlen_ = 0;
  uv_mutex_unlock(&nc->lock_);
  nc->evspare_ = batch;
  nc->evsparecap_ = cap;
  for (i = 0; i < n; i++)
    uvchan_nats__dispatch(nc, &batch[i]);
}

/* ---- connect ---- */

static void uvchan_nats__connect_work(uvchan_nats__job_t* job) {
  uvchan_nats__conn_job_t* cj = (uvchan_nats__conn_job_t*)job;
  uvchan_nats_t* nc = job->nc;
  natsConnection* conn = NULL;
  jsCtx* js = NULL;
  natsStatus s;
  uv_sem_wait(&cj->go);
  if (cj->cancel) {
    job->nc = NULL;
    return;
  }
  s = natsConnection_Connect(&conn, nc->opts_);
  if (s == NATS_OK)
    s = natsConnection_JetStream(&js, conn, NULL);
  nc->conn = conn; /* the loop reads these after the job's end */
  nc->js = js;
  nc->connect_status_ = uvchan_nats_err(s);
}

/* The inbox: one wildcard subscription for every reply of the connection. Its delivery thread
 * reaches us through a gate (see uvchan_nats__gate_t), so that a failed setup can let go. */
static int uvchan_nats__inbox_deliver(uvchan_nats__gate_t* g, natsMsg* msg) {
  return uvchan_nats__post(g->obj, UVCHAN_NATS__EV_REPLY, msg, NULL, 0);
}

static void uvchan_nats__on_inbox_msg(natsConnection* conn, natsSubscription* s, natsMsg* msg,
                                      void* closure) {
  (void)conn;
  (void)s;
  uvchan_nats__gate_pass(closure, msg, uvchan_nats__inbox_deliver);
}

static void uvchan_nats__on_inbox_done(void* closure) {
  uvchan_nats__gate_t* g = closure;
  (void)uvchan_nats__post(g->obj, UVCHAN_NATS__EV_INBOX_DONE, NULL, NULL, 0);
}

static int uvchan_nats__inbox_start(uvchan_nats_t* nc) {
  char* subj = malloc(nc->inbox_len_ + 2);
  uvchan_nats__gate_t* g = uvchan_nats__gate_new(nc);
  natsStatus s;
  if (subj == NULL || g == NULL) {
    free(subj);
    free(g);
    return UV_ENOMEM;
  }
  memcpy(subj, nc->inbox_, nc->inbox_len_);
  memcpy(subj + nc->inbox_len_, "*", 2);
  s = natsConnection_Subscribe(&nc->inbox_sub_, nc->conn, subj, uvchan_nats__on_inbox_msg, g);
  free(subj);
  if (s != NATS_OK) {
    free(g);
    return uvchan_nats_err(s);
  }
  (void)natsSubscription_SetPendingLimits(nc->inbox_sub_, -1, -1); /* bounded by our waiters */
  if (natsSubscription_SetOnCompleteCB(nc->inbox_sub_, uvchan_nats__on_inbox_done, g) != NATS_OK) {
    /* The client closed it in between (the connection closing at that moment): nothing will
     * say when its thread lets go, so shut the gate and leave it to the client. */
    uvchan_nats__gate_kill(g);
    return UV_ENOTCONN;
  }
  nc->inbox_gate_ = g;
  return 0;
}

static void uvchan_nats__connect_after(uvchan_nats__job_t* job) {
  uvchan_nats_t* nc = job->nc;
  uvchan_nats_connect_cb cb = nc->connect_cb_;
  int err = nc->connect_status_;

  nc->flags_ &= ~UVCHAN_NATS__F_WORK;
  if (nc->own_opts_ != NULL) {
    natsOptions_Destroy(nc->own_opts_); /* the client keeps a copy */
    nc->own_opts_ = NULL;
  }
  nc->opts_ = NULL;
  if (err == 0 && nc->conn == NULL)
    err = UV_EIO;
  if (err == 0)
    err = uvchan_nats__inbox_start(nc);
  if (nc->state_ == UVCHAN_NATS__CLOSING) {
    err = UV_ECANCELED;
  } else if (err == 0 && (nc->flags_ & UVCHAN_NATS__F_TASK) && nc->waiter_ == NULL) {
    err = UV_ECANCELED; /* the waiting task was cancelled meanwhile */
    nc->state_ = UVCHAN_NATS__FAILED;
  } else {
    nc->state_ = err == 0 ? UVCHAN_NATS__CONNECTED : UVCHAN_NATS__FAILED;
  }
  nc->connect_cb_ = NULL;
  cb(nc, err);
  uvchan_nats__close_step(nc);
}

static void uvchan_nats__shutdown(uvchan_resource_t* res) {
  uvchan_nats_t* nc = UVCHAN__CONTAINER_OF(res, uvchan_nats_t, res_);
  if (nc->state_ != UVCHAN_NATS__CLOSING)
    (void)uvchan_nats_close(nc, NULL);
}

int uvchan_nats_connect(uvchan_ctx_t* ctx, uvchan_nats_t* nc, const char* url, natsOptions* opts,
                        uvchan_nats_connect_cb cb) {
  natsInbox* inbox = NULL;
  uvchan_nats__conn_job_t* cj = NULL;
  natsOptions* o = opts;
  void* data;
  size_t n;
  int err;

  if (ctx == NULL || nc == NULL || cb == NULL || (url == NULL && opts == NULL))
    return UV_EINVAL;
  if ((err = uvchan_ctx_check(ctx, 1)) != 0)
    return err;
  if (UVCHAN__MAGIC_IS(nc, UVCHAN_NATS__MAGIC))
    return UV_EBUSY;
  data = nc->data; /* the user's, set before the init as libuv allows */
  memset(nc, 0, sizeof(*nc));
  nc->data = data;
  nc->ctx = ctx;
  uvchan__list_init(&nc->subs_);
  uvchan__list_init(&nc->pulls_);
  uvchan__list_init(&nc->pubs_);

  if (natsInbox_Create(&inbox) != NATS_OK)
    return UV_ENOMEM;
  n = strlen(inbox);
  nc->inbox_ = malloc(n + 2);
  nc->evcap_ = nc->evsparecap_ = 64;
  nc->evq_ = malloc(nc->evcap_ * sizeof(uvchan_nats__ev_t));
  nc->evspare_ = malloc(nc->evsparecap_ * sizeof(uvchan_nats__ev_t));
  if (nc->inbox_ == NULL || nc->evq_ == NULL || nc->evspare_ == NULL) {
    err = UV_ENOMEM;
    goto fail;
  }
  memcpy(nc->inbox_, inbox, n);
  memcpy(nc->inbox_ + n, ".", 2);
  nc->inbox_len_ = n + 1;
  natsInbox_Destroy(inbox);
  inbox = NULL;

  if (o == NULL) {
    if (natsOptions_Create(&nc->own_opts_) != NATS_OK) {
      err = UV_ENOMEM;
      goto fail;
    }
    o = nc->own_opts_;
  }
  if ((url != NULL && natsOptions_SetURL(o, url) != NATS_OK) ||
      natsOptions_SetClosedCB(o, uvchan_nats__on_closed, nc) != NATS_OK ||
      natsOptions_SetDisconnectedCB(o, uvchan_nats__on_disconnected, nc) != NATS_OK ||
      natsOptions_SetReconnectedCB(o, uvchan_nats__on_reconnected, nc) != NATS_OK ||
      natsOptions_SetErrorHandler(o, uvchan_nats__on_error, nc) != NATS_OK) {
    err = UV_EINVAL;
    goto fail;
  }
  nc->opts_ = o;
  if ((cj = calloc(1, sizeof(*cj))) == NULL || uv_sem_init(&cj->go, 0) != 0) {
    free(cj);
    err = UV_ENOMEM;
    goto fail;
  }
  if (uv_mutex_init(&nc->lock_) != 0) {
    err = UV_ENOMEM;
    goto fail_job;
  }
  if ((err = uvchan_ctx_add_resource(ctx, &nc->res_, uvchan_nats__shutdown)) != 0)
    goto fail_mutex;
  cj->job.work = uvchan_nats__connect_work;
  cj->job.done = uvchan_nats__connect_after;
  if ((err = uvchan_nats__job_start(nc, &cj->job)) != 0)
    goto fail_res;
  /* Nothing fails after the handle's init. */
  if ((err = uv_async_init(ctx->loop, &nc->async_, uvchan_nats__on_async)) != 0) {
    cj->cancel = 1;
    uv_sem_post(&cj->go);
    uv_thread_join(&cj->job.tid);
    goto fail_res;
  }
  uv_unref((uv_handle_t*)&nc->async_); /* see uvchan_nats__active() */
  nc->job_ = cj;
  nc->connect_cb_ = cb;
  nc->state_ = UVCHAN_NATS__CONNECTING;
  nc->flags_ = UVCHAN_NATS__F_WORK;
  nc->magic_ = UVCHAN_NATS__MAGIC;
  uvchan_nats__active(nc, 1); /* the connect's end comes through the handle */
  uv_sem_post(&cj->go);
  return 0;

fail_res:
  (void)uvchan_ctx_remove_resource(&nc->res_);
fail_mutex:
  uv_mutex_destroy(&nc->lock_);
fail_job:
  uv_sem_destroy(&cj->go);
  free(cj);
fail:
  if (inbox != NULL)
    natsInbox_Destroy(inbox);
  natsOptions_Destroy(nc->own_opts_);
  free(nc->inbox_);
  free(nc->evq_);
  free(nc->evspare_);
  memset(nc, 0, sizeof(*nc));
  return err;
}

static void uvchan_nats__task_connect_cb(uvchan_nats_t* nc, int status) {
  uvchan_await_t* aw = nc->waiter_;
  nc->flags_ &= ~UVCHAN_NATS__F_TASK;
  nc->waiter_ = NULL;
  if (aw != NULL)
    uvchan_await_done(aw, status);
}

static void uvchan_nats__task_connect_cancel(uvchan_await_t* aw) {
  uvchan_nats_t* nc = aw->data;
  /* The connect runs on and cannot be stopped: its callback reports UV_ECANCELED. */
  nc->waiter_ = NULL;
  uvchan_await_done(aw, UV_ECANCELED);
}

int uvchan_nats_task_connect(uvchan_ctx_t* ctx, uvchan_nats_t* nc, const char* url,
                             natsOptions* opts) {
  uvchan_await_t aw;
  int err;

  if (uvchan_task_self() == NULL)
    return UV_EINVAL;
  if (uvchan_task_cancelled())
    return UV_ECANCELED;
  if ((err = uvchan_await_init(&aw, uvchan_nats__task_connect_cancel, NULL)) != 0)
    return err;
  if ((err = uvchan_nats_connect(ctx, nc, url, opts, uvchan_nats__task_connect_cb)) != 0)
    return err;
  aw.data = nc;
  nc->waiter_ = &aw;
  nc->flags_ |= UVCHAN_NATS__F_TASK;
  return (int)uvchan_task_await(&aw);
}

int uvchan_nats_set_event_cb(uvchan_nats_t* nc, uvchan_nats_event_cb cb) {
  if (nc == NULL || !UVCHAN__MAGIC_IS(nc, UVCHAN_NATS__MAGIC))
    return UV_EINVAL;
  if (!uvchan_nats__on_thread(nc))
    return UV_EPERM;
  nc->event_cb_ = cb;
  return 0;
}

int uvchan_nats_stats(const uvchan_nats_t* nc, uvchan_nats_stats_t* stats) {
  if (nc == NULL || stats == NULL || !UVCHAN__MAGIC_IS(nc, UVCHAN_NATS__MAGIC))
    return UV_EINVAL;
  stats->disconnects = nc->disconnects_;
  stats->reconnects = nc->reconnects_;
  stats->pending = nc->nmap_;
  return 0;
}

int uvchan_nats__usable(const uvchan_nats_t* nc) {
  int err;
  if (nc == NULL || !UVCHAN__MAGIC_IS(nc, UVCHAN_NATS__MAGIC))
    return UV_EINVAL;
  if ((err = uvchan_ctx_check(nc->ctx, 1)) != 0)
    return err == UV_EINVAL ? UV_ENOTCONN : err;
  if (nc->state_ != UVCHAN_NATS__CONNECTED)
    return UV_ENOTCONN;
  return 0;
}

/* ---- close ---- */

static void uvchan_nats__close_work(uvchan_nats__job_t* job) {
  natsConnection_Close(job->nc->conn); /* joins the client's reader and flusher threads */
}

static void uvchan_nats__close_after(uvchan_nats__job_t* job) {
  uvchan_nats_t* nc = job->nc;
  nc->flags_ &= ~UVCHAN_NATS__F_WORK;
  uvchan_nats__close_step(nc);
}

static void uvchan_nats__on_async_closed(uv_handle_t* handle) {
  uvchan_nats_t* nc = UVCHAN__CONTAINER_OF(handle, uvchan_nats_t, async_);
  uvchan_nats_close_cb cb = nc->close_cb_;
  uvchan_nats__ev_t* q = nc->evq_;
  size_t i;

  /* Nothing posts any more; what came after the last delivery can only be replies. */
  for (i = 0; i < nc->evlen_; i++)
    if (q[i].kind == UVCHAN_NATS__EV_REPLY)
      natsMsg_Destroy(q[i].a);
  free(nc->evq_);
  free(nc->evspare_);
  free(nc->map_);
  free(nc->inbox_);
  uv_sem_destroy(&((uvchan_nats__conn_job_t*)nc->job_)->go);
  free(nc->job_);
  nc->job_ = NULL;
  uv_mutex_destroy(&nc->lock_);
  nc->evq_ = nc->evspare_ = NULL;
  nc->map_ = NULL;
  nc->inbox_ = NULL;
  nc->magic_ = 0;
  (void)uvchan_ctx_remove_resource(&nc->res_);
  if (cb != NULL)
    cb(nc); /* may free the struct */
}

void uvchan_nats__close_step(uvchan_nats_t* nc) {
  if (nc->state_ != UVCHAN_NATS__CLOSING || (nc->flags_ & UVCHAN_NATS__F_WORK) ||
      nc->ncalls_ != 0 || nc->evclosed_)
    return;
  if (nc->conn != NULL && !(nc->flags_ & UVCHAN_NATS__F_CONN_CLOSED)) {
    uvchan_nats__job_t* job = nc->job_;
    nc->flags_ |= UVCHAN_NATS__F_CONN_CLOSED | UVCHAN_NATS__F_WORK;
    job->work = uvchan_nats__close_work;
    job->done = uvchan_nats__close_after;
    if (uvchan_nats__job_start(nc, job) == 0)
      return;
    nc->flags_ &= ~UVCHAN_NATS__F_WORK;
    natsConnection_Close(nc->conn); /* no thread to be had: close from here then */
  }
  /* Wait until every thread of the client has let go of us. */
  if (nc->conn != NULL && !(nc->flags_ & UVCHAN_NATS__F_GOT_CLOSED))
    return;
  if (nc->inbox_gate_ != NULL)
    return;
  if (!uvchan__list_empty(&nc->subs_) || !uvchan__list_empty(&nc->pulls_) ||
      !uvchan__list_empty(&nc->pubs_))
    return;
  natsSubscription_Destroy(nc->inbox_sub_);
  nc->inbox_sub_ = NULL;
  while (nc->ngraves_ > 0)
    natsSubscription_Destroy(nc->graves_[--nc->ngraves_]);
  free(nc->graves_);
  nc->graves_ = NULL;
  jsCtx_Destroy(nc->js);
  nc->js = NULL;
  natsConnection_Destroy(nc->conn);
  nc->conn = NULL;
  uv_mutex_lock(&nc->lock_);
  nc->evclosed_ = 1;
  uv_mutex_unlock(&nc->lock_);
  if (nc->flags_ & UVCHAN_NATS__F_REFD) {
    nc->flags_ &= ~UVCHAN_NATS__F_REFD;
    uv_unref((uv_handle_t*)&nc->async_);
  }
  uv_close((uv_handle_t*)&nc->async_, uvchan_nats__on_async_closed);
}

int uvchan_nats_close(uvchan_nats_t* nc, uvchan_nats_close_cb cb) {
  if (nc == NULL || !UVCHAN__MAGIC_IS(nc, UVCHAN_NATS__MAGIC) ||
      nc->state_ == UVCHAN_NATS__CLOSING)
    return UV_EINVAL;
  if (!uvchan_nats__on_thread(nc))
    return UV_EPERM;
  nc->state_ = UVCHAN_NATS__CLOSING;
  nc->close_cb_ = cb;
  uvchan_nats__active(nc, 1); /* the close waits for the client's threads, through the handle */
  uvchan_nats__fail_pending(nc, UV_ECANCELED);
  uvchan_nats__pub_close_all(nc);
  uvchan_nats__pull_close_all(nc);
  uvchan_nats__sub_close_all(nc);
  if (nc->inbox_sub_ != NULL)
    (void)natsSubscription_Unsubscribe(nc->inbox_sub_);
  uvchan_nats__close_step(nc);
  return 0;
}

/* ---- task calls ---- */

typedef struct {
  uvchan_nats__job_t job;
  uvchan_await_t aw;
  uvchan_nats_call_fn fn;
  void* arg;
  natsStatus s;
} uvchan_nats__call_t;

static void uvchan_nats__call_work(uvchan_nats__job_t* job) {
  uvchan_nats__call_t* c = (uvchan_nats__call_t*)job;
  c->s = c->fn(job->nc, c->arg);
}

static void uvchan_nats__call_done(uvchan_nats__job_t* job) {
  uvchan_nats__call_t* c = (uvchan_nats__call_t*)job;
  uvchan_nats_t* nc = job->nc;
  nc->ncalls_--;
  uvchan_await_done(&c->aw, uvchan_nats_err(c->s));
  uvchan_nats__close_step(nc);
}

int uvchan_nats_task_call(uvchan_nats_t* nc, uvchan_nats_call_fn fn, void* arg) {
  uvchan_nats__call_t c;
  int err;

  if (uvchan_task_self() == NULL || fn == NULL)
    return UV_EINVAL;
  if ((err = uvchan_nats__usable(nc)) != 0)
    return err;
  if (uvchan_task_cancelled())
    return UV_ECANCELED;
  memset(&c, 0, sizeof(c));
  c.fn = fn;
  c.arg = arg;
  c.job.work = uvchan_nats__call_work;
  c.job.done = uvchan_nats__call_done;
  /* No cancel hook: the call cannot be interrupted, and `c` is on this task's stack, so the task
   * waits for its end even when cancelled, and then reports the cancel. */
  uvchan_await_init(&c.aw, NULL, NULL);
  if ((err = uvchan_nats__job_start(nc, &c.job)) != 0)
    return err;
  nc->ncalls_++;
  err = (int)uvchan_task_await(&c.aw);
  return uvchan_task_cancelled() ? UV_ECANCELED : err;
}

void uvchan_nats__gate_kill(uvchan_nats__gate_t* g) {
  __atomic_store_n(&g->dead, 1, __ATOMIC_SEQ_CST);
  /* A thread inside finishes quickly: the caller closed what it could wait on. */
  while (__atomic_load_n(&g->incb, __ATOMIC_SEQ_CST) != 0)
    uv_sleep(1);
}
