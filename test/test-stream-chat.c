/* The chat server of examples/chat_server.c (included: the same code), with clients in tasks over
 * loopback: fan-out to every other client in order, a client that stops reading under both
 * policies (disconnected; dropped lines and back once it reads) while a talker and a listener go
 * on losing nothing, an overlong line, and a stop with buffers in flight, nothing leaked. */
#define CHAT_NO_MAIN
#include "../examples/chat_server.c"

#include <stdio.h>

#include "stream-helpers.h"

static chat_t chat;
static int stopped;
static uvchan_wg_t clients_done; /* the client tasks of a test */
static uvchan_task_attr_t client_attr;

static void on_stopped(chat_t* c) {
  (void)c;
  stopped = 1;
}

/* Stops the chat once every client task has ended: the listener keeps the loop alive until. */
static void stopper(void* arg) {
  (void)arg;
  assert_int_equal(uvchan_task_wg_wait(&clients_done), 0);
  chat_stop(&chat, on_stopped);
}

static void start_chat(void** state, int policy) {
  struct sockaddr_in addr;
  chat_opts_t o = {policy, 50, 8, 4096};
  setup_globals(state);
  stopped = 0;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(chat_start(&chat, CTX, (const struct sockaddr*)&addr, &o), 0);
  assert_int_equal(uvchan_wg_init(CTX, &clients_done), 0);
  memset(&client_attr, 0, sizeof(client_attr));
  client_attr.wg = &clients_done;
}

/* Runs the test's client tasks (spawned with client_attr) to their end, then the chat's stop. */
static void run_chat(void** state) {
  assert_int_equal(uvchan_task_spawn(CTX, stopper, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0);
  assert_int_equal(stopped, 1);
  assert_int_equal(chat.live, 0); /* every client freed */
}

static int connect_chat(uv_tcp_t* tcp) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", chat_port(&chat), &addr);
  assert_int_equal(uv_tcp_init(LOOP, tcp), 0);
  return uvchan_task_connect(tcp, (const struct sockaddr*)&addr);
}

/* Waits until the room has `n` clients (a connection is in the room once the server accepted
 * it, which the client's connect does not tell). */
static void wait_room(size_t n) {
  while (chat.nclients != n)
    assert_int_equal(uvchan_task_sleep(1), 0);
}

/* Reads whole lines into `line` (NUL-terminated, without "\n"): 1, or 0 at EOF / an error. */
typedef struct {
  uv_tcp_t* tcp;
  char buf[8192];
  size_t len, off;
} lines_t;

static int read_line(lines_t* r, char* line, size_t cap) {
  char* nl;
  size_t n;
  ssize_t k;
  for (;;) {
    nl = memchr(r->buf + r->off, '\n', r->len - r->off);
    if (nl != NULL) {
      n = (size_t)(nl - (r->buf + r->off));
      assert_true(n < cap);
      memcpy(line, r->buf + r->off, n);
      line[n] = '\0';
      r->off += n + 1;
      return 1;
    }
    memmove(r->buf, r->buf + r->off, r->len - r->off);
    r->len -= r->off;
    r->off = 0;
    k = uvchan_task_read((uv_stream_t*)r->tcp, r->buf + r->len, sizeof(r->buf) - r->len);
    if (k <= 0)
      return 0;
    r->len += (size_t)k;
  }
}

/* ---- fan-out and order ---- */

enum { FAN = 4, FAN_LINES = 300 };

static struct {
  uv_tcp_t tcp[FAN];
  uvchan_wg_t all_read;
  int ok[FAN];
} fan;

static void fan_reader(void* arg) {
  int me = (int)(intptr_t)arg, from, k, got = 0;
  int next[FAN] = {0};
  char line[256];
  lines_t r;
  unsigned long long id;
  memset(&r, 0, sizeof(r));
  r.tcp = &fan.tcp[me];
  while (got < (FAN - 1) * FAN_LINES && read_line(&r, line, sizeof(line))) {
    assert_int_equal(sscanf(line, "[%llu] client %d line %d", &id, &from, &k), 3);
    assert_true(from != me);              /* never its own lines */
    assert_int_equal(k, next[from]);      /* each sender's lines in order, none lost */
    assert_int_equal((int)id, from + 1);  /* clients connected in order: ids 1..FAN */
    next[from]++;
    got++;
  }
  assert_int_equal(got, (FAN - 1) * FAN_LINES);
  fan.ok[me] = 1;
  uvchan_wg_done(&fan.all_read);
}

static void fan_client(void* arg) {
  int me = (int)(intptr_t)arg, k;
  char text[FAN_LINES * 40];
  size_t len = 0, off, n;
  unsigned seed = (unsigned)me + 1;
  uvchan_task_attr_t attr = client_attr;
  if (me > 0)
    wait_room((size_t)me); /* connect in order: client i gets id i + 1 */
  assert_int_equal(connect_chat(&fan.tcp[me]), 0);
  wait_room(FAN);
  assert_int_equal(uvchan_task_spawn(CTX, fan_reader, arg, &attr), 0);
  for (k = 0; k < FAN_LINES; k++)
    len += (size_t)snprintf(text + len, sizeof(text) - len, "client %d line %d\n", me, k);
  for (off = 0; off < len; off += n) { /* lines cut anywhere */
    n = 1 + (size_t)rand_r(&seed) % 200;
    if (n > len - off)
      n = len - off;
    assert_int_equal(uvchan_task_write((uv_stream_t*)&fan.tcp[me], text + off, n), (ssize_t)n);
  }
  assert_int_equal(uvchan_task_wg_wait(&fan.all_read), 0); /* stay until everyone has all */
  assert_int_equal(uvchan_task_close((uv_handle_t*)&fan.tcp[me]), 0);
}

static void test_fan_out_in_order(void** state) {
  int i;
  start_chat(state, CHAT_DISCONNECT);
  memset(&fan, 0, sizeof(fan));
  assert_int_equal(uvchan_wg_init(CTX, &fan.all_read), 0);
  assert_int_equal(uvchan_wg_add(&fan.all_read, FAN), 0);
  for (i = 0; i < FAN; i++)
    assert_int_equal(uvchan_task_spawn(CTX, fan_client, (void*)(intptr_t)i, &client_attr), 0);
  run_chat(state);
  for (i = 0; i < FAN; i++)
    assert_int_equal(fan.ok[i], 1);
  assert_int_equal(chat.relayed, FAN * FAN_LINES);
  assert_int_equal(chat.kicked, 0);
  assert_int_equal(chat.dropped, 0);
}

/* ---- a client that stops reading ---- */

enum { SLOW_MAX_LINES = 200000 };

static struct {
  uv_tcp_t talker, listener, sleeper;
  uvchan_t go_sleeper; /* the talker tells the sleeper to read again (drop policy) */
  uvchan_t sleeper_got_end;
  int policy;
  int sent;          /* lines the talker sent before the end */
  int listener_got;  /* lines the listener got, all in order */
  int sleeper_got;   /* lines the sleeper got (drop policy: with gaps, in order) */
  int sleeper_eof;   /* the sleeper's connection was closed (disconnect policy) */
  int sleeper_end;   /* the sleeper got an "end" line after reading again (drop policy) */
} sl;

static void sl_listener(void* arg) {
  char line[256];
  lines_t r;
  unsigned long long id;
  int k;
  (void)arg;
  memset(&r, 0, sizeof(r));
  r.tcp = &sl.listener;
  while (read_line(&r, line, sizeof(line))) {
    if (strstr(line, "end") != NULL)
      break;
    assert_int_equal(sscanf(line, "[%llu] talk %d", &id, &k), 2);
    assert_int_equal(k, sl.listener_got); /* nothing lost for a client that reads */
    sl.listener_got++;
  }
}

static void sl_sleeper(void* arg) {
  char line[256];
  lines_t r;
  unsigned long long id;
  int k, last = -1, v, one = 1;
  (void)arg;
  assert_int_equal(uvchan_task_recv(&sl.go_sleeper, &v), 0); /* sleeps until told */
  memset(&r, 0, sizeof(r));
  r.tcp = &sl.sleeper;
  while (read_line(&r, line, sizeof(line))) {
    if (strstr(line, "end") != NULL) {
      sl.sleeper_end = 1;
      assert_int_equal(uvchan_task_send(&sl.sleeper_got_end, &one), 0);
      break;
    }
    assert_int_equal(sscanf(line, "[%llu] talk %d", &id, &k), 2);
    assert_true(k > last); /* in order, maybe with gaps */
    last = k;
    sl.sleeper_got++;
  }
  if (!sl.sleeper_end)
    sl.sleeper_eof = 1;
}

static void sl_talker(void* arg) {
  char line[128];
  int n, k, one = 1, v, size;
  (void)arg;
  assert_int_equal(connect_chat(&sl.talker), 0);
  wait_room(1);
  assert_int_equal(connect_chat(&sl.listener), 0);
  wait_room(2);
  assert_int_equal(connect_chat(&sl.sleeper), 0);
  wait_room(3);
  /* Small kernel buffers on both sides of the sleeper's connection, so that its outbox fills
   * after little traffic: the test reaches into the server's client (this file includes it). */
  size = 4096;
  assert_int_equal(uv_recv_buffer_size((uv_handle_t*)&sl.sleeper, &size), 0);
  assert_int_equal(chat.room.prev->id, 3);
  assert_int_equal(uv_send_buffer_size((uv_handle_t*)&chat.room.prev->tcp, &size), 0);
  assert_int_equal(uvchan_task_spawn(CTX, sl_listener, NULL, &client_attr), 0);
  assert_int_equal(uvchan_task_spawn(CTX, sl_sleeper, NULL, &client_attr), 0);
  /* Talk until the server has dealt with the sleeper: cut it off, or dropped lines for it. */
  for (k = 0; k < SLOW_MAX_LINES; k++) {
    if ((sl.policy == CHAT_DISCONNECT && chat.kicked > 0) ||
        (sl.policy == CHAT_DROP && chat.dropped > 100))
      break;
    n = snprintf(line, sizeof(line), "talk %d %s\n", k,
                 "................................................................");
    assert_int_equal(uvchan_task_write((uv_stream_t*)&sl.talker, line, (size_t)n), n);
  }
  sl.sent = k;
  assert_true(k < SLOW_MAX_LINES);
  assert_int_equal(uvchan_task_send(&sl.go_sleeper, &one), 0);
  if (sl.policy == CHAT_DROP) {
    /* The sleeper reads again: lines reach it again. Say "end" until it has one. */
    for (k = 0; k < 1000 && uvchan_try_recv(&sl.sleeper_got_end, &v) == UV_EAGAIN; k++) {
      assert_int_equal(uvchan_task_write((uv_stream_t*)&sl.talker, "end\n", 4), 4);
      assert_int_equal(uvchan_task_sleep(5), 0);
    }
    assert_true(k < 1000);
  } else {
    assert_int_equal(uvchan_task_write((uv_stream_t*)&sl.talker, "end\n", 4), 4);
  }
  /* until the listener has all */
  while (sl.listener_got < sl.sent)
    assert_int_equal(uvchan_task_sleep(1), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&sl.talker), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&sl.listener), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&sl.sleeper), 0);
}

static void slow_client(void** state, int policy) {
  start_chat(state, policy);
  memset(&sl, 0, sizeof(sl));
  sl.policy = policy;
  assert_int_equal(uvchan_init(CTX, &sl.go_sleeper, sizeof(int), 1), 0);
  assert_int_equal(uvchan_init(CTX, &sl.sleeper_got_end, sizeof(int), 1), 0);
  assert_int_equal(uvchan_task_spawn(CTX, sl_talker, NULL, &client_attr), 0);
  run_chat(state);
  assert_int_equal(sl.listener_got, sl.sent);
  assert_true(sl.sent > 8); /* more than an outbox */
  if (policy == CHAT_DISCONNECT) {
    assert_int_equal(chat.kicked, 1);
    assert_int_equal(chat.dropped, 0);
    assert_int_equal(sl.sleeper_eof, 1); /* it read what was in its kernel buffer, then EOF */
    assert_true(sl.sleeper_got < sl.sent);
  } else {
    assert_int_equal(chat.kicked, 0);
    assert_true(chat.dropped > 100);
    assert_int_equal(sl.sleeper_end, 1); /* back in the conversation once it read */
    assert_true(sl.sleeper_got < sl.sent); /* with a gap */
  }
  assert_int_equal(uvchan_destroy(&sl.go_sleeper), 0);
  assert_int_equal(uvchan_destroy(&sl.sleeper_got_end), 0);
}

static void test_slow_client_disconnected(void** state) {
  slow_client(state, CHAT_DISCONNECT);
}

static void test_slow_client_dropped(void** state) {
  slow_client(state, CHAT_DROP);
}

/* ---- an overlong line: the client leaves ---- */

static int long_eof;

static void long_client(void* arg) {
  static char big[5000];
  uv_tcp_t tcp, other;
  char buf[64];
  ssize_t n;
  (void)arg;
  assert_int_equal(connect_chat(&other), 0);
  assert_int_equal(connect_chat(&tcp), 0);
  wait_room(2);
  memset(big, 'x', sizeof(big)); /* no "\n" within 4096 bytes */
  assert_int_equal(uvchan_task_write((uv_stream_t*)&tcp, big, sizeof(big)), (ssize_t)sizeof(big));
  n = uvchan_task_read((uv_stream_t*)&tcp, buf, sizeof(buf));
  long_eof = n == UV_EOF || n == UV_ECONNRESET; /* the server closed the connection */
  wait_room(1);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tcp), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&other), 0);
}

/* Lines sent before an overlong one, in the same write, still reach the others: the splitter
 * sends them before it fails, and the client leaves only once its relay has handed them on. */
static int before_long_ok;

static void before_long_client(void* arg) {
  static char text[5000];
  uv_tcp_t tcp, other;
  char buf[256];
  size_t len = 0;
  ssize_t n;
  (void)arg;
  assert_int_equal(connect_chat(&other), 0);
  assert_int_equal(connect_chat(&tcp), 0);
  wait_room(2);
  memset(text, 'x', sizeof(text));
  memcpy(text, "first\nsecond\n", 13); /* then 4987 bytes without "\n" */
  assert_int_equal(uvchan_task_write((uv_stream_t*)&tcp, text, sizeof(text)), (ssize_t)sizeof(text));
  while (len < 21) { /* "[2] first\n[2] second\n"; the bound only ends a broken run */
    n = uvchan_task_read_timeout((uv_stream_t*)&other, buf + len, sizeof(buf) - len, 5000);
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  before_long_ok = len == 21 && memcmp(buf, "[2] first\n[2] second\n", 21) == 0;
  wait_room(1);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&tcp), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&other), 0);
}

static void test_lines_before_overlong_line(void** state) {
  start_chat(state, CHAT_DISCONNECT);
  before_long_ok = 0;
  assert_int_equal(uvchan_task_spawn(CTX, before_long_client, NULL, &client_attr), 0);
  run_chat(state);
  assert_int_equal(before_long_ok, 1);
  assert_int_equal(chat.relayed, 2);
}

static void test_overlong_line(void** state) {
  start_chat(state, CHAT_DISCONNECT);
  long_eof = 0;
  assert_int_equal(uvchan_task_spawn(CTX, long_client, NULL, &client_attr), 0);
  run_chat(state);
  assert_int_equal(long_eof, 1);
  assert_int_equal(chat.relayed, 0);
}

/* ---- a stop with buffers in flight ---- */

static struct {
  uv_tcp_t a, b;
} st;

static void stop_client(void* arg) {
  static char text[64 * 1024];
  size_t i;
  int k;
  (void)arg;
  for (i = 0; i < sizeof(text); i++)
    text[i] = i % 64 == 63 ? '\n' : 'y';
  assert_int_equal(connect_chat(&st.a), 0);
  assert_int_equal(connect_chat(&st.b), 0); /* never reads */
  wait_room(2);
  for (k = 0; k < 4; k++) /* megabytes: every channel fills; the writer to b stops */
    if (uvchan_task_write_timeout((uv_stream_t*)&st.a, text, sizeof(text), 100) < 0)
      break;
  while (chat.relayed < 1000) /* lines went through: b's outbox and queue are full */
    assert_int_equal(uvchan_task_sleep(1), 0);
  chat_stop(&chat, on_stopped); /* with the clients' buffers everywhere */
  assert_int_equal(uvchan_task_close((uv_handle_t*)&st.a), 0);
  assert_int_equal(uvchan_task_close((uv_handle_t*)&st.b), 0);
}

static void test_stop_with_buffers_in_flight(void** state) {
  start_chat(state, CHAT_DROP);
  assert_int_equal(uvchan_task_spawn(CTX, stop_client, NULL, NULL), 0);
  assert_int_equal(RUN(FX(state)), 0); /* the client stops the chat itself */
  assert_int_equal(stopped, 1);
  assert_int_equal(chat.live, 0);
  assert_true(chat.relayed > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(test_fan_out_in_order),
      TEST(test_slow_client_disconnected),
      TEST(test_slow_client_dropped),
      TEST(test_overlong_line),
      TEST(test_lines_before_overlong_line),
      TEST(test_stop_with_buffers_in_flight),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
