/* echo_server [-j N] PORT: a TCP echo server on 127.0.0.1:PORT, one task per connection (read,
 * write, repeat), as Go's goroutine-per-connection server is written. SIGINT or SIGTERM shut it
 * down gracefully: every task's blocking call returns UV_ECANCELED, each closes its socket and
 * ends, and the server prints how many connections it served.
 *
 * -j N runs N loops on N threads, each with a listening socket of its own bound to the same port
 * with SO_REUSEPORT: the kernel spreads the connections over them, and each connection lives on
 * one loop from accept to close. The other way, one loop accepting and handing sockets to the
 * others through shared channels, costs a cross-thread hop per connection and makes the acceptor
 * a bottleneck. libuv 1.44 has no UV_TCP_REUSEPORT (1.49 has), so the socket is made here and
 * handed to libuv with uv_tcp_open().
 *
 * Memory: a connection costs its task (about one page of stack) and its uv_tcp_t; the bytes go
 * through one 64 KiB buffer shared by the whole loop. That is safe because uvchan_task_read()
 * fills the buffer only while the calling task runs, and uvchan_task_write() of up to 64 KiB has
 * taken all of it (sent, or copied into the stream's queue) before it can wait. A peer that stops
 * reading makes its task wait in the write once 64 KiB are queued, so it stops reading too: the
 * kernel's buffers fill and the peer's sends block. Everything per loop lives in server_t, so
 * several loops on several threads can each run one. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uvchan.h>

enum { BUF_SIZE = 64 * 1024 };

typedef struct {
  uv_loop_t loop;
  uvchan_ctx_t ctx;
  uv_tcp_t listener;
  uv_signal_t sigint, sigterm;
  uv_thread_t thread;
  int port;
  int reuseport;
  int err;
  unsigned long served;
  char buf[BUF_SIZE]; /* shared by the loop's connection tasks (see above) */
} server_t;

typedef struct {
  uv_tcp_t tcp;
  server_t* srv;
} conn_t;

static void connection(void* arg) {
  conn_t* c = arg;
  char* buf = c->srv->buf;
  ssize_t n;

  while ((n = uvchan_task_read((uv_stream_t*)&c->tcp, buf, BUF_SIZE)) > 0)
    if (uvchan_task_write((uv_stream_t*)&c->tcp, buf, (size_t)n) != n)
      break;
  /* UV_EOF, a reset, or UV_ECANCELED from the shutdown: the close works in every case. */
  uvchan_task_close((uv_handle_t*)&c->tcp);
  free(c);
}

static void acceptor(void* arg) {
  server_t* srv = arg;
  uvchan_task_attr_t attr = {.stack_size = 16 * 1024, .name = "conn"};
  conn_t* c;
  int r;

  r = uvchan_task_listen((uv_stream_t*)&srv->listener, 1024);
  if (r != 0) {
    fprintf(stderr, "echo_server: listen: %s\n", uv_strerror(r));
    uvchan_ctx_shutdown(&srv->ctx, NULL);
  }
  while (r == 0) {
    if ((c = malloc(sizeof(*c))) == NULL)
      break;
    c->srv = srv;
    uv_tcp_init(&srv->loop, &c->tcp);
    r = uvchan_task_accept((uv_stream_t*)&srv->listener, (uv_stream_t*)&c->tcp);
    if (r == 0)
      uv_tcp_nodelay(&c->tcp, 1); /* as Go's net does: an echo must not wait for Nagle */
    if (r == 0 && uvchan_task_spawn(&srv->ctx, connection, c, &attr) == 0) {
      srv->served++;
      continue;
    }
    uvchan_task_close((uv_handle_t*)&c->tcp);
    free(c);
    if (r == 0 || r == UV_EMFILE || r == UV_ENFILE || r == UV_ECONNABORTED)
      r = 0; /* one connection failed; keep serving */
  }
  uvchan_task_close((uv_handle_t*)&srv->listener);
}

static void on_signal(uv_signal_t* sig, int signum) {
  server_t* srv = sig->data;
  (void)signum;
  uvchan_ctx_shutdown(&srv->ctx, NULL); /* UV_EINVAL for the second signal: already going */
  uv_close((uv_handle_t*)&srv->sigint, NULL);
  uv_close((uv_handle_t*)&srv->sigterm, NULL);
}

/* A listening socket of its own for one of several loops: SO_REUSEPORT lets them all bind the
 * port, and the kernel balances the connections between them. */
static int bind_reuseport(uv_tcp_t* listener, const struct sockaddr_in* addr) {
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return uv_translate_sys_error(errno);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, (const struct sockaddr*)addr, sizeof(*addr)) != 0) {
    int err = uv_translate_sys_error(errno);
    close(fd);
    return err;
  }
  return uv_tcp_open(listener, fd);
}

/* Sets up one server on its own loop; run it with uv_run(&srv->loop, UV_RUN_DEFAULT). */
static int server_init(server_t* srv) {
  struct sockaddr_in addr;
  int r;

  if ((r = uv_loop_init(&srv->loop)) != 0 || (r = uvchan_ctx_init(&srv->loop, &srv->ctx)) != 0)
    return r;
  uv_tcp_init(&srv->loop, &srv->listener);
  uv_ip4_addr("127.0.0.1", srv->port, &addr);
  r = srv->reuseport ? bind_reuseport(&srv->listener, &addr)
                     : uv_tcp_bind(&srv->listener, (const struct sockaddr*)&addr, 0);
  if (r != 0)
    return r;
  uv_signal_init(&srv->loop, &srv->sigint);
  uv_signal_init(&srv->loop, &srv->sigterm);
  srv->sigint.data = srv->sigterm.data = srv;
  uv_signal_start(&srv->sigint, on_signal, SIGINT);
  uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
  /* The signal handles must not keep the loop alive once everything else has ended. */
  uv_unref((uv_handle_t*)&srv->sigint);
  uv_unref((uv_handle_t*)&srv->sigterm);
  return uvchan_task_spawn(&srv->ctx, acceptor, srv, NULL);
}

/* Runs one server to its end: its loop, then what the shutdown left to close. */
static void server_run(server_t* srv) {
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  if (!uv_is_closing((uv_handle_t*)&srv->sigint)) { /* ended without a signal (listen failed) */
    on_signal(&srv->sigint, 0);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
  }
  srv->err = uv_loop_close(&srv->loop);
}

static void server_thread(void* arg) {
  server_t* srv = arg;
  if ((srv->err = server_init(srv)) != 0) {
    fprintf(stderr, "echo_server: 127.0.0.1:%d: %s\n", srv->port, uv_strerror(srv->err));
    uv_loop_close(&srv->loop);
    return;
  }
  server_run(srv);
}

int main(int argc, char** argv) {
  server_t* srvs;
  unsigned long served = 0;
  int port, n = 1, i, r = 0;

  if (argc == 4 && strcmp(argv[1], "-j") == 0) {
    n = atoi(argv[2]);
    argv += 2;
    argc -= 2;
  }
  if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535 || n < 1 || n > 256) {
    fprintf(stderr, "usage: %s [-j LOOPS] PORT\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* a write to a closed peer returns UV_EPIPE instead */
  srvs = calloc((size_t)n, sizeof(*srvs));
  if (srvs == NULL)
    return 1;
  for (i = 0; i < n; i++) {
    srvs[i].port = port;
    srvs[i].reuseport = n > 1;
  }
  if (n == 1) {
    if ((r = server_init(&srvs[0])) != 0) {
      fprintf(stderr, "echo_server: 127.0.0.1:%d: %s\n", port, uv_strerror(r));
      return 1;
    }
    printf("echo_server: listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    server_run(&srvs[0]);
  } else {
    printf("echo_server: listening on 127.0.0.1:%d with %d loops\n", port, n);
    fflush(stdout);
    for (i = 0; i < n; i++)
      if (uv_thread_create(&srvs[i].thread, server_thread, &srvs[i]) != 0)
        return 1;
    for (i = 0; i < n; i++)
      uv_thread_join(&srvs[i].thread);
  }
  for (i = 0; i < n; i++) {
    served += srvs[i].served;
    r |= srvs[i].err;
  }
  printf("echo_server: served %lu connection%s\n", served, served == 1 ? "" : "s");
  free(srvs);
  return r == 0 ? 0 : 1;
}
