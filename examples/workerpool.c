/* A worker pool: jobs fan out over one channel to 4 worker tasks; results fan back in; a wait
 * group (the seed's "boss") closes the results channel when every worker has finished. */
#include <stdio.h>

#include "uvchan.h"

enum { WORKERS = 4, JOBS = 12 };

static uvchan_ctx_t ctx;
static uvchan_t jobs, results;
static uvchan_wg_t workers_done;

typedef struct {
  int worker, job, square;
} result_t;

static void worker(void* arg) {
  int id = (int)(intptr_t)arg, job;
  while (uvchan_task_recv(&jobs, &job) == 0) { /* for job := range jobs */
    result_t r = {id, job, job * job};
    uvchan_task_sleep((uint64_t)(job % 3)); /* uneven work: the pool balances it */
    uvchan_task_send(&results, &r);
  }
}

static void closer(void* arg) {
  (void)arg;
  uvchan_task_wg_wait(&workers_done); /* wg.Wait() */
  uvchan_close(&results);
}

static void feed(void* arg) {
  (void)arg;
  for (int j = 1; j <= JOBS; j++)
    uvchan_task_send(&jobs, &j);
  uvchan_close(&jobs);
}

static void boss(void* arg) {
  uvchan_task_attr_t attr = {.name = "worker", .wg = &workers_done};
  result_t r;
  int sum = 0, n = 0;
  (void)arg;
  for (intptr_t w = 1; w <= WORKERS; w++)
    uvchan_task_spawn(&ctx, worker, (void*)w, &attr); /* wg.Add(1); go worker(w) */
  uvchan_task_spawn(&ctx, closer, NULL, NULL);
  uvchan_task_spawn(&ctx, feed, NULL, NULL); /* feed while we collect, or both would block */
  while (uvchan_task_recv(&results, &r) == 0) {
    printf("worker %d: %2d^2 = %3d\n", r.worker, r.job, r.square);
    sum += r.square;
    n++;
  }
  printf("%d results, sum of squares %d (expected %d)\n", n, sum, JOBS * (JOBS + 1) * (2 * JOBS + 1) / 6);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_init(loop, &ctx);
  uvchan_init(&ctx, &jobs, sizeof(int), 0);
  uvchan_init(&ctx, &results, sizeof(result_t), WORKERS);
  uvchan_wg_init(&ctx, &workers_done);
  uvchan_task_spawn(&ctx, boss, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uvchan_ctx_report(&ctx, stderr); /* prints nothing: no task is left waiting */
  uvchan_destroy(&jobs);
  uvchan_destroy(&results);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
