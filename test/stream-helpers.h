/* Helpers of the stream suites (test/test-stream*.c): connected TCP pairs and pipes made before
 * the test's run, a byte pattern checked with memcmp, and a counting element destructor. */
#ifndef UVCHAN_STREAM_HELPERS_H
#define UVCHAN_STREAM_HELPERS_H

#include <signal.h>
#include <unistd.h>

#include "test-helpers.h"

static uv_loop_t* LOOP;
static uvchan_ctx_t* CTX;

static inline void setup_globals(void** state) {
  fixture_t* f = FX(state);
  LOOP = &f->loop;
  CTX = &f->ctx;
  signal(SIGPIPE, SIG_IGN);
}

/* ---- the pattern: byte i is i mod 251, so a window at any offset is one memcmp ---- */

enum { PERIOD = 251 };
static unsigned char pattern_buf[2 * 1024 * 1024 + PERIOD];

static inline void pattern_init(void) {
  size_t i;
  for (i = 0; i < sizeof(pattern_buf); i++)
    pattern_buf[i] = (unsigned char)(i % PERIOD);
}

/* The pattern from byte `off` on, `len` bytes (len <= 2 MiB). */
static inline const unsigned char* pattern_at(uint64_t off) {
  return pattern_buf + off % PERIOD;
}

static inline void pattern_check(const void* p, size_t len, uint64_t off) {
  size_t k;
  while (len > 0) {
    k = len < 1024 * 1024 ? len : 1024 * 1024;
    assert_memory_equal(p, pattern_at(off), k);
    p = (const char*)p + k;
    off += k;
    len -= k;
  }
}

/* ---- a counting destructor for channels of uvchan_buf_t ---- */

static size_t dtor_calls;

static inline void count_dtor(uvchan_t* ch, void* value) {
  dtor_calls++;
  uvchan_buf_dtor(ch, value);
}

/* ---- a connected TCP pair (a: the client side, b: the accepted side), made with a loop run ---- */

typedef struct {
  uv_tcp_t ln;
  uv_tcp_t* accepted;
  uv_connect_t req;
  int connected;
} pair_t;

static inline void pair_on_conn(uv_stream_t* ln, int status) {
  pair_t* p = UVCHAN__TEST_CONTAINER(ln, pair_t, ln);
  assert_int_equal(status, 0);
  assert_int_equal(uv_accept(ln, (uv_stream_t*)p->accepted), 0);
  uv_close((uv_handle_t*)ln, NULL);
}

static inline void pair_on_connect(uv_connect_t* req, int status) {
  pair_t* p = UVCHAN__TEST_CONTAINER(req, pair_t, req);
  assert_int_equal(status, 0);
  p->connected = 1;
}

static inline void tcp_pair(uv_tcp_t* a, uv_tcp_t* b) {
  pair_t p;
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int len = sizeof(name);
  memset(&p, 0, sizeof(p));
  p.accepted = b;
  assert_int_equal(uv_tcp_init(LOOP, &p.ln), 0);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&p.ln, (const struct sockaddr*)&addr, 0), 0);
  assert_int_equal(uv_tcp_getsockname(&p.ln, (struct sockaddr*)&name, &len), 0);
  assert_int_equal(uv_listen((uv_stream_t*)&p.ln, 1, pair_on_conn), 0);
  assert_int_equal(uv_tcp_init(LOOP, a), 0);
  assert_int_equal(uv_tcp_init(LOOP, b), 0);
  assert_int_equal(uv_tcp_connect(&p.req, a, (const struct sockaddr*)&name, pair_on_connect), 0);
  uv_run(LOOP, UV_RUN_DEFAULT);
  assert_int_equal(p.connected, 1);
  uv_tcp_nodelay(a, 1);
  uv_tcp_nodelay(b, 1);
}

/* A pipe: rd reads what wr writes. */
static inline void pipe_pair(uv_pipe_t* rd, uv_pipe_t* wr) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(uv_pipe_init(LOOP, rd, 0), 0);
  assert_int_equal(uv_pipe_init(LOOP, wr, 0), 0);
  assert_int_equal(uv_pipe_open(rd, fds[0]), 0);
  assert_int_equal(uv_pipe_open(wr, fds[1]), 0);
}

#endif
