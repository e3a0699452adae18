/** @file
 * uvchan/thread.h: channels shared between threads and loops. Include <uvchan.h>, which
 * includes this. */
#ifndef UVCHAN_THREAD_H
#define UVCHAN_THREAD_H

#include "uvchan/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Shared channels                                                                             */

/** @name Shared channels
 * A shared channel has the semantics of any channel (rendezvous, buffer, close, FIFO, select)
 * and may be used from several threads: each loop that uses it attaches an end of its own (a
 * uvchan_t bound to that loop's context), and threads without a loop use the uvchan_thread_*
 * calls below. The ends share one state behind a lock; a request completes on the context of
 * the end it was started on, woken through that context's uv_async_t when another thread
 * completed it (wake-ups coalesce: every wake-up delivers everything waiting).
 *
 * On an end, from the thread of the end's context: every channel call (callback requests, task
 * calls, select, try-operations, close, destroy). From any thread, loop or not:
 * uvchan_try_send(), uvchan_try_recv(), uvchan_close(), the queries (uvchan_len(),
 * uvchan_is_closed(), uvchan_cap(), uvchan_elem_size(), uvchan_waiting_senders(),
 * uvchan_waiting_receivers(), uvchan_dropped()), uvchan_set_overflow(), uvchan_set_destructor(),
 * and the uvchan_thread_* calls. Not (yet) on shared channels: reservations (UV_EINVAL), tracing
 * (events of shared channels are not traced).
 *
 * A request waiting on a shared channel keeps its loop alive (another thread may complete it),
 * unlike a wait on a loop's own channel. While one waits, after cross-thread traffic, the loop
 * spins for a while before it sleeps in the poll (uvchan_ctx_set_spin()).
 * @{ */

/** Initialises `ch` as a shared channel, and as its first end, bound to `ctx`. Arguments and
 * codes as uvchan_init(). The first end is destroyed last: uvchan_destroy() returns UV_EBUSY
 * while other ends are attached. */
UVCHAN_EXTERN int uvchan_init_shared(uvchan_ctx_t* ctx, uvchan_t* ch, size_t elem_size,
                                     size_t capacity);

/** Attaches `end`, bound to `ctx` (from ctx's thread), to the shared channel `shared` (any of its
 * ends). Destroy it with uvchan_destroy(), on ctx's thread: requests started on it get
 * UV_ECANCELED. Returns 0; UV_EINVAL for a bad context, `end` or `shared`, or a channel that is
 * not shared; UV_EBUSY if `end` is live; UV_EPERM from another thread than ctx's. */
UVCHAN_EXTERN int uvchan_attach(uvchan_ctx_t* ctx, uvchan_t* end, uvchan_t* shared);

/** 1 if `ch` is an end of a shared channel, else 0. */
UVCHAN_EXTERN int uvchan_is_shared(const uvchan_t* ch);

/** From any thread, loop or not: sends the element at `value` on the shared channel `ch`,
 * blocking the calling thread until the value is taken (by a receiver or into the buffer):
 * backpressure for producer threads. Returns 0, UV_EPIPE (closed), UV_ECANCELED (destroyed),
 * UV_EINVAL (not a shared channel, NULL value with element size > 0). Never call it from a
 * loop's thread whose loop must run for the value to be taken: that would deadlock. */
UVCHAN_EXTERN int uvchan_thread_send(uvchan_t* ch, const void* value);

/** As uvchan_thread_send(), giving up after `timeout` ms (UV_ETIMEDOUT, nothing sent). */
UVCHAN_EXTERN int uvchan_thread_send_timeout(uvchan_t* ch, const void* value, uint64_t timeout);

/** From any thread: receives one element of the shared channel `ch` into `value` (may be NULL),
 * blocking the calling thread until one comes. Returns 0, UV_EOF (closed and drained: the zero
 * value in `value`), UV_ECANCELED (destroyed), UV_EINVAL (not a shared channel). */
UVCHAN_EXTERN int uvchan_thread_recv(uvchan_t* ch, void* value);

/** As uvchan_thread_recv(), giving up after `timeout` ms (UV_ETIMEDOUT, nothing received). */
UVCHAN_EXTERN int uvchan_thread_recv_timeout(uvchan_t* ch, void* value, uint64_t timeout);

/** How long, by default, a loop spins (in microseconds) before it sleeps in the poll, while one
 * of its requests waits on a shared channel and another thread completed one of its requests
 * recently (see uvchan_ctx_set_spin()). */
#define UVCHAN_DEFAULT_SPIN_US 50

/** Sets how long the loop of `ctx` spins before it sleeps, in microseconds (0: never spins).
 * While a request of `ctx` waits on a shared channel, and another thread completed one of its
 * requests (or it completed one of another thread's) since the loop last slept, the loop does
 * not block in the poll at once: it watches for completions from other threads for up to `usec`
 * (less when a timer is due sooner), still leaving the spin as soon as I/O is ready. A value
 * handed across threads then costs no system call on either side (no uv_async_send(), no
 * wake-up), at the price of up to `usec` of CPU time per burst of traffic. Call it from the
 * context's thread. Returns 0, UV_EINVAL for a bad context, UV_EPERM from another thread. */
UVCHAN_EXTERN int uvchan_ctx_set_spin(uvchan_ctx_t* ctx, unsigned usec);
/** @} */

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_THREAD_H */
