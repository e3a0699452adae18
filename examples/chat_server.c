/* chat_server: a line-based chat room on TCP (127.0.0.1:PORT), callbacks only. Every line a client sends goes, in
 * order, to every other connected client, as "[ID] line\n".
 *
 *   usage: chat_server PORT [-p disconnect|drop] [-s STALL_MS] [-o OUTBOX] [-l MAX_LINE]
 *   try:   build/examples/chat_server 7000   and, in two other terminals,   nc 127.0.0.1 7000
 *
 * Each client is four objects in a pipeline, and a relay:
 *
 *   socket --reader--> raw --lines splitter--> lines --relay--> every other client's outbox
 *   outbox --writer--> socket
 *
 * The outbox is a bounded channel (OUTBOX lines, 256 by default) of references to the messages:
 * one message buffer is shared by all the outboxes it is in (uvchan_buf_ref()), so memory is the
 * distinct messages in flight, not one copy per client.
 *
 * Slow clients. The relay puts a line into each other client's outbox with a try-send. A full
 * outbox means that client has not taken OUTBOX lines yet: the relay waits for room, up to
 * STALL_MS (200 ms) after the line arrived, and meanwhile takes no more lines from its own client
 * (whose reader stops reading when the lines channel fills: TCP pushes back on the sender). A
 * client that keeps reading frees room in time, so a fast sender is paced to the slowest reader
 * (backpressure, a flooder included) and nothing is lost. A client that frees no room for
 * STALL_MS has stopped reading, and gets the policy:
 *   - disconnect (-p disconnect, the default): it is cut off at once; its outbox and queued
 *     bytes are dropped, and every relay waiting for it goes on;
 *   - drop (-p drop): it stays connected, but lines for it are dropped without waiting while its
 *     outbox is full; once it reads again (a line fits), it gets lines again, with a gap.
 * Either way a client that stops reading delays the others by at most STALL_MS once, and holds
 * at most its outbox (references), its writer's queue (16 KiB) and its kernel buffers.
 *
 * A client that ends its input (EOF), sends a line longer than MAX_LINE (4096), or whose
 * connection fails, leaves once the lines it sent before are relayed: its pipeline is closed,
 * its socket too.
 *
 * The code between CHAT_NO_MAIN's guards is the server; test/test-stream-chat.c includes this file
 * to test it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

enum { CHAT_DISCONNECT = 0, CHAT_DROP = 1 };

typedef struct {
  int policy;          /* CHAT_DISCONNECT or CHAT_DROP */
  unsigned stall_ms;   /* how long a full outbox may hold a relay before its client is slow */
  size_t outbox;       /* lines an outbox holds */
  size_t max_line;     /* bytes of a line, without its "\n" */
} chat_opts_t;

typedef struct chat_s chat_t;
typedef struct client_s client_t;

/* A recipient a relay waits for, with the reference to the message it waits to hand it. */
typedef struct {
  client_t* to;
  uvchan_buf_t msg;
} chat_wait_t;

struct client_s {
  chat_t* chat;
  client_t* next; /* in the room (the chat's list), while not gone */
  client_t* prev;
  uint64_t id;
  size_t refs; /* the room, the relay's request, other relays' waits, the socket's close */
  int gone;
  int lagging; /* drop policy: lines for it are dropped while its outbox is full */
  uv_tcp_t tcp;
  uvchan_t raw, lines, outbox;
  uvchan_reader_t rd;
  uvchan_splitter_t sp;
  uvchan_writer_t wr;
  uvchan_pipeline_t p;
  /* the relay */
  uvchan_recv_t rreq;
  uvchan_send_t sreq;
  uvchan_buf_t line;
  chat_wait_t* waits;
  size_t nwaits, iwait, capwaits;
  uint64_t deadline;
  int relay_busy; /* rreq or sreq is pending */
};

struct chat_s {
  uvchan_ctx_t* ctx;
  uv_loop_t* loop;
  uv_tcp_t listener;
  uvchan_pool_t pool;
  chat_opts_t opts;
  client_t room; /* the list's sentinel */
  size_t nclients;
  size_t live; /* clients not yet freed */
  uint64_t next_id;
  int stopping;
  int listener_open;
  void (*stopped_cb)(chat_t* chat);
  /* counts, for the tests and the log */
  uint64_t relayed; /* lines taken from clients */
  uint64_t kicked;  /* clients disconnected for not reading */
  uint64_t dropped; /* lines dropped for lagging clients */
};

static void chat_maybe_stopped(chat_t* chat);

static void client_unref(client_t* c) {
  chat_t* chat = c->chat;
  if (--c->refs != 0)
    return;
  free(c->waits);
  free(c);
  chat->live--;
  chat_maybe_stopped(chat);
}

static void client_tcp_closed(uv_handle_t* h) {
  client_unref((client_t*)((char*)h - offsetof(client_t, tcp)));
}

static void client_pipeline_closed(uvchan_pipeline_t* p, int status) {
  client_t* c = (client_t*)((char*)p - offsetof(client_t, p));
  (void)status;
  /* The objects are closed: the channels give back what they hold (their destructors). */
  uvchan_destroy(&c->raw);
  uvchan_destroy(&c->lines);
  uvchan_destroy(&c->outbox);
  uv_close((uv_handle_t*)&c->tcp, client_tcp_closed);
}

/* The client leaves the room (it is done, failed, or was cut off): nobody sends to it any more,
 * relays waiting for it go on (its outbox closes: their sends fail), its own relay stops, its
 * pipeline and then its socket are closed. */
static void client_leave(client_t* c) {
  if (c->gone)
    return;
  c->gone = 1;
  c->next->prev = c->prev;
  c->prev->next = c->next;
  c->chat->nclients--;
  (void)uvchan_close(&c->outbox);
  (void)uvchan_cancel((uvchan_req_t*)&c->rreq); /* UV_EINVAL when not pending: fine */
  (void)uvchan_cancel((uvchan_req_t*)&c->sreq);
  if (uvchan_pipeline_close(&c->p, client_pipeline_closed) != 0)
    client_pipeline_closed(&c->p, 0); /* its setup failed before the pipeline existed */
  client_unref(c); /* the room's reference */
}

static void relay_next(client_t* c);
static void relay_wait(client_t* c);

/* `to` frees no room: the policy. */
static void client_slow(client_t* to) {
  chat_t* chat = to->chat;
  if (chat->opts.policy == CHAT_DROP) {
    to->lagging = 1;
    chat->dropped++;
  } else {
    chat->kicked++;
    client_leave(to);
  }
}

static void relay_on_sent(uvchan_send_t* req, int status) {
  client_t* c = req->data;
  chat_wait_t* w = &c->waits[c->iwait];
  c->relay_busy = 0;
  if (status != 0) {
    uvchan_buf_release(&w->msg); /* not taken */
    if (status == UV_ETIMEDOUT && !c->gone && !w->to->gone)
      client_slow(w->to);
  }
  client_unref(w->to);
  c->iwait++;
  relay_wait(c);
  client_unref(c); /* the request's reference */
}

/* Hands the message to the recipients whose outbox was full, one at a time, until the deadline. */
static void relay_wait(client_t* c) {
  chat_wait_t* w;
  uint64_t now;
  int err;
  while (c->iwait < c->nwaits) {
    w = &c->waits[c->iwait];
    if (!c->gone && !w->to->gone) {
      now = uv_now(c->chat->loop);
      err = uvchan_send_timeout(&c->sreq, &w->to->outbox, &w->msg,
                                c->deadline > now ? c->deadline - now : 0, relay_on_sent);
      if (err == 0) {
        c->refs++;
        c->relay_busy = 1;
        return;
      }
    }
    uvchan_buf_release(&w->msg); /* the relay or the recipient is gone */
    client_unref(w->to);
    c->iwait++;
  }
  c->nwaits = c->iwait = 0;
  relay_next(c);
}

/* The message (one reference, the relay's) to every other client. */
static void relay_fan_out(client_t* c, uvchan_buf_t* msg) {
  chat_t* chat = c->chat;
  client_t* to;
  uvchan_buf_t ref;
  chat_wait_t* w;
  int err;

  for (to = chat->room.next; to != &chat->room; to = to->next) {
    if (to == c)
      continue;
    uvchan_buf_ref(msg, &ref);
    err = uvchan_try_send(&to->outbox, &ref);
    if (err == 0) {
      to->lagging = 0; /* it reads again */
      continue;
    }
    if (err != UV_EAGAIN || to->lagging) {
      if (err == UV_EAGAIN)
        chat->dropped++;
      uvchan_buf_release(&ref);
      continue;
    }
    if (c->nwaits == c->capwaits) { /* full: wait for it below */
      size_t cap = c->capwaits != 0 ? c->capwaits * 2 : 8;
      chat_wait_t* ws = realloc(c->waits, cap * sizeof(*ws));
      if (ws == NULL) {
        uvchan_buf_release(&ref);
        continue;
      }
      c->waits = ws;
      c->capwaits = cap;
    }
    w = &c->waits[c->nwaits++];
    w->to = to;
    w->msg = ref;
    to->refs++;
  }
  uvchan_buf_release(msg);
  c->deadline = uv_now(chat->loop) + chat->opts.stall_ms;
  c->iwait = 0;
  relay_wait(c);
}

static void relay_on_line(uvchan_recv_t* req, int status) {
  client_t* c = req->data;
  char prefix[32];
  size_t n;
  uvchan_buf_t msg;
  c->relay_busy = 0;
  if (status != 0 || c->gone) {
    uvchan_buf_release(&c->line); /* arrived as the client left, if anything */
    client_leave(c); /* its input ended (EOF, or its splitter's error) */
    client_unref(c);
    return;
  }
  c->chat->relayed++;
  n = (size_t)snprintf(prefix, sizeof(prefix), "[%llu] ", (unsigned long long)c->id);
  if (uvchan_buf_alloc(NULL, n + c->line.len + 1, &msg) == 0) {
    memcpy(msg.base, prefix, n);
    memcpy(msg.base + n, c->line.base, c->line.len);
    msg.base[n + c->line.len] = '\n';
    uvchan_buf_release(&c->line);
    relay_fan_out(c, &msg);
  } else {
    uvchan_buf_release(&c->line);
    relay_next(c);
  }
  client_unref(c);
}

/* The next line of this client. */
static void relay_next(client_t* c) {
  if (c->gone)
    return;
  if (uvchan_recv(&c->rreq, &c->lines, &c->line, relay_on_line) == 0) {
    c->refs++;
    c->relay_busy = 1;
  } else {
    client_leave(c);
  }
}

static void client_pipeline_end(uvchan_pipeline_t* p, int status) {
  client_t* c = (client_t*)((char*)p - offsetof(client_t, p));
  (void)status; /* a read or write error, an overlong line, or the close of a client that left */
  /* The splitter closed `lines` after the lines that came before the failure: the relay, still
   * waiting, hands them on, then sees UV_EOF and the client leaves (relay_on_line). Leaving now
   * would drop them. Nobody sends to the client meanwhile: its writer closed the outbox. */
  if (!c->gone && c->relay_busy)
    return;
  client_leave(c);
}

static void chat_on_connection(uv_stream_t* listener, int status) {
  chat_t* chat = (chat_t*)((char*)listener - offsetof(chat_t, listener));
  uvchan_io_opts_t o;
  client_t* c;
  int err;

  if (status < 0 || chat->stopping)
    return;
  if ((c = calloc(1, sizeof(*c))) == NULL)
    return;
  c->chat = chat;
  c->id = ++chat->next_id;
  c->refs = 1;
  c->rreq.data = c->sreq.data = c;
  uv_tcp_init(chat->loop, &c->tcp);
  chat->live++;
  c->refs++; /* the socket's close */
  if (uv_accept(listener, (uv_stream_t*)&c->tcp) != 0) {
    c->gone = 1;
    uv_close((uv_handle_t*)&c->tcp, client_tcp_closed);
    client_unref(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  memset(&o, 0, sizeof(o));
  o.pipeline = &c->p;
  o.hwm = 16 * 1024;
  err = uvchan_pipeline_init(chat->ctx, &c->p);
  if (err == 0)
    err = uvchan_buf_chan_init(chat->ctx, &c->raw, 2);
  if (err == 0)
    err = uvchan_buf_chan_init(chat->ctx, &c->lines, 16);
  if (err == 0)
    err = uvchan_buf_chan_init(chat->ctx, &c->outbox, chat->opts.outbox);
  if (err == 0)
    err = uvchan_reader_init(chat->ctx, &c->rd, (uv_stream_t*)&c->tcp, &c->raw, &chat->pool, &o);
  if (err == 0)
    err = uvchan_lines_init(chat->ctx, &c->sp, &c->raw, &c->lines, chat->opts.max_line, &o);
  if (err == 0)
    err = uvchan_writer_init(chat->ctx, &c->wr, &c->outbox, (uv_stream_t*)&c->tcp, &o);
  if (err == 0)
    err = uvchan_pipeline_start(&c->p, client_pipeline_end);
  /* In the room (a failed setup leaves it at once: the close handles whatever was made). */
  c->next = &chat->room;
  c->prev = chat->room.prev;
  chat->room.prev->next = c;
  chat->room.prev = c;
  chat->nclients++;
  if (err != 0) {
    fprintf(stderr, "chat_server: client %llu: %s\n", (unsigned long long)c->id, uv_strerror(err));
    client_leave(c);
    return;
  }
  relay_next(c);
}

static void chat_maybe_stopped(chat_t* chat) {
  void (*cb)(chat_t*) = chat->stopped_cb;
  if (!chat->stopping || chat->live != 0 || chat->listener_open)
    return;
  chat->stopped_cb = NULL;
  uvchan_pool_destroy(&chat->pool);
  if (cb != NULL)
    cb(chat);
}

static void chat_listener_closed(uv_handle_t* h) {
  chat_t* chat = (chat_t*)((char*)h - offsetof(chat_t, listener));
  chat->listener_open = 0;
  chat_maybe_stopped(chat);
}

/* Listens on `addr`; `opts` may be NULL (defaults). Returns 0 or a libuv error. */
static int chat_start(chat_t* chat, uvchan_ctx_t* ctx, const struct sockaddr* addr,
                      const chat_opts_t* opts) {
  int err;
  memset(chat, 0, sizeof(*chat));
  chat->ctx = ctx;
  chat->loop = ctx->loop;
  chat->opts.policy = CHAT_DISCONNECT;
  chat->opts.stall_ms = 200;
  chat->opts.outbox = 256;
  chat->opts.max_line = 4096;
  if (opts != NULL)
    chat->opts = *opts;
  chat->room.next = chat->room.prev = &chat->room;
  if ((err = uvchan_pool_init(&chat->pool, 16 * 1024, 64)) != 0)
    return err;
  if ((err = uv_tcp_init(chat->loop, &chat->listener)) != 0)
    return err;
  chat->listener_open = 1;
  if ((err = uv_tcp_bind(&chat->listener, addr, 0)) != 0 ||
      (err = uv_listen((uv_stream_t*)&chat->listener, 128, chat_on_connection)) != 0) {
    chat->stopping = 1;
    uv_close((uv_handle_t*)&chat->listener, chat_listener_closed);
    return err;
  }
  return 0;
}

/* The port the chat listens on. */
static int chat_port(chat_t* chat) {
  struct sockaddr_storage name;
  int len = sizeof(name);
  if (uv_tcp_getsockname(&chat->listener, (struct sockaddr*)&name, &len) != 0)
    return -1;
  return ntohs(((struct sockaddr_in*)&name)->sin_port);
}

/* Stops listening and disconnects everyone; `cb` runs once every client is freed. */
static void chat_stop(chat_t* chat, void (*cb)(chat_t* chat)) {
  chat->stopping = 1;
  chat->stopped_cb = cb;
  uv_close((uv_handle_t*)&chat->listener, chat_listener_closed);
  while (chat->room.next != &chat->room)
    client_leave(chat->room.next);
}

#ifndef CHAT_NO_MAIN

static uv_loop_t* loop;
static uvchan_ctx_t ctx;
static chat_t chat;
static uv_signal_t sigint, sigterm;

static void on_stopped(chat_t* c) {
  fprintf(stderr, "chat_server: %llu lines relayed, %llu clients disconnected, %llu lines dropped\n",
          (unsigned long long)c->relayed, (unsigned long long)c->kicked,
          (unsigned long long)c->dropped);
  uvchan_ctx_close(&ctx, NULL);
}

static void on_signal(uv_signal_t* s, int signum) {
  (void)signum;
  (void)s;
  uv_close((uv_handle_t*)&sigint, NULL);
  uv_close((uv_handle_t*)&sigterm, NULL);
  chat_stop(&chat, on_stopped);
}

static int usage(void) {
  fprintf(stderr,
          "usage: chat_server PORT [-p disconnect|drop] [-s STALL_MS] [-o OUTBOX] [-l MAX_LINE]\n");
  return 2;
}

int main(int argc, char** argv) {
  chat_opts_t o = {CHAT_DISCONNECT, 200, 256, 4096};
  struct sockaddr_in addr;
  int i, err;

  if (argc < 2 || atoi(argv[1]) <= 0)
    return usage();
  for (i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "-p") == 0 && strcmp(argv[i + 1], "drop") == 0)
      o.policy = CHAT_DROP;
    else if (strcmp(argv[i], "-p") == 0 && strcmp(argv[i + 1], "disconnect") == 0)
      o.policy = CHAT_DISCONNECT;
    else if (strcmp(argv[i], "-s") == 0)
      o.stall_ms = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-o") == 0 && atoi(argv[i + 1]) > 0)
      o.outbox = (size_t)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "-l") == 0 && atoi(argv[i + 1]) > 0)
      o.max_line = (size_t)atoi(argv[i + 1]);
    else
      return usage();
  }
  if (i != argc)
    return usage();
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr); /* as echo_server: loopback only */
  if ((err = uvchan_ctx_init(loop, &ctx)) != 0 ||
      (err = chat_start(&chat, &ctx, (const struct sockaddr*)&addr, &o)) != 0) {
    fprintf(stderr, "chat_server: %s\n", uv_strerror(err));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  fprintf(stderr, "chat_server: port %d, a client that reads nothing for %u ms is %s\n",
          chat_port(&chat), o.stall_ms, o.policy == CHAT_DROP ? "dropped lines" : "disconnected");
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}

#endif /* CHAT_NO_MAIN */
