/* hello: the README's example. A producer task sends 1, 2, 3 on an unbuffered channel and closes
 * it; a consumer task ranges over it. Prints "got 1", "got 2", "got 3". */
#include <stdio.h>
#include <uvchan.h>

static void producer(void* ch) {                 /* go producer(ch) */
  for (int i = 1; i <= 3; i++)
    uvchan_task_send(ch, &i);                    /* ch <- i: waits for the receiver */
  uvchan_close(ch);                              /* close(ch) */
}

static void consumer(void* ch) {
  int v;
  while (uvchan_task_recv(ch, &v) == 0)          /* for v := range ch */
    printf("got %d\n", v);
  uvchan_destroy(ch);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;
  uvchan_t ch;
  uvchan_ctx_init(loop, &ctx);                   /* uvchan's state on this loop */
  uvchan_init(&ctx, &ch, sizeof(int), 0);        /* ch := make(chan int) */
  uvchan_task_spawn(&ctx, producer, &ch, NULL);
  uvchan_task_spawn(&ctx, consumer, &ch, NULL);
  uv_run(loop, UV_RUN_DEFAULT);                  /* returns when both tasks ended */
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
