/* Volume: a million values through one channel, 100k waiters on one channel, nothing lost. */
#include "test-helpers.h"

typedef struct {
  uvchan_t* ch;
  uvchan_send_t s;
  uvchan_recv_t r;
  long next_send, limit;
  long next_expect, received;
  long sum;
  long sv, rv;
} flow_t;

static void flow_recv_cb(uvchan_recv_t* req, int status);

static void flow_send_cb(uvchan_send_t* req, int status) {
  flow_t* fl = req->data;
  assert_int_equal(status, 0);
  if (++fl->next_send == fl->limit) {
    uvchan_close(fl->ch);
    return;
  }
  fl->sv = fl->next_send;
  assert_int_equal(uvchan_send(&fl->s, fl->ch, &fl->sv, flow_send_cb), 0);
}

static void flow_recv_cb(uvchan_recv_t* req, int status) {
  flow_t* fl = req->data;
  if (status == UV_EOF)
    return;
  assert_int_equal(status, 0);
  if (fl->rv != fl->next_expect)
    fail_msg("got %ld, expected %ld", fl->rv, fl->next_expect);
  fl->next_expect++;
  fl->received++;
  fl->sum += fl->rv;
  assert_int_equal(uvchan_recv(&fl->r, fl->ch, &fl->rv, flow_recv_cb), 0);
}

static void run_flow(fixture_t* f, size_t cap, long n) {
  uvchan_t ch;
  flow_t fl;
  memset(&fl, 0, sizeof(fl));
  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(long), cap), 0);
  fl.ch = &ch;
  fl.limit = n;
  fl.s.data = fl.r.data = &fl;
  fl.sv = 0;
  assert_int_equal(uvchan_recv(&fl.r, &ch, &fl.rv, flow_recv_cb), 0);
  assert_int_equal(uvchan_send(&fl.s, &ch, &fl.sv, flow_send_cb), 0);
  RUN(f);
  assert_int_equal(fl.received, n);
  assert_int_equal(fl.sum, n * (n - 1) / 2);
  assert_int_equal(uvchan_destroy(&ch), 0);
}

static void test_million_values_buffered(void** state) {
  run_flow(FX(state), 64, 1000000);
}

static void test_million_values_unbuffered(void** state) {
  run_flow(FX(state), 0, 1000000);
}

static long got;
static void count_cb(uvchan_recv_t* req, int status) {
  long* out = req->data;
  if (status == 0) {
    got++;
    assert_true(*out >= 0);
  }
}

static void test_100k_waiting_requests_one_channel(void** state) {
  fixture_t* f = FX(state);
  enum { N = 100000 };
  uvchan_t ch;
  uvchan_recv_t* r = malloc(N * sizeof(*r));
  long* out = malloc(N * sizeof(*out));
  long i;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(long), 0), 0);
  for (i = 0; i < N; i++) {
    r[i].data = &out[i];
    out[i] = -1;
    assert_int_equal(uvchan_recv(&r[i], &ch, &out[i], count_cb), 0);
  }
  assert_int_equal(uvchan_waiting_receivers(&ch), N);
  /* Serve half, in arrival order; close fails the rest with UV_EOF. */
  for (i = 0; i < N / 2; i++)
    assert_int_equal(uvchan_try_send(&ch, &i), 0);
  for (i = 0; i < N / 2; i++)
    assert_int_equal(out[i], i);
  assert_int_equal(uvchan_close(&ch), 0);
  got = 0;
  RUN(f);
  assert_int_equal(got, N / 2);
  for (i = 0; i < N; i++)
    assert_int_equal(r[i].status, i < N / 2 ? 0 : UV_EOF);
  assert_int_equal(uvchan_destroy(&ch), 0);
  free(r);
  free(out);
}

static void test_100k_deadlines_share_one_timer(void** state) {
  fixture_t* f = FX(state);
  enum { N = 100000 };
  uvchan_t ch;
  uvchan_recv_t* r = malloc(N * sizeof(*r));
  long i;

  assert_int_equal(uvchan_init(&f->ctx, &ch, sizeof(long), 0), 0);
  for (i = 0; i < N; i++) {
    r[i].data = NULL;
    assert_int_equal(uvchan_recv_timeout(&r[i], &ch, NULL, (uint64_t)(i % 7), (uvchan_recv_cb)count_cb), 0);
  }
  got = 0;
  RUN(f);
  for (i = 0; i < N; i++)
    assert_int_equal(r[i].status, UV_ETIMEDOUT);
  assert_int_equal(got, 0);
  assert_int_equal(uvchan_destroy(&ch), 0);
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_million_values_buffered),
      TEST(test_million_values_unbuffered),
      TEST(test_100k_waiting_requests_one_channel),
      TEST(test_100k_deadlines_share_one_timer),
  };
  return cmocka_run_group_tests_name("volume", tests, NULL, NULL);
}
