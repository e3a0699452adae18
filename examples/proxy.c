/* proxy LISTEN_PORT HOST PORT: a TCP forwarder. Each connection accepted on 127.0.0.1:LISTEN_PORT
 * gets a connection to HOST:PORT and two tasks, one copying each way:
 *
 *     for { n = read(from); write(to, n) }     then, at EOF: shutdown(to)
 *
 * Half-close: when one side finishes sending (EOF), the copy into the other side shuts that
 * side's write half down, and the other direction goes on until it ends too. Backpressure: a copy
 * whose destination does not read waits in its write, so it stops reading its source, whose
 * kernel buffers fill, and that peer's sends block; memory stays bounded per connection. An
 * error (a reset) on either side cancels the other copy, and both sockets close.
 * SIGINT/SIGTERM shut it down gracefully. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uvchan.h>

typedef struct {
  uv_tcp_t client, upstream;
  uvchan_task_ref_t tasks[2]; /* the two copies */
  int live;                   /* copies still running: the last one closes both sockets */
} pair_t;

typedef struct {
  pair_t* pair;
  uv_stream_t *from, *to;
  int me; /* index of this copy's task in pair->tasks */
} copy_t;

static uv_loop_t loop;
static uvchan_ctx_t ctx;
static uv_tcp_t listener;
static uv_signal_t sigint, sigterm;
static struct sockaddr_storage target;
static const char *host, *service;
static unsigned long served;

static void copy(copy_t* c) {
  pair_t* p = c->pair;
  char buf[16 * 1024];
  ssize_t n;

  while ((n = uvchan_task_read(c->from, buf, sizeof(buf))) > 0)
    if (uvchan_task_write(c->to, buf, (size_t)n) != n) {
      n = UV_EPIPE;
      break;
    }
  if (n != UV_EOF || uvchan_task_shutdown(c->to) != 0)
    uvchan_task_cancel(&p->tasks[1 - c->me]); /* an error (a reset), or a cancel: end both */
  /* At EOF the half-close is passed on and the other direction goes on. */
  if (--p->live == 0) {
    uvchan_task_close((uv_handle_t*)&p->upstream);
    uvchan_task_close((uv_handle_t*)&p->client);
    free(p);
  }
}

static void copy_up(void* arg) { /* client -> upstream, its own task */
  pair_t* p = arg;
  copy_t c = {p, (uv_stream_t*)&p->client, (uv_stream_t*)&p->upstream, 0};
  copy(&c);
}

static void pair_task(void* arg) { /* connects, then copies upstream -> client */
  pair_t* p = arg;
  uvchan_task_attr_t attr = {.name = "copy"};
  copy_t down = {p, (uv_stream_t*)&p->upstream, (uv_stream_t*)&p->client, 1};
  int r;

  uv_tcp_init(&loop, &p->upstream);
  r = uvchan_task_connect_timeout(&p->upstream, (const struct sockaddr*)&target, 5000);
  if (r != 0) {
    fprintf(stderr, "proxy: connect %s:%s: %s\n", host, service, uv_strerror(r));
  } else {
    uv_tcp_nodelay(&p->client, 1); /* as Go's net does: no reply waits for Nagle */
    uv_tcp_nodelay(&p->upstream, 1);
    if (uvchan_task_spawn_ref(&ctx, &p->tasks[0], copy_up, p, &attr) == 0) {
      uvchan_task_ref_self(&p->tasks[1]);
      p->live = 2;
      copy(&down);
      return;
    }
  }
  uvchan_task_close((uv_handle_t*)&p->upstream);
  uvchan_task_close((uv_handle_t*)&p->client);
  free(p);
}

static void acceptor(void* arg) {
  struct addrinfo hints, *res;
  pair_t* p;
  int r;
  (void)arg;

  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  r = uvchan_task_getaddrinfo_timeout(host, service, &hints, &res, 5000);
  if (r != 0) {
    fprintf(stderr, "proxy: %s:%s: %s\n", host, service, uv_strerror(r));
    goto out;
  }
  memcpy(&target, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
  if ((r = uvchan_task_listen((uv_stream_t*)&listener, 128)) != 0) {
    fprintf(stderr, "proxy: listen: %s\n", uv_strerror(r));
    goto out;
  }
  for (;;) {
    if ((p = calloc(1, sizeof(*p))) == NULL)
      break;
    uv_tcp_init(&loop, &p->client);
    r = uvchan_task_accept((uv_stream_t*)&listener, (uv_stream_t*)&p->client);
    if (r == 0 && uvchan_task_spawn(&ctx, pair_task, p, NULL) == 0) {
      served++;
      continue;
    }
    uvchan_task_close((uv_handle_t*)&p->client);
    free(p);
    if (r == UV_ECANCELED)
      break;
  }
out:
  uvchan_task_close((uv_handle_t*)&listener);
  if (r != UV_ECANCELED)
    uvchan_ctx_shutdown(&ctx, NULL);
}

static void on_signal(uv_signal_t* sig, int signum) {
  (void)sig;
  (void)signum;
  uvchan_ctx_shutdown(&ctx, NULL);
  uv_close((uv_handle_t*)&sigint, NULL);
  uv_close((uv_handle_t*)&sigterm, NULL);
}

int main(int argc, char** argv) {
  struct sockaddr_in addr;
  int port, r;

  if (argc != 4 || (port = atoi(argv[1])) <= 0 || port > 65535) {
    fprintf(stderr, "usage: %s LISTEN_PORT HOST PORT\n", argv[0]);
    return 2;
  }
  host = argv[2];
  service = argv[3];
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  uvchan_ctx_init(&loop, &ctx);
  uv_tcp_init(&loop, &listener);
  uv_ip4_addr("127.0.0.1", port, &addr);
  if ((r = uv_tcp_bind(&listener, (const struct sockaddr*)&addr, 0)) != 0) {
    fprintf(stderr, "proxy: 127.0.0.1:%d: %s\n", port, uv_strerror(r));
    return 1;
  }
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t*)&sigint);
  uv_unref((uv_handle_t*)&sigterm);
  uvchan_task_spawn(&ctx, acceptor, NULL, NULL);
  printf("proxy: 127.0.0.1:%d -> %s:%s\n", port, host, service);
  fflush(stdout);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!uv_is_closing((uv_handle_t*)&sigint)) {
    on_signal(&sigint, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  printf("proxy: served %lu connection%s\n", served, served == 1 ? "" : "s");
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
