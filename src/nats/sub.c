/* Core NATS subscriptions feeding a shared channel.
 *
 * The client calls on_msg from the subscription's own delivery thread, one message at a time;
 * uvchan_thread_send() blocks that thread while the channel is full. So a slow receiver slows the
 * delivery thread, the client queues what the server keeps sending, up to the subscription's
 * pending limits, and then drops and reports a slow consumer: core NATS has no flow control to
 * the publisher, and the limits bound the memory. Closing the channel (uvchan_close(), allowed
 * from any thread) is what releases a delivery thread blocked in a send. */
#include "nats-internal.h"

static int uvchan_nats__sub_ok(const uvchan_nats_sub_t* sub) {
  return sub != NULL && UVCHAN__MAGIC_IS(sub, UVCHAN_NATS__SUB_MAGIC);
}

/* Fails only when the channel is closed: the subscription is closing. */
static int uvchan_nats__sub_deliver(uvchan_nats__gate_t* g, natsMsg* msg) {
  int err = uvchan_thread_send(&((uvchan_nats_sub_t*)g->obj)->chan, &msg);
  if (err == 0)
    __atomic_add_fetch(&g->delivered, 1, __ATOMIC_RELAXED);
  return err;
}

static void uvchan_nats__on_msg(natsConnection* conn, natsSubscription* s, natsMsg* msg,
                                void* closure) {
  (void)conn;
  (void)s;
  uvchan_nats__gate_pass(closure, msg, uvchan_nats__sub_deliver);
}

static void uvchan_nats__on_sub_complete(void* closure) {
  uvchan_nats__gate_t* g = closure;
  uvchan_nats_sub_t* sub = g->obj;
  (void)uvchan_nats__post(sub->nc_, UVCHAN_NATS__EV_SUB_DONE, sub, NULL, 0);
}

int uvchan_nats_subscribe(uvchan_nats_t* nc, uvchan_nats_sub_t* sub, const char* subject,
                          const uvchan_nats_sub_opts_t* opts) {
  uvchan_nats_sub_opts_t o;
  uvchan_nats__gate_t* g;
  void* data;
  natsStatus s;
  int err;

  if ((err = uvchan_nats__usable(nc)) != 0)
    return err;
  if (sub == NULL || uvchan_nats_subject_check(subject, 1) != 0)
    return UV_EINVAL;
  if (UVCHAN__MAGIC_IS(sub, UVCHAN_NATS__SUB_MAGIC))
    return UV_EBUSY; /* live, or closing until its callback */
  memset(&o, 0, sizeof(o));
  if (opts != NULL)
    o = *opts;
  if (o.queue != NULL && uvchan_nats_subject_check(o.queue, 0) != 0)
    return UV_EINVAL;
  if (o.capacity == 0)
    o.capacity = UVCHAN_NATS_DEFAULT_CAPACITY;
  data = sub->data; /* the user's, set before the init as libuv allows */
  memset(sub, 0, sizeof(*sub));
  sub->data = data;
  if ((g = uvchan_nats__gate_new(sub)) == NULL)
    return UV_ENOMEM;
  if ((err = uvchan_init_shared(nc->ctx, &sub->chan, sizeof(natsMsg*), o.capacity)) != 0) {
    free(g);
    return err;
  }
  uvchan_set_destructor(&sub->chan, uvchan_nats__free_msg_dtor);
  sub->nc_ = nc;
  sub->gate_ = g;
  if (o.queue != NULL)
    s = natsConnection_QueueSubscribe(&sub->sub, nc->conn, subject, o.queue, uvchan_nats__on_msg,
                                      g);
  else
    s = natsConnection_Subscribe(&sub->sub, nc->conn, subject, uvchan_nats__on_msg, g);
  if (s != NATS_OK) {
    uvchan_destroy(&sub->chan);
    free(g);
    sub->gate_ = NULL;
    return uvchan_nats_err(s);
  }
  if (o.pending_msgs != 0 || o.pending_bytes != 0) {
    int msgs = 0, bytes = 0;
    (void)natsSubscription_GetPendingLimits(sub->sub, &msgs, &bytes);
    (void)natsSubscription_SetPendingLimits(sub->sub, o.pending_msgs != 0 ? o.pending_msgs : msgs,
                                            o.pending_bytes != 0 ? o.pending_bytes : bytes);
  }
  if (natsSubscription_SetOnCompleteCB(sub->sub, uvchan_nats__on_sub_complete, g) != NATS_OK) {
    /* Closed by the client in between (its connection closing): see uvchan_nats__gate_t. */
    uvchan_close(&sub->chan); /* a thread in a send returns at once */
    uvchan_nats__gate_kill(g);
    natsSubscription_Destroy(sub->sub);
    uvchan_destroy(&sub->chan);
    memset(sub, 0, sizeof(*sub));
    return UV_ENOTCONN;
  }
  uvchan__list_push(&nc->subs_, &sub->link_);
  sub->magic_ = UVCHAN_NATS__SUB_MAGIC;
  return 0;
}

int uvchan_nats_sub_stats(const uvchan_nats_sub_t* sub, uvchan_nats_sub_stats_t* stats) {
  int64_t dropped = 0;
  int msgs = 0;
  if (!uvchan_nats__sub_ok(sub) || stats == NULL)
    return UV_EINVAL;
  memset(stats, 0, sizeof(*stats));
  stats->delivered = __atomic_load_n(&((uvchan_nats__gate_t*)sub->gate_)->delivered,
                                     __ATOMIC_RELAXED);
  stats->slow_consumer_events = sub->slow_events_;
  if (sub->sub != NULL) {
    if (natsSubscription_GetDropped(sub->sub, &dropped) == NATS_OK && dropped > 0)
      stats->dropped = (uint64_t)dropped;
    if (natsSubscription_GetPending(sub->sub, &msgs, NULL) == NATS_OK)
      stats->pending_msgs = msgs;
  }
  return 0;
}

/* Once the delivery thread is gone and a close was asked for: destroy and call back. */
static void uvchan_nats__sub_finish(uvchan_nats_sub_t* sub) {
  uvchan_nats_t* nc = sub->nc_;
  uvchan_nats_sub_close_cb cb = sub->close_cb_;

  uvchan__list_remove(&sub->link_);
  natsSubscription_Destroy(sub->sub);
  sub->sub = NULL;
  uvchan_destroy(&sub->chan); /* messages left go to the destructor */
  free(sub->gate_);
  sub->gate_ = NULL;
  sub->magic_ = 0;
  uvchan_nats__active(nc, -1);
  if (cb != NULL)
    cb(sub);
  uvchan_nats__close_step(nc);
}

static void uvchan_nats__sub_finish_deferred(void* arg) {
  uvchan_nats__sub_finish(arg);
}

void uvchan_nats__sub_done(uvchan_nats_sub_t* sub) {
  sub->flags_ |= UVCHAN_NATS__O_DONE;
  (void)uvchan_close(&sub->chan); /* receivers drain what is left, then see the end */
  if (sub->flags_ & UVCHAN_NATS__O_CLOSING)
    uvchan_nats__sub_finish(sub);
}

static void uvchan_nats__sub_start_close(uvchan_nats_sub_t* sub, uvchan_nats_sub_close_cb cb) {
  sub->flags_ |= UVCHAN_NATS__O_CLOSING;
  sub->close_cb_ = cb;
  uvchan_nats__active(sub->nc_, 1); /* its thread's end comes through the async handle */
  (void)uvchan_close(&sub->chan); /* releases a delivery thread waiting to send */
  if (sub->flags_ & UVCHAN_NATS__O_DONE) {
    uvchan_nats__defer(sub->nc_, sub, uvchan_nats__sub_finish_deferred);
    return;
  }
  /* Fails only when the client closed it already: its "complete" callback comes anyway. */
  (void)natsSubscription_Unsubscribe(sub->sub);
}

int uvchan_nats_sub_close(uvchan_nats_sub_t* sub, uvchan_nats_sub_close_cb cb) {
  if (!uvchan_nats__sub_ok(sub) || (sub->flags_ & UVCHAN_NATS__O_CLOSING))
    return UV_EINVAL;
  if (!uvchan_nats__on_thread(sub->nc_))
    return UV_EPERM;
  uvchan_nats__sub_start_close(sub, cb);
  return 0;
}

void uvchan_nats__sub_close_all(uvchan_nats_t* nc) {
  struct uvchan__link_s* l;
  uvchan_nats_sub_t* sub;
  for (l = nc->subs_.next; l != &nc->subs_; l = l->next) {
    sub = UVCHAN__CONTAINER_OF(l, uvchan_nats_sub_t, link_);
    if (!(sub->flags_ & UVCHAN_NATS__O_CLOSING))
      uvchan_nats__sub_start_close(sub, NULL);
  }
}

/* The client closed the connection for good: its subscriptions end, their threads let go. */
void uvchan_nats__sub_conn_closed(uvchan_nats_t* nc) {
  struct uvchan__link_s* l;
  for (l = nc->subs_.next; l != &nc->subs_; l = l->next)
    (void)uvchan_close(&UVCHAN__CONTAINER_OF(l, uvchan_nats_sub_t, link_)->chan);
}

void uvchan_nats__sub_error(uvchan_nats_t* nc, natsSubscription* s, int status) {
  struct uvchan__link_s* l;
  uvchan_nats_sub_t* sub = NULL;
  uvchan_nats_sub_t* it;

  for (l = nc->subs_.next; s != NULL && l != &nc->subs_; l = l->next) {
    it = UVCHAN__CONTAINER_OF(l, uvchan_nats_sub_t, link_);
    if (it->sub == s) {
      sub = it;
      break;
    }
  }
  if ((natsStatus)status == NATS_SLOW_CONSUMER) {
    if (sub != NULL)
      sub->slow_events_++;
    uvchan_nats__event(nc, UVCHAN_NATS_EV_SLOW_CONSUMER, sub, UV_ENOBUFS);
    return;
  }
  uvchan_nats__event(nc, UVCHAN_NATS_EV_ERROR, sub, uvchan_nats_err((natsStatus)status));
}
