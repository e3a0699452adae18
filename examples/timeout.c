/* The timeout pattern: ask a slow service for a reply, but give up after a deadline.
 *
 *   select {
 *   case r := <-reply:            fmt.Println("reply", r)
 *   case <-time.After(50 * ms):   fmt.Println("timed out")
 *   }
 */
#include <stdio.h>

#include "uvchan.h"

static uvchan_ctx_t ctx;

typedef struct {
  uvchan_t reply;
  uint64_t delay;
} service_t;

static void slow_service(void* arg) {
  service_t* s = arg;
  int answer = 42;
  uvchan_task_sleep(s->delay);
  /* The asker may be gone: a buffered reply of one never blocks the service. */
  uvchan_task_send(&s->reply, &answer);
}

/* A timer owns a uv_timer_t that closes asynchronously, so it must outlive the task that closes
 * it: one static timer per asker here, instead of one on the task's stack. */
static uvchan_timer_t afters[2];

static void ask(void* arg) {
  uint64_t delay = (uint64_t)(uintptr_t)arg;
  service_t s = {.delay = delay};
  uvchan_timer_t* t = &afters[delay > 50];
  uint64_t when;
  int answer = 0;

  uvchan_init(&ctx, &s.reply, sizeof(int), 1);
  uvchan_task_spawn(&ctx, slow_service, &s, NULL);
  uvchan_timer_after(&ctx, t, 50);
  uvchan_case_t cases[] = {
      UVCHAN_CASE_RECV(&s.reply, &answer),
      UVCHAN_CASE_RECV(&t->chan, &when),
  };
  switch (uvchan_task_select(cases, 2, NULL)) {
    case 0: printf("service took %3llu ms: reply %d\n", (unsigned long long)delay, answer); break;
    case 1: printf("service took %3llu ms: timed out after 50 ms\n", (unsigned long long)delay); break;
  }
  /* The same with a deadline on the operation itself, no timer channel needed: */
  if (uvchan_task_recv_timeout(&s.reply, &answer, 100) == 0)
    printf("  ...and with a 100 ms deadline the reply %d did arrive\n", answer);
  uvchan_timer_close(t, NULL);
  uvchan_destroy(&s.reply);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_init(loop, &ctx);
  uvchan_task_spawn(&ctx, ask, (void*)(uintptr_t)10, NULL);
  uvchan_task_spawn(&ctx, ask, (void*)(uintptr_t)80, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop);
}
