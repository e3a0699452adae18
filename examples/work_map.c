/* A threadpool map: the Collatz stopping time of 1..N computed on libuv's threadpool, at most 4
 * jobs in flight, the results back in order through a channel. A task feeds the numbers, another
 * prints every 10000th result as it arrives; the map needs no task of its own and closes its
 * output when the input ends. Prints the checkable lines
 *     Result: 100000 results in order, longest 350 steps at 77031, total 10753840
 * and (a task awaiting the threadpool in one call) the steps of 837799, 524. */
#include <stdio.h>

#include "uvchan.h"

enum { N = 100000, K = 4 };

typedef struct {
  long n;
  long steps;
} result_t;

/* Runs on a threadpool thread: it touches only its item and its result. */
static int collatz(uvchan_work_map_t* map, const void* in, void* out) {
  long n = *(const long*)in, x = n, steps = 0;
  (void)map;
  while (x != 1) {
    x = x % 2 == 0 ? x / 2 : 3 * x + 1;
    steps++;
  }
  ((result_t*)out)->n = n;
  ((result_t*)out)->steps = steps;
  return 0;
}

static uvchan_t numbers, results;
static int map_status = 1;

static void map_done(uvchan_work_map_t* map, int status) {
  (void)map;
  map_status = status;
}

static void feeder(void* arg) {
  (void)arg;
  for (long i = 1; i <= N; i++)
    uvchan_task_send(&numbers, &i);
  uvchan_close(&numbers);
}

static void printer(void* arg) {
  result_t r;
  long expect = 1, total = 0, best = 0, best_n = 0;
  (void)arg;
  while (uvchan_task_recv(&results, &r) == 0) { /* until the map closes `results` */
    if (r.n != expect++) {
      printf("out of order: %ld\n", r.n);
      return;
    }
    total += r.steps;
    if (r.steps > best) {
      best = r.steps;
      best_n = r.n;
    }
    if (r.n % 10000 == 0)
      printf("  %6ld: %ld steps\n", r.n, r.steps);
  }
  printf("Result: %ld results in order, longest %ld steps at %ld, total %ld\n", expect - 1, best,
         best_n, total);
}

/* One job from a task, awaited in one call: the loop goes on meanwhile. */
static long one_n = 837799, one_steps;
static void one_job(void* arg) {
  long x = *(long*)arg;
  while (x != 1) {
    x = x % 2 == 0 ? x / 2 : 3 * x + 1;
    one_steps++;
  }
}

static void asker(void* arg) {
  (void)arg;
  if (uvchan_task_work(one_job, &one_n) == 0)
    printf("Result: %ld takes %ld steps (uvchan_task_work)\n", one_n, one_steps);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;
  uvchan_work_map_t map;
  uvchan_work_map_attr_t attr = {UVCHAN_WORK_MAP_CLOSE_OUT, NULL};

  uvchan_ctx_init(loop, &ctx);
  uvchan_init(&ctx, &numbers, sizeof(long), 64);
  uvchan_init(&ctx, &results, sizeof(result_t), 64);
  uvchan_work_map_start(&ctx, &map, K, &numbers, &results, collatz, map_done, &attr);
  uvchan_task_spawn(&ctx, feeder, NULL, NULL);
  uvchan_task_spawn(&ctx, printer, NULL, NULL);
  uvchan_task_spawn(&ctx, asker, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);

  uvchan_destroy(&numbers);
  uvchan_destroy(&results);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return map_status == 0 && one_steps == 524 ? 0 : 1;
}
