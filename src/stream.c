/* Streams as channels: buffers and pools, the reader (stream -> channel), the writer (channel ->
 * stream) and the splitters (buffers -> lines or frames).
 *
 * Each object is a pipeline node of kind UVCHAN__PNODE_EXT (src/pipeline.h): the shared code
 * delivers its end and close notices, runs the pipeline group and the context's shutdown; this
 * file gives the hooks. Like a stage, an object is driven by the callbacks of its own requests
 * (one receive or one send at a time) and by libuv's callbacks, and each of them "pumps": moves
 * data with try-operations as far as it goes, within a budget, and parks one request where it
 * must wait. Custody is as in pipeline.c: every buffer is in exactly one place (a channel, a
 * request's value, the object's hands), and an early end decides at once the fate of what the
 * object holds; callbacks that come back later only count down `busy`.
 *
 * The streams: readers and writers use the network layer's per-stream state (src/net.h), the one
 * that task calls use, found from the handle in the thread's table. A reader marks it
 * UVCHAN__NET_ADAPT_RD and a writer UVCHAN__NET_ADAPT_WR (task reads or writes of the stream then
 * get UV_EBUSY); both hang their pointers on st->ext. The writer queues bytes with
 * uvchan__st_write_some() under the state's high-water mark and learns of room through
 * st->room_cb; st->gone_cb tells both when the state goes away under them (the handle closed by
 * a task or the application, the context shutting down). When they close they hand the state
 * back (uvchan__st_put), which frees it once nothing else uses it: a server's connections come
 * and go without leaving states behind. */
#include "uvchan-internal.h"

#include <stdlib.h>

#define UVCHAN__POOL_MAGIC 0x75706f6cu /* "upol" */

/* Values a pump moves with try-operations before it parks a request (which completes at once if
 * ready, but from the loop), so that a busy stream lets the loop deliver other work. */
#define UVCHAN__IO_BUDGET 64

/* Flags of the objects (flags_), above the user's. */
enum {
  UVCHAN__IO_USER = UVCHAN_LEAVE_OPEN | UVCHAN_LINES_KEEP_EOL,
  UVCHAN__IO_OWN = 1u << 16,     /* the object opened its own handle (own_) */
  UVCHAN__IO_FS = 1u << 17,      /* a file descriptor read or written with uv_fs_* */
  UVCHAN__IO_READING = 1u << 18  /* uv_read_start() is in effect for the reader */
};

/* What an object waits for (waiting_). */
enum {
  UVCHAN__W_SEND = 1u << 0, /* its send request */
  UVCHAN__W_RECV = 1u << 1, /* its receive request */
  UVCHAN__W_FS = 1u << 2,   /* a uv_fs_read() or uv_fs_write() */
  UVCHAN__W_ROOM = 1u << 3, /* the stream's queue to come below the mark (room_cb) */
  UVCHAN__W_SHUT = 1u << 4  /* uv_shutdown() */
};

/* ==== buffers and pools ==== */

/* The header in front of a buffer's bytes. 32 bytes on 64-bit systems: the bytes stay 16-byte
 * aligned as malloc's are. */
typedef struct uvchan__blk_s {
  uvchan_pool_t* pool; /* NULL: a heap block of exactly `cap` bytes */
  struct uvchan__blk_s* next; /* in its pool's free list */
  size_t refs;
  size_t cap;
} uvchan__blk_t;

#define UVCHAN__BLK_DATA(b) ((char*)(b) + sizeof(uvchan__blk_t))

static int uvchan__pool_ok(const uvchan_pool_t* pool) {
  return pool != NULL && UVCHAN__MAGIC_IS(pool, UVCHAN__POOL_MAGIC);
}

int uvchan_pool_init(uvchan_pool_t* pool, size_t block_size, size_t max_cached) {
  if (pool == NULL || block_size == 0 || block_size > ((size_t)1 << 30))
    return UV_EINVAL;
  if (UVCHAN__MAGIC_IS(pool, UVCHAN__POOL_MAGIC))
    return UV_EBUSY;
  memset(pool, 0, sizeof(*pool));
  pool->block_size = block_size;
  pool->max_cached = max_cached;
  pool->magic_ = UVCHAN__POOL_MAGIC;
  return 0;
}

int uvchan_pool_destroy(uvchan_pool_t* pool) {
  uvchan__blk_t* b;
  if (!uvchan__pool_ok(pool))
    return UV_EINVAL;
  /* A reader or splitter still open would take blocks from a dead pool, and cache them there
   * when they come back: memory nobody frees. */
  if (pool->outstanding != 0 || pool->users_ != 0)
    return UV_EBUSY;
  while ((b = pool->free_) != NULL) {
    pool->free_ = b->next;
    free(b);
  }
  pool->cached = 0;
  pool->magic_ = 0;
  return 0;
}

static uvchan__blk_t* uvchan__pool_get(uvchan_pool_t* pool) {
  uvchan__blk_t* b = (uvchan__blk_t*)pool->free_;
  if (b != NULL) {
    pool->free_ = b->next;
    pool->cached--;
  } else {
    b = malloc(sizeof(*b) + pool->block_size);
    if (b == NULL)
      return NULL;
    b->pool = pool;
    b->cap = pool->block_size;
  }
  b->refs = 1;
  pool->outstanding++;
  return b;
}

static void uvchan__blk_put(uvchan__blk_t* b) {
  uvchan_pool_t* pool;
  if (--b->refs != 0)
    return;
  pool = b->pool;
  if (pool == NULL) {
    free(b);
    return;
  }
  pool->outstanding--;
  if (pool->cached < pool->max_cached) {
    b->next = (uvchan__blk_t*)pool->free_;
    pool->free_ = b;
    pool->cached++;
  } else {
    free(b);
  }
}

/* A buffer of `len` bytes from `pool` when it fits its blocks, else from the heap. */
static int uvchan__buf_make(uvchan_pool_t* pool, size_t len, uvchan_buf_t* buf) {
  uvchan__blk_t* b;
  if (pool != NULL && len <= pool->block_size) {
    b = uvchan__pool_get(pool);
  } else {
    if (len > SIZE_MAX - sizeof(*b))
      return UV_ENOMEM;
    b = malloc(sizeof(*b) + len);
    if (b != NULL) {
      b->pool = NULL;
      b->cap = len;
      b->refs = 1;
    }
  }
  if (b == NULL)
    return UV_ENOMEM;
  buf->base = UVCHAN__BLK_DATA(b);
  buf->len = len;
  buf->blk_ = b;
  return 0;
}

int uvchan_buf_alloc(uvchan_pool_t* pool, size_t len, uvchan_buf_t* buf) {
  if (buf == NULL || (pool != NULL && (!uvchan__pool_ok(pool) || len > pool->block_size)))
    return UV_EINVAL;
  return uvchan__buf_make(pool, len, buf);
}

int uvchan_buf_copy(uvchan_pool_t* pool, const void* data, size_t len, uvchan_buf_t* buf) {
  int err;
  if (data == NULL && len > 0)
    return UV_EINVAL;
  if ((err = uvchan_buf_alloc(pool, len, buf)) != 0)
    return err;
  if (len > 0)
    memcpy(buf->base, data, len);
  return 0;
}

int uvchan_buf_ref(const uvchan_buf_t* buf, uvchan_buf_t* ref) {
  if (buf == NULL || ref == NULL || buf->blk_ == NULL)
    return UV_EINVAL;
  ((uvchan__blk_t*)buf->blk_)->refs++;
  *ref = *buf;
  return 0;
}

void uvchan_buf_release(uvchan_buf_t* buf) {
  if (buf == NULL || buf->blk_ == NULL)
    return;
  uvchan__blk_put((uvchan__blk_t*)buf->blk_);
  buf->base = NULL;
  buf->len = 0;
  buf->blk_ = NULL;
}

void uvchan_buf_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  uvchan_buf_release((uvchan_buf_t*)value);
}

int uvchan_buf_chan_init(uvchan_ctx_t* ctx, uvchan_t* ch, size_t capacity) {
  int err = uvchan_init(ctx, ch, sizeof(uvchan_buf_t), capacity);
  if (err == 0)
    (void)uvchan_set_destructor(ch, uvchan_buf_dtor);
  return err;
}

int uvchan_frame_encode(uvchan_pool_t* pool, unsigned header, const void* data, size_t len,
                        uvchan_buf_t* buf) {
  unsigned i;
  int err;
  if (buf == NULL || (header != 1 && header != 2 && header != 4 && header != 8) ||
      (data == NULL && len > 0) || (header < 8 && (uint64_t)len >> (8 * header) != 0) ||
      len > SIZE_MAX - header)
    return UV_EINVAL;
  if ((err = uvchan_buf_alloc(pool, header + len, buf)) != 0)
    return err;
  for (i = 0; i < header; i++)
    buf->base[i] = (char)(unsigned char)((uint64_t)len >> (8 * (header - 1 - i)));
  if (len > 0)
    memcpy(buf->base + header, data, len);
  return 0;
}

/* ==== what the objects share ==== */

/* A live channel of uvchan_buf_t of `ctx`. */
static int uvchan__buf_chan_ok(const uvchan_t* ch, const uvchan_ctx_t* ctx) {
  return uvchan__chan_ok(ch) && ch->ctx_ == ctx && ch->elem_size_ == sizeof(uvchan_buf_t);
}

/* The checks every init shares: 0 or UV_EINVAL. */
static int uvchan__io_check(uvchan_ctx_t* ctx, const void* obj, const uvchan_io_opts_t* o,
                            unsigned allowed) {
  if (!uvchan__ctx_open(ctx) || obj == NULL || (o->flags & ~allowed) != 0 ||
      uvchan__node_check_pipe(ctx, o->pipeline) != 0 ||
      (o->pool != NULL && !uvchan__pool_ok(o->pool)))
    return UV_EINVAL;
  return 0;
}

static void uvchan__io_opts(const uvchan_io_opts_t* opts, uvchan_io_opts_t* o) {
  if (opts != NULL)
    *o = *opts;
  else
    memset(o, 0, sizeof(*o));
}

/* A stream checked for an adapter: of the context's loop, a stream, open. */
static int uvchan__stream_ok(uvchan_ctx_t* ctx, const uv_stream_t* s) {
  return s != NULL && s->loop == ctx->loop && uvchan__is_stream_type(s->type) &&
         !uv_is_closing((const uv_handle_t*)s);
}

/* ---- handles of their own (uvchan_*_init_fd) ---- */

/* Lives on the heap, so that a handle whose opening failed can still be closed after the init
 * call returned. */
typedef struct {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tty_t tty;
    uv_tcp_t tcp;
  } u;
  uvchan__node* node; /* whose `busy` the close counts in; NULL: nobody waits */
} uvchan__own_t;

static void uvchan__own_closed(uv_handle_t* h) {
  uvchan__own_t* own = UVCHAN__CONTAINER_OF(h, uvchan__own_t, u.handle);
  uvchan__node* node = own->node;
  free(own);
  if (node != NULL)
    uvchan__node_back(node);
}

/* Opens a handle for `fd`: 0 with `*out` (NULL for a file, to be used with uv_fs_*), or an
 * error. `readable`: the side the object uses. */
static int uvchan__own_open(uvchan_ctx_t* ctx, uv_file fd, int readable, uvchan__own_t** out) {
  uv_handle_type t;
  uvchan__own_t* own;
  int err;

  *out = NULL;
  if (fd < 0)
    return UV_EINVAL;
  t = uv_guess_handle(fd);
  if (t == UV_FILE)
    return 0;
  if (t == UV_UNKNOWN_HANDLE)
    return UV_EBADF;
  if (!uvchan__is_stream_type(t))
    return UV_EINVAL; /* a UDP socket */
  if ((own = calloc(1, sizeof(*own))) == NULL)
    return UV_ENOMEM;
  if (t == UV_TTY) {
    err = uv_tty_init(ctx->loop, &own->u.tty, fd, readable);
    if (err != 0) {
      free(own); /* uv_tty_init() leaves nothing to close when it fails */
      return err;
    }
  } else {
    err = t == UV_TCP ? uv_tcp_init(ctx->loop, &own->u.tcp) : uv_pipe_init(ctx->loop, &own->u.pipe, 0);
    if (err != 0) {
      free(own);
      return err;
    }
    err = t == UV_TCP ? uv_tcp_open(&own->u.tcp, fd) : uv_pipe_open(&own->u.pipe, fd);
    if (err != 0) {
      own->u.handle.data = (void*)&uvchan__handle_tag;
      uv_close(&own->u.handle, uvchan__own_closed); /* frees it; nobody waits */
      return err;
    }
  }
  own->u.handle.data = (void*)&uvchan__handle_tag; /* uvchan's: uv_walk() closers skip it */
  *out = own;
  return 0;
}

/* Closes an object's own handle; the close counts in its `busy`. */
static void uvchan__own_close(uvchan__node* node, uv_stream_t* s) {
  uvchan__own_t* own = UVCHAN__CONTAINER_OF(s, uvchan__own_t, u.stream);
  own->node = node;
  node->busy++;
  uv_close(&own->u.handle, uvchan__own_closed);
}

/* ---- the stream's state: one per stream, shared with the task calls ---- */

typedef struct {
  uvchan_reader_t* rd;
  uvchan_writer_t* wr;
} uvchan__sio_t;

static void uvchan__reader_gone(uvchan_reader_t* r);
static void uvchan__writer_gone(uvchan_writer_t* w);
static void uvchan__writer_room(uvchan__netst_t* st);

/* The state went away (net.c's gone_cb): both adapters let go of it and of the stream. */
static void uvchan__sio_gone(uvchan__netst_t* st) {
  uvchan__sio_t* sio = (uvchan__sio_t*)st->ext;
  st->ext = NULL;
  st->room_cb = NULL;
  st->flags &= ~(UVCHAN__NET_ADAPT_RD | UVCHAN__NET_ADAPT_WR);
  if (sio == NULL)
    return;
  if (sio->rd != NULL)
    uvchan__reader_gone(sio->rd);
  if (sio->wr != NULL)
    uvchan__writer_gone(sio->wr);
  free(sio);
}

/* Attaches a reader (`wr` NULL) or a writer to the state of `s`. */
static int uvchan__sio_attach(uvchan_ctx_t* ctx, uv_stream_t* s, uvchan_reader_t* rd,
                              uvchan_writer_t* wr, uvchan__netst_t** out) {
  uvchan__netst_t* st;
  uvchan__sio_t* sio;
  int err;

  if ((err = uvchan__st_get(ctx, (uv_handle_t*)s, &st)) != 0)
    return err;
  if (rd != NULL) {
    if ((st->flags & UVCHAN__NET_ADAPT_RD) || st->rd != NULL) {
      err = UV_EBUSY; /* another reader, or a task waiting in a read */
    } else if (st->flags & UVCHAN__NET_READING) {
      uvchan__st_stop_reading(st); /* left started by the task calls, with no reader waiting */
    } else if (uvchan__app_reads(s)) {
      err = UV_EBUSY;
    }
  } else if ((st->flags & UVCHAN__NET_ADAPT_WR) || st->wr != NULL) {
    err = UV_EBUSY;
  }
  sio = (uvchan__sio_t*)st->ext;
  if (err == 0 && sio == NULL && (sio = calloc(1, sizeof(*sio))) == NULL)
    err = UV_ENOMEM;
  if (err != 0) {
    if (st->ext == NULL)
      uvchan__st_put(st); /* created for nothing (or used by tasks: then it stays) */
    return err;
  }
  st->ext = sio;
  st->gone_cb = uvchan__sio_gone;
  if (rd != NULL) {
    sio->rd = rd;
    st->flags |= UVCHAN__NET_ADAPT_RD;
  } else {
    sio->wr = wr;
    st->flags |= UVCHAN__NET_ADAPT_WR;
    st->room_cb = uvchan__writer_room;
  }
  *out = st;
  return 0;
}

/* Detaches the reader (`writer` 0) or the writer; the last one hands the state back. */
static void uvchan__sio_detach(uvchan__netst_t* st, int writer) {
  uvchan__sio_t* sio = (uvchan__sio_t*)st->ext;
  if (writer) {
    sio->wr = NULL;
    st->room_cb = NULL;
    st->flags &= ~UVCHAN__NET_ADAPT_WR;
  } else {
    sio->rd = NULL;
    st->flags &= ~UVCHAN__NET_ADAPT_RD;
  }
  if (sio->rd == NULL && sio->wr == NULL) {
    free(sio);
    uvchan__st_put(st);
  }
}

/* A reader's or writer's closing hook: lets go of the stream's state, and closes the handle it
 * opened itself (the *_init_fd forms). */
static void uvchan__io_closing(uvchan__node* node, void** st, unsigned* flags, uv_stream_t* stream,
                               int writer) {
  if (*st != NULL) {
    uvchan__sio_detach((uvchan__netst_t*)*st, writer);
    *st = NULL;
  }
  if (*flags & UVCHAN__IO_OWN) {
    *flags &= ~UVCHAN__IO_OWN;
    uvchan__own_close(node, stream);
  }
}

/* At the start of a reader or writer of a stream: whether the stream's state went away before
 * (gone_cb could not end an object that was not running yet: its start ends it, UV_ECANCELED).
 * Once running, the object ends in gone_cb, so nothing else needs to check. */
static int uvchan__io_lost(unsigned flags, const void* st) {
  return !(flags & UVCHAN__IO_FS) && st == NULL;
}

/* The reader or writer of a stream, from libuv's callbacks (which give only the handle). */
static uvchan__sio_t* uvchan__sio_of(const void* handle) {
  uvchan__netst_t* st = uvchan__st_find(handle);
  return st != NULL ? (uvchan__sio_t*)st->ext : NULL;
}

/* ==== reader ==== */

static void uvchan__reader_fs_next(uvchan_reader_t* r);
static void uvchan__reader_on_sent(uvchan_send_t* req, int status);

static void uvchan__reader_stop(uvchan_reader_t* r) {
  if (r->flags_ & UVCHAN__IO_READING) {
    r->flags_ &= ~UVCHAN__IO_READING;
    uv_read_stop(r->stream);
  }
}

/* The reader ends with `status` (0: the end of the stream): it stops reading, releases the
 * buffer a waiting send holds unless the channel took it, and closes its channel. A read in
 * flight on a file keeps its block until its callback. */
static void uvchan__reader_end(uvchan_reader_t* r, int status) {
  int c;
  if (r->node_.state != UVCHAN__N_RUNNING)
    return;
  r->node_.state = UVCHAN__N_ENDED; /* nothing below pumps again */
  r->status = status;
  uvchan__reader_stop(r);
  if (r->waiting_ & UVCHAN__W_SEND) {
    c = uvchan_cancel((uvchan_req_t*)&r->send_);
    if (c == 0 || r->send_.status != 0)
      uvchan_buf_release(&r->pending_); /* not taken */
    else
      memset(&r->pending_, 0, sizeof(r->pending_)); /* the channel has it */
  }
  if (!(r->flags_ & UVCHAN_LEAVE_OPEN))
    (void)uvchan_close(r->out_); /* UV_EPIPE: closed already; nothing is lost */
  uvchan__node_end(&r->node_, status);
}

static void uvchan__reader_abort(uvchan__node* node, int status) {
  uvchan__reader_end(UVCHAN__CONTAINER_OF(node, uvchan_reader_t, node_), status);
}

static void uvchan__reader_gone(uvchan_reader_t* r) {
  uvchan__reader_stop(r); /* the handle is still valid during the gone callback */
  r->st_ = NULL;
  uvchan__reader_end(r, UV_ECANCELED);
}

static void uvchan__reader_on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  uvchan__sio_t* sio = uvchan__sio_of(h);
  uvchan__blk_t* b;
  (void)suggested;
  if (sio == NULL || sio->rd == NULL || (b = uvchan__pool_get(sio->rd->pool_)) == NULL) {
    *buf = uv_buf_init(NULL, 0); /* the read callback gets UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(UVCHAN__BLK_DATA(b), (unsigned)(b->cap > UINT32_MAX ? UINT32_MAX : b->cap));
}

/* Hands a filled buffer to the channel: at once, or through a send that waits (then reading
 * stops until it completes). Returns 1 when reading must stop. */
static int uvchan__reader_put(uvchan_reader_t* r, uvchan_buf_t* b) {
  int err = uvchan__try_send(r->out_, b);
  if (UVCHAN__LIKELY(err == 0))
    return 0;
  if (err == UV_EAGAIN) {
    r->pending_ = *b;
    err = uvchan_send(&r->send_, r->out_, &r->pending_, uvchan__reader_on_sent);
    if (err == 0) {
      r->waiting_ |= UVCHAN__W_SEND;
      r->node_.busy++;
      return 1;
    }
    b = &r->pending_; /* the one reference, whether b was a copy or (a file's block) pending_ */
  }
  uvchan_buf_release(b);
  uvchan__reader_end(r, uvchan__gone(err)); /* UV_EPIPE: the consumer closed the channel */
  return 1;
}

void uvchan__reader_on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  uvchan__sio_t* sio = uvchan__sio_of(s);
  uvchan_reader_t* r = sio != NULL ? sio->rd : NULL;
  uvchan__blk_t* blk = buf->base != NULL ? (uvchan__blk_t*)(buf->base - sizeof(uvchan__blk_t)) : NULL;
  uvchan_buf_t b;

  if (UVCHAN__UNLIKELY(r == NULL || r->node_.state != UVCHAN__N_RUNNING)) {
    if (blk != NULL) /* not expected: reading stops with the reader */
      uvchan__blk_put(blk);
    uv_read_stop(s);
    return;
  }
  if (UVCHAN__LIKELY(nread > 0)) {
    b.base = buf->base;
    b.len = (size_t)nread;
    b.blk_ = blk;
    r->bytes += (uint64_t)nread;
    if (uvchan__reader_put(r, &b))
      uvchan__reader_stop(r); /* the channel is full: the bytes wait in the kernel */
    return;
  }
  if (blk != NULL)
    uvchan__blk_put(blk);
  if (nread == 0)
    return; /* EAGAIN */
  if (nread == UV_EOF)
    uvchan__reader_end(r, 0);
  else
    uvchan__reader_end(r, nread == UV_ENOBUFS ? UV_ENOMEM : (int)nread);
}

/* Reads on: the stream again, or the next block of a file. */
static void uvchan__reader_resume(uvchan_reader_t* r) {
  int err;
  if (r->flags_ & UVCHAN__IO_FS) {
    uvchan__reader_fs_next(r);
    return;
  }
  err = uv_read_start(r->stream, uvchan__reader_on_alloc, uvchan__reader_on_read);
  if (err != 0) {
    uvchan__reader_end(r, err);
    return;
  }
  r->flags_ |= UVCHAN__IO_READING;
}

static void uvchan__reader_on_sent(uvchan_send_t* req, int status) {
  uvchan_reader_t* r = UVCHAN__CONTAINER_OF(req, uvchan_reader_t, send_);
  r->node_.busy--;
  r->waiting_ &= ~UVCHAN__W_SEND;
  if (r->node_.state != UVCHAN__N_RUNNING) { /* the end decided the buffer's fate */
    uvchan__node_maybe_closed(&r->node_);
    return;
  }
  if (status != 0) {
    uvchan_buf_release(&r->pending_);
    uvchan__reader_end(r, status);
    return;
  }
  memset(&r->pending_, 0, sizeof(r->pending_));
  uvchan__reader_resume(r);
}

static void uvchan__reader_on_fs(uv_fs_t* fs) {
  uvchan_reader_t* r = fs->data;
  ssize_t n = fs->result;
  uv_fs_req_cleanup(fs);
  r->node_.busy--;
  r->waiting_ &= ~UVCHAN__W_FS;
  if (r->node_.state != UVCHAN__N_RUNNING || n <= 0) {
    uvchan_buf_release(&r->pending_);
    if (r->node_.state == UVCHAN__N_RUNNING)
      uvchan__reader_end(r, (int)n); /* 0: the end of the file */
    else
      uvchan__node_maybe_closed(&r->node_);
    return;
  }
  r->pending_.len = (size_t)n;
  r->bytes += (uint64_t)n;
  if (!uvchan__reader_put(r, &r->pending_)) {
    memset(&r->pending_, 0, sizeof(r->pending_));
    uvchan__reader_fs_next(r);
  }
}

/* One read of a file into a new block (its callback comes from the loop). */
static void uvchan__reader_fs_next(uvchan_reader_t* r) {
  uv_buf_t b;
  int err = uvchan__buf_make(r->pool_, r->pool_->block_size, &r->pending_);
  if (err == 0) {
    b = uv_buf_init(r->pending_.base, (unsigned)(r->pending_.len > UINT32_MAX ? UINT32_MAX
                                                                               : r->pending_.len));
    r->fs_->data = r;
    err = uv_fs_read(r->node_.ctx->loop, r->fs_, r->fd_, &b, 1, -1, uvchan__reader_on_fs);
    if (err == 0) {
      r->waiting_ |= UVCHAN__W_FS;
      r->node_.busy++;
      return;
    }
    uvchan_buf_release(&r->pending_);
  }
  uvchan__reader_end(r, err);
}

static void uvchan__reader_start_hook(uvchan__node* node) {
  uvchan_reader_t* r = UVCHAN__CONTAINER_OF(node, uvchan_reader_t, node_);
  if (uvchan__io_lost(r->flags_, r->st_)) {
    uvchan__reader_end(r, UV_ECANCELED);
    return;
  }
  uvchan__reader_resume(r);
}

static void uvchan__reader_closing(uvchan__node* node) {
  uvchan_reader_t* r = UVCHAN__CONTAINER_OF(node, uvchan_reader_t, node_);
  uvchan__io_closing(node, &r->st_, &r->flags_, r->stream, 0);
}

static void uvchan__reader_release(uvchan__node* node) {
  uvchan_reader_t* r = UVCHAN__CONTAINER_OF(node, uvchan_reader_t, node_);
  free(r->fs_);
  r->fs_ = NULL;
  r->pool_->users_--; /* nothing reads into its blocks any more */
}

static void uvchan__reader_call_end(uvchan__node* node, void (*cb)(void), int status) {
  ((uvchan_reader_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_reader_t, node_), status);
}

static void uvchan__reader_call_close(uvchan__node* node, void (*cb)(void)) {
  ((uvchan_reader_close_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_reader_t, node_));
}

static const struct uvchan__pnode_ops_s uvchan__reader_ops = {
    uvchan__reader_start_hook, uvchan__reader_abort, uvchan__reader_closing,
    uvchan__reader_release, uvchan__reader_call_end, uvchan__reader_call_close};

static int uvchan__reader_ok(const uvchan_reader_t* r) {
  return r != NULL && uvchan__node_ok(&r->node_, UVCHAN__PNODE_EXT) &&
         r->node_.ops == &uvchan__reader_ops;
}

/* The checks of both reader inits, up to the point where something is created. */
static int uvchan__reader_check(uvchan_ctx_t* ctx, uvchan_reader_t* r, uvchan_t* out,
                                uvchan_pool_t* pool, const uvchan_io_opts_t* o) {
  if (uvchan__io_check(ctx, r, o, UVCHAN_LEAVE_OPEN) != 0 || !uvchan__pool_ok(pool) ||
      !uvchan__buf_chan_ok(out, ctx))
    return UV_EINVAL;
  return uvchan__node_gate(ctx, &r->node_);
}

static void uvchan__reader_setup(uvchan_ctx_t* ctx, uvchan_reader_t* r, uvchan_t* out,
                                 uvchan_pool_t* pool, const uvchan_io_opts_t* o) {
  r->out_ = out;
  r->pool_ = pool;
  pool->users_++;
  r->fd_ = -1;
  r->flags_ |= o->flags;
  uvchan__node_init(&r->node_, ctx, UVCHAN__PNODE_EXT, o->pipeline, &uvchan__reader_ops);
}

int uvchan_reader_init(uvchan_ctx_t* ctx, uvchan_reader_t* reader, uv_stream_t* stream,
                       uvchan_t* out, uvchan_pool_t* pool, const uvchan_io_opts_t* opts) {
  uvchan__netst_t* st;
  uvchan_io_opts_t o;
  int err;

  uvchan__io_opts(opts, &o);
  if ((err = uvchan__reader_check(ctx, reader, out, pool, &o)) != 0)
    return err;
  if (!uvchan__stream_ok(ctx, stream) ||
      (stream->type == UV_NAMED_PIPE && ((uv_pipe_t*)stream)->ipc))
    return UV_EINVAL;
  memset(reader, 0, sizeof(*reader));
  if ((err = uvchan__sio_attach(ctx, stream, reader, NULL, &st)) != 0)
    return err;
  reader->stream = stream;
  reader->st_ = st;
  uvchan__reader_setup(ctx, reader, out, pool, &o);
  return 0;
}

int uvchan_reader_init_fd(uvchan_ctx_t* ctx, uvchan_reader_t* reader, uv_file fd, uvchan_t* out,
                          uvchan_pool_t* pool, const uvchan_io_opts_t* opts) {
  uvchan__netst_t* st;
  uvchan__own_t* own;
  uvchan_io_opts_t o;
  int err;

  uvchan__io_opts(opts, &o);
  if ((err = uvchan__reader_check(ctx, reader, out, pool, &o)) != 0)
    return err;
  if ((err = uvchan__own_open(ctx, fd, 1, &own)) != 0)
    return err;
  memset(reader, 0, sizeof(*reader));
  if (own == NULL) {
    if ((reader->fs_ = malloc(sizeof(uv_fs_t))) == NULL)
      return UV_ENOMEM;
    reader->flags_ = UVCHAN__IO_FS;
  } else {
    if ((err = uvchan__sio_attach(ctx, &own->u.stream, reader, NULL, &st)) != 0) {
      uv_close(&own->u.handle, uvchan__own_closed);
      return err;
    }
    reader->stream = &own->u.stream;
    reader->st_ = st;
    reader->flags_ = UVCHAN__IO_OWN;
  }
  uvchan__reader_setup(ctx, reader, out, pool, &o);
  reader->fd_ = fd;
  return 0;
}

int uvchan_reader_start(uvchan_reader_t* reader, uvchan_reader_cb cb) {
  if (!uvchan__reader_ok(reader))
    return UV_EINVAL;
  return uvchan__node_ext_start(&reader->node_, (void (*)(void))cb);
}

int uvchan_reader_close(uvchan_reader_t* reader, uvchan_reader_close_cb cb) {
  if (!uvchan__reader_ok(reader))
    return UV_EINVAL;
  return uvchan__node_close(&reader->node_, (void (*)(void))cb);
}

/* ==== writer ==== */

static void uvchan__writer_pump(uvchan_writer_t* w);
static void uvchan__writer_on_recv(uvchan_recv_t* req, int status);

/* The writer ends with `status`: it releases the buffer it holds (unless a file write still
 * uses it: its callback releases it), and an early end closes its channel so that senders learn
 * that nobody drains it any more. */
static void uvchan__writer_end(uvchan_writer_t* w, int status) {
  int c;
  if (w->node_.state != UVCHAN__N_RUNNING)
    return;
  w->node_.state = UVCHAN__N_ENDED;
  w->status = status;
  if (w->waiting_ & UVCHAN__W_RECV) {
    c = uvchan_cancel((uvchan_req_t*)&w->recv_);
    (void)c; /* UV_EBUSY with status 0: a buffer arrived in cur_, released below */
  }
  w->waiting_ &= ~UVCHAN__W_ROOM;
  if (!(w->waiting_ & UVCHAN__W_FS))
    uvchan_buf_release(&w->cur_);
  if (status != 0 && !(w->flags_ & UVCHAN_LEAVE_OPEN))
    (void)uvchan_close(w->in_);
  uvchan__node_end(&w->node_, status);
}

static void uvchan__writer_abort(uvchan__node* node, int status) {
  uvchan__writer_end(UVCHAN__CONTAINER_OF(node, uvchan_writer_t, node_), status);
}

static void uvchan__writer_gone(uvchan_writer_t* w) {
  w->st_ = NULL;
  uvchan__writer_end(w, UV_ECANCELED);
}

/* Net's room callback: the stream's queue came below the mark, or a queued write failed. */
static void uvchan__writer_room(uvchan__netst_t* st) {
  uvchan_writer_t* w = ((uvchan__sio_t*)st->ext)->wr;
  if (w != NULL && (w->waiting_ & UVCHAN__W_ROOM)) {
    w->waiting_ &= ~UVCHAN__W_ROOM;
    uvchan__writer_pump(w);
  }
}

static void uvchan__writer_wait_input(uvchan_writer_t* w) {
  int err = uvchan_recv(&w->recv_, w->in_, &w->cur_, uvchan__writer_on_recv);
  if (err != 0) {
    uvchan__writer_end(w, uvchan__gone(err));
    return;
  }
  w->waiting_ |= UVCHAN__W_RECV;
  w->node_.busy++;
}

static void uvchan__writer_on_shut(uv_shutdown_t* req, int status) {
  uvchan_writer_t* w = UVCHAN__CONTAINER_OF(req, uvchan_writer_t, shut_);
  uvchan__netst_t* st = (uvchan__netst_t*)w->st_;
  w->node_.busy--;
  w->waiting_ &= ~UVCHAN__W_SHUT;
  if (w->node_.state != UVCHAN__N_RUNNING) {
    uvchan__node_maybe_closed(&w->node_);
    return;
  }
  if (status == UV_ENOTSOCK)
    status = 0; /* a pipe or a TTY: no write side to shut; the reader sees EOF at the close */
  if (st != NULL && st->werr != 0)
    status = st->werr; /* a queued write failed first */
  uvchan__writer_end(w, status);
}

/* The channel is closed and drained: shut the write side down after the queued bytes. */
static void uvchan__writer_eof(uvchan_writer_t* w) {
  uvchan__netst_t* st = (uvchan__netst_t*)w->st_;
  int err;
  if (w->flags_ & UVCHAN__IO_FS) {
    uvchan__writer_end(w, 0);
    return;
  }
  if (st->werr != 0) {
    uvchan__writer_end(w, st->werr);
    return;
  }
  err = uv_shutdown(&w->shut_, w->stream, uvchan__writer_on_shut);
  if (err != 0) {
    uvchan__writer_end(w, err);
    return;
  }
  w->waiting_ |= UVCHAN__W_SHUT;
  w->node_.busy++;
}

static void uvchan__writer_on_fs(uv_fs_t* fs) {
  uvchan_writer_t* w = fs->data;
  ssize_t n = fs->result;
  uv_fs_req_cleanup(fs);
  w->node_.busy--;
  w->waiting_ &= ~UVCHAN__W_FS;
  if (w->node_.state != UVCHAN__N_RUNNING) {
    uvchan_buf_release(&w->cur_); /* the end left it to this callback */
    uvchan__node_maybe_closed(&w->node_);
    return;
  }
  if (n < 0) {
    uvchan__writer_end(w, (int)n);
    return;
  }
  w->off_ += (size_t)n;
  w->bytes += (uint64_t)n;
  uvchan__writer_pump(w);
}

/* Writes the rest of cur_ to a file: one uv_fs_write() at a time. */
static void uvchan__writer_fs_write(uvchan_writer_t* w) {
  size_t left = w->cur_.len - w->off_;
  uv_buf_t b = uv_buf_init(w->cur_.base + w->off_, (unsigned)(left > UINT32_MAX ? UINT32_MAX : left));
  int err;
  w->fs_->data = w;
  err = uv_fs_write(w->node_.ctx->loop, w->fs_, w->fd_, &b, 1, -1, uvchan__writer_on_fs);
  if (err != 0) {
    uvchan__writer_end(w, err);
    return;
  }
  w->waiting_ |= UVCHAN__W_FS;
  w->node_.busy++;
}

/* Writes what it holds, takes the next buffer while the queue is below the mark, parks a receive
 * or waits for room. The writes never call back inside this call (uv_try_write() and uv_write()
 * do not), so it is never re-entered. */
static void uvchan__writer_pump(uvchan_writer_t* w) {
  uvchan__netst_t* st = (uvchan__netst_t*)w->st_;
  unsigned budget = UVCHAN__IO_BUDGET;
  ssize_t n;
  int err;

  while (w->node_.state == UVCHAN__N_RUNNING) {
    if (w->flags_ & UVCHAN__IO_FS) {
      if (w->cur_.len > w->off_) {
        uvchan__writer_fs_write(w);
        return;
      }
    } else {
      if (UVCHAN__UNLIKELY(st->werr != 0)) {
        uvchan__writer_end(w, st->werr);
        return;
      }
      if (st->queued >= st->hwm) { /* neither more bytes nor the next buffer: room_cb */
        w->waiting_ |= UVCHAN__W_ROOM;
        return;
      }
      if (w->cur_.len > w->off_) {
        n = uvchan__st_write_some(st, w->cur_.base + w->off_, w->cur_.len - w->off_);
        if (n < 0) {
          uvchan__writer_end(w, (int)n);
          return;
        }
        w->off_ += (size_t)n;
        w->bytes += (uint64_t)n;
        continue;
      }
    }
    uvchan_buf_release(&w->cur_);
    w->off_ = 0;
    if (budget-- == 0) {
      uvchan__writer_wait_input(w);
      return;
    }
    err = uvchan__try_recv(w->in_, &w->cur_);
    if (err == 0)
      continue;
    if (err == UV_EAGAIN)
      uvchan__writer_wait_input(w);
    else if (err == UV_EOF)
      uvchan__writer_eof(w);
    else
      uvchan__writer_end(w, uvchan__gone(err));
    return;
  }
}

static void uvchan__writer_on_recv(uvchan_recv_t* req, int status) {
  uvchan_writer_t* w = UVCHAN__CONTAINER_OF(req, uvchan_writer_t, recv_);
  w->node_.busy--;
  w->waiting_ &= ~UVCHAN__W_RECV;
  if (w->node_.state != UVCHAN__N_RUNNING) {
    uvchan_buf_release(&w->cur_); /* arrived after the end: not written */
    uvchan__node_maybe_closed(&w->node_);
    return;
  }
  if (status == 0) {
    w->off_ = 0;
    uvchan__writer_pump(w);
  } else if (status == UV_EOF) {
    uvchan__writer_eof(w);
  } else {
    uvchan__writer_end(w, status);
  }
}

static void uvchan__writer_start_hook(uvchan__node* node) {
  uvchan_writer_t* w = UVCHAN__CONTAINER_OF(node, uvchan_writer_t, node_);
  if (uvchan__io_lost(w->flags_, w->st_)) {
    uvchan__writer_end(w, UV_ECANCELED);
    return;
  }
  /* The first buffer comes through a request: nothing is written inside the start call. */
  uvchan__writer_wait_input(w);
}

static void uvchan__writer_closing(uvchan__node* node) {
  uvchan_writer_t* w = UVCHAN__CONTAINER_OF(node, uvchan_writer_t, node_);
  uvchan__io_closing(node, &w->st_, &w->flags_, w->stream, 1);
}

static void uvchan__writer_release(uvchan__node* node) {
  uvchan_writer_t* w = UVCHAN__CONTAINER_OF(node, uvchan_writer_t, node_);
  free(w->fs_);
  w->fs_ = NULL;
}

static void uvchan__writer_call_end(uvchan__node* node, void (*cb)(void), int status) {
  ((uvchan_writer_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_writer_t, node_), status);
}

static void uvchan__writer_call_close(uvchan__node* node, void (*cb)(void)) {
  ((uvchan_writer_close_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_writer_t, node_));
}

static const struct uvchan__pnode_ops_s uvchan__writer_ops = {
    uvchan__writer_start_hook, uvchan__writer_abort, uvchan__writer_closing,
    uvchan__writer_release, uvchan__writer_call_end, uvchan__writer_call_close};

static int uvchan__writer_ok(const uvchan_writer_t* w) {
  return w != NULL && uvchan__node_ok(&w->node_, UVCHAN__PNODE_EXT) &&
         w->node_.ops == &uvchan__writer_ops;
}

static int uvchan__writer_check(uvchan_ctx_t* ctx, uvchan_writer_t* w, uvchan_t* in,
                                const uvchan_io_opts_t* o) {
  if (uvchan__io_check(ctx, w, o, UVCHAN_LEAVE_OPEN) != 0 || !uvchan__buf_chan_ok(in, ctx))
    return UV_EINVAL;
  return uvchan__node_gate(ctx, &w->node_);
}

static void uvchan__writer_setup(uvchan_ctx_t* ctx, uvchan_writer_t* w, uvchan_t* in,
                                 const uvchan_io_opts_t* o) {
  w->in_ = in;
  w->flags_ |= o->flags;
  if (w->st_ != NULL && o->hwm != 0)
    ((uvchan__netst_t*)w->st_)->hwm = o->hwm;
  uvchan__node_init(&w->node_, ctx, UVCHAN__PNODE_EXT, o->pipeline, &uvchan__writer_ops);
}

int uvchan_writer_init(uvchan_ctx_t* ctx, uvchan_writer_t* writer, uvchan_t* in,
                       uv_stream_t* stream, const uvchan_io_opts_t* opts) {
  uvchan__netst_t* st;
  uvchan_io_opts_t o;
  int err;

  uvchan__io_opts(opts, &o);
  if ((err = uvchan__writer_check(ctx, writer, in, &o)) != 0)
    return err;
  if (!uvchan__stream_ok(ctx, stream))
    return UV_EINVAL;
  memset(writer, 0, sizeof(*writer));
  if ((err = uvchan__sio_attach(ctx, stream, NULL, writer, &st)) != 0)
    return err;
  writer->stream = stream;
  writer->st_ = st;
  writer->fd_ = -1;
  uvchan__writer_setup(ctx, writer, in, &o);
  return 0;
}

int uvchan_writer_init_fd(uvchan_ctx_t* ctx, uvchan_writer_t* writer, uvchan_t* in, uv_file fd,
                          const uvchan_io_opts_t* opts) {
  uvchan__netst_t* st;
  uvchan__own_t* own;
  uvchan_io_opts_t o;
  int err;

  uvchan__io_opts(opts, &o);
  if ((err = uvchan__writer_check(ctx, writer, in, &o)) != 0)
    return err;
  if ((err = uvchan__own_open(ctx, fd, 0, &own)) != 0)
    return err;
  memset(writer, 0, sizeof(*writer));
  if (own == NULL) {
    if ((writer->fs_ = malloc(sizeof(uv_fs_t))) == NULL)
      return UV_ENOMEM;
    writer->flags_ = UVCHAN__IO_FS;
  } else {
    if ((err = uvchan__sio_attach(ctx, &own->u.stream, NULL, writer, &st)) != 0) {
      uv_close(&own->u.handle, uvchan__own_closed);
      return err;
    }
    writer->stream = &own->u.stream;
    writer->st_ = st;
    writer->flags_ = UVCHAN__IO_OWN;
  }
  writer->fd_ = fd;
  uvchan__writer_setup(ctx, writer, in, &o);
  return 0;
}

int uvchan_writer_start(uvchan_writer_t* writer, uvchan_writer_cb cb) {
  if (!uvchan__writer_ok(writer))
    return UV_EINVAL;
  return uvchan__node_ext_start(&writer->node_, (void (*)(void))cb);
}

int uvchan_writer_close(uvchan_writer_t* writer, uvchan_writer_close_cb cb) {
  if (!uvchan__writer_ok(writer))
    return UV_EINVAL;
  return uvchan__node_close(&writer->node_, (void (*)(void))cb);
}

/* ==== splitters ==== */

enum { UVCHAN__SPLIT_LINES = 1, UVCHAN__SPLIT_FRAMES };

static void uvchan__split_pump(uvchan_splitter_t* sp);
static void uvchan__split_on_recv(uvchan_recv_t* req, int status);
static void uvchan__split_on_sent(uvchan_send_t* req, int status);

/* The splitter ends with `status`: what it holds is released (a message the channel took is the
 * channel's), its output closed. */
static void uvchan__split_end(uvchan_splitter_t* sp, int status) {
  int c;
  if (sp->node_.state != UVCHAN__N_RUNNING)
    return;
  sp->node_.state = UVCHAN__N_ENDED;
  sp->status = status;
  if (sp->waiting_ & UVCHAN__W_RECV)
    (void)uvchan_cancel((uvchan_req_t*)&sp->recv_); /* a buffer that arrived is released below */
  if (sp->waiting_ & UVCHAN__W_SEND) {
    c = uvchan_cancel((uvchan_req_t*)&sp->send_);
    if (c != 0 && sp->send_.status == 0)
      memset(&sp->msg_, 0, sizeof(sp->msg_)); /* taken */
  }
  uvchan_buf_release(&sp->msg_);
  uvchan_buf_release(&sp->cur_);
  sp->ready_ = 0;
  sp->plen_ = 0;
  if (!(sp->flags_ & UVCHAN_LEAVE_OPEN))
    (void)uvchan_close(sp->out_);
  uvchan__node_end(&sp->node_, status);
}

static void uvchan__split_abort(uvchan__node* node, int status) {
  uvchan__split_end(UVCHAN__CONTAINER_OF(node, uvchan_splitter_t, node_), status);
}

/* A message of `len` bytes for msg_: from the pool when it fits, else the heap. */
static int uvchan__split_msg(uvchan_splitter_t* sp, size_t len) {
  return uvchan__buf_make(sp->pool_, len, &sp->msg_);
}

/* Keeps the start of a line that the input buffer ends in. */
static int uvchan__split_keep(uvchan_splitter_t* sp, const char* p, size_t n) {
  size_t cap;
  char* part;
  if (sp->plen_ + n > sp->pcap_) {
    cap = sp->pcap_ != 0 ? sp->pcap_ : 256;
    while (cap < sp->plen_ + n)
      cap *= 2;
    if (cap > sp->max_ + 1)
      cap = sp->max_ + 1; /* enough: a longer start is an error */
    if ((part = realloc(sp->part_, cap)) == NULL)
      return UV_ENOMEM;
    sp->part_ = part;
    sp->pcap_ = cap;
  }
  memcpy(sp->part_ + sp->plen_, p, n);
  sp->plen_ += n;
  return 0;
}

/* Makes the line of the `n` bytes kept plus the `n` bytes at `p` (the terminator's "\n", if any,
 * not included; `eol` says whether it was there). */
static int uvchan__split_line(uvchan_splitter_t* sp, const char* p, size_t n, int eol) {
  size_t total = sp->plen_ + n, len, k;
  char last = n > 0 ? p[n - 1] : sp->plen_ > 0 ? sp->part_[sp->plen_ - 1] : 0;
  size_t content = total - (last == '\r' && (eol || !(sp->flags_ & UVCHAN_LINES_KEEP_EOL)));
  int err;
  if (content > sp->max_)
    return UV_EMSGSIZE;
  len = (sp->flags_ & UVCHAN_LINES_KEEP_EOL) ? total + (eol ? 1 : 0) : content;
  if ((err = uvchan__split_msg(sp, len)) != 0)
    return err;
  k = sp->plen_ < len ? sp->plen_ : len;
  if (k > 0)
    memcpy(sp->msg_.base, sp->part_, k);
  if (len > k)
    memcpy(sp->msg_.base + k, p, len - k); /* for KEEP_EOL, p[n] is the "\n" */
  sp->plen_ = 0;
  sp->ready_ = 1;
  return 0;
}

/* Cuts the next line out of cur_, or keeps its start. */
static int uvchan__split_lines(uvchan_splitter_t* sp) {
  char* p = sp->cur_.base;
  size_t n = sp->cur_.len;
  char* nl = memchr(p, '\n', n);
  int err;
  if (nl != NULL) {
    err = uvchan__split_line(sp, p, (size_t)(nl - p), 1);
    sp->cur_.base = nl + 1;
    sp->cur_.len = n - (size_t)(nl - p) - 1;
    return err;
  }
  /* One byte beyond the maximum is allowed for a "\r" whose "\n" comes next. */
  if (sp->plen_ + n > sp->max_ + 1)
    return UV_EMSGSIZE;
  sp->cur_.len = 0;
  return uvchan__split_keep(sp, p, n);
}

/* Fills the frame being read from cur_: its header first, then its payload. */
static int uvchan__split_frames(uvchan_splitter_t* sp) {
  uint64_t len = 0;
  size_t take;
  unsigned i;
  int err;
  if (sp->msg_.blk_ == NULL) {
    while (sp->hlen_ < sp->header_ && sp->cur_.len > 0) {
      sp->hdr_[sp->hlen_++] = (unsigned char)*sp->cur_.base++;
      sp->cur_.len--;
    }
    if (sp->hlen_ < sp->header_)
      return 0;
    for (i = 0; i < sp->header_; i++)
      len = (len << 8) | sp->hdr_[i];
    if (len > sp->max_)
      return UV_EMSGSIZE;
    if ((err = uvchan__split_msg(sp, (size_t)len)) != 0)
      return err;
    sp->fill_ = 0;
  }
  take = sp->msg_.len - sp->fill_;
  if (take > sp->cur_.len)
    take = sp->cur_.len;
  memcpy(sp->msg_.base + sp->fill_, sp->cur_.base, take);
  sp->fill_ += take;
  sp->cur_.base += take;
  sp->cur_.len -= take;
  if (sp->fill_ == sp->msg_.len) {
    sp->hlen_ = 0;
    sp->ready_ = 1;
  }
  return 0;
}

/* The input ended: a last line without terminator, or an error for a frame cut short. */
static int uvchan__split_flush(uvchan_splitter_t* sp) {
  sp->eof_ = 1;
  if (sp->kind_ == UVCHAN__SPLIT_FRAMES)
    return sp->hlen_ > 0 || sp->msg_.blk_ != NULL ? UV_EPROTO : 0;
  if (sp->plen_ == 0)
    return 0;
  return uvchan__split_line(sp, NULL, 0, 0);
}

static void uvchan__split_wait_input(uvchan_splitter_t* sp) {
  int err = uvchan_recv(&sp->recv_, sp->in_, &sp->cur_, uvchan__split_on_recv);
  if (err != 0) {
    uvchan__split_end(sp, uvchan__gone(err));
    return;
  }
  sp->waiting_ |= UVCHAN__W_RECV;
  sp->node_.busy++;
}

static void uvchan__split_pump(uvchan_splitter_t* sp) {
  unsigned budget = UVCHAN__IO_BUDGET;
  int err;

  while (sp->node_.state == UVCHAN__N_RUNNING) {
    if (sp->ready_) {
      /* Out of budget, the message goes through the send request, which completes from the
       * loop: cur_ may still hold input, so the pump must not park a receive into it. */
      err = budget > 0 ? uvchan__try_send(sp->out_, &sp->msg_) : UV_EAGAIN;
      if (err == 0) {
        memset(&sp->msg_, 0, sizeof(sp->msg_));
        sp->ready_ = 0;
        sp->messages++;
        budget--;
        continue;
      }
      if (err == UV_EAGAIN)
        err = uvchan_send(&sp->send_, sp->out_, &sp->msg_, uvchan__split_on_sent);
      if (err == 0) {
        sp->waiting_ |= UVCHAN__W_SEND;
        sp->node_.busy++;
      } else {
        uvchan__split_end(sp, uvchan__gone(err)); /* UV_EPIPE: the consumer closed it */
      }
      return;
    }
    if (sp->eof_) {
      uvchan__split_end(sp, 0); /* holds nothing and waits for nothing now */
      return;
    }
    if (sp->cur_.len > 0) {
      err = sp->kind_ == UVCHAN__SPLIT_LINES ? uvchan__split_lines(sp) : uvchan__split_frames(sp);
      if (err != 0) {
        uvchan__split_end(sp, err);
        return;
      }
      continue;
    }
    uvchan_buf_release(&sp->cur_);
    if (budget == 0) {
      uvchan__split_wait_input(sp); /* let the loop run: go on from the input's request */
      return;
    }
    budget--;
    err = uvchan__try_recv(sp->in_, &sp->cur_);
    if (err == UV_EAGAIN) {
      uvchan__split_wait_input(sp);
      return;
    }
    if (err == UV_EOF)
      err = uvchan__split_flush(sp);
    else
      err = uvchan__gone(err);
    if (err != 0) {
      uvchan__split_end(sp, err);
      return;
    }
  }
}

static void uvchan__split_on_recv(uvchan_recv_t* req, int status) {
  uvchan_splitter_t* sp = UVCHAN__CONTAINER_OF(req, uvchan_splitter_t, recv_);
  sp->node_.busy--;
  sp->waiting_ &= ~UVCHAN__W_RECV;
  if (sp->node_.state != UVCHAN__N_RUNNING) {
    uvchan_buf_release(&sp->cur_);
    uvchan__node_maybe_closed(&sp->node_);
    return;
  }
  if (status == UV_EOF)
    status = uvchan__split_flush(sp);
  if (status != 0) {
    uvchan__split_end(sp, status);
    return;
  }
  uvchan__split_pump(sp);
}

static void uvchan__split_on_sent(uvchan_send_t* req, int status) {
  uvchan_splitter_t* sp = UVCHAN__CONTAINER_OF(req, uvchan_splitter_t, send_);
  sp->node_.busy--;
  sp->waiting_ &= ~UVCHAN__W_SEND;
  if (sp->node_.state != UVCHAN__N_RUNNING) {
    uvchan__node_maybe_closed(&sp->node_);
    return;
  }
  if (status != 0) {
    uvchan__split_end(sp, status); /* not taken: released there */
    return;
  }
  memset(&sp->msg_, 0, sizeof(sp->msg_));
  sp->ready_ = 0;
  sp->messages++;
  uvchan__split_pump(sp);
}

static void uvchan__split_start_hook(uvchan__node* node) {
  uvchan__split_wait_input(UVCHAN__CONTAINER_OF(node, uvchan_splitter_t, node_));
}

static void uvchan__split_release(uvchan__node* node) {
  uvchan_splitter_t* sp = UVCHAN__CONTAINER_OF(node, uvchan_splitter_t, node_);
  free(sp->part_);
  sp->part_ = NULL;
  sp->pcap_ = 0;
  if (sp->pool_ != NULL)
    sp->pool_->users_--;
}

static void uvchan__split_call_end(uvchan__node* node, void (*cb)(void), int status) {
  ((uvchan_splitter_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_splitter_t, node_), status);
}

static void uvchan__split_call_close(uvchan__node* node, void (*cb)(void)) {
  ((uvchan_splitter_close_cb)cb)(UVCHAN__CONTAINER_OF(node, uvchan_splitter_t, node_));
}

static const struct uvchan__pnode_ops_s uvchan__split_ops = {
    uvchan__split_start_hook, uvchan__split_abort, NULL, uvchan__split_release,
    uvchan__split_call_end, uvchan__split_call_close};

static int uvchan__split_ok(const uvchan_splitter_t* sp) {
  return sp != NULL && uvchan__node_ok(&sp->node_, UVCHAN__PNODE_EXT) &&
         sp->node_.ops == &uvchan__split_ops;
}

static int uvchan__split_init(uvchan_ctx_t* ctx, uvchan_splitter_t* sp, uvchan_t* in,
                              uvchan_t* out, unsigned kind, unsigned header, size_t max,
                              const uvchan_io_opts_t* opts) {
  unsigned allowed = UVCHAN_LEAVE_OPEN | (kind == UVCHAN__SPLIT_LINES ? UVCHAN_LINES_KEEP_EOL : 0);
  uvchan_io_opts_t o;
  int err;

  uvchan__io_opts(opts, &o);
  if (uvchan__io_check(ctx, sp, &o, allowed) != 0 || !uvchan__buf_chan_ok(in, ctx) ||
      !uvchan__buf_chan_ok(out, ctx) || in == out || max == 0 || max >= SIZE_MAX / 2)
    return UV_EINVAL;
  if ((err = uvchan__node_gate(ctx, &sp->node_)) != 0)
    return err;
  memset(sp, 0, sizeof(*sp));
  sp->in_ = in;
  sp->out_ = out;
  sp->pool_ = o.pool;
  if (o.pool != NULL)
    o.pool->users_++;
  sp->max_ = max;
  sp->kind_ = kind;
  sp->header_ = header;
  sp->flags_ = o.flags;
  uvchan__node_init(&sp->node_, ctx, UVCHAN__PNODE_EXT, o.pipeline, &uvchan__split_ops);
  return 0;
}

int uvchan_lines_init(uvchan_ctx_t* ctx, uvchan_splitter_t* splitter, uvchan_t* in, uvchan_t* out,
                      size_t max_line, const uvchan_io_opts_t* opts) {
  return uvchan__split_init(ctx, splitter, in, out, UVCHAN__SPLIT_LINES, 0, max_line, opts);
}

int uvchan_frames_init(uvchan_ctx_t* ctx, uvchan_splitter_t* splitter, uvchan_t* in,
                       uvchan_t* out, unsigned header, size_t max_frame,
                       const uvchan_io_opts_t* opts) {
  if (header != 1 && header != 2 && header != 4 && header != 8)
    return UV_EINVAL;
  return uvchan__split_init(ctx, splitter, in, out, UVCHAN__SPLIT_FRAMES, header, max_frame, opts);
}

int uvchan_splitter_start(uvchan_splitter_t* splitter, uvchan_splitter_cb cb) {
  if (!uvchan__split_ok(splitter))
    return UV_EINVAL;
  return uvchan__node_ext_start(&splitter->node_, (void (*)(void))cb);
}

int uvchan_splitter_close(uvchan_splitter_t* splitter, uvchan_splitter_close_cb cb) {
  if (!uvchan__split_ok(splitter))
    return UV_EINVAL;
  return uvchan__node_close(&splitter->node_, (void (*)(void))cb);
}
