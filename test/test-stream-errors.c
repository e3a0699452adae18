/* Every bad input of uvchan/stream.h and the code it returns: the rows of docs/errors.md
 * ("Streams as channels"). */
#include <sys/socket.h>

#include "stream-helpers.h"

static void nop_timer_closed(uv_handle_t* h) {
  (void)h;
}

static void test_pool_and_buffer_errors(void** state) {
  uvchan_pool_t pool, bad;
  uvchan_buf_t b, z;
  (void)state;
  memset(&pool, 0, sizeof(pool));
  memset(&bad, 0, sizeof(bad));
  memset(&z, 0, sizeof(z));
  assert_int_equal(uvchan_pool_init(NULL, 10, 1), UV_EINVAL);
  assert_int_equal(uvchan_pool_init(&pool, 0, 1), UV_EINVAL);
  assert_int_equal(uvchan_pool_init(&pool, ((size_t)1 << 30) + 1, 1), UV_EINVAL);
  assert_int_equal(uvchan_pool_init(&pool, 10, 1), 0);
  assert_int_equal(uvchan_pool_init(&pool, 10, 1), UV_EBUSY);
  assert_int_equal(uvchan_pool_destroy(NULL), UV_EINVAL);
  assert_int_equal(uvchan_pool_destroy(&bad), UV_EINVAL);
  assert_int_equal(uvchan_buf_alloc(&pool, 10, NULL), UV_EINVAL);
  assert_int_equal(uvchan_buf_alloc(&bad, 10, &b), UV_EINVAL);
  assert_int_equal(uvchan_buf_alloc(&pool, 11, &b), UV_EINVAL);
  assert_int_equal(uvchan_buf_copy(&pool, NULL, 1, &b), UV_EINVAL);
  assert_int_equal(uvchan_buf_copy(&bad, "x", 1, &b), UV_EINVAL);
  assert_int_equal(uvchan_buf_ref(NULL, &b), UV_EINVAL);
  assert_int_equal(uvchan_buf_ref(&z, &b), UV_EINVAL);
  assert_int_equal(uvchan_buf_alloc(&pool, 10, &b), 0);
  assert_int_equal(uvchan_buf_ref(&b, NULL), UV_EINVAL);
  assert_int_equal(uvchan_pool_destroy(&pool), UV_EBUSY); /* a buffer is out */
  uvchan_buf_release(&b);
  uvchan_buf_release(&b); /* now the zero buffer: nothing */
  uvchan_buf_release(NULL);
  uvchan_buf_dtor(NULL, &z);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), UV_EINVAL);
  /* frames */
  assert_int_equal(uvchan_frame_encode(NULL, 3, "x", 1, &b), UV_EINVAL);
  assert_int_equal(uvchan_frame_encode(NULL, 0, "x", 1, &b), UV_EINVAL);
  assert_int_equal(uvchan_frame_encode(NULL, 1, pattern_buf, 256, &b), UV_EINVAL);
  assert_int_equal(uvchan_frame_encode(NULL, 2, pattern_buf, 65536, &b), UV_EINVAL);
  assert_int_equal(uvchan_frame_encode(NULL, 4, "x", 1, NULL), UV_EINVAL);
  assert_int_equal(uvchan_frame_encode(NULL, 4, NULL, 1, &b), UV_EINVAL);
  assert_int_equal(uvchan_pool_init(&pool, 4, 1), 0);
  assert_int_equal(uvchan_frame_encode(&pool, 4, "x", 1, &b), UV_EINVAL); /* 5 > 4 */
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

static void test_reader_writer_init_errors(void** state) {
  fixture_t* f = FX(state);
  uv_loop_t other;
  uv_tcp_t a, b, foreign;
  uv_pipe_t ipc;
  uv_timer_t timer;
  uvchan_t ch, ints, other_ch;
  uvchan_ctx_t other_ctx, zero_ctx;
  uvchan_reader_t rd, rd2;
  uvchan_writer_t wr, wr2;
  uvchan_pool_t pool, bad_pool;
  uvchan_pipeline_t p;
  uvchan_io_opts_t o;
  uv_stream_t* s;
  setup_globals(state);
  memset(&bad_pool, 0, sizeof(bad_pool));
  memset(&zero_ctx, 0, sizeof(zero_ctx));
  memset(&rd, 0, sizeof(rd));
  memset(&wr, 0, sizeof(wr));
  memset(&o, 0, sizeof(o));
  assert_int_equal(uvchan_pool_init(&pool, 1024, 1), 0);
  tcp_pair(&a, &b);
  s = (uv_stream_t*)&b;
  assert_int_equal(uvchan_buf_chan_init(CTX, &ch, 2), 0);
  assert_int_equal(uvchan_init(CTX, &ints, sizeof(int), 2), 0);
  assert_int_equal(uv_loop_init(&other), 0);
  assert_int_equal(uvchan_ctx_init(&other, &other_ctx), 0);
  assert_int_equal(uvchan_buf_chan_init(&other_ctx, &other_ch, 2), 0);
  assert_int_equal(uv_tcp_init(&other, &foreign), 0);
  assert_int_equal(uv_timer_init(LOOP, &timer), 0);
  assert_int_equal(uv_pipe_init(LOOP, &ipc, 1), 0);

  /* reader */
  assert_int_equal(uvchan_reader_init(NULL, &rd, s, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(&zero_ctx, &rd, s, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, NULL, s, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &ch, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &ch, &bad_pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, NULL, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, (uv_stream_t*)&timer, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, (uv_stream_t*)&foreign, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, (uv_stream_t*)&ipc, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, NULL, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &ints, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &other_ch, &pool, NULL), UV_EINVAL);
  o.flags = UVCHAN_LINES_KEEP_EOL;
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &ch, &pool, &o), UV_EINVAL);
  o.flags = 0;
  memset(&p, 0, sizeof(p));
  o.pipeline = &p; /* not initialised */
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &ch, &pool, &o), UV_EINVAL);
  o.pipeline = NULL;
  assert_int_equal(uvchan_reader_init_fd(CTX, &rd, -1, &ch, &pool, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_init_fd(CTX, &rd, 1000, &ch, &pool, NULL), UV_EBADF);
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &ch, &pool, NULL), 0);
  assert_int_equal(uvchan_reader_init(CTX, &rd, s, &ch, &pool, NULL), UV_EBUSY); /* live */
  assert_int_equal(uvchan_reader_init(CTX, &rd2, s, &ch, &pool, NULL), UV_EBUSY); /* read */
  memset(&rd2, 0, sizeof(rd2));

  /* writer */
  assert_int_equal(uvchan_writer_init(NULL, &wr, &ch, s, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init(CTX, NULL, &ch, s, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init(CTX, &wr, NULL, s, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init(CTX, &wr, &ints, s, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init(CTX, &wr, &other_ch, s, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init(CTX, &wr, &ch, NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init(CTX, &wr, &ch, (uv_stream_t*)&timer, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init(CTX, &wr, &ch, (uv_stream_t*)&foreign, NULL), UV_EINVAL);
  o.flags = 1u << 20;
  assert_int_equal(uvchan_writer_init(CTX, &wr, &ch, s, &o), UV_EINVAL);
  o.flags = 0;
  assert_int_equal(uvchan_writer_init_fd(CTX, &wr, &ch, -1, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_init_fd(CTX, &wr, &ch, 1000, NULL), UV_EBADF);
  assert_int_equal(uvchan_writer_init(CTX, &wr, &ch, s, NULL), 0);
  assert_int_equal(uvchan_writer_init(CTX, &wr, &ch, s, NULL), UV_EBUSY);
  memset(&wr2, 0, sizeof(wr2));
  assert_int_equal(uvchan_writer_init(CTX, &wr2, &ch, s, NULL), UV_EBUSY); /* written */

  /* start and close: bad objects, wrong kinds, twice */
  assert_int_equal(uvchan_reader_start(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_start(&rd2, NULL), UV_EINVAL); /* never initialised */
  assert_int_equal(uvchan_reader_start((uvchan_reader_t*)&wr, NULL), UV_EINVAL); /* a writer */
  assert_int_equal(uvchan_writer_start(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_writer_close((uvchan_writer_t*)&rd, NULL), UV_EINVAL);
  assert_int_equal(uvchan_reader_start(&rd, NULL), 0);
  assert_int_equal(uvchan_reader_start(&rd, NULL), UV_EINVAL); /* started already */
  assert_int_equal(uvchan_reader_close(&rd, NULL), 0);
  assert_int_equal(uvchan_reader_close(&rd, NULL), UV_EINVAL); /* closing */
  assert_int_equal(uvchan_writer_close(&wr, NULL), 0);
  assert_int_equal(uvchan_writer_start(&wr, NULL), UV_EINVAL); /* closing */
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_reader_close(&rd, NULL), UV_EINVAL); /* closed */

  uv_close((uv_handle_t*)&timer, nop_timer_closed);
  uv_close((uv_handle_t*)&ipc, NULL);
  uv_close((uv_handle_t*)&a, NULL);
  uv_close((uv_handle_t*)&b, NULL);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_destroy(&ints), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
  uv_close((uv_handle_t*)&foreign, NULL);
  assert_int_equal(uvchan_destroy(&other_ch), 0);
  assert_int_equal(uvchan_ctx_close(&other_ctx, NULL), 0);
  assert_int_equal(uv_run(&other, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&other), 0);
}

static void app_alloc(uv_handle_t* h, size_t n, uv_buf_t* buf) {
  static char space[64];
  (void)h;
  (void)n;
  *buf = uv_buf_init(space, sizeof(space));
}

static void app_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  (void)s;
  (void)n;
  (void)buf;
}

/* A reader on a stream the application reads, a task read or write on a stream an adapter uses,
 * and a UDP socket as a descriptor. */
static struct {
  uv_tcp_t a, b;
  uvchan_t ch;
  uvchan_reader_t rd;
  uvchan_writer_t wr;
  int task_read, task_write;
} tb;

static void busy_task(void* arg) {
  char c;
  (void)arg;
  tb.task_read = (int)uvchan_task_read((uv_stream_t*)&tb.b, &c, 1);
  tb.task_write = (int)uvchan_task_write((uv_stream_t*)&tb.b, "x", 1);
}

static void test_busy_streams(void** state) {
  fixture_t* f = FX(state);
  uvchan_pool_t pool;
  uvchan_reader_t r2;
  int udp;
  setup_globals(state);
  memset(&tb, 0, sizeof(tb));
  memset(&r2, 0, sizeof(r2));
  assert_int_equal(uvchan_pool_init(&pool, 1024, 1), 0);
  tcp_pair(&tb.a, &tb.b);
  assert_int_equal(uvchan_buf_chan_init(CTX, &tb.ch, 2), 0);
  /* the application reads `a` itself */
  assert_int_equal(uv_read_start((uv_stream_t*)&tb.a, app_alloc, app_read), 0);
  assert_int_equal(uvchan_reader_init(CTX, &r2, (uv_stream_t*)&tb.a, &tb.ch, &pool, NULL), UV_EBUSY);
  uv_read_stop((uv_stream_t*)&tb.a);
  /* adapters on `b`: task reads and writes of it are refused */
  assert_int_equal(uvchan_reader_init(CTX, &tb.rd, (uv_stream_t*)&tb.b, &tb.ch, &pool, NULL), 0);
  assert_int_equal(uvchan_writer_init(CTX, &tb.wr, &tb.ch, (uv_stream_t*)&tb.b, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, busy_task, NULL, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(tb.task_read, UV_EBUSY);
  assert_int_equal(tb.task_write, UV_EBUSY);
  /* a UDP socket is no stream */
  udp = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(udp >= 0);
  assert_int_equal(uvchan_reader_init_fd(CTX, &r2, udp, &tb.ch, &pool, NULL), UV_EINVAL);
  close(udp);
  assert_int_equal(uvchan_reader_close(&tb.rd, NULL), 0);
  assert_int_equal(uvchan_writer_close(&tb.wr, NULL), 0);
  uv_close((uv_handle_t*)&tb.a, NULL);
  uv_close((uv_handle_t*)&tb.b, NULL);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_destroy(&tb.ch), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

/* A pool that an open reader or splitter uses cannot be destroyed, even with no buffer out: the
 * reader would take its next block from a dead pool and cache it there when it comes back,
 * memory nobody frees (valgrind saw it lost). The destroy succeeds once their close callbacks
 * ran, and a reader's blocks are counted to the end. */
static int pool_user_closed;

static void pool_user_rd_closed(uvchan_reader_t* r) {
  (void)r;
  pool_user_closed++;
}

static void pool_user_sp_closed(uvchan_splitter_t* sp) {
  (void)sp;
  pool_user_closed++;
}

static void test_pool_in_use(void** state) {
  fixture_t* f = FX(state);
  uvchan_pool_t pool, lpool;
  uv_pipe_t rd, wr;
  uvchan_t raw, lines;
  uvchan_reader_t r;
  uvchan_splitter_t sp;
  uvchan_io_opts_t o;
  uvchan_buf_t b;
  uv_buf_t ub = uv_buf_init("abc\n", 4);
  setup_globals(state);
  pool_user_closed = 0;
  memset(&pool, 0, sizeof(pool));
  memset(&lpool, 0, sizeof(lpool));
  memset(&o, 0, sizeof(o));
  assert_int_equal(uvchan_pool_init(&pool, 1024, 4), 0);
  assert_int_equal(uvchan_pool_init(&lpool, 64, 4), 0);
  pipe_pair(&rd, &wr);
  assert_int_equal(uvchan_buf_chan_init(CTX, &raw, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &lines, 2), 0);
  assert_int_equal(uvchan_reader_init(CTX, &r, (uv_stream_t*)&rd, &raw, &pool, NULL), 0);
  o.pool = &lpool;
  assert_int_equal(uvchan_lines_init(CTX, &sp, &raw, &lines, 100, &o), 0);
  /* initialised, nothing out: still in use */
  assert_int_equal(pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&pool), UV_EBUSY);
  assert_int_equal(uvchan_pool_destroy(&lpool), UV_EBUSY);
  assert_int_equal(uvchan_reader_start(&r, NULL), 0);
  assert_int_equal(uvchan_splitter_start(&sp, NULL), 0);
  (void)uv_run(&f->loop, UV_RUN_NOWAIT); /* the reader starts: reading, no block taken */
  assert_int_equal(uvchan_pool_destroy(&pool), UV_EBUSY); /* an idle reader: nothing out */
  assert_int_equal(uv_try_write((uv_stream_t*)&wr, &ub, 1), 4);
  uv_close((uv_handle_t*)&wr, NULL); /* EOF after the line */
  assert_int_equal(RUN(f), 0);
  assert_int_equal(r.status, 0);
  assert_int_equal(sp.status, 0);
  assert_int_equal(uvchan_try_recv(&lines, &b), 0);
  assert_int_equal(b.len, 3);
  assert_memory_equal(b.base, "abc", 3);
  uvchan_buf_release(&b);
  assert_int_equal(pool.outstanding, 0);
  assert_int_equal(lpool.outstanding, 0);
  /* ended but not closed: still refused */
  assert_int_equal(uvchan_pool_destroy(&pool), UV_EBUSY);
  assert_int_equal(uvchan_pool_destroy(&lpool), UV_EBUSY);
  assert_int_equal(uvchan_reader_close(&r, pool_user_rd_closed), 0);
  assert_int_equal(uvchan_splitter_close(&sp, pool_user_sp_closed), 0);
  uv_close((uv_handle_t*)&rd, NULL);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(pool_user_closed, 2);
  assert_int_equal(uvchan_destroy(&raw), 0);
  assert_int_equal(uvchan_destroy(&lines), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
  assert_int_equal(uvchan_pool_destroy(&lpool), 0);
}

static void test_splitter_init_errors(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out, ints;
  uvchan_splitter_t sp, sp2;
  uvchan_pool_t bad_pool;
  uvchan_io_opts_t o;
  setup_globals(state);
  memset(&sp2, 0, sizeof(sp2));
  memset(&bad_pool, 0, sizeof(bad_pool));
  memset(&o, 0, sizeof(o));
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
  assert_int_equal(uvchan_init(CTX, &ints, sizeof(int), 2), 0);
  assert_int_equal(uvchan_lines_init(NULL, &sp, &in, &out, 10, NULL), UV_EINVAL);
  assert_int_equal(uvchan_lines_init(CTX, NULL, &in, &out, 10, NULL), UV_EINVAL);
  assert_int_equal(uvchan_lines_init(CTX, &sp, NULL, &out, 10, NULL), UV_EINVAL);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &ints, 10, NULL), UV_EINVAL);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &in, 10, NULL), UV_EINVAL);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 0, NULL), UV_EINVAL);
  o.pool = &bad_pool;
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 10, &o), UV_EINVAL);
  o.pool = NULL;
  o.flags = UVCHAN_LINES_KEEP_EOL;
  assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, 4, 10, &o), UV_EINVAL);
  o.flags = 0;
  assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, 3, 10, NULL), UV_EINVAL);
  assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, 4, 0, NULL), UV_EINVAL);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 10, NULL), 0);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 10, NULL), UV_EBUSY);
  assert_int_equal(uvchan_splitter_start(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_splitter_start(&sp2, NULL), UV_EINVAL);
  assert_int_equal(uvchan_splitter_close(NULL, NULL), UV_EINVAL);
  assert_int_equal(uvchan_splitter_start(&sp, NULL), 0);
  assert_int_equal(uvchan_splitter_start(&sp, NULL), UV_EINVAL);
  assert_int_equal(uvchan_splitter_close(&sp, NULL), 0);
  assert_int_equal(uvchan_splitter_close(&sp, NULL), UV_EINVAL);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(sp.status, UV_ECANCELED);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
  assert_int_equal(uvchan_destroy(&ints), 0);
}

/* From another thread: UV_EPERM, nothing touched. */
typedef struct {
  uvchan_reader_t* rd;
  uvchan_splitter_t* sp;
  uvchan_t* in;
  uvchan_t* out;
  int codes[4];
} foreign_t;

static void foreign_thread(void* arg) {
  foreign_t* x = arg;
  uvchan_splitter_t sp;
  memset(&sp, 0, sizeof(sp));
  x->codes[0] = uvchan_lines_init(CTX, &sp, x->in, x->out, 10, NULL);
  x->codes[1] = uvchan_splitter_start(x->sp, NULL);
  x->codes[2] = uvchan_splitter_close(x->sp, NULL);
}

static void test_foreign_thread(void** state) {
  fixture_t* f = FX(state);
  uvchan_t in, out;
  uvchan_splitter_t sp;
  foreign_t x;
  uv_thread_t t;
  setup_globals(state);
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 10, NULL), 0);
  memset(&x, 0, sizeof(x));
  x.sp = &sp;
  x.in = &in;
  x.out = &out;
  assert_int_equal(uv_thread_create(&t, foreign_thread, &x), 0);
  assert_int_equal(uv_thread_join(&t), 0);
  assert_int_equal(x.codes[0], UV_EPERM);
  assert_int_equal(x.codes[1], UV_EPERM);
  assert_int_equal(x.codes[2], UV_EPERM);
  assert_int_equal(uvchan_splitter_close(&sp, NULL), 0);
  assert_int_equal(RUN(f), 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

/* During a shutdown: UV_ECANCELED for inits and starts. */
static void shut_cb(uvchan_ctx_t* ctx) {
  (void)ctx;
}

static void idle_task(void* arg) {
  (void)arg;
}

static void test_during_shutdown(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t in, out;
  uvchan_splitter_t sp, sp2;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  assert_int_equal(uvchan_buf_chan_init(&ctx, &in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(&ctx, &out, 2), 0);
  assert_int_equal(uvchan_lines_init(&ctx, &sp, &in, &out, 10, NULL), 0);
  /* a live task holds the shutdown at its first step: objects are not closed yet */
  assert_int_equal(uvchan_task_spawn(&ctx, idle_task, NULL, NULL), 0);
  assert_int_equal(uvchan_ctx_shutdown(&ctx, shut_cb), 0);
  memset(&sp2, 0, sizeof(sp2));
  assert_int_equal(uvchan_lines_init(&ctx, &sp2, &in, &out, 10, NULL), UV_ECANCELED);
  assert_int_equal(uvchan_splitter_start(&sp, NULL), UV_ECANCELED);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_and_buffer_errors),
      TEST(test_reader_writer_init_errors),
      TEST(test_busy_streams),
      TEST(test_pool_in_use),
      TEST(test_splitter_init_errors),
      TEST(test_foreign_thread),
      cmocka_unit_test(test_during_shutdown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
