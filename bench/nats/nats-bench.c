/* nats-bench: messages per second into a receiver, uvchan_nats against the NATS C client's own
 * subscribers, on one server, interleaved (bench/nats/run.sh takes the medians).
 *
 *   nats-bench URL [-n N] [-r ROUNDS] [-w WORKLOAD,...]
 *
 * Workloads (each line printed: name, messages, msgs/s, subscriber CPU ns/msg, minor faults):
 *   core_cb       the C client's callback subscriber (natsConnection_Subscribe), counting
 *   core_task     uvchan_nats_subscribe(): the delivery thread sends into a shared channel, a
 *                 task receives
 *   core_adapter  the client's libuv adapter (socket reads on the loop) with a synchronous
 *                 subscription drained from a check handle into a channel a task receives from: the
 *                 design not taken, measured for docs/nats.md
 *   js_cb         the C client's JetStream push subscriber (js_Subscribe), acking each message
 *   js_fetch      the C client's pull subscriber: natsSubscription_Fetch() batches of 256 on a
 *                 thread, acking each message
 *   js_task       uvchan_nats_pull_start() (capacity 1024) into a task, acking each message
 *   jspub_async   the C client's js_PublishAsync() with a message id, at most 256 in flight
 *   jspub_task    a uvchan_nats publisher (JetStream, at most 256 in flight) fed by a task
 *
 * Core workloads get their messages from a publisher process (this program, --publish), so that
 * the CPU time and page faults measured are the receiving side's only. The rate is taken from the
 * first message received to the last (N - 1 gaps), so process start and connects do not count.
 * JetStream consumers read N messages stored once at the start (in memory: the server's disk is
 * the same for every peer and only adds noise), each round with a new durable consumer. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wpedantic"
#endif
#include <nats/adapters/libuv.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "uvchan_nats.h"

static const char* url;
static const char* self_path;
static int N = 200000;
static char payload[16] = "0123456789abcde";

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char* what, int s) {
  fprintf(stderr, "nats-bench: %s failed (%d)\n", what, s);
  exit(1);
}

#define CHECK(call)                 \
  do {                              \
    natsStatus s_ = (call);         \
    if (s_ != NATS_OK)              \
      die(#call, (int)s_);          \
  } while (0)

/* ---- measurement ---- */

typedef struct {
  uint64_t first, last; /* ns: first and last message received */
  int count;
  struct rusage ru0;
} meter_t;

static void meter_start(meter_t* m) {
  memset(m, 0, sizeof(*m));
  getrusage(RUSAGE_SELF, &m->ru0);
}

static inline void meter_tick(meter_t* m) {
  uint64_t t = now_ns();
  if (m->count++ == 0)
    m->first = t;
  m->last = t;
}

static uint64_t tv_ns(struct timeval tv) {
  return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull;
}

static void meter_report(const char* name, meter_t* m) {
  struct rusage ru;
  double secs = (double)(m->last - m->first) / 1e9;
  uint64_t cpu;
  getrusage(RUSAGE_SELF, &ru);
  cpu = tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime) - tv_ns(m->ru0.ru_utime) - tv_ns(m->ru0.ru_stime);
  printf("%s %d %.0f %.0f %ld\n", name, m->count, secs > 0 ? (m->count - 1) / secs : 0.0,
         (double)cpu / m->count, ru.ru_minflt - m->ru0.ru_minflt);
  fflush(stdout);
}

/* ---- the publisher process ---- */

static int fill_main(int n);

static int publish_main(const char* subject, int n) {
  natsConnection* nc = NULL;
  int i;
  if (strcmp(subject, "--fill") == 0)
    return fill_main(n);
  CHECK(natsConnection_ConnectTo(&nc, url));
  for (i = 0; i < n; i++)
    CHECK(natsConnection_Publish(nc, subject, payload, sizeof(payload)));
  CHECK(natsConnection_FlushTimeout(nc, 30000));
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}

static pid_t spawn_publisher(const char* subject) {
  char n[16];
  pid_t pid = fork();
  if (pid < 0)
    die("fork", errno);
  if (pid == 0) {
    snprintf(n, sizeof(n), "%d", N);
    execl(self_path, self_path, url, "--publish", subject, n, (char*)NULL);
    _exit(127);
  }
  return pid;
}

static void reap(pid_t pid) {
  int st;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    die("publisher", st);
}

/* ---- core: the client's callback subscriber ---- */

typedef struct {
  meter_t m;
  uv_mutex_t lock;
  uv_cond_t cond;
} cb_state_t;

static void core_cb_msg(natsConnection* c, natsSubscription* s, natsMsg* msg, void* arg) {
  cb_state_t* st = arg;
  (void)c;
  (void)s;
  natsMsg_Destroy(msg);
  meter_tick(&st->m);
  if (st->m.count == N) {
    uv_mutex_lock(&st->lock);
    uv_cond_signal(&st->cond);
    uv_mutex_unlock(&st->lock);
  }
}

static void wait_count(cb_state_t* st) {
  uv_mutex_lock(&st->lock);
  while (__atomic_load_n(&st->m.count, __ATOMIC_ACQUIRE) < N)
    uv_cond_timedwait(&st->cond, &st->lock, 100000000ull);
  uv_mutex_unlock(&st->lock);
}

static void run_core_cb(int round) {
  natsConnection* nc = NULL;
  natsSubscription* sub = NULL;
  cb_state_t st;
  char subj[64];
  pid_t pub;
  snprintf(subj, sizeof(subj), "bench.core_cb.%d", round);
  uv_mutex_init(&st.lock);
  uv_cond_init(&st.cond);
  CHECK(natsConnection_ConnectTo(&nc, url));
  meter_start(&st.m);
  CHECK(natsConnection_Subscribe(&sub, nc, subj, core_cb_msg, &st));
  CHECK(natsSubscription_SetPendingLimits(sub, -1, -1));
  CHECK(natsConnection_FlushTimeout(nc, 5000));
  pub = spawn_publisher(subj);
  wait_count(&st);
  meter_report("core_cb", &st.m);
  reap(pub);
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  uv_cond_destroy(&st.cond);
  uv_mutex_destroy(&st.lock);
}

/* ---- core: uvchan_nats into a task ---- */

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_nats_t nc;
  uvchan_nats_sub_t sub;
  uvchan_nats_pull_t pull;
  uvchan_nats_pub_t pub;
  meter_t m;
  const char* subj;
  int round;
  pid_t publisher;
} task_state_t;

static natsStatus flush_fn(uvchan_nats_t* nc, void* arg) {
  (void)arg;
  return natsConnection_FlushTimeout(nc->conn, 5000);
}

static void core_task(void* arg) {
  task_state_t* t = arg;
  uvchan_nats_sub_opts_t so;
  natsMsg* msg;
  int i, err;
  if ((err = uvchan_nats_task_connect(&t->ctx, &t->nc, url, NULL)) != 0)
    die("connect", err);
  memset(&so, 0, sizeof(so));
  so.capacity = 1024;
  so.pending_msgs = -1;
  so.pending_bytes = -1;
  meter_start(&t->m);
  if ((err = uvchan_nats_subscribe(&t->nc, &t->sub, t->subj, &so)) != 0)
    die("subscribe", err);
  uvchan_nats_task_call(&t->nc, flush_fn, NULL);
  t->publisher = spawn_publisher(t->subj);
  for (i = 0; i < N; i++) {
    if (uvchan_task_recv(&t->sub.chan, &msg) != 0)
      die("recv", i);
    natsMsg_Destroy(msg);
    meter_tick(&t->m);
  }
  meter_report("core_task", &t->m);
  uvchan_nats_close(&t->nc, NULL);
}

static void task_loop(task_state_t* t, uvchan_task_fn fn) {
  uv_loop_init(&t->loop);
  uvchan_ctx_init(&t->loop, &t->ctx);
  uvchan_task_spawn(&t->ctx, fn, t, NULL);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  if (uvchan_ctx_close(&t->ctx, NULL) != 0)
    die("ctx_close", 0);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&t->loop) != 0)
    die("loop_close", 0);
}

static void run_core_task(int round) {
  task_state_t t;
  char subj[64];
  memset(&t, 0, sizeof(t));
  snprintf(subj, sizeof(subj), "bench.core_task.%d", round);
  t.subj = subj;
  task_loop(&t, core_task);
  reap(t.publisher);
}

/* ---- core: the libuv adapter, a synchronous subscription drained on the loop ---- */

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uv_check_t check;
  uv_idle_t idle; /* keeps the poll from blocking while the subscription holds messages */
  uvchan_t chan;
  natsConnection* nc;
  natsSubscription* sub;
  meter_t m;
  pid_t publisher;
  const char* subj;
  int stop;
} adapter_state_t;

static void adapter_idle(uv_idle_t* h) {
  (void)h;
}

static void adapter_drain(uv_check_t* h) {
  adapter_state_t* a = h->data;
  natsMsg* msg;
  int full = 0;
  while (a->sub != NULL) {
    if (uvchan_len(&a->chan) == uvchan_cap(&a->chan)) {
      full = 1;
      break;
    }
    if (natsSubscription_NextMsg(&msg, a->sub, 0) != NATS_OK)
      break;
    if (uvchan_try_send(&a->chan, &msg) != 0) {
      natsMsg_Destroy(msg);
      break;
    }
  }
  if (full && !uv_is_active((uv_handle_t*)&a->idle))
    uv_idle_start(&a->idle, adapter_idle);
  else if (!full && uv_is_active((uv_handle_t*)&a->idle))
    uv_idle_stop(&a->idle);
}

static void adapter_task(void* arg) {
  adapter_state_t* a = arg;
  natsMsg* msg;
  int i;
  a->publisher = spawn_publisher(a->subj);
  for (i = 0; i < N; i++) {
    if (uvchan_task_recv(&a->chan, &msg) != 0)
      die("recv", i);
    natsMsg_Destroy(msg);
    meter_tick(&a->m);
  }
  meter_report("core_adapter", &a->m);
  natsSubscription_Destroy(a->sub);
  a->sub = NULL;
  uv_idle_stop(&a->idle);
  uv_check_stop(&a->check);
  uv_close((uv_handle_t*)&a->check, NULL);
  uv_close((uv_handle_t*)&a->idle, NULL);
  natsConnection_Destroy(a->nc); /* the adapter detaches, closing its handles from the loop */
  a->nc = NULL;
  uvchan_destroy(&a->chan);
}

static void run_core_adapter(int round) {
  adapter_state_t a;
  natsOptions* o = NULL;
  char subj[64];
  memset(&a, 0, sizeof(a));
  snprintf(subj, sizeof(subj), "bench.core_adapter.%d", round);
  a.subj = subj;
  uv_loop_init(&a.loop);
  uvchan_ctx_init(&a.loop, &a.ctx);
  natsLibuv_Init();
  natsLibuv_SetThreadLocalLoop(&a.loop);
  CHECK(natsOptions_Create(&o));
  CHECK(natsOptions_SetURL(o, url));
  CHECK(natsOptions_SetEventLoop(o, &a.loop, natsLibuv_Attach, natsLibuv_Read, natsLibuv_Write,
                                 natsLibuv_Detach));
  CHECK(natsConnection_Connect(&a.nc, o));
  natsOptions_Destroy(o);
  meter_start(&a.m);
  CHECK(natsConnection_SubscribeSync(&a.sub, a.nc, subj));
  CHECK(natsSubscription_SetPendingLimits(a.sub, -1, -1));
  uvchan_init(&a.ctx, &a.chan, sizeof(natsMsg*), 1024);
  uv_check_init(&a.loop, &a.check);
  uv_idle_init(&a.loop, &a.idle);
  a.check.data = &a;
  uv_check_start(&a.check, adapter_drain);
  /* The SUB goes out when the loop writes; the publisher starts from the task, after a turn. */
  uv_run(&a.loop, UV_RUN_NOWAIT);
  usleep(20000);
  uv_run(&a.loop, UV_RUN_NOWAIT);
  uvchan_task_spawn(&a.ctx, adapter_task, &a, NULL);
  uv_run(&a.loop, UV_RUN_DEFAULT);
  uvchan_ctx_close(&a.ctx, NULL);
  uv_run(&a.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&a.loop) != 0)
    die("loop_close (adapter)", 0);
  reap(a.publisher);
}

/* ---- JetStream ---- */

static natsConnection* admin;
static jsCtx* js;

static void js_setup(int fill) {
  jsStreamConfig cfg;
  jsStreamInfo* si = NULL;
  const char* subj[1] = {"bench.js"};
  const char* psubj[1] = {"benchpub.x"};
  jsPubOptions po;
  jsOptions jo;
  char id[32];
  int i;
  CHECK(natsConnection_ConnectTo(&admin, url));
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 4096;
  CHECK(natsConnection_JetStream(&js, admin, &jo));
  (void)js_DeleteStream(js, "BENCH", NULL, NULL);
  (void)js_DeleteStream(js, "BENCHPUB", NULL, NULL);
  jsStreamConfig_Init(&cfg);
  cfg.Name = "BENCH";
  cfg.Subjects = subj;
  cfg.SubjectsLen = 1;
  /* Memory storage: the server's disk is the same for every peer, and only adds noise. */
  cfg.Storage = js_MemoryStorage;
  CHECK(js_AddStream(&si, js, &cfg, NULL, NULL));
  jsStreamInfo_Destroy(si);
  cfg.Name = "BENCHPUB";
  cfg.Subjects = psubj;
  CHECK(js_AddStream(&si, js, &cfg, NULL, NULL));
  jsStreamInfo_Destroy(si);
  (void)po;
  (void)id;
  (void)i;
  if (fill) /* by another process: only the consumers count in this one's CPU time */
    reap(spawn_publisher("--fill"));
}

/* The stream's content, published by a process of its own (--publish --fill N). */
static int fill_main(int n) {
  natsConnection* nc = NULL;
  jsCtx* fjs = NULL;
  jsOptions jo;
  jsPubOptions po;
  char id[32];
  int i;
  CHECK(natsConnection_ConnectTo(&nc, url));
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.StallWait = 30000;
  CHECK(natsConnection_JetStream(&fjs, nc, &jo));
  jsPubOptions_Init(&po);
  for (i = 0; i < n; i++) {
    snprintf(id, sizeof(id), "fill-%d", i);
    po.MsgId = id;
    CHECK(js_PublishAsync(fjs, "bench.js", payload, sizeof(payload), &po));
  }
  CHECK(js_PublishAsyncComplete(fjs, NULL));
  jsCtx_Destroy(fjs);
  natsConnection_Destroy(nc);
  nats_Close();
  return 0;
}

static void consumer_config(jsConsumerConfig* cc, const char* name) {
  jsConsumerConfig_Init(cc);
  cc->Durable = name;
  cc->AckPolicy = js_AckExplicit;
  cc->DeliverPolicy = js_DeliverAll;
  cc->MaxAckPending = 20000;
}

static void js_cb_msg(natsConnection* c, natsSubscription* s, natsMsg* msg, void* arg) {
  cb_state_t* st = arg;
  (void)c;
  (void)s;
  natsMsg_Ack(msg, NULL);
  natsMsg_Destroy(msg);
  meter_tick(&st->m);
  if (st->m.count == N) {
    uv_mutex_lock(&st->lock);
    uv_cond_signal(&st->cond);
    uv_mutex_unlock(&st->lock);
  }
}

static void run_js_cb(int round) {
  natsSubscription* sub = NULL;
  jsSubOptions so;
  cb_state_t st;
  char name[64];
  snprintf(name, sizeof(name), "js_cb_%d", round);
  uv_mutex_init(&st.lock);
  uv_cond_init(&st.cond);
  jsSubOptions_Init(&so);
  so.Stream = "BENCH";
  so.ManualAck = true;
  consumer_config(&so.Config, name);
  meter_start(&st.m);
  CHECK(js_Subscribe(&sub, js, "bench.js", js_cb_msg, &st, NULL, &so, NULL));
  CHECK(natsSubscription_SetPendingLimits(sub, -1, -1));
  wait_count(&st);
  meter_report("js_cb", &st.m);
  natsSubscription_Destroy(sub);
  (void)js_DeleteConsumer(js, "BENCH", name, NULL, NULL);
  uv_cond_destroy(&st.cond);
  uv_mutex_destroy(&st.lock);
}

static void run_js_fetch(int round) {
  natsSubscription* sub = NULL;
  jsSubOptions so;
  natsMsgList list;
  meter_t m;
  char name[64];
  int i;
  snprintf(name, sizeof(name), "js_fetch_%d", round);
  jsSubOptions_Init(&so);
  so.Stream = "BENCH";
  consumer_config(&so.Config, name);
  meter_start(&m);
  CHECK(js_PullSubscribe(&sub, js, "bench.js", name, NULL, &so, NULL));
  while (m.count < N) {
    if (natsSubscription_Fetch(&list, sub, 256, 5000, NULL) != NATS_OK)
      die("fetch", m.count);
    for (i = 0; i < list.Count; i++) {
      natsMsg_Ack(list.Msgs[i], NULL);
      meter_tick(&m);
    }
    natsMsgList_Destroy(&list);
  }
  meter_report("js_fetch", &m);
  natsSubscription_Destroy(sub);
  (void)js_DeleteConsumer(js, "BENCH", name, NULL, NULL);
}

static void js_task(void* arg) {
  task_state_t* t = arg;
  uvchan_nats_pull_opts_t o;
  natsMsg* msg;
  char name[64];
  int i, err;
  if ((err = uvchan_nats_task_connect(&t->ctx, &t->nc, url, NULL)) != 0)
    die("connect", err);
  snprintf(name, sizeof(name), "js_task_%d", t->round);
  memset(&o, 0, sizeof(o));
  o.stream = "BENCH";
  o.consumer = name;
  o.capacity = 1024;
  o.max_ack_pending = 20000;
  meter_start(&t->m);
  if ((err = uvchan_nats_pull_start(&t->nc, &t->pull, &o)) != 0)
    die("pull_start", err);
  for (i = 0; i < N; i++) {
    if (uvchan_task_recv(&t->pull.chan, &msg) != 0)
      die("recv", i);
    natsMsg_Ack(msg, NULL);
    natsMsg_Destroy(msg);
    meter_tick(&t->m);
  }
  meter_report("js_task", &t->m);
  uvchan_nats_close(&t->nc, NULL);
}

static void run_js_task(int round) {
  task_state_t t;
  char name[64];
  memset(&t, 0, sizeof(t));
  t.round = round;
  task_loop(&t, js_task);
  snprintf(name, sizeof(name), "js_task_%d", round);
  (void)js_DeleteConsumer(js, "BENCH", name, NULL, NULL);
}

/* ---- JetStream publishing ---- */

static void run_jspub_async(int round) {
  jsCtx* pjs = NULL;
  jsOptions jo;
  jsPubOptions po;
  meter_t m;
  char id[48];
  int i;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = 256;
  jo.PublishAsync.StallWait = 30000; /* wait for room as long as it takes, as ours does */
  CHECK(natsConnection_JetStream(&pjs, admin, &jo));
  (void)js_PurgeStream(js, "BENCHPUB", NULL, NULL);
  jsPubOptions_Init(&po);
  meter_start(&m);
  for (i = 0; i < N; i++) {
    snprintf(id, sizeof(id), "a%d-%d", round, i);
    po.MsgId = id;
    CHECK(js_PublishAsync(pjs, "benchpub.x", payload, sizeof(payload), &po));
    meter_tick(&m);
  }
  CHECK(js_PublishAsyncComplete(pjs, NULL));
  m.last = now_ns(); /* until the last acknowledgement */
  meter_report("jspub_async", &m);
  jsCtx_Destroy(pjs);
}

static void jspub_closed(uvchan_nats_pub_t* p) {
  task_state_t* t = p->data;
  t->m.last = now_ns(); /* the graceful close waited for the last acknowledgement */
  meter_report("jspub_task", &t->m);
  uvchan_nats_close(&t->nc, NULL);
}

static void jspub_task(void* arg) {
  task_state_t* t = arg;
  uvchan_nats_pub_opts_t po;
  natsMsg* msg;
  int i, err;
  if ((err = uvchan_nats_task_connect(&t->ctx, &t->nc, url, NULL)) != 0)
    die("connect", err);
  (void)js_PurgeStream(js, "BENCHPUB", NULL, NULL);
  memset(&po, 0, sizeof(po));
  po.jetstream = 1;
  po.capacity = 1024;
  po.max_inflight = 256;
  t->pub.data = t;
  if ((err = uvchan_nats_pub_init(&t->nc, &t->pub, &po)) != 0)
    die("pub_init", err);
  meter_start(&t->m);
  for (i = 0; i < N; i++) {
    if (natsMsg_Create(&msg, "benchpub.x", NULL, payload, sizeof(payload)) != NATS_OK ||
        uvchan_task_send(&t->pub.chan, &msg) != 0)
      die("send", i);
    meter_tick(&t->m);
  }
  uvchan_nats_pub_close(&t->pub, jspub_closed);
}

static void run_jspub_task(int round) {
  task_state_t t;
  memset(&t, 0, sizeof(t));
  t.round = round;
  task_loop(&t, jspub_task);
}

/* ---- main ---- */

typedef struct {
  const char* name;
  void (*run)(int round);
  int js;
} workload_t;

static const workload_t workloads[] = {
    {"core_cb", run_core_cb, 0},         {"core_task", run_core_task, 0},
    {"core_adapter", run_core_adapter, 0}, {"js_cb", run_js_cb, 1},
    {"js_fetch", run_js_fetch, 1},       {"js_task", run_js_task, 1},
    {"jspub_async", run_jspub_async, 1}, {"jspub_task", run_jspub_task, 1},
};

int main(int argc, char** argv) {
  const char* only = NULL;
  int rounds = 3, r, i, need_js = 0, need_fill = 0;
  size_t w;
  if (argc >= 5 && strcmp(argv[2], "--publish") == 0) {
    url = argv[1];
    return publish_main(argv[3], atoi(argv[4]));
  }
  if (argc < 2) {
    fprintf(stderr, "usage: %s URL [-n N] [-r ROUNDS] [-w WORKLOAD,...]\n", argv[0]);
    return 2;
  }
  self_path = argv[0];
  url = argv[1];
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-n") == 0)
      N = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-r") == 0)
      rounds = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-w") == 0)
      only = argv[i + 1];
  }
  signal(SIGPIPE, SIG_IGN);
  for (w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++)
    if (workloads[w].js && (only == NULL || strstr(only, workloads[w].name) != NULL)) {
      need_js = 1;
      if (strncmp(workloads[w].name, "js_", 3) == 0)
        need_fill = 1; /* the consumers read a stream filled once */
    }
  if (need_js)
    js_setup(need_fill);
  for (r = 0; r < rounds; r++)
    for (w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++)
      if (only == NULL || strstr(only, workloads[w].name) != NULL)
        workloads[w].run(r);
  if (js != NULL) {
    jsCtx_Destroy(js);
    natsConnection_Destroy(admin);
  }
  nats_CloseAndWait(2000);
  return 0;
}
