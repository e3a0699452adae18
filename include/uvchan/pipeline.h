/* uvchan/pipeline.h: pipelines built on channels, usable from callbacks alone: stages (a function
 * between two channels, with parallelism, order kept or not, filters and several values per
 * input, sync or async), merge (fan-in), broadcast (every subscriber gets every value, with a
 * policy for a subscriber that lags), and the pipeline group that reports the first error and
 * stops the others. Include <uvchan.h>, which includes this.
 *
 * Every object here is caller-owned and follows the same life cycle, as a libuv handle:
 *   init (nothing runs yet) -> start(cb) (cb runs once, from the loop, when it has ended) ->
 *   close(cb) (stops it if it runs, waits for async work still in flight, then cb; the struct may
 *   be freed in or after cb).
 * The channels an object reads and writes are the caller's: they must stay initialised until the
 * object's close callback has run. */
#ifndef UVCHAN_PIPELINE_H
#define UVCHAN_PIPELINE_H

#include "uvchan/chan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uvchan_stage_s uvchan_stage_t;
typedef struct uvchan_job_s uvchan_job_t;
typedef struct uvchan_stage_opts_s uvchan_stage_opts_t;
typedef struct uvchan_merge_s uvchan_merge_t;
typedef struct uvchan_merge_opts_s uvchan_merge_opts_t;
typedef struct uvchan_broadcast_s uvchan_broadcast_t;
typedef struct uvchan_broadcast_opts_s uvchan_broadcast_opts_t;
typedef struct uvchan_sub_s uvchan_sub_t;
typedef struct uvchan_pipeline_s uvchan_pipeline_t;

/** A stage's function: called with one input. `value` points at the input, which the function
 * owns from now on (it frees it, or emits it). Synchronous stages: the job ends when the function
 * returns; 0 is success, a negative UV_E* code ends the stage with that error. Asynchronous
 * stages (UVCHAN_STAGE_ASYNC): returning 0 means "started", and the function (or the operation it
 * started) calls uvchan_job_done() exactly once later; a negative code means it failed at once and
 * uvchan_job_done() must not be called. Either way, uvchan_job_emit() sends results. */
typedef int (*uvchan_stage_fn)(uvchan_job_t* job, void* value);
/** A stage's end callback: status 0 when its input was closed and drained and everything it
 * emitted was sent (its output is then closed), else the error it ended with. */
typedef void (*uvchan_stage_cb)(uvchan_stage_t* stage, int status);
typedef void (*uvchan_stage_close_cb)(uvchan_stage_t* stage);
typedef void (*uvchan_merge_cb)(uvchan_merge_t* merge, int status);
typedef void (*uvchan_merge_close_cb)(uvchan_merge_t* merge);
typedef void (*uvchan_broadcast_cb)(uvchan_broadcast_t* bc, int status);
typedef void (*uvchan_broadcast_close_cb)(uvchan_broadcast_t* bc);
/** Makes a subscriber's own copy of `src` at `dst` (both elem_size bytes): for values that own
 * memory (a reference count to take, a buffer to duplicate). Returns 0, or a negative code to
 * end the broadcast with that error. */
typedef int (*uvchan_broadcast_copy_cb)(uvchan_broadcast_t* bc, void* dst, const void* src);
typedef void (*uvchan_pipeline_cb)(uvchan_pipeline_t* pipeline, int status);

/* The part every pipeline object shares: its place in its context and in its pipeline, and the
 * two notices (end, close) it queues on the context's completion queue. */
struct uvchan__pnode_s {
  struct uvchan__link_s plink; /* in the pipeline's member list */
  struct uvchan__res_s res;    /* the context closes it on a graceful shutdown */
  uvchan_ctx_t* ctx;
  uvchan_pipeline_t* pipeline;
  uvchan_req_t end_req;
  uvchan_req_t close_req;
  void (*end_cb)(void);
  void (*close_cb)(void);
  const struct uvchan__pnode_ops_s* ops; /* the hooks of an object defined elsewhere (stream.c) */
  size_t busy; /* requests and async jobs still to come back */
  int status;
  unsigned kind;
  unsigned state;
  uint32_t magic_;
};

/** Stage flags (uvchan_stage_opts_t.flags); merge takes UVCHAN_LEAVE_OPEN too. */
enum {
  /** The function is asynchronous: it ends each job with uvchan_job_done(). */
  UVCHAN_STAGE_ASYNC = 1u << 0,
  /** With parallelism above 1, values go out as jobs produce them, not in input order. */
  UVCHAN_STAGE_UNORDERED = 1u << 1,
  /** Take an input only once a slot of the output is reserved for it (uvchan_reserve()): the
   * stage never holds an input it has no room for downstream. The output must be buffered with
   * the blocking overflow policy, and its capacity also bounds the jobs in flight. */
  UVCHAN_STAGE_RESERVE = 1u << 2,
  /** Do not close the output at the end: for an output several writers share (close it
   * yourself, from the last end callback). */
  UVCHAN_LEAVE_OPEN = 1u << 3
};

/* ------------------------------------------------------------------------------------------ */
/* Stage                                                                                       */

/** Options of a stage; NULL means all zero: one synchronous job at a time, the output closed at
 * the end, no finish function, no pipeline. */
struct uvchan_stage_opts_s {
  unsigned parallel;           /**< jobs in flight at once, N (0 means 1) */
  unsigned flags;              /**< UVCHAN_STAGE_ASYNC, _UNORDERED, _RESERVE, UVCHAN_LEAVE_OPEN */
  uvchan_stage_fn finish;      /**< optional: run once as a last job (value NULL) after the input
                                    was drained, to emit what the stage accumulated */
  uvchan_pipeline_t* pipeline; /**< optional: the pipeline the stage is a member of */
};

/** One input being processed: valid from the call of the stage's function until it returns
 * (synchronous) or until uvchan_job_done() (asynchronous). */
struct uvchan_job_s {
  void* data;            /**< user data for this job, untouched */
  uvchan_stage_t* stage; /**< read-only: the stage it belongs to */
  uint64_t seq;          /**< read-only: the input's index, from 0 (the finish job: the count) */
  /* private */
  char* in_;   /* its input's buffer */
  char* outs_; /* values emitted and not yet sent, a ring of capout_ elements */
  size_t hout_;
  size_t nout_;
  size_t capout_;
  uvchan_job_t* next_; /* in the drain queue or the free list */
  uvchan_permit_t permit_;
  unsigned state_;
  uint32_t magic_;
};

/** Reads `in`, calls a function for each value, writes what it emits to `out`. At most
 * `parallel` jobs are in flight: a job holds its input from the moment it is taken until
 * everything it emitted has been sent, so a stage never holds more than N inputs (backpressure
 * reaches upstream). When `in` is closed and drained, the jobs done and their values sent, the
 * stage runs `finish` (if set), closes `out` and ends with 0. The first error ends it: see
 * uvchan_stage_start(). */
struct uvchan_stage_s {
  void* data;       /**< user data, untouched */
  int status;       /**< read-only: the error the stage ended with, 0 otherwise */
  uint64_t inputs;  /**< read-only: values taken from the input */
  uint64_t outputs; /**< read-only: values sent to the output */
  /* private */
  struct uvchan__pnode_s node_;
  uvchan_t* in_;
  uvchan_t* out_;
  uvchan_stage_fn fn_;
  uvchan_stage_fn finish_;
  unsigned flags_;
  unsigned par_;
  unsigned nfree_;
  unsigned intake_;
  unsigned pumping_;
  unsigned again_;
  unsigned sending_;
  unsigned finished_;
  unsigned held_;       /* permit_ holds a slot */
  unsigned ordered_;    /* jobs hold their place in the drain queue from their start */
  uvchan_job_t* infn_;  /* the job whose function is being called */
  uvchan_job_t* jobs_;
  uvchan_job_t* free_;
  uvchan_job_t* dhead_; /* the drain queue: jobs whose values go out next, oldest first */
  uvchan_job_t* dtail_;
  uvchan_job_t* rjob_;  /* the job a waiting receive fills */
  char* inbuf_;         /* par_ input elements, one per job */
  char* sendbuf_;       /* the value a waiting send holds */
  size_t in_size_;
  size_t out_size_;
  uvchan_permit_t permit_; /* reserved for the next input (UVCHAN_STAGE_RESERVE) */
  uvchan_recv_t recv_;
  uvchan_reserve_t reserve_;
  uvchan_send_t send_;
};

/** Initialises `stage` between channels `in` and `out` (they may differ in element size) with
 * function `fn`; nothing runs until uvchan_stage_start(). Allocates the job table here, once.
 * Returns 0; UV_EINVAL (a bad or closing context; a bad stage, channel or function; `in` ==
 * `out`; channels of another context; UVCHAN_STAGE_RESERVE with an unbuffered output or one
 * with a dropping overflow policy; unknown flags; parallelism above 65536 or overflowing the
 * input buffers; a pipeline not initialised, of another context, started or closing); UV_EBUSY (`stage` is live, or its close is under way);
 * UV_ECANCELED (the context is shutting down); UV_EPERM (wrong thread); UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_stage_init(uvchan_ctx_t* ctx, uvchan_stage_t* stage, uvchan_t* in,
                                    uvchan_t* out, uvchan_stage_fn fn,
                                    const uvchan_stage_opts_t* opts);

/** Starts the stage: it takes its first input from the loop, never inside this call. `cb` (may
 * be NULL) runs once, from the loop, when the stage has ended:
 *   - 0: the input was closed and drained, every job done, everything emitted sent, `finish`
 *     run, and the output closed (unless UVCHAN_LEAVE_OPEN);
 *   - a negative code: the function failed (its code), the output was closed under the stage
 *     (UV_EPIPE), a channel was destroyed or the context shut down (UV_ECANCELED), the stage was
 *     closed (UV_ECANCELED), or its pipeline failed (UV_ECANCELED). The stage then takes no more
 *     input, hands what it held to the output channel's element destructor (values emitted and
 *     not sent) or the input's (a value received and not yet given to the function), closes its
 *     output (unless UVCHAN_LEAVE_OPEN) so that downstream ends too, and records the code in
 *     stage->status. Async jobs still running finish in the background: their emits return
 *     UV_ECANCELED, and uvchan_stage_close() waits for their uvchan_job_done().
 * Returns 0; UV_EINVAL (bad stage; started already, or closing); UV_ECANCELED (shutdown);
 * UV_EPERM. */
UVCHAN_EXTERN int uvchan_stage_start(uvchan_stage_t* stage, uvchan_stage_cb cb);

/** Closes the stage: if it runs, it ends now with UV_ECANCELED (see uvchan_stage_start()); once
 * every async job has called uvchan_job_done() and every request of the stage has come back,
 * its memory is freed and `cb` (may be NULL) runs from the loop. The struct, and the channels,
 * must stay valid until then. Returns 0; UV_EINVAL (bad stage, or closing already); UV_EPERM. */
UVCHAN_EXTERN int uvchan_stage_close(uvchan_stage_t* stage, uvchan_stage_close_cb cb);

/** Sends `value` (the output's element size; NULL for size 0) downstream as a result of `job`.
 * The value is copied: at once to the output when the job is next in line and the output has
 * room, else into the job's queue, from which it goes out in emit order (and, unless the stage
 * is UVCHAN_STAGE_UNORDERED, after every value of earlier inputs). A value accepted here is sent
 * exactly once or, if the stage ends first, handed to the output's element destructor. Callable
 * any number of times while the job runs, from its function or from the operation it started.
 * Returns 0; UV_EINVAL (not a running job, or a NULL value with element size > 0); UV_ECANCELED
 * (the stage has ended: the value was not taken); UV_EPIPE (the output was closed under the
 * stage, which ends: the value was not taken); UV_ENOMEM; UV_EPERM (wrong thread). */
UVCHAN_EXTERN int uvchan_job_emit(uvchan_job_t* job, const void* value);

/** Ends an asynchronous job: 0 for success, a negative code to end the stage with that error.
 * Call it exactly once per job whose function returned 0, from the loop's thread (a
 * uv_queue_work() job calls it from its after-work callback); it may be called from inside the
 * function itself. The job's results go out as described at uvchan_job_emit(); a free job lets
 * the stage take its next input, so the job struct may serve a later input at once: do not touch
 * it after this call. Returns 0; UV_EINVAL (not a running async job: a synchronous stage's, or
 * one done and not reused yet); UV_EPERM (wrong thread). */
UVCHAN_EXTERN int uvchan_job_done(uvchan_job_t* job, int status);

/* ------------------------------------------------------------------------------------------ */
/* Merge (fan-in)                                                                              */

/** Options of a merge; NULL means none. */
struct uvchan_merge_opts_s {
  unsigned flags;              /**< UVCHAN_LEAVE_OPEN: do not close the output at the end */
  uvchan_pipeline_t* pipeline; /**< optional: the pipeline the merge is a member of */
};

/** Many channels into one: a value from any input goes to the output, each input's values in
 * their order, and inputs ready at once served at random (a select). It holds at most one value
 * at a time, so a slow output slows every input. When every input is closed and drained it
 * closes the output and ends with 0. */
struct uvchan_merge_s {
  void* data;       /**< user data, untouched */
  int status;       /**< read-only: the error the merge ended with, 0 otherwise */
  uint64_t outputs; /**< read-only: values forwarded */
  /* private */
  struct uvchan__pnode_s node_;
  uvchan_t* out_;
  uvchan_case_t* cases_;
  unsigned n_;
  unsigned nopen_;
  unsigned flags_;
  unsigned waiting_; /* 1: select waits; 2: send waits */
  char* buf_;
  uvchan_select_t sel_;
  uvchan_send_t send_;
};

/** Initialises `merge` from the `n` channels in `ins` (the array is copied; n >= 1, all
 * distinct, of the output's element size and context) into `out`. Returns 0; UV_EINVAL (a bad or
 * closing context, a bad or NULL argument, n == 0, a size or context mismatch, `out` among the
 * inputs, unknown flags, a bad pipeline as for stages); UV_EBUSY (`merge` is live);
 * UV_ECANCELED (shutdown); UV_EPERM; UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_merge_init(uvchan_ctx_t* ctx, uvchan_merge_t* merge, uvchan_t* const* ins,
                                    unsigned n, uvchan_t* out, const uvchan_merge_opts_t* opts);

/** Starts forwarding, from the loop. `cb` (may be NULL) runs once when the merge has ended: 0
 * when every input was closed and drained (the output is then closed), UV_EPIPE when the output
 * was closed under it, UV_ECANCELED when a channel was destroyed, the merge closed, the context
 * shut down or its pipeline failed. On an error the value it held goes to the output's element
 * destructor and the output is closed (unless UVCHAN_LEAVE_OPEN). Returns 0; UV_EINVAL (bad or
 * started merge); UV_ECANCELED (shutdown); UV_EPERM. */
UVCHAN_EXTERN int uvchan_merge_start(uvchan_merge_t* merge, uvchan_merge_cb cb);

/** Closes the merge (ending it with UV_ECANCELED if it runs); `cb` (may be NULL) runs from the
 * loop once its requests have come back and its memory is freed. Returns 0; UV_EINVAL (bad
 * merge, or closing already); UV_EPERM. */
UVCHAN_EXTERN int uvchan_merge_close(uvchan_merge_t* merge, uvchan_merge_close_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* Broadcast                                                                                   */

/** What a broadcast does with a subscriber whose buffer is full. */
typedef enum {
  UVCHAN_LAG_BLOCK = 0,   /**< wait for room: the slowest such subscriber paces the producer */
  UVCHAN_LAG_DROP_OLDEST, /**< drop the subscriber's oldest buffered value (a sliding window) */
  UVCHAN_LAG_DROP_NEWEST, /**< drop the new value for this subscriber */
  UVCHAN_LAG_DISCONNECT   /**< close the subscriber's channel: it drains what it has, then sees
                               UV_EOF, and its status says UV_ENOBUFS */
} uvchan_lag;

/** Options of a broadcast; NULL means plain values (copied byte for byte, nothing to destroy). */
struct uvchan_broadcast_opts_s {
  uvchan_broadcast_copy_cb copy; /**< optional: makes each subscriber's own copy */
  uvchan_elem_destroy_cb dtor;   /**< optional: destroys a value nobody will receive (see below) */
  uvchan_pipeline_t* pipeline;   /**< optional: the pipeline the broadcast is a member of */
};

/** One subscriber of a broadcast: a channel of its own, bounded, that the subscriber receives
 * from like any channel. */
struct uvchan_sub_s {
  void* data;    /**< user data, untouched */
  uvchan_t chan; /**< read-only: receive from it (uvchan_dropped() counts its drops) */
  int status;    /**< read-only: 0 while subscribed; UV_ENOBUFS once disconnected for lagging;
                      UV_EOF once the broadcast ended (its channel is closed); the broadcast's
                      error if it failed */
  /* private */
  struct uvchan__link_s link_;
  uvchan_broadcast_t* bc_;
  uvchan_lag policy_;
  uint32_t magic_;
};

/** Every value of one input channel, to every subscriber. Values are taken one at a time: the
 * broadcast offers a value to each subscriber in turn, then takes the next. A subscriber whose
 * buffer is full is handled by its policy (uvchan_lag): under the dropping policies and
 * DISCONNECT the producer never waits for it; under BLOCK it does.
 *
 * Value ownership. Without `copy`, values must own nothing: each subscriber gets a byte copy.
 * With `copy`, each subscriber gets copy(value), and the broadcast's own value then goes to
 * `dtor`. Either way `dtor` (also installed as each subscriber channel's element destructor)
 * receives every subscriber copy that is dropped or left in a buffer at teardown, and a value no
 * subscriber took (none subscribed, or the broadcast stopped first). */
struct uvchan_broadcast_s {
  void* data;       /**< user data, untouched */
  int status;       /**< read-only: the error the broadcast ended with, 0 otherwise */
  uint64_t inputs;  /**< read-only: values taken from the input */
  /* private */
  struct uvchan__pnode_s node_;
  uvchan_t* in_;
  uvchan_broadcast_copy_cb copy_;
  uvchan_elem_destroy_cb dtor_;
  struct uvchan__link_s subs_;
  struct uvchan__link_s* next_; /* the subscriber the current value goes to next */
  uvchan_sub_t* wsub_;          /* the subscriber a waiting send is for */
  char* cur_;                   /* the value being offered */
  char* tmp_;                   /* the copy being sent */
  size_t size_;
  unsigned have_;  /* cur_ holds a value */
  unsigned taken_; /* subscribers that took cur_ */
  unsigned waiting_; /* 1: receive waits; 2: send waits */
  unsigned pumping_;
  uvchan_recv_t recv_;
  uvchan_send_t send_;
};

/** Initialises `bc` to broadcast the values of `in`. `dtor` is called as dtor(channel, value):
 * a subscriber's channel for its copies, `in` for the broadcast's own values. Returns 0;
 * UV_EINVAL (a bad or closing context, a bad or NULL argument, `in` of another context, a bad
 * pipeline as for stages); UV_EBUSY (`bc` is live); UV_ECANCELED (shutdown); UV_EPERM;
 * UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_broadcast_init(uvchan_ctx_t* ctx, uvchan_broadcast_t* bc, uvchan_t* in,
                                        const uvchan_broadcast_opts_t* opts);

/** Adds subscriber `sub` with a buffer of `capacity` values and the lag policy `policy`. It
 * receives every value the broadcast offers from now on (subscribe before starting to miss
 * none). Callable before or after start. Returns 0; UV_EINVAL (bad broadcast or subscriber, a
 * policy that is none, capacity 0 with a policy other than BLOCK); UV_EBUSY (`sub` is
 * subscribed); UV_EPIPE (the broadcast has ended or is closing); UV_EPERM; UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_subscribe(uvchan_broadcast_t* bc, uvchan_sub_t* sub, size_t capacity,
                                   uvchan_lag policy);

/** Removes `sub` now: values in its buffer go to the broadcast's `dtor`, receives waiting on its
 * channel complete with UV_ECANCELED, and a value the broadcast was waiting to hand it is
 * destroyed. The struct may be reused on return. Returns 0; UV_EINVAL (not subscribed);
 * UV_EPERM. */
UVCHAN_EXTERN int uvchan_unsubscribe(uvchan_sub_t* sub);

/** Starts broadcasting, from the loop. `cb` (may be NULL) runs once when it has ended: 0 when the
 * input was closed and drained (every subscriber's channel is then closed: each drains what it
 * has and sees UV_EOF); UV_ECANCELED when a channel was destroyed, the broadcast closed, the
 * context shut down or its pipeline failed; a `copy` error. On an error the value in hand is
 * destroyed and the subscribers' channels are closed. Returns 0; UV_EINVAL (bad or started
 * broadcast); UV_ECANCELED (shutdown); UV_EPERM. */
UVCHAN_EXTERN int uvchan_broadcast_start(uvchan_broadcast_t* bc, uvchan_broadcast_cb cb);

/** Closes the broadcast (ending it with UV_ECANCELED if it runs) and unsubscribes every
 * subscriber (uvchan_unsubscribe()); `cb` (may be NULL) runs from the loop once its requests
 * have come back. Returns 0; UV_EINVAL (bad broadcast, or closing already); UV_EPERM. */
UVCHAN_EXTERN int uvchan_broadcast_close(uvchan_broadcast_t* bc, uvchan_broadcast_close_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* Pipeline: a group of stages, merges and broadcasts that succeed or fail together            */

/** Go's errgroup for pipeline objects. Members join at their init (opts.pipeline). The first
 * member to end with an error sets `status`, and every other running member is ended with
 * UV_ECANCELED at once (each closes its output, so sinks see the end); the pipeline's callback
 * runs once every member has ended. */
struct uvchan_pipeline_s {
  void* data; /**< user data, untouched */
  int status; /**< read-only: the first error a member ended with, or 0 */
  /* private */
  uvchan_ctx_t* ctx_;
  struct uvchan__link_s members_;
  size_t nrunning_; /* members that have not ended */
  uvchan_req_t end_req_;
  uvchan_req_t close_req_;
  uvchan_pipeline_cb cb_;
  uvchan_pipeline_cb close_cb_;
  unsigned state_;
  uint32_t magic_;
};

/** Initialises an empty pipeline on `ctx`. Returns 0; UV_EINVAL (bad context, NULL pipeline);
 * UV_EBUSY (`pipeline` is live); UV_ECANCELED (shutdown); UV_EPERM. */
UVCHAN_EXTERN int uvchan_pipeline_init(uvchan_ctx_t* ctx, uvchan_pipeline_t* pipeline);

/** Starts every member not started yet and seals the pipeline (no member may join after). `cb`
 * (may be NULL) runs once, from the loop, when every member has ended, with the first error or
 * 0. Members' own end callbacks (given to their start, or NULL here) run before it. Returns 0;
 * UV_EINVAL (bad pipeline, or started already); UV_ECANCELED (shutdown); UV_EPERM. */
UVCHAN_EXTERN int uvchan_pipeline_start(uvchan_pipeline_t* pipeline, uvchan_pipeline_cb cb);

/** Closes every member (as their own close would) and then the pipeline: `cb` (may be NULL) runs
 * from the loop once every member's close is complete; members and pipeline may then be freed.
 * Returns 0; UV_EINVAL (bad pipeline, or closing already); UV_EPERM. */
UVCHAN_EXTERN int uvchan_pipeline_close(uvchan_pipeline_t* pipeline, uvchan_pipeline_cb cb);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_PIPELINE_H */
