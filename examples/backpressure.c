/* Backpressure, callback style: a producer that could make a million items a second feeds a
 * consumer that takes one every 20 ms (a uv_timer), through a channel of capacity 4. The
 * producer is held to the consumer's pace, and the buffer never holds more than 4. */
#include <stdio.h>

#include "uvchan.h"

enum { CAPACITY = 4, ITEMS = 12, CONSUME_EVERY_MS = 20 };

static uvchan_t belt;
static uv_timer_t consumer_clock;
static uint64_t t0;
static size_t max_len;

static struct {
  uvchan_send_t req;
  int item;
} producer;

static void produced(uvchan_send_t* req, int status) {
  (void)req;
  if (status != 0)
    return;
  if (uvchan_len(&belt) > max_len)
    max_len = uvchan_len(&belt);
  printf("  %4llu ms  producer: item %2d on the belt (belt holds %zu)\n",
         (unsigned long long)(uv_now(consumer_clock.loop) - t0), producer.item,
         uvchan_len(&belt));
  if (++producer.item > ITEMS) {
    uvchan_close(&belt);
    return;
  }
  uvchan_send(&producer.req, &belt, &producer.item, produced); /* waits while the belt is full */
}

static void consume(uv_timer_t* t) {
  int item;
  int r = uvchan_try_recv(&belt, &item);
  if (r == UV_EOF) {
    uv_timer_stop(t);
    printf("  belt closed and empty: consumer done\n");
    return;
  }
  if (r == 0)
    printf("  %4llu ms  consumer: took item %2d\n",
           (unsigned long long)(uv_now(t->loop) - t0), item);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;

  uvchan_ctx_init(loop, &ctx);
  uvchan_init(&ctx, &belt, sizeof(int), CAPACITY);
  uv_timer_init(loop, &consumer_clock);
  t0 = uv_now(loop);

  printf("A fast producer and a slow consumer (one item per %d ms), belt capacity %d:\n",
         CONSUME_EVERY_MS, CAPACITY);
  producer.item = 1;
  uvchan_send(&producer.req, &belt, &producer.item, produced);
  uv_timer_start(&consumer_clock, consume, CONSUME_EVERY_MS, CONSUME_EVERY_MS);
  uv_run(loop, UV_RUN_DEFAULT);

  printf("The belt never held more than %zu items (capacity %d): the producer ran at the "
         "consumer's pace.\n", max_len, CAPACITY);
  uv_close((uv_handle_t*)&consumer_clock, NULL);
  uvchan_destroy(&belt);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 && max_len <= CAPACITY ? 0 : 1;
}
