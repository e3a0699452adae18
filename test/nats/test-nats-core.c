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

/* ---- queue groups: each message to one member ---- */

enum { N_QUEUE = 2000 };

typedef struct {
  conn_t c;
  uvchan_nats_sub_t w[2];
  uvchan_nats_pub_t pub;
  int got[2];
  uint8_t seen[N_QUEUE];
  int dups;
} queue_t;

typedef struct {
  queue_t* t;
  int i;
} worker_arg_t;

static void q_worker(void* arg) {
  worker_arg_t* a = arg;
  queue_t* t = a->t;
  natsMsg* m;
  int v;
  while (uvchan_task_recv(&t->w[a->i].chan, &m) == 0) {
    memcpy(&v, natsMsg_GetData(m), sizeof(v));
    if (t->seen[v])
      t->dups++;
    t->seen[v] = 1;
    t->got[a->i]++;
    natsMsg_Destroy(m);
    uvchan_task_yield(); /* let the other member have its share */
  }
}

static void q_main(void* arg) {
  queue_t* t = arg;
  uvchan_nats_sub_opts_t so;
  worker_arg_t wa[2];
  natsMsg* m;
  int i;
  connect_in_task(&t->c);
  memset(&so, 0, sizeof(so));
  so.queue = "workers";
  so.capacity = 8;
  for (i = 0; i < 2; i++) {
    assert_int_equal(uvchan_nats_subscribe(&t->c.nc, &t->w[i], "qg.job", &so), 0);
    wa[i].t = t;
    wa[i].i = i;
    assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, q_worker, &wa[i], NULL), 0);
  }
  assert_int_equal(uvchan_nats_pub_init(&t->c.nc, &t->pub, NULL), 0);
  for (i = 0; i < N_QUEUE; i++) {
    m = nmsg("qg.job", &i, sizeof(i));
    assert_int_equal(uvchan_task_send(&t->pub.chan, &m), 0);
  }
  assert_int_equal(uvchan_nats_pub_close(&t->pub, NULL), 0);
  for (i = 0; i < 500 && t->got[0] + t->got[1] < N_QUEUE; i++)
    assert_int_equal(uvchan_task_sleep(10), 0);
  assert_int_equal(uvchan_nats_close(&t->c.nc, on_close), 0); /* ends the workers' ranges */
}

static void test_queue_group(void** state) {
  queue_t* t = calloc(1, sizeof(*t));
  t->c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, q_main, t, NULL), 0);
  assert_int_equal(uv_run(&t->c.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t->got[0] + t->got[1], N_QUEUE);
  assert_int_equal(t->dups, 0);
  assert_true(t->got[0] > 0);
  assert_true(t->got[1] > 0);
  assert_int_equal(t->c.closed, 1);
  free(t);
}

/* ---- the full-channel policy: the client's pending limits, slow consumers reported ---- */

enum { N_FLOOD = 3000, FLOOD_CAP = 4, FLOOD_PENDING = 50 };

typedef struct {
  conn_t c;
  uvchan_nats_sub_t sub;
  uvchan_nats_pub_t pub;
  uvchan_nats_sub_stats_t before, after;
  uint64_t received;
} flood_t;

static natsStatus flush_fn(uvchan_nats_t* nc, void* arg) {
  (void)arg;
  return natsConnection_FlushTimeout(nc->conn, 5000);
}

static void flood_main(void* arg) {
  flood_t* t = arg;
  uvchan_nats_sub_opts_t so;
  natsMsg* m;
  int i;
  connect_in_task(&t->c);
  memset(&so, 0, sizeof(so));
  so.capacity = FLOOD_CAP;
  so.pending_msgs = FLOOD_PENDING;
  assert_int_equal(uvchan_nats_subscribe(&t->c.nc, &t->sub, "flood", &so), 0);
  assert_int_equal(uvchan_nats_pub_init(&t->c.nc, &t->pub, NULL), 0);
  for (i = 0; i < N_FLOOD; i++) { /* nobody receives meanwhile */
    m = nmsg("flood", &i, sizeof(i));
    assert_int_equal(uvchan_task_send(&t->pub.chan, &m), 0);
  }
  assert_int_equal(uvchan_nats_pub_close(&t->pub, NULL), 0);
  assert_int_equal(uvchan_task_sleep(50), 0);
  assert_int_equal(uvchan_nats_task_call(&t->c.nc, flush_fn, NULL), 0); /* all at the server */
  /* Wait until the client has settled every message: in the channel, held, or dropped. */
  for (i = 0; i < 300; i++) {
    assert_int_equal(uvchan_nats_sub_stats(&t->sub, &t->before), 0);
    if (t->before.delivered + t->before.dropped + (uint64_t)t->before.pending_msgs >= N_FLOOD &&
        t->before.pending_msgs >= FLOOD_PENDING - FLOOD_CAP - 1)
      break;
    assert_int_equal(uvchan_task_sleep(10), 0);
  }
  /* Now drain: the channel, then what the client still holds. */
  for (i = 0; i < 300; i++) {
    while (uvchan_try_recv(&t->sub.chan, &m) == 0) {
      natsMsg_Destroy(m);
      t->received++;
    }
    assert_int_equal(uvchan_nats_sub_stats(&t->sub, &t->after), 0);
    if (t->after.pending_msgs == 0 && t->received == t->after.delivered &&
        t->after.delivered + t->after.dropped == N_FLOOD)
      break;
    assert_int_equal(uvchan_task_sleep(5), 0);
  }
  assert_int_equal(uvchan_nats_close(&t->c.nc, on_close), 0);
}

static void test_slow_consumer_policy(void** state) {
  flood_t* t = calloc(1, sizeof(*t));
  t->c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, flood_main, t, NULL), 0);
  assert_int_equal(uv_run(&t->c.f->loop, UV_RUN_DEFAULT), 0);
  print_message("    core flood of %d into a channel of %d, pending limit %d: %llu delivered, "
                "%llu dropped, %llu slow-consumer events\n",
                N_FLOOD, FLOOD_CAP, FLOOD_PENDING, (unsigned long long)t->after.delivered,
                (unsigned long long)t->after.dropped,
                (unsigned long long)t->after.slow_consumer_events);
  /* The channel filled, the delivery thread waited in its send, the client queued up to its
   * limit, and dropped the rest: counted, and reported once per episode. */
  /* The client drops at its limit, counting what its delivery thread has not taken yet: when
   * the flood outran that thread, up to FLOOD_CAP + 1 of the limit's messages were taken after
   * (into the channel, and the one blocked in its send), so fewer than the limit stay held. */
  assert_true(t->before.pending_msgs <= FLOOD_PENDING);
  assert_true(t->before.pending_msgs >= FLOOD_PENDING - FLOOD_CAP - 1);
  assert_true(t->after.dropped > 0);
  assert_true(t->after.slow_consumer_events >= 1);
  assert_true(t->c.events[UVCHAN_NATS_EV_SLOW_CONSUMER] >= 1);
  assert_true(t->c.slow_sub_seen >= 1);
  assert_int_equal(t->after.delivered + t->after.dropped, N_FLOOD); /* every one accounted */
  assert_int_equal(t->received, t->after.delivered);
  assert_int_equal(t->c.closed, 1);
  free(t);
}

/* ---- a graceful shutdown with tasks blocked in every kind of NATS wait ---- */

typedef struct {
  conn_t c;
  uvchan_nats_sub_t sub, mute;
  uvchan_nats_pub_t pub;
  uvchan_nats_pull_t pull;
  uv_timer_t timer;
  int cancelled;
  int ctx_closed;
  int ready;
} shut_t;

static shut_t* SHUT;

static void sh_recv(void* arg) {
  shut_t* t = arg;
  natsMsg* m;
  if (uvchan_task_recv(&t->sub.chan, &m) == UV_ECANCELED)
    t->cancelled++;
}

static void sh_request(void* arg) {
  shut_t* t = arg;
  natsMsg* r;
  if (uvchan_nats_task_request(&t->c.nc, "sh.mute", "x", 1, 0, &r) == UV_ECANCELED)
    t->cancelled++;
}

static void sh_send(void* arg) {
  shut_t* t = arg;
  natsMsg* m;
  int r, i;
  /* The publisher has one record and it is stuck (no stream: sent again and again), so the
   * channel fills and this send waits. */
  for (i = 0;; i++) {
    m = nmsg("sh.nostream", &i, sizeof(i));
    r = uvchan_task_send(&t->pub.chan, &m);
    if (r != 0) {
      natsMsg_Destroy(m);
      break;
    }
  }
  if (r == UV_ECANCELED)
    t->cancelled++;
}

static void sh_pull(void* arg) {
  shut_t* t = arg;
  natsMsg* m;
  if (uvchan_task_recv(&t->pull.chan, &m) == UV_ECANCELED)
    t->cancelled++;
}

static void sh_on_closed(uvchan_ctx_t* ctx) {
  (void)ctx;
  SHUT->ctx_closed++;
}

static void sh_timer(uv_timer_t* h) {
  shut_t* t = h->data;
  uv_close((uv_handle_t*)h, NULL);
  assert_int_equal(uvchan_ctx_shutdown(&t->c.f->ctx, sh_on_closed), 0);
}

static void sh_main(void* arg) {
  shut_t* t = arg;
  uvchan_nats_pub_opts_t po;
  uvchan_nats_pull_opts_t o;
  stream_def_t d;
  connect_in_task(&t->c);
  memset(&d, 0, sizeof(d));
  d.name = "SH";
  d.subject = "sh.js";
  assert_int_equal(uvchan_nats_task_call(&t->c.nc, add_stream_fn, &d), 0);
  assert_int_equal(uvchan_nats_subscribe(&t->c.nc, &t->sub, "sh.sub", NULL), 0);
  assert_int_equal(uvchan_nats_subscribe(&t->c.nc, &t->mute, "sh.mute", NULL), 0);
  memset(&po, 0, sizeof(po));
  po.jetstream = 1;
  po.capacity = 1;
  po.max_inflight = 1;
  po.retry_for = 3600000;
  assert_int_equal(uvchan_nats_pub_init(&t->c.nc, &t->pub, &po), 0);
  memset(&o, 0, sizeof(o));
  o.stream = "SH";
  o.consumer = "sh";
  assert_int_equal(uvchan_nats_pull_start(&t->c.nc, &t->pull, &o), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, sh_recv, t, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, sh_request, t, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, sh_send, t, NULL), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, sh_pull, t, NULL), 0);
  t->ready = 1;
  /* This task waits too: a reply that never comes. */
  sh_request(t);
}

static void test_shutdown(void** state) {
  shut_t* t = calloc(1, sizeof(*t));
  nfixture_t* f = NFX(state);
  SHUT = t;
  t->c.f = f;
  assert_int_equal(uvchan_task_spawn(&f->ctx, sh_main, t, NULL), 0);
  assert_int_equal(uv_timer_init(&f->loop, &t->timer), 0);
  t->timer.data = t;
  assert_int_equal(uv_timer_start(&t->timer, sh_timer, 500, 0), 0);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t->ready, 1);
  assert_int_equal(t->cancelled, 5); /* every blocked call returned UV_ECANCELED */
  assert_int_equal(t->ctx_closed, 1); /* and the connection, closed by the shutdown, let go */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  /* the fixture's teardown closes a context of its own */
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uvchan_ctx_init(&f->loop, &f->ctx), 0);
  free(t);
}

/* ---- cancelling a task in a connect or a blocking call ---- */

typedef struct {
  nfixture_t* f;
  uvchan_nats_t nc, nc2;
  uvchan_task_ref_t connecting, calling;
  int connect_r, call_r, call_ran;
  int closed;
  int listener;
  natsOptions* o; /* valid until nc's close callback: the connect went on behind */
} cancel_t;

static void cancel_closed(uvchan_nats_t* nc) {
  ((cancel_t*)nc->data)->closed++;
}

static void c_connecting(void* arg) {
  cancel_t* t = arg;
  natsOptions* o = NULL;
  char url[64];
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  /* A server that accepts the connection and never speaks: the client waits for its INFO. */
  assert_int_equal(getsockname(t->listener, (struct sockaddr*)&a, &len), 0);
  snprintf(url, sizeof(url), "nats://127.0.0.1:%d", ntohs(a.sin_port));
  assert_int_equal(natsOptions_Create(&o), NATS_OK);
  assert_int_equal(natsOptions_SetURL(o, url), NATS_OK);
  assert_int_equal(natsOptions_SetTimeout(o, 1000), NATS_OK);
  assert_int_equal(natsOptions_SetMaxReconnect(o, 0), NATS_OK);
  t->nc.data = t;
  t->o = o;
  t->connect_r = uvchan_nats_task_connect(&t->f->ctx, &t->nc, NULL, o);
  assert_int_equal(uvchan_nats_close(&t->nc, cancel_closed), 0);
}

static natsStatus slow_fn(uvchan_nats_t* nc, void* arg) {
  (void)nc;
  uv_sleep(200);
  ((cancel_t*)arg)->call_ran = 1;
  return NATS_OK;
}

static void c_calling(void* arg) {
  cancel_t* t = arg;
  t->call_r = uvchan_nats_task_call(&t->nc2, slow_fn, t);
}

static void c_main(void* arg) {
  cancel_t* t = arg;
  t->nc2.data = t;
  assert_int_equal(uvchan_nats_task_connect(&t->f->ctx, &t->nc2, t->f->srv.url, NULL), 0);
  assert_int_equal(uvchan_task_spawn_ref(&t->f->ctx, &t->connecting, c_connecting, t, NULL), 0);
  assert_int_equal(uvchan_task_spawn_ref(&t->f->ctx, &t->calling, c_calling, t, NULL), 0);
  assert_int_equal(uvchan_task_sleep(50), 0);
  assert_int_equal(uvchan_task_cancel(&t->connecting), 0);
  assert_int_equal(uvchan_task_cancel(&t->calling), 0);
  assert_int_equal(uvchan_task_sleep(10), 0);
  assert_int_equal(t->connect_r, UV_ECANCELED); /* at once: the connect goes on behind */
  assert_int_equal(t->call_r, 0);               /* not yet: the call runs to its end */
  while (uvchan_task_alive(&t->calling))
    assert_int_equal(uvchan_task_sleep(10), 0);
  assert_int_equal(t->call_r, UV_ECANCELED);
  assert_int_equal(t->call_ran, 1);
  assert_int_equal(uvchan_nats_close(&t->nc2, cancel_closed), 0);
}

static void test_cancel_blocking_calls(void** state) {
  cancel_t t;
  struct sockaddr_in a;
  memset(&t, 0, sizeof(t));
  t.f = NFX(state);
  t.listener = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(t.listener, (struct sockaddr*)&a, sizeof(a)), 0);
  assert_int_equal(listen(t.listener, 4), 0);
  assert_int_equal(uvchan_task_spawn(&t.f->ctx, c_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.f->loop, UV_RUN_DEFAULT), 0);
  close(t.listener);
  natsOptions_Destroy(t.o);
  assert_int_equal(t.closed, 2); /* the abandoned connect ended, and its connection closed */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      NTEST(test_pub_to_sub),
      NTEST(test_request_reply),
      NTEST(test_queue_group),
      NTEST(test_slow_consumer_policy),
      NTEST(test_shutdown),
      NTEST(test_cancel_blocking_calls),
  };
  int r = cmocka_run_group_tests(tests, NULL, NULL);
  nats_CloseAndWait(1000); /* the client's own threads and memory, for leak checkers */
  return r;
}
