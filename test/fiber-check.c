/* The context switch on its own, without libuv: a plain program so that it also runs on other
 * architectures under qemu-user (make test-aarch64). Three fibers and the main stack switch
 * round robin 10000 times; each side keeps integers and doubles live across every switch (the
 * callee-saved registers), checks 16-byte stack alignment, and one fiber changes the rounding
 * mode, which must not leak into the others (MXCSR/x87 control word, FPCR). Exits 0 on success. */
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fiber.h"

/* Under valgrind the fiber stacks (neighbouring heap blocks) must be declared as stacks. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define STACK_REGISTER(lo, hi) VALGRIND_STACK_REGISTER(lo, hi)
#define STACK_DEREGISTER(id) VALGRIND_STACK_DEREGISTER(id)
#endif
#endif
#if !defined(STACK_REGISTER)
#define STACK_REGISTER(lo, hi) 0u
#define STACK_DEREGISTER(id) ((void)(id))
#endif

enum { NFIB = 3, ROUNDS = 10000, STACK = 64 * 1024 };

static uvchan__fiber_t main_fiber, fibers[NFIB];
static int failures;

#define EXPECT(cond)                                                  \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "fiber-check: %s failed (line %d)\n", #cond, __LINE__); \
      failures++;                                                     \
    }                                                                 \
  } while (0)

/* Opaque to the optimiser, so values really live in registers across calls; the volatile copies
 * taken before each switch are reloaded from memory after it, so a clobbered register shows. */
static volatile uint64_t sink;
static __attribute__((noinline)) uint64_t mix(uint64_t x) {
  sink = x;
  return x * 0x9e3779b97f4a7c15ull + 1;
}

static void fiber_main(void* arg) {
  int id = (int)(intptr_t)arg;
  _Alignas(16) char probe[16];
  uint64_t a = (uint64_t)id, b = a + 100, c = a + 200, d = a + 300, e = a + 400, f = a + 500;
  /* eight doubles: as many as the callee-saved FP registers of aarch64 (d8-d15) */
  double x = id + 0.5, y = id * 3.25, u = id + 1.5, v = id + 2.5, w = id + 3.5, p = id + 4.5,
         q = id + 5.5, s = id + 6.5;

  EXPECT(((uintptr_t)probe & 15) == 0);
  if (id == 1)
    fesetround(FE_UPWARD); /* this fiber only */
  for (int r = 0; r < ROUNDS; r++) {
    volatile uint64_t a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f;
    volatile double x0 = x, y0 = y, u0 = u, v0 = v, w0 = w, p0 = p, q0 = q, s0 = s;
    uvchan__fiber_switch(&fibers[id], id + 1 < NFIB ? &fibers[id + 1] : &main_fiber);
    EXPECT(a == a0 && b == b0 && c == c0 && d == d0 && e == e0 && f == f0);
    EXPECT(x == x0 && y == y0 && u == u0 && v == v0 && w == w0 && p == p0 && q == q0 && s == s0);
    EXPECT(fegetround() == (id == 1 ? FE_UPWARD : FE_TONEAREST));
    a = mix(a);
    b = mix(b ^ a);
    c = mix(c ^ b);
    d = mix(d ^ c);
    e = mix(e ^ d);
    f = mix(f ^ e);
    x = x * 1.0000001 + 1.0;
    y = y * 0.9999999 + 2.0;
    u = u * 1.0000003 + x;
    v = v * 0.9999997 + y;
    w = w * 1.0000005 + u;
    p = p * 0.9999995 + v;
    q = q * 1.0000007 + w;
    s = s * 0.9999993 + p;
  }
  /* Fibers never return: park for good on the main side. */
  for (;;)
    uvchan__fiber_switch(&fibers[id], &main_fiber);
}

int main(void) {
  uint64_t k = 7, m = 11;
  double z = 1.25;
  char* stacks[NFIB];
  unsigned ids[NFIB];

  for (int i = 0; i < NFIB; i++) {
    stacks[i] = malloc(STACK);
    if (stacks[i] == NULL)
      return 2;
    ids[i] = STACK_REGISTER(stacks[i], stacks[i] + STACK);
    uvchan__fiber_make(&fibers[i], stacks[i], stacks[i] + STACK, fiber_main, (void*)(intptr_t)i);
  }
  for (int r = 0; r < ROUNDS; r++) {
    volatile uint64_t k0 = k, m0 = m;
    volatile double z0 = z;
    uvchan__fiber_switch(&main_fiber, &fibers[0]);
    EXPECT(k == k0 && m == m0 && z == z0);
    EXPECT(fegetround() == FE_TONEAREST);
    k = mix(k);
    m = mix(m ^ k);
    z = z * 1.5 - 0.25;
  }
  for (int i = 0; i < NFIB; i++) {
    STACK_DEREGISTER(ids[i]);
    free(stacks[i]);
  }
  printf("fiber-check (%s): %d switches, %s\n", uvchan__fiber_kind(), ROUNDS * (NFIB + 1),
         failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
