/* Tasks: coroutines on the loop, built on the same requests and completion queue as callbacks.
 *
 * A task that must wait fills in the request embedded in its own struct, links it like any
 * request, and leaves. Whoever completes that request queues it, and the completion delivery
 * (ctx.c) resumes the task instead of calling a callback: there is no second scheduler, and a
 * woken task runs in completion order, within the loop's delivery, never inside the call that
 * woke it. A task that leaves switches straight to the next task when that task's resumption is
 * at the head of the queue (one switch per wake-up, as in Go), and to the loop's stack when a
 * callback is next, the queue is empty or the batch is spent. An operation that can complete at
 * once does so without a switch.
 *
 * Stacks come from stack.c: the task struct sits at the top of its own stack, so a new task
 * touches one page. */
#include "uvchan-internal.h"
#include "fiber.h"

#include <stdlib.h>

#if defined(UVCHAN__ASAN)
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old,
                                     size_t* size_old);
#define UVCHAN__ASAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define UVCHAN__ASAN_FINISH(save, bottom, size) __sanitizer_finish_switch_fiber(save, bottom, size)
#else
#define UVCHAN__ASAN_START(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#define UVCHAN__ASAN_FINISH(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#endif

/* ThreadSanitizer follows the switches between task stacks as switches between its fibers: each
 * task gets one, and the loop's side is whatever fiber runs the loop's thread. */
#if defined(__SANITIZE_THREAD__)
#define UVCHAN__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UVCHAN__TSAN 1
#endif
#endif

#if defined(UVCHAN__TSAN)
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
#define UVCHAN__TSAN_SWITCH(fiber) __tsan_switch_to_fiber((fiber), 0)
#else
#define UVCHAN__TSAN_SWITCH(fiber) ((void)0)
#endif

enum { UVCHAN__TASK_READY = 0, UVCHAN__TASK_RUNNING, UVCHAN__TASK_PARKED, UVCHAN__TASK_DEAD };

/* Task flags. */
enum { UVCHAN__TASK_CANCELLED = 1u << 0 };

enum {
  UVCHAN__TURN_MS = 2 /* the longest a task keeps the loop from polling */
};
struct uvchan_task_s {
  struct uvchan__link_s link; /* first: ctx->tasks_ (the report walks it) */
  union {
    uvchan_req_t req;
    uvchan_select_t sel;
  } r; /* the one request a task can have pending */
  uvchan__fiber_t fiber;
  uvchan_ctx_t* ctx;
  uvchan_task_fn fn;
  void* arg;
  const char* name;
  uvchan_wg_t* wg;
  uvchan__stack_t stack;
  void* fake_stack; /* AddressSanitizer's fake stack while switched out */
  uint64_t id;
  unsigned state;
  unsigned flags;
  /* Operations left before the task gives the loop a turn; counts down on every blocking call
   * and is refilled (to coop_refill) whenever the task waits. A cancelled task refills to 1, so
   * every call takes the slow path that returns UV_ECANCELED. */
  unsigned coop;
  unsigned coop_refill;
#if defined(UVCHAN__TSAN)
  void* tsan_fiber;
#endif
};

/* Per-context task runtime, allocated with the first task. */
struct uvchan__rt_s {
  uvchan__fiber_t sched; /* the loop's side while a task runs */
  void* sched_fake;
  const void* sched_bottom;
  size_t sched_size;
  int from_sched;     /* ASan builds: the switch in flight left the loop's stack */
#if defined(UVCHAN__TSAN)
  void* tsan_sched; /* the fiber of the loop's side */
#endif
  uvchan_task_t* dead; /* a finished task whose stack is freed after the switch off it */
  uvchan__stacks_t stacks;
};

static UVCHAN__TLS uvchan_task_t* uvchan__current;

/* Task struct bytes reserved at the top of each stack, keeping the stack top 64-aligned. */
#define UVCHAN__TASK_BYTES ((sizeof(uvchan_task_t) + 63) & ~(size_t)63)

void uvchan__task_pools_free(uvchan_ctx_t* ctx) {
  struct uvchan__rt_s* rt = (struct uvchan__rt_s*)ctx->pools_;
  if (rt == NULL)
    return;
  uvchan__stacks_free(&rt->stacks);
  free(rt);
  ctx->pools_ = NULL;
}

const uvchan__stack_t* uvchan__task_stack(const uvchan_task_t* t) {
  return &t->stack;
}

uvchan__stacks_t* uvchan__task_stacks(uvchan_ctx_t* ctx) {
  struct uvchan__rt_s* rt = (struct uvchan__rt_s*)ctx->pools_;
  return rt != NULL ? &rt->stacks : NULL;
}

/* ---- switching ---- */

/* Bytes of t's stack below the task struct: what ASan is told the stack is. */
#define UVCHAN__STACK_SPAN(t) ((size_t)((char*)(t) - (t)->stack.lo))

/* Leaves the running task `t`: hands over to the next task waiting in the completion queue when
 * there is one (a task-to-task switch, as Go's scheduler does), else returns to the loop, which
 * delivers the next callback or polls. Either way the order is the queue's. `fake` keeps t's
 * ASan fake stack; NULL for a task that never runs again. Returns 0 when `t` was itself next (a
 * yield with nothing else ready) and carries on without a switch, 1 after switching back. */
static int uvchan__task_leave(uvchan_task_t* t, void** fake) {
  struct uvchan__rt_s* rt = (struct uvchan__rt_s*)t->ctx->pools_;
  uvchan_req_t* req = t->ctx->qhead_;
  uvchan_task_t* next;

  uvchan__stack_check(&t->stack, t);
  /* A request to finish first (thread.c) takes the loop's way, which finishes it. */
  if (req != NULL && (req->state_ & (UVCHAN__REQ_TASK | UVCHAN__REQ_FINISH)) == UVCHAN__REQ_TASK &&
      t->ctx->budget_ > 0 && !t->ctx->loop->stop_flag) {
    t->ctx->budget_--;
    next = UVCHAN__CONTAINER_OF(uvchan__queue_take(t->ctx), uvchan_task_t, r.req);
    next->state = UVCHAN__TASK_RUNNING;
    uvchan__current = next;
    if (next == t)
      return 0;
    UVCHAN__ASAN_START(fake, next->stack.lo, UVCHAN__STACK_SPAN(next));
    UVCHAN__TSAN_SWITCH(next->tsan_fiber);
    uvchan__fiber_switch(&t->fiber, &next->fiber);
  } else {
    uvchan__current = NULL;
    UVCHAN__ASAN_START(fake, rt->sched_bottom, rt->sched_size);
    UVCHAN__TSAN_SWITCH(rt->tsan_sched);
    uvchan__fiber_switch(&t->fiber, &rt->sched);
  }
  return 1;
}

/* Frees the stack of the task that ended with the switch just made, now that no one runs on it. */
static void uvchan__task_reap(struct uvchan__rt_s* rt) {
  uvchan_task_t* dead = rt->dead;
  rt->dead = NULL;
#if defined(UVCHAN__TSAN)
  __tsan_destroy_fiber(dead->tsan_fiber);
#endif
  uvchan__stack_put(&dead->stack);
}

/* Runs on every stack right after a switch lands there: completes ASan's switch (learning the
 * loop stack's bounds when the switch came from there) and reaps a task that ended with it. */
UVCHAN__INLINE void uvchan__task_landed(struct uvchan__rt_s* rt, void* fake) {
#if defined(UVCHAN__ASAN)
  const void* bottom;
  size_t size;
  UVCHAN__ASAN_FINISH(fake, &bottom, &size);
  if (rt->from_sched) {
    rt->sched_bottom = bottom;
    rt->sched_size = size;
    rt->from_sched = 0;
  }
#else
  (void)fake;
#endif
  if (UVCHAN__UNLIKELY(rt->dead != NULL))
    uvchan__task_reap(rt);
}

/* Parks the running task until its request completes; a task that waited starts a new run of
 * its cooperative budget. */
static void uvchan__task_park(uvchan_task_t* t) {
  t->state = UVCHAN__TASK_PARKED;
  if (uvchan__task_leave(t, &t->fake_stack))
    uvchan__task_landed((struct uvchan__rt_s*)t->ctx->pools_, t->fake_stack);
  t->coop = t->coop_refill;
}

static void uvchan__task_finish(uvchan_task_t* t) {
  uvchan_ctx_t* ctx = t->ctx;
  struct uvchan__rt_s* rt = (struct uvchan__rt_s*)ctx->pools_;

  t->state = UVCHAN__TASK_DEAD;
  uvchan__list_remove(&t->link);
  ctx->ntasks_--;
  if (t->wg != NULL)
    (void)uvchan_wg_done(t->wg);
  /* Whoever runs next frees this stack once it is off it. A task's own completion is never in
   * the queue while it runs, so the switch below always leaves. */
  rt->dead = t;
  uvchan__task_leave(t, NULL);
  abort(); /* a dead task is never switched to */
}

static void uvchan__task_entry(void* arg) {
  uvchan_task_t* t = (uvchan_task_t*)arg;
  uvchan__task_landed((struct uvchan__rt_s*)t->ctx->pools_, NULL);
  t->fn(t->arg);
  uvchan__task_finish(t);
}

/* The loop's side: switches to the task owning `req`; returns when a task hands back. */
void uvchan__task_resume(uvchan_req_t* req) {
  uvchan_task_t* t = UVCHAN__CONTAINER_OF(req, uvchan_task_t, r.req);
  struct uvchan__rt_s* rt = (struct uvchan__rt_s*)t->ctx->pools_;

  uvchan__stack_thread_enter();
  uvchan__current = t;
  t->state = UVCHAN__TASK_RUNNING;
#if defined(UVCHAN__ASAN)
  rt->from_sched = 1;
#endif
  UVCHAN__ASAN_START(&rt->sched_fake, t->stack.lo, UVCHAN__STACK_SPAN(t));
#if defined(UVCHAN__TSAN)
  rt->tsan_sched = __tsan_get_current_fiber();
#endif
  UVCHAN__TSAN_SWITCH(t->tsan_fiber);
  uvchan__fiber_switch(&rt->sched, &t->fiber);
  uvchan__task_landed(rt, rt->sched_fake);
}

uvchan_task_t* uvchan__req_task(const uvchan_req_t* req) {
  if (!(req->state_ & UVCHAN__REQ_TASK))
    return NULL;
  return UVCHAN__CONTAINER_OF(req, uvchan_task_t, r.req);
}

int uvchan__task_waits_elsewhere(uvchan_task_t* t, uvchan_waiting_t* info) {
  uvchan_req_t* req = &t->r.req;
  unsigned i;

  if (t->state != UVCHAN__TASK_PARKED || !(req->state_ & UVCHAN__REQ_WAITING))
    return 0;
  if (req->type == UVCHAN_REQ_WG_WAIT || req->w_.chan != NULL)
    return 0; /* in a wait group's or a channel's queue: the walk finds it there */
  if (req->type == UVCHAN_REQ_SELECT && t->r.sel.xsel_)
    return 0; /* it waits on a shared channel (or was completed): the walk finds it there */
  if (req->type == UVCHAN_REQ_SELECT)
    for (i = 0; i < t->r.sel.ncases_; i++)
      if (t->r.sel.cases_[i].w_.link.next != NULL)
        return 0;
  info->req = req;
  info->task = t;
  info->type = req->type;
  info->chan = NULL;
  info->op = req->type <= UVCHAN_REQ_RECV ? (uvchan_op)req->w_.op : (uvchan_op)0;
  info->cases = req->type == UVCHAN_REQ_SELECT ? t->r.sel.cases_ : NULL;
  info->ncases = req->type == UVCHAN_REQ_SELECT ? t->r.sel.ncases_ : 0;
  return 1;
}

uvchan_task_t* uvchan__task_current(void) {
  return uvchan__current;
}

uvchan_req_t* uvchan__task_own_req(uvchan_task_t* t) {
  return &t->r.req;
}

int uvchan__task_block(uvchan_task_t* t) {
  uvchan__task_park(t);
  return t->r.req.status;
}

void uvchan__task_cancel(uvchan_task_t* t) {
  uvchan_req_t* req = &t->r.req;
  t->flags |= UVCHAN__TASK_CANCELLED;
  t->coop = 1;
  t->coop_refill = 1;
  /* A wait not yet matched ends now; one already matched reports its real outcome. */
  if (t->state == UVCHAN__TASK_PARKED && (req->state_ & UVCHAN__REQ_WAITING) &&
      !(req->state_ & UVCHAN__REQ_QUEUED))
    uvchan__abort(req, UV_ECANCELED, UVCHAN_TRACE_CANCEL);
}

/* ---- the task's request ---- */

/* Prepares the running task's one request for a blocking call of `type`. */
static uvchan_req_t* uvchan__task_req(uvchan_task_t* t, uvchan_req_type type) {
  uvchan__req_prepare(&t->r.req, t->ctx, type, NULL, UVCHAN__REQ_TASK);
  return &t->r.req;
}

/* Ends a blocking call: a request that completed at once (`done`) has nothing left to cancel and
 * costs no switch; one that waits parks the task until its completion resumes it. */
static int uvchan__task_await(uvchan_task_t* t, uvchan_req_t* req, int done) {
  if (done)
    req->magic_ = 0;
  else
    uvchan__task_park(t);
  return req->status;
}

/* What the budget's slow path returns after a yield: anything the call checked before it may
 * have been destroyed meanwhile, so the call checks again (and fails with UV_ECANCELED, as it
 * would had the object been destroyed while it waited). */
#define UVCHAN__YIELDED 1

/* The slow path of a blocking call whose budget ran out: a cancelled task's call fails; any other
 * task yields once (tokio's coop budget), then its call goes on. The yield lets every other ready
 * task and callback run; when this loop iteration has been delivering for
 * UVCHAN__TURN_MS already, it also ends the delivery, so that timers and I/O get their turn
 * without a poll every UVCHAN_TASK_BUDGET operations. The call that yields counts in the next
 * run, so every run is UVCHAN_TASK_BUDGET operations long. */
static UVCHAN__NOINLINE int uvchan__task_coop(uvchan_task_t* t) {
  uvchan_req_t* req;
  if (!(t->flags & UVCHAN__TASK_CANCELLED)) {
    if (uv_hrtime() / 1000000 >= uv_now(t->ctx->loop) + UVCHAN__TURN_MS)
      t->ctx->budget_ = 0;
    req = uvchan__task_req(t, UVCHAN_REQ_TASK);
    uvchan__complete(req, 0);
    uvchan__task_await(t, req, 0);
    if (!(t->flags & UVCHAN__TASK_CANCELLED)) {
      t->coop = UVCHAN_TASK_BUDGET;
      return UVCHAN__YIELDED;
    }
  }
  t->coop = 1;
  return UV_ECANCELED;
}

/* Spends one unit of the running task's budget: 0 to go on, UVCHAN__YIELDED to go on after
 * checking again what the call uses, or UV_ECANCELED. */
UVCHAN__INLINE int uvchan__task_spend(uvchan_task_t* t) {
  if (UVCHAN__LIKELY(--t->coop != 0))
    return 0;
  return uvchan__task_coop(t);
}

int uvchan__task_spend_self(void) {
  int r = uvchan__task_spend(uvchan__current);
  return r < 0 ? r : 0; /* after a yield (UVCHAN__YIELDED) the caller checks its arguments */
}

/* Parks the running task forever, as a blocking call on Go's nil channel: only its deadline, a
 * cancel or a shutdown ends the wait. The request waits in no queue. */
static int uvchan__task_block_nil(uvchan_task_t* t, uvchan_req_type type, unsigned op,
                                  uint64_t timeout, int has_deadline) {
  uvchan_req_t* req = uvchan__task_req(t, type);
  req->w_.op = op;
  req->state_ |= UVCHAN__REQ_WAITING;
  if (has_deadline)
    uvchan__deadline_add(req, timeout);
  return uvchan__task_block(t);
}

/* A send or receive that is not an ordinary one: on an end of a shared channel, on a nil
 * channel (which blocks forever), or outside a task, on a bad channel or one of another context
 * (UV_EINVAL). Kept out of line, so that it costs the fast path nothing. */
static UVCHAN__NOINLINE int uvchan__task_op_odd(uvchan_task_t* t, uvchan_t* ch, void* value,
                                                unsigned op, uint64_t timeout, int has_deadline) {
  int status;
  if (t == NULL)
    return UV_EINVAL;
  if (ch == NULL) {
    if ((status = uvchan__task_spend(t)) < 0)
      return status;
    return uvchan__task_block_nil(t, op == UVCHAN_OP_SEND ? UVCHAN_REQ_SEND : UVCHAN_REQ_RECV,
                                  op, timeout, has_deadline);
  }
  if (!uvchan__chan_shared(ch) || ch->ctx_ != t->ctx ||
      (op == UVCHAN_OP_SEND && value == NULL && ch->elem_size_ != 0))
    return UV_EINVAL;
  if ((status = uvchan__task_spend(t)) != 0) {
    if (status < 0)
      return status;
    if (!uvchan__chan_shared(ch)) /* destroyed during the yield */
      return UV_ECANCELED;
  }
  t->r.req.type = op == UVCHAN_OP_SEND ? UVCHAN_REQ_SEND : UVCHAN_REQ_RECV;
  t->r.req.magic_ = UVCHAN__REQ_MAGIC;
  status = uvchan__x_start(&t->r.req, ch, value, op, timeout, has_deadline);
  if (status != UVCHAN__MUST_WAIT) {
    t->r.req.magic_ = 0; /* completed at once: not pending */
    return status;
  }
  return uvchan__task_block(t);
}

/* ---- spawning ---- */

static int uvchan__spawn(uvchan_ctx_t* ctx, uvchan_task_ref_t* ref, uvchan_task_fn fn, void* arg,
                         const uvchan_task_attr_t* attr) {
  size_t size = attr != NULL ? attr->stack_size : 0;
  struct uvchan__rt_s* rt;
  uvchan__stack_t st;
  uvchan_task_t* t;
  char* top;
  int err;

  if (!uvchan__ctx_ok(ctx) || fn == NULL || (ctx->flags_ & UVCHAN__CTX_CLOSING))
    return UV_EINVAL;
  if ((err = UVCHAN__GATE(ctx, NULL)) != 0)
    return err;
  if (!uvchan__stack_size_ok(size))
    return UV_EINVAL;
  if (attr != NULL && attr->wg != NULL &&
      (attr->wg->magic_ != UVCHAN__WG_MAGIC || attr->wg->ctx_ != ctx))
    return UV_EINVAL;

  rt = (struct uvchan__rt_s*)ctx->pools_;
  if (rt == NULL) {
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
      return UV_ENOMEM;
    err = uvchan__stacks_init(&rt->stacks, ctx);
    if (err != 0) {
      free(rt);
      return err;
    }
    ctx->pools_ = rt;
  }
  err = uvchan__stack_get(&rt->stacks, size, UVCHAN__TASK_BYTES, attr != NULL && attr->guard_page,
                          &st, &top);
  if (err != 0)
    return err;

  t = (uvchan_task_t*)(top - UVCHAN__TASK_BYTES);
  memset(t, 0, sizeof(*t));
  t->ctx = ctx;
  t->fn = fn;
  t->arg = arg;
  t->stack = st;
  t->id = ctx->next_task_id_++;
  /* A run's count includes the call that ends it, so a run of BUDGET calls starts at BUDGET + 1
   * (after a park; after a yield the yielding call is the run's first: see uvchan__task_coop). */
  t->coop = UVCHAN_TASK_BUDGET + 1;
  t->coop_refill = UVCHAN_TASK_BUDGET + 1;
  if (ref != NULL) {
    ref->task = t;
    ref->id = t->id;
  }
  if (attr != NULL) {
    t->name = attr->name;
    t->wg = attr->wg;
  }
#if defined(UVCHAN__TSAN)
  t->tsan_fiber = __tsan_create_fiber(0);
#endif
  uvchan__fiber_make(&t->fiber, st.lo, (char*)t, uvchan__task_entry, t);
  uvchan__list_push(&ctx->tasks_, &t->link);
  ctx->ntasks_++;
  if (t->wg != NULL)
    (void)uvchan_wg_add(t->wg, 1);
  /* The start is a completion like any other: the task first runs from the loop. */
  uvchan__complete(uvchan__task_req(t, UVCHAN_REQ_TASK), 0);
  return 0;
}

int uvchan_task_spawn(uvchan_ctx_t* ctx, uvchan_task_fn fn, void* arg,
                      const uvchan_task_attr_t* attr) {
  return uvchan__spawn(ctx, NULL, fn, arg, attr);
}

int uvchan_task_spawn_ref(uvchan_ctx_t* ctx, uvchan_task_ref_t* ref, uvchan_task_fn fn, void* arg,
                          const uvchan_task_attr_t* attr) {
  if (ref == NULL)
    return UV_EINVAL;
  return uvchan__spawn(ctx, ref, fn, arg, attr);
}

uvchan_task_t* uvchan_task_self(void) {
  return uvchan__current;
}

int uvchan_task_ref_self(uvchan_task_ref_t* ref) {
  if (ref == NULL || uvchan__current == NULL)
    return UV_EINVAL;
  ref->task = uvchan__current;
  ref->id = uvchan__current->id;
  return 0;
}

/* A reference names a live task when the struct it points at still carries its id: task structs
 * live in stack chunks that stay mapped until the context closes, and ids are never reused, so
 * an ended task's struct (reused by a later task, or released to zeros) never matches. */
static uvchan_task_t* uvchan__ref_task(const uvchan_task_ref_t* ref) {
  uvchan_task_t* t = ref->task;
  if (t->id != ref->id || t->state == UVCHAN__TASK_DEAD)
    return NULL;
  return t;
}

int uvchan_task_cancel(const uvchan_task_ref_t* ref) {
  uvchan_task_t* t;
  if (ref == NULL || ref->task == NULL || ref->id == 0)
    return UV_EINVAL;
  if ((t = uvchan__ref_task(ref)) == NULL)
    return UV_ESRCH;
  if (!UVCHAN__ON_THREAD(t->ctx))
    return UV_EPERM;
  uvchan__task_cancel(t);
  return 0;
}

int uvchan_task_alive(const uvchan_task_ref_t* ref) {
  if (ref == NULL || ref->task == NULL || ref->id == 0)
    return 0;
  return uvchan__ref_task(ref) != NULL;
}

int uvchan_task_cancelled(void) {
  return uvchan__current != NULL && (uvchan__current->flags & UVCHAN__TASK_CANCELLED) != 0;
}

const char* uvchan_task_name(const uvchan_task_t* task) {
  return task != NULL ? task->name : NULL;
}

uint64_t uvchan_task_id(const uvchan_task_t* task) {
  return task != NULL ? task->id : 0;
}

/* ---- blocking calls ---- */

/* The body of the four blocking send/receive calls, inlined into each. An operation that can
 * complete now touches nothing of the task's request; only one that must wait prepares it. */
UVCHAN__INLINE int uvchan__task_op(uvchan_t* ch, void* value, unsigned op, uint64_t timeout,
                                   int has_deadline) {
  uvchan_task_t* t = uvchan__current;
  uvchan_req_t* req;
  int status;

  if (UVCHAN__UNLIKELY(t == NULL || !uvchan__chan_ok(ch) || ch->ctx_ != t->ctx))
    return uvchan__task_op_odd(t, ch, value, op, timeout, has_deadline);
  if (UVCHAN__UNLIKELY(op == UVCHAN_OP_SEND && value == NULL && ch->elem_size_ != 0))
    return UV_EINVAL;
  if (UVCHAN__UNLIKELY((status = uvchan__task_spend(t)) != 0)) {
    if (status < 0)
      return status;
    if (!uvchan__chan_ok(ch)) /* destroyed during the yield */
      return UV_ECANCELED;
  }
  req = &t->r.req;
  status = op == UVCHAN_OP_SEND ? uvchan__send_now(ch, value, req)
                                : uvchan__recv_now(ch, value, req);
  if (status != UVCHAN__MUST_WAIT)
    return status;
  /* A task's request keeps ctx_, cb_ (NULL) and state_ (UVCHAN__REQ_TASK) from spawn to exit,
   * and uvchan__wait fills the waiter: the type and the pending mark are all that change. */
  req->type = op == UVCHAN_OP_SEND ? UVCHAN_REQ_SEND : UVCHAN_REQ_RECV;
  req->magic_ = UVCHAN__REQ_MAGIC;
  uvchan__wait(ch, &req->w_, req, value, op, 0);
  if (has_deadline)
    uvchan__deadline_add(req, timeout);
  uvchan__task_park(t);
  return req->status;
}

int uvchan_task_send(uvchan_t* ch, const void* value) {
  return uvchan__task_op(ch, (void*)value, UVCHAN_OP_SEND, 0, 0);
}

int uvchan_task_send_timeout(uvchan_t* ch, const void* value, uint64_t timeout) {
  return uvchan__task_op(ch, (void*)value, UVCHAN_OP_SEND, timeout, 1);
}

int uvchan_task_recv(uvchan_t* ch, void* value) {
  return uvchan__task_op(ch, value, UVCHAN_OP_RECV, 0, 0);
}

int uvchan_task_recv_timeout(uvchan_t* ch, void* value, uint64_t timeout) {
  return uvchan__task_op(ch, value, UVCHAN_OP_RECV, timeout, 1);
}

static int uvchan__task_reserve(uvchan_t* ch, uvchan_permit_t* permit, uint64_t timeout,
                                int has_deadline) {
  uvchan_task_t* t = uvchan__current;
  uvchan_req_t* req;
  int status;

  if (t == NULL || permit == NULL || !uvchan__chan_ok(ch) || ch->ctx_ != t->ctx ||
      !uvchan__reservable(ch))
    return UV_EINVAL;
  if ((status = uvchan__task_spend(t)) != 0) {
    if (status < 0)
      return status;
    if (!uvchan__chan_ok(ch)) /* destroyed during the yield */
      return UV_ECANCELED;
    if (!uvchan__reservable(ch)) /* an overflow policy set during the yield */
      return UV_EINVAL;
  }
  status = uvchan__reserve_now(ch, permit);
  if (status != UVCHAN__MUST_WAIT)
    return status;
  req = uvchan__task_req(t, UVCHAN_REQ_RESERVE);
  uvchan__wait(ch, &req->w_, req, permit, UVCHAN_OP_RESERVE, 0);
  if (has_deadline)
    uvchan__deadline_add(req, timeout);
  return uvchan__task_await(t, req, 0);
}

int uvchan_task_reserve(uvchan_t* ch, uvchan_permit_t* permit) {
  return uvchan__task_reserve(ch, permit, 0, 0);
}

int uvchan_task_reserve_timeout(uvchan_t* ch, uvchan_permit_t* permit, uint64_t timeout) {
  return uvchan__task_reserve(ch, permit, timeout, 1);
}

static int uvchan__task_select(uvchan_case_t* cases, unsigned n, uint64_t timeout,
                               int has_deadline, int* status) {
  uvchan_task_t* t = uvchan__current;
  uvchan_ctx_t* ctx = NULL;
  uvchan_select_t* sel;
  int usable, xsel = 0;

  if (t == NULL)
    return UV_EINVAL;
  usable = uvchan__select_check(cases, n, &ctx, &xsel);
  if (usable < 0)
    return usable;
  if (ctx != NULL && ctx != t->ctx)
    return UV_EINVAL;
  if ((usable = uvchan__task_spend(t)) != 0) {
    if (usable < 0)
      return usable;
    ctx = NULL;
    xsel = 0;
    if (uvchan__select_check(cases, n, &ctx, &xsel) < 0) /* a channel destroyed during the yield */
      return UV_ECANCELED;
  }
  /* With no usable case this waits forever (Go's select {}), unless a deadline or cancel comes. */
  sel = (uvchan_select_t*)uvchan__task_req(t, UVCHAN_REQ_SELECT);
  usable = uvchan__select_start(sel, cases, n, timeout, has_deadline, xsel);
  if (usable < 0) {
    t->r.req.magic_ = 0;
    return usable;
  }
  uvchan__task_await(t, &t->r.req, usable);
  if (sel->index < 0)
    return sel->status; /* UV_ETIMEDOUT or UV_ECANCELED */
  if (status != NULL)
    *status = sel->status;
  return sel->index;
}

int uvchan_task_select(uvchan_case_t* cases, unsigned n, int* status) {
  return uvchan__task_select(cases, n, 0, 0, status);
}

int uvchan_task_select_timeout(uvchan_case_t* cases, unsigned n, uint64_t timeout, int* status) {
  return uvchan__task_select(cases, n, timeout, 1, status);
}

int uvchan_task_wg_wait(uvchan_wg_t* wg) {
  uvchan_task_t* t = uvchan__current;
  uvchan_req_t* req;
  int err;
  if (t == NULL || wg == NULL || wg->magic_ != UVCHAN__WG_MAGIC || wg->ctx_ != t->ctx)
    return UV_EINVAL;
  if ((err = uvchan__task_spend(t)) != 0) {
    if (err < 0)
      return err;
    if (wg->magic_ != UVCHAN__WG_MAGIC) /* destroyed during the yield */
      return UV_ECANCELED;
  }
  req = uvchan__task_req(t, UVCHAN_REQ_WG_WAIT);
  return uvchan__task_await(t, req, uvchan__wg_wait_start(req, wg));
}

int uvchan_task_sleep(uint64_t ms) {
  uvchan_task_t* t = uvchan__current;
  uvchan_req_t* req;
  int err;
  if (t == NULL)
    return UV_EINVAL;
  if ((err = uvchan__task_spend(t)) < 0)
    return err;
  req = uvchan__task_req(t, UVCHAN_REQ_SLEEP);
  req->state_ |= UVCHAN__REQ_WAITING;
  uvchan__deadline_add(req, ms);
  return uvchan__task_await(t, req, 0) == UV_ETIMEDOUT ? 0 : req->status;
}

int uvchan_task_yield(void) {
  uvchan_task_t* t = uvchan__current;
  uvchan_req_t* req;
  if (t == NULL)
    return UV_EINVAL;
  if (t->flags & UVCHAN__TASK_CANCELLED)
    return UV_ECANCELED;
  req = uvchan__task_req(t, UVCHAN_REQ_TASK);
  uvchan__complete(req, 0); /* queued behind everything ready now */
  uvchan__task_await(t, req, 0);
  return (t->flags & UVCHAN__TASK_CANCELLED) ? UV_ECANCELED : 0;
}

int uvchan_task_exit(void) {
  uvchan_task_t* t = uvchan__current;
  if (t == NULL)
    return UV_EINVAL;
  uvchan__task_finish(t);
  return 0; /* not reached */
}
