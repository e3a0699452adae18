/* uvchan/task.h: tasks, coroutines on the loop that block in channel operations as goroutines do.
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
 * UVCHAN_MAX_STACK_SIZE], or ctx closing); UV_ENOMEM (no memory or mapping for the stack, or
 * attr.guard_page past the mapping budget of mprotect guards). */
UVCHAN_EXTERN int uvchan_task_spawn(uvchan_ctx_t* ctx, uvchan_task_fn fn, void* arg,
                                    const uvchan_task_attr_t* attr);

/** The task running now, or NULL when called outside a task. */
UVCHAN_EXTERN uvchan_task_t* uvchan_task_self(void);
/** A task's name (attr.name), or NULL. */
UVCHAN_EXTERN const char* uvchan_task_name(const uvchan_task_t* task);
/** A task's number, unique within its context, counting from 1. */
UVCHAN_EXTERN uint64_t uvchan_task_id(const uvchan_task_t* task);

/* The blocking calls. Each may only be called from inside a task (else UV_EINVAL). An operation
 * that can complete at once does so without leaving the task; one that must wait parks the task
 * until the loop resumes it. They return what the callback form's callback would get. */

/** ch <- *value: 0, UV_EPIPE (closed), UV_ECANCELED (channel destroyed). */
UVCHAN_EXTERN int uvchan_task_send(uvchan_t* ch, const void* value);
/** As uvchan_task_send(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_send_timeout(uvchan_t* ch, const void* value, uint64_t timeout);
/** *value = <-ch: 0, UV_EOF (closed and drained), UV_ECANCELED. */
UVCHAN_EXTERN int uvchan_task_recv(uvchan_t* ch, void* value);
/** As uvchan_task_recv(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_recv_timeout(uvchan_t* ch, void* value, uint64_t timeout);
/** select { cases }: returns the index of the case that completed, with its status in `*status`
 * (may be NULL), or a negative error. */
UVCHAN_EXTERN int uvchan_task_select(uvchan_case_t* cases, unsigned n, int* status);
/** As uvchan_task_select(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_select_timeout(uvchan_case_t* cases, unsigned n, uint64_t timeout,
                                             int* status);
/** Waits until `wg` counts 0. */
UVCHAN_EXTERN int uvchan_task_wg_wait(uvchan_wg_t* wg);
/** Sleeps `ms` milliseconds of loop time (on the context's deadline timer). */
UVCHAN_EXTERN int uvchan_task_sleep(uint64_t ms);
/** Lets every other ready task and callback run once, then continues. */
UVCHAN_EXTERN int uvchan_task_yield(void);
/** Ends the calling task at once (as returning from its function would). Outside a task it returns
 * UV_EINVAL; inside it does not return. */
UVCHAN_EXTERN int uvchan_task_exit(void);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_TASK_H */
