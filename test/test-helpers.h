/* Shared fixture for the cmocka suites: every test gets its own loop and context, and teardown
 * asserts that the context closes and the loop closes cleanly (uv_loop_close() == 0). */
#ifndef UVCHAN_TEST_HELPERS_H
#define UVCHAN_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uvchan.h"

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
} fixture_t;

static inline int fx_setup(void** state) {
  fixture_t* f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uvchan_ctx_init(&f->loop, &f->ctx), 0);
  uvchan_ctx_seed(&f->ctx, 12345);
  *state = f;
  return 0;
}

static inline int fx_teardown(void** state) {
  fixture_t* f = *state;
  assert_int_equal(uvchan_ctx_close(&f->ctx, NULL), 0);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  return 0;
}

#ifndef TEST_OWN_COUNTERS
/* A callback counter: requests point their data at one; the callbacks record each call. */
typedef struct {
  int calls;
  int status;
} counter_t;

static inline void send_cb(uvchan_send_t* req, int status) {
  counter_t* c = req->data;
  c->calls++;
  c->status = status;
}

static inline void recv_cb(uvchan_recv_t* req, int status) {
  counter_t* c = req->data;
  c->calls++;
  c->status = status;
}
#endif

/* Callbacks for requests whose outcome the test reads from the request itself. */
static inline void nop_send(uvchan_send_t* req, int status) {
  (void)req;
  (void)status;
}

static inline void nop_recv(uvchan_recv_t* req, int status) {
  (void)req;
  (void)status;
}

#define FX(state) ((fixture_t*)*(state))
#define UVCHAN__TEST_CONTAINER(ptr, type, field) ((type*)((char*)(ptr) - offsetof(type, field)))
#define RUN(f) uv_run(&(f)->loop, UV_RUN_DEFAULT)
#define TEST(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

#endif
