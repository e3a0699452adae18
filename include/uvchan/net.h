/** @file
 * uvchan/net.h: network services from tasks, Go's net on libuv: read, write, shutdown and close
 * any uv_stream_t (TCP, pipe, TTY), connect, listen, accept and resolve names, each blocking the
 * task, never the loop, with deadlines. Include <uvchan.h>, which includes this. */
#ifndef UVCHAN_NET_H
#define UVCHAN_NET_H

#include "uvchan/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every call below may only be made from inside a task (else UV_EINVAL), on a handle of the
 * task's own loop. The streams and requests stay the caller's: uvchan never touches a handle's
 * `data`; it keeps its per-stream state in a table of the thread, created on first use and freed
 * when the handle is closed with uvchan_task_close() or the context closes or shuts down.
 *
 * Common results: UV_EINVAL (outside a task, NULL, a handle of another loop or not a stream
 * where one is needed), UV_EBADF (a handle that is closing or closed), UV_ECANCELED (the task was
 * cancelled or its context shuts down: the blocking call in progress returns it, and so does
 * every later one but uvchan_task_close()), UV_ETIMEDOUT (a `_timeout` variant's deadline, in
 * milliseconds of loop time). A blocking call that must wait parks the task; one that can
 * complete at once does so without a switch, and counts against the task's cooperative budget.
 *
 * Write SIGPIPE handling as in any libuv program: ignore SIGPIPE, and a write to a closed peer
 * returns UV_EPIPE. */

/** Default bytes a stream may queue for writing before a writing task waits: see
 * uvchan_task_write() and uvchan_stream_set_hwm(). */
#define UVCHAN_STREAM_HWM (64 * 1024)

/** Largest piece of one write that is queued at once (see uvchan_task_write()). */
#define UVCHAN_STREAM_WRITE_CHUNK (64 * 1024)

/** Reads at most `len` bytes from `stream` into `buf`, waiting until some are there: returns the
 * byte count (> 0), UV_EOF once the peer finished sending (and for every later read), or a libuv
 * error (UV_ECONNRESET...). The bytes go from the kernel straight into `buf`, during this call:
 * uvchan waits for the stream to become readable (through libuv's read callbacks, with an empty
 * buffer) and then reads; so a read that a deadline or a cancel ends has consumed nothing, and
 * whatever arrives later stays in the kernel for the next read. `buf` is written only while the
 * call runs and is the caller's again when it returns: a buffer shared by every task of a loop
 * works. One task at a time may read a stream: a second concurrent reader gets UV_EBUSY, and so
 * does a stream that the application reads with its own uv_read_start(). `len` 0 returns 0.
 * Returns UV_EINVAL for a NULL `buf` with `len` > 0, UV_ENOTSUP for an IPC pipe (its reads carry
 * handles: read it with uv_read_start()), UV_ECANCELED when uvchan_task_close() closes the stream
 * under the read. The read itself is a read(2) on the stream's descriptor (Unix). */
UVCHAN_EXTERN ssize_t uvchan_task_read(uv_stream_t* stream, void* buf, size_t len);

/** As uvchan_task_read(), or UV_ETIMEDOUT when nothing came within `timeout` ms. */
UVCHAN_EXTERN ssize_t uvchan_task_read_timeout(uv_stream_t* stream, void* buf, size_t len,
                                               uint64_t timeout);

/** Writes all `len` bytes of `buf` to `stream`: returns `len`, or on an interruption the number
 * of bytes accepted before it (POSIX's partial write), or a negative code when none were.
 *
 * Bytes go to the kernel at once when the socket has room (uv_try_write(): no copy, no switch);
 * what it does not take is copied into per-stream chunks written with uv_write(). A stream's
 * queue has a high-water mark (UVCHAN_STREAM_HWM, 64 KiB; uvchan_stream_set_hwm()): while the
 * queue is at or above it the write waits, and below it the write takes its next piece of up to
 * UVCHAN_STREAM_WRITE_CHUNK (64 KiB) whole. So the queue stays below the mark plus one chunk, a
 * peer that stops reading blocks the writing task (backpressure to the socket, bounded memory),
 * and the call returns once all of `buf` is taken and the queue is below the mark. A write of up
 * to 64 KiB has taken all of `buf` before it can wait (unless an earlier write was interrupted
 * with the queue at the mark): a buffer shared by the tasks of a loop may be reused once the call
 * parks. `buf` is never read after the call returns.
 *
 * A deadline, a cancel, a close or an error ends a wait; what was accepted is still written. A
 * queued write that fails later makes the next write or shutdown on the stream return its error
 * (UV_EPIPE, UV_ECONNRESET...). One task at a time may wait in a write: a second one gets
 * UV_EBUSY. `len` 0 returns 0. */
UVCHAN_EXTERN ssize_t uvchan_task_write(uv_stream_t* stream, const void* buf, size_t len);

/** As uvchan_task_write(), with a deadline of `timeout` ms over the whole call: UV_ETIMEDOUT, or
 * the bytes accepted before it. */
UVCHAN_EXTERN ssize_t uvchan_task_write_timeout(uv_stream_t* stream, const void* buf, size_t len,
                                                uint64_t timeout);

/** Sets the write high-water mark of `stream` (bytes; 0 restores UVCHAN_STREAM_HWM): the most a
 * writing task queues before it waits. Returns 0, UV_EINVAL outside a task or for a bad stream,
 * UV_EBADF for a closing one. */
UVCHAN_EXTERN int uvchan_stream_set_hwm(uv_stream_t* stream, size_t hwm);

/** Bytes uvchan has queued on `stream` and libuv has not written yet (0 for a stream uvchan does
 * not know). For tests and monitoring. */
UVCHAN_EXTERN size_t uvchan_stream_queued(const uv_stream_t* stream);

/** Shuts the write side of `stream` down (uv_shutdown(): after the queued writes, the peer reads
 * EOF) and waits for it: 0 or a libuv error, the error of an earlier failed write first. A
 * deadline or a cancel returns at once; the shutdown then still happens. */
UVCHAN_EXTERN int uvchan_task_shutdown(uv_stream_t* stream);

/** As uvchan_task_shutdown(), or UV_ETIMEDOUT after `timeout` ms. */
UVCHAN_EXTERN int uvchan_task_shutdown_timeout(uv_stream_t* stream, uint64_t timeout);

/** Closes `handle` (any libuv handle: a stream, a timer...) and waits for its close callback:
 * then the handle's memory may be freed. Tasks blocked in a read, write or accept on it return
 * UV_ECANCELED, queued writes are dropped, and uvchan forgets the stream. Allowed after the task
 * was cancelled or its context began a shutdown, so that cleanup works: it returns 0 then too.
 * Returns 0, UV_EINVAL (outside a task, NULL, a handle of another loop), UV_EBADF (already
 * closing or closed). */
UVCHAN_EXTERN int uvchan_task_close(uv_handle_t* handle);

/** Connects `tcp` to `addr` and waits: 0 or a libuv error (UV_ECONNREFUSED...). */
UVCHAN_EXTERN int uvchan_task_connect(uv_tcp_t* tcp, const struct sockaddr* addr);

/** As uvchan_task_connect(), or UV_ETIMEDOUT after `timeout` ms. After a deadline or a cancel
 * the connection attempt goes on in the kernel: close `tcp` (uvchan_task_close()) before using
 * it again. */
UVCHAN_EXTERN int uvchan_task_connect_timeout(uv_tcp_t* tcp, const struct sockaddr* addr,
                                              uint64_t timeout);

/** Starts listening on a bound stream (uv_listen()) for uvchan_task_accept(). Does not block.
 * Returns 0, or libuv's error (UV_EADDRINUSE...), UV_EBUSY if uvchan listens on it already. */
UVCHAN_EXTERN int uvchan_task_listen(uv_stream_t* server, int backlog);

/** Waits for a connection on `server` (uvchan_task_listen() first) and accepts it into `client`,
 * an initialised handle of the same loop not yet connected (uv_tcp_init()). Returns 0, or a libuv
 * error (accept's own, or UV_EINVAL when `server` is not listening through uvchan). Several tasks
 * may wait on one server: each connection goes to the one that waited longest. */
UVCHAN_EXTERN int uvchan_task_accept(uv_stream_t* server, uv_stream_t* client);

/** As uvchan_task_accept(), or UV_ETIMEDOUT after `timeout` ms; a connection arriving later waits
 * for the next accept. */
UVCHAN_EXTERN int uvchan_task_accept_timeout(uv_stream_t* server, uv_stream_t* client,
                                             uint64_t timeout);

/** Resolves `node`/`service` with uv_getaddrinfo() on libuv's threadpool and waits: 0 with the
 * list in `*res` (free it with uv_freeaddrinfo()), or a libuv error (UV_EAI_NONAME...). `hints`
 * may be NULL. */
UVCHAN_EXTERN int uvchan_task_getaddrinfo(const char* node, const char* service,
                                          const struct addrinfo* hints, struct addrinfo** res);

/** As uvchan_task_getaddrinfo(), or UV_ETIMEDOUT after `timeout` ms (a lookup still running is
 * cancelled or, once it ends, freed by uvchan). */
UVCHAN_EXTERN int uvchan_task_getaddrinfo_timeout(const char* node, const char* service,
                                                  const struct addrinfo* hints,
                                                  struct addrinfo** res, uint64_t timeout);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_NET_H */
