/* Go's concurrent prime sieve with tasks: a generator task sends 2, 3, 4, ... and each prime
 * found adds a filter task to the chain. Prints the first N primes, one per line.
 *
 *   usage: sieve [N]   (default 100; `sieve 2000` ends with 17389) */
#include <stdio.h>
#include <stdlib.h>

#include "uvchan.h"

static uvchan_ctx_t ctx;

/* func gen(ch chan<- int) { for i := 2; ; i++ { ch <- i } } */
static void gen(void* arg) {
  uvchan_t* ch = arg;
  for (int i = 2;; i++)
    if (uvchan_task_send(ch, &i) != 0)
      return; /* the channel was destroyed: the program is over */
}

typedef struct {
  uvchan_t* in;
  uvchan_t* out;
  int p;
} filter_t;

/* func filter(in <-chan int, out chan<- int, p int) { for { i := <-in; if i%p != 0 { out <- i } } } */
static void filter(void* arg) {
  filter_t* f = arg;
  int i;
  while (uvchan_task_recv(f->in, &i) == 0)
    if (i % f->p != 0 && uvchan_task_send(f->out, &i) != 0)
      return;
}

static int nprimes = 100;

static void sieve(void* arg) {
  uvchan_t* chans = calloc((size_t)nprimes + 1, sizeof(uvchan_t));
  filter_t* filters = calloc((size_t)nprimes, sizeof(filter_t));
  uvchan_task_attr_t small = {.stack_size = 16 * 1024};
  int p = 0;
  (void)arg;

  uvchan_init(&ctx, &chans[0], sizeof(int), 0);
  uvchan_task_spawn(&ctx, gen, &chans[0], &small);
  for (int i = 0; i < nprimes; i++) {
    uvchan_task_recv(&chans[i], &p);
    printf("%d\n", p);
    uvchan_init(&ctx, &chans[i + 1], sizeof(int), 0);
    filters[i] = (filter_t){&chans[i], &chans[i + 1], p};
    uvchan_task_spawn(&ctx, filter, &filters[i], &small);
  }
  /* Go's program just exits; here the chain is torn down: each destroyed channel cancels the
   * task waiting on it, which then returns. */
  for (int i = 0; i <= nprimes; i++)
    uvchan_destroy(&chans[i]);
  uvchan_task_yield(); /* let the cancelled tasks finish before their filter_t goes away */
  free(filters);
  free(chans);
}

int main(int argc, char** argv) {
  uv_loop_t* loop = uv_default_loop();
  if (argc > 1)
    nprimes = atoi(argv[1]);
  if (nprimes < 1)
    nprimes = 1;
  uvchan_ctx_init(loop, &ctx);
  uvchan_task_spawn(&ctx, sieve, NULL, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  if (uvchan_ctx_close(&ctx, NULL) != 0)
    return 1;
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
