/* Go stops a program whose goroutines all wait with "all goroutines are asleep - deadlock!".
 * uvchan's loop simply runs out of work; the program then asks what is still waiting, prints it,
 * and tears the waiters down. Here a producer sends three values but the consumer takes two. */
#include <stdio.h>

#include "uvchan.h"

static uvchan_ctx_t ctx;
static uvchan_t ch, never;

static void producer(void* arg) {
  (void)arg;
  for (int i = 1; i <= 3; i++)
    if (uvchan_task_send(&ch, &i) != 0) {
      printf("producer: send %d cancelled at teardown\n", i);
      return;
    }
}

static void consumer(void* arg) {
  int v;
  (void)arg;
  for (int i = 0; i < 2; i++) {
    uvchan_task_recv(&ch, &v);
    printf("consumer: got %d\n", v);
  }
  /* ...and then waits on a channel nobody ever sends on. */
  if (uvchan_task_recv(&never, &v) != 0)
    printf("consumer: receive cancelled at teardown\n");
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_task_attr_t p = {.name = "producer"}, c = {.name = "consumer"};

  uvchan_ctx_init(loop, &ctx);
  uvchan_init(&ctx, &ch, sizeof(int), 0);
  uvchan_init(&ctx, &never, sizeof(int), 0);
  uvchan_set_name(&ch, "ch");
  uvchan_set_name(&never, "never");
  uvchan_task_spawn(&ctx, producer, NULL, &p);
  uvchan_task_spawn(&ctx, consumer, NULL, &c);

  uv_run(loop, UV_RUN_DEFAULT); /* returns: every task waits, nothing can wake them */
  if (uvchan_ctx_report(&ctx, stdout) > 0) {
    uvchan_destroy(&ch); /* waiting tasks get UV_ECANCELED and return */
    uvchan_destroy(&never);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
