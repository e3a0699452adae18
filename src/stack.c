/* Task stacks: where they come from, how an overflow is stopped, and how their memory goes back.
 *
 * Pools. Stacks are pooled per size and carved out of chunks, large MAP_NORESERVE mappings of up
 * to 64 stacks (fewer for large stacks, so a big stack does not reserve 64 times its size): 100k
 * tasks do not exhaust vm.max_map_count as a mapping per stack would. Only touched pages become
 * resident, and the task struct sits in the top page of its stack, the page the task touches
 * first, so a new task costs one page fault and one page. A finished task's stack goes back to
 * its pool still resident: the next spawn costs no fault. A timer that does not keep the loop
 * alive gives back (MADV_DONTNEED) the free stacks beyond a hot set of 64 that stayed unused for
 * a whole tick of one second, so an idle program returns a burst's memory within two seconds.
 * Chunks are unmapped only when the context closes: a task reference may read an ended task's
 * struct.
 *
 * Guard regions. Below every stack lies a guard region of 64 KiB, deep enough that a frame of
 * locals cannot step over it unnoticed (with -fstack-clash-protection, none can). How it is
 * protected is chosen once per process:
 * - MADV_GUARD_INSTALL (Linux >= 6.13): the guard costs neither a mapping nor memory, and is
 *   installed for a whole chunk in one process_madvise() call when the chunk is made.
 * - mprotect(PROT_NONE) elsewhere: two mappings per stack, so only while a budget taken from
 *   vm.max_map_count (with a margin for the rest of the process) lasts; beyond it a task gets a
 *   canary stack, or UV_ENOMEM when it asked for a guard (attr.guard_page).
 * - A canary stack keeps the region below it unprotected and belonging to no one, so an
 *   overflow of less than 64 KiB damages no other task, and 16 random bytes at its lowest address,
 *   checked at every switch out of the task.
 * UVCHAN_STACK_GUARD=madvise|mprotect|canary in the environment forces one (a diagnostic knob).
 *
 * The fault. A SIGSEGV/SIGBUS handler, installed with the first task and run on an alternate
 * signal stack, recognises a fault inside the running task's guard region and aborts with a
 * message naming the task. Any other fault goes to the handler that was installed before, so the
 * application's signal behaviour is unchanged. */
#include "uvchan-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if defined(UVCHAN__ASAN)
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
/* A task that ended inside nested calls (uvchan_task_exit) leaves its frames' redzones poisoned;
 * the next task on that stack must not inherit them. */
#define UVCHAN__ASAN_UNPOISON(addr, size) __asan_unpoison_memory_region(addr, size)
#else
#define UVCHAN__ASAN_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

/* Under valgrind, task stacks are registered so that a switch between two neighbouring stacks is
 * not mistaken for one stack growing: the client requests cost nothing outside valgrind. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UVCHAN__VG 1
#endif
#endif

#if !defined(MAP_NORESERVE)
#define MAP_NORESERVE 0
#endif
#if !defined(MAP_ANONYMOUS)
#define MAP_ANONYMOUS MAP_ANON
#endif
#if defined(__linux__)
/* Newer than the C library's headers may be. */
#if !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23
#endif
#if !defined(MADV_GUARD_INSTALL)
#define MADV_GUARD_INSTALL 102
#endif
#else
/* Linux only: never asked for elsewhere (the guard probe fails, population is skipped). */
#define MADV_POPULATE_WRITE (-1)
#define MADV_GUARD_INSTALL (-1)
#endif

enum {
  UVCHAN__GUARD_BYTES = 64 * 1024,  /* below every stack */
  UVCHAN__STACKS_PER_CHUNK = 64,    /* at most, one mapping per 64 stacks */
  UVCHAN__POOL_KEEP_HOT = 64,       /* free stacks always kept resident for fast reuse */
  UVCHAN__SCAVENGE_MS = 1000,       /* the scavenger's tick */
  UVCHAN__ALTSTACK_BYTES = 64 * 1024
};
#define UVCHAN__CHUNK_BYTES ((size_t)8 << 20) /* the size a chunk is cut to, 64 stacks or fewer */

/* How a stack is protected. */
enum { UVCHAN__KIND_MADVISE = 1, UVCHAN__KIND_MPROTECT, UVCHAN__KIND_CANARY };

struct uvchan__pool_s {
  struct uvchan__pool_s* next;
  uvchan__stacks_t* owner;
  size_t size;     /* usable bytes per stack, a multiple of the page size */
  size_t slot;     /* guard region + stack */
  size_t reserve;  /* bytes at the top the task keeps (its struct) */
  unsigned kind;
  unsigned per_chunk;
  char* carve;     /* next unused slot of the newest chunk */
  size_t carve_left;
  char** free;     /* LIFO of free stacks (their lowest usable byte): the latest used goes first */
  size_t nfree;
  size_t capfree;
  size_t ncold;    /* free[0..ncold) have had their pages released */
  size_t low;      /* the fewest free stacks since the last tick: free[0..low) went unused */
  char** chunks;
  size_t nchunks;
  size_t capchunks;
  size_t ncarved;  /* stacks carved so far: free[] has room for them all */
  long maps;       /* mappings charged to the mprotect budget */
};

/* ---- process-wide choices, made once ---- */

static pthread_once_t uvchan__stack_once = PTHREAD_ONCE_INIT;
static int uvchan__stack_init_err;
static unsigned uvchan__mode;    /* UVCHAN__KIND_* that stacks get by default */
static int uvchan__has_guard_install;
static size_t uvchan__page;
static size_t uvchan__guard;     /* UVCHAN__GUARD_BYTES, at least a page */
uint64_t uvchan__stack_canary;   /* random, never zero */
static struct sigaction uvchan__old_segv, uvchan__old_bus;
static pthread_key_t uvchan__alt_key;

/* Mappings the mprotect guards may still add, taken once from vm.max_map_count. */
static pthread_once_t uvchan__budget_once = PTHREAD_ONCE_INIT;
static atomic_long uvchan__map_budget;

/* process_madvise() for this process: 0 untried, 1 through PIDFD_SELF, 2 through a pidfd opened
 * for the call (never kept: a forked child must not advise its parent), -1 unavailable. */
static atomic_int uvchan__pm_how;

/* ---- per thread: the alternate signal stack ---- */

UVCHAN__TLS int uvchan__stack_thread_ready;
static UVCHAN__TLS struct {
  char* mem;                /* ours, when this thread had none; else NULL */
  size_t bytes;
  unsigned users;           /* contexts whose tasks started on this thread and still have stacks */
  uvchan__stacks_t* last;   /* the newest of them: the fault handler's last resort */
} uvchan__alt;

static void uvchan__on_fault(int sig, siginfo_t* si, void* uc);

/* ---- system calls ---- */

/* Applies `advice` to n ranges: in one process_madvise() call per 1024 ranges where the kernel
 * takes it, else one madvise() per range. Every advice used here may be given twice, so a batch
 * that fails part way is redone range by range. Returns 0, or -1 with errno. */
static int uvchan__madvise_ranges(struct iovec* iov, size_t n, int advice) {
  size_t i = 0;
#if defined(__linux__) && defined(SYS_process_madvise)
  int how = atomic_load_explicit(&uvchan__pm_how, memory_order_relaxed);
  int was = how;
  size_t k, j, total;
  long r;
  int fd;

#if defined(UVCHAN__VG)
  if (RUNNING_ON_VALGRIND)
    how = -1; /* valgrind does not know process_madvise() */
#endif
  while (how >= 0 && i < n) {
    k = n - i < 1024 ? n - i : 1024;
    for (total = 0, j = 0; j < k; j++)
      total += iov[i + j].iov_len;
    fd = -10000; /* PIDFD_SELF, Linux >= 6.14 */
#if defined(SYS_pidfd_open)
    if (how == 2)
      fd = (int)syscall(SYS_pidfd_open, (long)getpid(), 0L);
#endif
    r = fd == -1 ? -1 : syscall(SYS_process_madvise, fd, iov + i, k, advice, 0L);
    if (fd >= 0)
      close(fd);
    if (r == (long)total) {
      how = how == 0 ? 1 : how;
      i += k;
      continue;
    }
    if (how == 0 && r < 0 && errno == EBADF) {
      how = 2; /* no PIDFD_SELF yet: a pidfd of our own */
      continue;
    }
    if (r < 0 && errno != ENOMEM && errno != EAGAIN && errno != EINTR)
      how = -1; /* not for this advice or not for us: madvise() from now on */
    break;      /* the rest range by range */
  }
  if (how != was)
    atomic_store_explicit(&uvchan__pm_how, how, memory_order_relaxed);
#endif
  for (; i < n; i++)
    if (madvise(iov[i].iov_base, iov[i].iov_len, advice) != 0)
      return -1;
  return 0;
}

static char* uvchan__map(size_t bytes) {
  char* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED)
    return NULL;
#if defined(MADV_NOHUGEPAGE)
  /* A huge page would make the first touch of a small stack cost 2 MB. */
  (void)madvise(p, bytes, MADV_NOHUGEPAGE);
#endif
  return p;
}

/* Reads a decimal number from a file; -1 if there is none. */
static long uvchan__read_long(const char* path) {
  char buf[32];
  long v = 0;
  ssize_t n, i;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n <= 0 || buf[0] < '0' || buf[0] > '9')
    return -1;
  for (i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
    v = v * 10 + (buf[i] - '0');
  return v;
}

/* The mprotect guards' budget: vm.max_map_count, less what the process maps now (counted once),
 * less a margin of an eighth (at least 512) for everything the program maps later. Without the
 * limit (not Linux) the budget is unbounded. */
static void uvchan__budget_init(void) {
  long max = -1, used = 0, margin;
  char buf[4096];
  ssize_t n, i;
  int fd;
#if defined(__linux__)
  max = uvchan__read_long("/proc/sys/vm/max_map_count");
  if (max < 0)
    max = 65530; /* the kernel's default */
  fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    while ((n = read(fd, buf, sizeof(buf))) > 0)
      for (i = 0; i < n; i++)
        used += buf[i] == '\n';
    close(fd);
  }
#else
  (void)buf, (void)n, (void)i, (void)fd;
#endif
  if (max < 0) {
    atomic_store(&uvchan__map_budget, LONG_MAX);
    return;
  }
  margin = max / 8 > 512 ? max / 8 : 512;
  atomic_store(&uvchan__map_budget, max - used - margin > 0 ? max - used - margin : 0);
}

static int uvchan__budget_take(long n) {
  pthread_once(&uvchan__budget_once, uvchan__budget_init);
  if (atomic_fetch_sub(&uvchan__map_budget, n) >= n)
    return 0;
  atomic_fetch_add(&uvchan__map_budget, n);
  return UV_ENOMEM;
}

/* Protects `bytes` at `p` as a guard region the mprotect way; a mapping split charged to the
 * pool. */
static int uvchan__guard_mprotect(struct uvchan__pool_s* pool, char* p) {
  if (uvchan__budget_take(2) != 0)
    return UV_ENOMEM;
  if (mprotect(p, uvchan__guard, PROT_NONE) != 0) {
    atomic_fetch_add(&uvchan__map_budget, 2);
    return UV_ENOMEM; /* typically vm.max_map_count reached after all */
  }
  pool->maps += 2;
  return 0;
}

/* ---- the alternate signal stack of each thread that runs tasks ---- */

/* Removes and frees this thread's alternate stack if it is ours and not in use. */
static void uvchan__alt_remove(void) {
  stack_t cur, off;
  if (uvchan__alt.mem == NULL)
    return;
  memset(&cur, 0, sizeof(cur));
  if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == uvchan__alt.mem + uvchan__page &&
      !(cur.ss_flags & SS_ONSTACK)) {
    memset(&off, 0, sizeof(off));
    off.ss_flags = SS_DISABLE;
    (void)sigaltstack(&off, NULL);
  } else if (!(cur.ss_flags & SS_DISABLE)) {
    return; /* someone else's now, or in use: leave it (and ours) alone */
  }
  munmap(uvchan__alt.mem, uvchan__alt.bytes);
  uvchan__alt.mem = NULL;
  uvchan__stack_thread_ready = 0;
}

/* pthread key destructor: a thread that ran tasks is ending. */
static void uvchan__alt_at_exit(void* arg) {
  (void)arg;
  uvchan__alt_remove();
}

void uvchan__stack_thread_setup(void) {
  stack_t cur, ss;
#if defined(_SC_MINSIGSTKSZ)
  long minsz = sysconf(_SC_MINSIGSTKSZ); /* larger where the CPU has a large register state */
#else
  long minsz = MINSIGSTKSZ;
#endif
  size_t bytes = UVCHAN__ALTSTACK_BYTES;
  char* mem;

  if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
    uvchan__stack_thread_ready = 1; /* the thread has one: the handler needs little of it */
    return;
  }
  if (minsz > 0 && (size_t)minsz * 4 > bytes)
    bytes = ((size_t)minsz * 4 + uvchan__page - 1) & ~(uvchan__page - 1);
  /* A page below it is a guard region too: no handler can overflow into other memory. */
  mem = uvchan__map(bytes + uvchan__page);
  if (mem == NULL)
    return; /* tried again with the next task; a fault without it is a bare SIGSEGV */
  if (uvchan__has_guard_install)
    (void)madvise(mem, uvchan__page, MADV_GUARD_INSTALL);
  else
    (void)mprotect(mem, uvchan__page, PROT_NONE);
  memset(&ss, 0, sizeof(ss));
  ss.ss_sp = mem + uvchan__page;
  ss.ss_size = bytes;
  if (sigaltstack(&ss, NULL) != 0) {
    munmap(mem, bytes + uvchan__page);
    return;
  }
  uvchan__alt.mem = mem;
  uvchan__alt.bytes = bytes + uvchan__page;
  uvchan__stack_thread_ready = 1;
  (void)pthread_setspecific(uvchan__alt_key, &uvchan__alt); /* so its end frees it */
}

/* ---- once per process ---- */

static void uvchan__stack_once_init(void) {
  long p = sysconf(_SC_PAGESIZE);
  const char* env = getenv("UVCHAN_STACK_GUARD");
  struct sigaction sa;
  char* probe;

  uvchan__page = p > 0 ? (size_t)p : 4096;
  uvchan__guard = UVCHAN__GUARD_BYTES > uvchan__page ? UVCHAN__GUARD_BYTES : uvchan__page;
  uvchan__guard = (uvchan__guard + uvchan__page - 1) & ~(uvchan__page - 1);

#if defined(__linux__)
  /* Does this kernel have guard regions? Ask it on a page of our own. */
  probe = uvchan__map(uvchan__page);
  if (probe != NULL) {
    uvchan__has_guard_install = madvise(probe, uvchan__page, MADV_GUARD_INSTALL) == 0;
    munmap(probe, uvchan__page);
  }
#else
  (void)probe;
#endif
  uvchan__mode = uvchan__has_guard_install ? UVCHAN__KIND_MADVISE : UVCHAN__KIND_MPROTECT;
  if (env != NULL && strcmp(env, "mprotect") == 0)
    uvchan__mode = UVCHAN__KIND_MPROTECT;
  else if (env != NULL && strcmp(env, "canary") == 0)
    uvchan__mode = UVCHAN__KIND_CANARY;
  /* "madvise" (or anything else) keeps the best the kernel has. */

  if (uv_random(NULL, NULL, &uvchan__stack_canary, sizeof(uvchan__stack_canary), 0, NULL) != 0)
    uvchan__stack_canary = uv_hrtime() ^ (uint64_t)(uintptr_t)&uvchan__stack_canary;
  uvchan__stack_canary |= 1; /* never zero, so a zero-filled buffer cannot pass for it */

  if (pthread_key_create(&uvchan__alt_key, uvchan__alt_at_exit) != 0) {
    uvchan__stack_init_err = UV_ENOMEM;
    return;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = uvchan__on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSEGV, &sa, &uvchan__old_segv) != 0 ||
      sigaction(SIGBUS, &sa, &uvchan__old_bus) != 0)
    uvchan__stack_init_err = UV_EINVAL;
}

/* ---- pools ---- */

static void uvchan__scavenge(uv_timer_t* timer);

static int uvchan__grow(void* arr, size_t* cap, size_t need) {
  char*** a = (char***)arr;
  size_t ncap;
  char** p;
  if (need <= *cap)
    return 0;
  ncap = *cap != 0 ? *cap * 2 : 64;
  while (ncap < need)
    ncap *= 2;
  p = realloc(*a, ncap * sizeof(char*));
  if (p == NULL)
    return UV_ENOMEM;
  *a = p;
  *cap = ncap;
  return 0;
}

static struct uvchan__pool_s* uvchan__pool_for(uvchan__stacks_t* s, size_t size, size_t reserve,
                                               unsigned kind) {
  struct uvchan__pool_s* p;
  size_t n;
  for (p = s->pools; p != NULL; p = p->next)
    if (p->size == size && p->kind == kind && p->reserve == reserve)
      return p;
  p = calloc(1, sizeof(*p));
  if (p == NULL)
    return NULL;
  p->owner = s;
  p->size = size;
  p->slot = uvchan__guard + size;
  p->reserve = reserve;
  p->kind = kind;
  n = UVCHAN__CHUNK_BYTES / p->slot;
  p->per_chunk = n < 1 ? 1 : n > UVCHAN__STACKS_PER_CHUNK ? UVCHAN__STACKS_PER_CHUNK : (unsigned)n;
  p->next = s->pools;
  s->pools = p;
  return p;
}

/* Maps a new chunk for `pool`. With MADV_GUARD_INSTALL, every guard region of the chunk is
 * installed now in one call (a range per stack costs about 300 ns; a call per range 30% more). */
static int uvchan__chunk_new(struct uvchan__pool_s* pool) {
  struct iovec iov[UVCHAN__STACKS_PER_CHUNK];
  size_t bytes = pool->slot * pool->per_chunk;
  unsigned i;
  char* chunk;

  if (uvchan__grow(&pool->chunks, &pool->capchunks, pool->nchunks + 1) != 0)
    return UV_ENOMEM;
  if (pool->kind == UVCHAN__KIND_MPROTECT && uvchan__budget_take(1) != 0)
    return UV_ENOMEM;
  chunk = uvchan__map(bytes);
  if (chunk == NULL) {
    if (pool->kind == UVCHAN__KIND_MPROTECT)
      atomic_fetch_add(&uvchan__map_budget, 1);
    return UV_ENOMEM;
  }
  if (pool->kind == UVCHAN__KIND_MPROTECT)
    pool->maps++;
  if (pool->kind == UVCHAN__KIND_MADVISE) {
    for (i = 0; i < pool->per_chunk; i++) {
      iov[i].iov_base = chunk + (size_t)i * pool->slot;
      iov[i].iov_len = uvchan__guard;
    }
    if (uvchan__madvise_ranges(iov, pool->per_chunk, MADV_GUARD_INSTALL) != 0) {
      munmap(chunk, bytes);
      return UV_ENOMEM;
    }
  }
  if (pool->nchunks > 0 && MADV_POPULATE_WRITE >= 0) {
    /* A pool that has used a whole chunk is spawning in bulk: fault in the top page of every
     * stack now, in one call, which costs less than a page fault per stack. A first chunk is
     * left to fault page by page, so a program with few tasks commits no unused pages. */
    for (i = 0; i < pool->per_chunk; i++) {
      iov[i].iov_base = chunk + (size_t)(i + 1) * pool->slot - uvchan__page;
      iov[i].iov_len = uvchan__page;
    }
    (void)uvchan__madvise_ranges(iov, pool->per_chunk, MADV_POPULATE_WRITE);
  }
  pool->chunks[pool->nchunks++] = chunk;
  pool->carve = chunk;
  pool->carve_left = pool->per_chunk;
  return 0;
}

/* The most recently freed stack of `pool`, which has one. */
static inline char* uvchan__pool_pop(struct uvchan__pool_s* pool) {
  char* lo = pool->free[--pool->nfree];
  if (pool->ncold > pool->nfree)
    pool->ncold = pool->nfree;
  if (pool->low > pool->nfree)
    pool->low = pool->nfree;
  return lo;
}

/* A stack from `pool`: the most recently freed, else a new one carved from the newest chunk. */
static char* uvchan__pool_take(struct uvchan__pool_s* pool, int* err) {
  char* lo;
  if (pool->nfree > 0)
    return uvchan__pool_pop(pool);
  /* The free list must be able to take the stack back, whenever that is. */
  if (uvchan__grow(&pool->free, &pool->capfree, pool->ncarved + 1) != 0 ||
      (pool->carve_left == 0 && uvchan__chunk_new(pool) != 0)) {
    *err = UV_ENOMEM;
    return NULL;
  }
  if (pool->kind == UVCHAN__KIND_MPROTECT && uvchan__guard_mprotect(pool, pool->carve) != 0) {
    *err = UV_ENOMEM;
    return NULL;
  }
  lo = pool->carve + uvchan__guard;
  pool->carve += pool->slot;
  pool->carve_left--;
  pool->ncarved++;
  return lo;
}

int uvchan__stack_get(uvchan__stacks_t* s, size_t asked, size_t reserve, int hard_guard,
                      uvchan__stack_t* st, char** top) {
  struct uvchan__pool_s* pool = s->hot;
  unsigned kind = uvchan__mode;
  size_t size;
  int err = 0;
  char* lo = NULL;
  uint64_t* c;

  /* The common case: a free stack of the pool used last, of the mode's own kind. */
  if (UVCHAN__LIKELY(pool != NULL && s->hot_asked == asked && pool->reserve == reserve &&
                     pool->kind == kind && pool->nfree > 0 &&
                     !(hard_guard && kind == UVCHAN__KIND_CANARY))) {
    lo = uvchan__pool_pop(pool);
    goto taken;
  }
  size = asked != 0 ? asked : UVCHAN_DEFAULT_STACK_SIZE;
  size = (size + uvchan__page - 1) & ~(uvchan__page - 1);
  if (kind == UVCHAN__KIND_CANARY && hard_guard)
    kind = uvchan__has_guard_install ? UVCHAN__KIND_MADVISE : UVCHAN__KIND_MPROTECT;
  pool = uvchan__pool_for(s, size, reserve, kind);
  if (pool == NULL)
    return UV_ENOMEM;
  lo = uvchan__pool_take(pool, &err);
  if (lo == NULL && kind == UVCHAN__KIND_MPROTECT && !hard_guard) {
    /* Past the mapping budget: a canary stack rather than no task. */
    kind = UVCHAN__KIND_CANARY;
    pool = uvchan__pool_for(s, size, reserve, kind);
    if (pool == NULL)
      return UV_ENOMEM;
    lo = uvchan__pool_take(pool, &err);
  }
  if (lo == NULL)
    return err;
  s->hot = pool;
  s->hot_asked = asked;
taken:
  if (UVCHAN__UNLIKELY(pool->kind == UVCHAN__KIND_CANARY)) {
    c = (uint64_t*)lo;
    c[0] = uvchan__stack_canary;
    c[1] = ~uvchan__stack_canary;
  }
  st->lo = lo;
  st->pool = pool;
  st->canary = pool->kind == UVCHAN__KIND_CANARY;
  *top = lo + pool->size;
#if defined(UVCHAN__VG)
  st->vg_id = VALGRIND_STACK_REGISTER(lo, *top - reserve);
#else
  st->vg_id = 0;
#endif
  return 0;
}

void uvchan__stack_put(uvchan__stack_t* st) {
  struct uvchan__pool_s* pool = st->pool;
  uvchan__stacks_t* s = pool->owner;
#if defined(UVCHAN__VG)
  VALGRIND_STACK_DEREGISTER(st->vg_id);
#endif
  UVCHAN__ASAN_UNPOISON(st->lo, pool->size);
  pool->free[pool->nfree++] = st->lo; /* room was made when the stack was carved */
  if (UVCHAN__UNLIKELY(!s->timer_on) && pool->nfree - pool->ncold > UVCHAN__POOL_KEEP_HOT) {
    s->timer_on = 1;
    uv_timer_start(s->timer, uvchan__scavenge, UVCHAN__SCAVENGE_MS, UVCHAN__SCAVENGE_MS);
  }
}

/* ---- giving memory back ---- */

/* The scavenger's tick: releases the pages of the free stacks that went unused for a whole tick,
 * beyond the hot set. The oldest free stacks sit at the bottom of each LIFO, so those are
 * free[ncold..low). Stops when no pool holds more resident free stacks than its hot set. */
static void uvchan__scavenge(uv_timer_t* timer) {
  uvchan__stacks_t* s = uvchan__task_stacks(UVCHAN__CONTAINER_OF(timer, uvchan_ctx_t, stack_timer_));
  struct uvchan__pool_s* p;
  struct iovec iov[256];
  size_t i, n, end, keep_from;
  int busy = 0;

  for (p = s->pools; p != NULL; p = p->next) {
    keep_from = p->nfree > UVCHAN__POOL_KEEP_HOT ? p->nfree - UVCHAN__POOL_KEEP_HOT : 0;
    end = p->low < keep_from ? p->low : keep_from;
    for (i = p->ncold; i < end;) {
      for (n = 0; n < 256 && i < end; n++, i++) {
        /* A canary stack's region below may hold an overflow's pages: it goes too. */
        iov[n].iov_base = p->kind == UVCHAN__KIND_CANARY ? p->free[i] - uvchan__guard : p->free[i];
        iov[n].iov_len = p->kind == UVCHAN__KIND_CANARY ? p->slot : p->size;
      }
      (void)uvchan__madvise_ranges(iov, n, MADV_DONTNEED);
    }
    if (end > p->ncold)
      p->ncold = end;
    p->low = p->nfree;
    busy |= p->nfree - p->ncold > UVCHAN__POOL_KEEP_HOT;
  }
  if (!busy) {
    uv_timer_stop(timer);
    s->timer_on = 0;
  }
}

/* ---- a context's stacks ---- */

int uvchan__stacks_init(uvchan__stacks_t* s, uvchan_ctx_t* ctx) {
  int err;
  pthread_once(&uvchan__stack_once, uvchan__stack_once_init);
  if (uvchan__stack_init_err != 0)
    return uvchan__stack_init_err;
  err = uv_timer_init(ctx->loop, &ctx->stack_timer_);
  if (err != 0)
    return err;
  uv_unref((uv_handle_t*)&ctx->stack_timer_); /* idle memory never keeps a loop running */
  ctx->stack_timer_.data = (void*)&uvchan__handle_tag;
  memset(s, 0, sizeof(*s));
  s->timer = &ctx->stack_timer_;
  uvchan__stack_thread_enter();
  uvchan__alt.users++;
  uvchan__alt.last = s;
  return 0;
}

void uvchan__stacks_free(uvchan__stacks_t* s) {
  struct uvchan__pool_s* p;
  size_t i;

  uv_timer_stop(s->timer); /* ctx.c closes it */
  while ((p = s->pools) != NULL) {
    s->pools = p->next;
    for (i = 0; i < p->nchunks; i++)
      munmap(p->chunks[i], p->slot * p->per_chunk);
    if (p->maps != 0)
      atomic_fetch_add(&uvchan__map_budget, p->maps);
    if (s->hot == p)
      s->hot = NULL;
    free(p->chunks);
    free(p->free);
    free(p);
  }
  if (uvchan__alt.last == s)
    uvchan__alt.last = NULL;
  /* The alternate stack goes with the last context that ran tasks on this thread. A context
   * closed on another thread than its first leaves that thread's stack to the thread's end. */
  if (uvchan__alt.users > 0 && --uvchan__alt.users == 0)
    uvchan__alt_remove();
}

/* ---- overflow: the message ---- */

/* Async-signal-safe output: write(2) of a string, of a number. */
static void uvchan__say(const char* s) {
  size_t n = strlen(s);
  ssize_t w;
  while (n > 0 && ((w = write(2, s, n)) > 0 || (w < 0 && errno == EINTR)))
    if (w > 0) {
      s += w;
      n -= (size_t)w;
    }
}

static void uvchan__say_num(uint64_t v) {
  char buf[24];
  size_t i = sizeof(buf) - 1;
  buf[i] = 0;
  do
    buf[--i] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  uvchan__say(buf + i);
}

/* Prints the overflow message of task `t`, whose stack `st` overflowed, and aborts. `how` says
 * what caught it. Only async-signal-safe calls: it runs in the fault handler. */
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void uvchan__overflowed(const uvchan_task_t* t, const uvchan__stack_t* st, const char* how) {
  const char* name = uvchan_task_name(t);
  char shown[65];
  size_t i;

  for (i = 0; name != NULL && i < sizeof(shown) - 1 && name[i] != 0; i++)
    shown[i] = name[i];
  shown[i] = 0;
  uvchan__say("uvchan: task ");
  uvchan__say(shown);
  uvchan__say("#");
  uvchan__say_num(uvchan_task_id(t));
  uvchan__say(" overflowed its stack of ");
  uvchan__say_num(st->pool->size);
  uvchan__say(" bytes (");
  uvchan__say(how);
  uvchan__say(").\nuvchan: give it a larger uvchan_task_attr_t.stack_size (a synchronous "
              "getaddrinfo() needs about 12 KiB, printf() about 3 KiB), and build task code with "
              "-fstack-clash-protection so that no frame can step over the ");
  uvchan__say_num(uvchan__guard / 1024);
  uvchan__say(" KiB guard region below each stack.\n");
  abort();
}

void uvchan__stack_canary_broken(const uvchan__stack_t* st, const uvchan_task_t* t) {
  uvchan__overflowed(t, st, "its canary was overwritten; this stack has no guard region");
}

/* ---- overflow: the fault ---- */

/* The task whose guard region holds `addr`, if any: the running task's, else any stack of the
 * running task's context (a task that faults while switching away is no longer the running one),
 * else of the context that last started tasks on this thread. Reads only; nothing it reads is
 * changed outside this thread. */
static const uvchan_task_t* uvchan__guard_owner(const char* addr, const uvchan__stack_t** stp) {
  const uvchan_task_t* t = uvchan_task_self();
  const uvchan__stack_t* st;
  const uvchan__stacks_t* s = uvchan__alt.last;
  const struct uvchan__pool_s* p;
  const char* c;
  size_t i, k;

  if (t != NULL) {
    st = uvchan__task_stack(t);
    if (!st->canary && addr < st->lo && addr >= st->lo - uvchan__guard) {
      *stp = st;
      return t;
    }
    s = st->pool->owner;
  }
  for (p = s != NULL ? s->pools : NULL; p != NULL; p = p->next) {
    if (p->kind == UVCHAN__KIND_CANARY)
      continue;
    for (i = 0; i < p->nchunks; i++) {
      c = p->chunks[i];
      if (addr < c || addr >= c + p->slot * p->per_chunk)
        continue;
      k = (size_t)(addr - c) / p->slot;
      if ((size_t)(addr - c) - k * p->slot >= uvchan__guard ||
          (i == p->nchunks - 1 && c + k * p->slot >= p->carve))
        return NULL; /* inside a stack, or below one never used */
      t = (const uvchan_task_t*)(c + (k + 1) * p->slot - p->reserve);
      *stp = uvchan__task_stack(t);
      return t;
    }
  }
  return NULL;
}

/* Hands a fault that is not an overflow to the handler installed before ours, as the kernel
 * would have. */
static void uvchan__chain(int sig, siginfo_t* si, void* uc) {
  struct sigaction* old = sig == SIGSEGV ? &uvchan__old_segv : &uvchan__old_bus;
  struct sigaction act = *old;
  int sent = si == NULL || si->si_code <= 0; /* by kill() and friends, not by a fault */

  if (act.sa_flags & SA_RESETHAND) {
    old->sa_handler = SIG_DFL;
    old->sa_flags &= ~SA_SIGINFO;
  }
  if ((act.sa_flags & SA_SIGINFO) && act.sa_sigaction != NULL) {
    pthread_sigmask(SIG_BLOCK, &act.sa_mask, NULL);
    act.sa_sigaction(sig, si, uc);
  } else if (act.sa_handler == SIG_IGN) {
    /* A sent signal is ignored; a fault cannot be: it comes back as soon as we return, and the
     * kernel kills the process, as it would have without us. */
    if (!sent)
      sigaction(sig, &act, NULL);
  } else if (act.sa_handler == SIG_DFL) {
    /* The default action, as if we had never been there: a fault comes back on return; a sent
     * signal is sent again, to be delivered when this handler returns. */
    sigaction(sig, &act, NULL);
    if (sent)
      raise(sig);
  } else {
    pthread_sigmask(SIG_BLOCK, &act.sa_mask, NULL);
    act.sa_handler(sig);
  }
}

static void uvchan__on_fault(int sig, siginfo_t* si, void* uc) {
  const uvchan_task_t* t;
  const uvchan__stack_t* st = NULL;
  int saved = errno;

  if (si != NULL && si->si_code > 0) {
    t = uvchan__guard_owner((const char*)si->si_addr, &st);
    if (t != NULL)
      uvchan__overflowed(t, st, "it reached the guard region below the stack");
  }
  uvchan__chain(sig, si, uc);
  errno = saved;
}
