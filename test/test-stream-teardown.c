/* Teardown of streams as channels with buffers in flight everywhere: a reader whose send waits,
 * a full channel, a splitter holding an input and a line, a writer stopped by a peer that does
 * not read. Closing the objects (through their pipeline), or shutting the context down, then
 * destroying the channels, gives every buffer back: both pools end with nothing outstanding,
 * and the channels' destructors saw the buffers they held. Also: a task closing the stream
 * under the adapters, and the stream's state freed once the adapters are closed. */
#include <sys/socket.h>

#include "stream-helpers.h"

enum { LINE = 100 };

/* reader(b) -> raw -> lines splitter -> lines -> writer(b): the server echoes lines to a peer
 * that sends them fast and never reads. */
typedef struct {
  uv_tcp_t a, b;
  uvchan_t raw, lines;
  uvchan_reader_t rd;
  uvchan_splitter_t sp;
  uvchan_writer_t wr;
  uvchan_pipeline_t p;
  uvchan_pool_t in_pool, line_pool;
  uvchan_t stuck; /* the peer tells the test that its send blocked */
  int p_status, p_closed;
  int b_closed;
  uint64_t sent;
} flow_t;

static flow_t fl;

static void flow_b_closed(uv_handle_t* h) {
  (void)h;
  fl.b_closed = 1;
}

/* The peer: lines as fast as it can, until a write has waited 300 ms: by then every buffer
 * on the server's side is taken (the chain is full), and it says so. */
static void flow_peer(void* arg) {
  static char text[640 * LINE]; /* whole lines: each write continues the last */
  size_t i;
  ssize_t n;
  int one = 1;
  (void)arg;
  for (i = 0; i < sizeof(text); i++)
    text[i] = i % LINE == LINE - 1 ? '\n' : (char)('a' + i % 26);
  for (;;) {
    n = uvchan_task_write_timeout((uv_stream_t*)&fl.a, text, sizeof(text), 300);
    if (n < 0)
      break;
    fl.sent += (uint64_t)n;
    if ((size_t)n < sizeof(text))
      break;
  }
  (void)uvchan_task_send(&fl.stuck, &one);
}

static void flow_setup(void) {
  int size = 32 * 1024;
  uvchan_io_opts_t o;
  memset(&fl, 0, sizeof(fl));
  fl.p_status = 1;
  dtor_calls = 0;
  assert_int_equal(uvchan_pool_init(&fl.in_pool, 4096, 2), 0);
  assert_int_equal(uvchan_pool_init(&fl.line_pool, LINE, 2), 0);
  tcp_pair(&fl.a, &fl.b);
  assert_int_equal(uv_send_buffer_size((uv_handle_t*)&fl.b, &size), 0);
  assert_int_equal(uv_recv_buffer_size((uv_handle_t*)&fl.a, &size), 0);
  assert_int_equal(uvchan_pipeline_init(CTX, &fl.p), 0);
  assert_int_equal(uvchan_init(CTX, &fl.raw, sizeof(uvchan_buf_t), 2), 0);
  assert_int_equal(uvchan_init(CTX, &fl.lines, sizeof(uvchan_buf_t), 4), 0);
  assert_int_equal(uvchan_set_destructor(&fl.raw, count_dtor), 0);
  assert_int_equal(uvchan_set_destructor(&fl.lines, count_dtor), 0);
  assert_int_equal(uvchan_init(CTX, &fl.stuck, sizeof(int), 1), 0);
  memset(&o, 0, sizeof(o));
  o.pipeline = &fl.p;
  o.hwm = 8192;
  assert_int_equal(uvchan_reader_init(CTX, &fl.rd, (uv_stream_t*)&fl.b, &fl.raw, &fl.in_pool, &o),
                   0);
  o.flags = UVCHAN_LINES_KEEP_EOL;
  o.pool = &fl.line_pool;
  assert_int_equal(uvchan_lines_init(CTX, &fl.sp, &fl.raw, &fl.lines, LINE, &o), 0);
  o.flags = 0;
  o.pool = NULL;
  assert_int_equal(uvchan_writer_init(CTX, &fl.wr, &fl.lines, (uv_stream_t*)&fl.b, &o), 0);
}

/* Everything is stuck with buffers in flight. */
static void flow_check_stuck(void) {
  assert_true(fl.in_pool.outstanding >= 3);   /* raw's two, the splitter's input, the send's */
  assert_true(fl.line_pool.outstanding >= 5); /* lines' four, the splitter's waiting line */
  assert_int_equal(uvchan_len(&fl.raw), 2);
  assert_int_equal(uvchan_len(&fl.lines), 4);
}

static void flow_check_returned(void) {
  assert_true(dtor_calls >= 6); /* what the channels held went to their destructors */
  assert_int_equal(fl.in_pool.outstanding, 0);
  assert_int_equal(fl.line_pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&fl.in_pool), 0);
  assert_int_equal(uvchan_pool_destroy(&fl.line_pool), 0);
}

static void flow_closed(uvchan_pipeline_t* p, int status) {
  fl.p_closed = 1;
  fl.p_status = status;
  assert_int_equal(p->status, UV_ECANCELED); /* closing running members is a failure */
  uv_close((uv_handle_t*)&fl.b, flow_b_closed);
}

static void flow_closer(void* arg) {
  int v;
  (void)arg;
  assert_int_equal(uvchan_task_recv(&fl.stuck, &v), 0);
  flow_check_stuck();
  assert_int_equal(uvchan_pipeline_close(&fl.p, flow_closed), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&fl.a), 0);
}

static void test_close_with_buffers_in_flight(void** state) {
  setup_globals(state);
  flow_setup();
  assert_int_equal(uvchan_pipeline_start(&fl.p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, flow_peer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, flow_closer, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(fl.p_closed, 1);
  assert_int_equal(fl.b_closed, 1);
  assert_int_equal(fl.rd.status, UV_ECANCELED);
  assert_int_equal(fl.sp.status, UV_ECANCELED);
  assert_int_equal(fl.wr.status, UV_ECANCELED);
  /* the channels are the caller's: destroying them releases what they hold */
  assert_int_equal(uvchan_destroy(&fl.raw), 0);
  assert_int_equal(uvchan_destroy(&fl.lines), 0);
  assert_int_equal(uvchan_destroy(&fl.stuck), 0);
  flow_check_returned();
}

/* ---- the same, ended by the context's graceful shutdown ---- */

static int shut_done;

static void on_shutdown(uvchan_ctx_t* ctx) {
  (void)ctx;
  shut_done = 1;
  uv_close((uv_handle_t*)&fl.b, flow_b_closed);
}

static void on_shutdown_only(uvchan_ctx_t* ctx) {
  (void)ctx;
  shut_done = 1;
}

static void shutdown_task(void* arg) {
  int v;
  (void)arg;
  assert_int_equal(uvchan_task_recv(&fl.stuck, &v), 0);
  flow_check_stuck();
  assert_int_equal(uvchan_ctx_shutdown(CTX, on_shutdown), 0);
  (void)uvchan_task_close((uv_handle_t*)&fl.a); /* allowed after the cancel */
}

static void test_shutdown_with_buffers_in_flight(void** state) {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  LOOP = &loop;
  CTX = &ctx;
  signal(SIGPIPE, SIG_IGN);
  shut_done = 0;
  flow_setup();
  assert_int_equal(uvchan_pipeline_start(&fl.p, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, flow_peer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, shutdown_task, NULL, NULL), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(shut_done, 1);
  assert_int_equal(fl.b_closed, 1);
  assert_int_equal(fl.rd.status, UV_ECANCELED);
  assert_int_equal(fl.wr.status, UV_ECANCELED);
  /* the shutdown closed the objects and destroyed the channels */
  flow_check_returned();
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- a file reader whose send is refused by a shutdown in progress ---- */

/* Returns once every thread of libuv's pool has taken one of the works queued here: the threads
 * take work in order, so work queued before (a file reader's read) is done, its completion
 * waiting for the loop. The pool's size is computed as libuv does. */
static uv_barrier_t pf_barrier;
static unsigned pf_left;

static void pf_work(uv_work_t* w) {
  (void)w;
  uv_barrier_wait(&pf_barrier);
}

static void pf_done(uv_work_t* w, int status) {
  (void)status;
  free(w);
  if (--pf_left == 0)
    uv_barrier_destroy(&pf_barrier); /* every thread has left it */
}

static void pool_flush(uv_loop_t* loop) {
  const char* v = getenv("UV_THREADPOOL_SIZE");
  int n = v != NULL ? atoi(v) : 4;
  uv_work_t* w;
  if (n == 0)
    n = 1;
  if (n < 0 || n > 1024)
    n = 1024;
  assert_int_equal(uv_barrier_init(&pf_barrier, (unsigned)n + 1), 0);
  for (pf_left = 0; pf_left < (unsigned)n; pf_left++) {
    assert_non_null(w = malloc(sizeof(*w)));
    assert_int_equal(uv_queue_work(loop, w, pf_work, pf_done), 0);
  }
  uv_barrier_wait(&pf_barrier);
}

/* The read completes after uvchan_ctx_shutdown() was called and before its step closed the
 * reader; the channel is full, and the send that would wait is refused (regression: the block
 * read into was never released). */
static void test_shutdown_refuses_file_reader_send(void** state) {
  static char text[1000];
  char path[] = "/tmp/uvchan-stream-XXXXXX";
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uvchan_t out, dummy;
  uvchan_reader_t rd;
  uvchan_pool_t pool;
  uvchan_recv_t dreq;
  uvchan_buf_t b, dval;
  int f;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvchan_ctx_init(&loop, &ctx), 0);
  shut_done = 0;
  f = mkstemp(path);
  assert_true(f >= 0);
  unlink(path);
  memset(text, 'x', sizeof(text));
  assert_int_equal(write(f, text, sizeof(text)), (ssize_t)sizeof(text));
  assert_int_equal(lseek(f, 0, SEEK_SET), 0);
  assert_int_equal(uvchan_pool_init(&pool, 4096, 0), 0);
  assert_int_equal(uvchan_buf_chan_init(&ctx, &out, 1), 0);
  assert_int_equal(uvchan_buf_copy(NULL, "x", 1, &b), 0);
  assert_int_equal(uvchan_try_send(&out, &b), 0); /* full */
  /* a waiting request: its cancellation is queued, so the shutdown's step waits for the loop */
  assert_int_equal(uvchan_buf_chan_init(&ctx, &dummy, 1), 0);
  assert_int_equal(uvchan_recv(&dreq, &dummy, &dval, nop_recv), 0);
  assert_int_equal(uvchan_reader_init_fd(&ctx, &rd, f, &out, &pool, NULL), 0);
  assert_int_equal(uvchan_reader_start(&rd, NULL), 0); /* the read is queued */
  pool_flush(&loop);
  assert_int_equal(uvchan_ctx_shutdown(&ctx, on_shutdown_only), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(shut_done, 1);
  assert_int_equal(rd.status, UV_ECANCELED);
  assert_int_equal(rd.bytes, sizeof(text));
  assert_int_equal(pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  close(f);
}

/* ---- a task closes the stream under the adapters ---- */

static struct {
  uv_tcp_t a, b;
  uvchan_t in, out;
  uvchan_reader_t rd;
  uvchan_writer_t wr;
  uvchan_pool_t pool;
  int rd_end, wr_end;
} tc;

static void tc_rd_end(uvchan_reader_t* r, int status) {
  (void)r;
  tc.rd_end = status;
}

static void tc_wr_end(uvchan_writer_t* w, int status) {
  (void)w;
  tc.wr_end = status;
}

static void tc_task(void* arg) {
  (void)arg;
  /* the reader waits for bytes, the writer for buffers; the stream goes */
  assert_int_equal(uvchan_task_yield(), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tc.b), 0);
  assert_int_equal(uvchan_reader_close(&tc.rd, NULL), 0);
  assert_int_equal(uvchan_writer_close(&tc.wr, NULL), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tc.a), 0);
}

static void test_task_closes_stream_under_adapters(void** state) {
  setup_globals(state);
  memset(&tc, 0, sizeof(tc));
  tc.rd_end = tc.wr_end = 1;
  assert_int_equal(uvchan_pool_init(&tc.pool, 1024, 2), 0);
  tcp_pair(&tc.a, &tc.b);
  assert_int_equal(uvchan_buf_chan_init(CTX, &tc.in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &tc.out, 2), 0);
  assert_int_equal(uvchan_reader_init(CTX, &tc.rd, (uv_stream_t*)&tc.b, &tc.in, &tc.pool, NULL), 0);
  assert_int_equal(uvchan_writer_init(CTX, &tc.wr, &tc.out, (uv_stream_t*)&tc.b, NULL), 0);
  assert_int_equal(uvchan_reader_start(&tc.rd, tc_rd_end), 0);
  assert_int_equal(uvchan_writer_start(&tc.wr, tc_wr_end), 0);
  assert_int_equal(uvchan_task_spawn(CTX, tc_task, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(tc.rd_end, UV_ECANCELED);
  assert_int_equal(tc.wr_end, UV_ECANCELED);
  assert_int_equal(uvchan_is_closed(&tc.in), 1); /* the reader's early end closes its channel */
  assert_int_equal(uvchan_is_closed(&tc.out), 1); /* ... and the writer's its own */
  assert_int_equal(uvchan_destroy(&tc.in), 0);
  assert_int_equal(uvchan_destroy(&tc.out), 0);
  assert_int_equal(uvchan_pool_destroy(&tc.pool), 0);
}

/* The stream goes before the adapters start; the writer's input is already closed, so its first
 * receive sees the end at once (regression: the writer shut down a stream it no longer had,
 * reading a NULL state). Both end with UV_ECANCELED. */
static void tc_early_task(void* arg) {
  (void)arg;
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tc.b), 0);
  assert_int_equal(uvchan_close(&tc.out), 0);
  assert_int_equal(uvchan_writer_start(&tc.wr, tc_wr_end), 0);
  assert_int_equal(uvchan_reader_start(&tc.rd, tc_rd_end), 0);
}

static void test_stream_closed_before_start(void** state) {
  setup_globals(state);
  memset(&tc, 0, sizeof(tc));
  tc.rd_end = tc.wr_end = 1;
  assert_int_equal(uvchan_pool_init(&tc.pool, 1024, 2), 0);
  tcp_pair(&tc.a, &tc.b);
  assert_int_equal(uvchan_buf_chan_init(CTX, &tc.in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &tc.out, 2), 0);
  assert_int_equal(uvchan_reader_init(CTX, &tc.rd, (uv_stream_t*)&tc.b, &tc.in, &tc.pool, NULL), 0);
  assert_int_equal(uvchan_writer_init(CTX, &tc.wr, &tc.out, (uv_stream_t*)&tc.b, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, tc_early_task, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(tc.wr_end, UV_ECANCELED);
  assert_int_equal(tc.rd_end, UV_ECANCELED);
  assert_int_equal(uvchan_writer_close(&tc.wr, NULL), 0);
  assert_int_equal(uvchan_reader_close(&tc.rd, NULL), 0);
  uv_close((uv_handle_t*)&tc.a, NULL);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(uvchan_destroy(&tc.in), 0);
  assert_int_equal(uvchan_destroy(&tc.out), 0);
  assert_int_equal(uvchan_pool_destroy(&tc.pool), 0);
}

/* ---- adapters come and go on many streams: no state is left behind ---- */

static void churn_closed(uvchan_reader_t* r) {
  uv_close((uv_handle_t*)r->stream, NULL);
}

static void test_states_freed_after_close(void** state) {
  static uv_tcp_t a[20], b[20];
  static uvchan_reader_t rd[20];
  uvchan_t ch;
  uvchan_pool_t pool;
  int i;
  setup_globals(state);
  assert_int_equal(uvchan_pool_init(&pool, 1024, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &ch, 2), 0);
  for (i = 0; i < 20; i++)
    tcp_pair(&a[i], &b[i]); /* all first: their loop runs end once nothing is active */
  for (i = 0; i < 20; i++) {
    assert_int_equal(uvchan_reader_init(CTX, &rd[i], (uv_stream_t*)&b[i], &ch, &pool, NULL), 0);
    assert_int_equal(uvchan_reader_start(&rd[i], NULL), 0);
  }
  (void)uv_run(LOOP, UV_RUN_NOWAIT); /* the readers start reading (active: returns 1) */
  for (i = 0; i < 20; i++) {
    assert_int_equal(uvchan_reader_close(&rd[i], churn_closed), 0);
    uv_close((uv_handle_t*)&a[i], NULL);
  }
  assert_int_equal(RUN(FX(state)), 0);
  /* Each reader handed its stream's state back when it closed: the context holds no resource
   * any more (its private count, read here for the test), none waits for its close. */
  assert_int_equal(CTX->nres_, 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

/* ---- a reader attaching while a closed writer's bytes are still queued ---- */

/* The writer's close hands the state back while libuv still holds its chunks; the state must
 * stay with the reader that attaches then (regression: the last chunk's callback freed it under
 * the reader, which was silently detached and then closed on freed memory). */
enum { QBIG = 1 << 20 };

static struct {
  uv_pipe_t a, b;
  uvchan_t win, rout;
  uvchan_writer_t wr;
  uvchan_reader_t rd;
  uvchan_pool_t pool;
  uint64_t peer_got;
  int wr_closed, rd_end;
} qr;

static void qr_wr_closed(uvchan_writer_t* w) {
  (void)w;
  qr.wr_closed = 1;
}

static void qr_rd_end(uvchan_reader_t* r, int status) {
  (void)r;
  qr.rd_end = status;
}

static void qr_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  static char space[65536];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(space, sizeof(space));
}

/* The peer drains what the writer queued, then answers and hangs up. */
static void qr_peer_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  uv_buf_t hello = uv_buf_init((char*)"hello", 5);
  if (nread <= 0)
    return;
  pattern_check(buf->base, (size_t)nread, qr.peer_got);
  qr.peer_got += (uint64_t)nread;
  if (qr.peer_got < QBIG)
    return;
  uv_read_stop(s);
  assert_int_equal(uv_try_write(s, &hello, 1), 5);
  uv_close((uv_handle_t*)s, NULL);
}

static void test_reader_after_writer_with_queue(void** state) {
  int sv[2], size = 4096, i;
  uvchan_io_opts_t o;
  uvchan_buf_t b;
  setup_globals(state);
  pattern_init();
  memset(&qr, 0, sizeof(qr));
  qr.rd_end = 1;
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(uv_pipe_init(LOOP, &qr.a, 0), 0);
  assert_int_equal(uv_pipe_init(LOOP, &qr.b, 0), 0);
  assert_int_equal(uv_pipe_open(&qr.a, sv[0]), 0);
  assert_int_equal(uv_pipe_open(&qr.b, sv[1]), 0);
  assert_int_equal(uv_send_buffer_size((uv_handle_t*)&qr.a, &size), 0);
  assert_int_equal(uv_recv_buffer_size((uv_handle_t*)&qr.b, &size), 0);
  assert_int_equal(uvchan_pool_init(&qr.pool, 4096, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &qr.win, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &qr.rout, 4), 0);
  /* the writer queues 1 MiB nobody reads yet, and closes */
  memset(&o, 0, sizeof(o));
  o.hwm = QBIG;
  assert_int_equal(uvchan_writer_init(CTX, &qr.wr, &qr.win, (uv_stream_t*)&qr.a, &o), 0);
  assert_int_equal(uvchan_buf_copy(NULL, pattern_at(0), QBIG, &b), 0);
  assert_int_equal(uvchan_try_send(&qr.win, &b), 0);
  assert_int_equal(uvchan_writer_start(&qr.wr, NULL), 0);
  for (i = 0; i < 100 && qr.wr.bytes < QBIG; i++)
    (void)uv_run(LOOP, UV_RUN_NOWAIT);
  assert_int_equal(qr.wr.bytes, QBIG);
  assert_true(uvchan_stream_queued((uv_stream_t*)&qr.a) > 0);
  assert_int_equal(uvchan_writer_close(&qr.wr, qr_wr_closed), 0);
  for (i = 0; i < 100 && !qr.wr_closed; i++)
    (void)uv_run(LOOP, UV_RUN_NOWAIT);
  assert_int_equal(qr.wr_closed, 1);
  assert_true(uvchan_stream_queued((uv_stream_t*)&qr.a) > 0); /* the state lives on */
  /* a reader takes the stream over; then the peer drains the queue, answers, hangs up */
  assert_int_equal(
      uvchan_reader_init(CTX, &qr.rd, (uv_stream_t*)&qr.a, &qr.rout, &qr.pool, NULL), 0);
  assert_int_equal(uvchan_reader_start(&qr.rd, qr_rd_end), 0);
  assert_int_equal(uv_read_start((uv_stream_t*)&qr.b, qr_alloc, qr_peer_read), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(qr.peer_got, QBIG);
  assert_int_equal(qr.rd_end, 0); /* the reader saw the answer, then the end */
  assert_int_equal(uvchan_try_recv(&qr.rout, &b), 0);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.base, "hello", 5);
  uvchan_buf_release(&b);
  assert_int_equal(uvchan_try_recv(&qr.rout, &b), UV_EOF);
  assert_int_equal(uvchan_reader_close(&qr.rd, NULL), 0);
  uv_close((uv_handle_t*)&qr.a, NULL);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(CTX->nres_, 0); /* the state went with the reader */
  assert_int_equal(uvchan_destroy(&qr.win), 0);
  assert_int_equal(uvchan_destroy(&qr.rout), 0);
  assert_int_equal(uvchan_pool_destroy(&qr.pool), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_close_with_buffers_in_flight),
      cmocka_unit_test(test_shutdown_with_buffers_in_flight),
      cmocka_unit_test(test_shutdown_refuses_file_reader_send),
      TEST(test_task_closes_stream_under_adapters),
      TEST(test_stream_closed_before_start),
      TEST(test_states_freed_after_close),
      TEST(test_reader_after_writer_with_queue),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
