/* Publishers: a channel of natsMsg* drained onto NATS subjects.
 *
 * A pump on the loop receives from the channel (a callback receive, then try-receives while it
 * may take more) and publishes. Core NATS: at once. JetStream: each message takes a record from a
 * pool of max_inflight, goes out with a reply subject on the connection's inbox and a message id,
 * and its record stays taken until the stream's acknowledgement came and the outcome was handed
 * to the acks channel. With every record taken the pump stops receiving, the channel fills and
 * its senders wait: the bound on in-flight publishes is the backpressure from a slow broker.
 *
 * A record whose acknowledgement does not come within ack_timeout is sent again; one the stream
 * refuses for a passing reason (no responder while a server restarts, a full stream that
 * discards new messages) is sent again after a backoff; both until retry_for has passed. The
 * message id makes the stream store a message once however often it is sent (within the
 * stream's duplicate window). A periodic timer, running only while records are out, checks the
 * deadlines. */
#include "nats-internal.h"

#include <stdio.h>

/* A record's state. */
enum {
  UVCHAN_NATS__R_FREE = 0,
  UVCHAN_NATS__R_WAIT,    /* sent, its acknowledgement awaited */
  UVCHAN_NATS__R_BACKOFF, /* refused for a passing reason: sent again when due */
  UVCHAN_NATS__R_SETTLED  /* its outcome waits for room on the acks channel */
};
enum {
  UVCHAN_NATS__PUB_CLOSED_CHAN = 1u << 9, /* the channel is gone (a shutdown, an abort) */
  UVCHAN_NATS__PUB_TIMER = 1u << 10,
  UVCHAN_NATS__PUB_ABORT = 1u << 11 /* closing without publishing what is left */
};

typedef struct uvchan_nats__rec_s {
  uvchan_nats__pending_t p;
  struct uvchan_nats__rec_s* next; /* free list, acks queue */
  uvchan_nats_pub_t* pub;
  natsMsg* msg;
  uint64_t first; /* loop time (ms) of the first send */
  uint64_t due;   /* the acknowledgement's deadline, or the end of a backoff */
  uint64_t seq;
  unsigned attempts;
  int state;
  int status;
  int dup;
  int in_map;
  char id[64];
} uvchan_nats__rec_t;

static int uvchan_nats__pub_ok(const uvchan_nats_pub_t* pub) {
  return pub != NULL && UVCHAN__MAGIC_IS(pub, UVCHAN_NATS__PUB_MAGIC);
}

static uint64_t uvchan_nats__now(uvchan_nats_pub_t* pub) {
  return uv_now(pub->nc_->ctx->loop);
}

static void uvchan_nats__pub_pump(uvchan_nats_pub_t* pub);
static void uvchan_nats__pub_maybe_finish(uvchan_nats_pub_t* pub);
static void uvchan_nats__pub_send(uvchan_nats__rec_t* r);

/* ---- records ---- */

static void uvchan_nats__rec_free(uvchan_nats_pub_t* pub, uvchan_nats__rec_t* r) {
  r->state = UVCHAN_NATS__R_FREE;
  r->msg = NULL;
  r->next = pub->free_;
  pub->free_ = r;
  if (--pub->inflight_ == 0 && (pub->flags_ & UVCHAN_NATS__PUB_TIMER)) {
    pub->flags_ &= ~UVCHAN_NATS__PUB_TIMER;
    uv_timer_stop(&pub->timer_);
  }
}

static void uvchan_nats__pub_on_ack_sent(uvchan_send_t* req, int status);

/* Takes the head of the acks queue off once its send ended with `status`, and frees its record. */
static void uvchan_nats__ack_pop(uvchan_nats_pub_t* pub, int status) {
  uvchan_nats__rec_t* r = pub->ackq_;
  pub->ackq_ = r->next;
  if (pub->ackq_ == NULL)
    pub->ackq_tail_ = NULL;
  if (status != 0)
    natsMsg_Destroy(r->msg); /* nobody will read it: the acks channel is gone or closed */
  uvchan_nats__rec_free(pub, r);
}

/* Hands settled outcomes to the acks channel, in order; waits (one send request) while it is
 * full, unless the publisher is closing, which drops what does not fit now. */
static void uvchan_nats__pub_flush_acks(uvchan_nats_pub_t* pub) {
  uvchan_nats__rec_t* r;
  int err;

  while ((r = pub->ackq_) != NULL && !(pub->flags_ & UVCHAN_NATS__O_ACKSEND)) {
    pub->ack_val_.msg = r->msg;
    pub->ack_val_.status = r->status;
    pub->ack_val_.seq = r->seq;
    pub->ack_val_.duplicate = r->dup;
    pub->ack_val_.attempts = r->attempts;
    err = uvchan_try_send(pub->opts_.acks, &pub->ack_val_);
    if (err == UV_EAGAIN && !(pub->flags_ & UVCHAN_NATS__PUB_ABORT)) {
      err = uvchan_send(&pub->ack_send_, pub->opts_.acks, &pub->ack_val_,
                        uvchan_nats__pub_on_ack_sent);
      if (err == 0) {
        pub->flags_ |= UVCHAN_NATS__O_ACKSEND;
        return;
      }
    }
    uvchan_nats__ack_pop(pub, err);
  }
}

static void uvchan_nats__pub_on_ack_sent(uvchan_send_t* req, int status) {
  uvchan_nats_pub_t* pub = UVCHAN__CONTAINER_OF(req, uvchan_nats_pub_t, ack_send_);
  pub->flags_ &= ~UVCHAN_NATS__O_ACKSEND;
  uvchan_nats__ack_pop(pub, status);
  uvchan_nats__pub_flush_acks(pub);
  uvchan_nats__pub_pump(pub);
  uvchan_nats__pub_maybe_finish(pub);
}

static void uvchan_nats__settle(uvchan_nats__rec_t* r, int status) {
  uvchan_nats_pub_t* pub = r->pub;
  if (r->in_map) {
    uvchan_nats__map_remove(pub->nc_, &r->p);
    r->in_map = 0;
  }
  r->state = UVCHAN_NATS__R_SETTLED;
  r->status = status;
  if (status == 0) {
    if (pub->opts_.jetstream)
      pub->acked_++;
  } else {
    pub->failed_++;
  }
  if (pub->opts_.acks == NULL) {
    natsMsg_Destroy(r->msg);
    uvchan_nats__rec_free(pub, r);
    return;
  }
  r->next = NULL;
  if (pub->ackq_tail_ != NULL)
    ((uvchan_nats__rec_t*)pub->ackq_tail_)->next = r;
  else
    pub->ackq_ = r;
  pub->ackq_tail_ = r;
  uvchan_nats__pub_flush_acks(pub);
}

/* ---- JetStream acknowledgements ---- */

/* The value of `key` (quoted, with its colon: a stream may well be named "error" or "seq") in
 * the server's small JSON answer, past any white space, or NULL. The acknowledgement is
 * {"stream":"S", "seq":5} or {"stream":"S", "seq":5,"duplicate": true}, an error
 * {"error":{"code":503,"err_code":10077,"description":"..."}}: spacing is the server's choice. */
static const char* uvchan_nats__json_value(const char* json, const char* key) {
  const char* p = strstr(json, key);
  if (p == NULL)
    return NULL;
  for (p += strlen(key); *p == ' ' || *p == '\t'; p++)
    ;
  return p;
}

/* A non-negative number as the value of `key`, or -1. */
static long long uvchan_nats__json_num(const char* json, const char* key) {
  const char* p = uvchan_nats__json_value(json, key);
  long long n = 0;
  if (p == NULL || *p < '0' || *p > '9')
    return -1;
  for (; *p >= '0' && *p <= '9'; p++)
    n = n * 10 + (*p - '0');
  return n;
}

static uint64_t uvchan_nats__backoff(unsigned attempts) {
  uint64_t ms = 50u << (attempts > 4 ? 4 : attempts); /* 100 ms, doubling, to 800 ms */
  return ms > 1000 ? 1000 : ms;
}

/* A passing refusal: send again after a backoff, unless retry_for is over. */
static void uvchan_nats__retry_later(uvchan_nats__rec_t* r, int status) {
  uvchan_nats_pub_t* pub = r->pub;
  uint64_t now = uvchan_nats__now(pub);
  if (now - r->first >= pub->opts_.retry_for) {
    uvchan_nats__settle(r, status);
    return;
  }
  r->state = UVCHAN_NATS__R_BACKOFF;
  r->status = status;
  r->due = now + uvchan_nats__backoff(r->attempts);
}

static void uvchan_nats__pub_settle_reply(uvchan_nats__rec_t* r, natsMsg* msg, int status);

/* An acknowledgement (or the connection's end): settle, then take more from the channel. */
static void uvchan_nats__pub_on_reply(uvchan_nats__pending_t* p, natsMsg* msg, int status) {
  uvchan_nats__rec_t* r = UVCHAN__CONTAINER_OF(p, uvchan_nats__rec_t, p);
  uvchan_nats_pub_t* pub = r->pub;
  uvchan_nats__pub_settle_reply(r, msg, status);
  uvchan_nats__pub_pump(pub);
  uvchan_nats__pub_maybe_finish(pub);
}

static void uvchan_nats__pub_settle_reply(uvchan_nats__rec_t* r, natsMsg* msg, int status) {
  char buf[512];
  const char* data;
  const char* v;
  long long code, err_code, seq;
  int n;

  r->in_map = 0; /* taken out of the table by the caller */
  if (msg == NULL) { /* the connection closes, or was lost */
    uvchan_nats__settle(r, status);
    return;
  }
  if (natsMsg_IsNoResponders(msg)) { /* no stream answers: none for the subject, or restarting */
    natsMsg_Destroy(msg);
    uvchan_nats__retry_later(r, UV_ENOENT);
    return;
  }
  data = natsMsg_GetData(msg);
  n = natsMsg_GetDataLength(msg);
  if (data == NULL || n <= 0)
    n = 0;
  if (n >= (int)sizeof(buf))
    n = (int)sizeof(buf) - 1;
  if (n > 0)
    memcpy(buf, data, (size_t)n);
  buf[n] = '\0';
  natsMsg_Destroy(msg);
  v = uvchan_nats__json_value(buf, "\"error\":");
  if (v != NULL && *v == '{') {
    code = uvchan_nats__json_num(buf, "\"code\":");
    err_code = uvchan_nats__json_num(buf, "\"err_code\":");
    status = uvchan_nats_js_err(NATS_ERR, err_code > 0 ? (jsErrCode)err_code : (jsErrCode)0);
    if (status == UV_ENOSPC || code == 503)
      uvchan_nats__retry_later(r, status == UV_EIO ? UV_EAGAIN : status);
    else
      uvchan_nats__settle(r, status);
    return;
  }
  seq = uvchan_nats__json_num(buf, "\"seq\":");
  if (seq < 0) {
    uvchan_nats__settle(r, UV_EPROTO);
    return;
  }
  r->seq = (uint64_t)seq;
  v = uvchan_nats__json_value(buf, "\"duplicate\":");
  r->dup = v != NULL && strncmp(v, "true", 4) == 0;
  uvchan_nats__settle(r, 0);
}

/* Copies the user's headers onto the message that goes out (it has our reply subject). */
static natsStatus uvchan_nats__copy_headers(natsMsg* from, natsMsg* to) {
  const char** keys = NULL;
  const char** vals = NULL;
  int nk = 0, nv = 0, i, j;
  natsStatus s = natsMsgHeader_Keys(from, &keys, &nk);
  if (s == NATS_NOT_FOUND)
    return NATS_OK;
  for (i = 0; s == NATS_OK && i < nk; i++) {
    s = natsMsgHeader_Values(from, keys[i], &vals, &nv);
    for (j = 0; s == NATS_OK && j < nv; j++)
      s = natsMsgHeader_Add(to, keys[i], vals[j]);
    free((void*)vals);
    vals = NULL;
  }
  free((void*)keys);
  return s;
}

static void uvchan_nats__pub_send(uvchan_nats__rec_t* r) {
  uvchan_nats_pub_t* pub = r->pub;
  uvchan_nats_t* nc = pub->nc_;
  char reply[256];
  natsMsg* out = NULL;
  natsStatus s;

  if (nc->state_ != UVCHAN_NATS__CONNECTED) {
    uvchan_nats__settle(r, UV_ENOTCONN);
    return;
  }
  if (r->in_map) { /* a send again: the late acknowledgement of the last one is dropped */
    uvchan_nats__map_remove(nc, &r->p);
    r->in_map = 0;
  }
  if (nc->inbox_len_ + 21 > sizeof(reply) || uvchan_nats__map_add(nc, &r->p) == 0) {
    uvchan_nats__settle(r, UV_ENOMEM);
    return;
  }
  r->in_map = 1;
  uvchan_nats__reply_subject(nc, r->p.token, reply);
  s = natsMsg_Create(&out, natsMsg_GetSubject(r->msg), reply, natsMsg_GetData(r->msg),
                     natsMsg_GetDataLength(r->msg));
  if (s == NATS_OK)
    s = uvchan_nats__copy_headers(r->msg, out);
  if (s == NATS_OK)
    s = natsMsgHeader_Set(out, "Nats-Msg-Id", r->id);
  if (s == NATS_OK)
    s = natsConnection_PublishMsg(nc->conn, out);
  natsMsg_Destroy(out);
  if (r->attempts++ == 0)
    pub->published_++;
  else
    pub->retries_++;
  if (s == NATS_OK) {
    r->state = UVCHAN_NATS__R_WAIT;
    r->due = uvchan_nats__now(pub) + pub->opts_.ack_timeout;
  } else if (s == NATS_INSUFFICIENT_BUFFER || s == NATS_CONNECTION_DISCONNECTED) {
    uvchan_nats__retry_later(r, uvchan_nats_err(s)); /* reconnecting, its buffer full */
  } else {
    uvchan_nats__settle(r, uvchan_nats_err(s));
  }
}

static void uvchan_nats__pub_tick(uv_timer_t* t) {
  uvchan_nats_pub_t* pub = UVCHAN__CONTAINER_OF(t, uvchan_nats_pub_t, timer_);
  uvchan_nats__rec_t* recs = pub->recs_;
  uint64_t now = uv_now(t->loop);
  unsigned i;

  for (i = 0; i < pub->opts_.max_inflight; i++) {
    uvchan_nats__rec_t* r = &recs[i];
    if ((r->state != UVCHAN_NATS__R_WAIT && r->state != UVCHAN_NATS__R_BACKOFF) || r->due > now)
      continue;
    if (r->state == UVCHAN_NATS__R_WAIT && now - r->first >= pub->opts_.retry_for)
      uvchan_nats__settle(r, UV_ETIMEDOUT);
    else
      uvchan_nats__pub_send(r); /* its acknowledgement is late, or its backoff is over */
  }
  uvchan_nats__pub_pump(pub);
  uvchan_nats__pub_maybe_finish(pub);
}

/* ---- the pump ---- */

static void uvchan_nats__pub_take(uvchan_nats_pub_t* pub, natsMsg* msg) {
  uvchan_nats__rec_t* r = NULL;
  const char* v = NULL;
  natsStatus s;
  size_t n;
  int status;

  if (pub->opts_.jetstream || pub->opts_.acks != NULL) {
    r = pub->free_;
    pub->free_ = r->next;
    memset(r, 0, sizeof(*r));
    r->pub = pub;
    r->msg = msg;
    r->p.on_reply = uvchan_nats__pub_on_reply;
    r->first = uvchan_nats__now(pub);
    if (++pub->inflight_ > pub->max_seen_)
      pub->max_seen_ = pub->inflight_;
  }
  if (uvchan_nats_subject_check(natsMsg_GetSubject(msg), 0) != 0) {
    status = UV_EINVAL;
  } else if (pub->nc_->state_ != UVCHAN_NATS__CONNECTED) {
    status = UV_ENOTCONN;
  } else if (!pub->opts_.jetstream) {
    s = natsConnection_PublishMsg(pub->nc_->conn, msg);
    pub->published_++;
    status = uvchan_nats_err(s);
  } else {
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &v) == NATS_OK && v != NULL &&
        (n = strlen(v)) < sizeof(r->id)) {
      memcpy(r->id, v, n + 1);
    } else { /* the prefix (at most 31 bytes) and a count (at most 20 digits) fit in 64 */
      memcpy(r->id, pub->id_prefix_, pub->id_prefix_len_);
      uvchan_nats__u64(r->id + pub->id_prefix_len_, ++pub->next_id_);
    }
    if (!(pub->flags_ & UVCHAN_NATS__PUB_TIMER)) {
      uint64_t tick = pub->opts_.ack_timeout / 4;
      tick = tick < 5 ? 5 : tick > 100 ? 100 : tick;
      pub->flags_ |= UVCHAN_NATS__PUB_TIMER;
      uv_timer_start(&pub->timer_, uvchan_nats__pub_tick, tick, tick);
    }
    uvchan_nats__pub_send(r);
    return;
  }
  if (r != NULL) {
    uvchan_nats__settle(r, status);
  } else {
    if (status != 0)
      pub->failed_++;
    natsMsg_Destroy(msg);
  }
}

static void uvchan_nats__pub_on_recv(uvchan_recv_t* req, int status) {
  uvchan_nats_pub_t* pub = UVCHAN__CONTAINER_OF(req, uvchan_nats_pub_t, rreq_);
  pub->flags_ &= ~UVCHAN_NATS__O_RQ;
  if (status == 0)
    uvchan_nats__pub_take(pub, pub->rmsg_);
  else if (status == UV_EOF)
    pub->flags_ |= UVCHAN_NATS__O_EOF;
  else
    pub->flags_ |= UVCHAN_NATS__PUB_CLOSED_CHAN; /* UV_ECANCELED: a shutdown, or our close */
  uvchan_nats__pub_pump(pub);
  uvchan_nats__pub_maybe_finish(pub);
}

static int uvchan_nats__pub_can_take(const uvchan_nats_pub_t* pub) {
  if (pub->flags_ & (UVCHAN_NATS__PUB_ABORT | UVCHAN_NATS__O_EOF | UVCHAN_NATS__O_RQ |
                     UVCHAN_NATS__PUB_CLOSED_CHAN))
    return 0;
  return pub->recs_ == NULL || pub->free_ != NULL;
}

static void uvchan_nats__pub_pump(uvchan_nats_pub_t* pub) {
  natsMsg* msg;
  int err;
  while (uvchan_nats__pub_can_take(pub)) {
    err = uvchan_try_recv(&pub->chan, &msg);
    if (err == 0) {
      uvchan_nats__pub_take(pub, msg);
    } else if (err == UV_EAGAIN) {
      if (uvchan_recv(&pub->rreq_, &pub->chan, &pub->rmsg_, uvchan_nats__pub_on_recv) == 0)
        pub->flags_ |= UVCHAN_NATS__O_RQ;
      else
        pub->flags_ |= UVCHAN_NATS__PUB_CLOSED_CHAN; /* a shutdown refuses new waits */
      return;
    } else if (err == UV_EOF) {
      pub->flags_ |= UVCHAN_NATS__O_EOF;
    } else {
      pub->flags_ |= UVCHAN_NATS__PUB_CLOSED_CHAN;
    }
  }
}

/* ---- end ---- */

static void uvchan_nats__pub_on_timer_closed(uv_handle_t* h) {
  uvchan_nats_pub_t* pub = UVCHAN__CONTAINER_OF(h, uvchan_nats_pub_t, timer_);
  uvchan_nats_t* nc = pub->nc_;
  uvchan_nats_pub_close_cb cb = pub->close_cb_;
  uvchan__list_remove(&pub->link_);
  free(pub->recs_);
  pub->recs_ = NULL;
  pub->magic_ = 0;
  if (cb != NULL)
    cb(pub);
  uvchan_nats__close_step(nc);
}

static void uvchan_nats__pub_maybe_finish(uvchan_nats_pub_t* pub) {
  int drained = pub->flags_ & (UVCHAN_NATS__O_EOF | UVCHAN_NATS__PUB_CLOSED_CHAN);
  if (!drained || pub->inflight_ != 0 || (pub->flags_ & UVCHAN_NATS__O_ACKSEND))
    return;
  if (!(pub->flags_ & UVCHAN_NATS__O_FINISHED)) {
    pub->flags_ |= UVCHAN_NATS__O_FINISHED;
    if (pub->opts_.acks != NULL)
      (void)uvchan_close(pub->opts_.acks); /* every outcome is in it: a range over it ends */
  }
  if ((pub->flags_ & UVCHAN_NATS__O_CLOSING) && !(pub->flags_ & UVCHAN_NATS__O_RQ) &&
      !uv_is_closing((uv_handle_t*)&pub->timer_)) {
    uvchan_destroy(&pub->chan); /* messages left are destroyed */
    uv_close((uv_handle_t*)&pub->timer_, uvchan_nats__pub_on_timer_closed);
  }
}

/* Settles with `status` every record still out (awaiting its acknowledgement or a resend). */
static void uvchan_nats__settle_out(uvchan_nats_pub_t* pub, int status) {
  uvchan_nats__rec_t* recs = pub->recs_;
  unsigned i;
  for (i = 0; recs != NULL && i < pub->opts_.max_inflight; i++)
    if (recs[i].state == UVCHAN_NATS__R_WAIT || recs[i].state == UVCHAN_NATS__R_BACKOFF)
      uvchan_nats__settle(&recs[i], status);
}

/* Aborts: nothing more is published, what awaits an acknowledgement settles with `status`. */
static void uvchan_nats__pub_abort(uvchan_nats_pub_t* pub, int status) {
  pub->flags_ |= UVCHAN_NATS__O_CLOSING | UVCHAN_NATS__PUB_ABORT | UVCHAN_NATS__PUB_CLOSED_CHAN;
  (void)uvchan_close(&pub->chan);
  if (pub->flags_ & UVCHAN_NATS__O_RQ)
    (void)uvchan_cancel((uvchan_req_t*)&pub->rreq_);
  if (pub->flags_ & UVCHAN_NATS__O_ACKSEND)
    (void)uvchan_cancel((uvchan_req_t*)&pub->ack_send_);
  uvchan_nats__settle_out(pub, status);
  uvchan_nats__pub_maybe_finish(pub);
}

int uvchan_nats_pub_close(uvchan_nats_pub_t* pub, uvchan_nats_pub_close_cb cb) {
  if (!uvchan_nats__pub_ok(pub) || (pub->flags_ & UVCHAN_NATS__O_CLOSING))
    return UV_EINVAL;
  if (!uvchan_nats__on_thread(pub->nc_))
    return UV_EPERM;
  /* Graceful: the channel closes (waiting senders get UV_EPIPE), what it holds is still
   * published and settled, then the timer closes and `cb` comes from the loop: from the
   * callback of a receive, of an acks send, of the timer's close, never from here. */
  pub->flags_ |= UVCHAN_NATS__O_CLOSING;
  pub->close_cb_ = cb;
  (void)uvchan_close(&pub->chan);
  if (!(pub->flags_ & UVCHAN_NATS__O_RQ))
    uvchan_nats__pub_pump(pub);
  uvchan_nats__pub_maybe_finish(pub);
  return 0;
}

void uvchan_nats__pub_close_all(uvchan_nats_t* nc) {
  struct uvchan__link_s* l;
  uvchan_nats_pub_t* pub;
  for (l = nc->pubs_.next; l != &nc->pubs_; l = l->next) {
    pub = UVCHAN__CONTAINER_OF(l, uvchan_nats_pub_t, link_);
    if (!(pub->flags_ & UVCHAN_NATS__PUB_ABORT))
      uvchan_nats__pub_abort(pub, UV_ECANCELED);
  }
}

/* The connection is gone for good: what awaits an acknowledgement will never get one. */
void uvchan_nats__pub_conn_closed(uvchan_nats_t* nc) {
  struct uvchan__link_s* l;
  uvchan_nats_pub_t* pub;
  for (l = nc->pubs_.next; l != &nc->pubs_; l = l->next) {
    pub = UVCHAN__CONTAINER_OF(l, uvchan_nats_pub_t, link_);
    uvchan_nats__settle_out(pub, UV_ENOTCONN);
    uvchan_nats__pub_pump(pub); /* what comes next fails with UV_ENOTCONN */
    uvchan_nats__pub_maybe_finish(pub);
  }
}

/* ---- start ---- */

int uvchan_nats_pub_init(uvchan_nats_t* nc, uvchan_nats_pub_t* pub,
                         const uvchan_nats_pub_opts_t* opts) {
  uvchan_nats_pub_opts_t o;
  uvchan_nats__rec_t* recs = NULL;
  natsInbox* inbox = NULL;
  void* data;
  unsigned i;
  int err;

  if ((err = uvchan_nats__usable(nc)) != 0)
    return err;
  if (pub == NULL)
    return UV_EINVAL;
  if (UVCHAN__MAGIC_IS(pub, UVCHAN_NATS__PUB_MAGIC))
    return UV_EBUSY; /* live, or closing until its callback */
  memset(&o, 0, sizeof(o));
  if (opts != NULL)
    o = *opts;
  if (o.acks != NULL && (uvchan_elem_size(o.acks) != sizeof(uvchan_nats_puback_t) ||
                         uvchan_is_closed(o.acks) != 0 || uvchan_is_shared(o.acks)))
    return UV_EINVAL;
  if (o.capacity == 0)
    o.capacity = UVCHAN_NATS_DEFAULT_CAPACITY;
  if (o.max_inflight == 0)
    o.max_inflight = UVCHAN_NATS_DEFAULT_MAX_INFLIGHT;
  if (o.ack_timeout == 0)
    o.ack_timeout = UVCHAN_NATS_DEFAULT_ACK_TIMEOUT;
  if (o.retry_for == 0)
    o.retry_for = UVCHAN_NATS_DEFAULT_RETRY_FOR;
  data = pub->data; /* the user's, set before the init as libuv allows */
  memset(pub, 0, sizeof(*pub));
  pub->data = data;
  if (o.jetstream || o.acks != NULL) {
    recs = calloc(o.max_inflight, sizeof(*recs));
    if (recs == NULL)
      return UV_ENOMEM;
    for (i = o.max_inflight; i-- > 0;) {
      recs[i].next = pub->free_;
      pub->free_ = &recs[i];
    }
  }
  if (natsInbox_Create(&inbox) != NATS_OK) {
    free(recs);
    return UV_ENOMEM;
  }
  /* Message ids: a unique prefix (the inbox's random part) and a count. */
  snprintf(pub->id_prefix_, sizeof(pub->id_prefix_), "%.24s-",
           strchr(inbox, '.') != NULL ? strchr(inbox, '.') + 1 : inbox);
  pub->id_prefix_len_ = strlen(pub->id_prefix_);
  natsInbox_Destroy(inbox);
  if ((err = uvchan_init(nc->ctx, &pub->chan, sizeof(natsMsg*), o.capacity)) != 0) {
    free(recs);
    return err;
  }
  uvchan_set_destructor(&pub->chan, uvchan_nats__free_msg_dtor);
  if ((err = uv_timer_init(nc->ctx->loop, &pub->timer_)) != 0) {
    uvchan_destroy(&pub->chan);
    free(recs);
    return err;
  }
  pub->nc_ = nc;
  pub->opts_ = o;
  pub->recs_ = recs;
  uvchan__list_push(&nc->pubs_, &pub->link_);
  pub->magic_ = UVCHAN_NATS__PUB_MAGIC;
  uvchan_nats__pub_pump(pub);
  return 0;
}

int uvchan_nats_pub_stats(const uvchan_nats_pub_t* pub, uvchan_nats_pub_stats_t* stats) {
  if (!uvchan_nats__pub_ok(pub) || stats == NULL)
    return UV_EINVAL;
  stats->published = pub->published_;
  stats->acked = pub->acked_;
  stats->failed = pub->failed_;
  stats->retries = pub->retries_;
  stats->inflight = pub->inflight_;
  stats->max_inflight = pub->max_seen_;
  return 0;
}
