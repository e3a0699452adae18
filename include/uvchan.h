/** @file
 * uvchan: Go-style channels for libuv.
 *
 * Copyright (c) 2026 the uvchan authors. MIT licensed, see LICENSE.
 *
 * <uvchan.h> is the one header to include: it holds the whole public surface, in parts under
 * uvchan/ ordered like uv.h (common.h: export macro, version, types and callbacks; then one part
 * per concept, each with one section per type: struct, then its functions).
 *
 * Conventions, the same as libuv's:
 *   - The caller owns every struct (context, channel, request, wait group, timer). The library
 *     never frees one; a struct must stay valid until its callback (requests) or close callback
 *     (context, timers) has run, or until it is destroyed (channels).
 *   - Functions return 0 or a negative UV_E* code (print it with uv_strerror()). A start call that
 *     returns an error never runs its callback; one that returns 0 runs it exactly once.
 *   - A callback never runs inside the call that started its request: completions are delivered
 *     from the loop, in bounded batches (see uvchan_ctx_set_batch()).
 *   - Fields marked "read-only" may be read by the user; fields ending in '_' are private.
 *   - A context and everything attached to it belong to its loop's thread.
 */
#ifndef UVCHAN_H
#define UVCHAN_H

#include "uvchan/common.h"
#include "uvchan/chan.h"
#include "uvchan/task.h"
#include "uvchan/thread.h"
#include "uvchan/pipeline.h"
#include "uvchan/net.h"
#include "uvchan/pool.h"
#include "uvchan/stream.h"

#endif /* UVCHAN_H */
