/* upper: stdin, upper-cased, to stdout, in bounded memory on any input size:
 *
 *     yes | head -c 1G | build/examples/upper | wc -c
 *
 *   fd 0 --reader--> chunks --upper (a stage)--> shouted --writer--> fd 1
 *
 * Callbacks only, three pipeline members. The reader and the writer open the descriptors as
 * what they are (uv_guess_handle): a pipe, a TTY or a socket is read or written as a stream; a
 * regular file with uv_fs_read()/uv_fs_write(). Memory: the chunk channels hold 2 buffers each,
 * the stage holds 1, the reader and the writer 1 each, the writer's queue stays below 64 KiB
 * plus a piece: a few 64 KiB blocks, whatever the input's size. When stdout is slower than
 * stdin, the writer stops taking chunks, the channels fill, and the reader stops reading.
 *
 * The stage works in place: a chunk it takes is its own (uvchan_job_emit() hands it on). */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "uvchan.h"

static int upper(uvchan_job_t* job, void* value) {
  uvchan_buf_t* b = value;
  size_t i;
  int r;
  for (i = 0; i < b->len; i++)
    b->base[i] = (char)toupper((unsigned char)b->base[i]);
  r = uvchan_job_emit(job, b);
  if (r != 0)
    uvchan_buf_release(b); /* not taken: still ours */
  return r;
}

static int status = 1;

static void on_end(uvchan_pipeline_t* p, int st) {
  status = st;
  uvchan_pipeline_close(p, NULL);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;
  uvchan_pool_t pool;
  uvchan_pipeline_t p;
  uvchan_t chunks, shouted;
  uvchan_reader_t rd;
  uvchan_stage_t st;
  uvchan_writer_t wr;
  uvchan_io_opts_t o = {0, &p, 0, NULL};
  uvchan_stage_opts_t so = {1, 0, NULL, &p};
  int r;

  signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error to report, not a signal */
  memset(&pool, 0, sizeof(pool));
  if ((r = uvchan_ctx_init(loop, &ctx)) != 0 || (r = uvchan_pool_init(&pool, UVCHAN_READ_SIZE, 4)) != 0 ||
      (r = uvchan_pipeline_init(&ctx, &p)) != 0 || (r = uvchan_buf_chan_init(&ctx, &chunks, 2)) != 0 ||
      (r = uvchan_buf_chan_init(&ctx, &shouted, 2)) != 0 ||
      (r = uvchan_reader_init_fd(&ctx, &rd, 0, &chunks, &pool, &o)) != 0 ||
      (r = uvchan_stage_init(&ctx, &st, &chunks, &shouted, upper, &so)) != 0 ||
      (r = uvchan_writer_init_fd(&ctx, &wr, &shouted, 1, &o)) != 0 ||
      (r = uvchan_pipeline_start(&p, on_end)) != 0) {
    fprintf(stderr, "upper: %s\n", uv_strerror(r));
    return 1;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  if (status != 0)
    fprintf(stderr, "upper: %s\n", uv_strerror(status));
  /* Teardown: the pipeline is closed; the channels give back what they still hold (after an
   * error), then the pool and the context go. */
  uvchan_destroy(&chunks);
  uvchan_destroy(&shouted);
  uvchan_pool_destroy(&pool);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return status != 0;
}
