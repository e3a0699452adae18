/* fetch HOST PORT PATH: an HTTP/1.0 GET from one task. It resolves HOST with
 * uvchan_task_getaddrinfo_timeout(), connects with a deadline, sends the request, reads the answer
 * with a deadline on every read, and prints the body to stdout (the status line goes to stderr).
 *
 *     python3 -m http.server 8000 --bind 127.0.0.1 &
 *     build/examples/fetch 127.0.0.1 8000 /README.md
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uvchan.h>

enum { RESOLVE_MS = 5000, CONNECT_MS = 5000, READ_MS = 10000 };

static uv_loop_t loop;
static uvchan_ctx_t ctx;
static const char *host, *port, *path;
static int status = 1;

/* Writes out the body: everything after the first blank line of the answer. */
typedef struct {
  char head[8192];
  size_t len;
  int in_body;
} answer_t;

/* Feeds `n` bytes of the answer: header bytes are gathered until the blank line, whatever
 * follows it (in the header buffer, then in `buf`) is body. A read may carry the end of the
 * header and much of the body at once, so only what fits is gathered before looking. */
static int take(answer_t* a, const char* buf, size_t n) {
  char* end;
  size_t k, used;
  if (a->in_body)
    return fwrite(buf, 1, n, stdout) == n ? 0 : -1;
  k = sizeof(a->head) - 1 - a->len;
  if (k > n)
    k = n;
  memcpy(a->head + a->len, buf, k);
  a->len += k;
  a->head[a->len] = '\0';
  if ((end = strstr(a->head, "\r\n\r\n")) == NULL) {
    if (a->len < sizeof(a->head) - 1)
      return 0;
    fprintf(stderr, "fetch: response header larger than %zu bytes\n", sizeof(a->head) - 1);
    return -1;
  }
  fprintf(stderr, "%.*s\n", (int)strcspn(a->head, "\r\n"), a->head); /* the status line */
  a->in_body = 1;
  end += 4;
  used = (size_t)(end - a->head);
  if (take(a, end, a->len - used) != 0)
    return -1;
  return take(a, buf + k, n - k);
}

static void get(void* arg) {
  struct addrinfo hints, *res = NULL, *ai;
  static answer_t answer;
  uv_tcp_t tcp;
  char req[2048], buf[16 * 1024];
  ssize_t n;
  int r, len;
  (void)arg;

  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  r = uvchan_task_getaddrinfo_timeout(host, port, &hints, &res, RESOLVE_MS);
  if (r != 0) {
    fprintf(stderr, "fetch: resolve %s: %s\n", host, uv_strerror(r));
    return;
  }
  uv_tcp_init(&loop, &tcp);
  r = UV_EAI_NONAME;
  for (ai = res; ai != NULL; ai = ai->ai_next) { /* the first address that answers */
    r = uvchan_task_connect_timeout(&tcp, ai->ai_addr, CONNECT_MS);
    if (r == 0)
      break;
    uvchan_task_close((uv_handle_t*)&tcp); /* a failed or timed-out attempt: a fresh handle */
    uv_tcp_init(&loop, &tcp);
  }
  uv_freeaddrinfo(res);
  if (r != 0) {
    fprintf(stderr, "fetch: connect %s:%s: %s\n", host, port, uv_strerror(r));
    uvchan_task_close((uv_handle_t*)&tcp);
    return;
  }
  len = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: uvchan-fetch\r\n\r\n",
                 path, host);
  if (len < 0 || (size_t)len >= sizeof(req)) {
    fprintf(stderr, "fetch: path too long\n");
  } else if ((n = uvchan_task_write((uv_stream_t*)&tcp, req, (size_t)len)) != len) {
    fprintf(stderr, "fetch: send: %s\n", uv_strerror((int)n));
  } else {
    while ((n = uvchan_task_read_timeout((uv_stream_t*)&tcp, buf, sizeof(buf), READ_MS)) > 0)
      if (take(&answer, buf, (size_t)n) != 0)
        break;
    if (n == UV_EOF && answer.in_body)
      status = 0; /* HTTP/1.0: the server closes after the body */
    else if (n < 0)
      fprintf(stderr, "fetch: read: %s\n", n == UV_EOF ? "no complete header" : uv_strerror((int)n));
  }
  uvchan_task_close((uv_handle_t*)&tcp);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s HOST PORT PATH\n", argv[0]);
    return 2;
  }
  host = argv[1];
  port = argv[2];
  path = argv[3];
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  uvchan_ctx_init(&loop, &ctx);
  uvchan_task_spawn(&ctx, get, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  fflush(stdout);
  return uv_loop_close(&loop) == 0 ? status : 1;
}
