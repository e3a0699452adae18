/* A program using uvchan the way a project that installed or embedded it does: only <uvchan.h>
 * and the public API. A task sends 1..N into a buffered channel and closes it; a callback receiver
 * sums what arrives until UV_EOF. It exits 0 only if every value arrived once, in order, the loop
 * closes, and the library it runs against is the version its header says. */
#include <stdio.h>
#include <string.h>

#include <uvchan.h>

#define N 1000

static struct {
  uvchan_t ch;
  uvchan_recv_t req;
  int value;
  int next; /* the value expected next */
  int status;
} recv_state;

static void producer(void* arg) {
  uvchan_t* ch = arg;
  for (int i = 1; i <= N; i++)
    if (uvchan_task_send(ch, &i) != 0)
      return;
  uvchan_close(ch);
}

static void received(uvchan_recv_t* req, int status) {
  recv_state.status = status;
  if (status != 0 || recv_state.value != recv_state.next)
    return;
  recv_state.next++;
  recv_state.status = uvchan_recv(req, &recv_state.ch, &recv_state.value, received);
}

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "consumer: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      return 1;                                                      \
    }                                                                \
  } while (0)

int main(void) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  char version[32];

  CHECK(uv_loop_init(&loop) == 0);
  CHECK(uvchan_ctx_init(&loop, &ctx) == 0);
  CHECK(uvchan_init(&ctx, &recv_state.ch, sizeof(int), 16) == 0);
  recv_state.next = 1;
  CHECK(uvchan_recv(&recv_state.req, &recv_state.ch, &recv_state.value, received) == 0);
  CHECK(uvchan_task_spawn(&ctx, producer, &recv_state.ch, NULL) == 0);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);

  CHECK(recv_state.status == UV_EOF);
  CHECK(recv_state.next == N + 1);
  CHECK(uvchan_destroy(&recv_state.ch) == 0);
  CHECK(uvchan_ctx_close(&ctx, NULL) == 0);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);

  snprintf(version, sizeof version, "%d.%d.%d", UVCHAN_VERSION_MAJOR, UVCHAN_VERSION_MINOR,
           UVCHAN_VERSION_PATCH);
  CHECK(uvchan_version() == UVCHAN_VERSION_HEX);
  CHECK(strcmp(uvchan_version_string(), version) == 0);
  printf("consumer: %d values through uvchan %s on libuv %s\n", N, version, uv_version_string());
  return 0;
}
