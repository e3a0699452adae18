/* The seed's "double loop", callback style: a feeder sends 1..3 into `in` and closes it; a worker
 * doubles each value into `out` and closes `out` when `in` is closed; main prints the results.
 * Each Go loop becomes a callback that starts the loop's next step. */
#include <stdio.h>

#include "uvchan.h"

static uvchan_t in, out;

/* go func() { for i := 1; i <= 3; i++ { in <- i }; close(in) }() */
static struct {
  uvchan_send_t req;
  int i;
} feeder;

static void feeder_sent(uvchan_send_t* req, int status) {
  (void)req;
  if (status != 0 || ++feeder.i > 3) {
    uvchan_close(&in);
    return;
  }
  uvchan_send(&feeder.req, &in, &feeder.i, feeder_sent);
}

/* func worker(in, out) { for val := range in { out <- val * 2 }; close(out) } */
static struct {
  uvchan_recv_t recv;
  uvchan_send_t send;
  int val, result;
} worker;

static void worker_received(uvchan_recv_t* req, int status);

static void worker_sent(uvchan_send_t* req, int status) {
  (void)req;
  (void)status;
  uvchan_recv(&worker.recv, &in, &worker.val, worker_received);
}

static void worker_received(uvchan_recv_t* req, int status) {
  (void)req;
  if (status == UV_EOF) { /* `in` closed and drained: the range loop ends */
    uvchan_close(&out);
    return;
  }
  worker.result = worker.val * 2;
  uvchan_send(&worker.send, &out, &worker.result, worker_sent);
}

/* for res := range out { fmt.Println("Result:", res) } */
static struct {
  uvchan_recv_t recv;
  int res, count;
} consumer;

static void main_received(uvchan_recv_t* req, int status) {
  (void)req;
  if (status == UV_EOF)
    return;
  printf("Result: %d\n", consumer.res);
  consumer.count++;
  uvchan_recv(&consumer.recv, &out, &consumer.res, main_received);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;

  uvchan_ctx_init(loop, &ctx);
  uvchan_init(&ctx, &in, sizeof(int), 0);
  uvchan_init(&ctx, &out, sizeof(int), 0);

  uvchan_recv(&worker.recv, &in, &worker.val, worker_received); /* go worker(in, out) */
  feeder.i = 1;
  uvchan_send(&feeder.req, &in, &feeder.i, feeder_sent);        /* go func() { ... }() */
  uvchan_recv(&consumer.recv, &out, &consumer.res, main_received);
  uv_run(loop, UV_RUN_DEFAULT);

  uvchan_destroy(&in);
  uvchan_destroy(&out);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 && consumer.count == 3 ? 0 : 1;
}
