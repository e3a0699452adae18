/* The plain libuv echo server, written the way the libuv guide writes one, as the peer that
 * uvchan's echo_server is measured against (bench/echo.sh): every read gets a fresh malloc'd
 * buffer of the suggested size, the read callback hands that buffer to uv_write, the write
 * callback frees it. Nothing bounds what is queued: a client that sends without reading grows
 * this server by what it sent, which is the behaviour uvchan's server must not have.
 * The only additions to the guide's shape: it listens on loopback only, and SIGINT/SIGTERM close
 * every handle so the process ends with nothing leaked.
 *   usage: libuv-echo PORT */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#define BACKLOG 128

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} write_req_t;

static uv_loop_t* loop;
static uv_tcp_t server;
static uv_signal_t sigint, sigterm;

static void on_alloc(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf) {
  (void)handle;
  buf->base = malloc(suggested_size);
  buf->len = buf->base != NULL ? suggested_size : 0;
}

static void on_client_closed(uv_handle_t* handle) {
  free(handle);
}

static void on_written(uv_write_t* req, int status) {
  write_req_t* wr = (write_req_t*)req;
  if (status != 0)
    fprintf(stderr, "libuv-echo: write error: %s\n", uv_strerror(status));
  free(wr->buf.base);
  free(wr);
}

static void on_read(uv_stream_t* client, ssize_t nread, const uv_buf_t* buf) {
  if (nread > 0) {
    write_req_t* wr = malloc(sizeof(*wr));
    if (wr == NULL) {
      fprintf(stderr, "libuv-echo: out of memory\n");
      exit(1);
    }
    wr->buf = uv_buf_init(buf->base, (unsigned int)nread);
    uv_write(&wr->req, client, &wr->buf, 1, on_written);
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF)
      fprintf(stderr, "libuv-echo: read error: %s\n", uv_err_name((int)nread));
    uv_close((uv_handle_t*)client, on_client_closed);
  }
  free(buf->base);
}

static void on_connection(uv_stream_t* listener, int status) {
  uv_tcp_t* client;
  if (status < 0) {
    fprintf(stderr, "libuv-echo: connection error: %s\n", uv_strerror(status));
    return;
  }
  client = malloc(sizeof(*client));
  if (client == NULL) {
    fprintf(stderr, "libuv-echo: out of memory\n");
    exit(1);
  }
  uv_tcp_init(loop, client);
  if (uv_accept(listener, (uv_stream_t*)client) == 0)
    uv_read_start((uv_stream_t*)client, on_alloc, on_read);
  else
    uv_close((uv_handle_t*)client, on_client_closed);
}

/* Clients are the only malloc'd handles; the listener and the signal handles are static. */
static void close_one(uv_handle_t* handle, void* arg) {
  (void)arg;
  if (uv_is_closing(handle))
    return;
  if (handle == (uv_handle_t*)&server || handle == (uv_handle_t*)&sigint ||
      handle == (uv_handle_t*)&sigterm)
    uv_close(handle, NULL);
  else
    uv_close(handle, on_client_closed);
}

static void on_signal(uv_signal_t* handle, int signum) {
  (void)handle;
  (void)signum;
  uv_walk(loop, close_one, NULL);
}

int main(int argc, char** argv) {
  struct sockaddr_in addr;
  int port, r;
  if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
    fprintf(stderr, "usage: libuv-echo PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uv_tcp_init(loop, &server);
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_bind(&server, (const struct sockaddr*)&addr, 0);
  r = uv_listen((uv_stream_t*)&server, BACKLOG, on_connection);
  if (r != 0) {
    fprintf(stderr, "libuv-echo: listen on 127.0.0.1:%d: %s\n", port, uv_strerror(r));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_run(loop, UV_RUN_DEFAULT);
  r = uv_loop_close(loop);
  if (r != 0)
    fprintf(stderr, "libuv-echo: loop close: %s\n", uv_strerror(r));
  return r != 0;
}
