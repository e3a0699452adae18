/* The NATS suites' fixture: a loop, a context and a real nats-server of the test's own, on a free
 * loopback port, with JetStream and a temporary store directory. The server is a child process
 * that dies with the thread that started it (PR_SET_PDEATHSIG: start it from the main thread), is
 * stopped by the teardown, which cmocka runs after a failed test too, and leaves no directory
 * behind. */
#ifndef UVCHAN_NATS_HELPERS_H
#define UVCHAN_NATS_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-helpers.h"
#include "uvchan_nats.h"

typedef struct {
  pid_t pid;
  int port;
  char dir[128];
  char url[64];
} natsrv_t;

/* A port nobody listens on now (the server binds it right after; good enough on loopback). */
static inline int natsrv_free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr*)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr*)&a, &len), 0);
  port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static inline int natsrv_accepts(int port) {
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = connect(fd, (struct sockaddr*)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

/* Starts the server on s->port (0: a free one) and s->dir ("": a new temporary directory), and
 * waits until it accepts connections. */
static inline void natsrv_launch(natsrv_t* s) {
  char port[16], store[160], log[160];
  int i;
  if (s->dir[0] == '\0') {
    snprintf(s->dir, sizeof(s->dir), "/tmp/uvchan-nats-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
  }
  if (s->port == 0)
    s->port = natsrv_free_port();
  snprintf(port, sizeof(port), "%d", s->port);
  snprintf(store, sizeof(store), "%s/js", s->dir);
  snprintf(log, sizeof(log), "%s/server.log", s->dir);
  snprintf(s->url, sizeof(s->url), "nats://127.0.0.1:%d", s->port);
  s->pid = fork();
  assert_true(s->pid >= 0);
  if (s->pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execl(UVCHAN_NATS_SERVER, "nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", store,
          (char*)NULL);
    _exit(127);
  }
  for (i = 0; i < 500 && !natsrv_accepts(s->port); i++)
    usleep(10000);
  assert_true(natsrv_accepts(s->port));
}

static inline void natsrv_start(natsrv_t* s) {
  memset(s, 0, sizeof(*s));
  natsrv_launch(s);
}

/* Stops it: SIGTERM (a clean shutdown, its store flushed), SIGKILL after 5 s. */
static inline void natsrv_halt(natsrv_t* s, int sig) {
  int i, st;
  if (s->pid <= 0)
    return;
  kill(s->pid, sig);
  for (i = 0; i < 500; i++) {
    if (waitpid(s->pid, &st, WNOHANG) == s->pid)
      break;
    usleep(10000);
  }
  if (i == 500) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
  }
  s->pid = 0;
}

/* Stops it and starts it again on the same port and store. */
static inline void natsrv_restart(natsrv_t* s, int sig) {
  natsrv_halt(s, sig);
  natsrv_launch(s);
}

static inline void natsrv_stop(natsrv_t* s) {
  char cmd[200];
  natsrv_halt(s, SIGTERM);
  if (s->dir[0] != '\0') {
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove %s\n", s->dir);
    s->dir[0] = '\0';
  }
}

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  natsrv_t srv;
} nfixture_t;

static inline int nfx_setup(void** state) {
  nfixture_t* f = calloc(1, sizeof(*f));
  assert_non_null(f);
  natsrv_start(&f->srv);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uvchan_ctx_init(&f->loop, &f->ctx), 0);
  *state = f;
  return 0;
}

static inline int nfx_teardown(void** state) {
  nfixture_t* f = *state;
  natsrv_stop(&f->srv); /* first: a failed test must not leave a server behind */
  assert_int_equal(uvchan_ctx_close(&f->ctx, NULL), 0);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

#define NFX(state) ((nfixture_t*)*(state))
#define NTEST(fn) cmocka_unit_test_setup_teardown(fn, nfx_setup, nfx_teardown)

/* A new message of `len` bytes on `subject`. */
static inline natsMsg* nmsg(const char* subject, const void* data, int len) {
  natsMsg* m = NULL;
  assert_int_equal(natsMsg_Create(&m, subject, NULL, data, len), NATS_OK);
  return m;
}

/* Fast reconnects, so that a server restart is a short gap. */
static inline natsOptions* nopts(const char* url) {
  natsOptions* o = NULL;
  assert_int_equal(natsOptions_Create(&o), NATS_OK);
  assert_int_equal(natsOptions_SetURL(o, url), NATS_OK);
  assert_int_equal(natsOptions_SetReconnectWait(o, 50), NATS_OK);
  assert_int_equal(natsOptions_SetMaxReconnect(o, 200), NATS_OK);
  return o;
}

/* JetStream management from a task, through uvchan_nats_task_call(). */
typedef struct {
  const char* name;
  const char* subject;
  int64_t max_msgs;
  int workqueue;
  int discard_new;
  jsErrCode jerr;
} stream_def_t;

static inline natsStatus add_stream_fn(uvchan_nats_t* nc, void* arg) {
  stream_def_t* d = arg;
  jsStreamConfig cfg;
  jsStreamInfo* si = NULL;
  const char* subjects[1];
  natsStatus s;
  subjects[0] = d->subject;
  jsStreamConfig_Init(&cfg);
  cfg.Name = d->name;
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  if (d->max_msgs > 0)
    cfg.MaxMsgs = d->max_msgs;
  if (d->workqueue)
    cfg.Retention = js_WorkQueuePolicy;
  if (d->discard_new)
    cfg.Discard = js_DiscardNew;
  s = js_AddStream(&si, nc->js, &cfg, NULL, &d->jerr);
  jsStreamInfo_Destroy(si);
  return s;
}

typedef struct {
  const char* name;
  uint64_t msgs;
  jsErrCode jerr;
} stream_info_t;

static inline natsStatus stream_info_fn(uvchan_nats_t* nc, void* arg) {
  stream_info_t* d = arg;
  jsStreamInfo* si = NULL;
  natsStatus s = js_GetStreamInfo(&si, nc->js, d->name, NULL, &d->jerr);
  if (s == NATS_OK)
    d->msgs = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return s;
}

#endif
