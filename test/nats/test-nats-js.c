/* JetStream through channels: publishes acknowledged by the stream, with a bound on those in
 * flight; a pull consumer that fetches only what its channel has room for; a consumer process
 * killed midway (nothing lost, redeliveries detected and counted); a slow consumer holding back
 * the producer through a bounded work queue; a server restart in the middle of the stream (the
 * client reconnects, no acknowledged message is lost). */
#include <poll.h>

#include "nats-helpers.h"

typedef struct {
  nfixture_t* f;
  uvchan_nats_t nc;
  int closed;
} jconn_t;

static void jconn_closed(uvchan_nats_t* nc) {
  ((jconn_t*)nc->data)->closed++;
}

static void jconnect(jconn_t* c, natsOptions* o) {
  c->nc.data = c;
  assert_int_equal(
      uvchan_nats_task_connect(&c->f->ctx, &c->nc, o == NULL ? c->f->srv.url : NULL, o), 0);
}

static void make_stream(jconn_t* c, const char* name, const char* subject, int64_t max_msgs,
                        int workqueue) {
  stream_def_t d;
  memset(&d, 0, sizeof(d));
  d.name = name;
  d.subject = subject;
  d.max_msgs = max_msgs;
  d.workqueue = workqueue;
  d.discard_new = max_msgs > 0;
  assert_int_equal(uvchan_nats_task_call(&c->nc, add_stream_fn, &d), 0);
}

/* Publishes ids [from, to) as 4-byte payloads on `subject` through a JetStream publisher, and
 * checks every outcome on its acks channel. Returns how many were acknowledged. */
typedef struct {
  jconn_t* c;
  const char* subject;
  uint32_t from, to;
  unsigned max_inflight;
  uint64_t retry_for;
  uvchan_nats_pub_t pub;
  uvchan_t acks;
  uint8_t* acked;     /* by id */
  uint64_t nacked, ndup, nfailed;
  uint64_t last_seq;
  int seq_in_order;
  int pub_closed;
  uvchan_nats_pub_stats_t stats;
} jpub_t;

static void jpub_closed(uvchan_nats_pub_t* p) {
  ((jpub_t*)p->data)->pub_closed++;
}

static void jpub_acks_task(void* arg) {
  jpub_t* j = arg;
  uvchan_nats_puback_t a;
  uint32_t id;
  while (uvchan_task_recv(&j->acks, &a) == 0) {
    memcpy(&id, natsMsg_GetData(a.msg), sizeof(id));
    if (a.status == 0) {
      j->nacked++;
      j->acked[id] = 1;
      if (a.duplicate)
        j->ndup++;
      if (a.seq <= j->last_seq)
        j->seq_in_order = 0;
      j->last_seq = a.seq;
    } else {
      j->nfailed++;
    }
    natsMsg_Destroy(a.msg);
  }
}

static void jpub_run(jpub_t* j) {
  uvchan_nats_pub_opts_t po;
  uvchan_wg_t wg;
  uvchan_task_attr_t attr;
  natsMsg* m;
  uint32_t i;

  memset(&po, 0, sizeof(po));
  po.jetstream = 1;
  po.capacity = 128;
  po.max_inflight = j->max_inflight;
  po.retry_for = j->retry_for;
  po.ack_timeout = 500;
  po.acks = &j->acks;
  j->seq_in_order = 1;
  assert_int_equal(uvchan_init(&j->c->f->ctx, &j->acks, sizeof(uvchan_nats_puback_t), 64), 0);
  j->pub.data = j;
  assert_int_equal(uvchan_nats_pub_init(&j->c->nc, &j->pub, &po), 0);
  assert_int_equal(uvchan_wg_init(&j->c->f->ctx, &wg), 0);
  memset(&attr, 0, sizeof(attr));
  attr.wg = &wg;
  assert_int_equal(uvchan_task_spawn(&j->c->f->ctx, jpub_acks_task, j, &attr), 0);
  for (i = j->from; i < j->to; i++) {
    m = nmsg(j->subject, &i, sizeof(i));
    assert_int_equal(uvchan_task_send(&j->pub.chan, &m), 0);
  }
  uvchan_close(&j->pub.chan);
  assert_int_equal(uvchan_task_wg_wait(&wg), 0); /* the publisher closed acks: all settled */
  assert_int_equal(uvchan_nats_pub_stats(&j->pub, &j->stats), 0);
  assert_int_equal(uvchan_nats_pub_close(&j->pub, jpub_closed), 0);
  uvchan_destroy(&j->acks);
}

/* Receives `n` distinct ids from a pull consumer, acknowledging each; counts duplicates. */
typedef struct {
  jconn_t* c;
  const char* stream;
  const char* consumer;
  size_t capacity;
  uint32_t n;
  uint8_t* seen;
  uint32_t distinct;
  uint64_t dups;
  uint64_t max_reserved;
  uvchan_nats_pull_t pull;
  uvchan_nats_pull_stats_t stats;
  int pull_closed;
} jpull_t;

static void jpull_closed(uvchan_nats_pull_t* p) {
  ((jpull_t*)p->data)->pull_closed++;
}

static void jpull_run(jpull_t* j) {
  uvchan_nats_pull_opts_t o;
  uvchan_nats_pull_stats_t st;
  natsMsg* m;
  uint32_t id;

  memset(&o, 0, sizeof(o));
  o.stream = j->stream;
  o.consumer = j->consumer;
  o.capacity = j->capacity;
  o.ack_wait = 2000;
  j->pull.data = j;
  assert_int_equal(uvchan_nats_pull_start(&j->c->nc, &j->pull, &o), 0);
  while (j->distinct < j->n) {
    int r = uvchan_task_recv(&j->pull.chan, &m);
    if (r != 0)
      print_error("pull consumer ended: %s, status %s\n", uv_strerror(r),
                  uv_strerror(uvchan_nats_pull_status(&j->pull)));
    assert_int_equal(r, 0);
    assert_int_equal(natsMsg_GetDataLength(m), (int)sizeof(id));
    memcpy(&id, natsMsg_GetData(m), sizeof(id));
    assert_true(id < j->n);
    if (j->seen[id])
      j->dups++;
    else
      j->distinct++;
    j->seen[id] = 1;
    assert_int_equal(natsMsg_Ack(m, NULL), NATS_OK);
    natsMsg_Destroy(m);
    assert_int_equal(uvchan_nats_pull_stats(&j->pull, &st), 0);
    if (st.reserved > j->max_reserved)
      j->max_reserved = st.reserved;
  }
  assert_int_equal(uvchan_nats_pull_stats(&j->pull, &j->stats), 0);
  assert_int_equal(uvchan_nats_pull_status(&j->pull), 0);
  assert_int_equal(uvchan_nats_pull_close(&j->pull, jpull_closed), 0);
}

/* ---- publish, then consume ---- */

enum { N_ROUND = 20000 };

typedef struct {
  jconn_t c;
  jpub_t pub;
  jpull_t pull;
} round_t;

static void round_main(void* arg) {
  round_t* t = arg;
  jconnect(&t->c, NULL);
  make_stream(&t->c, "ROUND", "round.>", 0, 0);
  t->pub.c = t->pull.c = &t->c;
  t->pub.subject = "round.x";
  t->pub.to = N_ROUND;
  t->pub.max_inflight = 64;
  t->pub.acked = calloc(N_ROUND, 1);
  jpub_run(&t->pub);
  t->pull.stream = "ROUND";
  t->pull.consumer = "c1";
  t->pull.capacity = 32;
  t->pull.n = N_ROUND;
  t->pull.seen = calloc(N_ROUND, 1);
  jpull_run(&t->pull);
  assert_int_equal(uvchan_nats_close(&t->c.nc, jconn_closed), 0);
}

static void test_publish_then_pull(void** state) {
  round_t t;
  memset(&t, 0, sizeof(t));
  t.c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t.c.f->ctx, round_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.c.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.pub.nacked, N_ROUND);
  assert_int_equal(t.pub.nfailed, 0);
  assert_int_equal(t.pub.ndup, 0);
  assert_true(t.pub.seq_in_order); /* one publisher: the stream keeps the order */
  assert_int_equal(t.pub.stats.acked, N_ROUND);
  assert_true(t.pub.stats.max_inflight <= 64);
  assert_int_equal(t.pull.distinct, N_ROUND);
  assert_int_equal(t.pull.dups, 0);
  assert_int_equal(t.pull.stats.redelivered, 0);
  assert_true(t.pull.max_reserved <= 32); /* never more fetched than the channel holds */
  assert_int_equal(t.pub.pub_closed, 1);
  assert_int_equal(t.pull.pull_closed, 1);
  assert_int_equal(t.c.closed, 1);
  free(t.pub.acked);
  free(t.pull.seen);
}

/* ---- a NAK: delivered again, and counted as a redelivery ---- */

typedef struct {
  jconn_t c;
  jpub_t pub;
  uvchan_nats_pull_t pull;
  int seen[3];
  uint64_t meta_count;
  uvchan_nats_pull_stats_t stats;
} nak_t;

static void nak_main(void* arg) {
  nak_t* t = arg;
  uvchan_nats_pull_opts_t o;
  jsMsgMetaData* meta = NULL;
  natsMsg* m;
  uint32_t id;
  jconnect(&t->c, NULL);
  make_stream(&t->c, "NAK", "nak.>", 0, 0);
  t->pub.c = &t->c;
  t->pub.subject = "nak.x";
  t->pub.to = 3;
  t->pub.max_inflight = 4;
  t->pub.acked = calloc(3, 1);
  jpub_run(&t->pub);
  memset(&o, 0, sizeof(o));
  o.stream = "NAK";
  o.consumer = "nak";
  o.capacity = 4;
  assert_int_equal(uvchan_nats_pull_start(&t->c.nc, &t->pull, &o), 0);
  while (t->seen[0] < 2 || t->seen[1] < 1 || t->seen[2] < 1) {
    assert_int_equal(uvchan_task_recv(&t->pull.chan, &m), 0);
    memcpy(&id, natsMsg_GetData(m), sizeof(id));
    if (id == 0 && t->seen[0]++ == 0) {
      assert_int_equal(natsMsg_Nak(m, NULL), NATS_OK); /* give it back: it comes again */
    } else {
      if (id == 0) {
        assert_int_equal(natsMsg_GetMetaData(&meta, m), NATS_OK);
        t->meta_count = meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
      } else {
        t->seen[id]++;
      }
      assert_int_equal(natsMsg_Ack(m, NULL), NATS_OK);
    }
    natsMsg_Destroy(m);
  }
  assert_int_equal(uvchan_nats_pull_stats(&t->pull, &t->stats), 0);
  assert_int_equal(uvchan_nats_close(&t->c.nc, jconn_closed), 0);
}

static void test_nak_redelivered(void** state) {
  nak_t t;
  memset(&t, 0, sizeof(t));
  t.c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t.c.f->ctx, nak_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.c.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.seen[0], 2);
  assert_int_equal(t.meta_count, 2);
  assert_int_equal(t.stats.redelivered, 1); /* the pull consumer counted it from its subject */
  assert_int_equal(t.stats.fetched, 4);
  assert_int_equal(t.c.closed, 1);
  free(t.pub.acked);
}

/* ---- the application's own message ids: a message sent twice is stored once ---- */

typedef struct {
  jconn_t c;
  uvchan_nats_pub_t pub;
  uvchan_t acks;
  uvchan_nats_puback_t a[3], end;
  uint64_t stored;
} dedupe_t;

static void dedupe_main(void* arg) {
  dedupe_t* t = arg;
  uvchan_nats_pub_opts_t po;
  stream_info_t si;
  natsMsg* m;
  int i;
  jconnect(&t->c, NULL);
  make_stream(&t->c, "DD", "dd.>", 0, 0);
  assert_int_equal(uvchan_init(&t->c.f->ctx, &t->acks, sizeof(uvchan_nats_puback_t), 4), 0);
  memset(&po, 0, sizeof(po));
  po.jetstream = 1;
  po.acks = &t->acks;
  assert_int_equal(uvchan_nats_pub_init(&t->c.nc, &t->pub, &po), 0);
  for (i = 0; i < 3; i++) {
    m = nmsg("dd.x", "x", 1);
    /* the first two carry the same id: an application sending again after a crash */
    assert_int_equal(natsMsgHeader_Set(m, "Nats-Msg-Id", i < 2 ? "order-17" : "order-18"),
                     NATS_OK);
    assert_int_equal(uvchan_task_send(&t->pub.chan, &m), 0);
    assert_int_equal(uvchan_task_recv(&t->acks, &t->a[i]), 0);
    natsMsg_Destroy(t->a[i].msg);
  }
  assert_int_equal(uvchan_nats_pub_close(&t->pub, NULL), 0);
  assert_int_equal(uvchan_task_recv(&t->acks, &t->end), UV_EOF); /* every outcome was in */
  uvchan_destroy(&t->acks);
  memset(&si, 0, sizeof(si));
  si.name = "DD";
  assert_int_equal(uvchan_nats_task_call(&t->c.nc, stream_info_fn, &si), 0);
  t->stored = si.msgs;
  assert_int_equal(uvchan_nats_close(&t->c.nc, jconn_closed), 0);
}

static void test_message_ids(void** state) {
  dedupe_t t;
  memset(&t, 0, sizeof(t));
  t.c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t.c.f->ctx, dedupe_main, &t, NULL), 0);
  assert_int_equal(uv_run(&t.c.f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.a[0].status, 0);
  assert_int_equal(t.a[0].duplicate, 0);
  assert_int_equal(t.a[1].status, 0);
  assert_int_equal(t.a[1].duplicate, 1);        /* the stream had it */
  assert_int_equal(t.a[1].seq, t.a[0].seq);     /* the same stored message */
  assert_int_equal(t.a[2].duplicate, 0);
  assert_int_equal(t.a[2].seq, t.a[0].seq + 1);
  assert_int_equal(t.stored, 2);
  assert_int_equal(t.c.closed, 1);
}

/* ---- a consumer process killed midway, then another one ---- */

/* The first consumer acknowledges KILL_ACKED messages, then keeps receiving and reporting without
 * acknowledging, and is killed once it reported KILL_HELD ids it never acknowledged: JetStream
 * must deliver those again, so every run goes through the redelivery path. KILL_HELD stays under
 * the consumer's max_ack_pending (KILL_MAX_PENDING), where the server stops delivering to it. */
enum { N_KILL = 100000, KILL_ACKED = N_KILL / 2, KILL_HELD = 200, KILL_MAX_PENDING = 1000 };

/* What a consumer process reports for each message, before it acknowledges it (or not). */
typedef struct {
  uint32_t id;
  uint32_t delivered;
  uint32_t acked; /* 1: the process acknowledges it after this report; 0: it never will */
} report_t;

static const char* self_path;

/* The consumer process (this program run with --consume URL FD ACKS): receives from the durable
 * consumer "workers" of stream KILL, writes each id to FD, then acknowledges it, but only the
 * first ACKS messages (-1: all); stops at SIGTERM with a graceful shutdown of its context. */
typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uv_signal_t sig;
  uvchan_nats_t nc;
  uvchan_nats_pull_t pull;
  const char* url;
  int fd;
  long long acks; /* messages still to acknowledge; -1: every one */
} consumer_t;

static void consumer_on_term(uv_signal_t* s, int signum) {
  consumer_t* c = s->data;
  (void)signum;
  uv_close((uv_handle_t*)s, NULL);
  (void)uvchan_ctx_shutdown(&c->ctx, NULL);
}

static void consumer_task(void* arg) {
  consumer_t* c = arg;
  uvchan_nats_pull_opts_t o;
  jsMsgMetaData* meta;
  report_t r;
  natsMsg* m;

  if (uvchan_nats_task_connect(&c->ctx, &c->nc, c->url, NULL) != 0)
    exit(3);
  memset(&o, 0, sizeof(o));
  o.stream = "KILL";
  o.consumer = "workers";
  o.capacity = 256;
  o.ack_wait = 1000;
  o.max_ack_pending = KILL_MAX_PENDING;
  if (uvchan_nats_pull_start(&c->nc, &c->pull, &o) != 0)
    exit(4);
  while (uvchan_task_recv(&c->pull.chan, &m) == 0) {
    memcpy(&r.id, natsMsg_GetData(m), sizeof(r.id));
    meta = NULL;
    r.delivered = natsMsg_GetMetaData(&meta, m) == NATS_OK ? (uint32_t)meta->NumDelivered : 0;
    jsMsgMetaData_Destroy(meta);
    r.acked = c->acks != 0;
    if (write(c->fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
      exit(5);
    if (r.acked) {
      (void)natsMsg_Ack(m, NULL); /* a kill between the write and this: delivered again */
      if (c->acks > 0)
        c->acks--;
    }
    natsMsg_Destroy(m);
  }
  /* the shutdown cancelled the receive; the context closes the connection */
}

static int consumer_main(const char* url, int fd, long long acks) {
  consumer_t c;
  memset(&c, 0, sizeof(c));
  c.url = url;
  c.fd = fd;
  c.acks = acks;
  if (uv_loop_init(&c.loop) != 0 || uvchan_ctx_init(&c.loop, &c.ctx) != 0)
    return 2;
  uv_signal_init(&c.loop, &c.sig);
  c.sig.data = &c;
  uv_signal_start(&c.sig, consumer_on_term, SIGTERM);
  uvchan_task_spawn(&c.ctx, consumer_task, &c, NULL);
  uv_run(&c.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&c.loop) != 0)
    return 6;
  nats_CloseAndWait(1000);
  return 0;
}

static pid_t spawn_consumer(const char* url, long long acks, int* rfd) {
  int p[2];
  char fdarg[16], acksarg[24];
  pid_t pid;
  assert_int_equal(pipe(p), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* A fresh program: the NATS client's threads do not survive a fork. */
    close(p[0]);
    snprintf(fdarg, sizeof(fdarg), "%d", p[1]);
    snprintf(acksarg, sizeof(acksarg), "%lld", acks);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execl(self_path, self_path, "--consume", url, fdarg, acksarg, (char*)NULL);
    _exit(127);
  }
  close(p[1]);
  *rfd = p[0];
  return pid;
}

enum { SEEN = 1, HELD = 2 }; /* tally_t.seen[id]: HELD: reported unacknowledged, not seen again */

typedef struct {
  uint8_t* seen;
  uint32_t distinct;
  uint64_t held;      /* ids first reported by a process that did not acknowledge them */
  uint64_t held_open; /* of those, the ones not reported again yet */
  uint64_t dups, dups_flagged, redelivered, reports;
} tally_t;

/* Reads reports until `until` distinct ids were seen, `held` ids were reported unacknowledged
 * and every one of those was reported again (or EOF: the writer died). */
static void read_reports(int fd, tally_t* t, uint32_t until, uint64_t held) {
  report_t buf[512];
  size_t have = 0;
  ssize_t n;
  size_t i, k;
  struct pollfd pfd;

  while (t->distinct < until || t->held < held || t->held_open > 0) {
    pfd.fd = fd;
    pfd.events = POLLIN;
    assert_true(poll(&pfd, 1, 30000) == 1); /* a stall of 30 s is a failure */
    n = read(fd, (char*)buf + have, sizeof(buf) - have);
    assert_true(n >= 0);
    if (n == 0)
      break;
    have += (size_t)n;
    k = have / sizeof(report_t);
    for (i = 0; i < k; i++) {
      assert_true(buf[i].id < N_KILL);
      t->reports++;
      if (buf[i].delivered > 1)
        t->redelivered++;
      if (t->seen[buf[i].id]) {
        t->dups++;
        if (buf[i].delivered > 1)
          t->dups_flagged++; /* JetStream marked it: a redelivery, not a fault of ours */
        if (t->seen[buf[i].id] & HELD) {
          t->seen[buf[i].id] = SEEN;
          t->held_open--;
        }
      } else {
        t->seen[buf[i].id] = buf[i].acked ? SEEN : SEEN | HELD;
        t->distinct++;
        if (!buf[i].acked) {
          t->held++;
          t->held_open++;
        }
      }
    }
    memmove(buf, (char*)buf + k * sizeof(report_t), have - k * sizeof(report_t));
    have -= k * sizeof(report_t);
  }
}

typedef struct {
  jconn_t c;
  jpub_t pub;
} kill_setup_t;

static void kill_setup_main(void* arg) {
  kill_setup_t* t = arg;
  jconnect(&t->c, NULL);
  make_stream(&t->c, "KILL", "kill.>", 0, 0);
  t->pub.c = &t->c;
  t->pub.subject = "kill.job";
  t->pub.to = N_KILL;
  t->pub.max_inflight = 256;
  t->pub.acked = calloc(N_KILL, 1);
  jpub_run(&t->pub);
  assert_int_equal(uvchan_nats_close(&t->c.nc, jconn_closed), 0);
}

static void test_consumer_killed_midway(void** state) {
  nfixture_t* f = NFX(state);
  kill_setup_t s;
  tally_t t;
  pid_t a, b;
  int fd, st;

  /* 100k messages into the stream, every one acknowledged by it. */
  memset(&s, 0, sizeof(s));
  s.c.f = f;
  assert_int_equal(uvchan_task_spawn(&f->ctx, kill_setup_main, &s, NULL), 0);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(s.pub.nacked, N_KILL);
  assert_int_equal(s.pub.nfailed, 0);
  free(s.pub.acked);

  memset(&t, 0, sizeof(t));
  t.seen = calloc(N_KILL, 1);
  /* The first consumer dies (SIGKILL: no cleanup, no acknowledgement sent late) midway, holding
   * at least KILL_HELD messages it received and reported but never acknowledged. */
  a = spawn_consumer(f->srv.url, KILL_ACKED, &fd);
  read_reports(fd, &t, KILL_ACKED, KILL_HELD);
  kill(a, SIGKILL);
  assert_int_equal(waitpid(a, &st, 0), a);
  assert_true(WIFSIGNALED(st));
  read_reports(fd, &t, N_KILL, UINT64_MAX); /* what it wrote before dying (until EOF) */
  close(fd);
  assert_true(t.distinct >= KILL_ACKED);
  assert_true(t.distinct < N_KILL);
  assert_true(t.held >= KILL_HELD);
  /* A second one takes over the durable consumer: JetStream delivers the rest, and again what
   * the first one received without acknowledging (after the ack wait): the parent reads until
   * every held id came again. */
  b = spawn_consumer(f->srv.url, -1, &fd);
  read_reports(fd, &t, N_KILL, 0);
  kill(b, SIGTERM); /* a graceful shutdown: the consumer's context closes everything */
  assert_int_equal(waitpid(b, &st, 0), b);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  close(fd);

  print_message("    100k through JetStream, consumer killed after %u acknowledged and %llu held: "
                "%llu reports, %llu duplicates (%llu flagged redelivered by JetStream), "
                "%llu redeliveries\n",
                KILL_ACKED, (unsigned long long)t.held, (unsigned long long)t.reports,
                (unsigned long long)t.dups, (unsigned long long)t.dups_flagged,
                (unsigned long long)t.redelivered);
  assert_int_equal(t.distinct, N_KILL);  /* nothing lost */
  assert_int_equal(t.held_open, 0);      /* every held message came again */
  assert_true(t.dups >= t.held);         /* ... so each one is a duplicate */
  assert_true(t.dups_flagged >= KILL_HELD && t.redelivered >= t.dups_flagged);
  /* Nearly every duplicate carries a delivery count above 1. Not quite all: in 3 runs of 23, under load,
   * one duplicate (of 1746 to 2081) came with a count of 1 from nats-server 2.9.10; the parent found it by its id, as a user finds such duplicates by stream
   * sequence (docs/nats.md). */
  assert_true(t.dups - t.dups_flagged <= t.dups / 100);
  free(t.seen);
}

/* ---- a slow consumer holds the producer back ---- */

enum { N_SLOW = 1000, WQ_MAX = 100, SLOW_INFLIGHT = 16, SLOW_CAP = 8 };

typedef struct {
  jconn_t c;
  jpub_t pub;
  uvchan_nats_pull_t pull;
  uint8_t seen[N_SLOW];
  uint32_t distinct;
  uint64_t dups;
  uint64_t sent, received;
  uint64_t max_gap;      /* sent (handed to the publisher) but not yet received, at most */
  uint64_t max_stored;   /* the stream's message count, at most (sampled) */
  size_t max_reserved;
  int done;
  int pull_closed;
} slow_t;

static void slow_pull_closed(uvchan_nats_pull_t* p) {
  ((slow_t*)p->data)->pull_closed++;
}

static void slow_consumer(void* arg) {
  slow_t* t = arg;
  uvchan_nats_pull_opts_t o;
  uvchan_nats_pull_stats_t st;
  natsMsg* m;
  uint32_t id;
  memset(&o, 0, sizeof(o));
  o.stream = "WQ";
  o.consumer = "slow";
  o.capacity = SLOW_CAP;
  t->pull.data = t;
  assert_int_equal(uvchan_nats_pull_start(&t->c.nc, &t->pull, &o), 0);
  while (t->distinct < N_SLOW) {
    assert_int_equal(uvchan_task_recv(&t->pull.chan, &m), 0);
    memcpy(&id, natsMsg_GetData(m), sizeof(id));
    t->received++;
    if (t->sent - t->received > t->max_gap)
      t->max_gap = t->sent - t->received;
    if (t->seen[id])
      t->dups++;
    else
      t->distinct++;
    t->seen[id] = 1;
    assert_int_equal(uvchan_task_sleep(1), 0); /* slow work */
    assert_int_equal(natsMsg_Ack(m, NULL), NATS_OK); /* a work queue removes it */
    natsMsg_Destroy(m);
    assert_int_equal(uvchan_nats_pull_stats(&t->pull, &st), 0);
    if (st.reserved > t->max_reserved)
      t->max_reserved = st.reserved;
  }
  t->done = 1;
  assert_int_equal(uvchan_nats_pull_close(&t->pull, slow_pull_closed), 0);
}

static void slow_sampler(void* arg) {
  slow_t* t = arg;
  stream_info_t si;
  while (!t->done) {
    memset(&si, 0, sizeof(si));
    si.name = "WQ";
    assert_int_equal(uvchan_nats_task_call(&t->c.nc, stream_info_fn, &si), 0);
    if (si.msgs > t->max_stored)
      t->max_stored = si.msgs;
    assert_int_equal(uvchan_task_sleep(10), 0);
  }
}

/* The producer counts what it hands to the publisher (jpub_run, with a counter). */
static void slow_producer(void* arg) {
  slow_t* t = arg;
  uvchan_nats_pub_opts_t po;
  uvchan_wg_t wg;
  uvchan_task_attr_t attr;
  natsMsg* m;
  uint32_t i;
  jpub_t* j = &t->pub;

  memset(&po, 0, sizeof(po));
  po.jetstream = 1;
  po.capacity = 4;
  po.max_inflight = SLOW_INFLIGHT;
  po.retry_for = 60000; /* a full work queue is a wait, not a failure */
  po.acks = &j->acks;
  j->seq_in_order = 1;
  assert_int_equal(uvchan_init(&t->c.f->ctx, &j->acks, sizeof(uvchan_nats_puback_t), 16), 0);
  j->pub.data = j;
  assert_int_equal(uvchan_nats_pub_init(&t->c.nc, &j->pub, &po), 0);
  assert_int_equal(uvchan_wg_init(&t->c.f->ctx, &wg), 0);
  memset(&attr, 0, sizeof(attr));
  attr.wg = &wg;
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, jpub_acks_task, j, &attr), 0);
  for (i = 0; i < N_SLOW; i++) {
    m = nmsg("wq.job", &i, sizeof(i));
    assert_int_equal(uvchan_task_send(&j->pub.chan, &m), 0);
    t->sent++;
  }
  uvchan_close(&j->pub.chan);
  assert_int_equal(uvchan_task_wg_wait(&wg), 0);
  assert_int_equal(uvchan_nats_pub_stats(&j->pub, &j->stats), 0);
  assert_int_equal(uvchan_nats_pub_close(&j->pub, jpub_closed), 0);
  uvchan_destroy(&j->acks);
}

static void slow_main(void* arg) {
  slow_t* t = arg;
  uvchan_wg_t wg;
  uvchan_task_attr_t attr;
  jconnect(&t->c, NULL);
  make_stream(&t->c, "WQ", "wq.>", WQ_MAX, 1); /* a bounded work queue, refusing when full */
  t->pub.c = &t->c;
  t->pub.acked = calloc(N_SLOW, 1);
  memset(&attr, 0, sizeof(attr));
  assert_int_equal(uvchan_wg_init(&t->c.f->ctx, &wg), 0);
  attr.wg = &wg;
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, slow_consumer, t, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, slow_sampler, t, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, slow_producer, t, &attr), 0);
  assert_int_equal(uvchan_task_wg_wait(&wg), 0);
  assert_int_equal(uvchan_nats_close(&t->c.nc, jconn_closed), 0);
}

static void test_slow_consumer_bounds_producer(void** state) {
  slow_t* t = calloc(1, sizeof(*t));
  t->c.f = NFX(state);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, slow_main, t, NULL), 0);
  assert_int_equal(uv_run(&t->c.f->loop, UV_RUN_DEFAULT), 0);
  print_message("    slow consumer: producer in flight <= %u (bound %u), %llu sends again on a "
                "full queue, stream held <= %llu (max %u), sent-not-received <= %llu, consumer "
                "reserved <= %zu (capacity %u)\n",
                t->pub.stats.max_inflight, SLOW_INFLIGHT, (unsigned long long)t->pub.stats.retries,
                (unsigned long long)t->max_stored, WQ_MAX, (unsigned long long)t->max_gap,
                t->max_reserved, SLOW_CAP);
  assert_int_equal(t->distinct, N_SLOW);
  assert_int_equal(t->dups, 0);
  assert_int_equal(t->pub.nacked, N_SLOW);
  assert_int_equal(t->pub.nfailed, 0);
  assert_true(t->pub.stats.max_inflight <= SLOW_INFLIGHT); /* the bound holds */
  assert_true(t->pub.stats.retries > 0);  /* the full queue held the producer back */
  assert_true(t->max_stored <= WQ_MAX);
  assert_true(t->max_reserved <= SLOW_CAP);
  /* End to end: the producer is never further ahead of the consumer than the buffers between
   * them: its channel, its publishes in flight, the stream's bound, the consumer's channel. */
  assert_true(t->max_gap <= 4 + SLOW_INFLIGHT + WQ_MAX + SLOW_CAP + 2);
  assert_int_equal(t->pull_closed, 1);
  assert_int_equal(t->c.closed, 1);
  free(t->pub.acked);
  free(t);
}

/* ---- a server restart in the middle of the stream ---- */

enum { N_RESTART = 20000 };

typedef struct {
  jconn_t c;
  jpub_t pub;
  jpull_t pull;
  natsrv_t* srv;
  int restarted;
  uvchan_nats_stats_t stats;
  uint64_t stored;
} restart_t;

static void restart_controller(void* arg) {
  restart_t* t = arg;
  /* A clean restart at a quarter, a crash (SIGKILL: no shutdown at all) at three fifths. From
   * the loop's thread (the server dies with the thread that forked it, PR_SET_PDEATHSIG): the
   * loop stops meanwhile, the client's threads see the server go and come back. */
  while (t->pub.nacked < N_RESTART / 4)
    assert_int_equal(uvchan_task_sleep(2), 0);
  natsrv_restart(t->srv, SIGTERM);
  t->restarted++;
  while (t->pub.nacked < N_RESTART * 3 / 5)
    assert_int_equal(uvchan_task_sleep(2), 0);
  natsrv_restart(t->srv, SIGKILL);
  t->restarted++;
}

static void restart_consumer(void* arg) {
  restart_t* t = arg;
  jpull_run(&t->pull);
}

static void restart_main(void* arg) {
  restart_t* t = arg;
  uvchan_wg_t wg;
  uvchan_task_attr_t attr;
  stream_info_t si;
  natsOptions* o = nopts(t->c.f->srv.url);
  jconnect(&t->c, o);
  natsOptions_Destroy(o);
  make_stream(&t->c, "RS", "rs.>", 0, 0);
  t->pub.c = t->pull.c = &t->c;
  t->pub.subject = "rs.x";
  t->pub.to = N_RESTART;
  t->pub.max_inflight = 128;
  t->pub.retry_for = 30000;
  t->pub.acked = calloc(N_RESTART, 1);
  t->pull.stream = "RS";
  t->pull.consumer = "rs";
  t->pull.capacity = 64;
  t->pull.n = N_RESTART;
  t->pull.seen = calloc(N_RESTART, 1);
  memset(&attr, 0, sizeof(attr));
  assert_int_equal(uvchan_wg_init(&t->c.f->ctx, &wg), 0);
  attr.wg = &wg;
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, restart_controller, t, &attr), 0);
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, restart_consumer, t, &attr), 0);
  jpub_run(&t->pub);
  assert_int_equal(uvchan_task_wg_wait(&wg), 0);
  memset(&si, 0, sizeof(si));
  si.name = "RS";
  assert_int_equal(uvchan_nats_task_call(&t->c.nc, stream_info_fn, &si), 0);
  t->stored = si.msgs;
  assert_int_equal(uvchan_nats_stats(&t->c.nc, &t->stats), 0);
  assert_int_equal(uvchan_nats_close(&t->c.nc, jconn_closed), 0);
}

static void test_server_restart(void** state) {
  restart_t* t = calloc(1, sizeof(*t));
  uint32_t i, lost = 0;
  t->c.f = NFX(state);
  t->srv = &t->c.f->srv;
  assert_int_equal(uvchan_task_spawn(&t->c.f->ctx, restart_main, t, NULL), 0);
  assert_int_equal(uv_run(&t->c.f->loop, UV_RUN_DEFAULT), 0);
  for (i = 0; i < N_RESTART; i++)
    if (t->pub.acked[i] && !t->pull.seen[i])
      lost++;
  print_message("    server restarts (clean, then killed): %llu reconnects, %llu acknowledged "
                "(%llu as duplicates of an earlier send), %llu sends again, %llu stored, "
                "%u acknowledged but lost, consumer %llu duplicates (%llu flagged redelivered)\n",
                (unsigned long long)t->stats.reconnects, (unsigned long long)t->pub.nacked,
                (unsigned long long)t->pub.ndup, (unsigned long long)t->pub.stats.retries,
                (unsigned long long)t->stored, lost, (unsigned long long)t->pull.dups,
                (unsigned long long)t->pull.stats.redelivered);
  assert_int_equal(t->restarted, 2);
  assert_true(t->stats.reconnects >= 2);
  assert_int_equal(t->pub.nacked, N_RESTART); /* every publish acknowledged in the end */
  assert_int_equal(t->pub.nfailed, 0);
  assert_int_equal(lost, 0);                  /* and every acknowledged one is there */
  assert_int_equal(t->pull.distinct, N_RESTART);
  /* No check that every duplicate was flagged (delivery count above 1): the crashed server may
   * have lost the consumer's latest acknowledgements and its record of the deliveries with them,
   * and deliver again with a count of 1. Duplicates after a server crash are found by stream
   * sequence (docs/nats.md). */
  assert_int_equal(t->stored, N_RESTART); /* message ids: a send again is not stored twice */
  assert_int_equal(t->c.closed, 1);
  free(t->pub.acked);
  free(t->pull.seen);
  free(t);
}

int main(int argc, char** argv) {
  const struct CMUnitTest tests[] = {
      NTEST(test_publish_then_pull),
      NTEST(test_nak_redelivered),
      NTEST(test_message_ids),
      NTEST(test_consumer_killed_midway),
      NTEST(test_slow_consumer_bounds_producer),
      NTEST(test_server_restart),
  };
  int r;
  if (argc == 5 && strcmp(argv[1], "--consume") == 0)
    return consumer_main(argv[2], atoi(argv[3]), atoll(argv[4]));
  self_path = argv[0];
  signal(SIGPIPE, SIG_IGN);
  r = cmocka_run_group_tests(tests, NULL, NULL);
  nats_CloseAndWait(1000);
  return r;
}
