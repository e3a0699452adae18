/** @file
 * uvchan_nats: NATS subjects and JetStream consumers as uvchan channels (an optional module:
 * library uvchan_nats, CMake component `nats`, pkg-config `uvchan_nats`; it depends on uvchan and
 * on the NATS C client, libnats).
 *
 * The NATS client runs its own threads: one reads the socket, and every subscription delivers
 * its messages from a thread of its own. uvchan_nats moves values between those threads and the
 * loop with uvchan's shared channels (uvchan/thread.h): a subscription's delivery thread sends
 * each message into the subscription's channel with uvchan_thread_send(), which blocks while the
 * channel is full; the NATS client then queues messages up to its pending limits, and beyond
 * them drops them and reports a slow consumer (see uvchan_nats_subscribe()). Replies, JetStream
 * acknowledgements and connection events reach the loop through one uv_async_t per connection.
 * docs/nats.md says why this and not the client's libuv adapter.
 *
 * Values are the client's own messages: channels carry `natsMsg*` (element size
 * sizeof(natsMsg*)), and a message received from a channel is the receiver's, to destroy with
 * natsMsg_Destroy(). A message sent on a publisher's channel becomes the publisher's.
 *
 * Conventions are uvchan's and libuv's: caller-owned structs, negative UV_E* codes (the NATS
 * client's statuses are mapped by uvchan_nats_err()), callbacks from the loop and never inside
 * the call that started them, close callbacks, nothing touches loop->data. A connection is a
 * resource of its context (uvchan_ctx_add_resource()): uvchan_ctx_shutdown() closes it with
 * everything opened on it. Every call here belongs to the context's thread (UV_EPERM from
 * another), and the task calls (uvchan_nats_task_*) return UV_ECANCELED when their task is
 * cancelled or the context shuts down. */
#ifndef UVCHAN_NATS_H
#define UVCHAN_NATS_H

#include <nats/nats.h>

#include "uvchan.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Default capacity of a subscription's, consumer's or publisher's channel. */
#define UVCHAN_NATS_DEFAULT_CAPACITY 256
/** Default bound on a JetStream publisher's publishes awaiting their acknowledgement. */
#define UVCHAN_NATS_DEFAULT_MAX_INFLIGHT 256
/** Default time (ms) a JetStream publish waits for its acknowledgement before it is sent again. */
#define UVCHAN_NATS_DEFAULT_ACK_TIMEOUT 2000
/** Default time (ms) a JetStream publish keeps being retried before it fails. */
#define UVCHAN_NATS_DEFAULT_RETRY_FOR 10000
/** Default time (ms) one fetch of a pull consumer waits on the server when no message is there. */
#define UVCHAN_NATS_DEFAULT_EXPIRES 1000

typedef struct uvchan_nats_s uvchan_nats_t;
typedef struct uvchan_nats_sub_s uvchan_nats_sub_t;
typedef struct uvchan_nats_pull_s uvchan_nats_pull_t;
typedef struct uvchan_nats_pub_s uvchan_nats_pub_t;

/* ------------------------------------------------------------------------------------------ */
/* Errors and subjects                                                                         */

/** Maps a NATS client status to a uvchan (libuv) code: NATS_OK 0; NATS_TIMEOUT UV_ETIMEDOUT;
 * NATS_NO_SERVER UV_ECONNREFUSED; NATS_CONNECTION_CLOSED UV_ENOTCONN;
 * NATS_CONNECTION_DISCONNECTED and NATS_STALE_CONNECTION UV_ECONNRESET; NATS_INVALID_SUBJECT,
 * NATS_INVALID_ARG, NATS_INVALID_TIMEOUT, NATS_ADDRESS_MISSING, NATS_INVALID_QUEUE_NAME
 * UV_EINVAL; NATS_INVALID_SUBSCRIPTION and NATS_ILLEGAL_STATE UV_EBADF; NATS_NO_RESPONDERS and
 * NATS_NOT_FOUND UV_ENOENT; NATS_SLOW_CONSUMER and NATS_INSUFFICIENT_BUFFER UV_ENOBUFS;
 * NATS_MAX_PAYLOAD UV_E2BIG; NATS_NO_MEMORY UV_ENOMEM; NATS_NOT_PERMITTED and
 * NATS_CONNECTION_AUTH_FAILED UV_EACCES; NATS_PROTOCOL_ERROR, NATS_SSL_ERROR and the TLS
 * statuses UV_EPROTO; NATS_NO_SERVER_SUPPORT UV_ENOTSUP; NATS_MISSED_HEARTBEAT UV_ETIMEDOUT;
 * NATS_DRAINING UV_ECANCELED; anything else UV_EIO. */
UVCHAN_EXTERN int uvchan_nats_err(natsStatus s);

/** As uvchan_nats_err(), refined by a JetStream API error code: stream or consumer not found
 * UV_ENOENT; a stream or consumer name in use UV_EEXIST; a stream's limits reached (maximum
 * messages, bytes, resources) UV_ENOSPC; a message larger than the stream allows UV_E2BIG. */
UVCHAN_EXTERN int uvchan_nats_js_err(natsStatus s, jsErrCode code);

/** Checks a subject: 0 if valid, UV_EINVAL if NULL, empty, longer than 1024 bytes, with white
 * space or control characters, or with an empty token ("a..b", a leading or trailing dot). With
 * `wildcards` 0 (a subject to publish to) the tokens `*` and `>` are refused too; with 1 (a
 * subscription) they are allowed as whole tokens, `>` only as the last. */
UVCHAN_EXTERN int uvchan_nats_subject_check(const char* subject, int wildcards);

/* ------------------------------------------------------------------------------------------ */
/* Connection                                                                                  */

/** What a connection's event callback reports (uvchan_nats_set_event_cb()). */
typedef enum {
  UVCHAN_NATS_EV_DISCONNECTED = 1, /**< the connection to the server was lost; the client
                                        reconnects as its options say */
  UVCHAN_NATS_EV_RECONNECTED,      /**< connected again; subscriptions were restored */
  UVCHAN_NATS_EV_CLOSED,           /**< the client gave up (or uvchan_nats_close() ran): every
                                        channel of the connection is closed */
  UVCHAN_NATS_EV_SLOW_CONSUMER,    /**< a subscription went over its pending limits: the client
                                        drops its messages (see uvchan_nats_sub_stats()) */
  UVCHAN_NATS_EV_ERROR             /**< an asynchronous error of the client (a permission
                                        violation, a pull consumer's failing fetch...) */
} uvchan_nats_event;

/** Runs once uvchan_nats_connect() is done: status 0 (connected), or a code. */
typedef void (*uvchan_nats_connect_cb)(uvchan_nats_t* nc, int status);
/** Runs from the loop once uvchan_nats_close() is done: the struct may then be freed. */
typedef void (*uvchan_nats_close_cb)(uvchan_nats_t* nc);
/** A connection event, from the loop. `sub` is the subscription concerned (a slow consumer), or
 * NULL; `status` the client's error mapped by uvchan_nats_err(), or 0. */
typedef void (*uvchan_nats_event_cb)(uvchan_nats_t* nc, uvchan_nats_event event,
                                     uvchan_nats_sub_t* sub, int status);

/** A connection to a NATS server (or cluster), bound to a context. */
struct uvchan_nats_s {
  void* data;            /**< user data, untouched */
  uvchan_ctx_t* ctx;     /**< read-only: the context */
  natsConnection* conn;  /**< read-only: the client's connection once connected, for the calls
                              uvchan_nats does not wrap (only non-blocking ones on the loop's
                              thread; blocking ones through uvchan_nats_task_call()) */
  jsCtx* js;             /**< read-only: its JetStream context, likewise */
  /* private */
  uvchan_resource_t res_;
  uv_async_t async_;
  uv_mutex_t lock_;
  void* job_;
  void* evq_;
  size_t evlen_;
  size_t evcap_;
  void* evspare_;
  size_t evsparecap_;
  struct uvchan__link_s subs_;
  struct uvchan__link_s pulls_;
  struct uvchan__link_s pubs_;
  struct uvchan_nats__pending_s** map_;
  size_t nmap_;
  size_t nbuckets_;
  char* inbox_;
  size_t inbox_len_;
  natsSubscription* inbox_sub_;
  void* inbox_gate_;
  natsSubscription** graves_;
  size_t ngraves_;
  natsOptions* opts_;
  natsOptions* own_opts_;
  uvchan_nats_connect_cb connect_cb_;
  uvchan_nats_close_cb close_cb_;
  uvchan_nats_event_cb event_cb_;
  uint64_t next_token_;
  uint64_t disconnects_;
  uint64_t reconnects_;
  void* waiter_;
  size_t nactive_;
  size_t ncalls_;
  int evclosed_;
  int connect_status_;
  unsigned state_;
  unsigned flags_;
  uint32_t magic_;
};

/** Connects `nc` on `ctx`'s loop to `url` (e.g. "nats://127.0.0.1:4222"; may be NULL when `opts`
 * names the servers). `opts` may be NULL (the client's defaults), or options of yours: uvchan
 * sets their closed, disconnected, reconnected and error handlers (those set before are
 * replaced: the events come through uvchan_nats_set_event_cb()), and `url` if given; they must
 * stay valid until `cb`, and must not set an event loop (natsOptions_SetEventLoop). The client's
 * connect blocks, so it runs on a thread of its own; `cb` runs from the loop with 0 or the
 * client's error (UV_ECONNREFUSED: no server; UV_ETIMEDOUT; UV_EACCES...), and also a connection
 * that failed must be closed with uvchan_nats_close(). `nc` must stay valid until its close
 * callback. Returns 0; UV_EINVAL (bad context, NULL `nc` or `cb`, or no server given); UV_EBUSY
 * (`nc` is live); UV_ECANCELED (shutdown); UV_EPERM (wrong thread); UV_ENOMEM; UV_EAGAIN (no
 * thread to be had). */
UVCHAN_EXTERN int uvchan_nats_connect(uvchan_ctx_t* ctx, uvchan_nats_t* nc, const char* url,
                                      natsOptions* opts, uvchan_nats_connect_cb cb);

/** uvchan_nats_connect() from a task: returns the status `cb` would get, or UV_ECANCELED at once
 * when the task is cancelled or its context shuts down meanwhile (the connect goes on behind,
 * and fails; `opts` must then stay valid until `nc`'s close callback). Either way, close `nc`
 * with uvchan_nats_close() afterwards (unless the start failed with UV_EINVAL, UV_EBUSY,
 * UV_EPERM): so `nc` must not live on a task's stack. */
UVCHAN_EXTERN int uvchan_nats_task_connect(uvchan_ctx_t* ctx, uvchan_nats_t* nc, const char* url,
                                           natsOptions* opts);

/** Sets the callback that reports connection events (NULL: none). Returns 0, UV_EINVAL for a bad
 * connection, UV_EPERM. */
UVCHAN_EXTERN int uvchan_nats_set_event_cb(uvchan_nats_t* nc, uvchan_nats_event_cb cb);

/** Closes `nc` and everything opened on it: waiting requests end with UV_ECANCELED; subscriptions
 * and consumers close as their own close would (their channels close: receivers drain them,
 * then get UV_EOF); publishers are aborted (nothing more is published, publishes awaiting their
 * acknowledgement settle with UV_ECANCELED); a uvchan_nats_task_call() still running ends first;
 * the client's connection is closed (on a thread of its own: closing joins the client's
 * threads) and destroyed; and `cb` (may be NULL) runs from the loop once the struct may be freed.
 * Returns 0; UV_EINVAL for a connection not initialised or closing already; UV_EPERM. */
UVCHAN_EXTERN int uvchan_nats_close(uvchan_nats_t* nc, uvchan_nats_close_cb cb);

/** Counters of a connection. */
typedef struct {
  uint64_t disconnects; /**< times the connection was lost */
  uint64_t reconnects;  /**< times it came back */
  size_t pending;       /**< requests and JetStream publishes waiting for their reply */
} uvchan_nats_stats_t;

/** Fills `*stats`. Returns 0, UV_EINVAL for a bad connection or NULL `stats`. */
UVCHAN_EXTERN int uvchan_nats_stats(const uvchan_nats_t* nc, uvchan_nats_stats_t* stats);

/** A blocking call of the NATS client, for uvchan_nats_task_call(). */
typedef natsStatus (*uvchan_nats_call_fn)(uvchan_nats_t* nc, void* arg);

/** Runs `fn(nc, arg)` on a thread of its own and blocks the calling task until it returns: for
 * the client's blocking calls (JetStream management such as js_AddStream(), a flush, a
 * synchronous request) without blocking the loop, nor holding one of libuv's threadpool threads
 * for seconds. Returns uvchan_nats_err() of what `fn` returned (refine JetStream errors with
 * uvchan_nats_js_err() inside `fn`). `fn` cannot be interrupted: a task cancelled meanwhile (or
 * whose context shuts down) still waits for it to end, at most the client's own timeout, and
 * then gets UV_ECANCELED (what `fn` did stays done); the connection's close waits for it too.
 * Returns UV_EINVAL (outside a task, bad connection, NULL `fn`), UV_ENOTCONN (not connected, or
 * closing), UV_EPERM, UV_EAGAIN (no thread to be had), or UV_ECANCELED at once in a cancelled
 * task. */
UVCHAN_EXTERN int uvchan_nats_task_call(uvchan_nats_t* nc, uvchan_nats_call_fn fn, void* arg);

/** Request/reply from a task: publishes `len` bytes of `data` on `subject` with a reply subject
 * of the connection's own inbox, and blocks the task until the first reply, stored in `*reply`
 * (the task's, to natsMsg_Destroy()). `timeout` in ms, 0 for none. Returns 0; UV_ETIMEDOUT;
 * UV_ENOENT when no one listens on `subject` (the server's no-responders answer);
 * UV_ECANCELED (task cancelled, context shutting down, connection closed meanwhile);
 * UV_EINVAL (outside a task, bad connection, a subject uvchan_nats_subject_check() refuses,
 * NULL `reply`, NULL `data` with `len` > 0); UV_ENOTCONN (not connected, or closing); UV_E2BIG
 * (over the server's maximum payload); UV_EPERM. */
UVCHAN_EXTERN int uvchan_nats_task_request(uvchan_nats_t* nc, const char* subject,
                                           const void* data, size_t len, uint64_t timeout,
                                           natsMsg** reply);

/* ------------------------------------------------------------------------------------------ */
/* Core NATS subscription: subject -> channel                                                  */

/** Options of uvchan_nats_subscribe(); zero-initialise, set what you need. */
typedef struct {
  const char* queue;  /**< a queue group: each message goes to one member of the group */
  size_t capacity;    /**< the channel's capacity; 0: UVCHAN_NATS_DEFAULT_CAPACITY */
  int pending_msgs;   /**< the client's pending limit in messages; 0: the client's (65536);
                           -1: none */
  int pending_bytes;  /**< the client's pending limit in bytes; 0: the client's (64 MiB); -1:
                           none */
} uvchan_nats_sub_opts_t;

/** Runs from the loop once uvchan_nats_sub_close() is done: the struct may then be freed. */
typedef void (*uvchan_nats_sub_close_cb)(uvchan_nats_sub_t* sub);

/** A core NATS subscription feeding a channel. Receive `natsMsg*` from `chan` (the receiver owns
 * each). Core NATS delivers at most once: what a full channel and the client's pending limits
 * cannot hold is dropped and counted (uvchan_nats_sub_stats()). */
struct uvchan_nats_sub_s {
  void* data;             /**< user data, untouched */
  uvchan_t chan;          /**< read-only: receive natsMsg* from it (a shared channel: any thread
                               may receive with uvchan_thread_recv()) */
  natsSubscription* sub;  /**< read-only: the client's subscription */
  /* private */
  uvchan_nats_t* nc_;
  struct uvchan__link_s link_;
  uvchan_nats_sub_close_cb close_cb_;
  void* gate_;
  uint64_t slow_events_;
  unsigned flags_;
  uint32_t magic_;
};

/** Subscribes to `subject` (wildcards allowed) and delivers its messages into `sub->chan`.
 * Full-channel policy: the client's delivery thread waits in uvchan_thread_send() while the
 * channel is full (backpressure into the client), the client queues what keeps arriving up to
 * its pending limits (opts), and beyond them drops messages, counts them and reports a slow
 * consumer (UVCHAN_NATS_EV_SLOW_CONSUMER, uvchan_nats_sub_stats()). Core NATS has no flow control
 * back to the publisher: use JetStream (uvchan_nats_pull_start()) when nothing may be lost.
 * When the subscription or its connection closes, `sub->chan` is closed: receivers drain it,
 * then get UV_EOF. Returns 0; UV_EINVAL (bad connection, NULL `sub`, a subject
 * uvchan_nats_subject_check() refuses, an empty queue name); UV_ENOTCONN (not connected or
 * closing); UV_ECANCELED (shutdown); UV_EPERM; UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_nats_subscribe(uvchan_nats_t* nc, uvchan_nats_sub_t* sub,
                                        const char* subject, const uvchan_nats_sub_opts_t* opts);

/** Counters of a subscription. */
typedef struct {
  uint64_t delivered;            /**< messages put into the channel */
  uint64_t dropped;              /**< messages the client dropped (over its pending limits) */
  uint64_t slow_consumer_events; /**< times the subscription went over its pending limits */
  int pending_msgs;              /**< messages the client holds for it now */
} uvchan_nats_sub_stats_t;

/** Fills `*stats`. Returns 0, UV_EINVAL for a bad subscription or NULL `stats`. */
UVCHAN_EXTERN int uvchan_nats_sub_stats(const uvchan_nats_sub_t* sub,
                                        uvchan_nats_sub_stats_t* stats);

/** Unsubscribes and closes `sub->chan` at once (receivers drain it, then get UV_EOF); once the
 * client's delivery thread has let go, the channel is destroyed (messages still in it are
 * destroyed, waiting receivers get UV_ECANCELED) and `cb` (may be NULL) runs from the loop.
 * Returns 0; UV_EINVAL (bad subscription, or closing already); UV_EPERM. */
UVCHAN_EXTERN int uvchan_nats_sub_close(uvchan_nats_sub_t* sub, uvchan_nats_sub_close_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* JetStream pull consumer: stream -> channel, with backpressure                               */

/** Options of uvchan_nats_pull_start(); zero-initialise, set what you need. */
typedef struct {
  const char* stream;      /**< the stream (required) */
  const char* consumer;    /**< the durable consumer's name (required); created when missing
                                (explicit acks, deliver all, the options below), used as it is
                                when it exists */
  const char* filter;      /**< when creating it: a filter subject, or NULL */
  size_t capacity;         /**< the channel's capacity; 0: UVCHAN_NATS_DEFAULT_CAPACITY */
  int max_batch;           /**< most messages one fetch asks for; 0: the capacity */
  uint64_t expires;        /**< ms a fetch waits on the server when nothing is there; 0:
                                UVCHAN_NATS_DEFAULT_EXPIRES */
  uint64_t ack_wait;       /**< when creating it: ms before an unacknowledged message is
                                delivered again; 0: the server's (30 s) */
  int64_t max_deliver;     /**< when creating it: deliveries of one message at most; 0: no limit */
  int64_t max_ack_pending; /**< when creating it: unacknowledged messages at most; 0: the
                                server's (1000) */
} uvchan_nats_pull_opts_t;

/** Runs from the loop once uvchan_nats_pull_close() is done: the struct may then be freed. */
typedef void (*uvchan_nats_pull_close_cb)(uvchan_nats_pull_t* pull);

/** A JetStream pull consumer feeding a channel. Receive `natsMsg*` from `chan`, process each,
 * then acknowledge it with natsMsg_Ack() (or natsMsg_Nak(), natsMsg_Term(),
 * natsMsg_InProgress()) and destroy it: the handler says when a message is done, so a process
 * that dies with messages received but not acknowledged loses none of them, JetStream delivers
 * them again after the consumer's ack wait (at least once). Never more messages are fetched than
 * the channel has free slots for: a slow receiver slows the fetches, nothing piles up in the
 * process. */
struct uvchan_nats_pull_s {
  void* data;             /**< user data, untouched */
  uvchan_t chan;          /**< read-only: receive natsMsg* from it */
  natsSubscription* sub;  /**< read-only: the client's pull subscription, once set up */
  /* private */
  uvchan_nats_t* nc_;
  struct uvchan__link_s link_;
  uvchan_nats_pull_close_cb close_cb_;
  uv_thread_t thread_;
  uv_mutex_t lock_;
  uv_cond_t cond_;
  uvchan_reserve_t rq_;
  uvchan_permit_t* permits_;
  size_t held_;
  size_t outstanding_;
  size_t want_;
  size_t lowat_;
  char* stream_;
  char* consumer_;
  char* filter_;
  char* ackpfx_;
  size_t ackpfx_len_;
  uvchan_nats_pull_opts_t opts_;
  uint64_t fetched_;
  uint64_t redelivered_;
  uint64_t fetches_;
  int status_;
  int stop_;
  unsigned flags_;
  uint32_t magic_;
};

/** Binds to (or creates) the durable consumer `opts->consumer` of `opts->stream` and starts
 * fetching into `pull->chan`. The consumer's setup talks to the server, so it is done by the
 * consumer's own thread (which then runs the client's blocking fetches); when it or a later
 * fetch fails for good, `pull->chan` is closed and uvchan_nats_pull_status() tells why
 * (UV_ENOENT: no such stream...). A fetch asks for as many messages as the loop holds
 * reserved slots of the channel for (uvchan_reserve()), at most `max_batch`. While open, the
 * consumer keeps the loop alive. Returns 0; UV_EINVAL (bad connection, NULL `pull` or `opts`, no
 * stream or consumer name, a name with '.', '*', '>' or white space); UV_ENOTCONN;
 * UV_ECANCELED (shutdown); UV_EPERM; UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_nats_pull_start(uvchan_nats_t* nc, uvchan_nats_pull_t* pull,
                                         const uvchan_nats_pull_opts_t* opts);

/** 0 while the consumer works (or closed without error), else the code that made it close its
 * channel. UV_EINVAL for a bad consumer. */
UVCHAN_EXTERN int uvchan_nats_pull_status(const uvchan_nats_pull_t* pull);

/** Counters of a pull consumer. */
typedef struct {
  uint64_t fetched;     /**< messages put into the channel */
  uint64_t redelivered; /**< of which delivered before (their delivery count above 1) */
  uint64_t fetches;     /**< fetch requests made */
  size_t reserved;      /**< channel slots the consumer holds for messages on their way */
} uvchan_nats_pull_stats_t;

/** Fills `*stats`. Returns 0, UV_EINVAL for a bad consumer or NULL `stats`. */
UVCHAN_EXTERN int uvchan_nats_pull_stats(const uvchan_nats_pull_t* pull,
                                         uvchan_nats_pull_stats_t* stats);

/** Stops fetching and closes `pull->chan` at once (receivers drain it, then get UV_EOF); when the
 * consumer's thread has ended, the channel is destroyed (messages still in it are handed back
 * to JetStream with natsMsg_Nak() and destroyed) and `cb` (may be NULL) runs from the loop. The
 * durable consumer stays on the server. Messages received before may still be acknowledged
 * until the connection's close callback (the client's subscription, which they point to, lives
 * until then). Returns 0; UV_EINVAL (bad consumer or closing);
 * UV_EPERM. */
UVCHAN_EXTERN int uvchan_nats_pull_close(uvchan_nats_pull_t* pull, uvchan_nats_pull_close_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* Publisher: channel -> subject                                                               */

/** The outcome of one publish, sent on a publisher's `acks` channel. */
typedef struct {
  natsMsg* msg;      /**< the message published: the receiver's, to destroy */
  int status;        /**< 0 when published (JetStream: stored), else a code: UV_ETIMEDOUT (no
                          acknowledgement within retry_for), UV_ENOENT (no stream for the
                          subject), UV_ENOSPC (the stream is full), UV_EINVAL (a bad subject),
                          UV_ENOTCONN, UV_ECANCELED (the publisher closed first)... */
  uint64_t seq;      /**< JetStream: the stream sequence the message got; else 0 */
  int duplicate;     /**< JetStream: 1 when the stream had its message id already (a retry of a
                          message stored before: not stored twice) */
  unsigned attempts; /**< times it was sent */
} uvchan_nats_puback_t;

/** Options of uvchan_nats_pub_init(); zero-initialise, set what you need. */
typedef struct {
  size_t capacity;       /**< the channel's capacity; 0: UVCHAN_NATS_DEFAULT_CAPACITY */
  int jetstream;         /**< 1: JetStream publishes, acknowledged by the stream */
  unsigned max_inflight; /**< JetStream: publishes awaiting their acknowledgement at most; 0:
                              UVCHAN_NATS_DEFAULT_MAX_INFLIGHT */
  uint64_t ack_timeout;  /**< JetStream: ms to wait for an acknowledgement before sending again;
                              0: UVCHAN_NATS_DEFAULT_ACK_TIMEOUT */
  uint64_t retry_for;    /**< JetStream: ms a publish keeps being retried (no acknowledgement, no
                              stream answering, a full stream) before it fails; 0:
                              UVCHAN_NATS_DEFAULT_RETRY_FOR */
  uvchan_t* acks;        /**< optional: a channel of uvchan_nats_puback_t of the same context,
                              where every publish's outcome goes (the publisher waits while it
                              is full); closed by the publisher once `chan` is closed and every
                              publish settled. NULL: messages are destroyed once settled, and
                              failures only counted */
} uvchan_nats_pub_opts_t;

/** Runs from the loop once uvchan_nats_pub_close() is done: the struct may then be freed. */
typedef void (*uvchan_nats_pub_close_cb)(uvchan_nats_pub_t* pub);

/** A publisher: every `natsMsg*` sent on `chan` is published on its subject (natsMsg_Create()),
 * in order. Core NATS: sent to the server as fast as the client takes them (at most once). With
 * JetStream: each message carries a message id (its Nats-Msg-Id header, or one the publisher
 * makes), is retried until the stream acknowledges it or retry_for runs out, and the stream
 * stores it once (within its duplicate window); at most max_inflight publishes await their
 * acknowledgement, and meanwhile the publisher takes nothing more from `chan`, so the senders on
 * `chan` wait: a slow broker slows them. */
struct uvchan_nats_pub_s {
  void* data;    /**< user data, untouched */
  uvchan_t chan; /**< read-only: send natsMsg* on it (the message becomes the publisher's); close
                      it when done */
  /* private */
  uvchan_nats_t* nc_;
  struct uvchan__link_s link_;
  uvchan_nats_pub_close_cb close_cb_;
  uvchan_recv_t rreq_;
  natsMsg* rmsg_;
  uv_timer_t timer_;
  uvchan_send_t ack_send_;
  uvchan_nats_puback_t ack_val_;
  void* recs_;
  void* free_;
  void* ackq_;
  void* ackq_tail_;
  uvchan_nats_pub_opts_t opts_;
  unsigned inflight_;
  unsigned max_seen_;
  uint64_t published_;
  uint64_t acked_;
  uint64_t failed_;
  uint64_t retries_;
  uint64_t next_id_;
  char id_prefix_[32];
  size_t id_prefix_len_;
  unsigned flags_;
  uint32_t magic_;
};

/** Starts a publisher on `nc`. Returns 0; UV_EINVAL (bad connection, NULL `pub`, `acks` not a
 * live channel of the connection's context with element size sizeof(uvchan_nats_puback_t));
 * UV_ENOTCONN; UV_ECANCELED (shutdown); UV_EPERM; UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_nats_pub_init(uvchan_nats_t* nc, uvchan_nats_pub_t* pub,
                                       const uvchan_nats_pub_opts_t* opts);

/** Counters of a publisher. */
typedef struct {
  uint64_t published;    /**< messages sent (JetStream: first sends) */
  uint64_t acked;        /**< JetStream: acknowledged by the stream */
  uint64_t failed;       /**< settled with an error */
  uint64_t retries;      /**< JetStream: sends again */
  unsigned inflight;     /**< JetStream: awaiting their acknowledgement now */
  unsigned max_inflight; /**< JetStream: the most that ever awaited at once */
} uvchan_nats_pub_stats_t;

/** Fills `*stats`. Returns 0, UV_EINVAL for a bad publisher or NULL `stats`. */
UVCHAN_EXTERN int uvchan_nats_pub_stats(const uvchan_nats_pub_t* pub,
                                        uvchan_nats_pub_stats_t* stats);

/** Closes the publisher gracefully: `chan` is closed (senders waiting on it get UV_EPIPE), what it
 * holds is still published, JetStream publishes still await their acknowledgement (at most
 * retry_for), `acks` is closed when every outcome is in it, and then `cb` (may be NULL) runs from
 * the loop once the struct may be freed. Closing the connection (or a shutdown of its context)
 * aborts instead: nothing more is published, and publishes awaiting their acknowledgement settle
 * with UV_ECANCELED. Returns 0; UV_EINVAL (bad publisher, or closing); UV_EPERM. */
UVCHAN_EXTERN int uvchan_nats_pub_close(uvchan_nats_pub_t* pub, uvchan_nats_pub_close_cb cb);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_NATS_H */
