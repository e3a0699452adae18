/* Internal: uvchan's state for a libuv handle that the network calls use (net.c). The task calls
 * of uvchan/net.h are built on it, and so are the stream adapters (stream.c), which read or write
 * streams from callbacks: they find the state from a handle with uvchan__st_find(), create it with
 * uvchan__st_get(), mark it with UVCHAN__NET_ADAPT_RD/WR (task reads or writes then get UV_EBUSY),
 * queue bytes under the high-water mark with uvchan__st_write_some(), learn of room through
 * room_cb and of the state's end through gone_cb, and hand it back with uvchan__st_put(). */
#ifndef UVCHAN_NET_INTERNAL_H
#define UVCHAN_NET_INTERNAL_H

enum {
  UVCHAN__NET_READING = 1u << 0,   /* libuv reads the stream with uvchan's callbacks */
  UVCHAN__NET_DRAINED = 1u << 1,   /* the last read found the kernel buffer empty: wait first */
  UVCHAN__NET_LISTENING = 1u << 2, /* uv_listen() with uvchan's connection callback */
  UVCHAN__NET_PENDING = 1u << 3,   /* libuv holds a connection no task has accepted yet */
  UVCHAN__NET_CLOSING = 1u << 4,   /* uvchan_task_close() runs: its close callback frees */
  UVCHAN__NET_ORPHAN = 1u << 5,    /* its context shut down: freed by the last write's callback */
  UVCHAN__NET_ADAPT_RD = 1u << 6,  /* a stream reader (stream.c) reads it */
  UVCHAN__NET_ADAPT_WR = 1u << 7,  /* a stream writer (stream.c) writes it */
  UVCHAN__NET_RELEASE = 1u << 8    /* adapters used it: freed once nothing uses it */
};

typedef struct uvchan__netst_s uvchan__netst_t;
typedef struct uvchan__netw_s uvchan__netw_t; /* a task's wait, private to net.c */

struct uvchan__netst_s {
  struct uvchan__res_s res;
  uv_handle_t* handle;
  uvchan_ctx_t* ctx;
  uvchan__netw_t* rd;     /* the reader task, from its wait until it runs again */
  uvchan__netw_t* wr;     /* the writer task waiting for room, likewise */
  uvchan__netw_t* closer; /* the task in uvchan_task_close() */
  struct uvchan__link_s acceptors;
  size_t queued;   /* bytes in chunks libuv has not written yet */
  size_t hwm;
  size_t inflight; /* chunks libuv holds */
  int werr;        /* a queued write failed: the next write or shutdown returns it */
  int aerr;        /* a failed accept no task waited for */
  unsigned flags;
  /* For writers that are not tasks (a channel drained into the stream): called when the queue
   * comes below the mark, or a queued write failed (werr). */
  void (*room_cb)(uvchan__netst_t* st);
  /* Called once when the state is about to go away under its adapters (the handle is closed by
   * uvchan_task_close() or by the application, or the context shuts down): they must stop using
   * it, the handle included, from then on. */
  void (*gone_cb)(uvchan__netst_t* st);
  void* ext; /* the adapters' own state, if any */
};

/* The handle types that are streams (the task calls' and the adapters' check). */
static inline int uvchan__is_stream_type(uv_handle_type t) {
  return t == UV_TCP || t == UV_NAMED_PIPE || t == UV_TTY;
}

/* The state of handle `h` (any pointer: a lookup in the thread's table), or NULL. */
uvchan__netst_t* uvchan__st_find(const void* h);
/* The state of `h` for `ctx`, created on first use (a resource of `ctx`), kept from now on (a
 * pending release is called off): 0, UV_ENOMEM, or UV_EINVAL when another context of the loop
 * uses `h`. */
int uvchan__st_get(uvchan_ctx_t* ctx, uv_handle_t* h, uvchan__netst_t** out);
/* Takes the start of `p` (up to `len` bytes) for the stream: into the kernel when nothing is
 * queued (uv_try_write), else one piece of at most UVCHAN_STREAM_WRITE_CHUNK bytes copied into
 * the queue. Call it while st->queued < st->hwm and st->werr == 0. Returns the bytes taken (> 0)
 * or an error, which is also kept in st->werr. */
ssize_t uvchan__st_write_some(uvchan__netst_t* st, const char* p, size_t len);
/* Stops libuv reading the stream for the task calls, if it does. */
void uvchan__st_stop_reading(uvchan__netst_t* st);
/* The stream reader's read callback (stream.c). */
void uvchan__reader_on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
/* Whether the application reads `s` itself: a read callback set that is not uvchan's. */
int uvchan__app_reads(const uv_stream_t* s);
/* The adapters are done with `st` (room_cb, gone_cb, ext and the ADAPT flags cleared): it is
 * freed now if nothing else uses it, or after its last queued write. A task call that uses the
 * stream before that keeps it. */
void uvchan__st_put(uvchan__netst_t* st);

#endif /* UVCHAN_NET_INTERNAL_H */
