/* Two loops on two threads playing ping-pong over two shared unbuffered channels, a task on each
 * side: the Go program
 *
 *     go func() { for v := range ping { pong <- v + 1 } ; close(pong) }()
 *     for i := 0; i < n; i++ { ping <- i; if <-pong != i+1 { panic() } }
 *
 * with each goroutine on its own loop and thread. Prints the round trips and the last value
 * (100000 and 100000), and the time per round trip. */
#include <stdio.h>

#include "uvchan.h"

enum { ROUNDS = 100000 };

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t ping, pong; /* this loop's ends of the two shared channels */
  uv_thread_t thread;
  uvchan_task_fn fn;
} side_t;

static uvchan_t ping, pong; /* the shared channels, made on the main thread's context */
static long rounds, last;
static uint64_t t0, t1;

static void player(void* arg) {
  side_t* s = arg;
  long v;
  t0 = uv_hrtime();
  for (long i = 0; i < ROUNDS; i++) {
    uvchan_task_send(&s->ping, &i);
    if (uvchan_task_recv(&s->pong, &v) != 0 || v != i + 1)
      break;
    rounds++;
    last = v;
  }
  t1 = uv_hrtime();
  uvchan_close(&s->ping);
}

static void echoer(void* arg) {
  side_t* s = arg;
  long v;
  while (uvchan_task_recv(&s->ping, &v) == 0) {
    v++;
    uvchan_task_send(&s->pong, &v);
  }
}

/* Each thread runs its own loop and context, with its own ends of the channels. */
static void side_main(void* arg) {
  side_t* s = arg;
  uv_loop_init(&s->loop);
  uvchan_ctx_init(&s->loop, &s->ctx);
  uvchan_attach(&s->ctx, &s->ping, &ping);
  uvchan_attach(&s->ctx, &s->pong, &pong);
  uvchan_task_spawn(&s->ctx, s->fn, s, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uvchan_destroy(&s->ping); /* an end goes on its own loop's thread */
  uvchan_destroy(&s->pong);
  uvchan_ctx_close(&s->ctx, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;
  side_t sides[2] = {{.fn = player}, {.fn = echoer}};

  uvchan_ctx_init(loop, &ctx);
  uvchan_init_shared(&ctx, &ping, sizeof(long), 0);
  uvchan_init_shared(&ctx, &pong, sizeof(long), 0);
  for (int i = 0; i < 2; i++)
    uv_thread_create(&sides[i].thread, side_main, &sides[i]);
  for (int i = 0; i < 2; i++)
    uv_thread_join(&sides[i].thread);
  uvchan_destroy(&ping); /* the first ends go last */
  uvchan_destroy(&pong);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);

  printf("Result: %ld round trips between two threads, last value %ld (%.0f ns per round trip)\n",
         rounds, last, (double)(t1 - t0) / (double)(rounds > 0 ? rounds : 1));
  return rounds == ROUNDS && last == ROUNDS ? 0 : 1;
}
