/* A ticker-driven heartbeat, callback style: a select over a ticker channel and a data channel.
 * A beat is printed every 20 ms while data trickles in; the ticker drops beats nobody took. */
#include <stdio.h>

#include "uvchan.h"

static uvchan_ctx_t ctx;
static uvchan_timer_t ticker;
static uvchan_t data;
static uv_timer_t producer_clock;
static uvchan_select_t sel;
static uint64_t beat_at;
static int item, beats, items;

static void on_select(uvchan_select_t* req, int status);

static void arm(void) {
  static uvchan_case_t cases[2];
  cases[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&ticker.chan, &beat_at);
  cases[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&data, &item);
  uvchan_select(&sel, cases, 2, on_select);
}

static void on_select(uvchan_select_t* req, int status) {
  if (status != 0) /* data closed (UV_EOF): stop the heartbeat */
    return;
  if (req->index == 0)
    printf("beat %d at %llu ms\n", ++beats, (unsigned long long)(beat_at % 100000));
  else
    printf("  data item %d\n", item), items++;
  if (beats < 5)
    arm();
  else
    uvchan_timer_stop(&ticker);
}

static void produce(uv_timer_t* t) {
  static int n;
  ++n;
  if (uvchan_try_send(&data, &n) != 0 || n == 8)
    uv_timer_stop(t);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_init(loop, &ctx);
  uvchan_init(&ctx, &data, sizeof(int), 4);
  uvchan_timer_ticker(&ctx, &ticker, 20);
  uv_timer_init(loop, &producer_clock);
  uv_timer_start(&producer_clock, produce, 7, 7);
  arm();
  uv_run(loop, UV_RUN_DEFAULT);
  printf("%d beats, %d data items\n", beats, items);
  uv_close((uv_handle_t*)&producer_clock, NULL);
  uvchan_timer_close(&ticker, NULL);
  uvchan_destroy(&data);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
