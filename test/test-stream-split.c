/* Splitters and the two styles over streams: lines and length-prefixed frames cut out of input
 * chunked at random (CRLF and LF, a terminator split across chunks, empty lines and frames, a
 * last line without terminator), the overlong-line and oversize/truncated-frame errors, a pure
 * callback pipeline socket -> lines -> transform -> socket, and a task selecting over a stream's
 * channel, a plain channel and a timer in one uvchan_task_select. */
#include <ctype.h>
#include <stdio.h>

#include "stream-helpers.h"

/* ---- a feeder task: bytes in random chunks into a channel, then close ---- */

typedef struct {
  const char* data;
  size_t len;
  size_t max_chunk;
  unsigned seed;
  uvchan_t* ch;
} feeder_t;

static void feeder(void* arg) {
  feeder_t* f = arg;
  size_t off = 0, k;
  uvchan_buf_t b;
  int r;
  while (off < f->len) {
    k = 1 + (size_t)rand_r(&f->seed) % f->max_chunk;
    if (k > f->len - off)
      k = f->len - off;
    assert_int_equal(uvchan_buf_copy(NULL, f->data + off, k, &b), 0);
    r = uvchan_task_send(f->ch, &b);
    if (r != 0) { /* the splitter ended early (an error test): it closed nothing of ours */
      uvchan_buf_release(&b);
      break;
    }
    off += k;
  }
  (void)uvchan_close(f->ch);
}

/* ---- a collector task: every message of a channel, concatenated with their lengths ---- */

typedef struct {
  uvchan_t* ch;
  char* data; /* the messages back to back */
  size_t len, cap;
  size_t* lens; /* each message's length */
  size_t n, ncap;
  int status;
} collect_t;

static void collector(void* arg) {
  collect_t* c = arg;
  uvchan_buf_t b;
  int r;
  while ((r = uvchan_task_recv(c->ch, &b)) == 0) {
    if (c->len + b.len > c->cap) {
      c->cap = (c->len + b.len) * 2 + 64;
      c->data = realloc(c->data, c->cap);
    }
    if (c->n == c->ncap) {
      c->ncap = c->ncap * 2 + 16;
      c->lens = realloc(c->lens, c->ncap * sizeof(size_t));
    }
    if (b.len > 0)
      memcpy(c->data + c->len, b.base, b.len);
    c->len += b.len;
    c->lens[c->n++] = b.len;
    uvchan_buf_release(&b);
  }
  c->status = r;
}

static void collect_free(collect_t* c) {
  free(c->data);
  free(c->lens);
}

/* Runs a splitter (initialised by the caller on in -> out) over `data` fed in chunks of at most
 * `max_chunk`; returns its status, the messages in `c`. */
static int split_run(void** state, uvchan_splitter_t* sp, uvchan_t* in, uvchan_t* out,
                     const char* data, size_t len, size_t max_chunk, unsigned seed, collect_t* c) {
  feeder_t f;
  int end = 1;
  f.data = data;
  f.len = len;
  f.max_chunk = max_chunk;
  f.seed = seed;
  f.ch = in;
  memset(c, 0, sizeof(*c));
  c->ch = out;
  assert_int_equal(uvchan_splitter_start(sp, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, feeder, &f, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, collector, c, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  /* After an error the splitter takes no more input: closing it ends a feeder that waits. */
  (void)uvchan_close(in);
  assert_int_equal(RUN(FX(state)), 0);
  end = sp->status;
  assert_int_equal(c->status, UV_EOF); /* the output was closed, whatever the end */
  assert_int_equal(uvchan_splitter_close(sp, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(uvchan_destroy(in), 0);
  assert_int_equal(uvchan_destroy(out), 0);
  return end;
}

/* ---- lines ---- */

enum { MAXLINE = 300, NLINES = 400 };

/* Random text of NLINES lines: lengths 0..MAXLINE, LF or CRLF, the last one maybe without
 * terminator. `lines`/`lens` get the expected lines (without terminators). */
static size_t make_text(char* text, char** lines, size_t* lens, unsigned* seed, int last_open) {
  size_t len = 0, i, j, n;
  for (i = 0; i < NLINES; i++) {
    n = (size_t)rand_r(seed) % 7 == 0 ? 0 : (size_t)rand_r(seed) % (MAXLINE + 1);
    if (i == 3)
      n = MAXLINE; /* exactly the maximum */
    lines[i] = text + len;
    lens[i] = n;
    for (j = 0; j < n; j++)
      text[len++] = (char)('a' + rand_r(seed) % 26);
    if (i == NLINES - 1 && last_open)
      break;
    if (rand_r(seed) % 2 || i == 3)
      text[len++] = '\r'; /* line 3: at the maximum, with CRLF */
    text[len++] = '\n';
  }
  return len;
}

static void test_lines_random_chunks(void** state) {
  static char text[NLINES * (MAXLINE + 2)];
  char* lines[NLINES];
  size_t lens[NLINES], len, i, off;
  unsigned seed = 99;
  int round, last_open;
  uvchan_t in, out;
  uvchan_splitter_t sp;
  collect_t c;
  setup_globals(state);
  for (round = 0; round < 6; round++) {
    last_open = round % 2;
    len = make_text(text, lines, lens, &seed, last_open);
    assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
    assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
    assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, MAXLINE, NULL), 0);
    /* chunks of 1 byte (every terminator split), then larger */
    assert_int_equal(split_run(state, &sp, &in, &out, text, len, round < 2 ? 1 : 97 * round, seed,
                               &c),
                     0);
    /* an open last line that is empty is no line */
    assert_int_equal(c.n, last_open && lens[NLINES - 1] == 0 ? NLINES - 1 : NLINES);
    for (i = 0, off = 0; i < c.n; off += c.lens[i], i++) {
      assert_int_equal(c.lens[i], lens[i]);
      assert_memory_equal(c.data + off, lines[i], lens[i]);
    }
    assert_int_equal(sp.messages, c.n);
    collect_free(&c);
  }
}

static void test_lines_keep_eol(void** state) {
  static char text[NLINES * (MAXLINE + 2)];
  char* lines[NLINES];
  size_t lens[NLINES], len, i, off;
  unsigned seed = 5;
  uvchan_t in, out;
  uvchan_splitter_t sp;
  uvchan_io_opts_t o;
  collect_t c;
  setup_globals(state);
  len = make_text(text, lines, lens, &seed, 1);
  memset(&o, 0, sizeof(o));
  o.flags = UVCHAN_LINES_KEEP_EOL;
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, MAXLINE, &o), 0);
  assert_int_equal(split_run(state, &sp, &in, &out, text, len, 13, seed, &c), 0);
  /* every byte kept, in order; each line but an open last one ends with its "\n" */
  assert_int_equal(c.len, len);
  assert_memory_equal(c.data, text, len);
  for (i = 0, off = 0; i < c.n; off += c.lens[i], i++)
    if (i + 1 < c.n)
      assert_int_equal(c.data[off + c.lens[i] - 1], '\n');
  collect_free(&c);
}

static void test_lines_overlong(void** state) {
  static char text[4096];
  size_t len = 0;
  uvchan_t in, out;
  uvchan_splitter_t sp;
  collect_t c;
  int chunk;
  setup_globals(state);
  for (chunk = 1; chunk <= 1000; chunk *= 10) {
    len = 0;
    memcpy(text, "ok\r\n12345678\n", 14); /* a line at the maximum (8) passes */
    len = 14;
    memset(text + len, 'x', 9); /* 9 bytes: one too many, whether a terminator follows or not */
    len += 9;
    memcpy(text + len, "\nnever\n", 7);
    len += 7;
    assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
    assert_int_equal(uvchan_buf_chan_init(CTX, &out, 8), 0);
    assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 8, NULL), 0);
    assert_int_equal(split_run(state, &sp, &in, &out, text, len, (size_t)chunk, 1, &c),
                     UV_EMSGSIZE);
    assert_int_equal(c.n, 2); /* the lines before it, then UV_EOF */
    assert_memory_equal(c.data, "ok12345678", 10);
    collect_free(&c);
  }
  /* "\r" is no part of the length: 8 bytes and "\r\n" split in every way */
  for (chunk = 1; chunk <= 3; chunk++) {
    assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
    assert_int_equal(uvchan_buf_chan_init(CTX, &out, 8), 0);
    assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 8, NULL), 0);
    assert_int_equal(split_run(state, &sp, &in, &out, "abcdefgh\r\nabcdefgh\r", 19,
                               (size_t)chunk, 1, &c),
                     0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.len, 16);
    collect_free(&c);
  }
}

/* ---- frames ---- */

static void test_frames_random(void** state) {
  static char stream[200000];
  static char payloads[200000];
  size_t plens[600], len, plen, i, n, off, poff;
  unsigned header, seed = 3;
  uvchan_t in, out;
  uvchan_splitter_t sp;
  uvchan_buf_t f;
  uvchan_pool_t pool;
  uvchan_io_opts_t o;
  collect_t c;
  setup_globals(state);
  memset(&pool, 0, sizeof(pool));
  assert_int_equal(uvchan_pool_init(&pool, 64, 4), 0); /* small frames from the pool */
  memset(&o, 0, sizeof(o));
  o.pool = &pool;
  for (header = 1; header <= 8; header *= 2) {
    len = poff = 0;
    for (n = 0; n < 500; n++) {
      plen = (size_t)rand_r(&seed) % 5 == 0 ? 0 : (size_t)rand_r(&seed) % 255;
      for (i = 0; i < plen; i++)
        payloads[poff + i] = (char)rand_r(&seed);
      assert_int_equal(uvchan_frame_encode(NULL, header, payloads + poff, plen, &f), 0);
      memcpy(stream + len, f.base, f.len);
      len += f.len;
      uvchan_buf_release(&f);
      plens[n] = plen;
      poff += plen;
    }
    assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
    assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
    assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, header, 254, &o), 0);
    assert_int_equal(split_run(state, &sp, &in, &out, stream, len, header == 1 ? 1 : 300,
                               seed, &c),
                     0);
    assert_int_equal(c.n, 500);
    for (i = 0, off = 0; i < c.n; off += c.lens[i], i++)
      assert_int_equal(c.lens[i], plens[i]);
    assert_int_equal(c.len, poff);
    assert_memory_equal(c.data, payloads, poff);
    collect_free(&c);
    assert_int_equal(pool.outstanding, 0);
  }
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
}

static void test_frames_errors(void** state) {
  uvchan_t in, out;
  uvchan_splitter_t sp;
  collect_t c;
  setup_globals(state);
  /* a header announcing more than the maximum */
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
  assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, 2, 4, NULL), 0);
  assert_int_equal(split_run(state, &sp, &in, &out, "\0\2hi\0\5hello", 11, 3, 1, &c),
                   UV_EMSGSIZE);
  assert_int_equal(c.n, 1);
  assert_memory_equal(c.data, "hi", 2);
  collect_free(&c);
  /* input ending inside a header, and inside a payload */
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
  assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, 4, 100, NULL), 0);
  assert_int_equal(split_run(state, &sp, &in, &out, "\0\0\0\1x\0\0", 7, 2, 1, &c), UV_EPROTO);
  assert_int_equal(c.n, 1);
  collect_free(&c);
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 2), 0);
  assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, 1, 100, NULL), 0);
  assert_int_equal(split_run(state, &sp, &in, &out, "\3ab", 3, 1, 1, &c), UV_EPROTO);
  assert_int_equal(c.n, 0);
  collect_free(&c);
}

/* ---- a pure callback pipeline: socket -> lines -> transform -> socket ---- */

enum { CB_LINES = 2000 };

static struct {
  uv_tcp_t a, b;
  uvchan_t raw, lines, upper;
  uvchan_reader_t rd;
  uvchan_splitter_t sp;
  uvchan_stage_t st;
  uvchan_writer_t wr;
  uvchan_pipeline_t p;
  uvchan_pool_t pool;
  int p_status, closed;
  size_t lines_ok;
} cb;

/* The transform: a line in, the line upper-cased with its "\n" out. */
static int cb_upper(uvchan_job_t* job, void* value) {
  uvchan_buf_t* in = value;
  uvchan_buf_t o;
  size_t i;
  int r = uvchan_buf_alloc(NULL, in->len + 1, &o);
  if (r == 0) {
    for (i = 0; i < in->len; i++)
      o.base[i] = (char)toupper((unsigned char)in->base[i]);
    o.base[in->len] = '\n';
    if ((r = uvchan_job_emit(job, &o)) != 0)
      uvchan_buf_release(&o);
  }
  uvchan_buf_release(in);
  return r;
}

static void cb_closed(uvchan_pipeline_t* p, int status) {
  (void)p;
  (void)status;
  cb.closed = 1;
  uv_close((uv_handle_t*)&cb.b, NULL);
}

static void cb_end(uvchan_pipeline_t* p, int status) {
  cb.p_status = status;
  assert_int_equal(uvchan_pipeline_close(p, cb_closed), 0);
}

static void line_text(size_t i, char* s, size_t* n) {
  *n = (size_t)snprintf(s, 64, "line %zu of the test %s", i, i % 3 ? "abc" : "");
}

static void cb_client_writer(void* arg) {
  static char text[CB_LINES * 64];
  size_t len = 0, n, i, off, k;
  unsigned seed = 17;
  (void)arg;
  for (i = 0; i < CB_LINES; i++) {
    line_text(i, text + len, &n);
    len += n;
    text[len++] = '\n';
  }
  for (off = 0; off < len; off += k) { /* random pieces: lines cut anywhere */
    k = 1 + (size_t)rand_r(&seed) % 500;
    if (k > len - off)
      k = len - off;
    assert_int_equal(uvchan_task_write((uv_stream_t*)&cb.a, text + off, k), (ssize_t)k);
  }
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&cb.a), 0);
}

static void cb_client_reader(void* arg) {
  static char got[CB_LINES * 64 + 65536];
  char want[64];
  size_t len = 0, n, i, off = 0, j;
  ssize_t r;
  (void)arg;
  while ((r = uvchan_task_read((uv_stream_t*)&cb.a, got + len, sizeof(got) - len)) > 0)
    len += (size_t)r;
  assert_int_equal(r, UV_EOF); /* the writer shut the stream down after the last line */
  for (i = 0; i < CB_LINES; i++) {
    line_text(i, want, &n);
    for (j = 0; j < n; j++)
      want[j] = (char)toupper((unsigned char)want[j]);
    want[n++] = '\n';
    assert_true(off + n <= len);
    assert_memory_equal(got + off, want, n);
    off += n;
    cb.lines_ok++;
  }
  assert_int_equal(off, len);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&cb.a), 0);
}

static void test_callback_pipeline(void** state) {
  uvchan_io_opts_t o;
  uvchan_stage_opts_t so;
  setup_globals(state);
  memset(&cb, 0, sizeof(cb));
  cb.p_status = 1;
  assert_int_equal(uvchan_pool_init(&cb.pool, 1024, 4), 0);
  tcp_pair(&cb.a, &cb.b);
  /* the server side: callbacks only */
  assert_int_equal(uvchan_pipeline_init(CTX, &cb.p), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &cb.raw, 2), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &cb.lines, 4), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &cb.upper, 4), 0);
  memset(&o, 0, sizeof(o));
  o.pipeline = &cb.p;
  memset(&so, 0, sizeof(so));
  so.pipeline = &cb.p;
  assert_int_equal(uvchan_reader_init(CTX, &cb.rd, (uv_stream_t*)&cb.b, &cb.raw, &cb.pool, &o), 0);
  assert_int_equal(uvchan_lines_init(CTX, &cb.sp, &cb.raw, &cb.lines, 100, &o), 0);
  assert_int_equal(uvchan_stage_init(CTX, &cb.st, &cb.lines, &cb.upper, cb_upper, &so), 0);
  assert_int_equal(uvchan_writer_init(CTX, &cb.wr, &cb.upper, (uv_stream_t*)&cb.b, &o), 0);
  assert_int_equal(uvchan_pipeline_start(&cb.p, cb_end), 0);
  /* the client: two tasks */
  assert_int_equal(uvchan_task_spawn(CTX, cb_client_writer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, cb_client_reader, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(cb.lines_ok, CB_LINES);
  assert_int_equal(cb.p_status, 0); /* EOF travelled down: every member ended with 0 */
  assert_int_equal(cb.sp.messages, CB_LINES);
  assert_int_equal(cb.closed, 1);
  assert_int_equal(uvchan_destroy(&cb.raw), 0);
  assert_int_equal(uvchan_destroy(&cb.lines), 0);
  assert_int_equal(uvchan_destroy(&cb.upper), 0);
  assert_int_equal(cb.pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&cb.pool), 0);
}

/* ---- a task selects over a stream's channel, a plain channel and a timer ---- */

static struct {
  uv_tcp_t a, b;
  uvchan_t data, plain, go;
  uvchan_reader_t rd;
  uvchan_pool_t pool;
  int order[8];
  int norder;
  char got[16];
  size_t ngot;
} sel;

static void sel_rd_closed(uvchan_reader_t* r) {
  (void)r;
  uv_close((uv_handle_t*)&sel.b, NULL);
}

static void sel_peer(void* arg) {
  int v;
  (void)arg;
  assert_int_equal(uvchan_task_recv(&sel.go, &v), 0);
  assert_int_equal(uvchan_task_write((uv_stream_t*)&sel.a, "hello", 5), 5);
  assert_int_equal(uvchan_task_recv(&sel.go, &v), 0);
  assert_int_equal(uvchan_task_shutdown((uv_stream_t*)&sel.a), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&sel.a), 0);
}

/* Steps: (1) a value on the plain channel; (2) the peer writes "hello": stream data; (3) nothing
 * else: the timer fires; (4) the peer shuts down: the stream's channel ends. Only one source is
 * ready at each step, so the cases come in that order. */
static void sel_task(void* arg) {
  static uvchan_timer_t timer; /* its close completes after the task may have returned */
  uvchan_buf_t b;
  uint64_t tick;
  int msg, one = 1, i, st, armed = 0;
  uvchan_case_t cases[3];
  (void)arg;
  memset(&timer, 0, sizeof(timer));
  for (;;) {
    cases[0] = (uvchan_case_t)UVCHAN_CASE_RECV(&sel.data, &b);
    cases[1] = (uvchan_case_t)UVCHAN_CASE_RECV(&sel.plain, &msg);
    cases[2] = (uvchan_case_t)UVCHAN_CASE_RECV(armed ? &timer.chan : NULL, &tick);
    i = uvchan_task_select(cases, 3, &st);
    assert_true(i >= 0);
    /* one entry per step (the bytes may come in several pieces) */
    if (!(i == 0 && st == 0 && sel.norder > 0 && sel.order[sel.norder - 1] == 0))
      sel.order[sel.norder++] = i * 10 + (st == UV_EOF);
    if (i == 1) {
      assert_int_equal(msg, 42);
      assert_int_equal(uvchan_task_send(&sel.go, &one), 0); /* (2) */
    } else if (i == 0 && st == 0) {
      memcpy(sel.got + sel.ngot, b.base, b.len);
      sel.ngot += b.len;
      uvchan_buf_release(&b);
      if (sel.ngot == 5) {
        assert_int_equal(uvchan_timer_after(CTX, &timer, 10), 0); /* (3) */
        armed = 1;
      }
    } else if (i == 2) {
      armed = 0;
      assert_int_equal(uvchan_timer_close(&timer, NULL), 0);
      assert_int_equal(uvchan_task_send(&sel.go, &one), 0); /* (4) */
    } else {
      assert_int_equal(i, 0);
      assert_int_equal(st, UV_EOF);
      assert_int_equal(sel.rd.status, 0); /* the end of the stream, no error */
      break;
    }
  }
  assert_int_equal(uvchan_reader_close(&sel.rd, sel_rd_closed), 0);
}

static void test_select_stream_chan_timer(void** state) {
  int v = 42;
  setup_globals(state);
  memset(&sel, 0, sizeof(sel));
  assert_int_equal(uvchan_pool_init(&sel.pool, 1024, 2), 0);
  tcp_pair(&sel.a, &sel.b);
  assert_int_equal(uvchan_buf_chan_init(CTX, &sel.data, 2), 0);
  assert_int_equal(uvchan_init(CTX, &sel.plain, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(CTX, &sel.go, sizeof(int), 0), 0);
  assert_int_equal(uvchan_reader_init(CTX, &sel.rd, (uv_stream_t*)&sel.b, &sel.data, &sel.pool,
                                      NULL),
                   0);
  assert_int_equal(uvchan_reader_start(&sel.rd, NULL), 0);
  assert_int_equal(uvchan_try_send(&sel.plain, &v), 0); /* (1) */
  assert_int_equal(uvchan_task_spawn(CTX, sel_peer, NULL, NULL), 0);
  assert_int_equal(uvchan_task_spawn(CTX, sel_task, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(sel.norder, 4);
  assert_int_equal(sel.order[0], 10); /* the plain channel */
  assert_int_equal(sel.order[1], 0);  /* the stream's bytes */
  assert_int_equal(sel.order[2], 20); /* the timer */
  assert_int_equal(sel.order[3], 1);  /* the stream's end */
  assert_int_equal(sel.ngot, 5);
  assert_memory_equal(sel.got, "hello", 5);
  assert_int_equal(uvchan_destroy(&sel.data), 0);
  assert_int_equal(uvchan_destroy(&sel.plain), 0);
  assert_int_equal(uvchan_destroy(&sel.go), 0);
  assert_int_equal(uvchan_pool_destroy(&sel.pool), 0);
}

/* ---- more messages in one pass than the pump's budget ---- */

/* The pump yields to the loop after a bounded run of try-operations; input it still holds must
 * survive that (regression: the remaining bytes of the input buffer were overwritten by the next
 * receive, and its block was never released). Everything is queued before the run, so nothing
 * waits: each pass runs until its budget. */
static void test_budget_keeps_input(void** state) {
  static char text[200 * 5 + 1]; /* sprintf's last NUL */
  uvchan_t in, out;
  uvchan_splitter_t sp;
  uvchan_pool_t pool;
  uvchan_io_opts_t o;
  uvchan_buf_t b;
  size_t len = 0, n;
  int i;
  setup_globals(state);
  /* lines: 200 in one pooled buffer, an output that takes them all */
  assert_int_equal(uvchan_pool_init(&pool, 4096, 4), 0);
  for (i = 0; i < 200; i++)
    len += (size_t)sprintf(text + len, "L%03d\n", i);
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 4), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 1000), 0);
  assert_int_equal(uvchan_buf_copy(&pool, text, len, &b), 0);
  assert_int_equal(uvchan_try_send(&in, &b), 0);
  assert_int_equal(uvchan_close(&in), 0);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 100, NULL), 0);
  assert_int_equal(uvchan_splitter_start(&sp, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(sp.status, 0);
  for (n = 0; uvchan_try_recv(&out, &b) == 0; n++) {
    char want[8];
    assert_int_equal(b.len, 4);
    (void)sprintf(want, "L%03d", (int)n);
    assert_memory_equal(b.base, want, 4);
    uvchan_buf_release(&b);
  }
  assert_int_equal(n, 200);
  assert_int_equal(sp.messages, 200);
  assert_int_equal(uvchan_splitter_close(&sp, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(pool.outstanding, 0); /* the input block came back */
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);

  /* lines: many small buffers, each holding several lines */
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 100), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 100), 0);
  for (i = 0; i < 30; i++) {
    assert_int_equal(uvchan_buf_copy(NULL, "a\nb\nc\n", 6, &b), 0);
    assert_int_equal(uvchan_try_send(&in, &b), 0);
  }
  assert_int_equal(uvchan_close(&in), 0);
  assert_int_equal(uvchan_lines_init(CTX, &sp, &in, &out, 100, NULL), 0);
  assert_int_equal(uvchan_splitter_start(&sp, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(sp.status, 0);
  for (n = 0; uvchan_try_recv(&out, &b) == 0; n++) {
    assert_int_equal(b.len, 1);
    assert_int_equal(b.base[0], "abc"[n % 3]);
    uvchan_buf_release(&b);
  }
  assert_int_equal(n, 90);
  assert_int_equal(uvchan_splitter_close(&sp, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);

  /* frames: 200 one-byte frames in one buffer */
  assert_int_equal(uvchan_pool_init(&pool, 4096, 4), 0);
  memset(&o, 0, sizeof(o));
  o.pool = &pool;
  for (len = 0, i = 0; i < 200; i++) {
    text[len++] = 0;
    text[len++] = 1;
    text[len++] = (char)i;
  }
  assert_int_equal(uvchan_buf_chan_init(CTX, &in, 4), 0);
  assert_int_equal(uvchan_buf_chan_init(CTX, &out, 1000), 0);
  assert_int_equal(uvchan_buf_copy(&pool, text, len, &b), 0);
  assert_int_equal(uvchan_try_send(&in, &b), 0);
  assert_int_equal(uvchan_close(&in), 0);
  assert_int_equal(uvchan_frames_init(CTX, &sp, &in, &out, 2, 100, &o), 0);
  assert_int_equal(uvchan_splitter_start(&sp, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(sp.status, 0);
  for (n = 0; uvchan_try_recv(&out, &b) == 0; n++) {
    assert_int_equal(b.len, 1);
    assert_int_equal((unsigned char)b.base[0], n);
    uvchan_buf_release(&b);
  }
  assert_int_equal(n, 200);
  assert_int_equal(uvchan_splitter_close(&sp, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(pool.outstanding, 0);
  assert_int_equal(uvchan_pool_destroy(&pool), 0);
  assert_int_equal(uvchan_destroy(&in), 0);
  assert_int_equal(uvchan_destroy(&out), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_lines_random_chunks),
      TEST(test_lines_keep_eol),
      TEST(test_lines_overlong),
      TEST(test_frames_random),
      TEST(test_frames_errors),
      TEST(test_callback_pipeline),
      TEST(test_select_stream_chan_timer),
      TEST(test_budget_keeps_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
