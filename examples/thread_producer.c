/* A producer thread feeding a loop: a plain thread (think of a database driver's callback thread)
 * sends readings into a shared channel with blocking sends, so it slows down when the loop falls
 * behind (the buffer holds 8); a task on the loop sums them until the thread closes the channel.
 * Prints the count and the sum, which must be 1000 and 499500, and how often the producer had to
 * wait for room. */
#include <stdio.h>

#include "uvchan.h"

enum { READINGS = 1000 };

static uvchan_t readings; /* shared: the loop's end, used by the thread as well */
static long waited;

/* The thread has no loop: uvchan_thread_send() blocks it until the value is taken. */
static void producer(void* arg) {
  (void)arg;
  for (long i = 0; i < READINGS; i++) {
    if (uvchan_try_send(&readings, &i) == UV_EAGAIN) { /* full: the loop is behind */
      waited++;
      if (uvchan_thread_send(&readings, &i) != 0)
        return;
    }
  }
  uvchan_close(&readings); /* close is thread-safe too: the task's range loop ends */
}

static long count, sum;

/* for v := range readings { sum += v } */
static void summer(void* arg) {
  long v;
  (void)arg;
  while (uvchan_task_recv(&readings, &v) == 0) {
    count++;
    sum += v;
    if (count % 100 == 0)
      uvchan_task_sleep(1); /* a slow consumer now and then: backpressure reaches the thread */
  }
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;
  uv_thread_t thread;

  uvchan_ctx_init(loop, &ctx);
  uvchan_init_shared(&ctx, &readings, sizeof(long), 8);
  uvchan_task_spawn(&ctx, summer, NULL, NULL);
  uv_thread_create(&thread, producer, NULL);
  uv_run(loop, UV_RUN_DEFAULT); /* the task's wait on a shared channel keeps the loop alive */
  uv_thread_join(&thread);

  printf("Result: %ld readings, sum %ld (producer waited for room %ld times)\n", count, sum,
         waited);
  uvchan_destroy(&readings);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return count == READINGS && sum == (long)READINGS * (READINGS - 1) / 2 ? 0 : 1;
}
