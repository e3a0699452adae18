/* JetStream pull consumers feeding a channel, with end-to-end backpressure.
 *
 * The loop reserves free slots of the channel (uvchan_reserve: a reservation waits until a
 * receiver frees a slot) and hands their number to the consumer's thread ("want"); the thread
 * runs the client's blocking natsSubscription_Fetch() for at most that many messages and posts
 * the result; the loop commits each message into a reserved slot. So the process never holds
 * more messages than the channel has room for, and the server keeps the rest. Slots are ordered
 * in runs of at least a quarter of the capacity (or at once when the channel ran empty, its
 * receivers waiting), so that fetches stay large; while one fetch is out, the next one is
 * reserved, so fetches follow each other without a gap.
 *
 * The thread also creates or looks up the consumer first (blocking API calls), so starting never
 * blocks the loop. Messages the process received but did not acknowledge are delivered again
 * by JetStream after the consumer's ack wait; messages left in the channel at the close are
 * handed back at once with a NAK. */
#include "nats-internal.h"

#include <stdio.h>

enum { UVCHAN_NATS__P_READY = 1u << 8, UVCHAN_NATS__P_FAILED = 1u << 9 };

static int uvchan_nats__pull_ok(const uvchan_nats_pull_t* p) {
  return p != NULL && UVCHAN__MAGIC_IS(p, UVCHAN_NATS__PULL_MAGIC);
}

static void uvchan_nats__nak(natsMsg* msg) {
  (void)natsMsg_Nak(msg, NULL); /* a publish: fails only with the connection gone */
  natsMsg_Destroy(msg);
}

static void uvchan_nats__nak_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  uvchan_nats__nak(*(natsMsg**)value);
}

/* The delivery count in a JetStream message's reply subject: "$JS.ACK.<stream>.<consumer>.
 * <delivered>.<stream seq>.<consumer seq>.<time>.<pending>" (9 tokens), or with a domain and an
 * account hash after "$JS.ACK" (11 or 12 tokens). The usual form starts with a prefix this
 * consumer knows ("$JS.ACK.<stream>.<consumer>."): a comparison, not a scan of every character,
 * on the path of every message. */
static uint64_t uvchan_nats__delivered(const uvchan_nats_pull_t* pull, natsMsg* msg) {
  const char* r = natsMsg_GetReply(msg);
  const char* tok[12];
  uint64_t n = 0;
  int ntok = 0, i;
  const char* p;

  if (r == NULL)
    return 0;
  if (pull->ackpfx_ != NULL && strncmp(r, pull->ackpfx_, pull->ackpfx_len_) == 0) {
    p = r + pull->ackpfx_len_;
  } else {
    if (strncmp(r, "$JS.ACK.", 8) != 0)
      return 0;
    for (p = r; *p != '\0' && ntok < 12; p++)
      if (p == r || p[-1] == '.')
        tok[ntok++] = p;
    i = ntok == 9 ? 4 : ntok >= 11 ? 6 : -1;
    if (i < 0)
      return 0;
    p = tok[i];
  }
  for (; *p >= '0' && *p <= '9'; p++)
    n = n * 10 + (uint64_t)(*p - '0');
  return n;
}

/* ---- the consumer's thread ---- */

static int uvchan_nats__pull_setup(uvchan_nats_pull_t* p) {
  uvchan_nats_t* nc = p->nc_;
  jsConsumerInfo* ci = NULL;
  jsConsumerConfig cc;
  jsSubOptions so;
  jsErrCode jerr = 0;
  natsSubscription* sub = NULL;
  natsStatus s;

  s = js_GetConsumerInfo(&ci, nc->js, p->stream_, p->consumer_, NULL, &jerr);
  if (s == NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
    jsConsumerConfig_Init(&cc);
    cc.Durable = p->consumer_;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.FilterSubject = p->filter_;
    if (p->opts_.ack_wait != 0)
      cc.AckWait = uvchan_nats__ms_to_ns(p->opts_.ack_wait);
    if (p->opts_.max_deliver > 0)
      cc.MaxDeliver = p->opts_.max_deliver;
    if (p->opts_.max_ack_pending > 0)
      cc.MaxAckPending = p->opts_.max_ack_pending;
    jerr = 0;
    s = js_AddConsumer(&ci, nc->js, p->stream_, &cc, NULL, &jerr);
  }
  jsConsumerInfo_Destroy(ci);
  if (s != NATS_OK)
    return uvchan_nats_js_err(s, jerr);
  jsSubOptions_Init(&so);
  so.Stream = p->stream_;
  so.Consumer = p->consumer_;
  jerr = 0;
  s = js_PullSubscribe(&sub, nc->js, NULL, p->consumer_, NULL, &so, &jerr);
  if (s != NATS_OK)
    return uvchan_nats_js_err(s, jerr);
  p->sub = sub; /* the loop reads it after the "ready" event */
  return 0;
}

static void uvchan_nats__pull_thread(void* arg) {
  uvchan_nats_pull_t* p = arg;
  uvchan_nats_t* nc = p->nc_;
  uvchan_nats__fetch_t* f;
  jsErrCode jerr;
  natsStatus s;
  int err, n;

  err = uvchan_nats__pull_setup(p);
  (void)uvchan_nats__post(nc, UVCHAN_NATS__EV_PULL_READY, p, NULL, err);
  while (err == 0) {
    uv_mutex_lock(&p->lock_);
    while (!p->stop_ && p->want_ == 0)
      uv_cond_wait(&p->cond_, &p->lock_);
    if (p->stop_) {
      uv_mutex_unlock(&p->lock_);
      break;
    }
    n = p->want_ > (size_t)p->opts_.max_batch ? p->opts_.max_batch : (int)p->want_;
    p->want_ -= (size_t)n;
    uv_mutex_unlock(&p->lock_);

    f = calloc(1, sizeof(*f));
    if (f == NULL) {
      s = NATS_NO_MEMORY;
    } else {
      jerr = 0;
      s = natsSubscription_Fetch(&f->list, p->sub, n, (int64_t)p->opts_.expires, &jerr);
      f->asked = n;
      /* A timeout is an empty fetch: nothing there for `expires`. */
      f->status = s == NATS_TIMEOUT ? 0 : uvchan_nats_js_err(s, jerr);
      if (uvchan_nats__post(nc, UVCHAN_NATS__EV_FETCH, p, f, 0) != 0) {
        natsMsgList_Destroy(&f->list);
        free(f);
      }
    }
    if (s != NATS_OK && s != NATS_TIMEOUT) {
      /* A failing fetch (the connection lost meanwhile, the consumer deleted...): try again
       * later, without spinning; a stop ends the wait. */
      uv_mutex_lock(&p->lock_);
      if (!p->stop_)
        (void)uv_cond_timedwait(&p->cond_, &p->lock_, 100 * 1000000ull);
      if (f == NULL) /* the slots asked for go back to the loop's count */
        p->want_ += (size_t)n;
      uv_mutex_unlock(&p->lock_);
    }
  }
  (void)uvchan_nats__post(nc, UVCHAN_NATS__EV_PULL_EXIT, p, NULL, 0);
}

/* ---- the loop side ---- */

static void uvchan_nats__pull_on_reserved(uvchan_reserve_t* req, int status);

static int uvchan_nats__pull_feeding(const uvchan_nats_pull_t* p) {
  return (p->flags_ & UVCHAN_NATS__P_READY) &&
         !(p->flags_ & (UVCHAN_NATS__O_CLOSING | UVCHAN_NATS__P_FAILED | UVCHAN_NATS__O_DONE));
}

/* Hands the slots held and not yet asked for to the thread, in runs worth a fetch. */
static void uvchan_nats__pull_order(uvchan_nats_pull_t* p) {
  size_t free_slots = p->held_ - p->outstanding_;
  if (free_slots == 0 || !uvchan_nats__pull_feeding(p))
    return;
  if (free_slots < p->lowat_ && uvchan_len(&p->chan) != 0)
    return; /* the receivers are busy: wait for a bigger run */
  p->outstanding_ += free_slots;
  uv_mutex_lock(&p->lock_);
  p->want_ += free_slots;
  uv_cond_signal(&p->cond_);
  uv_mutex_unlock(&p->lock_);
}

/* Takes every free slot now, then waits for the next one with a reservation request. */
static void uvchan_nats__pull_reserve(uvchan_nats_pull_t* p) {
  size_t cap = p->opts_.capacity;
  int err;
  while (p->held_ < cap && uvchan_nats__pull_feeding(p) &&
         uvchan_try_reserve(&p->chan, &p->permits_[p->held_]) == 0)
    p->held_++;
  uvchan_nats__pull_order(p);
  if (p->held_ < cap && uvchan_nats__pull_feeding(p) && !(p->flags_ & UVCHAN_NATS__O_RQ)) {
    err = uvchan_reserve(&p->rq_, &p->chan, uvchan_nats__pull_on_reserved);
    if (err == 0)
      p->flags_ |= UVCHAN_NATS__O_RQ;
  }
}

static void uvchan_nats__pull_finish(uvchan_nats_pull_t* p);

static void uvchan_nats__pull_on_reserved(uvchan_reserve_t* req, int status) {
  uvchan_nats_pull_t* p = UVCHAN__CONTAINER_OF(req, uvchan_nats_pull_t, rq_);
  p->flags_ &= ~UVCHAN_NATS__O_RQ;
  /* Otherwise UV_EPIPE (the channel was closed) or UV_ECANCELED (cancelled by a close, or a
   * shutdown): no more fetches. */
  if (status == 0) {
    p->permits_[p->held_++] = req->permit;
    uvchan_nats__pull_reserve(p);
  }
  if ((p->flags_ & UVCHAN_NATS__O_CLOSING) && (p->flags_ & UVCHAN_NATS__O_DONE))
    uvchan_nats__pull_finish(p); /* the close waited for this callback */
}

static void uvchan_nats__pull_fail(uvchan_nats_pull_t* p, int status) {
  if (p->flags_ & UVCHAN_NATS__P_FAILED)
    return;
  p->flags_ |= UVCHAN_NATS__P_FAILED;
  p->status_ = status;
  (void)uvchan_close(&p->chan); /* receivers drain, then see the end */
  uvchan_nats__event(p->nc_, UVCHAN_NATS_EV_ERROR, NULL, status);
}

static void uvchan_nats__pull_fetched(uvchan_nats_pull_t* p, uvchan_nats__fetch_t* f) {
  natsMsg* msg;
  int i;

  p->outstanding_ -= (size_t)f->asked;
  p->fetches_++;
  for (i = 0; i < f->list.Count; i++) {
    msg = f->list.Msgs[i];
    f->list.Msgs[i] = NULL;
    p->fetched_++;
    if (uvchan_nats__delivered(p, msg) > 1)
      p->redelivered_++;
    /* A slot was reserved for it, unless the consumer is closing (its slots given back). */
    if (p->held_ == 0 || uvchan_commit(&p->permits_[--p->held_], &msg) != 0)
      uvchan_nats__nak(msg);
  }
  natsMsgList_Destroy(&f->list);
  if (f->status != 0 && f->status != UV_EBADF && uvchan_nats__pull_feeding(p))
    uvchan_nats__event(p->nc_, UVCHAN_NATS_EV_ERROR, NULL, f->status);
  free(f);
  uvchan_nats__pull_reserve(p);
}

void uvchan_nats__pull_event(uvchan_nats__ev_t* ev) {
  uvchan_nats_pull_t* p = ev->a;
  switch (ev->kind) {
    case UVCHAN_NATS__EV_PULL_READY:
      if (ev->status != 0) {
        uvchan_nats__pull_fail(p, ev->status);
        break;
      }
      p->flags_ |= UVCHAN_NATS__P_READY;
      if (p->flags_ & UVCHAN_NATS__O_CLOSING)
        (void)natsSubscription_Unsubscribe(p->sub); /* the close came during the setup */
      else
        uvchan_nats__pull_reserve(p);
      break;
    case UVCHAN_NATS__EV_FETCH:
      uvchan_nats__pull_fetched(p, ev->b);
      break;
    case UVCHAN_NATS__EV_PULL_EXIT:
      uv_thread_join(&p->thread_); /* it has returned: no wait */
      p->flags_ |= UVCHAN_NATS__O_DONE;
      if (p->flags_ & UVCHAN_NATS__O_CLOSING)
        uvchan_nats__pull_finish(p);
      break;
    default:
      break;
  }
}

static void uvchan_nats__pull_finish(uvchan_nats_pull_t* p) {
  uvchan_nats_t* nc = p->nc_;
  uvchan_nats_pull_close_cb cb = p->close_cb_;

  if (p->flags_ & UVCHAN_NATS__O_RQ)
    return; /* its cancelled reservation comes back first */
  while (p->held_ > 0)
    (void)uvchan_release(&p->permits_[--p->held_]);
  uvchan__list_remove(&p->link_);
  /* The subscription is destroyed with the connection, not now: a message received from it
   * points to it, and may be acknowledged after this close (natsMsg_Ack reads its
   * subscription). Its thread was joined, its fetches are over: it only waits. */
  if (p->sub != NULL)
    uvchan_nats__bury(nc, p->sub);
  p->sub = NULL;
  uvchan_destroy(&p->chan); /* messages left are handed back (NAK) */
  uv_cond_destroy(&p->cond_);
  uv_mutex_destroy(&p->lock_);
  free(p->permits_);
  free(p->ackpfx_);
  free(p->stream_);
  free(p->consumer_);
  free(p->filter_);
  p->permits_ = NULL;
  p->ackpfx_ = NULL;
  p->stream_ = p->consumer_ = p->filter_ = NULL;
  p->magic_ = 0;
  uvchan_nats__active(nc, -1);
  if (cb != NULL)
    cb(p);
  uvchan_nats__close_step(nc);
}

/* Tells the thread to end: it leaves its wait for slots, or for a retry, at once. */
static void uvchan_nats__pull_stop(uvchan_nats_pull_t* p) {
  uv_mutex_lock(&p->lock_);
  p->stop_ = 1;
  uv_cond_signal(&p->cond_);
  uv_mutex_unlock(&p->lock_);
}

static void uvchan_nats__pull_finish_deferred(void* arg) {
  uvchan_nats__pull_finish(arg);
}

static void uvchan_nats__pull_start_close(uvchan_nats_pull_t* p, uvchan_nats_pull_close_cb cb) {
  p->flags_ |= UVCHAN_NATS__O_CLOSING;
  p->close_cb_ = cb;
  uvchan_nats__pull_stop(p);
  /* A fetch in progress returns when its subscription closes; before the "ready" event the
   * thread checks stop_ itself after its setup. */
  if ((p->flags_ & UVCHAN_NATS__P_READY) && !(p->flags_ & UVCHAN_NATS__O_DONE))
    (void)natsSubscription_Unsubscribe(p->sub);
  (void)uvchan_close(&p->chan);
  if (p->flags_ & UVCHAN_NATS__O_RQ) {
    /* Its callback comes (UV_ECANCELED, or a slot granted just before), and finishes the close
     * once the thread is gone. */
    (void)uvchan_cancel((uvchan_req_t*)&p->rq_);
  } else if (p->flags_ & UVCHAN_NATS__O_DONE) {
    uvchan_nats__defer(p->nc_, p, uvchan_nats__pull_finish_deferred);
  }
}

static int uvchan_nats__name_ok(const char* name) {
  return name != NULL && uvchan_nats_subject_check(name, 0) == 0 && strchr(name, '.') == NULL;
}

static char* uvchan_nats__strdup(const char* s) {
  size_t n;
  char* d;
  if (s == NULL)
    return NULL;
  n = strlen(s) + 1;
  d = malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

int uvchan_nats_pull_start(uvchan_nats_t* nc, uvchan_nats_pull_t* p,
                           const uvchan_nats_pull_opts_t* opts) {
  uvchan_nats_pull_opts_t o;
  void* data;
  int err;

  if ((err = uvchan_nats__usable(nc)) != 0)
    return err;
  if (p == NULL || opts == NULL || !uvchan_nats__name_ok(opts->stream) ||
      !uvchan_nats__name_ok(opts->consumer) ||
      (opts->filter != NULL && uvchan_nats_subject_check(opts->filter, 1) != 0) ||
      opts->max_batch < 0)
    return UV_EINVAL;
  if (UVCHAN__MAGIC_IS(p, UVCHAN_NATS__PULL_MAGIC))
    return UV_EBUSY; /* live, or closing until its callback */
  o = *opts;
  if (o.capacity == 0)
    o.capacity = UVCHAN_NATS_DEFAULT_CAPACITY;
  if (o.max_batch == 0 || (size_t)o.max_batch > o.capacity)
    o.max_batch = o.capacity > INT32_MAX ? INT32_MAX : (int)o.capacity;
  if (o.expires == 0)
    o.expires = UVCHAN_NATS_DEFAULT_EXPIRES;
  data = p->data; /* the user's, set before the init as libuv allows */
  memset(p, 0, sizeof(*p));
  p->data = data;
  p->nc_ = nc;
  p->opts_ = o;
  p->lowat_ = o.capacity / 4;
  if (p->lowat_ > (size_t)o.max_batch)
    p->lowat_ = (size_t)o.max_batch;
  if (p->lowat_ == 0)
    p->lowat_ = 1;
  p->permits_ = calloc(o.capacity, sizeof(*p->permits_));
  p->stream_ = uvchan_nats__strdup(o.stream);
  p->consumer_ = uvchan_nats__strdup(o.consumer);
  p->filter_ = uvchan_nats__strdup(o.filter);
  p->ackpfx_len_ = 8 + strlen(o.stream) + 1 + strlen(o.consumer) + 1;
  if ((p->ackpfx_ = malloc(p->ackpfx_len_ + 1)) != NULL)
    snprintf(p->ackpfx_, p->ackpfx_len_ + 1, "$JS.ACK.%s.%s.", o.stream, o.consumer);
  if (p->permits_ == NULL || p->stream_ == NULL || p->consumer_ == NULL ||
      p->ackpfx_ == NULL || (o.filter != NULL && p->filter_ == NULL)) {
    err = UV_ENOMEM;
    goto fail;
  }
  p->opts_.stream = p->stream_;
  p->opts_.consumer = p->consumer_;
  p->opts_.filter = p->filter_;
  if ((err = uvchan_init(nc->ctx, &p->chan, sizeof(natsMsg*), o.capacity)) != 0)
    goto fail;
  uvchan_set_destructor(&p->chan, uvchan_nats__nak_dtor);
  if (uv_mutex_init(&p->lock_) != 0) {
    err = UV_ENOMEM;
    goto fail_chan;
  }
  if (uv_cond_init(&p->cond_) != 0) {
    err = UV_ENOMEM;
    goto fail_mutex;
  }
  if ((err = uv_thread_create(&p->thread_, uvchan_nats__pull_thread, p)) != 0)
    goto fail_cond;
  uvchan__list_push(&nc->pulls_, &p->link_);
  uvchan_nats__active(nc, 1); /* an open consumer keeps the loop alive, as a reading socket */
  p->magic_ = UVCHAN_NATS__PULL_MAGIC;
  return 0;

fail_cond:
  uv_cond_destroy(&p->cond_);
fail_mutex:
  uv_mutex_destroy(&p->lock_);
fail_chan:
  uvchan_destroy(&p->chan);
fail:
  free(p->permits_);
  free(p->ackpfx_);
  free(p->stream_);
  free(p->consumer_);
  free(p->filter_);
  memset(p, 0, sizeof(*p));
  return err;
}

int uvchan_nats_pull_status(const uvchan_nats_pull_t* p) {
  if (!uvchan_nats__pull_ok(p))
    return UV_EINVAL;
  return p->status_;
}

int uvchan_nats_pull_stats(const uvchan_nats_pull_t* p, uvchan_nats_pull_stats_t* stats) {
  if (!uvchan_nats__pull_ok(p) || stats == NULL)
    return UV_EINVAL;
  stats->fetched = p->fetched_;
  stats->redelivered = p->redelivered_;
  stats->fetches = p->fetches_;
  stats->reserved = p->held_;
  return 0;
}

int uvchan_nats_pull_close(uvchan_nats_pull_t* p, uvchan_nats_pull_close_cb cb) {
  if (!uvchan_nats__pull_ok(p) || (p->flags_ & UVCHAN_NATS__O_CLOSING))
    return UV_EINVAL;
  if (!uvchan_nats__on_thread(p->nc_))
    return UV_EPERM;
  uvchan_nats__pull_start_close(p, cb);
  return 0;
}

void uvchan_nats__pull_close_all(uvchan_nats_t* nc) {
  struct uvchan__link_s* l;
  uvchan_nats_pull_t* p;
  for (l = nc->pulls_.next; l != &nc->pulls_; l = l->next) {
    p = UVCHAN__CONTAINER_OF(l, uvchan_nats_pull_t, link_);
    if (!(p->flags_ & UVCHAN_NATS__O_CLOSING))
      uvchan_nats__pull_start_close(p, NULL);
  }
}

void uvchan_nats__pull_conn_closed(uvchan_nats_t* nc) {
  struct uvchan__link_s* l;
  uvchan_nats_pull_t* p;
  for (l = nc->pulls_.next; l != &nc->pulls_; l = l->next) {
    p = UVCHAN__CONTAINER_OF(l, uvchan_nats_pull_t, link_);
    uvchan_nats__pull_fail(p, UV_ENOTCONN);
    uvchan_nats__pull_stop(p);
  }
}
