/* Streams as channels over loopback TCP and pipes: buffers and pools, byte-exact echo through a
 * reader and a writer (callbacks only), EOF and reset reaching the consumer, a full channel
 * stopping the reads (the peer's send blocks), a writer that stops taking buffers while the peer
 * does not read, write errors, file descriptors of every kind, a pipeline failing on a read
 * error, and teardown (close and shutdown) with buffers in flight, nothing leaked. */
#include <fcntl.h>
#include <stdio.h>

#include "stream-helpers.h"

/* ---- buffers and pools ---- */

static void test_pool_and_buffers(void** state) {
  uvchan_pool_t pool;
  uvchan_buf_t a, b, c, z;
  uvchan_t ch;
  (void)state;
  memset(&pool, 0, sizeof(pool));
  assert_int_equal(uvchan_pool_init(&pool, 100, 1), 0);
  assert_int_equal(uvchan_pool_init(&pool, 100, 1), UV_EBUSY);
  assert_int_equal(uvchan_buf_alloc(&pool, 100, &a), 0);
  assert_int_equal(a.len, 100);
  assert_int_equal(uvchan_buf_alloc(&pool, 101, &b), UV_EINVAL);
  assert_int_equal(uvchan_buf_copy(&pool, "hello", 5, &b), 0);
  assert_memory_equal(b.base, "hello", 5);
  assert_int_equal(pool.outstanding, 2);
  /* a second reference keeps the block out */
  assert_int_equal(uvchan_buf_ref(&b, &c), 0);
  assert_ptr_equal(c.base, b.base);
  uvchan_buf_release(&b);
  assert_null(b.base);
  assert_int_equal(pool.outstanding, 2);
  c.base++; /* a consumer may move base and len: the release still finds the block */
  c.len--;
  uvchan_buf_release(&c);
  assert_int_equal(pool.outstanding, 1);
  assert_int_equal(pool.cached, 1);
  assert_int_equal(uvchan_pool_destroy(&pool), UV_EBUSY);
  uvchan_buf_release(&a); /* beyond max_cached: freed */
  assert_int_equal(pool.cached, 1);
  assert_int_equal(pool.outstanding, 0);
  /* heap buffers, of any size; the zero buffer */
  assert_int_equal(uvchan_buf_copy(NULL, "xyz", 3, &a), 0);
  uvchan_buf_release(&a);
  memset(&z, 0, sizeof(z));
  uvchan_buf_release(&z);
  uvchan_buf_release(NULL);
  /* a channel of buffers releases what it holds when destroyed */
  assert_int_equal(uvchan_buf_chan_init(CTX = &FX(state)->ctx, &ch, 4), 0);
  assert_int_equal(uvchan_buf_alloc(&pool, 10, &a), 0);
  assert_int_equal(uvchan_try_send(&ch, &a), 0);
  assert_int_equal(pool.outstanding, 1);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), UV_EINVAL);
}

static void test_frame_encode(void** state) {
  uvchan_buf_t b;
  (void)state;
  assert_int_equal(uvchan_frame_encode(NULL, 2, "abc", 3, &b), 0);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.base, "\0\3abc", 5);
  uvchan_buf_release(&b);
  assert_int_equal(uvchan_frame_encode(NULL, 4, NULL, 0, &b), 0);
  assert_memory_equal(b.base, "\0\0\0\0", 4);
  uvchan_buf_release(&b);
  assert_int_equal(uvchan_frame_encode(NULL, 1, pattern_buf, 256, &b), UV_EINVAL); /* too long */
  assert_int_equal(uvchan_frame_encode(NULL, 3, "a", 1, &b), UV_EINVAL);
}

/* ---- echo through a reader and a writer on one stream, callbacks only ---- */

typedef struct {
  uvchan_t ch;
  uvchan_reader_t rd;
  uvchan_writer_t wr;
  uv_stream_t* in;
  uv_stream_t* out;
  int rd_status, wr_status;
  int ended, closed;
} echo_t;

static void echo_closed(echo_t* e) {
  if (++e->closed == 2) {
    uv_close((uv_handle_t*)e->in, NULL);
    if (e->out != e->in)
      uv_close((uv_handle_t*)e->out, NULL);
  }
}

static void echo_rd_closed(uvchan_reader_t* r) {
  echo_closed(r->data);
}

static void echo_wr_closed(uvchan_writer_t* w) {
  echo_closed(w->data);
}

static void echo_maybe_close(echo_t* e) {
  if (++e->ended == 2) {
    assert_int_equal(uvchan_reader_close(&e->rd, echo_rd_closed), 0);
    assert_int_equal(uvchan_writer_close(&e->wr, echo_wr_closed), 0);
  }
}

static void echo_rd_end(uvchan_reader_t* r, int status) {
  echo_t* e = r->data;
  e->rd_status = status;
  echo_maybe_close(e);
}

static void echo_wr_end(uvchan_writer_t* w, int status) {
  echo_t* e = w->data;
  e->wr_status = status;
  echo_maybe_close(e);
}

/* Reads `in` into a channel of `cap` and writes that channel to `out`. */
static void echo_start(echo_t* e, uv_stream_t* in, uv_stream_t* out, uvchan_pool_t* pool,
                       size_t cap) {
  memset(e, 0, sizeof(*e));
  e->in = in;
  e->out = out;
  e->rd_status = e->wr_status = 1;
  assert_int_equal(uvchan_buf_chan_init(CTX, &e->ch, cap), 0);
  assert_int_equal(uvchan_reader_init(CTX, &e->rd, in, &e->ch, pool, NULL), 0);
  assert_int_equal(uvchan_writer_init(CTX, &e->wr, &e->ch, out, NULL), 0);
  e->rd.data = e->wr.data = e;
  assert_int_equal(uvchan_reader_start(&e->rd, echo_rd_end), 0);
  assert_int_equal(uvchan_writer_start(&e->wr, echo_wr_end), 0);
}

/* The client side, in tasks: one writes `total` pattern bytes in random pieces then shuts its
 * side down; the other reads everything back and checks it. */
typedef struct {
  uv_stream_t* wr;
  uv_stream_t* rd;
  uint64_t total;
  uint64_t got;
  unsigned seed;
  int writer_done, reader_done;
} client_t;

static void client_writer(void* arg) {
  client_t* c = arg;
  uint64_t off = 0;
  size_t k;
  int r;
  while (off < c->total) {
    k = 1 + (size_t)rand_r(&c->seed) % (256 * 1024);
    if (k > c->total - off)
      k = (size_t)(c->total - off);
    assert_int_equal(uvchan_task_write(c->wr, pattern_at(off), k), (ssize_t)k);
    off += k;
  }
  /* After the queued bytes: a FIN, or for a pipe UV_ENOTSOCK, and then its close ends it. */
  r = uvchan_task_shutdown(c->wr);
  assert_int_equal(r, c->wr->type == UV_TCP ? 0 : UV_ENOTSOCK);
  if (c->wr != c->rd)
    assert_int_equal(uvchan_task_close((uv_handle_t*)c->wr), 0);
  c->writer_done = 1;
}

static void client_reader(void* arg) {
  client_t* c = arg;
  static char buf[100000];
  ssize_t n;
  while ((n = uvchan_task_read(c->rd, buf, 1 + (size_t)rand_r(&c->seed) % sizeof(buf))) > 0) {
    pattern_check(buf, (size_t)n, c->got);
    c->got += (uint64_t)n;
  }
  assert_int_equal(n, UV_EOF);
  assert_int_equal(uvchan_task_close((uv_handle_t*)c->rd), 0);
  c->reader_done = 1;
}

static void test_echo_tcp_exact(void** state) {
  static uv_tcp_t a, b;
  static echo_t e;
  static client_t c;
  uvchan_pool_t pool;
  setup_globals(state);
  pattern_init();
  memset(&pool, 0, sizeof(pool));
  assert_int_equal(uvchan_pool_init(&pool, 4096, 8), 0); /* small reads: many of them */
  tcp_pair(&a, &b);
  echo_start(&e, (uv_stream_t*)&b, (uv_stream_t*)&b, &pool, 4);
  memset(&c, 0, sizeof(c));
  c.wr = c.rd = (uv_stream_t*)&a;
  c.total = 8 * 1024 * 1024 + 17;
  c.seed = 7;
  assert_int_equal(uvchan_task_spawn(CTX, client_writer, &c, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, client_reader, &c, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_true(c.writer_done && c.reader_done);
  assert_int_equal(c.got, c.total);
  assert_int_equal(e.rd_status, 0); /* the end of the stream */
  assert_int_equal(e.wr_status, 0); /* drained, written, shut down */
  assert_int_equal(e.rd.status, 0);
  assert_int_equal(e.rd.bytes, c.total);
  assert_int_equal(e.wr.bytes, c.total);
  assert_int_equal(e.closed, 2);
  assert_int_equal(uvchan_destroy(&e.ch), 0);
  assert_int_equal(pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

static void test_echo_pipes_exact(void** state) {
  static uv_pipe_t in_rd, in_wr, out_rd, out_wr;
  static echo_t e;
  static client_t c;
  uvchan_pool_t pool;
  setup_globals(state);
  pattern_init();
  memset(&pool, 0, sizeof(pool));
  assert_int_equal(uvchan_pool_init(&pool, UVCHAN_READ_SIZE, 4), 0);
  pipe_pair(&in_rd, &in_wr);
  pipe_pair(&out_rd, &out_wr);
  echo_start(&e, (uv_stream_t*)&in_rd, (uv_stream_t*)&out_wr, &pool, 2);
  memset(&c, 0, sizeof(c));
  c.wr = (uv_stream_t*)&in_wr;
  c.rd = (uv_stream_t*)&out_rd;
  c.total = 3 * 1024 * 1024 + 1;
  c.seed = 11;
  assert_int_equal(uvchan_task_spawn(CTX, client_writer, &c, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, client_reader, &c, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(c.got, c.total);
  assert_int_equal(e.rd_status, 0);
  assert_int_equal(e.wr_status, 0); /* a pipe has no write side to shut: its close ends it */
  assert_int_equal(uvchan_destroy(&e.ch), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

/* ---- EOF and reset reach the consumer ---- */

typedef struct {
  uvchan_t ch;
  uvchan_reader_t rd;
  uvchan_recv_t req;
  uvchan_buf_t got;
  char text[64];
  size_t n;
  int end_status;
  int recv_status; /* the status that ended the consumer */
  int reader_status_at_eof;
  uv_stream_t* s;
  uv_tcp_t* reset; /* reset this peer once the first bytes arrived */
} sink_t;

static void sink_rd_closed(uvchan_reader_t* r) {
  sink_t* k = r->data;
  uv_close((uv_handle_t*)k->s, NULL);
}

static void sink_on_recv(uvchan_recv_t* req, int status) {
  sink_t* k = req->data;
  if (status == 0) {
    assert_true(k->n + k->got.len <= sizeof(k->text));
    memcpy(k->text + k->n, k->got.base, k->got.len);
    k->n += k->got.len;
    uvchan_buf_release(&k->got);
    if (k->reset != NULL) { /* the bytes were read: now an RST, not a FIN */
      assert_int_equal(uv_tcp_close_reset(k->reset, NULL), 0);
      k->reset = NULL;
    }
    assert_int_equal(uvchan_recv(req, &k->ch, &k->got, sink_on_recv), 0);
    return;
  }
  k->recv_status = status;
  k->reader_status_at_eof = k->rd.status; /* final once the channel is drained */
  assert_int_equal(uvchan_reader_close(&k->rd, sink_rd_closed), 0);
}

static void sink_rd_end(uvchan_reader_t* r, int status) {
  ((sink_t*)r->data)->end_status = status;
}

static void sink_start(sink_t* k, uv_stream_t* s, uvchan_pool_t* pool) {
  memset(k, 0, sizeof(*k));
  k->s = s;
  k->end_status = 1;
  assert_int_equal(uvchan_buf_chan_init(CTX, &k->ch, 8), 0);
  assert_int_equal(uvchan_reader_init(CTX, &k->rd, s, &k->ch, pool, NULL), 0);
  k->rd.data = k;
  k->req.data = k;
  assert_int_equal(uvchan_reader_start(&k->rd, sink_rd_end), 0);
  assert_int_equal(uvchan_recv(&k->req, &k->ch, &k->got, sink_on_recv), 0);
}

static void eof_client(void* arg) {
  uv_stream_t* a = arg;
  assert_int_equal(uvchan_task_write(a, "abc", 3), 3);
  assert_int_equal(uvchan_task_shutdown(a), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)a), 0);
}

static void test_eof(void** state) {
  static uv_tcp_t a, b;
  static sink_t k;
  uvchan_pool_t pool;
  setup_globals(state);
  memset(&pool, 0, sizeof(pool));
  assert_int_equal(uvchan_pool_init(&pool, 1024, 2), 0);
  tcp_pair(&a, &b);
  sink_start(&k, (uv_stream_t*)&b, &pool);
  assert_int_equal(uvchan_task_spawn(CTX, eof_client, &a, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(k.n, 3);
  assert_memory_equal(k.text, "abc", 3);
  assert_int_equal(k.recv_status, UV_EOF);
  assert_int_equal(k.end_status, 0);
  assert_int_equal(k.reader_status_at_eof, 0); /* UV_EOF with status 0: the end of the stream */
  assert_int_equal(uvchan_destroy(&k.ch), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

/* After a reader saw the end of a stream, the stream is free again: libuv stops reading by itself
 * at the end and leaves the reader's callback set on the handle, which must not count as the
 * application reading it (regression: a second reader, or a task read, got UV_EBUSY; a TTY after
 * Ctrl-D). */
static int again_rd_end;

static void again_on_end(uvchan_reader_t* r, int status) {
  (void)r;
  again_rd_end = status;
}

static void again_task(void* arg) {
  char buf[8];
  assert_int_equal(uvchan_task_read((uv_stream_t*)arg, buf, sizeof(buf)), UV_EOF);
}

static void test_reader_again_after_eof(void** state) {
  static uv_pipe_t rd, wr;
  uv_buf_t x = uv_buf_init((char*)"x", 1);
  uvchan_reader_t r, r2;
  uvchan_pool_t pool;
  uvchan_t ch, ch2;
  uvchan_buf_t b;
  setup_globals(state);
  assert_int_equal(uvchan_pool_init(&pool, 1024, 2), 0);
  pipe_pair(&rd, &wr);
  assert_int_equal(uv_try_write((uv_stream_t*)&wr, &x, 1), 1);
  uv_close((uv_handle_t*)&wr, NULL);
  assert_int_equal(uvchan_buf_chan_init(CTX, &ch, 4), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &ch2, 4), 0);
  again_rd_end = 1;
  assert_int_equal(uvchan_reader_init(CTX, &r, (uv_stream_t*)&rd, &ch, &pool, NULL), 0);
  assert_int_equal(uvchan_reader_start(&r, again_on_end), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(again_rd_end, 0); /* the end of the stream */
  assert_int_equal(uvchan_try_recv(&ch, &b), 0);
  assert_int_equal(b.len, 1);
  uvchan_buf_release(&b);
  assert_int_equal(uvchan_reader_close(&r, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  /* a second reader: accepted, and it sees the end again */
  assert_int_equal(uvchan_reader_init(CTX, &r2, (uv_stream_t*)&rd, &ch2, &pool, NULL), 0);
  again_rd_end = 1;
  assert_int_equal(uvchan_reader_start(&r2, again_on_end), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(again_rd_end, 0);
  assert_int_equal(uvchan_try_recv(&ch2, &b), UV_EOF);
  assert_int_equal(uvchan_reader_close(&r2, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  /* a task read: the end again, not UV_EBUSY */
  assert_int_equal(uvchan_task_spawn(CTX, again_task, &rd, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  uv_close((uv_handle_t*)&rd, NULL);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  assert_int_equal(uvchan_destroy(&ch2), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

static void test_reset(void** state) {
  static uv_tcp_t a, b;
  static sink_t k;
  uv_buf_t wb = uv_buf_init("abc", 3);
  uvchan_pool_t pool;
  setup_globals(state);
  memset(&pool, 0, sizeof(pool));
  assert_int_equal(uvchan_pool_init(&pool, 1024, 2), 0);
  tcp_pair(&a, &b);
  sink_start(&k, (uv_stream_t*)&b, &pool);
  k.reset = &a; /* the peer writes, then resets the connection (SO_LINGER 0) */
  assert_int_equal(uv_try_write((uv_stream_t*)&a, &wb, 1), 3);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(k.n, 3);
  assert_int_equal(k.recv_status, UV_EOF); /* the consumer drains, then sees the close */
  assert_int_equal(k.end_status, UV_ECONNRESET);
  assert_int_equal(k.reader_status_at_eof, UV_ECONNRESET); /* ... and reads the error here */
  assert_int_equal(uvchan_destroy(&k.ch), 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

/* ---- a full channel stops the reads: the peer's send blocks ---- */

enum { BP_BLOCK = 4096, BP_TOTAL = 8 * 1024 * 1024 };

static struct {
  uv_tcp_t a, b;
  uvchan_t ch;
  uvchan_reader_t rd;
  uvchan_recv_t req;
  uvchan_buf_t got;
  uvchan_pool_t pool;
  uvchan_t go;
  ssize_t first;      /* what the peer's first write got through before its deadline */
  uint64_t read_then; /* the reader's bytes at that moment */
  size_t len_then;
  uint64_t received;
  int recv_status;
  int end_status;
} bp;

static void bp_rd_closed(uvchan_reader_t* r) {
  (void)r;
  uv_close((uv_handle_t*)&bp.b, NULL);
}

static void bp_on_recv(uvchan_recv_t* req, int status) {
  if (status == 0) {
    pattern_check(bp.got.base, bp.got.len, bp.received);
    bp.received += bp.got.len;
    uvchan_buf_release(&bp.got);
    assert_int_equal(uvchan_recv(req, &bp.ch, &bp.got, bp_on_recv), 0);
    return;
  }
  bp.recv_status = status;
  assert_int_equal(uvchan_reader_close(&bp.rd, bp_rd_closed), 0);
}

static void bp_rd_end(uvchan_reader_t* r, int status) {
  (void)r;
  bp.end_status = status;
}

/* The peer: a write of everything, with a deadline. Nobody consumes the channel, so the write
 * must block once the kernel's buffers are full. Then the consumer starts and the rest goes. */
static void bp_peer(void* arg) {
  uv_stream_t* a = (uv_stream_t*)&bp.a;
  ssize_t n;
  int one = 1;
  uint64_t off;
  size_t k;
  (void)arg;
  bp.first = uvchan_task_write_timeout(a, pattern_at(0), 2 * 1024 * 1024, 500);
  assert_true(bp.first > 0);
  assert_true(bp.first < 2 * 1024 * 1024); /* the send blocked */
  bp.read_then = bp.rd.bytes;
  bp.len_then = uvchan_len(&bp.ch);
  assert_int_equal(uvchan_task_send(&bp.go, &one), 0);
  for (off = (uint64_t)bp.first; off < BP_TOTAL; off += k) {
    k = BP_TOTAL - off < 1024 * 1024 ? (size_t)(BP_TOTAL - off) : 1024 * 1024;
    n = uvchan_task_write(a, pattern_at(off), k);
    assert_int_equal(n, (ssize_t)k);
  }
  assert_int_equal(uvchan_task_shutdown(a), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)a), 0);
}

static void bp_consumer(void* arg) {
  int v;
  (void)arg;
  assert_int_equal(uvchan_task_recv(&bp.go, &v), 0);
  assert_int_equal(uvchan_recv(&bp.req, &bp.ch, &bp.got, bp_on_recv), 0);
}

static void test_full_channel_stops_reading(void** state) {
  int size = 16 * 1024;
  setup_globals(state);
  pattern_init();
  memset(&bp, 0, sizeof(bp));
  assert_int_equal(uvchan_pool_init(&bp.pool, BP_BLOCK, 4), 0);
  tcp_pair(&bp.a, &bp.b);
  /* small kernel buffers, so that the blocking comes after little traffic */
  assert_int_equal(uv_send_buffer_size((uv_handle_t*)&bp.a, &size), 0);
  assert_int_equal(uv_recv_buffer_size((uv_handle_t*)&bp.b, &size), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &bp.ch, 1), 0);
  assert_int_equal(uvchan_init(CTX, &bp.go, sizeof(int), 0), 0);
  assert_int_equal(uvchan_reader_init(CTX, &bp.rd, (uv_stream_t*)&bp.b, &bp.ch, &bp.pool, NULL), 0);
  assert_int_equal(uvchan_reader_start(&bp.rd, bp_rd_end), 0);
  assert_int_equal(uvchan_task_spawn(CTX, bp_peer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, bp_consumer, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  /* While the peer was blocked, the reader held the channel's one buffer and one in its waiting
   * send: nothing more was read from the socket. */
  assert_int_equal(bp.len_then, 1);
  assert_true(bp.read_then <= 2 * BP_BLOCK);
  assert_int_equal(bp.received, BP_TOTAL);
  assert_int_equal(bp.recv_status, UV_EOF);
  assert_int_equal(bp.end_status, 0);
  assert_int_equal(uvchan_destroy(&bp.ch), 0);
  assert_int_equal(uvchan_destroy(&bp.go), 0);
  assert_int_equal(bp.pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&bp.pool), 0);
}

/* ---- a peer that does not read stops the writer; its channel fills; its senders wait ---- */

enum { WB_PIECE = 64 * 1024, WB_TOTAL = 16 * 1024 * 1024, WB_HWM = 16 * 1024 };

static struct {
  uv_tcp_t a, b;
  uvchan_t ch;
  uvchan_writer_t wr;
  uvchan_t go;
  uint64_t produced_then;
  size_t queued_then;
  uint64_t taken_then;
  uint64_t got;
  int end_status;
} wb;

static void wb_wr_closed(uvchan_writer_t* w) {
  (void)w;
  uv_close((uv_handle_t*)&wb.b, NULL);
}

static void wb_wr_end(uvchan_writer_t* w, int status) {
  wb.end_status = status;
  assert_int_equal(uvchan_writer_close(w, wb_wr_closed), 0);
}

static void wb_producer(void* arg) {
  uint64_t off = 0;
  uvchan_buf_t b;
  int r, one = 1;
  (void)arg;
  for (;;) { /* until a send has waited half a second: the writer stopped taking buffers */
    assert_int_equal(uvchan_buf_copy(NULL, pattern_at(off), WB_PIECE, &b), 0);
    r = uvchan_task_send_timeout(&wb.ch, &b, 500);
    if (r == UV_ETIMEDOUT)
      break;
    assert_int_equal(r, 0);
    off += WB_PIECE;
    assert_true(off < WB_TOTAL);
  }
  wb.produced_then = off;
  wb.queued_then = uvchan_stream_queued((uv_stream_t*)&wb.b);
  wb.taken_then = wb.wr.bytes;
  assert_int_equal(uvchan_task_send(&wb.go, &one), 0);
  assert_int_equal(uvchan_task_send(&wb.ch, &b), 0); /* the one that waited */
  for (off += WB_PIECE; off < WB_TOTAL; off += WB_PIECE) {
    assert_int_equal(uvchan_buf_copy(NULL, pattern_at(off), WB_PIECE, &b), 0);
    assert_int_equal(uvchan_task_send(&wb.ch, &b), 0);
  }
  assert_int_equal(uvchan_close(&wb.ch), 0); /* the writer shuts the stream down */
}

static void wb_peer(void* arg) {
  static char buf[65536];
  ssize_t n;
  int v;
  (void)arg;
  assert_int_equal(uvchan_task_recv(&wb.go, &v), 0);
  while ((n = uvchan_task_read((uv_stream_t*)&wb.a, buf, sizeof(buf))) > 0) {
    pattern_check(buf, (size_t)n, wb.got);
    wb.got += (uint64_t)n;
  }
  assert_int_equal(n, UV_EOF);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&wb.a), 0);
}

static void test_writer_backpressure(void** state) {
  int size = 16 * 1024;
  uvchan_io_opts_t opts;
  setup_globals(state);
  pattern_init();
  memset(&wb, 0, sizeof(wb));
  tcp_pair(&wb.a, &wb.b);
  assert_int_equal(uv_send_buffer_size((uv_handle_t*)&wb.b, &size), 0);
  assert_int_equal(uv_recv_buffer_size((uv_handle_t*)&wb.a, &size), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &wb.ch, 2), 0);
  assert_int_equal(uvchan_init(CTX, &wb.go, sizeof(int), 0), 0);
  memset(&opts, 0, sizeof(opts));
  opts.hwm = WB_HWM;
  assert_int_equal(uvchan_writer_init(CTX, &wb.wr, &wb.ch, (uv_stream_t*)&wb.b, &opts), 0);
  assert_int_equal(uvchan_writer_start(&wb.wr, wb_wr_end), 0);
  assert_int_equal(uvchan_task_spawn(CTX, wb_producer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, wb_peer, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  /* The writer stopped at the mark: what was queued in user space stayed below the mark plus
   * one piece, and the channel held the rest, so production stopped. */
  assert_true(wb.queued_then < WB_HWM + 64 * 1024);
  assert_true(wb.produced_then < WB_TOTAL / 2);
  assert_true(wb.taken_then <= wb.produced_then);
  assert_int_equal(wb.got, WB_TOTAL);
  assert_int_equal(wb.end_status, 0);
  assert_int_equal(uvchan_destroy(&wb.ch), 0);
  assert_int_equal(uvchan_destroy(&wb.go), 0);
}

/* ---- a write error ends the writer and closes its channel ---- */

static struct {
  uv_tcp_t a, b;
  uvchan_t ch;
  uvchan_writer_t wr;
  int end_status;
  int send_status;
  uint64_t sent;
} we;

static void we_wr_closed(uvchan_writer_t* w) {
  (void)w;
  uv_close((uv_handle_t*)&we.b, NULL);
}

static void we_wr_end(uvchan_writer_t* w, int status) {
  we.end_status = status;
  assert_int_equal(uvchan_writer_close(w, we_wr_closed), 0);
}

static void we_producer(void* arg) {
  uvchan_buf_t b;
  int r;
  (void)arg;
  for (;;) {
    assert_int_equal(uvchan_buf_copy(NULL, pattern_buf, 65536, &b), 0);
    r = uvchan_task_send(&we.ch, &b);
    if (r != 0) {
      uvchan_buf_release(&b); /* a failed send leaves the buffer ours */
      we.send_status = r;
      return;
    }
    we.sent++;
  }
}

static void we_on_closed(uv_handle_t* h) {
  (void)h;
}

static void test_writer_error(void** state) {
  setup_globals(state);
  memset(&we, 0, sizeof(we));
  tcp_pair(&we.a, &we.b);
  assert_int_equal(uv_tcp_close_reset(&we.a, we_on_closed), 0); /* the peer is gone */
  assert_int_equal(uvchan_buf_chan_init(CTX, &we.ch, 2), 0);
  assert_int_equal(uvchan_writer_init(CTX, &we.wr, &we.ch, (uv_stream_t*)&we.b, NULL), 0);
  assert_int_equal(uvchan_writer_start(&we.wr, we_wr_end), 0);
  assert_int_equal(uvchan_task_spawn(CTX, we_producer, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_true(we.end_status == UV_EPIPE || we.end_status == UV_ECONNRESET);
  assert_int_equal(we.wr.status, we.end_status);
  assert_int_equal(we.send_status, UV_EPIPE); /* the writer closed its channel */
  assert_int_equal(uvchan_is_closed(&we.ch), 1);
  assert_int_equal(uvchan_destroy(&we.ch), 0);
}

/* ---- file descriptors: a regular file through a pipe fd into a file ---- */

static struct {
  uvchan_t ch;
  uvchan_reader_t rd;
  uvchan_writer_t wr;
  uvchan_pool_t pool;
  int rd_status, wr_status, closed;
} fd;

static void fd_closed_rd(uvchan_reader_t* r) {
  (void)r;
  fd.closed++;
}

static void fd_closed_wr(uvchan_writer_t* w) {
  (void)w;
  fd.closed++;
}

static void fd_rd_end(uvchan_reader_t* r, int status) {
  fd.rd_status = status;
  assert_int_equal(uvchan_reader_close(r, fd_closed_rd), 0);
}

static void fd_wr_end(uvchan_writer_t* w, int status) {
  fd.wr_status = status;
  assert_int_equal(uvchan_writer_close(w, fd_closed_wr), 0);
}

/* Copies descriptor `from` to descriptor `to` with a reader and a writer of their own. */
static void fd_copy(void** state, int from, int to) {
  memset(&fd, 0, sizeof(fd));
  fd.rd_status = fd.wr_status = 1;
  assert_int_equal(uvchan_pool_init(&fd.pool, 10000, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &fd.ch, 2), 0);
  assert_int_equal(uvchan_reader_init_fd(CTX, &fd.rd, from, &fd.ch, &fd.pool, NULL), 0);
  assert_int_equal(uvchan_writer_init_fd(CTX, &fd.wr, &fd.ch, to, NULL), 0);
  assert_int_equal(uvchan_reader_start(&fd.rd, fd_rd_end), 0);
  assert_int_equal(uvchan_writer_start(&fd.wr, fd_wr_end), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(fd.rd_status, 0);
  assert_int_equal(fd.wr_status, 0);
  assert_int_equal(fd.closed, 2);
  assert_int_equal(uvchan_destroy(&fd.ch), 0);
  assert_int_equal(fd.pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&fd.pool), 0);
}

/* Writes the pattern to a new temporary file; returns its descriptor at offset 0. */
static int temp_with_pattern(size_t len) {
  char path[] = "/tmp/uvchan-stream-XXXXXX";
  int f = mkstemp(path);
  assert_true(f >= 0);
  unlink(path);
  assert_int_equal(write(f, pattern_buf, len), (ssize_t)len);
  assert_int_equal(lseek(f, 0, SEEK_SET), 0);
  return f;
}

static void check_file(int f, size_t len) {
  static char buf[300000];
  assert_int_equal(lseek(f, 0, SEEK_SET), 0);
  assert_int_equal(read(f, buf, sizeof(buf)), (ssize_t)len);
  pattern_check(buf, len, 0);
}

static void test_fd_file_to_file(void** state) {
  char path[] = "/tmp/uvchan-stream-XXXXXX";
  int src, dst, keep;
  setup_globals(state);
  pattern_init();
  src = temp_with_pattern(123457);
  dst = mkstemp(path);
  assert_true(dst >= 0);
  unlink(path);
  keep = dup(dst); /* files are read and written with uv_fs_*: nothing closes them */
  fd_copy(state, src, dst);
  check_file(keep, 123457);
  close(src);
  close(dst);
  close(keep);
}

static void test_fd_pipes(void** state) {
  int in[2], out[2];
  int src;
  ssize_t n;
  size_t got = 0;
  static char buf[300000];
  setup_globals(state);
  pattern_init();
  /* a pipe in, a pipe out: the reader and writer open their own uv_pipe_t and close it */
  assert_int_equal(pipe(in), 0);
  assert_int_equal(pipe(out), 0);
  assert_int_equal(write(in[1], pattern_buf, 50000), 50000);
  close(in[1]);
  fd_copy(state, in[0], out[1]);
  while ((n = read(out[0], buf + got, sizeof(buf) - got)) > 0)
    got += (size_t)n;
  assert_int_equal(n, 0); /* the writer's close closed out[1] */
  assert_int_equal(got, 50000);
  pattern_check(buf, got, 0);
  close(out[0]);
  assert_int_equal(fcntl(in[0], F_GETFD), -1); /* closed by the reader */
  /* a file in, a pipe out */
  src = temp_with_pattern(60000); /* below a pipe's 64 KiB: nobody reads it during the run */
  assert_int_equal(pipe(out), 0);
  fd_copy(state, src, out[1]);
  got = 0;
  while ((n = read(out[0], buf + got, sizeof(buf) - got)) > 0)
    got += (size_t)n;
  assert_int_equal(got, 60000);
  pattern_check(buf, got, 0);
  close(out[0]);
  close(src);
}

/* ---- a read error fails the pipeline: every member stops ---- */

static struct {
  uv_tcp_t a, b;
  uvchan_t raw, lines, out;
  uvchan_reader_t rd;
  uvchan_splitter_t sp;
  uvchan_stage_t st;
  uvchan_pipeline_t p;
  uvchan_pool_t pool;
  int p_status, p_closed;
} pf;

static int pf_fn(uvchan_job_t* job, void* value) {
  (void)job;
  uvchan_buf_release(value); /* a sink: takes the lines, emits nothing */
  if (!uv_is_closing((uv_handle_t*)&pf.a)) /* the line went through: now reset */
    assert_int_equal(uv_tcp_close_reset(&pf.a, NULL), 0);
  return 0;
}

static void pf_closed(uvchan_pipeline_t* p, int status) {
  (void)p;
  (void)status;
  pf.p_closed = 1;
  uv_close((uv_handle_t*)&pf.b, NULL);
}

static void pf_end(uvchan_pipeline_t* p, int status) {
  pf.p_status = status;
  assert_int_equal(uvchan_pipeline_close(p, pf_closed), 0);
}

static void test_pipeline_read_error(void** state) {
  uv_buf_t wbuf = uv_buf_init("a line\npartial", 14);
  uvchan_io_opts_t o;
  uvchan_stage_opts_t so;
  setup_globals(state);
  memset(&pf, 0, sizeof(pf));
  assert_int_equal(uvchan_pool_init(&pf.pool, 1024, 2), 0);
  tcp_pair(&pf.a, &pf.b);
  assert_int_equal(uvchan_pipeline_init(CTX, &pf.p), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &pf.raw, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &pf.lines, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &pf.out, 2), 0);
  memset(&o, 0, sizeof(o));
  o.pipeline = &pf.p;
  memset(&so, 0, sizeof(so));
  so.pipeline = &pf.p;
  assert_int_equal(uvchan_reader_init(CTX, &pf.rd, (uv_stream_t*)&pf.b, &pf.raw, &pf.pool, &o), 0);
  assert_int_equal(uvchan_lines_init(CTX, &pf.sp, &pf.raw, &pf.lines, 100, &o), 0);
  assert_int_equal(uvchan_stage_init(CTX, &pf.st, &pf.lines, &pf.out, pf_fn, &so), 0);
  assert_int_equal(uvchan_pipeline_start(&pf.p, pf_end), 0);
  assert_int_equal(uv_try_write((uv_stream_t*)&pf.a, &wbuf, 1), 14);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(pf.p_status, UV_ECONNRESET); /* the reader's error is the pipeline's */
  assert_int_equal(pf.rd.status, UV_ECONNRESET);
  assert_int_equal(pf.sp.status, UV_ECANCELED); /* stopped by the group */
  assert_int_equal(pf.st.status, UV_ECANCELED);
  assert_int_equal(pf.p_closed, 1);
  assert_int_equal(uvchan_destroy(&pf.raw), 0);
  assert_int_equal(uvchan_destroy(&pf.lines), 0);
  assert_int_equal(uvchan_destroy(&pf.out), 0);
  assert_int_equal(uvchan_pool_destroy(&pf.pool), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_pool_and_buffers),
      TEST(test_frame_encode),
      TEST(test_echo_tcp_exact),
      TEST(test_echo_pipes_exact),
      TEST(test_eof),
      TEST(test_reader_again_after_eof),
      TEST(test_reset),
      TEST(test_full_channel_stops_reading),
      TEST(test_writer_backpressure),
      TEST(test_writer_error),
      TEST(test_fd_file_to_file),
      TEST(test_fd_pipes),
      TEST(test_pipeline_read_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
