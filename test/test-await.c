/* Await: a task blocking on a libuv request (uv_fs_*, uv_queue_work, uv_getaddrinfo) through
 * uvchan_await_t, with deadlines and cancels that never leave the request touching freed memory. */
#include <stdio.h>

#include "test-helpers.h"

enum { POOL = 2 }; /* UV_THREADPOOL_SIZE, set in main() before the pool starts */

/* ---- the three wrappers, as the guide shows them ---- */

/* 1. uv_fs_stat: the request lives on the task's stack; without a release callback the task
 * waits for the request's callback even after a deadline, so the stack stays valid. */
static void on_fs(uv_fs_t* fs) {
  uvchan_await_done(fs->data, fs->result);
}
static void cancel_req(uvchan_await_t* aw) {
  (void)uv_cancel((uv_req_t*)aw->data);
}

static int task_stat(uv_loop_t* loop, const char* path, uv_stat_t* out) {
  uv_fs_t fs;
  uvchan_await_t aw;
  int r;
  uvchan_await_init(&aw, cancel_req, NULL);
  aw.data = &fs;
  fs.data = &aw;
  r = uv_fs_stat(loop, &fs, path, on_fs);
  if (r == 0) {
    r = (int)uvchan_task_await_timeout(&aw, 10000);
    if (r == 0)
      *out = fs.statbuf;
  }
  uv_fs_req_cleanup(&fs);
  return r;
}

/* 2. uv_queue_work: the same shape; the result travels in the work's own struct. */
typedef struct {
  uv_work_t work;
  uvchan_await_t aw;
  uv_sem_t* gate; /* if set, the work blocks on it */
  uv_sem_t* running; /* if set, posted when the work starts */
  long in, out;
} job_t;

static void job_work(uv_work_t* w) {
  job_t* j = (job_t*)w;
  if (j->running != NULL)
    uv_sem_post(j->running);
  if (j->gate != NULL)
    uv_sem_wait(j->gate);
  j->out = j->in * j->in;
}
static void job_after(uv_work_t* w, int status) {
  job_t* j = (job_t*)w;
  uvchan_await_done(&j->aw, status);
}
static void cancel_job(uvchan_await_t* aw) {
  job_t* j = UVCHAN__TEST_CONTAINER(aw, job_t, aw);
  (void)uv_cancel((uv_req_t*)&j->work);
}

static ssize_t task_work(uv_loop_t* loop, job_t* j, uint64_t timeout) {
  int r;
  uvchan_await_init(&j->aw, cancel_job, NULL);
  r = uv_queue_work(loop, &j->work, job_work, job_after);
  if (r != 0)
    return r;
  return timeout ? uvchan_task_await_timeout(&j->aw, timeout) : uvchan_task_await(&j->aw);
}

/* 3. uv_getaddrinfo with a release callback: the request is on the heap, so a deadline returns
 * at once and the late callback frees it. */
typedef struct {
  uv_getaddrinfo_t req;
  uvchan_await_t aw;
  struct addrinfo* res;
} lookup_t;

static int released;
static void on_lookup(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  lookup_t* l = (lookup_t*)req;
  l->res = res;
  uvchan_await_done(&l->aw, status);
}
static void release_lookup(uvchan_await_t* aw) {
  lookup_t* l = UVCHAN__TEST_CONTAINER(aw, lookup_t, aw);
  uv_freeaddrinfo(l->res);
  free(l);
  released++;
}
static void cancel_lookup(uvchan_await_t* aw) {
  lookup_t* l = UVCHAN__TEST_CONTAINER(aw, lookup_t, aw);
  (void)uv_cancel((uv_req_t*)&l->req);
}

static int task_lookup(uv_loop_t* loop, const char* host, struct addrinfo** out, uint64_t timeout) {
  lookup_t* l = calloc(1, sizeof(*l));
  int r;
  if (l == NULL)
    return UV_ENOMEM;
  uvchan_await_init(&l->aw, cancel_lookup, release_lookup);
  r = uv_getaddrinfo(loop, &l->req, on_lookup, host, NULL, NULL);
  if (r != 0) {
    free(l);
    return r;
  }
  r = (int)uvchan_task_await_timeout(&l->aw, timeout);
  if (uvchan_await_abandoned(&l->aw))
    return r; /* a deadline or cancel: `l` now belongs to release_lookup */
  if (r == 0)
    *out = l->res; /* the caller frees it */
  free(l);
  return r;
}

/* ---- tests ---- */

static uv_loop_t* LOOP;
static int result;

static void stat_task(void* arg) {
  uv_stat_t st;
  result = task_stat(LOOP, arg, &st);
  if (result == 0)
    assert_true(st.st_size > 0);
}

static void test_await_fs(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  result = 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, stat_task, (void*)__FILE__, NULL), 0);
  RUN(f);
  assert_int_equal(result, 0);
  result = 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, stat_task, "/no/such/file", NULL), 0);
  RUN(f);
  assert_int_equal(result, UV_ENOENT);
}

static void work_task(void* arg) {
  job_t* j = arg;
  result = (int)task_work(LOOP, j, 0);
}

static void test_await_work(void** state) {
  fixture_t* f = FX(state);
  job_t j;
  memset(&j, 0, sizeof(j));
  j.in = 12;
  LOOP = &f->loop;
  result = 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, work_task, &j, NULL), 0);
  RUN(f);
  assert_int_equal(result, 0);
  assert_int_equal(j.out, 144);
}

/* The pool is full, so the job is still queued when the deadline comes: uv_cancel() takes it
 * back, and the task gets UV_ETIMEDOUT. */
static uv_sem_t gate;
static job_t blockers[POOL];

static void timed_out_task(void* arg) {
  job_t* j = arg;
  result = (int)task_work(LOOP, j, 5);
  for (int i = 0; i < POOL; i++)
    uv_sem_post(&gate); /* let the blockers finish */
}

static void test_await_deadline_cancels_queued_work(void** state) {
  fixture_t* f = FX(state);
  job_t j;
  assert_int_equal(uv_sem_init(&gate, 0), 0);
  for (int i = 0; i < POOL; i++) {
    memset(&blockers[i], 0, sizeof(blockers[i]));
    blockers[i].gate = &gate;
    uvchan_await_init(&blockers[i].aw, NULL, NULL); /* reported to nobody: no task waits */
    assert_int_equal(uv_queue_work(&f->loop, &blockers[i].work, job_work, job_after), 0);
  }
  memset(&j, 0, sizeof(j));
  j.in = 3;
  LOOP = &f->loop;
  result = 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, timed_out_task, &j, NULL), 0);
  RUN(f);
  assert_int_equal(result, UV_ETIMEDOUT);
  assert_int_equal(j.out, 0); /* it never ran */
  uv_sem_destroy(&gate);
}

/* The job already runs when the deadline comes: it cannot be taken back, so the task waits for
 * it (its request is on the task's stack) and reports the real result. */
static void late_post(uv_timer_t* t) {
  uv_sem_post(t->data);
  uv_close((uv_handle_t*)t, NULL);
}

/* The deadline must come once the job runs, however slowly the threadpool picks it up
 * (valgrind, a busy machine): right after queueing it, the task arms a timer whose callback holds
 * the loop until the job has started; the deadline's timer is due later and fires after it. */
static uv_sem_t job_running;
static uv_timer_t hold;
static void hold_until_running(uv_timer_t* t) {
  uv_sem_wait(&job_running);
  uv_close((uv_handle_t*)t, NULL);
}

static void running_timed_out_task(void* arg) {
  job_t* j = arg;
  assert_int_equal(uv_timer_init(LOOP, &hold), 0);
  assert_int_equal(uv_timer_start(&hold, hold_until_running, 0, 0), 0);
  result = (int)task_work(LOOP, j, 5);
}

static void test_await_deadline_waits_for_running_work(void** state) {
  fixture_t* f = FX(state);
  job_t j;
  uv_timer_t t;
  assert_int_equal(uv_sem_init(&gate, 0), 0);
  assert_int_equal(uv_sem_init(&job_running, 0), 0);
  memset(&j, 0, sizeof(j));
  j.in = 4;
  j.gate = &gate;
  j.running = &job_running;
  LOOP = &f->loop;
  result = 1;
  assert_int_equal(uv_timer_init(&f->loop, &t), 0);
  t.data = &gate;
  assert_int_equal(uv_timer_start(&t, late_post, 30, 0), 0);
  assert_int_equal(uvchan_task_spawn(&f->ctx, running_timed_out_task, &j, NULL), 0);
  RUN(f);
  assert_int_equal(result, 0); /* the real outcome, not UV_ETIMEDOUT */
  assert_int_equal(j.out, 16);
  uv_sem_destroy(&gate);
  uv_sem_destroy(&job_running);
}

static void lookup_task(void* arg) {
  struct addrinfo* res = NULL;
  result = task_lookup(LOOP, arg, &res, 10000);
  if (result == 0) {
    assert_non_null(res);
    uv_freeaddrinfo(res);
  }
}

static void test_await_getaddrinfo(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  result = 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, lookup_task, "localhost", NULL), 0);
  RUN(f);
  assert_int_equal(result, 0);
}

/* With a release callback, a deadline returns at once; the late callback releases the request. */
typedef struct {
  uv_work_t work;
  uvchan_await_t aw;
} heap_job_t;

static void heap_work(uv_work_t* w) {
  (void)w;
  uv_sem_wait(&gate);
}
static void heap_after(uv_work_t* w, int status) {
  uvchan_await_done(&((heap_job_t*)w)->aw, status);
}
static void heap_release(uvchan_await_t* aw) {
  free(UVCHAN__TEST_CONTAINER(aw, heap_job_t, aw));
  released++;
}

static int returned_before_release;
static void abandon_task(void* arg) {
  heap_job_t* h = calloc(1, sizeof(*h));
  (void)arg;
  uvchan_await_init(&h->aw, NULL, heap_release);
  assert_int_equal(uv_queue_work(LOOP, &h->work, heap_work, heap_after), 0);
  result = (int)uvchan_task_await_timeout(&h->aw, 5);
  returned_before_release = released == 0;
  uv_sem_post(&gate);
}

static void test_await_release_abandons_on_deadline(void** state) {
  fixture_t* f = FX(state);
  assert_int_equal(uv_sem_init(&gate, 0), 0);
  LOOP = &f->loop;
  released = 0;
  result = 1;
  assert_int_equal(uvchan_task_spawn(&f->ctx, abandon_task, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(result, UV_ETIMEDOUT);
  assert_int_equal(returned_before_release, 1);
  assert_int_equal(released, 1);
  uv_sem_destroy(&gate);
}

/* An operation that finishes before the task waits: the wait returns at once. */
static void early_task(void* arg) {
  uvchan_await_t aw;
  (void)arg;
  assert_int_equal(uvchan_await_init(&aw, NULL, NULL), 0);
  uvchan_await_done(&aw, 42);
  result = (int)uvchan_task_await(&aw);
  assert_int_equal(uvchan_task_await(&aw), UV_EINVAL); /* one wait per operation */
}

static void test_await_done_before_wait(void** state) {
  fixture_t* f = FX(state);
  result = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, early_task, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(result, 42);
}

/* Cancelling the task while it awaits goes through the cancel callback. */
static void cancelled_task(void* arg) {
  job_t* j = arg;
  result = (int)task_work(LOOP, j, 0);
  assert_int_equal(uvchan_task_cancelled(), 1);
  for (int i = 0; i < POOL; i++)
    uv_sem_post(&gate);
}

static void test_await_task_cancel(void** state) {
  fixture_t* f = FX(state);
  job_t j;
  uvchan_task_ref_t ref;
  assert_int_equal(uv_sem_init(&gate, 0), 0);
  for (int i = 0; i < POOL; i++) {
    memset(&blockers[i], 0, sizeof(blockers[i]));
    blockers[i].gate = &gate;
    uvchan_await_init(&blockers[i].aw, NULL, NULL);
    assert_int_equal(uv_queue_work(&f->loop, &blockers[i].work, job_work, job_after), 0);
  }
  memset(&j, 0, sizeof(j));
  LOOP = &f->loop;
  result = 1;
  assert_int_equal(uvchan_task_spawn_ref(&f->ctx, &ref, cancelled_task, &j, NULL), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(uvchan_ctx_walk_waiting(&f->ctx, NULL, NULL), 1); /* an await */
  assert_int_equal(uvchan_task_cancel(&ref), 0);
  RUN(f);
  assert_int_equal(result, UV_ECANCELED);
  uv_sem_destroy(&gate);
}

/* A lookup that fails by itself (no deadline, no cancel) is not abandoned: the caller frees. */
static void failing_lookup_task(void* arg) {
  struct addrinfo* res = NULL;
  (void)arg;
  released = 0;
  result = task_lookup(LOOP, "no-such-host.invalid", &res, 10000);
  assert_int_equal(released, 0);
}

static void test_await_failed_lookup_not_abandoned(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  result = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, failing_lookup_task, NULL, NULL), 0);
  RUN(f);
  assert_true(result < 0); /* the resolver's own error; ASan and valgrind see no leak */
  assert_int_not_equal(result, UV_ETIMEDOUT);
}

static void test_await_bad_input(void** state) {
  uvchan_await_t aw;
  (void)state;
  memset(&aw, 0, sizeof(aw));
  assert_int_equal(uvchan_await_init(NULL, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_task_await(&aw), UV_EINVAL); /* outside a task */
  assert_int_equal(uvchan_task_await(NULL), UV_EINVAL);
  assert_int_equal(uvchan_await_abandoned(NULL), 0);
  assert_int_equal(uvchan_await_abandoned(&aw), 0);
  uvchan_await_done(NULL, 0);  /* ignored */
  uvchan_await_done(&aw, 0);   /* never initialised: ignored */
}

static void uninit_task(void* arg) {
  uvchan_await_t aw;
  (void)arg;
  memset(&aw, 0, sizeof(aw));
  result = (int)uvchan_task_await(&aw);
}

static void test_await_uninitialised_in_task(void** state) {
  fixture_t* f = FX(state);
  result = 0;
  assert_int_equal(uvchan_task_spawn(&f->ctx, uninit_task, NULL, NULL), 0);
  RUN(f);
  assert_int_equal(result, UV_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_await_fs),
      TEST(test_await_work),
      TEST(test_await_deadline_cancels_queued_work),
      TEST(test_await_deadline_waits_for_running_work),
      TEST(test_await_getaddrinfo),
      TEST(test_await_failed_lookup_not_abandoned),
      TEST(test_await_release_abandons_on_deadline),
      TEST(test_await_done_before_wait),
      TEST(test_await_task_cancel),
      TEST(test_await_bad_input),
      TEST(test_await_uninitialised_in_task),
  };
  char n[8];
  snprintf(n, sizeof(n), "%d", POOL);
  setenv("UV_THREADPOOL_SIZE", n, 1);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
