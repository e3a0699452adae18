/** @file
 * uvchan/chan.h: contexts, channels, requests, select, wait groups, timer channels, tracing and
 * the deadlock report. Include <uvchan.h>, which includes this. */
#ifndef UVCHAN_CHAN_H
#define UVCHAN_CHAN_H

#include "uvchan/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Context: uvchan's state for one loop                                                        */

/** One per loop (more are allowed). It owns the libuv handles uvchan needs: a check handle that
 * delivers completions after each poll, an idle handle that keeps the poll from blocking while
 * completions are queued, and a timer for deadlines. It keeps the lists of channels, tasks and
 * wait groups, the random source of select, and the trace hook. It never touches loop->data.
 *
 * A context belongs to one thread: the one that runs its loop (before the loop first runs, the one
 * that called uvchan_ctx_init(); see uvchan_ctx_bind_thread() to hand a loop over). Its
 * functions, and those of everything attached to it, return UV_EPERM when called from another
 * thread, without touching anything; the queries (uvchan_len() and the like) read without the
 * check. uvchan/thread.h has the calls that other threads may make. */
struct uvchan_ctx_s {
  void* data;       /**< user data, untouched */
  uv_loop_t* loop;  /**< read-only */
  /* private */
  uv_check_t check_;
  uv_idle_t idle_;
  uv_timer_t timer_;
  uv_async_t async_; /* wakes the loop when another thread completed a request (thread.c) */
  uv_prepare_t prepare_; /* spins before the poll while a request waits on a shared channel */
  uvchan_req_t* inbox_; /* atomic: requests other threads completed, newest first (thread.c) */
  int spinning_;        /* atomic: the loop polls the inbox without sleeping: no uv_async_send */
  int xactive_;         /* cross-thread traffic since the loop last slept: worth spinning */
  unsigned spin_us_;    /* how long the loop spins after cross-thread traffic (0: never) */
  uvchan_req_t* qhead_;
  uvchan_req_t* qtail_;
  const void* gate_;   /* thread_, unless start calls must take the slow path (UVCHAN__GATE) */
  const void* thread_; /* the owning thread's marker (see uvchan__thread_mark) */
  unsigned batch_;
  unsigned budget_; /* completions the running delivery may still make */
  unsigned flags_;
  uint32_t magic_;
  unsigned nhandles_;
  uvchan_ctx_close_cb close_cb_;
  struct uvchan__tmnode_s* heap_;
  uint64_t timer_due_;
  uint64_t rng_[2];
  struct uvchan__link_s chans_;
  struct uvchan__link_s tasks_;
  struct uvchan__link_s wgs_; /* wait groups that have waiters */
  struct uvchan__link_s res_;
  size_t nchans_;
  size_t ntasks_;
  size_t nres_;
  size_t nxwait_;   /* requests waiting on shared channels: they keep the loop alive */
  size_t nclosing_; /* closes of uvchan objects under way (their libuv handles close) */
  size_t nwaiting_; /* requests parked outside channels: wait groups, sleeps */
  uvchan_trace_cb trace_cb_;
  void* trace_arg_;
  void* pools_;     /* task runtime: the loop side's saved context, stack pools */
  uv_idle_t probe_; /* close: waits out handles the application closed itself */
  uint64_t next_task_id_;
  uint64_t gen_;   /* this context's generation in the registry of live contexts */
  uint32_t slot_;  /* its slot there */
  uv_timer_t stack_timer_; /* gives idle task stacks back; initialised with the first task */
};

/** Initialises `ctx` on `loop`. Reads UVCHAN_TRACE from the environment: "1" prints every channel
 * event to stderr (see uvchan_ctx_set_trace()). Returns 0, UV_EINVAL for NULL arguments, or
 * UV_EBUSY when `ctx` is a live context (initialised and not closed). */
UVCHAN_EXTERN int uvchan_ctx_init(uv_loop_t* loop, uvchan_ctx_t* ctx);

/** Starts closing `ctx`: pending completions are still delivered and closes already started (a
 * timer channel's) finish, then its libuv handles close and
 * `cb` (may be NULL) runs from the loop. Returns UV_EBUSY, and closes nothing, while channels are
 * not destroyed, tasks still live, timer channels or other uvchan objects are open, or
 * wait-group/sleep requests still wait; UV_EINVAL for a NULL or uninitialised context or one
 * already closing. Its wait groups need no destroy: later calls on them return UV_EINVAL. After
 * `cb`, uv_loop_close() can return 0.
 *
 * Closing every handle of the loop with uv_walk() first is safe: uvchan waits until libuv is done
 * with the handles it owns before calling `cb`. Skip them in the walk (uvchan_handle_owned()) to
 * let uvchan close them itself. */
UVCHAN_EXTERN int uvchan_ctx_close(uvchan_ctx_t* ctx, uvchan_ctx_close_cb cb);

/** Shuts `ctx` down gracefully, in one call (a server's SIGINT handler, say):
 *   - every task is cancelled: its blocking call in progress, channel or I/O, returns
 *     UV_ECANCELED, and so does every later one (see uvchan_task_cancel());
 *   - every waiting callback request completes with UV_ECANCELED, and later start calls
 *     (uvchan_send(), uvchan_select(), uvchan_task_spawn()...) return UV_ECANCELED;
 *   - once the last task has ended: channels still initialised are destroyed (buffered values go
 *     to their element destructors), wait groups are retired, timer channels and other uvchan
 *     objects are closed, and the context closes as uvchan_ctx_close() would; `cb` (may be NULL)
 *     runs from the loop after that.
 * Handles of your own (a uv_signal_t, a listening socket no task closes...) are yours to close.
 * Returns 0, UV_EINVAL for a bad context or one already closing or shutting down, UV_EPERM from
 * another thread. */
UVCHAN_EXTERN int uvchan_ctx_shutdown(uvchan_ctx_t* ctx, uvchan_ctx_close_cb cb);

/** Something a context owns besides its channels and tasks, added by an optional module (a NATS
 * connection of uvchan_nats) or by the application: a graceful shutdown asks it to close, and
 * the context does not close while it is registered (uvchan_ctx_add_resource()). */
typedef struct uvchan_resource_s uvchan_resource_t;

/** A resource's shutdown hook (uvchan_ctx_add_resource()). */
typedef void (*uvchan_resource_cb)(uvchan_resource_t* res);

/** A registration of a resource with a context; the caller owns it, embedded in its own struct. */
struct uvchan_resource_s {
  void* data; /**< user data, untouched */
  /* private */
  struct uvchan__res_s res_;
  uvchan_ctx_t* ctx_;
  uvchan_resource_cb shutdown_;
  uint32_t magic_;
};

/** Registers `res` with `ctx`. uvchan_ctx_shutdown() calls `shutdown(res)` once, from the loop,
 * after every task has ended and before it destroys the channels still alive: the hook starts
 * closing what `res` stands for (its channels may still be used meanwhile, threads it runs
 * stopped) and unregisters it with uvchan_ctx_remove_resource(), at once or later (from a close
 * callback, say). The shutdown goes on when the last resource has left. While `res` is
 * registered, uvchan_ctx_close() returns UV_EBUSY. Returns 0; UV_EINVAL for a bad context or one
 * closing, a NULL `res` or `shutdown`; UV_EBUSY when `res` is registered already; UV_ECANCELED
 * during a shutdown; UV_EPERM from another thread. */
UVCHAN_EXTERN int uvchan_ctx_add_resource(uvchan_ctx_t* ctx, uvchan_resource_t* res,
                                          uvchan_resource_cb shutdown);

/** The code a call on `ctx` would return now, for modules that build their own objects on a
 * context: with `starting` 1 (a call that starts something), 0 when it may go on, UV_EINVAL for a
 * bad context or one closing, UV_EPERM from another thread than the context's, UV_ECANCELED once
 * a shutdown began; with `starting` 0 (a close, a query that must run on the context's thread),
 * only UV_EINVAL for a bad context and UV_EPERM. */
UVCHAN_EXTERN int uvchan_ctx_check(const uvchan_ctx_t* ctx, int starting);

/** Unregisters `res`, from its shutdown hook or at any other time. Returns 0; UV_EINVAL when `res`
 * is not registered; UV_EPERM from another thread than its context's. */
UVCHAN_EXTERN int uvchan_ctx_remove_resource(uvchan_resource_t* res);

/** Makes the calling thread the owner of `ctx`: for a loop that moves between threads (run on a
 * worker, then torn down by the thread that joined it). uvchan hands a context over by itself
 * when another thread runs its deliveries; this is for the thread that takes the loop back, or
 * takes it before running it. Call it only once the previous thread has stopped using the loop.
 * Returns 0, or UV_EINVAL for a bad context. */
UVCHAN_EXTERN int uvchan_ctx_bind_thread(uvchan_ctx_t* ctx);

/** Sets how many completions (callbacks and task resumptions) one loop iteration delivers at most,
 * so that a busy ping-pong never starves timers or I/O. Default UVCHAN_DEFAULT_BATCH. 0 is
 * UV_EINVAL. */
UVCHAN_EXTERN int uvchan_ctx_set_batch(uvchan_ctx_t* ctx, unsigned batch);

/** 1 if `handle` is one of the libuv handles uvchan owns (a context's, a timer channel's, an I/O
 * adapter's...), 0 otherwise. A uv_walk() that closes every handle of a loop should skip these
 * and let uvchan close them. uvchan marks its handles by pointing their `data` at a private tag. */
UVCHAN_EXTERN int uvchan_handle_owned(const uv_handle_t* handle);

/** Seeds the random source select uses to choose among ready cases, so tests can repeat a run. */
UVCHAN_EXTERN int uvchan_ctx_seed(uvchan_ctx_t* ctx, uint64_t seed);

/* ------------------------------------------------------------------------------------------ */
/* Tracing                                                                                     */

/** What a trace event reports. */
typedef enum {
  UVCHAN_TRACE_WAIT = 1,  /**< `req` now waits on `chan` */
  UVCHAN_TRACE_HANDSHAKE, /**< `req` met the waiting `peer`: the value went straight across */
  UVCHAN_TRACE_PUT,       /**< a value went into the buffer (from `req`, or from waiting `peer`) */
  UVCHAN_TRACE_TAKE,      /**< a value came out of the buffer to `req` */
  UVCHAN_TRACE_CLOSE,     /**< `chan` was closed */
  UVCHAN_TRACE_CANCEL,    /**< `req` was cancelled, or its channel destroyed under it */
  UVCHAN_TRACE_TIMEOUT    /**< `req` reached its deadline */
} uvchan_trace_kind;

/** One channel event. `req` is the request that acted (NULL for try-operations); `peer` is the
 * waiting request it completed (NULL if none). For requests made by tasks, uvchan_req_task()
 * names the task. `value` points at the element that moved (NULL if none). */
struct uvchan_trace_s {
  uvchan_trace_kind kind; /**< what happened */
  uvchan_op op;           /**< the direction of `req` (0 for a close) */
  uvchan_t* chan;         /**< the channel */
  uvchan_req_t* req;      /**< the request that acted, or NULL */
  uvchan_req_t* peer;     /**< the waiting request it completed, or NULL */
  const void* value;      /**< the element that moved, or NULL */
  size_t len; /**< the channel's buffered count after the event */
};

/** Installs `cb` to be called synchronously, from inside channel operations, on every event of
 * every channel of `ctx`. NULL removes it. The hook must not call back into uvchan. */
UVCHAN_EXTERN int uvchan_ctx_set_trace(uvchan_ctx_t* ctx, uvchan_trace_cb cb, void* arg);

/** A ready-made trace hook printing one line per event to the FILE* given as `arg` (stderr when
 * NULL). UVCHAN_TRACE=1 installs it. A NULL event, or one without a channel, prints nothing. */
UVCHAN_EXTERN void uvchan_trace_print(const uvchan_trace_t* event, void* arg);

/** The name of a trace kind ("wait", "handshake", ...); "unknown" for any other value. */
UVCHAN_EXTERN const char* uvchan_trace_kind_name(uvchan_trace_kind kind);

/* ------------------------------------------------------------------------------------------ */
/* Deadlock report                                                                             */

/** One party that is waiting. */
struct uvchan_waiting_s {
  uvchan_req_t* req;   /**< the waiting request (a task's own request for a task) */
  uvchan_task_t* task; /**< the task it belongs to, or NULL for a callback request */
  uvchan_req_type type; /**< what waits: UVCHAN_REQ_SEND, _RECV, _SELECT, _WG_WAIT, _SLEEP,
                             _AWAIT */
  uvchan_t* chan;      /**< the channel (a select's first waiting case); NULL for a wait group, a
                            sleep, an await, or a task blocked on a nil channel */
  uvchan_op op;        /**< send or receive (also for a task on a nil channel, whose `chan` is
                            NULL); 0 for a wait group, a sleep or an await */
  const uvchan_case_t* cases; /**< a select's cases (NULL for anything else) */
  unsigned ncases;     /**< how many `cases` */
};

/** Calls `cb` once for every party of `ctx` that waits: each request waiting on a channel (a
 * select once, however many cases it has), each wait-group wait (callback or task), and each task
 * parked otherwise (a sleep, an await, or a nil channel, which blocks forever). Returns how many
 * there were (walks every queue: O(waiters)). When uv_run() returns while some remain, nothing in
 * the loop can wake them: Go's "all goroutines are asleep". */
UVCHAN_EXTERN size_t uvchan_ctx_walk_waiting(uvchan_ctx_t* ctx, uvchan_walk_cb cb, void* arg);

/** Prints the operations uvchan_ctx_walk_waiting() finds to `out`, one line each, under a heading,
 * and returns their number. Prints nothing and returns 0 when nothing waits. */
UVCHAN_EXTERN size_t uvchan_ctx_report(uvchan_ctx_t* ctx, FILE* out);

/* ------------------------------------------------------------------------------------------ */
/* Channel                                                                                     */

/** A typed conduit: elements of `elem_size` bytes (0 is allowed: a signal channel), copied in and
 * out; `capacity` 0 makes it unbuffered (every send waits for a receiver). */
struct uvchan_s {
  void* data; /**< user data, untouched */
  /* private */
  uvchan_ctx_t* ctx_;
  char* buf_;
  size_t elem_size_;
  size_t cap_;  /* slots a send may fill now: the ring's size less the slots reserved */
  size_t ring_; /* the ring's size: the capacity given at init */
  size_t len_;
  size_t head_;
  struct uvchan__link_s sendq_;
  struct uvchan__link_s recvq_;
  struct uvchan__link_s link_;
  uvchan_elem_destroy_cb dtor_;
  const char* name_;
  uint64_t dropped_;
  uint64_t id_; /* never reused: a permit names the channel it holds a slot of */
  uvchan_t* core_;  /* a shared channel's end: the channel holding the state (maybe itself) */
  int lock_;        /* a shared channel's core: its spinlock */
  size_t refs_;     /* a shared channel's core: how many ends use it (itself included) */
  uint32_t magic_;
  unsigned flags_;
  unsigned overflow_;
};

/** What a send does when the buffer is full and no receiver waits. */
typedef enum {
  UVCHAN_OVERFLOW_BLOCK = 0,   /**< it waits (the default): backpressure */
  UVCHAN_OVERFLOW_DROP_NEWEST, /**< the value sent is dropped */
  UVCHAN_OVERFLOW_DROP_OLDEST, /**< the oldest buffered value is dropped (a sliding buffer) */
  UVCHAN_OVERFLOW_CONFLATE     /**< the newest buffered value is replaced by the one sent; with
                                    capacity 1 the buffer always holds the latest value */
} uvchan_overflow;

/** Initialises `ch` on `ctx`. The buffer (capacity * elem_size bytes) is allocated here, once.
 * Returns 0, UV_EINVAL (NULL, a size that overflows, a bad context or one closing), UV_EBUSY
 * (`ch` is a live channel: destroy it first), UV_ECANCELED (the context is shutting down),
 * UV_EPERM (wrong thread) or UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_init(uvchan_ctx_t* ctx, uvchan_t* ch, size_t elem_size, size_t capacity);

/** Tears `ch` down at once: every waiting request completes with UV_ECANCELED (delivered from the
 * loop), every value still buffered goes to the element destructor (if set), the buffer is freed.
 * The struct may be reused or freed on return. Returns UV_EINVAL if `ch` is not initialised. */
UVCHAN_EXTERN int uvchan_destroy(uvchan_t* ch);

/** Closes `ch`, as Go's close(): later sends fail with UV_EPIPE, waiting senders complete with
 * UV_EPIPE (their value was not taken), receivers drain the buffer and then get UV_EOF, waiting
 * receivers complete with UV_EOF. Closing twice returns UV_EPIPE. */
UVCHAN_EXTERN int uvchan_close(uvchan_t* ch);

/** Sets what a send does when the buffer is full and no receiver waits (see uvchan_overflow).
 * With a dropping policy a send never waits: it completes with 0, and the value dropped goes to
 * the element destructor and is counted by uvchan_dropped(). Returns 0; UV_EINVAL for a bad
 * channel or policy, an unbuffered channel (a drop needs a buffer), or reservations held
 * (uvchan_reserve()); UV_EBUSY while senders wait; UV_EPERM from another thread. */
UVCHAN_EXTERN int uvchan_set_overflow(uvchan_t* ch, uvchan_overflow policy);

/** How many values the overflow policy dropped so far (0 for a bad channel). */
UVCHAN_EXTERN uint64_t uvchan_dropped(const uvchan_t* ch);

/** Sets a destructor called, at uvchan_destroy(), for each value still in the buffer, and for
 * each value an overflow policy drops. Returns 0, UV_EINVAL (bad channel), UV_EPERM (a
 * channel of a loop, from another thread than its context's). */
UVCHAN_EXTERN int uvchan_set_destructor(uvchan_t* ch, uvchan_elem_destroy_cb dtor);

/** Names `ch` for traces and deadlock reports. The string is not copied. */
UVCHAN_EXTERN int uvchan_set_name(uvchan_t* ch, const char* name);

/** The channel's name, or NULL. */
UVCHAN_EXTERN const char* uvchan_name(const uvchan_t* ch);

/** Values in the buffer now (0 for a bad channel). */
UVCHAN_EXTERN size_t uvchan_len(const uvchan_t* ch);
/** The capacity given at init (0 for a bad channel). */
UVCHAN_EXTERN size_t uvchan_cap(const uvchan_t* ch);
/** The element size given at init (0 for a bad channel). */
UVCHAN_EXTERN size_t uvchan_elem_size(const uvchan_t* ch);
/** 1 when closed, 0 when open, UV_EINVAL for a bad channel. */
UVCHAN_EXTERN int uvchan_is_closed(const uvchan_t* ch);
/** Senders waiting now, select cases included (walks the queue: O(waiters)). */
UVCHAN_EXTERN size_t uvchan_waiting_senders(const uvchan_t* ch);
/** Receivers waiting now, select cases included (walks the queue: O(waiters)). */
UVCHAN_EXTERN size_t uvchan_waiting_receivers(const uvchan_t* ch);

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                    */

/** The fields every request struct starts with. The user's: `data` (user data, untouched), `type`
 * (read-only) and `status` (read-only: the result, the same as the callback's); the rest are
 * private. */
#define UVCHAN_REQ_FIELDS                                                           \
  void* data;           /**< user data, untouched */                                  \
  uvchan_req_type type; /**< read-only */                                             \
  int status;           /**< read-only: the result, the same as the callback's */     \
  /* private */                                                                     \
  uvchan_ctx_t* ctx_;                                                               \
  uvchan_req_t* qnext_;                                                             \
  void (*cb_)(void);                                                                \
  uint32_t magic_;                                                                  \
  unsigned state_;                                                                  \
  struct uvchan__tmnode_s tm_;                                                      \
  struct uvchan__waiter_s w_;

/** The fields every request starts with (UVCHAN_REQ_FIELDS); any request may be cast to it (for
 * uvchan_cancel()). */
struct uvchan_req_s {
  UVCHAN_REQ_FIELDS
};

/** A send: the value at `value` is copied when a receiver or buffer room takes it. */
struct uvchan_send_s {
  UVCHAN_REQ_FIELDS
};

/** A receive: the element is copied to `value` when it arrives. */
struct uvchan_recv_s {
  UVCHAN_REQ_FIELDS
};

/** Sends the element at `value` on `ch`; `cb` runs from the loop with 0 once the value was taken
 * (by a receiver, or into the buffer), UV_EPIPE if `ch` is or gets closed first (the value was
 * not taken), UV_ECANCELED if cancelled, `ch` destroyed or the context shut down first. `value`
 * must stay valid until `cb`. Returns 0, or UV_EINVAL (NULL argument, bad channel, `cb` NULL;
 * a NULL channel too: a callback request on Go's nil channel would never complete), UV_EBUSY
 * (`req` is still pending), UV_ECANCELED (the context is shutting down), UV_EPERM (called from
 * another thread than the context's). */
UVCHAN_EXTERN int uvchan_send(uvchan_send_t* req, uvchan_t* ch, const void* value,
                              uvchan_send_cb cb);

/** As uvchan_send(), but gives up after `timeout` ms of loop time: `cb` gets UV_ETIMEDOUT and
 * nothing was transferred. */
UVCHAN_EXTERN int uvchan_send_timeout(uvchan_send_t* req, uvchan_t* ch, const void* value,
                                      uint64_t timeout, uvchan_send_cb cb);

/** Receives one element of `ch` into `value` (may be NULL to drop it). `cb` runs from the loop
 * with 0 when an element was copied, UV_EOF when `ch` is closed and drained (`value` then holds
 * the zero value: elem_size zero bytes, as Go's `v, ok := <-ch`), UV_ECANCELED when cancelled or
 * `ch` destroyed first. Returns as uvchan_send(). */
UVCHAN_EXTERN int uvchan_recv(uvchan_recv_t* req, uvchan_t* ch, void* value, uvchan_recv_cb cb);

/** As uvchan_recv(), with a deadline of `timeout` ms (UV_ETIMEDOUT, nothing received). */
UVCHAN_EXTERN int uvchan_recv_timeout(uvchan_recv_t* req, uvchan_t* ch, void* value,
                                      uint64_t timeout, uvchan_recv_cb cb);

/** Sends now or not at all: 0 when the value was taken, UV_EAGAIN when the send would wait,
 * UV_EPIPE when `ch` is closed, UV_EINVAL for bad arguments. Callable from the context's thread
 * only (callbacks, tasks, and code outside the loop run on that thread): from any other thread,
 * including a uv_queue_work() work callback, it returns UV_EPERM; see uvchan/thread.h. */
UVCHAN_EXTERN int uvchan_try_send(uvchan_t* ch, const void* value);

/** Receives now or not at all: 0 with the element in `value` (may be NULL), UV_EAGAIN when the
 * receive would wait, UV_EOF when `ch` is closed and drained (`value` then holds the zero value),
 * UV_EINVAL for bad arguments, UV_EPERM from another thread (as uvchan_try_send()). */
UVCHAN_EXTERN int uvchan_try_recv(uvchan_t* ch, void* value);

/** Cancels a pending request: if it still waits, its callback runs from the loop with UV_ECANCELED
 * and nothing was transferred, and this returns 0. If it has already been matched (its callback
 * is queued with the real outcome) this returns UV_EBUSY; if it is not pending, UV_EINVAL. */
UVCHAN_EXTERN int uvchan_cancel(uvchan_req_t* req);

/** The task a request belongs to (requests made by blocking task calls), or NULL. */
UVCHAN_EXTERN uvchan_task_t* uvchan_req_task(const uvchan_req_t* req);

/* ------------------------------------------------------------------------------------------ */
/* Select                                                                                      */

/** One case of a select: send the element at `value` on `chan`, receive from it into `value`, or
 * reserve a slot of it into the uvchan_permit_t at `value` (UVCHAN_CASE_RESERVE). A case whose
 * `chan` is NULL is ignored (Go's nil-channel idiom). Build them with the macros. */
struct uvchan_case_s {
  uvchan_t* chan; /**< the channel, or NULL to switch the case off */
  uvchan_op op;   /**< UVCHAN_OP_SEND or UVCHAN_OP_RECV */
  void* value;    /**< the element to send, or where to receive (may be NULL for a receive) */
  /* private */
  struct uvchan__waiter_s w_;
};

/** A case sending the element at `ptr` on `ch`. */
#define UVCHAN_CASE_SEND(ch, ptr) {(ch), UVCHAN_OP_SEND, (void*)(ptr), {{0, 0}, 0, 0, 0, 0, 0}}
/** A case receiving from `ch` into `ptr`. */
#define UVCHAN_CASE_RECV(ch, ptr) {(ch), UVCHAN_OP_RECV, (void*)(ptr), {{0, 0}, 0, 0, 0, 0, 0}}

/** A select over an array of cases. */
struct uvchan_select_s {
  UVCHAN_REQ_FIELDS
  int index; /**< read-only: the case that completed, -1 for none (timeout, cancel) */
  /* private */
  uvchan_case_t* cases_;
  unsigned ncases_;
  int claim_;          /* with a case on a shared channel: 1 once a party completed it */
  unsigned char xsel_; /* it has a case on a shared channel */
};

/** Waits until exactly one of the `n` cases can complete, completes it, and withdraws the others
 * from their channels. Among cases ready at once the choice is uniformly random (see
 * uvchan_ctx_seed()); a select that waits joins its channels' queues in a random order, so that
 * two cases on one channel are served with equal odds, as in Go. `cb` gets the case's status (0;
 * UV_EOF for a receive on a closed channel, with the zero value in the case's `value`; UV_EPIPE
 * for a send on a closed channel) with req->index naming the case. UV_ECANCELED comes with the
 * index of the case whose channel was destroyed, or with index -1 when the select itself was
 * cancelled or its context shut down. `cases` and the values must stay valid until `cb`. A
 * select never matches itself. Returns UV_EINVAL for bad arguments or when no case has a channel,
 * UV_EBUSY if `req` pends, UV_ECANCELED during a shutdown, UV_EPERM from another thread. */
UVCHAN_EXTERN int uvchan_select(uvchan_select_t* req, uvchan_case_t* cases, unsigned n,
                                uvchan_select_cb cb);

/** As uvchan_select() with a deadline: after `timeout` ms `cb` gets UV_ETIMEDOUT, index -1. */
UVCHAN_EXTERN int uvchan_select_timeout(uvchan_select_t* req, uvchan_case_t* cases, unsigned n,
                                        uint64_t timeout, uvchan_select_cb cb);

/** A select with a default: completes one ready case now and returns its index (>= 0) with its
 * status in `*status` (may be NULL), or returns UV_EAGAIN when none is ready. */
UVCHAN_EXTERN int uvchan_try_select(uvchan_case_t* cases, unsigned n, int* status);

/* ------------------------------------------------------------------------------------------ */
/* Two-phase send: reserve a slot, then commit a value or release the slot                     */

/** A reserved slot of a buffered channel (tokio's Permit). It holds capacity: a reserved slot is
 * not free for other sends until uvchan_commit() fills it or uvchan_release() gives it back, so
 * a producer can take a slot first and make its value afterwards, and nothing is lost when it
 * gives up. A permit still held when its channel closes commits nothing (UV_EPIPE) and frees its
 * slot; one whose channel was destroyed is void (UV_EINVAL). */
struct uvchan_permit_s {
  /* private */
  uvchan_t* chan_;
  uint64_t chan_id_;
  uint32_t magic_;
};

/** A reservation request: waits like a send until a slot is free. */
struct uvchan_reserve_s {
  UVCHAN_REQ_FIELDS
  uvchan_permit_t permit; /**< held once the callback got 0 */
};

/** Reserves one slot of `ch` (capacity > 0): `cb` runs from the loop with 0 once a slot is held
 * in req->permit (at once if one is free), UV_EPIPE if `ch` is or gets closed, UV_ECANCELED if
 * cancelled or `ch` destroyed. Slots are granted in FIFO order with waiting senders. Returns 0,
 * UV_EINVAL (NULL argument, bad or unbuffered channel, a dropping overflow policy), UV_EBUSY
 * (`req` pending), UV_ECANCELED (shutdown), UV_EPERM (wrong thread). */
UVCHAN_EXTERN int uvchan_reserve(uvchan_reserve_t* req, uvchan_t* ch, uvchan_reserve_cb cb);

/** As uvchan_reserve(), with a deadline of `timeout` ms (UV_ETIMEDOUT, nothing held). */
UVCHAN_EXTERN int uvchan_reserve_timeout(uvchan_reserve_t* req, uvchan_t* ch, uint64_t timeout,
                                         uvchan_reserve_cb cb);

/** Reserves a slot now or not at all: 0 with `permit` held, UV_EAGAIN when none is free,
 * UV_EPIPE when `ch` is closed, UV_EINVAL / UV_EPERM as uvchan_reserve(). */
UVCHAN_EXTERN int uvchan_try_reserve(uvchan_t* ch, uvchan_permit_t* permit);

/** Sends `value` into the slot `permit` holds: it goes to a waiting receiver or into the buffer,
 * never waits, and the permit is spent. Returns 0; UV_EPIPE if the channel was closed meanwhile
 * (the value was not taken, the slot is freed); UV_EINVAL for a permit not held (never filled,
 * spent, or its channel destroyed) or a NULL value with element size > 0; UV_EPERM from another
 * thread. */
UVCHAN_EXTERN int uvchan_commit(uvchan_permit_t* permit, const void* value);

/** Gives the slot back unused: it goes to the first waiting sender or reservation, if any.
 * Returns 0, UV_EINVAL for a permit not held, UV_EPERM from another thread. */
UVCHAN_EXTERN int uvchan_release(uvchan_permit_t* permit);

/** 1 while `permit` holds a slot, else 0. */
UVCHAN_EXTERN int uvchan_permit_held(const uvchan_permit_t* permit);

/** A select case reserving a slot of `ch` into the uvchan_permit_t at `permit`. */
#define UVCHAN_CASE_RESERVE(ch, permit) \
  {(ch), UVCHAN_OP_RESERVE, (void*)(permit), {{0, 0}, 0, 0, 0, 0, 0}}

/* ------------------------------------------------------------------------------------------ */
/* Wait group                                                                                  */

/** A counter to wait for, as Go's sync.WaitGroup: the "boss" waiting for N workers. */
struct uvchan_wg_s {
  void* data; /**< user data, untouched */
  /* private */
  uvchan_ctx_t* ctx_;
  long count_;
  struct uvchan__link_s waiters_;
  struct uvchan__link_s link_; /* in ctx->wgs_ while it has waiters */
  uint64_t gen_;               /* ctx_'s generation: a closed context's is retired */
  uint32_t slot_;
  uint32_t magic_;
};

/** Initialises `wg` on `ctx` with a count of 0. Returns 0; UV_EINVAL for a bad context or one
 * closing, or a NULL `wg`; UV_EBUSY when `wg` is a wait group in use (count above 0, or
 * waiters); UV_ECANCELED during a shutdown; UV_EPERM from another thread. Initialising a wait
 * group again once it is done is fine, as reusing a Go WaitGroup is. */
UVCHAN_EXTERN int uvchan_wg_init(uvchan_ctx_t* ctx, uvchan_wg_t* wg);
/** Retires `wg`: every waiting request completes with UV_ECANCELED, and later calls on it return
 * UV_EINVAL. The struct may be reused or freed on return. A wait group needs no destroy otherwise
 * (as in Go): once its context closes, calls on it return UV_EINVAL without reading the context,
 * even after the context's memory was freed. */
UVCHAN_EXTERN int uvchan_wg_destroy(uvchan_wg_t* wg);
/** Adds `delta` (may be negative) to the count; when it reaches 0 every waiter completes with 0.
 * A count that would go negative or overflow is UV_EINVAL and leaves the count as it was. A
 * wait group destroyed, or whose context closed (even freed), is UV_EINVAL. */
UVCHAN_EXTERN int uvchan_wg_add(uvchan_wg_t* wg, long delta);
/** uvchan_wg_add(wg, -1). */
UVCHAN_EXTERN int uvchan_wg_done(uvchan_wg_t* wg);
/** The count now (negative UV_EINVAL for a bad wait group). */
UVCHAN_EXTERN long uvchan_wg_count(const uvchan_wg_t* wg);
/** Waits until the count is 0; `cb` gets 0 (from the loop, even if it is 0 already) or
 * UV_ECANCELED (cancelled, the wait group destroyed, or the context shut down). Returns 0,
 * UV_EINVAL (NULL `req` or `cb`, bad wait group), UV_EBUSY (`req` pending), UV_ECANCELED (during
 * a shutdown), UV_EPERM (wrong thread). */
UVCHAN_EXTERN int uvchan_wg_wait(uvchan_req_t* req, uvchan_wg_t* wg, uvchan_req_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* Timer channels                                                                              */

/** A channel fed by the clock: `chan` carries uint64_t values (the loop time, ms, of each tick).
 * An "after" timer sends one value and never closes its channel, like Go's time.After and
 * time.NewTimer: a select case on it is ready once, not forever. A ticker sends every period and
 * drops ticks a lagging receiver has not taken (its buffer holds one), like time.Ticker. Receive
 * from `&timer->chan` like from any channel. */
struct uvchan_timer_s {
  void* data;     /**< user data, untouched */
  uvchan_t chan;  /**< read-only: receive from it */
  /* private */
  uv_timer_t timer_;
  struct uvchan__res_s res_;
  uvchan_timer_close_cb close_cb_;
  uint64_t period_;
  uint32_t magic_;
  unsigned flags_;
};

/** Starts a one-shot timer: after `timeout` ms one value is sent; the channel stays open. Returns
 * 0; UV_EINVAL (bad context, NULL timer); UV_EBUSY (`timer` is live: use uvchan_timer_reset() to
 * re-arm it, or close it first); UV_ECANCELED (shutdown); UV_EPERM (wrong thread); UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_timer_after(uvchan_ctx_t* ctx, uvchan_timer_t* timer, uint64_t timeout);
/** Starts a ticker: one value every `period` ms (> 0, else UV_EINVAL); other codes as
 * uvchan_timer_after(). */
UVCHAN_EXTERN int uvchan_timer_ticker(uvchan_ctx_t* ctx, uvchan_timer_t* timer, uint64_t period);
/** Re-arms a live timer, as Go's Timer.Reset and Ticker.Reset: drops a value not yet received (so
 * no stale tick is seen after the reset), then an "after" timer fires once `timeout` ms from now,
 * and a ticker ticks every `timeout` ms (> 0) from now. Waiting receivers keep waiting. Returns
 * 0, UV_EINVAL (bad or closing timer, ticker period 0), UV_EPERM (wrong thread). */
UVCHAN_EXTERN int uvchan_timer_reset(uvchan_timer_t* timer, uint64_t timeout);
/** Stops the clock; the channel stays open and keeps what it holds. */
UVCHAN_EXTERN int uvchan_timer_stop(uvchan_timer_t* timer);
/** Stops, destroys the channel (waiting receivers get UV_ECANCELED) and closes the libuv timer;
 * `cb` (may be NULL) runs from the loop when the struct may be freed. Until then the struct must
 * stay valid: a timer closed by a task must not live on that task's stack if the task returns
 * before `cb`. */
UVCHAN_EXTERN int uvchan_timer_close(uvchan_timer_t* timer, uvchan_timer_close_cb cb);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_CHAN_H */
