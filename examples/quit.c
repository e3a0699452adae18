/* The quit-channel pattern: workers loop until a `done` channel is closed. Closing a channel
 * wakes every receiver at once, so one close stops them all.
 *
 *   for { select { case <-done: return; case job := <-jobs: work(job) } }
 */
#include <stdio.h>

#include "uvchan.h"

static uvchan_ctx_t ctx;
static uvchan_t jobs, done;

static void worker(void* arg) {
  int id = (int)(intptr_t)arg, job, handled = 0;
  uvchan_case_t cases[] = {
      UVCHAN_CASE_RECV(&done, NULL),
      UVCHAN_CASE_RECV(&jobs, &job),
  };
  for (;;) {
    int st;
    int which = uvchan_task_select(cases, 2, &st);
    if (which == 0) { /* done was closed (st == UV_EOF) */
      printf("worker %d: quit after %d jobs\n", id, handled);
      return;
    }
    handled++;
    uvchan_task_sleep(2); /* the work */
  }
}

static void boss(void* arg) {
  (void)arg;
  for (int j = 0; j < 20; j++)
    uvchan_task_send(&jobs, &j);
  uvchan_task_sleep(10);
  printf("boss: closing done\n");
  uvchan_close(&done); /* close(done): every worker's select wakes */
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_init(loop, &ctx);
  uvchan_init(&ctx, &jobs, sizeof(int), 0);
  uvchan_init(&ctx, &done, 0, 0); /* chan struct{} */
  for (intptr_t w = 1; w <= 3; w++)
    uvchan_task_spawn(&ctx, worker, (void*)w, NULL);
  uvchan_task_spawn(&ctx, boss, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uvchan_destroy(&jobs);
  uvchan_destroy(&done);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
