/* Bad input to the NATS module, each with its clear code (the rows of docs/errors.md marked
 * test-nats-errors): the status mapping, bad subjects and names, no server, a connection closed by
 * us or lost for good, a missing stream, wrong threads, task calls outside a task, NULLs. */
#include "nats-helpers.h"

/* ---- the mapping of the client's statuses ---- */

static void test_status_mapping(void** state) {
  (void)state;
  assert_int_equal(uvchan_nats_err(NATS_OK), 0);
  assert_int_equal(uvchan_nats_err(NATS_TIMEOUT), UV_ETIMEDOUT);
  assert_int_equal(uvchan_nats_err(NATS_NO_SERVER), UV_ECONNREFUSED);
  assert_int_equal(uvchan_nats_err(NATS_CONNECTION_CLOSED), UV_ENOTCONN);
  assert_int_equal(uvchan_nats_err(NATS_CONNECTION_DISCONNECTED), UV_ECONNRESET);
  assert_int_equal(uvchan_nats_err(NATS_STALE_CONNECTION), UV_ECONNRESET);
  assert_int_equal(uvchan_nats_err(NATS_INVALID_SUBJECT), UV_EINVAL);
  assert_int_equal(uvchan_nats_err(NATS_INVALID_ARG), UV_EINVAL);
  assert_int_equal(uvchan_nats_err(NATS_INVALID_SUBSCRIPTION), UV_EBADF);
  assert_int_equal(uvchan_nats_err(NATS_NO_RESPONDERS), UV_ENOENT);
  assert_int_equal(uvchan_nats_err(NATS_NOT_FOUND), UV_ENOENT);
  assert_int_equal(uvchan_nats_err(NATS_SLOW_CONSUMER), UV_ENOBUFS);
  assert_int_equal(uvchan_nats_err(NATS_MAX_PAYLOAD), UV_E2BIG);
  assert_int_equal(uvchan_nats_err(NATS_NO_MEMORY), UV_ENOMEM);
  assert_int_equal(uvchan_nats_err(NATS_NOT_PERMITTED), UV_EACCES);
  assert_int_equal(uvchan_nats_err(NATS_CONNECTION_AUTH_FAILED), UV_EACCES);
  assert_int_equal(uvchan_nats_err(NATS_PROTOCOL_ERROR), UV_EPROTO);
  assert_int_equal(uvchan_nats_err(NATS_NO_SERVER_SUPPORT), UV_ENOTSUP);
  assert_int_equal(uvchan_nats_err(NATS_ERR), UV_EIO);
  assert_int_equal(uvchan_nats_js_err(NATS_NOT_FOUND, JSStreamNotFoundErr), UV_ENOENT);
  assert_int_equal(uvchan_nats_js_err(NATS_ERR, JSConsumerNotFoundErr), UV_ENOENT);
  assert_int_equal(uvchan_nats_js_err(NATS_ERR, JSStreamNameExistErr), UV_EEXIST);
  assert_int_equal(uvchan_nats_js_err(NATS_ERR, JSStreamStoreFailedErr), UV_ENOSPC);
  assert_int_equal(uvchan_nats_js_err(NATS_ERR, JSStreamMessageExceedsMaximumErr), UV_E2BIG);
  assert_int_equal(uvchan_nats_js_err(NATS_TIMEOUT, 0), UV_ETIMEDOUT);
}

static void test_subjects(void** state) {
  (void)state;
  assert_int_equal(uvchan_nats_subject_check("a", 0), 0);
  assert_int_equal(uvchan_nats_subject_check("a.b.c", 0), 0);
  assert_int_equal(uvchan_nats_subject_check("a.*.c", 1), 0);
  assert_int_equal(uvchan_nats_subject_check("a.>", 1), 0);
  assert_int_equal(uvchan_nats_subject_check("a*b", 0), 0); /* not a wildcard token */
  assert_int_equal(uvchan_nats_subject_check(NULL, 0), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a b", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a\tb", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a\r\nb", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a..b", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check(".a", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a.", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a.>.b", 1), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a.*", 0), UV_EINVAL);
  assert_int_equal(uvchan_nats_subject_check("a.>", 0), UV_EINVAL);
}

/* ---- no server, bad arguments to connect ---- */

typedef struct {
  int calls;
  int status;
  int closed;
} cb_t;

static void on_connect(uvchan_nats_t* nc, int status) {
  cb_t* c = nc->data;
  c->calls++;
  c->status = status;
}

static void on_closed(uvchan_nats_t* nc) {
  ((cb_t*)nc->data)->closed++;
}

static void test_no_server(void** state) {
  nfixture_t* f = NFX(state);
  uvchan_nats_t nc;
  cb_t c;
  char url[64];
  memset(&nc, 0, sizeof(nc));
  memset(&c, 0, sizeof(c));
  nc.data = &c;
  assert_int_equal(uvchan_nats_connect(NULL, &nc, f->srv.url, NULL, on_connect), UV_EINVAL);
  assert_int_equal(uvchan_nats_connect(&f->ctx, NULL, f->srv.url, NULL, on_connect), UV_EINVAL);
  assert_int_equal(uvchan_nats_connect(&f->ctx, &nc, f->srv.url, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_connect(&f->ctx, &nc, NULL, NULL, on_connect), UV_EINVAL);
  assert_int_equal(uvchan_nats_connect(&f->ctx, &nc, "nats://a b:1", NULL, on_connect), 0);
  assert_int_equal(uvchan_nats_connect(&f->ctx, &nc, f->srv.url, NULL, on_connect), UV_EBUSY);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, 1);
  assert_true(c.status < 0); /* an address that resolves to nothing: no server */
  assert_int_equal(uvchan_nats_close(&nc, on_closed), 0);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.closed, 1);

  /* A port nobody listens on: connection refused. */
  memset(&c, 0, sizeof(c));
  snprintf(url, sizeof(url), "nats://127.0.0.1:%d", natsrv_free_port());
  assert_int_equal(uvchan_nats_connect(&f->ctx, &nc, url, NULL, on_connect), 0);
  assert_int_equal(c.calls, 0); /* never from inside the call */
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, UV_ECONNREFUSED);
  /* A connection that failed is not usable, and must still be closed. */
  assert_int_equal(uvchan_nats_pub_init(&nc, &(uvchan_nats_pub_t){0}, NULL), UV_ENOTCONN);
  assert_int_equal(uvchan_nats_close(&nc, on_closed), 0);
  assert_int_equal(uvchan_nats_close(&nc, on_closed), UV_EINVAL); /* closing already */
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.closed, 1);
  assert_int_equal(uvchan_nats_close(&nc, on_closed), UV_EINVAL); /* closed */
}

/* ---- bad subjects and names on a live connection, a closed connection ---- */

typedef struct {
  nfixture_t* f;
  uvchan_nats_t nc;
  cb_t c;
  int done;
  int pub_status;
  int nostream_status;
  int pull_status;
  int pull_eof;
  int full_status[2];
  int noack_status;
  unsigned noack_attempts;
  int req_closed;
  /* Objects that must outlive their close callbacks: not in a block of the task's stack. */
  uvchan_nats_pub_t pub4, pub5;
  uvchan_nats_sub_t noack, listener;
} bad_t;

static bad_t* BAD;

static void bad_waiter(void* arg) {
  natsMsg* r = NULL;
  (void)arg;
  BAD->req_closed = uvchan_nats_task_request(&BAD->nc, "nobody.answers.but.someone.listens", "x",
                                             1, 0, &r);
}

static void bad_main(void* arg) {
  bad_t* t = arg;
  uvchan_nats_sub_t sub;
  uvchan_nats_pub_t pub, pub2, pub3;

  uvchan_nats_pub_opts_t po;
  uvchan_nats_pull_t pull;
  uvchan_nats_pull_opts_t o;
  uvchan_nats_puback_t a;
  uvchan_nats_sub_opts_t so;
  uvchan_nats_stats_t st;
  uvchan_t acks;
  natsMsg* m;
  natsMsg* r = NULL;
  int i;

  memset(&sub, 0, sizeof(sub));
  t->nc.data = &t->c;
  assert_int_equal(uvchan_nats_task_connect(&t->f->ctx, &t->nc, t->f->srv.url, NULL), 0);
  /* subjects */
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &sub, "a b", NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &sub, "", NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &sub, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &sub, "a.>.b", NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_subscribe(&t->nc, NULL, "a", NULL), UV_EINVAL);
  memset(&so, 0, sizeof(so));
  so.queue = "q q";
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &sub, "a", &so), UV_EINVAL);
  assert_int_equal(uvchan_nats_task_request(&t->nc, "a.*", "x", 1, 100, &r), UV_EINVAL);
  assert_int_equal(uvchan_nats_task_request(&t->nc, "a b", "x", 1, 100, &r), UV_EINVAL);
  assert_int_equal(uvchan_nats_task_request(&t->nc, "a", "x", 1, 100, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_task_request(&t->nc, "a", NULL, 1, 100, &r), UV_EINVAL);
  assert_int_equal(uvchan_nats_task_call(&t->nc, NULL, NULL), UV_EINVAL);
  /* a publisher given a message with a bad subject reports it on its acks channel */
  assert_int_equal(uvchan_init(&t->f->ctx, &acks, sizeof(uvchan_nats_puback_t), 4), 0);
  memset(&po, 0, sizeof(po));
  po.acks = &acks;
  memset(&pub, 0, sizeof(pub));
  assert_int_equal(uvchan_nats_pub_init(&t->nc, &pub, &po), 0);
  assert_int_equal(uvchan_nats_pub_init(&t->nc, &pub, &po), UV_EBUSY);
  m = nmsg("a.*", "x", 1);
  assert_int_equal(uvchan_task_send(&pub.chan, &m), 0);
  assert_int_equal(uvchan_task_recv(&acks, &a), 0);
  t->pub_status = a.status;
  natsMsg_Destroy(a.msg);
  uvchan_close(&pub.chan);
  assert_int_equal(uvchan_task_recv(&acks, &a), UV_EOF); /* closed once all settled */
  assert_int_equal(uvchan_nats_pub_close(&pub, NULL), 0);
  uvchan_destroy(&acks);
  /* a bad acks channel */
  assert_int_equal(uvchan_init(&t->f->ctx, &acks, sizeof(int), 4), 0);
  po.acks = &acks;
  memset(&pub2, 0, sizeof(pub2));
  assert_int_equal(uvchan_nats_pub_init(&t->nc, &pub2, &po), UV_EINVAL);
  uvchan_destroy(&acks);
  assert_int_equal(uvchan_init_shared(&t->f->ctx, &acks, sizeof(uvchan_nats_puback_t), 4), 0);
  po.acks = &acks; /* a shared channel: the publisher sends from the loop only */
  assert_int_equal(uvchan_nats_pub_init(&t->nc, &pub2, &po), UV_EINVAL);
  uvchan_destroy(&acks);
  assert_int_equal(uvchan_nats_pub_init(&t->nc, NULL, NULL), UV_EINVAL);
  /* JetStream publish to a subject no stream listens on */
  assert_int_equal(uvchan_init(&t->f->ctx, &acks, sizeof(uvchan_nats_puback_t), 4), 0);
  memset(&po, 0, sizeof(po));
  po.jetstream = 1;
  po.acks = &acks;
  po.retry_for = 300;
  memset(&pub3, 0, sizeof(pub3));
  assert_int_equal(uvchan_nats_pub_init(&t->nc, &pub3, &po), 0);
  m = nmsg("nostream.here", "x", 1);
  assert_int_equal(uvchan_task_send(&pub3.chan, &m), 0);
  assert_int_equal(uvchan_task_recv(&acks, &a), 0);
  t->nostream_status = a.status;
  natsMsg_Destroy(a.msg);
  assert_int_equal(uvchan_nats_pub_close(&pub3, NULL), 0);
  assert_int_equal(uvchan_task_recv(&acks, &a), UV_EOF);
  uvchan_destroy(&acks);
  /* JetStream publishes the stream refuses for good: full (discard new), then no answer */
  {
    stream_def_t d;
    uvchan_nats_pub_t* pub4 = &t->pub4;
    uvchan_nats_pub_t* pub5 = &t->pub5;
    uvchan_nats_sub_t* noack = &t->noack;
    memset(&d, 0, sizeof(d));
    d.name = "FULL";
    d.subject = "full.x";
    d.max_msgs = 1;
    d.discard_new = 1;
    assert_int_equal(uvchan_nats_task_call(&t->nc, add_stream_fn, &d), 0);
    assert_int_equal(uvchan_init(&t->f->ctx, &acks, sizeof(uvchan_nats_puback_t), 4), 0);
    memset(&po, 0, sizeof(po));
    po.jetstream = 1;
    po.acks = &acks;
    po.retry_for = 300;
    assert_int_equal(uvchan_nats_pub_init(&t->nc, pub4, &po), 0);
    for (i = 0; i < 2; i++) {
      m = nmsg("full.x", &i, sizeof(i));
      assert_int_equal(uvchan_task_send(&pub4->chan, &m), 0);
      assert_int_equal(uvchan_task_recv(&acks, &a), 0);
      t->full_status[i] = a.status;
      natsMsg_Destroy(a.msg);
    }
    assert_int_equal(uvchan_nats_pub_close(pub4, NULL), 0);
    assert_int_equal(uvchan_task_recv(&acks, &a), UV_EOF);
    uvchan_destroy(&acks);
    /* a subscriber, no stream: no "no responders", and no acknowledgement either */
    assert_int_equal(uvchan_nats_subscribe(&t->nc, noack, "noack.x", NULL), 0);
    assert_int_equal(uvchan_init(&t->f->ctx, &acks, sizeof(uvchan_nats_puback_t), 4), 0);
    po.acks = &acks;
    po.ack_timeout = 100;
    assert_int_equal(uvchan_nats_pub_init(&t->nc, pub5, &po), 0);
    m = nmsg("noack.x", "x", 1);
    assert_int_equal(uvchan_task_send(&pub5->chan, &m), 0);
    assert_int_equal(uvchan_task_recv(&acks, &a), 0);
    t->noack_status = a.status;
    t->noack_attempts = a.attempts;
    natsMsg_Destroy(a.msg);
    assert_int_equal(uvchan_nats_pub_close(pub5, NULL), 0);
    assert_int_equal(uvchan_task_recv(&acks, &a), UV_EOF);
    uvchan_destroy(&acks);
    assert_int_equal(uvchan_nats_sub_close(noack, NULL), 0);
    while (uvchan_task_recv(&noack->chan, &m) == 0) /* the messages it got, till it closed */
      natsMsg_Destroy(m);
  }
  /* pull consumers: bad names, a missing stream */
  memset(&o, 0, sizeof(o));
  memset(&pull, 0, sizeof(pull));
  assert_int_equal(uvchan_nats_pull_start(&t->nc, &pull, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_pull_start(&t->nc, &pull, &o), UV_EINVAL); /* no names */
  o.stream = "S.1";
  o.consumer = "c";
  assert_int_equal(uvchan_nats_pull_start(&t->nc, &pull, &o), UV_EINVAL);
  o.stream = "S";
  o.consumer = "c d";
  assert_int_equal(uvchan_nats_pull_start(&t->nc, &pull, &o), UV_EINVAL);
  o.stream = "NOSUCHSTREAM";
  o.consumer = "c";
  assert_int_equal(uvchan_nats_pull_start(&t->nc, &pull, &o), 0);
  t->pull_eof = uvchan_task_recv(&pull.chan, &m) == UV_EOF; /* it closed its channel */
  t->pull_status = uvchan_nats_pull_status(&pull);
  assert_int_equal(uvchan_nats_pull_close(&pull, NULL), 0);
  assert_int_equal(uvchan_nats_pull_close(&pull, NULL), UV_EINVAL);
  /* stats */
  assert_int_equal(uvchan_nats_stats(&t->nc, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_stats(NULL, &st), UV_EINVAL);
  assert_int_equal(uvchan_nats_sub_stats(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_pull_stats(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_pub_stats(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_pull_status(NULL), UV_EINVAL);

  /* a connection closing, then closed; a request waiting then ends */
  {
    assert_int_equal(uvchan_nats_subscribe(&t->nc, &t->listener,
                                           "nobody.answers.but.someone.listens", NULL), 0);
    BAD = t;
    t->req_closed = 1;
    assert_int_equal(uvchan_task_spawn(&t->f->ctx, bad_waiter, NULL, NULL), 0);
    assert_int_equal(uvchan_task_sleep(50), 0);
    assert_int_equal(t->req_closed, 1); /* still waiting */
    assert_int_equal(uvchan_nats_close(&t->nc, on_closed), 0);
    /* closing: refused at once, before the close can end */
    assert_int_equal(uvchan_nats_subscribe(&t->nc, &sub, "a", NULL), UV_ENOTCONN);
    assert_int_equal(uvchan_nats_pub_init(&t->nc, &pub2, NULL), UV_ENOTCONN);
    o.stream = "S";
    assert_int_equal(uvchan_nats_pull_start(&t->nc, &pull, &o), UV_ENOTCONN);
    assert_int_equal(uvchan_nats_task_request(&t->nc, "a", "x", 1, 100, &r), UV_ENOTCONN);
    assert_int_equal(uvchan_nats_task_call(&t->nc, NULL, NULL), UV_EINVAL);
    assert_int_equal(uvchan_task_yield(), 0);
    assert_int_equal(uvchan_task_sleep(1), 0);
    assert_int_equal(t->req_closed, UV_ECANCELED);
  }
  for (i = 0; i < 200 && t->c.closed == 0; i++)
    assert_int_equal(uvchan_task_sleep(5), 0);
  assert_int_equal(t->c.closed, 1);
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &sub, "a", NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_task_request(&t->nc, "a", "x", 1, 100, &r), UV_EINVAL);
  assert_int_equal(uvchan_nats_set_event_cb(&t->nc, NULL), UV_EINVAL);
  t->done = 1;
}

static void test_bad_input(void** state) {
  bad_t t;
  natsMsg* r = NULL;
  memset(&t, 0, sizeof(t));
  t.f = NFX(state);
  /* task calls outside a task */
  assert_int_equal(uvchan_nats_task_connect(&t.f->ctx, &t.nc, t.f->srv.url, NULL), UV_EINVAL);
  assert_int_equal(uvchan_nats_task_request(&t.nc, "a", "x", 1, 0, &r), UV_EINVAL);
  assert_int_equal(uvchan_task_spawn(&t.f->ctx, bad_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.done, 1);
  assert_int_equal(t.pub_status, UV_EINVAL);
  assert_int_equal(t.nostream_status, UV_ENOENT);
  assert_int_equal(t.pull_eof, 1);
  assert_int_equal(t.pull_status, UV_ENOENT);
  assert_int_equal(t.full_status[0], 0);
  assert_int_equal(t.full_status[1], UV_ENOSPC);
  assert_int_equal(t.noack_status, UV_ETIMEDOUT);
  assert_true(t.noack_attempts >= 2); /* sent again after each ack timeout */
  assert_int_equal(t.req_closed, UV_ECANCELED);
}

/* ---- a connection the client gives up on ---- */

typedef struct {
  nfixture_t* f;
  uvchan_nats_t nc;
  cb_t c;
  uvchan_nats_sub_t sub;
  int closed_events;
  int sub_eof;
  int after_sub, after_req;
  int req_lost;
  int pub_lost;
  uvchan_nats_sub_t listener;
  uvchan_nats_pub_t pub;
  uvchan_t acks;
} lost_t;

static lost_t* LOST;

static void lost_waiter(void* arg) {
  natsMsg* r = NULL;
  (void)arg;
  LOST->req_lost = uvchan_nats_task_request(&LOST->nc, "lost.listen", "x", 1, 0, &r);
}

static void lost_event(uvchan_nats_t* nc, uvchan_nats_event ev, uvchan_nats_sub_t* sub,
                       int status) {
  lost_t* t = UVCHAN__TEST_CONTAINER(nc, lost_t, nc);
  (void)sub;
  (void)status;
  if (ev == UVCHAN_NATS_EV_CLOSED)
    t->closed_events++;
}

static void lost_main(void* arg) {
  lost_t* t = arg;
  natsOptions* o = NULL;
  natsMsg* m;
  natsMsg* r = NULL;
  uvchan_nats_sub_t s2;
  memset(&s2, 0, sizeof(s2));
  assert_int_equal(natsOptions_Create(&o), NATS_OK);
  assert_int_equal(natsOptions_SetURL(o, t->f->srv.url), NATS_OK);
  assert_int_equal(natsOptions_SetMaxReconnect(o, 0), NATS_OK); /* give up at once */
  t->nc.data = &t->c;
  assert_int_equal(uvchan_nats_task_connect(&t->f->ctx, &t->nc, NULL, o), 0);
  natsOptions_Destroy(o);
  assert_int_equal(uvchan_nats_set_event_cb(&t->nc, lost_event), 0);
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &t->sub, "lost", NULL), 0);
  /* a request and a JetStream publish waiting for answers that will not come */
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &t->listener, "lost.listen", NULL), 0);
  LOST = t;
  assert_int_equal(uvchan_task_spawn(&t->f->ctx, lost_waiter, NULL, NULL), 0);
  {
    uvchan_nats_pub_opts_t po;
    uvchan_nats_puback_t a;
    assert_int_equal(uvchan_init(&t->f->ctx, &t->acks, sizeof(uvchan_nats_puback_t), 4), 0);
    memset(&po, 0, sizeof(po));
    po.jetstream = 1;
    po.acks = &t->acks;
    po.retry_for = 60000;
    assert_int_equal(uvchan_nats_pub_init(&t->nc, &t->pub, &po), 0);
    m = nmsg("lost.listen", "x", 1);
    assert_int_equal(uvchan_task_send(&t->pub.chan, &m), 0);
    assert_int_equal(uvchan_task_sleep(50), 0);
    natsrv_halt(&t->f->srv, SIGTERM);
    assert_int_equal(uvchan_task_recv(&t->acks, &a), 0);
    t->pub_lost = a.status;
    natsMsg_Destroy(a.msg);
  }
  /* The subscription's channel closes with the connection: the receiver sees the end. */
  t->sub_eof = uvchan_task_recv(&t->sub.chan, &m) == UV_EOF;
  t->after_sub = uvchan_nats_subscribe(&t->nc, &s2, "x", NULL);
  t->after_req = uvchan_nats_task_request(&t->nc, "x", "x", 1, 100, &r);
  assert_int_equal(uvchan_nats_close(&t->nc, on_closed), 0);
  while (t->c.closed == 0)
    assert_int_equal(uvchan_task_sleep(5), 0);
  uvchan_destroy(&t->acks);
}

static void test_connection_lost(void** state) {
  lost_t t;
  memset(&t, 0, sizeof(t));
  t.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t.f->ctx, lost_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.sub_eof, 1);
  assert_int_equal(t.closed_events, 1);
  assert_int_equal(t.after_sub, UV_ENOTCONN);
  assert_int_equal(t.after_req, UV_ENOTCONN);
  assert_int_equal(t.req_lost, UV_ENOTCONN);
  assert_int_equal(t.pub_lost, UV_ENOTCONN);
  assert_int_equal(t.c.closed, 1);
}

/* ---- another thread ---- */

typedef struct {
  uvchan_nats_t* nc;
  uvchan_nats_sub_t* sub;
  int set_cb, close, sub_close, subscribe;
} other_t;

static void other_thread(void* arg) {
  other_t* o = arg;
  o->set_cb = uvchan_nats_set_event_cb(o->nc, NULL);
  o->close = uvchan_nats_close(o->nc, NULL);
  o->sub_close = uvchan_nats_sub_close(o->sub, NULL);
  o->subscribe = uvchan_nats_subscribe(o->nc, &(uvchan_nats_sub_t){0}, "a", NULL);
}

typedef struct {
  nfixture_t* f;
  uvchan_nats_t nc;
  cb_t c;
  other_t o;
  uvchan_nats_sub_t sub; /* not on the task's stack: it lives until the connection's close */
} thr_t;

static void thr_main(void* arg) {
  thr_t* t = arg;
  uv_thread_t th;
  t->nc.data = &t->c;
  assert_int_equal(uvchan_nats_task_connect(&t->f->ctx, &t->nc, t->f->srv.url, NULL), 0);
  assert_int_equal(uvchan_nats_subscribe(&t->nc, &t->sub, "a", NULL), 0);
  t->o.nc = &t->nc;
  t->o.sub = &t->sub;
  assert_int_equal(uv_thread_create(&th, other_thread, &t->o), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(uvchan_nats_close(&t->nc, on_closed), 0);
}

static void test_wrong_thread(void** state) {
  thr_t t;
  memset(&t, 0, sizeof(t));
  t.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t.f->ctx, thr_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.o.set_cb, UV_EPERM);
  assert_int_equal(t.o.close, UV_EPERM);
  assert_int_equal(t.o.sub_close, UV_EPERM);
  assert_int_equal(t.o.subscribe, UV_EPERM);
  assert_int_equal(t.c.closed, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_mapping),
      cmocka_unit_test(test_subjects),
      NTEST(test_no_server),
      NTEST(test_bad_input),
      NTEST(test_connection_lost),
      NTEST(test_wrong_thread),
  };
  int r = cmocka_run_group_tests(tests, NULL, NULL);
  nats_CloseAndWait(1000);
  return r;
}
