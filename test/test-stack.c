/* Task stacks: every overflow stops the program with a message naming the task, in every guard
 * mode; a fault anywhere else still reaches the application's own handler; idle stacks give their
 * memory back; sizes that cannot work are refused.
 *
 * Crashes run in forked children. The guard mode (UVCHAN_STACK_GUARD) is read, and uvchan's fault
 * handler installed, once per process with its first task, so every test that forces a mode or
 * installs a handler before uvchan does runs in a child forked while this process has started no
 * task: those tests come first in main(), the tests that start tasks here come last. Each child
 * also checks its mode by what it sees (the message, the count of mappings), so a wrong order
 * fails instead of testing the wrong thing. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-helpers.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#if !defined(RUNNING_ON_VALGRIND)
#define RUNNING_ON_VALGRIND 0
#endif

#define KiB ((size_t)1024)

/* ---- children ---- */

typedef struct {
  int status;
  char out[64 * 1024]; /* what the child wrote to stderr */
} child_t;

static child_t kid;

/* In a child: fails it with a message the parent shows (cmocka's asserts belong to the parent). */
#define CHILD_CHECK(cond)                                                            \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "child: check failed at line %d: %s\n", __LINE__, #cond);      \
      _exit(90);                                                                     \
    }                                                                                \
  } while (0)

static void child_done(void) {
  fprintf(stderr, "child: done\n");
  _exit(0);
}

/* Runs body(arg) in a child with the guard mode `mode` (NULL: the kernel's best) and collects its
 * stderr and how it ended. */
static void child_run(child_t* c, const char* mode, void (*body)(void*), void* arg) {
  char sink[4096];
  size_t len = 0;
  ssize_t n;
  int fds[2];
  pid_t pid;

  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    if (dup2(fds[1], 2) < 0)
      _exit(91);
    close(fds[1]);
    setvbuf(stderr, NULL, _IONBF, 0);
    if (mode != NULL)
      setenv("UVCHAN_STACK_GUARD", mode, 1);
    else
      unsetenv("UVCHAN_STACK_GUARD");
    body(arg);
    child_done();
  }
  close(fds[1]);
  for (;;) {
    if (len < sizeof(c->out) - 1)
      n = read(fds[0], c->out + len, sizeof(c->out) - 1 - len);
    else
      n = read(fds[0], sink, sizeof(sink)); /* keep draining: the child must not block */
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (len < sizeof(c->out) - 1)
      len += (size_t)n;
  }
  c->out[len] = 0;
  close(fds[0]);
  assert_int_equal(waitpid(pid, &c->status, 0), pid);
}

static void show(const child_t* c) {
  print_message("child status %#x, its stderr:\n%s\n", (unsigned)c->status, c->out);
}

static void assert_contains(const child_t* c, const char* text) {
  if (strstr(c->out, text) == NULL) {
    show(c);
    fail_msg("the child did not print \"%s\"", text);
  }
}

static void assert_lacks(const child_t* c, const char* text) {
  if (strstr(c->out, text) != NULL) {
    show(c);
    fail_msg("the child printed \"%s\"", text);
  }
}

static void assert_child_signal(const child_t* c, int sig) {
  if (!WIFSIGNALED(c->status) || WTERMSIG(c->status) != sig) {
    show(c);
    fail_msg("the child did not die by signal %d", sig);
  }
}

/* Under valgrind a child's exit code is valgrind's: the memory it inherited from the test runner
 * counts as leaked. Its "done" line is what it finished. */
static void assert_child_done(const child_t* c) {
  assert_contains(c, "child: done");
  if (!RUNNING_ON_VALGRIND && !(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0)) {
    show(c);
    fail_msg("the child did not exit with 0");
  }
}

/* Lines of /proc/self/maps: the process's mappings. */
static long maps_lines(void) {
  char buf[4096];
  size_t n, i;
  long lines = 0;
  FILE* fp = fopen("/proc/self/maps", "r");
  if (fp == NULL)
    return -1;
  while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
    for (i = 0; i < n; i++)
      lines += buf[i] == '\n';
  fclose(fp);
  return lines;
}

/* Does this kernel have MADV_GUARD_INSTALL (Linux >= 6.13)? */
static int kernel_has_guard_install(void) {
  long page = sysconf(_SC_PAGESIZE);
  char* p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int ok;
  if (p == MAP_FAILED)
    return 0;
  ok = madvise(p, (size_t)page, 102 /* MADV_GUARD_INSTALL */) == 0;
  munmap(p, (size_t)page);
  return ok;
}

/* ---- part 1: overflows, in every guard mode ---- */

/* The frames below escape through volatile function pointers: no compiler can shrink them. */
static void keep(char* p) {
  (void)p;
}
static void (*volatile keep_fp)(char*) = keep;

/* About 100 KB of locals on a 64 KiB stack, written top down with non-zero bytes. */
__attribute__((noinline)) static void ovf_nonzero(void) {
  volatile char buf[100 * 1024];
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[sizeof(buf) - 1 - i] = (char)0xab;
  keep_fp((char*)buf);
}

/* The same buffer zero-filled: a zero canary would never see it. */
__attribute__((noinline)) static void ovf_zero(void) {
  char buf[100 * 1024] = {0};
  keep_fp(buf);
}

/* A 70 KB frame that writes only its lowest byte: it jumps a single guard page. */
__attribute__((noinline)) static void ovf_jump70(void) {
  volatile char buf[70 * 1024];
  buf[0] = 1;
  keep_fp((char*)buf);
}

/* Recursion, 150 frames of over 512 bytes: about 80 KB. */
static int depth(int n);
static int (*volatile depth_fp)(int) = depth;
static int depth(int n) {
  char pad[512];
  keep_fp(pad);
  pad[0] = (char)n;
  return n <= 0 ? pad[0] : depth_fp(n - 1) + pad[0];
}
__attribute__((noinline)) static void ovf_recursion(void) {
  (void)depth_fp(150);
}

#if defined(HAVE_STACK_CLASH)
void stack_clash_big_frame(void (*escape)(char*));
/* A 200 KB frame writing its lowest byte only, built with -fstack-clash-protection. */
__attribute__((noinline)) static void ovf_clash200(void) {
  stack_clash_big_frame(keep);
}
#endif

typedef struct {
  void (*fn)(void); /* overflows */
  int neighbours;   /* parked tasks spawned first, so theirs are the stacks just below */
  int guard_page;   /* the victim's attr.guard_page */
  const char* name; /* the victim's name (NULL: none) */
} ovf_t;

static uvchan_t park_ch;
static int intact; /* neighbours that found their own frames as they left them */

static void neighbour(void* arg) {
  volatile char mark[1024];
  int v;
  (void)arg;
  for (size_t i = 0; i < sizeof(mark); i++)
    mark[i] = (char)(i * 7 + 1);
  (void)uvchan_task_recv(&park_ch, &v);
  for (size_t i = 0; i < sizeof(mark); i++)
    if (mark[i] != (char)(i * 7 + 1))
      return;
  intact++;
}

static void victim(void* arg) {
  const ovf_t* o = arg;
  o->fn();
  /* A canary stack is checked when the task leaves. */
  uvchan_task_yield();
}

static void ovf_body(void* arg) {
  const ovf_t* o = arg;
  uvchan_task_attr_t na = {.name = "neighbour"};
  uvchan_task_attr_t va = {.name = o->name, .guard_page = o->guard_page};
  uv_loop_t loop;
  uvchan_ctx_t ctx;

  long maps = 0;

  CHILD_CHECK(uv_loop_init(&loop) == 0);
  CHILD_CHECK(uvchan_ctx_init(&loop, &ctx) == 0);
  CHILD_CHECK(uvchan_init(&ctx, &park_ch, sizeof(int), 0) == 0);
  for (int i = 0; i < o->neighbours; i++) {
    CHILD_CHECK(uvchan_task_spawn(&ctx, neighbour, NULL, &na) == 0);
    if (i == 0)
      maps = maps_lines(); /* after the first stack, its chunk and the handler's stack */
  }
  CHILD_CHECK(uvchan_task_spawn(&ctx, victim, (void*)o, &va) == 0);
  /* What the other stacks cost in mappings tells the guard mode: 2 each with mprotect, else 0. */
  if (o->neighbours > 0)
    fprintf(stderr, "child: maps +%ld for %d more stacks\n", maps_lines() - maps, o->neighbours);
  uv_run(&loop, UV_RUN_DEFAULT);
  /* Reached only when the overflow went unnoticed: the neighbours say whether it hurt them. */
  CHILD_CHECK(uvchan_close(&park_ch) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  fprintf(stderr, "child: overflow not stopped, %d of %d neighbours intact\n", intact,
          o->neighbours);
  CHILD_CHECK(uvchan_destroy(&park_ch) == 0);
  CHILD_CHECK(uvchan_ctx_close(&ctx, NULL) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHILD_CHECK(uv_loop_close(&loop) == 0);
}

enum { NEIGHBOURS = 4 };
static const char* const modes[] = {NULL, "madvise", "mprotect", "canary"};

/* Runs `fn` as the victim in each guard mode; expects the message naming it, from its guard
 * region, or from its canary. Where a canary may not see it (!canary_sees), the overflow must
 * at least have stayed in the unprotected region below the stack: every neighbour intact. */
static void overflow_case(void (*fn)(void), int neighbours, const char* name, int canary_sees) {
  char want[256], who[64];
  ovf_t o = {fn, neighbours, 0, name};
  long maps;
  const char* m;

  snprintf(who, sizeof(who), "%s#%d", name != NULL ? name : "", neighbours + 1);
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    if (modes[i] != NULL && strcmp(modes[i], "madvise") == 0 && !kernel_has_guard_install()) {
      print_message("madvise mode skipped: this kernel has no MADV_GUARD_INSTALL\n");
      continue;
    }
    child_run(&kid, modes[i], ovf_body, &o);
    if (modes[i] != NULL && strcmp(modes[i], "canary") == 0 && !canary_sees &&
        !WIFSIGNALED(kid.status)) {
      assert_child_done(&kid);
      snprintf(want, sizeof(want), "overflow not stopped, %d of %d neighbours intact", neighbours,
               neighbours);
      assert_contains(&kid, want);
      continue;
    }
    assert_child_signal(&kid, SIGABRT);
    snprintf(want, sizeof(want), "uvchan: task %s overflowed its stack of %zu bytes (%s", who,
             (size_t)UVCHAN_DEFAULT_STACK_SIZE,
             modes[i] != NULL && strcmp(modes[i], "canary") == 0 ? "its canary was overwritten"
                                                                   : "it reached the guard region");
    assert_contains(&kid, want);
    assert_contains(&kid, "-fstack-clash-protection");
    assert_lacks(&kid, "not stopped");
    /* The mode really was the one asked for. */
    m = strstr(kid.out, "child: maps +");
    if (neighbours > 0 && modes[i] != NULL) {
      assert_non_null(m);
      maps = atol(m + strlen("child: maps +"));
      if (strcmp(modes[i], "mprotect") == 0)
        assert_true(maps >= 2 * neighbours);
      else
        assert_true(maps < neighbours);
    }
  }
}

/* The program's first task: its stack is the lowest of its chunk. */
static void test_overflow_first_stack(void** state) {
  (void)state;
  overflow_case(ovf_nonzero, 0, "victim", 1);
}

/* Non-zero bytes from a stack in the middle of a chunk, with parked neighbours below. */
static void test_overflow_nonzero_mid_chunk(void** state) {
  (void)state;
  overflow_case(ovf_nonzero, NEIGHBOURS, "victim", 1);
}

static void test_overflow_zero_fill(void** state) {
  (void)state;
  overflow_case(ovf_zero, NEIGHBOURS, "victim", 1);
}

/* A canary cannot see a frame that steps over it; it lands in the unprotected region below the
 * stack, which belongs to no task. */
static void test_overflow_jump_70k(void** state) {
  (void)state;
  overflow_case(ovf_jump70, NEIGHBOURS, "victim", 0);
}

/* Each frame writes a few words of its 512 bytes: a canary may sit between them (and then, as the
 * frame that jumps it, the overflow stays in the region below the stack). */
static void test_overflow_recursion(void** state) {
  (void)state;
  overflow_case(ovf_recursion, NEIGHBOURS, "victim", 0);
}

static void test_overflow_unnamed_task(void** state) {
  (void)state;
  overflow_case(ovf_nonzero, 1, NULL, 1);
}

/* attr.guard_page asks for a guard region even in canary mode. */
static void test_overflow_guard_page_in_canary_mode(void** state) {
  ovf_t o = {ovf_jump70, NEIGHBOURS, 1, "guarded"};
  (void)state;
  child_run(&kid, "canary", ovf_body, &o);
  assert_child_signal(&kid, SIGABRT);
  assert_contains(&kid, "uvchan: task guarded#5 overflowed its stack of 65536 bytes (it reached "
                        "the guard region");
}

/* A frame three times the guard's depth: -fstack-clash-protection makes it probe every page, so
 * the guard stops it (a canary stack cannot: the test is for the guard modes). */
static void test_overflow_200k_frame_with_stack_clash_protection(void** state) {
  (void)state;
#if defined(HAVE_STACK_CLASH)
  for (size_t i = 0; i < 3; i++) {
    ovf_t o = {ovf_clash200, NEIGHBOURS, 0, "clash"};
    if (modes[i] != NULL && strcmp(modes[i], "madvise") == 0 && !kernel_has_guard_install())
      continue;
    child_run(&kid, modes[i], ovf_body, &o);
    assert_child_signal(&kid, SIGABRT);
    assert_contains(&kid, "uvchan: task clash#5 overflowed its stack of 65536 bytes (it reached "
                          "the guard region");
  }
#else
  skip(); /* the compiler has no -fstack-clash-protection */
#endif
}

/* A thread of its own that runs tasks gets an alternate signal stack: its overflow is named. */
static void* thread_overflow(void* arg) {
  ovf_body(arg);
  return NULL;
}
static void thread_body(void* arg) {
  pthread_t th;
  CHILD_CHECK(pthread_create(&th, NULL, thread_overflow, arg) == 0);
  pthread_join(th, NULL);
}

static void test_overflow_on_another_thread(void** state) {
  ovf_t o = {ovf_nonzero, 1, 0, "threaded"};
  (void)state;
  child_run(&kid, NULL, thread_body, &o);
  assert_child_signal(&kid, SIGABRT);
  assert_contains(&kid, "uvchan: task threaded#2 overflowed its stack of 65536 bytes");
}

/* ---- part 1: faults elsewhere are the application's ---- */

static char* bad_page; /* PROT_NONE, and no task's */

static void fault_task(void* arg) {
  (void)arg;
  bad_page[1] = 1;
}

static void say(const char* s) {
  ssize_t r = write(2, s, strlen(s));
  (void)r;
}

/* The application's handlers: each says who it is, then lets the fault come back with the
 * default action. */
static void app_siginfo(int sig, siginfo_t* si, void* uc) {
  (void)uc;
  say(si->si_addr == bad_page + 1 ? "app: siginfo handler, right address\n"
                                  : "app: siginfo handler, wrong address\n");
  signal(sig, SIG_DFL);
}
static void app_plain(int sig) {
  say("app: plain handler\n");
  signal(sig, SIG_DFL);
}

enum { APP_SIGINFO, APP_PLAIN, APP_DEFAULT, APP_IGNORE, APP_IGNORE_SENT, APP_AFTER_SPAWN };

typedef struct {
  int handler;    /* APP_* */
  int from_task;  /* the bad access in a task, else on the loop's side */
  int overflow;   /* an overflow instead of the bad access */
} app_t;

static void nop_task(void* arg) {
  (void)arg;
}

static void ovf_task(void* arg) {
  (void)arg;
  ovf_nonzero();
}

static void app_body(void* arg) {
  const app_t* a = arg;
  struct sigaction sa, cur;
  uvchan_task_attr_t attr = {.name = "app"};
  uv_loop_t loop;
  uvchan_ctx_t ctx;

  bad_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHILD_CHECK(bad_page != MAP_FAILED);
  memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  if (a->handler == APP_SIGINFO || a->handler == APP_AFTER_SPAWN) {
    sa.sa_sigaction = app_siginfo;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  } else if (a->handler == APP_PLAIN) {
    sa.sa_handler = app_plain;
  } else {
    sa.sa_handler = a->handler == APP_DEFAULT ? SIG_DFL : SIG_IGN;
  }
  if (a->handler != APP_AFTER_SPAWN)
    CHILD_CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
  CHILD_CHECK(uv_loop_init(&loop) == 0);
  CHILD_CHECK(uvchan_ctx_init(&loop, &ctx) == 0);
  CHILD_CHECK(uvchan_task_spawn(&ctx, nop_task, NULL, NULL) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  /* The first task put uvchan's handler in front. */
  CHILD_CHECK(sigaction(SIGSEGV, NULL, &cur) == 0);
  CHILD_CHECK((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction != app_siginfo);
  if (a->handler == APP_AFTER_SPAWN)
    CHILD_CHECK(sigaction(SIGSEGV, &sa, NULL) == 0); /* replaces uvchan's, as documented */
  if (a->handler == APP_IGNORE_SENT) {
    raise(SIGSEGV); /* sent, not a fault: ignored as the application asked */
    fprintf(stderr, "child: survived a sent SIGSEGV\n");
  } else if (a->overflow || a->from_task) {
    CHILD_CHECK(uvchan_task_spawn(&ctx, a->overflow ? ovf_task : fault_task, NULL, &attr) == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  } else {
    bad_page[1] = 1;
  }
  CHILD_CHECK(uvchan_ctx_close(&ctx, NULL) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHILD_CHECK(uv_loop_close(&loop) == 0);
}

static void test_fault_elsewhere_reaches_app_siginfo_handler(void** state) {
  (void)state;
  for (int from_task = 0; from_task < 2; from_task++) {
    app_t a = {APP_SIGINFO, from_task, 0};
    child_run(&kid, NULL, app_body, &a);
    assert_child_signal(&kid, SIGSEGV);
    assert_contains(&kid, "app: siginfo handler, right address");
    assert_lacks(&kid, "uvchan:");
  }
}

static void test_fault_elsewhere_reaches_app_plain_handler(void** state) {
  app_t a = {APP_PLAIN, 1, 0};
  (void)state;
  child_run(&kid, NULL, app_body, &a);
  assert_child_signal(&kid, SIGSEGV);
  assert_contains(&kid, "app: plain handler");
  assert_lacks(&kid, "uvchan:");
}

/* No handler: the default action, a bare SIGSEGV, as without uvchan. */
static void test_fault_elsewhere_default_action(void** state) {
  app_t a = {APP_DEFAULT, 1, 0};
  (void)state;
  child_run(&kid, NULL, app_body, &a);
  assert_child_signal(&kid, SIGSEGV);
  assert_lacks(&kid, "uvchan:");
}

/* SIGSEGV ignored: a fault still kills (the kernel allows no other way), a sent one is ignored. */
static void test_fault_elsewhere_ignored(void** state) {
  app_t a = {APP_IGNORE, 1, 0};
  app_t sent = {APP_IGNORE_SENT, 0, 0};
  (void)state;
  child_run(&kid, NULL, app_body, &a);
  assert_child_signal(&kid, SIGSEGV);
  assert_lacks(&kid, "uvchan:");
  child_run(&kid, NULL, app_body, &sent);
  assert_child_done(&kid);
  assert_contains(&kid, "child: survived a sent SIGSEGV");
}

/* With an application handler in place, an overflow is still uvchan's to report. */
static void test_overflow_with_app_handler(void** state) {
  app_t a = {APP_SIGINFO, 1, 1};
  (void)state;
  child_run(&kid, NULL, app_body, &a);
  assert_child_signal(&kid, SIGABRT);
  assert_contains(&kid, "uvchan: task app#2 overflowed its stack of 65536 bytes");
  assert_lacks(&kid, "app: siginfo handler");
}

/* A handler installed after the first task replaces uvchan's (documented): the overflow is the
 * application's fault to handle then. */
static void test_app_handler_after_first_task_replaces_uvchan(void** state) {
  app_t a = {APP_AFTER_SPAWN, 1, 1};
  (void)state;
  child_run(&kid, NULL, app_body, &a);
  assert_child_signal(&kid, SIGSEGV);
  assert_contains(&kid, "app: siginfo handler, wrong address");
  assert_lacks(&kid, "uvchan:");
}

/* ---- part 3: the mapping budget of mprotect guards ---- */

static long read_long(const char* path) {
  long v = -1;
  FILE* fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  if (fscanf(fp, "%ld", &v) != 1)
    v = -1;
  fclose(fp);
  return v;
}

static void park_task(void* arg) {
  int v;
  (void)uvchan_task_recv(arg, &v);
}

static void budget_body(void* arg) {
  long max = read_long("/proc/sys/vm/max_map_count");
  long n, lines, before = maps_lines();
  uvchan_task_attr_t hard = {.stack_size = UVCHAN_MIN_STACK_SIZE, .guard_page = 1};
  uvchan_task_attr_t soft = {.stack_size = UVCHAN_MIN_STACK_SIZE};
  char* pages[64];
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t ch;
  int r = 0;
  (void)arg;

  CHILD_CHECK(max > 0);
  CHILD_CHECK(uv_loop_init(&loop) == 0);
  CHILD_CHECK(uvchan_ctx_init(&loop, &ctx) == 0);
  CHILD_CHECK(uvchan_init(&ctx, &ch, sizeof(int), 0) == 0);
  for (n = 0; n < max; n++)
    if ((r = uvchan_task_spawn(&ctx, park_task, &ch, &hard)) != 0)
      break;
  lines = maps_lines();
  fprintf(stderr, "child: %ld guarded tasks, then %d; %ld mappings of %ld (%ld before)\n", n, r,
          lines, max, before);
  /* Refused with a margin left for the rest of the program, after using most of the budget. */
  CHILD_CHECK(r == UV_ENOMEM);
  CHILD_CHECK(lines <= max - max / 16);
  CHILD_CHECK(n >= (max - max / 8 - before) / 2 - 1000);
  for (int i = 0; i < 64; i++) { /* every other mmap still works */
    pages[i] = mmap(NULL, 4096, i % 2 ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHILD_CHECK(pages[i] != MAP_FAILED);
  }
  for (int i = 0; i < 64; i++)
    munmap(pages[i], 4096);
  /* Tasks that did not ask for a guard still start, on canary stacks, costing no mapping. */
  for (int i = 0; i < 1000; i++)
    CHILD_CHECK(uvchan_task_spawn(&ctx, park_task, &ch, &soft) == 0);
  CHILD_CHECK(maps_lines() <= lines + 20);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHILD_CHECK(uvchan_waiting_receivers(&ch) == (size_t)n + 1000);
  CHILD_CHECK(uvchan_destroy(&ch) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHILD_CHECK(uvchan_ctx_close(&ctx, NULL) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHILD_CHECK(uv_loop_close(&loop) == 0);
  /* The closed context gave its mappings back. */
  CHILD_CHECK(maps_lines() < before + 100);
}

static void test_mprotect_budget_refuses_before_max_map_count(void** state) {
  (void)state;
  if (RUNNING_ON_VALGRIND)
    skip(); /* valgrind's own table of mappings (VG_N_SEGMENTS) holds fewer than this needs */
  child_run(&kid, "mprotect", budget_body, NULL);
  assert_child_done(&kid);
}

/* ---- part 3, in this process: sizes, memory given back, alternate stacks ---- */

static long vm_bytes(void) {
  long pages = 0;
  FILE* fp = fopen("/proc/self/statm", "r");
  if (fp == NULL)
    return -1;
  if (fscanf(fp, "%ld", &pages) != 1)
    pages = -1;
  fclose(fp);
  return pages * sysconf(_SC_PAGESIZE);
}

static int ran;
static void big_stack_task(void* arg) {
  volatile char buf[1024 * 1024]; /* a frame larger than anything below the largest stack */
  (void)arg;
  buf[0] = 1;
  keep_fp((char*)buf);
  ran++;
}

static void test_stack_size_limits(void** state) {
  fixture_t* f = FX(state);
  uvchan_task_attr_t attr = {0};
  long before;
  ran = 0;
  attr.stack_size = (size_t)1 << 40; /* 1 TiB */
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), UV_EINVAL);
  attr.stack_size = UVCHAN_MAX_STACK_SIZE + 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), UV_EINVAL);
  attr.stack_size = UVCHAN_MIN_STACK_SIZE - 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), UV_EINVAL);
  attr.stack_size = UVCHAN_MIN_STACK_SIZE;
  assert_int_equal(uvchan_task_spawn(&f->ctx, nop_task, NULL, &attr), 0);
  /* The largest stack works, and its chunk holds it alone: not 64 times its size. */
  before = vm_bytes();
  attr.stack_size = UVCHAN_MAX_STACK_SIZE;
  assert_int_equal(uvchan_task_spawn(&f->ctx, big_stack_task, NULL, &attr), 0);
  assert_true(vm_bytes() - before < 2 * (long)UVCHAN_MAX_STACK_SIZE);
  RUN(f);
  assert_int_equal(ran, 1);
}

/* A synchronous getaddrinfo() fits the smallest stack. */
static int resolved;
static void resolve_task(void* arg) {
  struct addrinfo hints, *res = NULL;
  (void)arg;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  resolved = getaddrinfo("localhost", "80", &hints, &res);
  if (res != NULL)
    freeaddrinfo(res);
}

static void test_getaddrinfo_fits_min_stack(void** state) {
  fixture_t* f = FX(state);
  uvchan_task_attr_t attr = {.stack_size = UVCHAN_MIN_STACK_SIZE, .name = "resolver"};
  resolved = -1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, resolve_task, NULL, &attr), 0);
  RUN(f);
  assert_int_equal(resolved, 0);
}

/* Stacks of ended tasks stay resident for fast reuse, and go back once the program has been idle
 * for about two seconds: a timer that does not keep the loop alive releases them. */
static long rss_bytes(void) {
  long pages = 0, resident = 0;
  FILE* fp = fopen("/proc/self/statm", "r");
  if (fp == NULL)
    return -1;
  if (fscanf(fp, "%ld %ld", &pages, &resident) != 2)
    resident = -1;
  fclose(fp);
  return resident * sysconf(_SC_PAGESIZE);
}

static uvchan_t scav_ch;
static int scav_ended;
static void scav_task(void* arg) {
  volatile char big[32 * 1024];
  long v;
  (void)arg;
  for (size_t i = 0; i < sizeof(big); i += 512)
    big[i] = 1;
  keep_fp((char*)big);
  (void)uvchan_task_recv(&scav_ch, &v);
  for (size_t i = 0; i < sizeof(big); i += 512)
    if (big[i] != 1)
      return;
  scav_ended++;
}

/* 1000 tasks that each touch 32 KB of stack, park, and end when the channel closes. */
static void scav_wave(fixture_t* f) {
  scav_ended = 0;
  assert_int_equal(uvchan_init(&f->ctx, &scav_ch, sizeof(long), 0), 0);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(uvchan_task_spawn(&f->ctx, scav_task, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(uvchan_close(&scav_ch), 0);
  RUN(f);
  assert_int_equal(scav_ended, 1000);
  assert_int_equal(uvchan_destroy(&scav_ch), 0);
}

static long idle_rss;
static void idle_over(uv_timer_t* t) {
  idle_rss = rss_bytes();
  uv_close((uv_handle_t*)t, NULL);
}

static void test_idle_stacks_released(void** state) {
  fixture_t* f = FX(state);
  uv_timer_t idle;
  long before, hot;
  before = rss_bytes();
  scav_wave(f);
  hot = rss_bytes(); /* the 1000 finished stacks are still resident, ready for reuse */
  /* The scavenger's timer is running, yet the loop had nothing left to do and returned. */
  assert_int_equal(uv_loop_alive(&f->loop), 0);
  /* An idle program: its loop waits 2.5 s for a timer of its own. */
  assert_int_equal(uv_timer_init(&f->loop, &idle), 0);
  assert_int_equal(uv_timer_start(&idle, idle_over, 2500, 0), 0);
  RUN(f);
  print_message("rss: before %ld KB, 1000 ended tasks %ld KB, after 2.5 s idle %ld KB\n",
                before / 1024, hot / 1024, idle_rss / 1024);
  assert_true(hot - before > 20 * 1024 * 1024);
  assert_true(hot - idle_rss > 20 * 1024 * 1024); /* all but the hot set of 64 went back */
  scav_wave(f); /* released stacks are reused as they are */
}

/* The thread running tasks has an alternate signal stack while its context has stacks; uvchan's
 * own goes with the context (a thread that had one keeps it untouched). */

static stack_t alt_during;
static void alt_task(void* arg) {
  (void)arg;
  (void)sigaltstack(NULL, &alt_during);
}

typedef struct {
  stack_t before, after;
  int setup_ok, teardown_ok;
} alt_t;

/* On a thread of its own, cmocka's asserts are the main thread's business: it records. */
static void* alt_thread(void* arg) {
  alt_t* a = arg;
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  (void)sigaltstack(NULL, &a->before);
  a->setup_ok = uv_loop_init(&loop) == 0 && uvchan_ctx_init(&loop, &ctx) == 0 &&
                uvchan_task_spawn(&ctx, alt_task, NULL, NULL) == 0;
  if (!a->setup_ok)
    return NULL;
  uv_run(&loop, UV_RUN_DEFAULT);
  a->teardown_ok = uvchan_ctx_close(&ctx, NULL) == 0 && uv_run(&loop, UV_RUN_DEFAULT) == 0 &&
                   uv_loop_close(&loop) == 0;
  (void)sigaltstack(NULL, &a->after);
  return NULL;
}

static void test_alternate_stack_per_thread(void** state) {
  alt_t a;
  pthread_t th;
  (void)state;
  memset(&a, 0, sizeof(a));
  memset(&alt_during, 0, sizeof(alt_during));
  alt_during.ss_flags = SS_DISABLE;
  assert_int_equal(pthread_create(&th, NULL, alt_thread, &a), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_true(a.setup_ok);
  assert_true(a.teardown_ok);
  assert_false(alt_during.ss_flags & SS_DISABLE); /* the task ran with one */
  if (a.before.ss_flags & SS_DISABLE) {
    assert_true(a.after.ss_flags & SS_DISABLE); /* uvchan's went with the context */
  } else {
    assert_ptr_equal(alt_during.ss_sp, a.before.ss_sp); /* the thread's own, untouched */
    assert_ptr_equal(a.after.ss_sp, a.before.ss_sp);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* In children forked before this process starts any task. */
      cmocka_unit_test(test_overflow_first_stack),
      cmocka_unit_test(test_overflow_nonzero_mid_chunk),
      cmocka_unit_test(test_overflow_zero_fill),
      cmocka_unit_test(test_overflow_jump_70k),
      cmocka_unit_test(test_overflow_recursion),
      cmocka_unit_test(test_overflow_unnamed_task),
      cmocka_unit_test(test_overflow_guard_page_in_canary_mode),
      cmocka_unit_test(test_overflow_200k_frame_with_stack_clash_protection),
      cmocka_unit_test(test_overflow_on_another_thread),
      cmocka_unit_test(test_fault_elsewhere_reaches_app_siginfo_handler),
      cmocka_unit_test(test_fault_elsewhere_reaches_app_plain_handler),
      cmocka_unit_test(test_fault_elsewhere_default_action),
      cmocka_unit_test(test_fault_elsewhere_ignored),
      cmocka_unit_test(test_overflow_with_app_handler),
      cmocka_unit_test(test_app_handler_after_first_task_replaces_uvchan),
      cmocka_unit_test(test_mprotect_budget_refuses_before_max_map_count),
      /* Tasks in this process. */
      TEST(test_stack_size_limits),
      TEST(test_getaddrinfo_fits_min_stack),
      TEST(test_idle_stacks_released),
      cmocka_unit_test(test_alternate_stack_per_thread),
  };
  return cmocka_run_group_tests_name("stack", tests, NULL, NULL);
}
