/* uvchan_nats internals, shared by the files of src/nats. Nothing here is public API.
 *
 * Threads. The NATS client calls us from its own threads: each subscription's delivery thread
 * (message callbacks, the "complete" callback when it ends), the client's one thread for
 * connection callbacks (closed, disconnected, reconnected, errors), and our pull consumers'
 * fetch threads. Messages of core subscriptions go straight into their shared channel
 * (uvchan_thread_send: backpressure). Everything else a thread has for the loop is an event,
 * posted to the connection's queue under its lock and drained by its uv_async_t callback.
 *
 * Lifetime. A thread may post until it is known to have let go: a subscription after its
 * "complete" callback, the connection callbacks after "closed", a fetch thread when it has been
 * joined. The connection's close waits for all of them before it closes the async handle and
 * calls back, so no thread ever touches freed memory. */
#ifndef UVCHAN_NATS_INTERNAL_H
#define UVCHAN_NATS_INTERNAL_H

#include "uvchan_nats.h"
/* The core's header-only helpers: UVCHAN__CONTAINER_OF, UVCHAN__MAGIC_IS (which marks the read of
 * a magic field in caller memory as deliberate under memcheck) and the intrusive list. The module
 * is built from the same tree and pinned to the same version. */
#include "../uvchan-internal.h"

#include <stdlib.h>
#include <string.h>

#define UVCHAN_NATS__MAGIC 0x756e6174u      /* "unat": a connection, from connect to close cb */
#define UVCHAN_NATS__SUB_MAGIC 0x756e7362u  /* "unsb" */
#define UVCHAN_NATS__PULL_MAGIC 0x756e706cu /* "unpl" */
#define UVCHAN_NATS__PUB_MAGIC 0x756e7062u  /* "unpb" */

/* Connection states. */
enum {
  UVCHAN_NATS__CONNECTING = 1,
  UVCHAN_NATS__CONNECTED,
  UVCHAN_NATS__FAILED,  /* the connect failed: only a close is left to do */
  UVCHAN_NATS__LOST,    /* the client closed the connection for good (reconnects exhausted) */
  UVCHAN_NATS__CLOSING
};

/* Connection flags_. */
enum {
  UVCHAN_NATS__F_WORK = 1u << 0,        /* the connect or close job runs */
  UVCHAN_NATS__F_GOT_CLOSED = 1u << 1,  /* the client's closed callback came */
  UVCHAN_NATS__F_CONN_CLOSED = 1u << 3, /* natsConnection_Close() ran */
  UVCHAN_NATS__F_REFD = 1u << 4,        /* the async handle is referenced */
  UVCHAN_NATS__F_TASK = 1u << 6         /* uvchan_nats_task_connect() waits */
};

/* Object flags_ (subscriptions, consumers, publishers). */
enum {
  UVCHAN_NATS__O_CLOSING = 1u << 0,
  UVCHAN_NATS__O_DONE = 1u << 1,    /* sub: delivery thread ended; pull: thread joined */
  UVCHAN_NATS__O_RQ = 1u << 2,      /* pull: a reservation request pends; pub: a receive pends */
  UVCHAN_NATS__O_EOF = 1u << 3,     /* pub: the channel is closed and drained */
  UVCHAN_NATS__O_ACKSEND = 1u << 4, /* pub: a send on the acks channel pends */
  UVCHAN_NATS__O_FINISHED = 1u << 6 /* pub: everything settled, acks closed */
};

/* Events a thread (or the loop itself, to call back later) posts to the loop. */
enum {
  UVCHAN_NATS__EV_REPLY = 1,    /* a: natsMsg* on the inbox */
  UVCHAN_NATS__EV_SUB_DONE,     /* a: uvchan_nats_sub_t* whose delivery thread ended */
  UVCHAN_NATS__EV_INBOX_DONE,   /* the inbox subscription's delivery thread ended */
  UVCHAN_NATS__EV_CLOSED,       /* the client's connection is closed */
  UVCHAN_NATS__EV_DISCONNECTED,
  UVCHAN_NATS__EV_RECONNECTED,
  UVCHAN_NATS__EV_ERROR,        /* a: natsSubscription* or NULL, status: natsStatus */
  UVCHAN_NATS__EV_PULL_READY,   /* a: pull; status: its setup's code */
  UVCHAN_NATS__EV_FETCH,        /* a: pull, b: uvchan_nats__fetch_t* */
  UVCHAN_NATS__EV_PULL_EXIT,    /* a: pull, its thread ended */
  UVCHAN_NATS__EV_CALLBACK,     /* a: object, b: function (void (*)(void*)): a deferred call */
  UVCHAN_NATS__EV_JOB_DONE      /* a: uvchan_nats__job_t* whose work returned */
};

typedef struct {
  int kind;
  int status;
  void* a;
  void* b;
} uvchan_nats__ev_t;

/* One fetch's result, from a fetch thread. */
typedef struct {
  natsMsgList list;
  int asked;
  int status; /* a UV_E* code */
} uvchan_nats__fetch_t;

/* Something waiting for a reply on the connection's inbox, found by its token. */
typedef struct uvchan_nats__pending_s {
  struct uvchan_nats__pending_s* hnext;
  uint64_t token;
  /* A reply (or the close of the connection: msg NULL, status UV_ECANCELED) for it. */
  void (*on_reply)(struct uvchan_nats__pending_s* p, natsMsg* msg, int status);
} uvchan_nats__pending_t;

/* The way a subscription's delivery thread reaches its object: the thread enters the gate for
 * each message and leaves it after. Normally the gate lives until the subscription's "complete"
 * callback, after which the thread never calls again. If that callback cannot be set (the
 * client closed the subscription at that very moment), the object kills the gate: it waits for
 * the thread to leave, and the gate, which the thread may still enter and find dead, stays
 * allocated for good (a few bytes, in that race only). */
typedef struct {
  int incb;
  int dead;
  uint64_t delivered;
  void* obj;
} uvchan_nats__gate_t;

static inline uvchan_nats__gate_t* uvchan_nats__gate_new(void* obj) {
  uvchan_nats__gate_t* g = calloc(1, sizeof(*g));
  if (g != NULL)
    g->obj = obj;
  return g;
}

/* Sequentially consistent: a thread that entered is seen by the kill, or sees the kill. */
static inline int uvchan_nats__gate_enter(uvchan_nats__gate_t* g) {
  __atomic_add_fetch(&g->incb, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&g->dead, __ATOMIC_SEQ_CST)) {
    __atomic_sub_fetch(&g->incb, 1, __ATOMIC_SEQ_CST);
    return 0;
  }
  return 1;
}

static inline void uvchan_nats__gate_leave(uvchan_nats__gate_t* g) {
  __atomic_sub_fetch(&g->incb, 1, __ATOMIC_SEQ_CST);
}

void uvchan_nats__gate_kill(uvchan_nats__gate_t* g);

/* The body of a delivery thread's message callback: hands `msg` to deliver(g, msg) inside the
 * gate, and destroys it when the gate is dead or deliver() did not take it (non-zero). Inlined
 * with the callback's constant deliver(), so the per-message path has no indirect call. */
static inline void uvchan_nats__gate_pass(uvchan_nats__gate_t* g, natsMsg* msg,
                                          int (*deliver)(uvchan_nats__gate_t* g, natsMsg* msg)) {
  int taken;
  if (uvchan_nats__gate_enter(g)) {
    taken = deliver(g, msg) == 0;
    uvchan_nats__gate_leave(g);
    if (taken)
      return;
  }
  natsMsg_Destroy(msg);
}

/* A blocking call of the client run on a thread of its own (a connect, a close, a task's call).
 * Not libuv's threadpool: a connect or a JetStream request may block for seconds, and would hold
 * one of its few threads that file operations need; and the client keeps state per thread
 * (its error stack), freed when the thread ends: a thread of ours ends with its call. */
typedef struct uvchan_nats__job_s {
  uv_thread_t tid;
  uvchan_nats_t* nc;
  void (*work)(struct uvchan_nats__job_s* job); /* on the job's thread */
  void (*done)(struct uvchan_nats__job_s* job); /* on the loop, once the thread is joined */
} uvchan_nats__job_t;

/* conn.c */
int uvchan_nats__job_start(uvchan_nats_t* nc, uvchan_nats__job_t* job);
int uvchan_nats__post(uvchan_nats_t* nc, int kind, void* a, void* b, int status);
void uvchan_nats__defer(uvchan_nats_t* nc, void* obj, void (*fn)(void*));
int uvchan_nats__usable(const uvchan_nats_t* nc); /* 0 or the code a start call returns */
void uvchan_nats__active(uvchan_nats_t* nc, int delta);
void uvchan_nats__close_step(uvchan_nats_t* nc);
void uvchan_nats__event(uvchan_nats_t* nc, uvchan_nats_event ev, uvchan_nats_sub_t* sub,
                        int status);
/* The reply subject of a token, written into buf (at least inbox_len_ + 21 bytes). */
void uvchan_nats__reply_subject(const uvchan_nats_t* nc, uint64_t token, char* buf);
uint64_t uvchan_nats__map_add(uvchan_nats_t* nc, uvchan_nats__pending_t* p);
int uvchan_nats__map_remove(uvchan_nats_t* nc, uvchan_nats__pending_t* p);
int uvchan_nats__on_thread(const uvchan_nats_t* nc);
/* Keeps a closed subscription until the connection's end (see pull.c). */
void uvchan_nats__bury(uvchan_nats_t* nc, natsSubscription* sub);
void uvchan_nats__free_msg_dtor(uvchan_t* ch, void* value);

/* sub.c */
void uvchan_nats__sub_done(uvchan_nats_sub_t* sub);
void uvchan_nats__sub_error(uvchan_nats_t* nc, natsSubscription* s, int status);
void uvchan_nats__sub_close_all(uvchan_nats_t* nc);
void uvchan_nats__sub_conn_closed(uvchan_nats_t* nc);

/* pull.c */
void uvchan_nats__pull_event(uvchan_nats__ev_t* ev);
void uvchan_nats__pull_close_all(uvchan_nats_t* nc);
void uvchan_nats__pull_conn_closed(uvchan_nats_t* nc);

/* pub.c */
void uvchan_nats__pub_close_all(uvchan_nats_t* nc);
void uvchan_nats__pub_conn_closed(uvchan_nats_t* nc);

/* Writes `v` in decimal at `out`, NUL-terminated; returns the end. snprintf() took about 800
 * instructions for this, twice per JetStream publish (its reply subject and its message id). */
static inline char* uvchan_nats__u64(char* out, uint64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0)
    *out++ = tmp[--n];
  *out = '\0';
  return out;
}

/* Milliseconds to the client's nanoseconds, saturating. */
static inline int64_t uvchan_nats__ms_to_ns(uint64_t ms) {
  return ms > (uint64_t)INT64_MAX / 1000000 ? INT64_MAX : (int64_t)ms * 1000000;
}

#endif
