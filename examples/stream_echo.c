/* stream_echo PORT: a TCP echo server on 127.0.0.1:PORT through the stream adapters, callbacks
 * only (no task): each connection is a reader and a writer on one channel,
 *
 *   socket --reader--> chan (2 buffers) --writer--> the same socket
 *
 * so the bytes a client sends come back as the channel carries them. Backpressure: a client
 * that stops reading stops the writer once 64 KiB are queued; the channel fills; the reader
 * stops reading; the kernel's buffers fill; the client's sends block. Memory per connection:
 * its structs, and only while bytes are in flight, up to 3 pool blocks and the writer's queue.
 * A client's EOF closes the channel: the writer writes what is left and shuts the socket down.
 * SIGINT or SIGTERM close every connection and the server. bench/echo.sh measures it beside a
 * plain libuv echo server (docs/performance.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

typedef struct conn_s {
  uv_tcp_t tcp;
  uvchan_t chan;
  uvchan_reader_t rd;
  uvchan_writer_t wr;
  struct conn_s* next;
  struct conn_s* prev;
  int ended, closed, closing;
} conn_t;

static uv_loop_t* loop;
static uvchan_ctx_t ctx;
static uvchan_pool_t pool;
static uv_tcp_t listener;
static uv_signal_t sigint, sigterm;
static conn_t conns = {.next = &conns, .prev = &conns}; /* the open connections */
static int stopping;
static unsigned long served;

static void conn_freed(uv_handle_t* h) {
  free(h); /* the tcp handle is the connection's first field */
  if (stopping && conns.next == &conns) {
    uvchan_pool_destroy(&pool);
    uvchan_ctx_close(&ctx, NULL);
  }
}

static void conn_closed(conn_t* c) {
  if (++c->closed < 2)
    return;
  uvchan_destroy(&c->chan); /* releases what it still holds */
  c->next->prev = c->prev;
  c->prev->next = c->next;
  uv_close((uv_handle_t*)&c->tcp, conn_freed);
}

static void rd_closed(uvchan_reader_t* r) {
  conn_closed(r->data);
}

static void wr_closed(uvchan_writer_t* w) {
  conn_closed(w->data);
}

static void conn_close(conn_t* c) {
  if (c->closing)
    return;
  c->closing = 1;
  uvchan_reader_close(&c->rd, rd_closed);
  uvchan_writer_close(&c->wr, wr_closed);
}

/* Both ended: the client's EOF went through and the socket was shut down, or an error. */
static void conn_ended(conn_t* c) {
  if (++c->ended == 2)
    conn_close(c);
}

static void rd_end(uvchan_reader_t* r, int status) {
  conn_t* c = r->data;
  if (status != 0)
    conn_close(c); /* a read error: stop the writer too */
  conn_ended(c);
}

static void wr_end(uvchan_writer_t* w, int status) {
  conn_t* c = w->data;
  if (status != 0)
    conn_close(c);
  conn_ended(c);
}

static void on_connection(uv_stream_t* server, int status) {
  conn_t* c;
  if (status < 0 || stopping || (c = calloc(1, sizeof(*c))) == NULL)
    return;
  uv_tcp_init(loop, &c->tcp);
  c->next = &conns;
  c->prev = conns.prev;
  conns.prev->next = c;
  conns.prev = c;
  if (uv_accept(server, (uv_stream_t*)&c->tcp) != 0 ||
      uvchan_buf_chan_init(&ctx, &c->chan, 2) != 0 ||
      uvchan_reader_init(&ctx, &c->rd, (uv_stream_t*)&c->tcp, &c->chan, &pool, NULL) != 0 ||
      uvchan_writer_init(&ctx, &c->wr, &c->chan, (uv_stream_t*)&c->tcp, NULL) != 0) {
    /* Undo what was made. A reader that was made must have closed (its callback) before its
     * channel and socket go; there is no writer to wait for. */
    c->closed = 1;
    c->closing = 1;
    c->rd.data = c;
    if (uvchan_reader_close(&c->rd, rd_closed) != 0)
      conn_closed(c); /* no reader was made */
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->rd.data = c->wr.data = c;
  uvchan_reader_start(&c->rd, rd_end);
  uvchan_writer_start(&c->wr, wr_end);
  served++;
}

static void on_signal(uv_signal_t* s, int signum) {
  (void)s;
  (void)signum;
  stopping = 1;
  uv_close((uv_handle_t*)&sigint, NULL);
  uv_close((uv_handle_t*)&sigterm, NULL);
  uv_close((uv_handle_t*)&listener, NULL);
  for (conn_t* c = conns.next; c != &conns; c = c->next) /* each leaves the list when closed */
    conn_close(c);
  if (conns.next == &conns) {
    uvchan_pool_destroy(&pool);
    uvchan_ctx_close(&ctx, NULL);
  }
}

int main(int argc, char** argv) {
  struct sockaddr_in addr;
  int port, r;
  if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
    fprintf(stderr, "usage: stream_echo PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  if ((r = uvchan_ctx_init(loop, &ctx)) != 0 ||
      (r = uvchan_pool_init(&pool, UVCHAN_READ_SIZE, 1024)) != 0)
    goto fail;
  uv_tcp_init(loop, &listener);
  uv_ip4_addr("127.0.0.1", port, &addr);
  if ((r = uv_tcp_bind(&listener, (const struct sockaddr*)&addr, 0)) != 0 ||
      (r = uv_listen((uv_stream_t*)&listener, 1024, on_connection)) != 0)
    goto fail;
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  fprintf(stderr, "stream_echo: served %lu connections\n", served);
  return uv_loop_close(loop) != 0;

fail:
  fprintf(stderr, "stream_echo: 127.0.0.1:%d: %s\n", port, uv_strerror(r));
  return 1;
}
