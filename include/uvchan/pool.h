/** @file
 * uvchan/pool.h: CPU-heavy work on libuv's threadpool, fed by channels (a threadpool map) or
 * awaited by a task. Include <uvchan.h>, which includes this. */
#ifndef UVCHAN_POOL_H
#define UVCHAN_POOL_H

#include "uvchan/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Threadpool map                                                                              */

typedef struct uvchan_work_map_s uvchan_work_map_t;

/** A job of a map, run on a threadpool thread (never the loop's): computes the result of one
 * item. `in` points at the item (the input channel's element size), `out` at room for its result
 * (the output channel's element size). It may read `map->data`, and must not call uvchan
 * functions other than the thread-safe ones (uvchan/thread.h). Returns 0, or a negative error
 * code that stops the map (see uvchan_work_map_start()). */
typedef int (*uvchan_work_fn)(uvchan_work_map_t* map, const void* in, void* out);

/** Runs once from the loop when the map has stopped (statuses: uvchan_work_map_start()); the map
 * may be freed or started again from here on. */
typedef void (*uvchan_work_map_cb)(uvchan_work_map_t* map, int status);

/** Called from the loop, once each, for the items and results a map took but will never deliver
 * because it stopped early: `in` is the item; `out` is its result, or NULL when the job never ran
 * (cancelled) or failed. For values that own memory. */
typedef void (*uvchan_work_discard_cb)(uvchan_work_map_t* map, void* in, void* out);

/** uvchan_work_map_start() flag: close the output channel once the map stops, so that whoever
 * drains it sees the end (as a Go stage closes its output when its input ends). */
#define UVCHAN_WORK_MAP_CLOSE_OUT 1u

/** Options of uvchan_work_map_start(); zero-initialise it, set what you need. */
typedef struct uvchan_work_map_attr_s {
  unsigned flags;                 /**< UVCHAN_WORK_MAP_CLOSE_OUT, or 0 */
  uvchan_work_discard_cb discard; /**< for items and results dropped by an early stop; NULL: none */
} uvchan_work_map_attr_t;

/** A threadpool map: receives items from one channel, runs a job for each on libuv's threadpool
 * (uv_queue_work()) with at most `k` jobs in flight, and sends the results to another channel in
 * the order the items came, whatever order the jobs finish in. It is made of callback requests on
 * the two channels: no task is needed, and backpressure holds end to end: while `k` items are
 * in flight or waiting for their turn to be sent, it receives no more, so a slow consumer of the
 * output slows the intake. */
struct uvchan_work_map_s {
  void* data; /**< user data, untouched (jobs may read it) */
  /* private */
  uvchan_ctx_t* ctx_;
  uvchan_t* in_;
  uvchan_t* out_;
  uvchan_work_fn work_;
  uvchan_work_map_cb done_;
  uvchan_work_discard_cb discard_;
  struct uvchan__job_s* jobs_; /* k_ job slots; item i lives in slot i % k_ */
  char* items_;
  char* results_;
  uint64_t head_;   /* items received */
  uint64_t tail_;   /* results sent */
  uint64_t end_;    /* after a failed job: its number, the first result not to send */
  unsigned k_;
  unsigned running_; /* jobs in the threadpool */
  unsigned flags_;
  int status_;
  uint32_t magic_;
  uvchan_recv_t recv_;
  uvchan_send_t send_;
  struct uvchan__res_s res_;
};

/** Starts `map` on `ctx`: items of `in` go through `work` on the threadpool, at most `k` (> 0) at a
 * time, and their results go to `out` in input order. `in` and `out` are channels of `ctx` (or
 * ends of shared channels attached to it) and must outlive the map. Nothing runs inside this
 * call. `done` runs once, from the loop, when the map has stopped, with:
 *   - 0: `in` was closed and drained, and every result was sent;
 *   - the first negative code a job returned: the results of the items before it were sent, the
 *     jobs still in flight were waited for (the queued ones cancelled), and the rest dropped;
 *   - UV_EPIPE: `out` was closed by someone else (the result that could not be sent is dropped);
 *   - UV_ECANCELED: uvchan_work_map_stop(), the context's shutdown, or one of the channels
 *     destroyed.
 * In every case no job runs any more when `done` runs; with UVCHAN_WORK_MAP_CLOSE_OUT `out` has
 * been closed. Returns 0; UV_EINVAL for a NULL or bad argument, `k` 0, a channel of another
 * context, or a map already running; UV_ECANCELED during a shutdown; UV_EPERM from another
 * thread; UV_ENOMEM. `attr` may be NULL. */
UVCHAN_EXTERN int uvchan_work_map_start(uvchan_ctx_t* ctx, uvchan_work_map_t* map, unsigned k,
                                        uvchan_t* in, uvchan_t* out, uvchan_work_fn work,
                                        uvchan_work_map_cb done,
                                        const uvchan_work_map_attr_t* attr);

/** Stops a running map early: it receives nothing more, queued jobs are cancelled (their items go
 * to the discard callback), a result waiting to be sent is dropped; jobs already running are
 * waited for, then `done` runs with UV_ECANCELED. Returns 0, UV_EINVAL if the map is not running
 * (or already stopping), UV_EPERM from another thread. */
UVCHAN_EXTERN int uvchan_work_map_stop(uvchan_work_map_t* map);

/** 1 while `map` is running or stopping (its `done` has not run yet), else 0. */
UVCHAN_EXTERN int uvchan_work_map_active(const uvchan_work_map_t* map);

/* ------------------------------------------------------------------------------------------ */
/* A task awaiting the threadpool                                                              */

/** Work for uvchan_task_work(), run on a threadpool thread. */
typedef void (*uvchan_task_work_fn)(void* arg);

/** From a task: runs `fn(arg)` on libuv's threadpool and waits for it, without blocking the loop.
 * Returns 0 once it ran. A cancel or shutdown of the task that comes while the job is still
 * queued removes it (uv_cancel()): `fn` never runs and the call returns UV_ECANCELED; once `fn`
 * runs, the task waits for it (`arg` may live on the task's stack) and the call returns 0.
 * UV_EINVAL outside a task or for a NULL `fn`. */
UVCHAN_EXTERN int uvchan_task_work(uvchan_task_work_fn fn, void* arg);

/** As uvchan_task_work(), with a deadline of `timeout` ms: UV_ETIMEDOUT when it came while the job
 * was still queued (`fn` then never runs); a job already running is waited for (returns 0). */
UVCHAN_EXTERN int uvchan_task_work_timeout(uvchan_task_work_fn fn, void* arg, uint64_t timeout);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_POOL_H */
