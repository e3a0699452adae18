/* The seed's three programs as tasks, line for line with the Go. A task is a goroutine on the
 * libuv loop: uvchan_task_send/recv block the task (not the loop) exactly where Go's arrows do. */
#include <stdio.h>

#include "uvchan.h"

static uvchan_ctx_t ctx;

/* ---- 1. The dry run ---------------------------------------------------------------------- */

/* func producer(ch chan int) { ch <- 10; ch <- 20 } */
static void producer(void* arg) {
  uvchan_t* ch = arg;
  int v;
  v = 10, uvchan_task_send(ch, &v); /* Point A */
  v = 20, uvchan_task_send(ch, &v); /* Point B */
}

static void dry_run(void* arg) {
  uvchan_t ch;
  int val1, val2;
  uvchan_task_attr_t attr = {.name = "producer"};
  (void)arg;
  uvchan_init(&ctx, &ch, sizeof(int), 0);    /* ch := make(chan int) */
  uvchan_task_spawn(&ctx, producer, &ch, &attr); /* go producer(ch) */
  uvchan_task_recv(&ch, &val1);              /* val1 := <-ch  (Point C) */
  uvchan_task_recv(&ch, &val2);              /* val2 := <-ch  (Point D) */
  printf("dry run: val1 = %d, val2 = %d\n", val1, val2);
  uvchan_destroy(&ch);
}

/* ---- 2. The double loop ------------------------------------------------------------------ */

typedef struct {
  uvchan_t *in, *out;
} pipes_t;

/* func worker(in chan int, out chan int) { for val := range in { out <- val * 2 }; close(out) } */
static void worker(void* arg) {
  pipes_t* p = arg;
  int val, result;
  while (uvchan_task_recv(p->in, &val) == 0) {
    result = val * 2;
    uvchan_task_send(p->out, &result);
  }
  uvchan_close(p->out);
}

/* go func() { for i := 1; i <= 3; i++ { in <- i }; close(in) }() */
static void feeder(void* arg) {
  uvchan_t* in = arg;
  for (int i = 1; i <= 3; i++)
    uvchan_task_send(in, &i);
  uvchan_close(in);
}

static void double_loop(void* arg) {
  uvchan_t in, out;
  pipes_t p = {&in, &out};
  int res;
  (void)arg;
  uvchan_init(&ctx, &in, sizeof(int), 0);
  uvchan_init(&ctx, &out, sizeof(int), 0);
  uvchan_task_spawn(&ctx, worker, &p, NULL);
  uvchan_task_spawn(&ctx, feeder, &in, NULL);
  while (uvchan_task_recv(&out, &res) == 0) /* for res := range out */
    printf("Result: %d\n", res);
  uvchan_destroy(&in);
  uvchan_destroy(&out);
}

/* ---- 3. Backpressure --------------------------------------------------------------------- */

static void fast_producer(void* arg) {
  uvchan_t* belt = arg;
  for (int i = 1; i <= 8; i++) {
    uvchan_task_send(belt, &i); /* blocks while the belt is full */
    printf("  producer: put %d (belt holds %zu of %zu)\n", i, uvchan_len(belt), uvchan_cap(belt));
  }
  uvchan_close(belt);
}

static void backpressure(void* arg) {
  uvchan_t belt;
  int item;
  (void)arg;
  uvchan_init(&ctx, &belt, sizeof(int), 2);
  uvchan_task_spawn(&ctx, fast_producer, &belt, NULL);
  while (uvchan_task_recv(&belt, &item) == 0) {
    printf("  consumer: took %d, now slow work...\n", item);
    uvchan_task_sleep(10); /* the consumer is slow: the producer waits for it */
  }
  uvchan_destroy(&belt);
}

/* Runs the three programs one after another, as one task waiting for each in turn. */
static void run_all(void* arg) {
  uvchan_wg_t wg;
  uvchan_task_attr_t attr = {.wg = &wg};
  (void)arg;
  uvchan_wg_init(&ctx, &wg);
  uvchan_task_spawn(&ctx, dry_run, NULL, &attr);
  uvchan_task_wg_wait(&wg);
  uvchan_task_spawn(&ctx, double_loop, NULL, &attr);
  uvchan_task_wg_wait(&wg);
  printf("backpressure (belt capacity 2, consumer sleeps 10 ms per item):\n");
  uvchan_task_spawn(&ctx, backpressure, NULL, &attr);
  uvchan_task_wg_wait(&wg);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_init(loop, &ctx);
  uvchan_task_spawn(&ctx, run_all, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
