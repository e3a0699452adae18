/* uvchan/chan.h: contexts, channels, requests, select, wait groups, timer channels, tracing and
 * the deadlock report. Include <uvchan.h>, which includes this. */
#ifndef UVCHAN_CHAN_H
#define UVCHAN_CHAN_H

#include "uvchan/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Context: uvchan's state for one loop                                                        */

/** One per loop (more are allowed). It owns the libuv handles uvchan needs (an idle handle that
 * delivers completions, a timer for deadlines), the list of channels and tasks, the random source
 * of select, and the trace hook. It never touches loop->data. */
struct uvchan_ctx_s {
  void* data;       /**< user data, untouched */
  uv_loop_t* loop;  /**< read-only */
  /* private */
  uv_idle_t idle_;
  uv_timer_t timer_;
  uvchan_req_t* qhead_;
  uvchan_req_t* qtail_;
  unsigned batch_;
  unsigned budget_; /**< completions the running delivery may still make */
  unsigned flags_;
  uint32_t magic_;
  unsigned nhandles_;
  uvchan_ctx_close_cb close_cb_;
  struct uvchan__tmnode_s* heap_;
  uint64_t timer_due_;
  uint64_t rng_[2];
  struct uvchan__link_s chans_;
  struct uvchan__link_s tasks_;
  size_t nchans_;
  size_t ntasks_;
  size_t nwaiting_; /**< requests parked outside channels: wait groups, sleeps */
  uvchan_trace_cb trace_cb_;
  void* trace_arg_;
  void* pools_;       /**< task runtime: the loop side's saved context, stack pools */
  uint64_t next_task_id_;
  uv_timer_t stack_timer_; /**< gives idle task stacks back; initialised with the first task */
};

/** Initialises `ctx` on `loop`. Reads UVCHAN_TRACE from the environment: "1" prints every channel
 * event to stderr (see uvchan_ctx_set_trace()). Returns 0, or UV_EINVAL for NULL arguments. */
UVCHAN_EXTERN int uvchan_ctx_init(uv_loop_t* loop, uvchan_ctx_t* ctx);

/** Starts closing `ctx`: pending completions are still delivered, then its libuv handles close and
 * `cb` (may be NULL) runs from the loop. Returns UV_EBUSY, and closes nothing, while channels are
 * not destroyed, tasks still live, or wait-group/sleep requests still wait; UV_EINVAL for a NULL
 * or uninitialised context or one already closing. After `cb`, uv_loop_close() can return 0. */
UVCHAN_EXTERN int uvchan_ctx_close(uvchan_ctx_t* ctx, uvchan_ctx_close_cb cb);

/** Sets how many completions (callbacks and task resumptions) one loop iteration delivers at most,
 * so that a busy ping-pong never starves timers or I/O. Default UVCHAN_DEFAULT_BATCH. 0 is
 * UV_EINVAL. */
UVCHAN_EXTERN int uvchan_ctx_set_batch(uvchan_ctx_t* ctx, unsigned batch);

/* Seeds the random source select uses to choose among ready cases, so tests can repeat a run. */
UVCHAN_EXTERN int uvchan_ctx_seed(uvchan_ctx_t* ctx, uint64_t seed);

/* ------------------------------------------------------------------------------------------ */
/* Tracing                                                                                     */

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
  uvchan_trace_kind kind;
  uvchan_op op;
  uvchan_t* chan;
  uvchan_req_t* req;
  uvchan_req_t* peer;
  const void* value;
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

/** One operation that is waiting. */
struct uvchan_waiting_s {
  uvchan_req_t* req;   /**< the waiting request */
  uvchan_task_t* task; /**< the task it belongs to, or NULL for a callback request */
  uvchan_t* chan;      /**< the channel, NULL for a wait group */
  uvchan_op op;        /**< send or receive (0 for a wait group) */
};

/** Calls `cb` once for every operation waiting on a channel of `ctx`, and for every task waiting
 * on a wait group. Returns how many there were (walks every queue: O(waiters)). When uv_run()
 * returns while some remain, nothing in the loop can wake them: Go's "all goroutines are asleep". */
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
  size_t cap_;
  size_t len_;
  size_t head_;
  struct uvchan__link_s sendq_;
  struct uvchan__link_s recvq_;
  struct uvchan__link_s link_;
  uvchan_elem_destroy_cb dtor_;
  const char* name_;
  uint32_t magic_;
  unsigned flags_;
};

/** Initialises `ch` on `ctx`. The buffer (capacity * elem_size bytes) is allocated here, once.
 * Returns 0, UV_EINVAL (NULL, or a size that overflows), or UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_init(uvchan_ctx_t* ctx, uvchan_t* ch, size_t elem_size, size_t capacity);

/** Tears `ch` down at once: every waiting request completes with UV_ECANCELED (delivered from the
 * loop), every value still buffered goes to the element destructor (if set), the buffer is freed.
 * The struct may be reused or freed on return. Returns UV_EINVAL if `ch` is not initialised. */
UVCHAN_EXTERN int uvchan_destroy(uvchan_t* ch);

/** Closes `ch`, as Go's close(): later sends fail with UV_EPIPE, waiting senders complete with
 * UV_EPIPE (their value was not taken), receivers drain the buffer and then get UV_EOF, waiting
 * receivers complete with UV_EOF. Closing twice returns UV_EPIPE. */
UVCHAN_EXTERN int uvchan_close(uvchan_t* ch);

/** Sets a destructor called, at uvchan_destroy(), for each value still in the buffer. */
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

/* The fields every request starts with; any request may be cast to it (for uvchan_cancel()). */
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
 * not taken), UV_ECANCELED if cancelled or `ch` destroyed first. `value` must stay valid until
 * `cb`. Returns 0, or UV_EINVAL (NULL argument, bad channel, `cb` NULL), UV_EBUSY (`req` is
 * still pending). */
UVCHAN_EXTERN int uvchan_send(uvchan_send_t* req, uvchan_t* ch, const void* value,
                              uvchan_send_cb cb);

/** As uvchan_send(), but gives up after `timeout` ms of loop time: `cb` gets UV_ETIMEDOUT and
 * nothing was transferred. */
UVCHAN_EXTERN int uvchan_send_timeout(uvchan_send_t* req, uvchan_t* ch, const void* value,
                                      uint64_t timeout, uvchan_send_cb cb);

/** Receives one element of `ch` into `value` (may be NULL to drop it). `cb` runs from the loop
 * with 0 when an element was copied, UV_EOF when `ch` is closed and drained, UV_ECANCELED when
 * cancelled or `ch` destroyed first. Returns as uvchan_send(). */
UVCHAN_EXTERN int uvchan_recv(uvchan_recv_t* req, uvchan_t* ch, void* value, uvchan_recv_cb cb);

/** As uvchan_recv(), with a deadline of `timeout` ms (UV_ETIMEDOUT, nothing received). */
UVCHAN_EXTERN int uvchan_recv_timeout(uvchan_recv_t* req, uvchan_t* ch, void* value,
                                      uint64_t timeout, uvchan_recv_cb cb);

/** Sends now or not at all: 0 when the value was taken, UV_EAGAIN when the send would wait,
 * UV_EPIPE when `ch` is closed, UV_EINVAL for bad arguments. Callable anywhere, tasks included. */
UVCHAN_EXTERN int uvchan_try_send(uvchan_t* ch, const void* value);

/** Receives now or not at all: 0 with the element in `value` (may be NULL), UV_EAGAIN when the
 * receive would wait, UV_EOF when `ch` is closed and drained, UV_EINVAL for bad arguments. */
UVCHAN_EXTERN int uvchan_try_recv(uvchan_t* ch, void* value);

/** Cancels a pending request: if it still waits, its callback runs from the loop with UV_ECANCELED
 * and nothing was transferred, and this returns 0. If it has already been matched (its callback
 * is queued with the real outcome) this returns UV_EBUSY; if it is not pending, UV_EINVAL. */
UVCHAN_EXTERN int uvchan_cancel(uvchan_req_t* req);

/** The task a request belongs to (requests made by blocking task calls), or NULL. */
UVCHAN_EXTERN uvchan_task_t* uvchan_req_task(const uvchan_req_t* req);

/* ------------------------------------------------------------------------------------------ */
/* Select                                                                                      */

/** One case of a select: send the element at `value` on `chan`, or receive from it into `value`.
 * A case whose `chan` is NULL is ignored (Go's nil-channel idiom). Build them with the macros. */
struct uvchan_case_s {
  uvchan_t* chan;
  uvchan_op op;
  void* value;
  /* private */
  struct uvchan__waiter_s w_;
};

#define UVCHAN_CASE_SEND(ch, ptr) {(ch), UVCHAN_OP_SEND, (void*)(ptr), {{0, 0}, 0, 0, 0, 0, 0}}
#define UVCHAN_CASE_RECV(ch, ptr) {(ch), UVCHAN_OP_RECV, (void*)(ptr), {{0, 0}, 0, 0, 0, 0, 0}}

/** A select over an array of cases. */
struct uvchan_select_s {
  UVCHAN_REQ_FIELDS
  int index; /**< read-only: the case that completed, -1 for none (timeout, cancel) */
  /* private */
  uvchan_case_t* cases_;
  unsigned ncases_;
};

/** Waits until exactly one of the `n` cases can complete, completes it, and withdraws the others
 * from their channels. Among cases ready at once the choice is uniformly random (see
 * uvchan_ctx_seed()). `cb` gets the case's status (0; UV_EOF for a receive on a closed channel;
 * UV_EPIPE for a send on a closed channel) with req->index naming the case, or UV_ECANCELED with
 * index -1. `cases` and the values must stay valid until `cb`. A select never matches itself.
 * Returns UV_EINVAL for bad arguments or when no case has a channel, UV_EBUSY if `req` pends. */
UVCHAN_EXTERN int uvchan_select(uvchan_select_t* req, uvchan_case_t* cases, unsigned n,
                                uvchan_select_cb cb);

/** As uvchan_select() with a deadline: after `timeout` ms `cb` gets UV_ETIMEDOUT, index -1. */
UVCHAN_EXTERN int uvchan_select_timeout(uvchan_select_t* req, uvchan_case_t* cases, unsigned n,
                                        uint64_t timeout, uvchan_select_cb cb);

/** A select with a default: completes one ready case now and returns its index (>= 0) with its
 * status in `*status` (may be NULL), or returns UV_EAGAIN when none is ready. */
UVCHAN_EXTERN int uvchan_try_select(uvchan_case_t* cases, unsigned n, int* status);

/* ------------------------------------------------------------------------------------------ */
/* Wait group                                                                                  */

/** A counter to wait for, as Go's sync.WaitGroup: the "boss" waiting for N workers. */
struct uvchan_wg_s {
  void* data; /**< user data, untouched */
  /* private */
  uvchan_ctx_t* ctx_;
  long count_;
  struct uvchan__link_s waiters_;
  uint32_t magic_;
};

/** Initialises `wg` with a count of 0. */
UVCHAN_EXTERN int uvchan_wg_init(uvchan_ctx_t* ctx, uvchan_wg_t* wg);
/** Adds `delta` (may be negative) to the count; when it reaches 0 every waiter completes with 0.
 * A count that would go negative is UV_EINVAL and leaves the count as it was. */
UVCHAN_EXTERN int uvchan_wg_add(uvchan_wg_t* wg, long delta);
/** uvchan_wg_add(wg, -1). */
UVCHAN_EXTERN int uvchan_wg_done(uvchan_wg_t* wg);
/** The count now (negative UV_EINVAL for a bad wait group). */
UVCHAN_EXTERN long uvchan_wg_count(const uvchan_wg_t* wg);
/** Waits until the count is 0; `cb` gets 0 (from the loop, even if it is 0 already) or
 * UV_ECANCELED. */
UVCHAN_EXTERN int uvchan_wg_wait(uvchan_req_t* req, uvchan_wg_t* wg, uvchan_req_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* Timer channels                                                                              */

/** A channel fed by the clock: `chan` carries uint64_t values (the loop time, ms, of each tick).
 * An "after" timer sends once and closes its channel, like Go's time.After; a ticker sends every
 * period and drops ticks a lagging receiver has not taken (its buffer holds one), like
 * time.Ticker. Receive from `&timer->chan` like from any channel. */
struct uvchan_timer_s {
  void* data;     /**< user data, untouched */
  uvchan_t chan;  /**< read-only: receive from it */
  /* private */
  uv_timer_t timer_;
  uvchan_timer_close_cb close_cb_;
  uint32_t magic_;
  unsigned flags_;
};

/** Starts a one-shot timer: after `timeout` ms one value is sent, then the channel closes. */
UVCHAN_EXTERN int uvchan_timer_after(uvchan_ctx_t* ctx, uvchan_timer_t* timer, uint64_t timeout);
/** Starts a ticker: one value every `period` ms (> 0, else UV_EINVAL). */
UVCHAN_EXTERN int uvchan_timer_ticker(uvchan_ctx_t* ctx, uvchan_timer_t* timer, uint64_t period);
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
