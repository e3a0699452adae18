/** @file
 * uvchan/task.h: tasks, coroutines on the loop that block in channel operations as goroutines do.
 * Include <uvchan.h>, which includes this. */
#ifndef UVCHAN_TASK_H
#define UVCHAN_TASK_H

#include "uvchan/chan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Tasks                                                                                       */

/** Options of uvchan_task_spawn(); zero-initialise it, set what you need. */
struct uvchan_task_attr_s {
  size_t stack_size; /**< 0: UVCHAN_DEFAULT_STACK_SIZE; else from UVCHAN_MIN_STACK_SIZE to
                        UVCHAN_MAX_STACK_SIZE, rounded up to pages (virtual: only touched pages
                        become resident) */
  const char* name;  /**< for reports, traces and the overflow message; not copied */
  uvchan_wg_t* wg;   /**< if set: uvchan_wg_add(wg, 1) now, uvchan_wg_done(wg) when the task ends */
  int guard_page;    /**< 1: the stack must have a guard region (see docs/guide.md, Stacks): where
                        only mprotect guards exist and their mapping budget is spent, the spawn
                        fails with UV_ENOMEM instead of falling back to a canary stack. Every
                        stack has a guard region while one can be had; with MADV_GUARD_INSTALL
                        (Linux >= 6.13), always */
};

/** Starts `fn(arg)` as a task: a coroutine on ctx's loop, resumed from the loop, that can block in
 * the uvchan_task_* calls below as a goroutine blocks on a channel. The task first runs from the
 * loop, never inside this call. The task's memory belongs to uvchan and is reused when it ends.
 *
 * Its stack has a 64 KiB guard region below it: a task that overflows its stack stops the program
 * with a message naming it (id, name, stack size) before it can touch another task's memory. The
 * first spawn of the process installs the SIGSEGV/SIGBUS handler that does this (faults elsewhere
 * go on to the handler installed before it); a handler the application installs after the first
 * spawn replaces it. Build task code with -fstack-clash-protection so that no frame, however
 * large, can step over the guard region.
 *
 * Returns 0; UV_EINVAL (bad arguments, a stack size outside [UVCHAN_MIN_STACK_SIZE,
 * UVCHAN_MAX_STACK_SIZE], or ctx closing); UV_ECANCELED (ctx shutting down); UV_EPERM (wrong
 * thread); UV_ENOMEM (no memory or mapping for the stack, or attr.guard_page past the mapping
 * budget of mprotect guards). */
UVCHAN_EXTERN int uvchan_task_spawn(uvchan_ctx_t* ctx, uvchan_task_fn fn, void* arg,
                                    const uvchan_task_attr_t* attr);

/** A reference to a task (Kotlin's Job, tokio's JoinHandle): it stays safe to use after the task
 * ended, and then names no task. Valid until the task's context closes. */
typedef struct uvchan_task_ref_s {
  uvchan_task_t* task; /**< read-only: the task, while it lives */
  uint64_t id;         /**< read-only: its uvchan_task_id() */
} uvchan_task_ref_t;

/** As uvchan_task_spawn(), and fills `*ref` (required) with a reference to the new task. */
UVCHAN_EXTERN int uvchan_task_spawn_ref(uvchan_ctx_t* ctx, uvchan_task_ref_t* ref,
                                        uvchan_task_fn fn, void* arg,
                                        const uvchan_task_attr_t* attr);

/** Fills `*ref` with a reference to the running task. Returns UV_EINVAL outside a task. */
UVCHAN_EXTERN int uvchan_task_ref_self(uvchan_task_ref_t* ref);

/** Cancels a task: the blocking call it is parked in (channel, select, wait group, sleep, await,
 * I/O) returns UV_ECANCELED, unless it had already completed, and so does every blocking call it
 * makes later, so that it runs to its end. A task cancels itself as well. Returns 0, UV_ESRCH when
 * the task has ended, UV_EINVAL for a NULL or never-filled reference, UV_EPERM from another thread
 * than the task's context's. */
UVCHAN_EXTERN int uvchan_task_cancel(const uvchan_task_ref_t* ref);

/** 1 while the referenced task lives (spawned and not yet ended), else 0. */
UVCHAN_EXTERN int uvchan_task_alive(const uvchan_task_ref_t* ref);

/** Inside a task: 1 once it was cancelled (uvchan_task_cancel(), uvchan_ctx_shutdown()), else 0.
 * Outside a task: 0. */
UVCHAN_EXTERN int uvchan_task_cancelled(void);

/** The task running now, or NULL when called outside a task. */
UVCHAN_EXTERN uvchan_task_t* uvchan_task_self(void);
/** A task's name (attr.name), or NULL. */
UVCHAN_EXTERN const char* uvchan_task_name(const uvchan_task_t* task);
/** A task's number, unique within its context, counting from 1. */
UVCHAN_EXTERN uint64_t uvchan_task_id(const uvchan_task_t* task);

/* The blocking calls. Each may only be called from inside a task (else UV_EINVAL). An operation
 * that can complete at once does so without leaving the task; one that must wait parks the task
 * until the loop resumes it. They return what the callback form's callback would get, and
 * UV_ECANCELED once the task is cancelled.
 *
 * Cooperative budget: a task whose operations keep completing at once yields after
 * UVCHAN_TASK_BUDGET of them in a row (as tokio's coop budget does): every other ready task and
 * callback runs first, and once the loop iteration has been running for about 2 ms the loop
 * itself gets its turn (timers, I/O). So no task can starve the rest. A task that waits starts a
 * new run.
 *
 * Nil channels: a send, receive or select on a NULL channel (a select whose cases are all NULL)
 * blocks forever, as in Go: only a deadline, a cancel or a shutdown ends it, and the deadlock
 * report lists the task. */

/** ch <- *value: 0, UV_EPIPE (closed), UV_ECANCELED (channel destroyed, task cancelled). */
UVCHAN_EXTERN int uvchan_task_send(uvchan_t* ch, const void* value);
/** As uvchan_task_send(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_send_timeout(uvchan_t* ch, const void* value, uint64_t timeout);
/** *value = <-ch: 0, UV_EOF (closed and drained: `*value` is then the zero value), UV_ECANCELED. */
UVCHAN_EXTERN int uvchan_task_recv(uvchan_t* ch, void* value);
/** As uvchan_task_recv(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_recv_timeout(uvchan_t* ch, void* value, uint64_t timeout);
/** select { cases }: returns the index of the case that completed, with its status in `*status`
 * (may be NULL), or a negative error (UV_ECANCELED; UV_EINVAL for bad cases). With no usable case
 * it blocks forever (Go's `select {}`). */
UVCHAN_EXTERN int uvchan_task_select(uvchan_case_t* cases, unsigned n, int* status);
/** As uvchan_task_select(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_select_timeout(uvchan_case_t* cases, unsigned n, uint64_t timeout,
                                             int* status);
/** Reserves a slot of `ch` into `*permit` (see uvchan_reserve()): 0, UV_EPIPE (closed),
 * UV_ECANCELED; UV_EINVAL for an unbuffered channel or one with a dropping overflow policy. */
UVCHAN_EXTERN int uvchan_task_reserve(uvchan_t* ch, uvchan_permit_t* permit);
/** As uvchan_task_reserve(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_reserve_timeout(uvchan_t* ch, uvchan_permit_t* permit,
                                              uint64_t timeout);
/** Waits until `wg` counts 0. */
UVCHAN_EXTERN int uvchan_task_wg_wait(uvchan_wg_t* wg);
/** Sleeps `ms` milliseconds of loop time (on the context's deadline timer). */
UVCHAN_EXTERN int uvchan_task_sleep(uint64_t ms);
/** Lets every other ready task and callback run once, then continues (0, or UV_ECANCELED). */
UVCHAN_EXTERN int uvchan_task_yield(void);
/** Ends the calling task at once (as returning from its function would). Outside a task it returns
 * UV_EINVAL; inside it does not return. */
UVCHAN_EXTERN int uvchan_task_exit(void);

/* ------------------------------------------------------------------------------------------ */
/* Await: a task blocking on anything that ends in a libuv callback                            */

/** One operation outside uvchan that a task waits for: a uv_fs_t, a uv_work_t, a
 * uv_getaddrinfo_t, your own handle's event. The operation's callback reports its result with
 * uvchan_await_done(), which resumes the task.
 *
 *     static void on_stat(uv_fs_t* fs) { uvchan_await_done(fs->data, fs->result); }
 *     static void cancel_fs(uvchan_await_t* aw) { uv_cancel(aw->data); }
 *
 *     uv_fs_t fs; uvchan_await_t aw;
 *     uvchan_await_init(&aw, cancel_fs, NULL);
 *     aw.data = &fs; fs.data = &aw;
 *     if (uv_fs_stat(loop, &fs, path, on_stat) == 0)
 *       r = uvchan_task_await_timeout(&aw, 1000);   (the stat's result, or UV_ETIMEDOUT)
 *     uv_fs_req_cleanup(&fs);
 *
 * When a deadline, a cancel or a shutdown ends the wait first, uvchan calls `cancel` (if set),
 * once: it should make the operation's callback come soon (uv_cancel(), uv_close(), ...). Then:
 *   - without `release`, the task keeps waiting for uvchan_await_done(), so nothing the
 *     operation uses may be freed early; the call returns the operation's real result, or the
 *     deadline's or cancel's code (UV_ETIMEDOUT, UV_ECANCELED) when that result is UV_ECANCELED;
 *   - with `release`, the call returns UV_ETIMEDOUT / UV_ECANCELED at once, and the await is
 *     abandoned: the later uvchan_await_done() calls release(aw) instead, to free what the
 *     operation used. The await and the operation must then not live on the task's stack. */
struct uvchan_await_s {
  void* data;     /**< user data, untouched */
  ssize_t result; /**< read-only: the value given to uvchan_await_done() */
  /* private */
  uvchan_task_t* task_;
  uvchan_await_cb cancel_;
  uvchan_await_cb release_;
  int aborted_;
  unsigned state_;
  uint32_t magic_;
};

/** Prepares `aw` for one operation; `cancel` and `release` may be NULL (see uvchan_await_t).
 * Returns 0, or UV_EINVAL for a NULL `aw`. */
UVCHAN_EXTERN int uvchan_await_init(uvchan_await_t* aw, uvchan_await_cb cancel,
                                    uvchan_await_cb release);

/** Reports the operation's result, from its callback on the loop's thread: resumes the task
 * waiting in uvchan_task_await() (or, when it comes before the task waits, makes that wait return
 * at once), or calls `release` for an abandoned await. Call it once per operation. */
UVCHAN_EXTERN void uvchan_await_done(uvchan_await_t* aw, ssize_t result);

/** Blocks the running task until uvchan_await_done(aw, result) and returns `result`. Returns
 * UV_EINVAL outside a task or for an await not initialised, UV_ECANCELED as described at
 * uvchan_await_t. */
UVCHAN_EXTERN ssize_t uvchan_task_await(uvchan_await_t* aw);

/** As uvchan_task_await(), with a deadline of `timeout` ms (UV_ETIMEDOUT). */
UVCHAN_EXTERN ssize_t uvchan_task_await_timeout(uvchan_await_t* aw, uint64_t timeout);

/** Right after uvchan_task_await() returned (before the task blocks again): 1 if the wait was
 * abandoned, so that `aw` and the operation now belong to the release callback; 0 if the
 * operation ended and what it used is the caller's again, whatever its result (an operation may
 * itself fail with UV_ETIMEDOUT or UV_ECANCELED). */
UVCHAN_EXTERN int uvchan_await_abandoned(const uvchan_await_t* aw);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_TASK_H */
