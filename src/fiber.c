/* Context switches; see fiber.h. The assembly is written as top-level asm so that the build needs
 * no assembler language setup; each switch is a leaf that touches only the two stacks. */
#include "fiber.h"

#include <stdint.h>
#include <string.h>

#if defined(__APPLE__)
#define UVCHAN__SYM(name) "_" #name
#define UVCHAN__HIDE(name) ".private_extern _" #name "\n"
#else
#define UVCHAN__SYM(name) #name
#define UVCHAN__HIDE(name) ".hidden " #name "\n.type " #name ",%function\n"
#endif

#if !defined(UVCHAN_FIBER_UCONTEXT) && defined(__x86_64__)

void uvchan__fiber_trampoline(void);

/* Saved frame, from the saved stack pointer up: MXCSR and the x87 control word (8 bytes), r15,
 * r14, r13, r12, rbx, rbp, return address. Those are all a System V callee must preserve. */
__asm__(".text\n"
        ".globl " UVCHAN__SYM(uvchan__fiber_swap) "\n" UVCHAN__HIDE(uvchan__fiber_swap)
        ".p2align 4\n" UVCHAN__SYM(uvchan__fiber_swap) ":\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  stmxcsr (%rsp)\n"
        "  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        /* First switch into a new fiber returns here: r12 holds the argument, r13 the entry. */
        ".globl " UVCHAN__SYM(uvchan__fiber_trampoline) "\n" UVCHAN__HIDE(uvchan__fiber_trampoline)
        ".p2align 4\n" UVCHAN__SYM(uvchan__fiber_trampoline) ":\n"
        "  movq %r12, %rdi\n"
        "  callq *%r13\n"
        "  ud2\n");

void uvchan__fiber_make(uvchan__fiber_t* f, char* lo, char* top, void (*entry)(void*), void* arg) {
  uintptr_t* sp = (uintptr_t*)((uintptr_t)top & ~(uintptr_t)15);
  (void)lo;
  /* After the restore sequence pops 7 words and `ret` pops one, rsp == the 16-aligned top, which
   * is what the trampoline's `call` needs. */
  *--sp = (uintptr_t)uvchan__fiber_trampoline;
  *--sp = 0;                /* rbp */
  *--sp = 0;                /* rbx */
  *--sp = (uintptr_t)arg;   /* r12 */
  *--sp = (uintptr_t)entry; /* r13 */
  *--sp = 0;                /* r14 */
  *--sp = 0;                /* r15 */
  *--sp = ((uintptr_t)0x037f << 32) | 0x1f80; /* x87 CW: defaults; MXCSR: all masked */
  f->sp = sp;
}

const char* uvchan__fiber_kind(void) {
  return "x86_64";
}

#elif !defined(UVCHAN_FIBER_UCONTEXT) && defined(__aarch64__)

void uvchan__fiber_trampoline(void);

/* Saved frame (176 bytes): x19-x28, x29 (fp), x30 (lr), d8-d15, FPCR: what AAPCS64 requires a
 * callee to preserve. */
__asm__(".text\n"
        ".globl " UVCHAN__SYM(uvchan__fiber_swap) "\n" UVCHAN__HIDE(uvchan__fiber_swap)
        ".p2align 4\n" UVCHAN__SYM(uvchan__fiber_swap) ":\n"
        "  sub sp, sp, #176\n"
        "  stp x19, x20, [sp, #0]\n"
        "  stp x21, x22, [sp, #16]\n"
        "  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n"
        "  stp x27, x28, [sp, #64]\n"
        "  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n"
        "  stp d10, d11, [sp, #112]\n"
        "  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mrs x9, fpcr\n"
        "  str x9, [sp, #160]\n"
        "  mov x9, sp\n"
        "  str x9, [x0]\n"
        "  mov sp, x1\n"
        "  ldr x9, [sp, #160]\n"
        "  msr fpcr, x9\n"
        "  ldp x19, x20, [sp, #0]\n"
        "  ldp x21, x22, [sp, #16]\n"
        "  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n"
        "  ldp x27, x28, [sp, #64]\n"
        "  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n"
        "  ldp d10, d11, [sp, #112]\n"
        "  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #176\n"
        "  ret\n"
        ".globl " UVCHAN__SYM(uvchan__fiber_trampoline) "\n" UVCHAN__HIDE(uvchan__fiber_trampoline)
        ".p2align 4\n" UVCHAN__SYM(uvchan__fiber_trampoline) ":\n"
        "  mov x0, x19\n"
        "  blr x20\n"
        "  brk #0\n");

void uvchan__fiber_make(uvchan__fiber_t* f, char* lo, char* top, void (*entry)(void*), void* arg) {
  uintptr_t* sp = (uintptr_t*)(((uintptr_t)top & ~(uintptr_t)15) - 176);
  (void)lo;
  memset(sp, 0, 176);
  sp[0] = (uintptr_t)arg;                          /* x19 */
  sp[1] = (uintptr_t)entry;                        /* x20 */
  sp[11] = (uintptr_t)uvchan__fiber_trampoline;    /* x30: where the first `ret` goes */
  f->sp = sp;
}

const char* uvchan__fiber_kind(void) {
  return "aarch64";
}

#else /* ucontext */

/* makecontext() passes only int arguments portably: the new fiber finds its entry through the
 * fiber being switched to, published here just before the switch. */
static _Thread_local uvchan__fiber_t* uvchan__fiber_next;

static void uvchan__fiber_start(void) {
  uvchan__fiber_t* f = uvchan__fiber_next;
  f->entry(f->arg);
}

void uvchan__fiber_make(uvchan__fiber_t* f, char* lo, char* top, void (*entry)(void*), void* arg) {
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = lo;
  f->uc.uc_stack.ss_size = (size_t)(top - lo);
  f->uc.uc_link = NULL;
  f->entry = entry;
  f->arg = arg;
  makecontext(&f->uc, uvchan__fiber_start, 0);
}

void uvchan__fiber_switch(uvchan__fiber_t* from, uvchan__fiber_t* to) {
  uvchan__fiber_next = to;
  swapcontext(&from->uc, &to->uc);
}

const char* uvchan__fiber_kind(void) {
  return "ucontext";
}

#endif
