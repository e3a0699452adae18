/* Network services from tasks: blocking read, write, shutdown, close, connect, listen, accept and
 * getaddrinfo on libuv streams, every wait an await (UVCHAN_REQ_AWAIT): deadlines, cancels and
 * the graceful shutdown reach them through the await's cancel hook, as for any other await.
 *
 * Per-stream state. libuv's read, alloc and connection callbacks give only the handle, and the
 * handle's `data` is the application's, so uvchan finds its state for a stream in a table of the
 * thread: an open-addressing hash map from handle address to state, created with the first state
 * and freed with the last. The state is a resource of its context, freed when the handle is
 * closed through uvchan_task_close(), when the context shuts down, or when it closes (idle state
 * of streams the application closed itself).
 *
 * Reads: readiness, then a read into the caller's buffer. A task that must wait for data starts
 * libuv reading with an alloc callback that hands out an empty buffer: libuv calls it when the
 * socket is readable, then calls the read callback with UV_ENOBUFS without reading anything, and
 * that wakes the task, which reads the kernel's bytes into its own buffer itself. So bytes move
 * only while the task runs: nothing is ever read for a task that left (a deadline, a cancel), and
 * a buffer shared by all the tasks of a loop is safe. Reading stays started between reads (a stop
 * and start per message costs epoll_ctl calls); it stops when the socket is readable and no task
 * waits (the bytes wait in the kernel), and when a deadline or a cancel ends a read.
 *
 * Writes: uv_try_write() first; what the kernel does not take is copied into heap chunks written
 * with uv_write(), at most a high-water mark of them per stream, so a peer that does not read
 * blocks the writer and memory stays bounded. */
#include "uvchan-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* A task's wait on a stream, on the task's stack. */
struct uvchan__netw_s {
  uvchan_await_t aw;
  struct uvchan__link_s link; /* in the state's acceptors */
  uvchan__netst_t* st;
  uv_stream_t* client; /* accept: where the connection goes */
  int woken;           /* uvchan_await_done() was called */
  int closed;          /* the handle was closed under the wait: the state is gone */
};

/* One piece of a write that the kernel did not take at once. */
typedef struct {
  uv_write_t req;
  uvchan__netst_t* st;
  size_t len;
  char data[];
} uvchan__chunk_t;

/* ---- the thread's table: handle address -> state ---- */

typedef struct {
  const void* key;
  uvchan__netst_t* st;
} uvchan__slot_t;

static UVCHAN__TLS uvchan__slot_t* uvchan__tab;
static UVCHAN__TLS size_t uvchan__tab_cap; /* a power of two, or 0 */
static UVCHAN__TLS size_t uvchan__tab_n;

static size_t uvchan__tab_home(const void* key, size_t cap) {
  uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 32) & (cap - 1);
}

uvchan__netst_t* uvchan__st_find(const void* key) {
  size_t i;
  if (uvchan__tab_n == 0)
    return NULL;
  for (i = uvchan__tab_home(key, uvchan__tab_cap);; i = (i + 1) & (uvchan__tab_cap - 1)) {
    if (uvchan__tab[i].key == key)
      return uvchan__tab[i].st;
    if (uvchan__tab[i].key == NULL)
      return NULL;
  }
}

static void uvchan__tab_put(uvchan__slot_t* tab, size_t cap, const void* key, uvchan__netst_t* st) {
  size_t i = uvchan__tab_home(key, cap);
  while (tab[i].key != NULL)
    i = (i + 1) & (cap - 1);
  tab[i].key = key;
  tab[i].st = st;
}

/* Keeps the table at most half full. */
static int uvchan__tab_insert(const void* key, uvchan__netst_t* st) {
  size_t cap, i;
  uvchan__slot_t* tab;
  if ((uvchan__tab_n + 1) * 2 > uvchan__tab_cap) {
    cap = uvchan__tab_cap != 0 ? uvchan__tab_cap * 2 : 64;
    tab = calloc(cap, sizeof(*tab));
    if (tab == NULL)
      return UV_ENOMEM;
    for (i = 0; i < uvchan__tab_cap; i++)
      if (uvchan__tab[i].key != NULL)
        uvchan__tab_put(tab, cap, uvchan__tab[i].key, uvchan__tab[i].st);
    free(uvchan__tab);
    uvchan__tab = tab;
    uvchan__tab_cap = cap;
  }
  uvchan__tab_put(uvchan__tab, uvchan__tab_cap, key, st);
  uvchan__tab_n++;
  return 0;
}

/* Linear probing's deletion: later entries of the run move back into the hole, so a lookup
 * never stops early; no tombstones. The last entry gone frees the table. */
static void uvchan__tab_remove(const void* key) {
  size_t mask = uvchan__tab_cap - 1, i, j, home;
  for (i = uvchan__tab_home(key, uvchan__tab_cap); uvchan__tab[i].key != key; i = (i + 1) & mask)
    if (uvchan__tab[i].key == NULL)
      return;
  for (j = i;;) {
    uvchan__tab[i].key = NULL;
    for (;;) {
      j = (j + 1) & mask;
      if (uvchan__tab[j].key == NULL)
        goto done;
      home = uvchan__tab_home(uvchan__tab[j].key, uvchan__tab_cap);
      /* j's entry may fill the hole at i unless its home lies cyclically in (i, j] */
      if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
        continue;
      uvchan__tab[i] = uvchan__tab[j];
      i = j;
      break;
    }
  }
done:
  if (--uvchan__tab_n == 0) {
    free(uvchan__tab);
    uvchan__tab = NULL;
    uvchan__tab_cap = 0;
  }
}

/* ---- state lifecycle ---- */

static void uvchan__st_shutdown(struct uvchan__res_s* res);

static uvchan__netst_t* uvchan__st_new(uvchan_ctx_t* ctx, uv_handle_t* h) {
  uvchan__netst_t* st = calloc(1, sizeof(*st));
  if (st == NULL)
    return NULL;
  if (uvchan__tab_insert(h, st) != 0) {
    free(st);
    return NULL;
  }
  st->handle = h;
  st->ctx = ctx;
  st->hwm = UVCHAN_STREAM_HWM;
  uvchan__list_init(&st->acceptors);
  uvchan__res_add(ctx, &st->res, uvchan__st_shutdown);
  return st;
}

static void uvchan__st_free(uvchan__netst_t* st) {
  if (!(st->flags & UVCHAN__NET_ORPHAN)) {
    uvchan__tab_remove(st->handle);
    uvchan__res_remove(st->ctx, &st->res);
  }
  free(st);
}

static void uvchan__on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
static void uvchan__on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);

/* Stops libuv reading for uvchan (libuv may have stopped already: a close, or the application's
 * uv_read_stop()). */
void uvchan__st_stop_reading(uvchan__netst_t* st) {
  uv_stream_t* s = (uv_stream_t*)st->handle;
  if ((st->flags & UVCHAN__NET_READING) && s->read_cb == uvchan__on_read)
    uv_read_stop(s);
  st->flags &= ~UVCHAN__NET_READING;
}

/* uvchan's own callbacks do not count: libuv stops reading by itself at the end of a stream
 * and leaves the callbacks set (uv_read_stop() then does nothing), and uvchan reads a stream
 * only under its state's flags, which the callers check. */
int uvchan__app_reads(const uv_stream_t* s) {
  return s->read_cb != NULL && s->read_cb != uvchan__on_read &&
         s->read_cb != uvchan__reader_on_read;
}

/* Ends one wait with `status`, once. */
static void uvchan__net_wake(uvchan__netw_t* w, ssize_t status) {
  if (w->woken)
    return;
  w->woken = 1;
  uvchan_await_done(&w->aw, status);
}

/* The state goes away under the stream adapters, if any: they let go of it. */
static void uvchan__st_gone(uvchan__netst_t* st) {
  void (*gone)(uvchan__netst_t*) = st->gone_cb;
  if (gone != NULL) {
    st->gone_cb = NULL;
    gone(st);
  }
}

/* Ends a wait on a handle that is going away: UV_ECANCELED, and the task must not touch the
 * state again (`closed`). */
static void uvchan__net_fail(uvchan__netw_t* w) {
  w->closed = 1;
  uvchan__net_wake(w, UV_ECANCELED);
}

/* The handle is going away: every task waiting on it fails, and the adapters let go. */
static void uvchan__st_fail_waiters(uvchan__netst_t* st) {
  uvchan__netw_t* w;
  uvchan__st_gone(st);
  if (st->rd != NULL) {
    uvchan__net_fail(st->rd);
    st->rd = NULL;
  }
  if (st->wr != NULL) {
    uvchan__net_fail(st->wr);
    st->wr = NULL;
  }
  while (!uvchan__list_empty(&st->acceptors)) {
    w = UVCHAN__CONTAINER_OF(st->acceptors.next, uvchan__netw_t, link);
    uvchan__list_remove(&w->link);
    uvchan__net_fail(w);
  }
}

/* The context shuts down, after its last task ended: nothing waits any more. The handle is the
 * application's and stays open; chunks libuv still holds keep the state until their callbacks.
 * The handle itself is not touched here, nor in uvchan__net_ctx_release(): the application may
 * have closed and freed it without uvchan knowing. If libuv still reads it for uvchan, the read
 * callback finds no state and stops reading. */
static void uvchan__st_shutdown(struct uvchan__res_s* res) {
  uvchan__netst_t* st = UVCHAN__CONTAINER_OF(res, uvchan__netst_t, res);
  uvchan__st_gone(st);
  if (st->inflight == 0 || (st->flags & UVCHAN__NET_CLOSING)) {
    uvchan__st_free(st);
    return;
  }
  uvchan__tab_remove(st->handle);
  uvchan__res_remove(st->ctx, &st->res);
  st->flags |= UVCHAN__NET_ORPHAN;
  uvchan__ctx_closing_begin(st->ctx);
}

void uvchan__net_ctx_release(uvchan_ctx_t* ctx) {
  struct uvchan__link_s* l;
  struct uvchan__link_s* next;
  uvchan__netst_t* st;
  for (l = ctx->res_.next; l != &ctx->res_; l = next) {
    next = l->next;
    if (((struct uvchan__res_s*)l)->shutdown != uvchan__st_shutdown)
      continue;
    st = UVCHAN__CONTAINER_OF(l, uvchan__netst_t, res);
    /* A state an open stream adapter uses stays: the adapter keeps the close from going on. */
    if (st->inflight == 0 &&
        !(st->flags & (UVCHAN__NET_CLOSING | UVCHAN__NET_ADAPT_RD | UVCHAN__NET_ADAPT_WR)))
      uvchan__st_free(st);
  }
}

/* ---- checks shared by the calls ---- */

static int uvchan__is_stream(const uv_handle_t* h) {
  return uvchan__is_stream_type(h->type);
}

/* The start of a blocking call: UV_EINVAL outside a task, UV_ECANCELED for a cancelled one, else
 * spends the task's budget (maybe yielding: the checks come after it) and returns 0. */
static int uvchan__spend(uvchan_task_t* t) {
  return t == NULL ? UV_EINVAL : uvchan__task_spend_self();
}

/* The context of the running task `t` (NULL outside a task), found once per call. */
static uvchan_ctx_t* uvchan__task_ctx(uvchan_task_t* t) {
  return t != NULL ? uvchan__task_own_req(t)->ctx_ : NULL;
}

/* Validates a call on `h` by a task of `ctx` (NULL: outside a task): 0, UV_EINVAL or UV_EBADF. */
static int uvchan__check(const uvchan_ctx_t* ctx, const uv_handle_t* h, int need_stream) {
  if (ctx == NULL || h == NULL)
    return UV_EINVAL;
  if (h->loop != ctx->loop || (need_stream && !uvchan__is_stream(h)))
    return UV_EINVAL;
  if (uv_is_closing(h))
    return UV_EBADF;
  return 0;
}

int uvchan__st_get(uvchan_ctx_t* ctx, uv_handle_t* h, uvchan__netst_t** out) {
  uvchan__netst_t* st = uvchan__st_find(h);
  if (st == NULL) {
    st = uvchan__st_new(ctx, h);
    if (st == NULL)
      return UV_ENOMEM;
  } else if (st->ctx != ctx) {
    return UV_EINVAL; /* a stream used by another context of this loop */
  }
  /* A state handed back while libuv still held chunks is freed by the last one's callback: a
   * task or an adapter using it now keeps it (an adapter hands it back itself when it closes). */
  st->flags &= ~UVCHAN__NET_RELEASE;
  *out = st;
  return 0;
}

static void uvchan__net_wait_init(uvchan__netw_t* w, uvchan__netst_t* st, uvchan_await_cb cancel) {
  uvchan_await_init(&w->aw, cancel, NULL);
  w->st = st;
  w->client = NULL;
  w->woken = 0;
  w->closed = 0;
  w->link.next = NULL;
}

/* Parks on `w` with the deadline `due` (loop time; UINT64_MAX: none). */
static int uvchan__net_wait(uvchan__netw_t* w, uint64_t due) {
  uvchan_ctx_t* ctx = w->st->ctx;
  uint64_t now;
  int abandoned;
  if (due == UINT64_MAX)
    return (int)uvchan__task_await_ex(&w->aw, 0, 0, &abandoned);
  now = uv_now(ctx->loop);
  return (int)uvchan__task_await_ex(&w->aw, due > now ? due - now : 0, 1, &abandoned);
}

static uint64_t uvchan__due(const uvchan_ctx_t* ctx, uint64_t timeout, int has_deadline) {
  uint64_t now;
  if (!has_deadline)
    return UINT64_MAX;
  now = uv_now(ctx->loop);
  return timeout >= UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + timeout;
}

/* ---- read ---- */

static void uvchan__on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  (void)h;
  (void)suggested;
  buf->base = NULL; /* readiness only: libuv reads nothing and reports UV_ENOBUFS */
  buf->len = 0;
}

static void uvchan__on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  uvchan__netst_t* st = uvchan__st_find(s);
  (void)buf;
  if (st == NULL) {
    uv_read_stop(s); /* forgotten (a shutdown, a context close): nobody reads for uvchan */
    return;
  }
  if (nread != UV_ENOBUFS)
    st->flags &= ~UVCHAN__NET_READING; /* not expected: libuv read nothing; it stopped itself */
  if (st->rd != NULL) {
    uvchan__net_wake(st->rd, 0); /* the reader reads now (or already was woken) */
  } else {
    uvchan__st_stop_reading(st); /* no reader: the bytes wait in the kernel */
    st->flags &= ~UVCHAN__NET_DRAINED;
  }
}

/* A deadline or a cancel ends the read: libuv stops watching the stream for uvchan, so a stream
 * nobody reads keeps no loop alive and the application may read it itself. */
static void uvchan__read_cancel(uvchan_await_t* aw) {
  uvchan__netw_t* w = UVCHAN__CONTAINER_OF(aw, uvchan__netw_t, aw);
  uvchan__st_stop_reading(w->st);
  uvchan__net_wake(w, UV_ECANCELED);
}

static ssize_t uvchan__read(uv_stream_t* s, void* buf, size_t len, uint64_t timeout,
                            int has_deadline) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__netst_t* st;
  uvchan__netw_t w;
  uv_os_fd_t fd;
  uint64_t due;
  ssize_t n;
  int err;

  if ((err = uvchan__spend(t)) != 0 || (err = uvchan__check(ctx, (uv_handle_t*)s, 1)) != 0)
    return err;
  if (buf == NULL && len > 0)
    return UV_EINVAL;
  if (s->type == UV_NAMED_PIPE && ((uv_pipe_t*)s)->ipc)
    return UV_ENOTSUP; /* its reads carry handles: libuv's own uv_read_start() reads those */
  if (len == 0)
    return 0;
  if ((err = uvchan__st_get(ctx, (uv_handle_t*)s, &st)) != 0)
    return err;
  if (st->rd != NULL || (st->flags & UVCHAN__NET_ADAPT_RD) || uvchan__app_reads(s))
    return UV_EBUSY; /* another task reads it, a stream reader does, or the application */
  if (s->read_cb != uvchan__on_read)
    st->flags &= ~UVCHAN__NET_READING; /* libuv stopped reading for us (uv_read_stop()) */
  if ((err = uv_fileno((uv_handle_t*)s, &fd)) != 0)
    return err;
  due = uvchan__due(ctx, timeout, has_deadline);
  for (;;) {
    if (!(st->flags & UVCHAN__NET_DRAINED)) {
      n = read(fd, buf, len);
      if (n > 0) {
        if ((size_t)n < len)
          st->flags |= UVCHAN__NET_DRAINED;
        return n;
      }
      if (n == 0) {
        uvchan__st_stop_reading(st);
        return UV_EOF;
      }
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        uvchan__st_stop_reading(st);
        return -errno; /* libuv's codes are the negated errno values on Unix */
      }
      st->flags |= UVCHAN__NET_DRAINED;
    }
    if (!(st->flags & UVCHAN__NET_READING)) {
      err = uv_read_start(s, uvchan__on_alloc, uvchan__on_read);
      if (err != 0)
        return err;
      st->flags |= UVCHAN__NET_READING;
    }
    uvchan__net_wait_init(&w, st, uvchan__read_cancel);
    st->rd = &w;
    err = uvchan__net_wait(&w, due);
    if (w.closed)
      return UV_ECANCELED; /* closed under the read: `st` and `s` may be gone */
    st->rd = NULL;
    if (err != 0)
      return err;
    st->flags &= ~UVCHAN__NET_DRAINED;
  }
}

ssize_t uvchan_task_read(uv_stream_t* stream, void* buf, size_t len) {
  return uvchan__read(stream, buf, len, 0, 0);
}

ssize_t uvchan_task_read_timeout(uv_stream_t* stream, void* buf, size_t len, uint64_t timeout) {
  return uvchan__read(stream, buf, len, timeout, 1);
}

/* ---- write ---- */

static void uvchan__write_cancel(uvchan_await_t* aw) {
  uvchan__net_wake(UVCHAN__CONTAINER_OF(aw, uvchan__netw_t, aw), UV_ECANCELED);
}

static void uvchan__on_write(uv_write_t* req, int status) {
  uvchan__chunk_t* c = UVCHAN__CONTAINER_OF(req, uvchan__chunk_t, req);
  uvchan__netst_t* st = c->st;

  st->queued -= c->len;
  st->inflight--;
  free(c);
  if (status < 0 && st->werr == 0)
    st->werr = status;
  if (st->flags & UVCHAN__NET_ORPHAN) {
    if (st->inflight == 0) {
      uvchan_ctx_t* ctx = st->ctx;
      uvchan__st_free(st);
      uvchan__ctx_closing_end(ctx);
    }
    return;
  }
  if (st->queued < st->hwm || st->werr != 0) {
    if (st->wr != NULL)
      uvchan__net_wake(st->wr, 0);
    else if (st->room_cb != NULL)
      st->room_cb(st);
  }
  if (st->inflight == 0 && uv_is_closing(st->handle) && !(st->flags & UVCHAN__NET_CLOSING)) {
    /* The application closed the stream itself (its memory is valid until its close callback,
     * which comes after this): forget it now. */
    uvchan__st_fail_waiters(st);
    uvchan__st_free(st);
  } else if (st->inflight == 0 && (st->flags & UVCHAN__NET_RELEASE)) {
    uvchan__st_put(st); /* the adapters left before their last write was done */
  }
}

/* Nothing of the task calls uses `st`: no waiting task, no reading, listening or closing. */
static int uvchan__st_idle(const uvchan__netst_t* st) {
  return st->rd == NULL && st->wr == NULL && st->closer == NULL &&
         uvchan__list_empty(&st->acceptors) &&
         !(st->flags & (UVCHAN__NET_READING | UVCHAN__NET_LISTENING | UVCHAN__NET_PENDING |
                        UVCHAN__NET_CLOSING | UVCHAN__NET_ORPHAN | UVCHAN__NET_ADAPT_RD |
                        UVCHAN__NET_ADAPT_WR));
}

void uvchan__st_put(uvchan__netst_t* st) {
  st->room_cb = NULL;
  st->gone_cb = NULL;
  st->ext = NULL;
  st->flags &= ~(UVCHAN__NET_ADAPT_RD | UVCHAN__NET_ADAPT_WR);
  if (!uvchan__st_idle(st)) {
    st->flags &= ~UVCHAN__NET_RELEASE; /* a task uses it: it stays */
    return;
  }
  /* Streams the adapters served come and go (a server's connections): their states must not
   * pile up until the context closes, nor outlive the handle's memory. */
  if (st->inflight == 0)
    uvchan__st_free(st);
  else
    st->flags |= UVCHAN__NET_RELEASE;
}

static ssize_t uvchan__write(uv_stream_t* s, const void* buf, size_t len, uint64_t timeout,
                             int has_deadline) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  const char* p = (const char*)buf;
  uvchan__netst_t* st;
  uvchan__netw_t w;
  size_t off = 0;
  uint64_t due;
  ssize_t n;
  int err;

  if ((err = uvchan__spend(t)) != 0 || (err = uvchan__check(ctx, (uv_handle_t*)s, 1)) != 0)
    return err;
  if (buf == NULL && len > 0)
    return UV_EINVAL;
  if (len == 0)
    return 0;
  if ((err = uvchan__st_get(ctx, (uv_handle_t*)s, &st)) != 0)
    return err;
  if (st->wr != NULL || (st->flags & UVCHAN__NET_ADAPT_WR))
    return UV_EBUSY; /* another task waits in a write, or a stream writer writes it */
  due = uvchan__due(ctx, timeout, has_deadline);
  for (;;) {
    if (st->werr != 0)
      return off > 0 ? (ssize_t)off : st->werr;
    if (st->queued >= st->hwm) {
      /* At the mark: wait for room (or, once all is accepted, for the queue to come below it). */
      uvchan__net_wait_init(&w, st, uvchan__write_cancel);
      st->wr = &w;
      err = uvchan__net_wait(&w, due);
      if (w.closed)
        return off > 0 ? (ssize_t)off : UV_ECANCELED;
      st->wr = NULL;
      if (err != 0)
        return off > 0 ? (ssize_t)off : err;
      continue;
    }
    if (off == len)
      return (ssize_t)len;
    n = uvchan__st_write_some(st, p + off, len - off);
    if (n < 0)
      return off > 0 ? (ssize_t)off : n;
    off += (size_t)n;
  }
}

ssize_t uvchan__st_write_some(uvchan__netst_t* st, const char* p, size_t len) {
  uv_stream_t* s = (uv_stream_t*)st->handle;
  uvchan__chunk_t* c;
  uv_buf_t b;
  size_t piece, sent = 0;
  int n;

  if (st->inflight == 0) {
    /* Nothing of ours queued: straight into the kernel, no copy. */
    b = uv_buf_init((char*)p, (unsigned)(len > UINT32_MAX ? UINT32_MAX : len));
    n = uv_try_write(s, &b, 1);
    if (n < 0 && n != UV_EAGAIN)
      return st->werr = n;
    if (n > 0 && (size_t)n == len)
      return n;
    if (n > 0)
      sent = (size_t)n; /* the socket is full now: queue a piece of the rest at once */
  }
  len -= sent;
  piece = len < UVCHAN_STREAM_WRITE_CHUNK ? len : UVCHAN_STREAM_WRITE_CHUNK;
  c = malloc(sizeof(*c) + piece);
  if (c == NULL)
    return sent > 0 ? (ssize_t)sent : UV_ENOMEM;
  p += sent;
  memcpy(c->data, p, piece);
  c->st = st;
  c->len = piece;
  b = uv_buf_init(c->data, (unsigned)piece);
  n = uv_write(&c->req, s, &b, 1, uvchan__on_write);
  if (n != 0) {
    free(c);
    st->werr = n;
    return sent > 0 ? (ssize_t)sent : n;
  }
  st->queued += piece;
  st->inflight++;
  return (ssize_t)(sent + piece);
}

ssize_t uvchan_task_write(uv_stream_t* stream, const void* buf, size_t len) {
  return uvchan__write(stream, buf, len, 0, 0);
}

ssize_t uvchan_task_write_timeout(uv_stream_t* stream, const void* buf, size_t len,
                                  uint64_t timeout) {
  return uvchan__write(stream, buf, len, timeout, 1);
}

int uvchan_stream_set_hwm(uv_stream_t* stream, size_t hwm) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__netst_t* st;
  int err;
  if ((err = uvchan__check(ctx, (uv_handle_t*)stream, 1)) != 0)
    return err;
  if ((err = uvchan__st_get(ctx, (uv_handle_t*)stream, &st)) != 0)
    return err;
  st->hwm = hwm != 0 ? hwm : UVCHAN_STREAM_HWM;
  if (st->wr != NULL && st->queued < st->hwm)
    uvchan__net_wake(st->wr, 0);
  return 0;
}

size_t uvchan_stream_queued(const uv_stream_t* stream) {
  uvchan__netst_t* st = stream != NULL ? uvchan__st_find(stream) : NULL;
  return st != NULL ? st->queued : 0;
}

/* ---- operations on heap requests: shutdown, connect, getaddrinfo ----
 *
 * libuv cannot cancel these (getaddrinfo only while queued), so each lives on the heap with an
 * await that has a release callback: a deadline or a cancel returns at once, and the late
 * callback frees the request. */

typedef struct {
  union {
    uv_shutdown_t shutdown;
    uv_connect_t connect;
    uv_getaddrinfo_t gai;
  } u;
  uvchan_await_t aw;
  struct addrinfo* res;
} uvchan__op_t;

static void uvchan__op_release(uvchan_await_t* aw) {
  uvchan__op_t* op = UVCHAN__CONTAINER_OF(aw, uvchan__op_t, aw);
  if (op->res != NULL)
    uv_freeaddrinfo(op->res);
  free(op);
}

static void uvchan__on_shutdown(uv_shutdown_t* req, int status) {
  uvchan_await_done(&UVCHAN__CONTAINER_OF(req, uvchan__op_t, u.shutdown)->aw, status);
}

static void uvchan__on_connect(uv_connect_t* req, int status) {
  uvchan_await_done(&UVCHAN__CONTAINER_OF(req, uvchan__op_t, u.connect)->aw, status);
}

static void uvchan__on_gai(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
  uvchan__op_t* op = UVCHAN__CONTAINER_OF(req, uvchan__op_t, u.gai);
  op->res = res;
  uvchan_await_done(&op->aw, status);
}

static void uvchan__gai_cancel(uvchan_await_t* aw) {
  (void)uv_cancel((uv_req_t*)&UVCHAN__CONTAINER_OF(aw, uvchan__op_t, aw)->u.gai);
}

static uvchan__op_t* uvchan__op_new(uvchan_await_cb cancel) {
  uvchan__op_t* op = calloc(1, sizeof(*op));
  if (op != NULL)
    uvchan_await_init(&op->aw, cancel, uvchan__op_release);
  return op;
}

/* Waits for `op`; frees it unless the wait was abandoned (then its callback will). */
static int uvchan__op_wait(uvchan__op_t* op, uint64_t timeout, int has_deadline) {
  int abandoned;
  int r = (int)uvchan__task_await_ex(&op->aw, timeout, has_deadline, &abandoned);
  if (!abandoned) {
    if (op->res != NULL)
      uv_freeaddrinfo(op->res);
    free(op);
  }
  return r;
}

static int uvchan__shutdown(uv_stream_t* s, uint64_t timeout, int has_deadline) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__netst_t* st;
  uvchan__op_t* op;
  int err;

  if ((err = uvchan__spend(t)) != 0 || (err = uvchan__check(ctx, (uv_handle_t*)s, 1)) != 0)
    return err;
  st = uvchan__st_find(s);
  if (st != NULL && st->werr != 0)
    return st->werr;
  if ((op = uvchan__op_new(NULL)) == NULL)
    return UV_ENOMEM;
  err = uv_shutdown(&op->u.shutdown, s, uvchan__on_shutdown);
  if (err != 0) {
    free(op);
    return err;
  }
  return uvchan__op_wait(op, timeout, has_deadline);
}

int uvchan_task_shutdown(uv_stream_t* stream) {
  return uvchan__shutdown(stream, 0, 0);
}

int uvchan_task_shutdown_timeout(uv_stream_t* stream, uint64_t timeout) {
  return uvchan__shutdown(stream, timeout, 1);
}

static int uvchan__connect(uv_tcp_t* tcp, const struct sockaddr* addr, uint64_t timeout,
                           int has_deadline) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__op_t* op;
  int err;

  if ((err = uvchan__spend(t)) != 0 || (err = uvchan__check(ctx, (uv_handle_t*)tcp, 1)) != 0)
    return err;
  if (addr == NULL || tcp->type != UV_TCP)
    return UV_EINVAL;
  if ((op = uvchan__op_new(NULL)) == NULL)
    return UV_ENOMEM;
  err = uv_tcp_connect(&op->u.connect, tcp, addr, uvchan__on_connect);
  if (err != 0) {
    free(op);
    return err;
  }
  return uvchan__op_wait(op, timeout, has_deadline);
}

int uvchan_task_connect(uv_tcp_t* tcp, const struct sockaddr* addr) {
  return uvchan__connect(tcp, addr, 0, 0);
}

int uvchan_task_connect_timeout(uv_tcp_t* tcp, const struct sockaddr* addr, uint64_t timeout) {
  return uvchan__connect(tcp, addr, timeout, 1);
}

static int uvchan__getaddrinfo(const char* node, const char* service,
                               const struct addrinfo* hints, struct addrinfo** res,
                               uint64_t timeout, int has_deadline) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__op_t* op;
  int abandoned, r;

  if (t == NULL || res == NULL || (node == NULL && service == NULL))
    return UV_EINVAL;
  *res = NULL;
  if ((r = uvchan__spend(t)) != 0)
    return r;
  if ((op = uvchan__op_new(uvchan__gai_cancel)) == NULL)
    return UV_ENOMEM;
  r = uv_getaddrinfo(ctx->loop, &op->u.gai, uvchan__on_gai, node,
                     service, hints);
  if (r != 0) {
    free(op);
    return r;
  }
  r = (int)uvchan__task_await_ex(&op->aw, timeout, has_deadline, &abandoned);
  if (abandoned)
    return r;
  if (r == 0)
    *res = op->res;
  else if (op->res != NULL)
    uv_freeaddrinfo(op->res);
  free(op);
  return r;
}

int uvchan_task_getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                            struct addrinfo** res) {
  return uvchan__getaddrinfo(node, service, hints, res, 0, 0);
}

int uvchan_task_getaddrinfo_timeout(const char* node, const char* service,
                                    const struct addrinfo* hints, struct addrinfo** res,
                                    uint64_t timeout) {
  return uvchan__getaddrinfo(node, service, hints, res, timeout, 1);
}

/* ---- listen and accept ---- */

static void uvchan__on_connection(uv_stream_t* server, int status) {
  uvchan__netst_t* st = uvchan__st_find(server);
  uvchan__netw_t* w;

  if (st == NULL)
    return; /* forgotten (context shut down): libuv holds the connection, stops accepting */
  if (uvchan__list_empty(&st->acceptors)) {
    if (status < 0)
      st->aerr = status;
    else
      st->flags |= UVCHAN__NET_PENDING; /* libuv stops polling until a task accepts it */
    return;
  }
  /* Accept into the longest-waiting task's handle now: libuv goes on accepting in this loop. */
  w = UVCHAN__CONTAINER_OF(st->acceptors.next, uvchan__netw_t, link);
  uvchan__list_remove(&w->link);
  uvchan__net_wake(w, status < 0 ? status : uv_accept(server, w->client));
}

int uvchan_task_listen(uv_stream_t* server, int backlog) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__netst_t* st;
  int err;

  if ((err = uvchan__check(ctx, (uv_handle_t*)server, 1)) != 0)
    return err;
  if ((err = uvchan__st_get(ctx, (uv_handle_t*)server, &st)) != 0)
    return err;
  if (st->flags & UVCHAN__NET_LISTENING)
    return UV_EBUSY;
  err = uv_listen(server, backlog, uvchan__on_connection);
  if (err == 0)
    st->flags |= UVCHAN__NET_LISTENING;
  return err;
}

static void uvchan__accept_cancel(uvchan_await_t* aw) {
  uvchan__netw_t* w = UVCHAN__CONTAINER_OF(aw, uvchan__netw_t, aw);
  if (w->link.next != NULL)
    uvchan__list_remove(&w->link);
  uvchan__net_wake(w, UV_ECANCELED);
}

static int uvchan__accept(uv_stream_t* server, uv_stream_t* client, uint64_t timeout,
                          int has_deadline) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__netst_t* st;
  uvchan__netw_t w;
  int err;

  if ((err = uvchan__spend(t)) != 0 || (err = uvchan__check(ctx, (uv_handle_t*)server, 1)) != 0 ||
      (err = uvchan__check(ctx, (uv_handle_t*)client, 1)) != 0)
    return err;
  st = uvchan__st_find(server);
  if (st == NULL || !(st->flags & UVCHAN__NET_LISTENING) || st->ctx != ctx)
    return UV_EINVAL;
  if (st->aerr != 0) {
    err = st->aerr;
    st->aerr = 0;
    return err;
  }
  if (st->flags & UVCHAN__NET_PENDING) {
    st->flags &= ~UVCHAN__NET_PENDING;
    return uv_accept(server, client);
  }
  uvchan__net_wait_init(&w, st, uvchan__accept_cancel);
  w.client = client;
  uvchan__list_push(&st->acceptors, &w.link);
  err = uvchan__net_wait(&w, uvchan__due(ctx, timeout, has_deadline));
  return w.closed ? UV_ECANCELED : err;
}

int uvchan_task_accept(uv_stream_t* server, uv_stream_t* client) {
  return uvchan__accept(server, client, 0, 0);
}

int uvchan_task_accept_timeout(uv_stream_t* server, uv_stream_t* client, uint64_t timeout) {
  return uvchan__accept(server, client, timeout, 1);
}

/* ---- close ---- */

static void uvchan__on_close(uv_handle_t* h) {
  uvchan__netst_t* st = uvchan__st_find(h);
  uvchan__netw_t* w;
  if (st == NULL)
    return; /* not reached: the closing task keeps its context from freeing the state */
  w = st->closer;
  uvchan__st_free(st);
  uvchan__net_wake(w, 0);
}

int uvchan_task_close(uv_handle_t* handle) {
  uvchan_task_t* t = uvchan__task_current();
  uvchan_ctx_t* ctx = uvchan__task_ctx(t);
  uvchan__netst_t* st;
  uvchan__netw_t w;
  int err;

  /* No budget spent: cleanup must work after a cancel. */
  if ((err = uvchan__check(ctx, handle, 0)) != 0)
    return err;
  /* uvchan's own handles are not the caller's to close. libuv never initialises `data`: reading
   * it to compare with uvchan's tag is deliberate (see UVCHAN__VG_DEFINED). */
  UVCHAN__VG_DEFINED(&handle->data, sizeof(handle->data));
  if (uvchan_handle_owned(handle))
    return UV_EINVAL;
  st = uvchan__st_find(handle);
  if (st == NULL) {
    /* A handle uvchan never used: a state only to find the closing task again. */
    if ((st = uvchan__st_new(ctx, handle)) == NULL)
      return UV_ENOMEM;
  } else if (st->ctx != ctx) {
    return UV_EINVAL;
  } else {
    if (uvchan__is_stream(handle))
      uvchan__st_stop_reading(st);
    uvchan__st_fail_waiters(st);
  }
  st->flags |= UVCHAN__NET_CLOSING;
  uvchan__net_wait_init(&w, st, NULL);
  st->closer = &w;
  /* libuv fails our queued writes (UV_ECANCELED) before the close callback, which frees. */
  uv_close(handle, uvchan__on_close);
  (void)uvchan__net_wait(&w, UINT64_MAX); /* the close callback always comes: never abandoned */
  return 0;
}
