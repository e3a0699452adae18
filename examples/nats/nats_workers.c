/* nats_workers: a worker pool spanning processes (and machines), over a NATS server.
 *
 *   nats_workers worker   [URL]          compute jobs from the queue group "workers" on "jobs"
 *   nats_workers producer [URL] [N] [W]  send N jobs (default 100000), at most W unanswered
 *                                        (default 1000), collect every result, print a checksum
 *
 * URL defaults to nats://127.0.0.1:4222. Start a server (`nats-server -js`), a few workers, then
 * the producer; stop the workers with Ctrl-C. Each job goes to exactly one worker of the queue
 * group (NATS picks); a worker computes and answers on the job's reply subject; the producer's
 * results arrive on its subscription's channel. Core NATS delivers at most once, so the producer
 * sends a job again when its result is late (a worker died with it): results are counted once
 * per job, and the checksum must equal the one computed locally.
 *
 * The Go version of the producer is three goroutines and two channels; here it is three tasks and
 * two channels, and NATS's subscriptions and publishers are channels too. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan_nats.h"

#define DEFAULT_URL "nats://127.0.0.1:4222"

typedef struct {
  uint32_t id;
  uint64_t input;
} job_t;

typedef struct {
  uint32_t id;
  uint32_t worker; /* which process answered */
  uint64_t output;
} result_t;

/* The job's work: a few rounds of a 64-bit mixer. */
static uint64_t compute(uint64_t x) {
  int i;
  for (i = 0; i < 64; i++) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
  }
  return x;
}

static uv_loop_t loop;
static uvchan_ctx_t ctx;
static uvchan_nats_t nc;
static uv_signal_t sigint, sigterm;
static const char* url = DEFAULT_URL;

/* Every task's blocking call returns UV_ECANCELED, the connection closes with the context, and
 * once the signal handles are closed too the loop ends. */
static void stop_all(void) {
  if (!uv_is_closing((uv_handle_t*)&sigint)) {
    uv_close((uv_handle_t*)&sigint, NULL);
    uv_close((uv_handle_t*)&sigterm, NULL);
    uvchan_ctx_shutdown(&ctx, NULL);
  }
}

static void on_signal(uv_signal_t* s, int signum) {
  (void)s;
  (void)signum;
  stop_all();
}

static void fail(const char* what, int err) {
  fprintf(stderr, "nats_workers: %s: %s\n", what, uv_strerror(err));
  exit(1);
}

/* ---- worker ---- */

static uvchan_nats_sub_t jobs;
static uvchan_nats_pub_t results;
static uint64_t done_jobs;

static void worker(void* arg) {
  uvchan_nats_sub_opts_t so;
  uint32_t me = (uint32_t)uv_os_getpid();
  natsMsg* m;
  natsMsg* out;
  job_t j;
  result_t r;
  int err;
  (void)arg;

  if ((err = uvchan_nats_task_connect(&ctx, &nc, url, NULL)) != 0)
    fail("connect", err);
  memset(&so, 0, sizeof(so));
  so.queue = "workers";
  if ((err = uvchan_nats_subscribe(&nc, &jobs, "jobs", &so)) != 0 ||
      (err = uvchan_nats_pub_init(&nc, &results, NULL)) != 0)
    fail("subscribe", err);
  printf("worker %u: waiting for jobs on %s\n", (unsigned)me, url);
  fflush(stdout);
  /* for job := range jobs { results <- compute(job) } */
  while (uvchan_task_recv(&jobs.chan, &m) == 0) {
    if (natsMsg_GetDataLength(m) == (int)sizeof(j) && natsMsg_GetReply(m) != NULL) {
      memcpy(&j, natsMsg_GetData(m), sizeof(j));
      r.id = j.id;
      r.worker = me;
      r.output = compute(j.input);
      if (natsMsg_Create(&out, natsMsg_GetReply(m), NULL, (const char*)&r, (int)sizeof(r)) ==
              NATS_OK &&
          uvchan_task_send(&results.chan, &out) != 0)
        natsMsg_Destroy(out);
      done_jobs++;
    }
    natsMsg_Destroy(m);
  }
  printf("worker %u: %llu jobs done\n", (unsigned)me, (unsigned long long)done_jobs);
}

/* ---- producer ---- */

static uint32_t njobs = 100000, window = 1000;
static uvchan_t tokens; /* one per unanswered job: a full channel is a full window */
static uvchan_nats_sub_t answers;
static uvchan_nats_pub_t out_jobs;
static uint8_t* done;
static uint64_t* sent_at;
static uint32_t ndone, resent;
static uint64_t checksum, t0;
static char inbox[128];
static struct {
  uint32_t worker;
  uint32_t jobs;
} seen[64];
static int nseen;

static uint64_t input_of(uint32_t id) {
  return (uint64_t)id * 2654435761u + 12345;
}

static int send_job(uint32_t id) {
  natsMsg* m;
  job_t j;
  j.id = id;
  j.input = input_of(id);
  if (natsMsg_Create(&m, "jobs", inbox, (const char*)&j, (int)sizeof(j)) != NATS_OK)
    return UV_ENOMEM;
  sent_at[id] = uv_now(&loop);
  if (uvchan_task_send(&out_jobs.chan, &m) != 0) {
    natsMsg_Destroy(m);
    return UV_ECANCELED;
  }
  return 0;
}

static void sender(void* arg) {
  uint32_t id;
  char token = 1;
  (void)arg;
  for (id = 0; id < njobs; id++) {
    if (uvchan_task_send(&tokens, &token) != 0) /* waits while W jobs are unanswered */
      return;
    if (send_job(id) != 0)
      return;
  }
}

/* Sends again what is unanswered after 2 s: a worker may have died with it. */
static void resender(void* arg) {
  uint32_t id;
  (void)arg;
  while (ndone < njobs && uvchan_task_sleep(500) == 0) {
    uint64_t now = uv_now(&loop);
    for (id = 0; id < njobs; id++) {
      if (sent_at[id] != 0 && !done[id] && now - sent_at[id] > 2000) {
        if (send_job(id) != 0)
          return;
        resent++;
      }
    }
  }
}

static void collector(void* arg) {
  natsMsg* m;
  result_t r;
  char token;
  int i;
  (void)arg;
  while (ndone < njobs && uvchan_task_recv(&answers.chan, &m) == 0) {
    if (natsMsg_GetDataLength(m) == (int)sizeof(r)) {
      memcpy(&r, natsMsg_GetData(m), sizeof(r));
      if (r.id < njobs && !done[r.id]) { /* a job sent twice may be answered twice */
        done[r.id] = 1;
        ndone++;
        checksum += r.output;
        (void)uvchan_try_recv(&tokens, &token); /* one more job may go */
        for (i = 0; i < nseen && seen[i].worker != r.worker; i++)
          ;
        if (i == nseen && nseen < 64)
          seen[nseen++].worker = r.worker;
        if (i < 64)
          seen[i].jobs++;
      }
    }
    natsMsg_Destroy(m);
  }
  if (ndone == njobs) {
    uint64_t expect = 0, ms = uv_now(&loop) - t0;
    uint32_t id;
    for (id = 0; id < njobs; id++)
      expect += compute(input_of(id));
    printf("producer: %u results from %d workers in %llu ms (%.0f jobs/s), %u sent again\n",
           ndone, nseen, (unsigned long long)ms, ms ? ndone * 1000.0 / (double)ms : 0.0, resent);
    for (i = 0; i < nseen; i++)
      printf("  worker %u: %u jobs\n", seen[i].worker, seen[i].jobs);
    printf("checksum %016llx (expected %016llx): %s\n", (unsigned long long)checksum,
           (unsigned long long)expect, checksum == expect ? "OK" : "MISMATCH");
    if (checksum != expect)
      exit(1);
  }
  stop_all(); /* done (or interrupted): stop the other tasks */
}

static void producer(void* arg) {
  uvchan_nats_sub_opts_t so;
  natsInbox* ib = NULL;
  int err;
  (void)arg;
  if ((err = uvchan_nats_task_connect(&ctx, &nc, url, NULL)) != 0)
    fail("connect", err);
  /* Results come back on a subject of this producer's own. */
  natsInbox_Create(&ib);
  snprintf(inbox, sizeof(inbox), "%s", ib);
  natsInbox_Destroy(ib);
  memset(&so, 0, sizeof(so));
  so.capacity = 1024;
  so.pending_msgs = -1; /* the window bounds what can arrive */
  if ((err = uvchan_nats_subscribe(&nc, &answers, inbox, &so)) != 0 ||
      (err = uvchan_nats_pub_init(&nc, &out_jobs, NULL)) != 0)
    fail("subscribe", err);
  t0 = uv_now(&loop);
  uvchan_task_spawn(&ctx, collector, NULL, NULL);
  uvchan_task_spawn(&ctx, resender, NULL, NULL);
  sender(NULL);
}

int main(int argc, char** argv) {
  int is_worker;
  if (argc < 2 || (strcmp(argv[1], "worker") != 0 && strcmp(argv[1], "producer") != 0)) {
    fprintf(stderr, "usage: %s worker [URL]\n       %s producer [URL] [JOBS] [WINDOW]\n", argv[0],
            argv[0]);
    return 2;
  }
  is_worker = strcmp(argv[1], "worker") == 0;
  if (argc > 2)
    url = argv[2];
  if (argc > 3)
    njobs = (uint32_t)strtoul(argv[3], NULL, 10);
  if (argc > 4)
    window = (uint32_t)strtoul(argv[4], NULL, 10);
  if (njobs == 0 || window == 0)
    return 2;
  uv_loop_init(&loop);
  uvchan_ctx_init(&loop, &ctx);
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  if (is_worker) {
    uvchan_task_spawn(&ctx, worker, NULL, NULL);
  } else {
    done = calloc(njobs, 1);
    sent_at = calloc(njobs, sizeof(*sent_at));
    uvchan_init(&ctx, &tokens, 1, window);
    uvchan_task_spawn(&ctx, producer, NULL, NULL);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  free(done);
  free(sent_at);
  nats_CloseAndWait(1000);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
