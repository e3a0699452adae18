/* Core NATS through channels: a publisher channel to a subject, a subscription into a channel,
 * queue groups, request/reply from tasks (reply, deadline, no responders, cancel), the full-
 * channel policy (the client's pending limits, slow consumers counted and reported), and a
 * graceful shutdown with tasks blocked in every kind of NATS wait. */
#include "nats-helpers.h"

typedef struct {
  nfixture_t* f;
  uvchan_nats_t nc;
  int connected;
  int closed;
  int events[8];
  int slow_sub_seen;
} conn_t;

static void on_close(uvchan_nats_t* nc) {
  ((conn_t*)nc->data)->closed++;
}

static void on_event(uvchan_nats_t* nc, uvchan_nats_event ev, uvchan_nats_sub_t* sub,
                     int status) {
  conn_t* c = nc->data;
  c->events[ev]++;
  if (ev == UVCHAN_NATS_EV_SLOW_CONSUMER) {
    assert_int_equal(status, UV_ENOBUFS);
    if (sub != NULL)
      c->slow_sub_seen++;
  }
}

/* Connects from a task (the blocking connect runs on the threadpool). */
static void connect_in_task(conn_t* c) {
  assert_int_equal(uvchan_nats_task_connect(&c->f->ctx, &c->nc, c->f->srv.url, NULL), 0);
  c->nc.data = c;
  assert_int_equal(uvchan_nats_set_event_cb(&c->nc, on_event), 0);
  c->connected = 1;
}

/* ---- publish channel -> subscription channel ---- */

enum { N_PUBSUB = 20000 };

typedef struct {
  conn_t c;
  uvchan_nats_sub_t sub;
  uvchan_nats_pub_t pub;
  int received;
  int in_order;
  int eof;
  int pub_closed, sub_closed;
} pubsub_t;

static void ps_pub_closed(uvchan_nats_pub_t* p) {
  ((pubsub_t*)p->data)->pub_closed++;
}
static void ps_sub_closed(uvchan_nats_sub_t* s) {
  ((pubsub_t*)s->data)->sub_closed++;
}

static void ps_receiver(void* arg) {
  pubsub_t* t = arg;
  natsMsg* m;
  int i, v;
  t->in_order = 1;
  for (i = 0; i < N_PUBSUB; i++) {
    assert_int_equal(uvchan_task_recv(&t->sub.chan, &m), 0);
    assert_int_equal(natsMsg_GetDataLength(m), (int)sizeof(int));
    memcpy(&v, natsMsg_GetData(m), sizeof(v));
    if (v != i)
      t->in_order = 0;
    natsMsg_Destroy(m);
    t->received++;
  }
  /* Closing the subscription closes its channel: the receiver sees the end. */
  assert_int_equal(uvchan_nats_sub_close(&t->sub, ps_sub_closed), 0);
  assert_int_equal(uvchan_task_recv(&t->sub.chan, &m), UV_EOF);
  assert_null(m);
  t->eof = 1;
  assert_int_equal(uvchan_nats_close(&t->c.nc, on_close), 0);
}

static void ps_main(void* arg) {
  pubsub_t* t = arg;
  uvchan_nats_sub_opts_t so;
  natsMsg* m;
  int i;
  connect_in_task(&t->c);
  memset(&so, 0, sizeof(so));
  so.capacity = 64;
  t->sub.data = t;
  t->pub.data = t;
  assert_int_equal(uvchan_nats_subscribe(&t->c.nc, &t->sub, "ps.>", &so), 0);
  assert_int_equal(uvchan_nats_pub_init(&t->c.nc, &t->pub, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, ps_receiver, t, NULL), 0);
  for (i = 0; i < N_PUBSUB; i++) {
    m = nmsg("ps.n", &i, sizeof(i));
    assert_int_equal(uvchan_task_send(&t->pub.chan, &m), 0);
  }
  uvchan_close(&t->pub.chan); /* the publisher drains what is buffered, then is done */
  assert_int_equal(uvchan_nats_pub_close(&t->pub, ps_pub_closed), 0);
}

static void test_pub_to_sub(void** state) {
  pubsub_t t;
  uvchan_nats_pub_stats_t ps;
  memset(&t, 0, sizeof(t));
  t.c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t.c.f->ctx, ps_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.c.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.received, N_PUBSUB);
  assert_true(t.in_order); /* one publisher, one subscriber: NATS keeps the order */
  assert_int_equal(t.eof, 1);
  assert_int_equal(t.sub_closed, 1);
  assert_int_equal(t.pub_closed, 1);
  assert_int_equal(t.c.closed, 1);
  (void)ps;
}

/* ---- request/reply ---- */

typedef struct {
  conn_t c;
  uvchan_nats_sub_t svc;
  uvchan_nats_sub_t mute; /* subscribed, never answers: a deadline */
  uvchan_task_ref_t waiter;
  int replies, timeouts, noresp, cancelled;
} rr_t;

static void rr_server(void* arg) {
  rr_t* t = arg;
  natsMsg* m;
  while (uvchan_task_recv(&t->svc.chan, &m) == 0) {
    char out[64];
    int n = snprintf(out, sizeof(out), "re:%.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
    assert_int_equal(natsConnection_Publish(t->c.nc.conn, natsMsg_GetReply(m), out, n), NATS_OK);
    natsMsg_Destroy(m);
  }
}

static void rr_blocked(void* arg) {
  rr_t* t = arg;
  natsMsg* r = NULL;
  assert_int_equal(uvchan_nats_task_request(&t->c.nc, "rr.mute", "x", 1, 0, &r), UV_ECANCELED);
  assert_null(r);
  t->cancelled++;
}

static void rr_main(void* arg) {
  rr_t* t = arg;
  natsMsg* r = NULL;
  char q[16];
  int i, n;
  connect_in_task(&t->c);
  assert_int_equal(uvchan_nats_subscribe(&t->c.nc, &t->svc, "rr.echo", NULL), 0);
  assert_int_equal(uvchan_nats_subscribe(&t->c.nc, &t->mute, "rr.mute", NULL), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, rr_server, t, NULL), 0);
  for (i = 0; i < 200; i++) {
    n = snprintf(q, sizeof(q), "%d", i);
    assert_int_equal(uvchan_nats_task_request(&t->c.nc, "rr.echo", q, (size_t)n, 2000, &r), 0);
    assert_non_null(r);
    assert_int_equal(natsMsg_GetDataLength(r), n + 3);
    assert_memory_equal(natsMsg_GetData(r) + 3, q, (size_t)n);
    natsMsg_Destroy(r);
    t->replies++;
  }
  /* Nobody answers within the deadline. */
  assert_int_equal(uvchan_nats_task_request(&t->c.nc, "rr.mute", "x", 1, 100, &r), UV_ETIMEDOUT);
  assert_null(r);
  t->timeouts++;
  /* Nobody listens: the server says so at once. */
  assert_int_equal(uvchan_nats_task_request(&t->c.nc, "rr.nobody", "x", 1, 5000, &r), UV_ENOENT);
  t->noresp++;
  /* A task cancelled while it waits for its reply. */
  assert_int_equal(uvchan_task_spawn_ref(&t->c.f->ctx, &t->waiter, rr_blocked, t, NULL), 0);
  assert_int_equal(uvchan_task_sleep(50), 0);
  assert_int_equal(uvchan_task_cancel(&t->waiter), 0);
  assert_int_equal(uvchan_task_sleep(10), 0);
  assert_int_equal(t->cancelled, 1);
  assert_int_equal(uvchan_nats_close(&t->c.nc, on_close), 0);
}

static void test_request_reply(void** state) {
  rr_t t;
  memset(&t, 0, sizeof(t));
  t.c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t.c.f->ctx, rr_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.c.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.replies, 200);
  assert_int_equal(t.timeouts, 1);
  assert_int_equal(t.noresp, 1);
  assert_int_equal(t.cancelled, 1);
  assert_int_equal(t.c.closed, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      NTEST(test_pub_to_sub),
      NTEST(test_request_reply),
  };
  int r = cmocka_run_group_tests(tests, NULL, NULL);
  nats_CloseAndWait(1000); /* the client's own threads and memory, for leak checkers */
  return r;
}
