/* Request/reply from a task: the request goes out with a reply subject on the connection's inbox,
 * and the task awaits (uvchan_task_await) the reply the loop finds by its token. The deadline and
 * a cancel are the await's: its cancel hook takes the waiter out of the table, and a reply that
 * comes later finds nobody and is dropped. */
#include "nats-internal.h"

typedef struct {
  uvchan_nats__pending_t p;
  uvchan_await_t aw;
  uvchan_nats_t* nc;
  natsMsg* reply;
} uvchan_nats__req_t;

static void uvchan_nats__req_reply(uvchan_nats__pending_t* p, natsMsg* msg, int status) {
  uvchan_nats__req_t* r = UVCHAN__CONTAINER_OF(p, uvchan_nats__req_t, p);
  if (msg != NULL && natsMsg_IsNoResponders(msg)) {
    natsMsg_Destroy(msg);
    msg = NULL;
    status = UV_ENOENT;
  }
  r->reply = msg;
  uvchan_await_done(&r->aw, status);
}

static void uvchan_nats__req_cancel(uvchan_await_t* aw) {
  uvchan_nats__req_t* r = aw->data;
  if (uvchan_nats__map_remove(r->nc, &r->p))
    uvchan_await_done(aw, UV_ECANCELED);
}

int uvchan_nats_task_request(uvchan_nats_t* nc, const char* subject, const void* data,
                             size_t len, uint64_t timeout, natsMsg** reply) {
  uvchan_nats__req_t r;
  char rsubj[256];
  natsStatus s;
  int err;

  if (uvchan_task_self() == NULL || reply == NULL || (data == NULL && len > 0) || len > INT32_MAX)
    return UV_EINVAL;
  *reply = NULL;
  if ((err = uvchan_nats__usable(nc)) != 0)
    return err;
  if (uvchan_nats_subject_check(subject, 0) != 0)
    return UV_EINVAL;
  if (uvchan_task_cancelled())
    return UV_ECANCELED;
  if (nc->inbox_len_ + 21 > sizeof(rsubj))
    return UV_ENOMEM;
  memset(&r, 0, sizeof(r));
  r.nc = nc;
  r.p.on_reply = uvchan_nats__req_reply;
  uvchan_await_init(&r.aw, uvchan_nats__req_cancel, NULL);
  r.aw.data = &r;
  if (uvchan_nats__map_add(nc, &r.p) == 0)
    return UV_ENOMEM;
  uvchan_nats__reply_subject(nc, r.p.token, rsubj);
  s = natsConnection_PublishRequest(nc->conn, subject, rsubj, data, (int)len);
  if (s != NATS_OK) {
    uvchan_nats__map_remove(nc, &r.p);
    return uvchan_nats_err(s);
  }
  /* The reply comes through the async handle: keep the loop alive; and the connection's close
   * waits for this task to be back (ncalls_), since it touches the connection after. */
  uvchan_nats__active(nc, 1);
  nc->ncalls_++;
  err = (int)(timeout != 0 ? uvchan_task_await_timeout(&r.aw, timeout) : uvchan_task_await(&r.aw));
  nc->ncalls_--;
  uvchan_nats__active(nc, -1);
  uvchan_nats__close_step(nc);
  if (err == 0)
    *reply = r.reply;
  else if (r.reply != NULL)
    natsMsg_Destroy(r.reply);
  return err;
}
