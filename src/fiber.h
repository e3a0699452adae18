/* Context switching between the loop's stack and task stacks.
 *
 * Two implementations, chosen at build time: hand-written switches for x86-64 (System V) and
 * aarch64 (AAPCS64) that save only what the ABI says a callee must preserve, and a portable one
 * on ucontext for every other target (or when UVCHAN_FIBER_UCONTEXT is defined). */
#ifndef UVCHAN_FIBER_H
#define UVCHAN_FIBER_H

#include <stddef.h>

#if !defined(UVCHAN_FIBER_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define UVCHAN_FIBER_UCONTEXT 1
#endif

#if defined(UVCHAN_FIBER_UCONTEXT)
#include <ucontext.h>
typedef struct {
  ucontext_t uc;
  void (*entry)(void*);
  void* arg;
} uvchan__fiber_t;
void uvchan__fiber_switch(uvchan__fiber_t* from, uvchan__fiber_t* to);
#else
typedef struct {
  void* sp; /* the saved stack pointer; the registers sit on the stack below it */
} uvchan__fiber_t;

/* Saves the callee-saved registers on the current stack, stores the stack pointer in *save_sp,
 * switches to `to_sp` and restores what was saved there. Returns when switched back. */
void uvchan__fiber_swap(void** save_sp, void* to_sp);

static inline void uvchan__fiber_switch(uvchan__fiber_t* from, uvchan__fiber_t* to) {
  uvchan__fiber_swap(&from->sp, to->sp);
}
#endif

/* Prepares `f` to run entry(arg) on the stack [lo, top) the first time it is switched to.
 * `entry` must never return: a finished fiber switches away for good. */
void uvchan__fiber_make(uvchan__fiber_t* f, char* lo, char* top, void (*entry)(void*), void* arg);

/* Name of the implementation compiled in ("x86_64", "aarch64" or "ucontext"). */
const char* uvchan__fiber_kind(void);

#endif /* UVCHAN_FIBER_H */
