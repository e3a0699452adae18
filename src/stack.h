/* Task stacks (stack.c): pools per size, guard regions, the canary fallback, the scavenger that
 * gives idle stacks back, and the SIGSEGV/SIGBUS handler that names a task whose stack
 * overflowed. Included from uvchan-internal.h. */
#ifndef UVCHAN_STACK_H
#define UVCHAN_STACK_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define UVCHAN__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UVCHAN__ASAN 1
#endif
#endif

struct uvchan__pool_s;

/* One task's stack, as the task keeps it (inside its own struct, at the top of the stack). */
typedef struct {
  char* lo;                    /* lowest usable byte; a canary stack keeps its canary here */
  struct uvchan__pool_s* pool; /* the pool it returns to */
  unsigned vg_id;              /* valgrind's id of the registered stack */
  unsigned canary;             /* 1: no guard region, the canary is checked at every switch out */
} uvchan__stack_t;

/* A context's stacks: one pool per stack size and protection, and the idle timer. */
typedef struct {
  struct uvchan__pool_s* pools;
  struct uvchan__pool_s* hot; /* the pool the last stack came from */
  size_t hot_asked;           /* for that attr.stack_size */
  uv_timer_t* timer; /* ctx->stack_timer_: releases the memory of stacks left unused */
  int timer_on;
} uvchan__stacks_t;

/* Is attr.stack_size one a task can use? (0: the default) */
static inline int uvchan__stack_size_ok(size_t asked) {
  return asked == 0 || (asked >= UVCHAN_MIN_STACK_SIZE && asked <= UVCHAN_MAX_STACK_SIZE);
}
/* Prepares a context's stacks with its first task: also, once per process, chooses the guard
 * mode and installs the fault handler, and gives the calling thread an alternate signal stack. */
int uvchan__stacks_init(uvchan__stacks_t* s, uvchan_ctx_t* ctx);
/* Unmaps every stack of a context that has no tasks left (its close). */
void uvchan__stacks_free(uvchan__stacks_t* s);
/* Takes a stack of at least `asked` usable bytes (0: the default; uvchan__stack_size_ok()), the
 * top `reserve` of which the caller keeps for itself; *top is one past its highest byte.
 * `hard_guard` (attr.guard_page) refuses the canary fallback. Returns 0 or UV_ENOMEM. */
int uvchan__stack_get(uvchan__stacks_t* s, size_t asked, size_t reserve, int hard_guard,
                      uvchan__stack_t* st, char** top);
/* Gives a stack back to its pool; nothing runs on it any more. */
void uvchan__stack_put(uvchan__stack_t* st);
/* The random value of every canary, and its complement after it. */
extern uint64_t uvchan__stack_canary;
/* A canary was found overwritten: prints the task's message and aborts. */
#if defined(__GNUC__)
__attribute__((noreturn, cold))
#endif
void uvchan__stack_canary_broken(const uvchan__stack_t* st, const uvchan_task_t* t);
/* Gives the calling thread an alternate signal stack when it has none. */
void uvchan__stack_thread_setup(void);
extern UVCHAN__TLS int uvchan__stack_thread_ready;

/* At every switch out of a task: stacks with a guard region need nothing (an overflow faults at
 * once, and the fault handler names the task); a canary stack's canary must be whole. */
static inline void uvchan__stack_check(const uvchan__stack_t* st, const uvchan_task_t* t) {
  const uint64_t* c;
  if (UVCHAN__UNLIKELY(st->canary)) {
    c = (const uint64_t*)st->lo;
    /* Memcheck forgets memory the stack pointer has left, as an overflow's does. */
    UVCHAN__VG_DEFINED(c, 2 * sizeof(uint64_t));
    if (c[0] != uvchan__stack_canary || c[1] != ~uvchan__stack_canary)
      uvchan__stack_canary_broken(st, t);
  }
}

/* Before the loop's thread runs a task: an overflow's fault can only be reported from an
 * alternate signal stack. */
static inline void uvchan__stack_thread_enter(void) {
  if (UVCHAN__UNLIKELY(!uvchan__stack_thread_ready))
    uvchan__stack_thread_setup();
}

#endif /* UVCHAN_STACK_H */
