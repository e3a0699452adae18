/** @file
 * uvchan/stream.h: streams as channels. A reader turns the bytes of a uv_stream_t (TCP, pipe,
 * TTY; or any file descriptor) into a channel of buffers, and stops reading while the channel is
 * full; a writer drains a channel of buffers into a stream, taking the next buffer only while the
 * stream's write queue is below a high-water mark, and shuts the stream's write side down when
 * the channel closes; splitters cut a channel of buffers into lines or length-prefixed frames.
 * All of them work from callbacks alone, are pipeline members like stages (uvchan/pipeline.h),
 * and their channels are ordinary channels: a task can select over a stream's channel, another
 * channel and a timer at once. Include <uvchan.h>, which includes this.
 *
 * Every object here follows the life cycle of the pipeline objects: init (nothing runs yet) ->
 * start(cb) (cb runs once, from the loop, when it has ended) -> close(cb) (stops it if it runs,
 * waits for what is in flight, then cb; the struct may be freed in or after cb). The channels,
 * the streams and the pools stay the caller's: they must stay valid until the object's close
 * callback (uvchan_pool_destroy() refuses a pool that an object not yet closed uses). */
#ifndef UVCHAN_STREAM_H
#define UVCHAN_STREAM_H

#include "uvchan/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uvchan_buf_s uvchan_buf_t;
typedef struct uvchan_pool_s uvchan_pool_t;
typedef struct uvchan_io_opts_s uvchan_io_opts_t;
typedef struct uvchan_reader_s uvchan_reader_t;
typedef struct uvchan_writer_s uvchan_writer_t;
typedef struct uvchan_splitter_s uvchan_splitter_t;

/** End callback of a reader: 0 at the end of the stream, else the error it ended with. */
typedef void (*uvchan_reader_cb)(uvchan_reader_t* reader, int status);
/** Close callback of a reader: the struct may be freed from here on. */
typedef void (*uvchan_reader_close_cb)(uvchan_reader_t* reader);
/** End callback of a writer: 0 once its channel was closed, drained, written and the stream shut
 * down, else the error it ended with. */
typedef void (*uvchan_writer_cb)(uvchan_writer_t* writer, int status);
/** Close callback of a writer: the struct may be freed from here on. */
typedef void (*uvchan_writer_close_cb)(uvchan_writer_t* writer);
/** End callback of a splitter: 0 once its input was closed and drained and every frame sent,
 * else the error it ended with. */
typedef void (*uvchan_splitter_cb)(uvchan_splitter_t* splitter, int status);
/** Close callback of a splitter: the struct may be freed from here on. */
typedef void (*uvchan_splitter_close_cb)(uvchan_splitter_t* splitter);

/** Read size of a pool made for a reader, unless you choose another (uvchan_pool_init()). */
#define UVCHAN_READ_SIZE (64 * 1024)

/* ------------------------------------------------------------------------------------------ */
/* Buffers and pools                                                                           */

/** A reference to bytes: the element of every channel in this file (make such channels with
 * uvchan_buf_chan_init()). Whoever holds a buffer owns that reference and ends it with
 * uvchan_buf_release(): receiving one from a channel makes it yours, sending one hands it on
 * (a send that fails leaves it yours). A consumer may move `base` and `len` within the bytes
 * (to consume part of them); the release still finds the memory. The zero value (what a receive
 * from a closed channel gives) is no buffer, and releasing it does nothing. */
struct uvchan_buf_s {
  char* base; /**< the first byte */
  size_t len; /**< the number of bytes */
  /* private */
  void* blk_; /* the block holding the bytes: its pool (or none), capacity and references */
};

/** Blocks of one size, reused: readers read into them, and buffers that are released go back to
 * the pool (up to `max_cached` blocks are kept, the rest freed). A pool never waits: what bounds
 * the memory in use is the capacity of the channels the buffers travel through. A pool and its
 * buffers belong to one thread, the loop's. */
struct uvchan_pool_s {
  size_t block_size;  /**< read-only: the bytes of every block */
  size_t max_cached;  /**< read-only: free blocks kept for reuse at most */
  size_t outstanding; /**< read-only: buffers of this pool handed out and not released */
  size_t cached;      /**< read-only: free blocks kept now */
  /* private */
  void* free_;
  size_t users_; /* readers and splitters that take blocks from it, until their close */
  uint32_t magic_;
};

/** Initialises `pool` for blocks of `block_size` bytes (1 byte to 1 GiB; UVCHAN_READ_SIZE is a
 * good read size), keeping up to `max_cached` free blocks. Returns 0, UV_EINVAL (NULL pool, a
 * block size out of range), UV_EBUSY (`pool` is live: destroy it first). */
UVCHAN_EXTERN int uvchan_pool_init(uvchan_pool_t* pool, size_t block_size, size_t max_cached);

/** Frees the cached blocks and retires the pool. Returns 0, UV_EINVAL (a bad pool), UV_EBUSY
 * (buffers of the pool are still out: release them, or destroy the channels holding them,
 * first; or a reader or splitter made with the pool is not closed yet: its close callback
 * must have run; nothing is freed then). */
UVCHAN_EXTERN int uvchan_pool_destroy(uvchan_pool_t* pool);

/** Makes a buffer of `len` bytes (contents undefined): a block of `pool` (`len` at most its
 * block size), or with a NULL pool a heap block of exactly `len` bytes. Returns 0, UV_EINVAL
 * (NULL `buf`, a bad pool, `len` above the block size), UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_buf_alloc(uvchan_pool_t* pool, size_t len, uvchan_buf_t* buf);

/** uvchan_buf_alloc() and a copy of the `len` bytes at `data` into it. */
UVCHAN_EXTERN int uvchan_buf_copy(uvchan_pool_t* pool, const void* data, size_t len,
                                  uvchan_buf_t* buf);

/** Makes `*ref` another reference to the bytes of `buf` (the same `base` and `len`): the memory
 * goes back when every reference is released. For one buffer sent to several channels (a chat
 * line to every client) without a copy; the bytes are shared, so treat them as read-only.
 * Returns 0, or UV_EINVAL (NULL, or `buf` holds no buffer). */
UVCHAN_EXTERN int uvchan_buf_ref(const uvchan_buf_t* buf, uvchan_buf_t* ref);

/** Ends this reference: the block goes back to its pool (or is freed) once no reference is
 * left. `*buf` becomes the zero value. NULL, or a zero buffer, does nothing. */
UVCHAN_EXTERN void uvchan_buf_release(uvchan_buf_t* buf);

/** The element destructor of a channel of uvchan_buf_t: releases the buffer (see
 * uvchan_set_destructor()). uvchan_buf_chan_init() installs it. */
UVCHAN_EXTERN void uvchan_buf_dtor(uvchan_t* ch, void* value);

/** uvchan_init() for a channel of uvchan_buf_t with `capacity` slots, with uvchan_buf_dtor() as
 * its element destructor: buffers still in it when it is destroyed are released. Returns what
 * uvchan_init() returns. */
UVCHAN_EXTERN int uvchan_buf_chan_init(uvchan_ctx_t* ctx, uvchan_t* ch, size_t capacity);

/** Makes one length-prefixed frame, as a frame splitter with the same `header` size reads it:
 * `header` bytes (1, 2, 4 or 8) holding `len` big-endian, then the `len` bytes at `data`. Memory
 * as uvchan_buf_alloc(). Returns 0, UV_EINVAL (a bad header size, `len` too large for it, NULL
 * `buf`, NULL `data` with `len` > 0, or a frame larger than the pool's blocks), UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_frame_encode(uvchan_pool_t* pool, unsigned header, const void* data,
                                      size_t len, uvchan_buf_t* buf);

/* ------------------------------------------------------------------------------------------ */
/* Options                                                                                     */

/** Flags of the stream objects (uvchan_io_opts_t.flags); UVCHAN_LEAVE_OPEN (uvchan/pipeline.h)
 * applies too. */
enum {
  /** Line splitters: keep the line terminator ("\n", or "\r\n") at the end of each line. */
  UVCHAN_LINES_KEEP_EOL = 1u << 8
};

/** Options of readers, writers and splitters; NULL means all zero. */
struct uvchan_io_opts_s {
  unsigned flags;              /**< UVCHAN_LEAVE_OPEN: a reader or splitter does not close its
                                    output at its end, a writer does not close its input on an
                                    error; UVCHAN_LINES_KEEP_EOL for line splitters */
  uvchan_pipeline_t* pipeline; /**< optional: the pipeline the object is a member of */
  size_t hwm;                  /**< writers: the stream's write high-water mark in bytes (0: the
                                    stream's own, UVCHAN_STREAM_HWM unless set); it is set on
                                    uvchan's state for the stream, as uvchan_stream_set_hwm()
                                    does, and holds while the writer lives. The writer's close
                                    frees that state unless something else still uses it (a
                                    reader, a waiting task, queued bytes): a later writer or
                                    task write may start again from UVCHAN_STREAM_HWM, so give
                                    each writer its mark */
  uvchan_pool_t* pool;         /**< splitters: where the frames they make come from (a frame
                                    larger than its blocks, or a NULL pool: the heap, exact
                                    size) */
};

/* ------------------------------------------------------------------------------------------ */
/* Reader: stream -> channel                                                                   */

/** Reads a stream into a channel of uvchan_buf_t, one buffer per read (at most a block of its
 * pool). Backpressure: a buffer the channel cannot take at once is held by a waiting send, and
 * the reader stops reading the stream (uv_read_stop()) until that send completes, so the bytes
 * wait in the kernel and the peer's sends block once its buffers fill; the reader holds at most
 * that one buffer beyond the channel's capacity. An idle stream holds no buffer at all.
 *
 * The end of the stream closes the channel: the consumer drains it and then receives UV_EOF, and
 * the reader ends with 0. A read error (UV_ECONNRESET...) closes the channel the same way, and
 * reaches the consumer as the reader's status: the end callback's status, `status`, and in a
 * pipeline the pipeline's first error, which stops every other member. So a consumer that sees
 * UV_EOF reads `status` (final by then): 0 for the end of the stream, else the error. If the
 * consumer closes the channel, the reader ends with UV_EPIPE. */
struct uvchan_reader_s {
  void* data;          /**< user data, untouched */
  int status;          /**< read-only: 0, or the error the reader ended with (a read error,
                            UV_EPIPE, UV_ECANCELED when closed or shut down) */
  uint64_t bytes;      /**< read-only: bytes read */
  uv_stream_t* stream; /**< read-only: the stream read (for uvchan_reader_init_fd(): NULL, or
                            the reader's own handle for the descriptor) */
  /* private */
  struct uvchan__pnode_s node_;
  uvchan_t* out_;
  uvchan_pool_t* pool_;
  void* st_;
  uv_fs_t* fs_; /* files only: the read request (on the heap: streams need none) */
  uv_file fd_;
  unsigned flags_;
  unsigned waiting_;
  uvchan_buf_t pending_; /* the buffer a waiting send or a file read holds */
  uvchan_send_t send_;
};

/** Initialises `reader` to read `stream` (TCP, pipe or TTY; not an IPC pipe) into `out`, a channel
 * of uvchan_buf_t, with blocks of `pool`. Nothing is read before uvchan_reader_start(). While the
 * reader lives, nobody else may read the stream: task reads get UV_EBUSY. Returns 0; UV_EINVAL
 * (a bad or closing context, NULL reader or pool, a bad pool, a stream that is no stream, of
 * another loop, closing, or an IPC pipe, `out` not a channel of uvchan_buf_t or of another
 * context, unknown flags, a bad pipeline as for stages); UV_EBUSY (`reader` is live; the stream
 * is read already: by another reader, a task, or the application's uv_read_start()); UV_ECANCELED
 * (shutdown); UV_EPERM (wrong thread); UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_reader_init(uvchan_ctx_t* ctx, uvchan_reader_t* reader,
                                     uv_stream_t* stream, uvchan_t* out, uvchan_pool_t* pool,
                                     const uvchan_io_opts_t* opts);

/** As uvchan_reader_init(), for a file descriptor (0 for stdin): uv_guess_handle() tells what it
 * is, and the reader opens its own handle: a TTY (uv_tty_t), a pipe or a Unix socket
 * (uv_pipe_t), a TCP socket (uv_tcp_t), each read as a stream; a regular file or a device
 * (UV_FILE) is read with uv_fs_read() from its current offset, one block at a time, the next
 * read only once the channel took the last block. The reader closes its handle, and so `fd`,
 * when it is closed itself; a regular file or a device has no handle, and its `fd` stays yours
 * (close it after the close callback). Returns as uvchan_reader_init(), UV_EINVAL for a
 * negative `fd`, or libuv's error opening the handle (UV_EBADF for a descriptor that is not
 * open). A failed init leaves `fd` open, except UV_ENOMEM after the handle was opened: closing
 * that handle closed `fd`. */
UVCHAN_EXTERN int uvchan_reader_init_fd(uvchan_ctx_t* ctx, uvchan_reader_t* reader, uv_file fd,
                                        uvchan_t* out, uvchan_pool_t* pool,
                                        const uvchan_io_opts_t* opts);

/** Starts reading, from the loop (nothing is read inside this call). `cb` (may be NULL) runs
 * once, from the loop, when the reader has ended: see uvchan_reader_t. An early end (an error, a
 * close, its pipeline failing) releases the buffer the reader held and closes its channel
 * (unless UVCHAN_LEAVE_OPEN). Returns 0; UV_EINVAL (bad reader; started already, or closing);
 * UV_ECANCELED (shutdown); UV_EPERM. */
UVCHAN_EXTERN int uvchan_reader_start(uvchan_reader_t* reader, uvchan_reader_cb cb);

/** Closes the reader: if it runs, it stops reading and ends with UV_ECANCELED; then its own
 * handle (uvchan_reader_init_fd()) is closed, and once nothing is in flight `cb` (may be NULL)
 * runs from the loop. The stream is the caller's again from this call on (close it after `cb`,
 * or from it). Returns 0; UV_EINVAL (bad reader, or closing already); UV_EPERM. */
UVCHAN_EXTERN int uvchan_reader_close(uvchan_reader_t* reader, uvchan_reader_close_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* Writer: channel -> stream                                                                   */

/** Drains a channel of uvchan_buf_t into a stream. It takes the next buffer only while the
 * stream's queue of unwritten bytes is below the high-water mark (the stream's, as for
 * uvchan_task_write(); `opts.hwm` sets it): a buffer goes into the kernel at once when the
 * socket has room (uv_try_write(), no copy), and what the kernel does not take is queued. So a
 * peer that stops reading stops the writer, the channel fills, and its senders wait: memory
 * stays below the channel's capacity plus the mark plus one piece of 64 KiB. Each buffer is
 * released once its bytes are all taken.
 *
 * When the channel is closed and drained the writer shuts the stream's write side down
 * (uv_shutdown(), after the queued bytes; for a pipe or a TTY, whose descriptors cannot be shut
 * down, this is a no-op) and ends with 0. A write error (UV_EPIPE, UV_ECONNRESET...) ends it with
 * that error and closes its channel (unless UVCHAN_LEAVE_OPEN), so that senders get UV_EPIPE
 * instead of waiting for a writer that is gone. */
struct uvchan_writer_s {
  void* data;          /**< user data, untouched */
  int status;          /**< read-only: 0, or the error the writer ended with */
  uint64_t bytes;      /**< read-only: bytes taken for writing (in the kernel or queued) */
  uv_stream_t* stream; /**< read-only: the stream written (for uvchan_writer_init_fd(): NULL,
                            or the writer's own handle for the descriptor) */
  /* private */
  struct uvchan__pnode_s node_;
  uvchan_t* in_;
  void* st_;
  uv_fs_t* fs_; /* files only: the write request */
  uv_shutdown_t shut_;
  uv_file fd_;
  unsigned flags_;
  unsigned waiting_;
  size_t off_;       /* bytes of cur_ taken */
  uvchan_buf_t cur_; /* the buffer being written */
  uvchan_recv_t recv_;
};

/** Initialises `writer` to drain `in` (a channel of uvchan_buf_t) into `stream`. While the writer
 * lives, nobody else may write the stream: task writes get UV_EBUSY. Returns 0; UV_EINVAL (as for
 * uvchan_reader_init(), with `in` for `out`; an IPC pipe is allowed); UV_EBUSY (`writer` is live,
 * or another writer writes the stream); UV_ECANCELED; UV_EPERM; UV_ENOMEM. */
UVCHAN_EXTERN int uvchan_writer_init(uvchan_ctx_t* ctx, uvchan_writer_t* writer, uvchan_t* in,
                                     uv_stream_t* stream, const uvchan_io_opts_t* opts);

/** As uvchan_writer_init(), for a file descriptor (1 for stdout), opened as
 * uvchan_reader_init_fd() opens one; a regular file or a device is written with uv_fs_write() at
 * its current offset, one buffer at a time, and the end of the channel ends the writer without
 * a shutdown. The writer closes its handle, and so `fd`, when it is closed itself; for a
 * regular file or a device `fd` stays yours, as for the reader. To read and write one socket,
 * open one handle for it and use uvchan_reader_init() and uvchan_writer_init() on it: the _fd
 * forms each open a handle of their own, and two handles on one descriptor would close it
 * twice. */
UVCHAN_EXTERN int uvchan_writer_init_fd(uvchan_ctx_t* ctx, uvchan_writer_t* writer, uvchan_t* in,
                                        uv_file fd, const uvchan_io_opts_t* opts);

/** Starts draining, from the loop. `cb` (may be NULL) runs once when the writer has ended (see
 * uvchan_writer_t). An early end releases the buffer the writer held (bytes of it already taken
 * are still written). Returns 0; UV_EINVAL (bad writer; started already, or closing);
 * UV_ECANCELED (shutdown); UV_EPERM. */
UVCHAN_EXTERN int uvchan_writer_start(uvchan_writer_t* writer, uvchan_writer_cb cb);

/** Closes the writer: if it runs, it ends with UV_ECANCELED (bytes already queued are still
 * written, unless the stream is closed); then its own handle is closed, and `cb` (may be NULL)
 * runs from the loop once nothing is in flight. Returns 0; UV_EINVAL (bad writer, or closing
 * already); UV_EPERM. */
UVCHAN_EXTERN int uvchan_writer_close(uvchan_writer_t* writer, uvchan_writer_close_cb cb);

/* ------------------------------------------------------------------------------------------ */
/* Splitters: a channel of buffers -> a channel of lines or frames                             */

/** Cuts the bytes of a channel of uvchan_buf_t (as a reader makes them) into messages, one
 * uvchan_buf_t each, on another channel: lines (uvchan_lines_init()) or length-prefixed frames
 * (uvchan_frames_init()). A message may span any number of input buffers. It holds one input
 * buffer, the message being assembled (at most the maximum length) and one message waiting to be
 * sent: when the output is full it takes no more input, so backpressure crosses it as it crosses
 * a stage. Each message is a buffer of its own (from `opts.pool`, or the heap), so a slow
 * consumer pins no input block.
 *
 * When the input is closed and drained the splitter sends a last line without terminator, if
 * any, closes its output and ends with 0. A line longer than the maximum ends it with
 * UV_EMSGSIZE, and so does a frame whose header announces more than the maximum; input that ends
 * inside a frame ends it with UV_EPROTO. An error closes the output (unless UVCHAN_LEAVE_OPEN):
 * the consumer drains the messages before it, then sees UV_EOF, and `status` (or the pipeline's)
 * holds the error. */
struct uvchan_splitter_s {
  void* data;        /**< user data, untouched */
  int status;        /**< read-only: 0, or the error the splitter ended with */
  uint64_t messages; /**< read-only: lines or frames sent */
  /* private */
  struct uvchan__pnode_s node_;
  uvchan_t* in_;
  uvchan_t* out_;
  uvchan_pool_t* pool_;
  size_t max_;
  unsigned kind_;
  unsigned header_;
  unsigned flags_;
  unsigned waiting_;
  unsigned eof_;
  uvchan_buf_t cur_;   /* the input buffer being cut */
  uvchan_buf_t msg_;   /* a frame being filled, or a message waiting to be sent */
  size_t fill_;        /* bytes of msg_ filled (frames) */
  char* part_;         /* the start of a line that spans input buffers */
  size_t plen_;
  size_t pcap_;
  unsigned char hdr_[8];
  unsigned hlen_;
  unsigned ready_;     /* msg_ is complete and waits to be sent */
  uvchan_recv_t recv_;
  uvchan_send_t send_;
};

/** Initialises a line splitter from `in` to `out` (channels of uvchan_buf_t, distinct). A line
 * ends at "\n"; the line sent is the bytes before it, without a "\r" just before it, unless
 * `opts.flags` has UVCHAN_LINES_KEEP_EOL. The bytes after the last "\n" are a last line at the
 * end of the input, without a final "\r" as well (Go's bufio.ScanLines drops it too). `max_line` (> 0) bounds a line's length without its
 * terminator. Returns 0; UV_EINVAL (a bad or closing context, NULL splitter, a bad channel or
 * one not of uvchan_buf_t, `in` == `out`, channels of another context, `max_line` 0, unknown
 * flags, a bad pool or pipeline); UV_EBUSY (`splitter` is live); UV_ECANCELED; UV_EPERM. */
UVCHAN_EXTERN int uvchan_lines_init(uvchan_ctx_t* ctx, uvchan_splitter_t* splitter, uvchan_t* in,
                                    uvchan_t* out, size_t max_line, const uvchan_io_opts_t* opts);

/** Initialises a frame splitter: each frame is `header` bytes (1, 2, 4 or 8) holding the length
 * of the payload that follows, big-endian (uvchan_frame_encode() makes one); the message sent is
 * the payload (possibly empty). `max_frame` (> 0) bounds a payload. Returns as
 * uvchan_lines_init(), and UV_EINVAL for a bad header size. */
UVCHAN_EXTERN int uvchan_frames_init(uvchan_ctx_t* ctx, uvchan_splitter_t* splitter, uvchan_t* in,
                                     uvchan_t* out, unsigned header, size_t max_frame,
                                     const uvchan_io_opts_t* opts);

/** Starts the splitter, from the loop. `cb` (may be NULL) runs once when it has ended (see
 * uvchan_splitter_t). An early end releases what it holds. Returns 0; UV_EINVAL (bad splitter;
 * started already, or closing); UV_ECANCELED (shutdown); UV_EPERM. */
UVCHAN_EXTERN int uvchan_splitter_start(uvchan_splitter_t* splitter, uvchan_splitter_cb cb);

/** Closes the splitter (it ends with UV_ECANCELED if it runs); `cb` (may be NULL) runs from the
 * loop once nothing is in flight. Returns 0; UV_EINVAL (bad splitter, or closing already);
 * UV_EPERM. */
UVCHAN_EXTERN int uvchan_splitter_close(uvchan_splitter_t* splitter,
                                        uvchan_splitter_close_cb cb);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_STREAM_H */
