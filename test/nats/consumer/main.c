/* A program using the NATS module as its users take it: installed, found through
 * find_package(uvchan CONFIG COMPONENTS nats) or pkg-config uvchan_nats. No server needed: it
 * checks what links and maps. */
#include <stdio.h>

#include <uvchan_nats.h>

int main(void) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_nats_t nc = {0};
  if (uvchan_nats_err(NATS_TIMEOUT) != UV_ETIMEDOUT || uvchan_nats_subject_check("a.>", 1) != 0 ||
      uvchan_nats_subject_check("a b", 0) != UV_EINVAL)
    return 1;
  if (uv_loop_init(&loop) != 0 || uvchan_ctx_init(&loop, &ctx) != 0)
    return 2;
  if (uvchan_nats_close(&nc, NULL) != UV_EINVAL) /* never connected */
    return 3;
  if (uvchan_ctx_close(&ctx, NULL) != 0 || uv_run(&loop, UV_RUN_DEFAULT) != 0 ||
      uv_loop_close(&loop) != 0)
    return 4;
  nats_Close();
  printf("uvchan_nats consumer OK (uvchan %s)\n", uvchan_version_string());
  return 0;
}
