/** @file
 * uvchan/common.h: export macro, version, types and callbacks shared by every part of uvchan.
 * Include <uvchan.h>, which includes this. */
#ifndef UVCHAN_COMMON_H
#define UVCHAN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

/** @def UVCHAN_EXTERN
 * Marks a public function: the shared library exports these and hides every other symbol. */
#if defined(_WIN32)
#if defined(UVCHAN_BUILDING_SHARED)
#define UVCHAN_EXTERN __declspec(dllexport)
#elif defined(UVCHAN_USING_SHARED)
#define UVCHAN_EXTERN __declspec(dllimport)
#else
#define UVCHAN_EXTERN
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define UVCHAN_EXTERN __attribute__((visibility("default")))
#else
#define UVCHAN_EXTERN
#endif

#define UVCHAN_VERSION_MAJOR 0 /**< Incremented by incompatible API or ABI changes. */
#define UVCHAN_VERSION_MINOR 1 /**< Incremented by compatible additions. */
#define UVCHAN_VERSION_PATCH 0 /**< Incremented by fixes. */
/** The version as one number, 0xMMmmpp: compare it with uvchan_version(). */
#define UVCHAN_VERSION_HEX \
  ((UVCHAN_VERSION_MAJOR << 16) | (UVCHAN_VERSION_MINOR << 8) | UVCHAN_VERSION_PATCH)

/** Completions delivered per loop iteration unless uvchan_ctx_set_batch() says otherwise. */
#define UVCHAN_DEFAULT_BATCH 1024

/** Operations a task may complete in a row without waiting before it gives the loop a turn. */
#define UVCHAN_TASK_BUDGET 128

/** Default task stack: virtual size, of which only touched pages become resident. */
#define UVCHAN_DEFAULT_STACK_SIZE (64 * 1024)
/** Smallest accepted task stack. */
#define UVCHAN_MIN_STACK_SIZE (8 * 1024)

typedef struct uvchan_ctx_s uvchan_ctx_t;
typedef struct uvchan_s uvchan_t;
typedef struct uvchan_req_s uvchan_req_t;
typedef struct uvchan_send_s uvchan_send_t;
typedef struct uvchan_recv_s uvchan_recv_t;
typedef struct uvchan_select_s uvchan_select_t;
typedef struct uvchan_case_s uvchan_case_t;
typedef struct uvchan_wg_s uvchan_wg_t;
typedef struct uvchan_timer_s uvchan_timer_t;
typedef struct uvchan_task_s uvchan_task_t; /**< opaque: lives at the top of its own stack */
typedef struct uvchan_task_attr_s uvchan_task_attr_t;
typedef struct uvchan_trace_s uvchan_trace_t;
typedef struct uvchan_waiting_s uvchan_waiting_t;
typedef struct uvchan_await_s uvchan_await_t;
typedef struct uvchan_reserve_s uvchan_reserve_t;
typedef struct uvchan_permit_s uvchan_permit_t;

/** What a request is. */
typedef enum {
  UVCHAN_REQ_UNKNOWN = 0,
  UVCHAN_REQ_SEND,
  UVCHAN_REQ_RECV,
  UVCHAN_REQ_SELECT,
  UVCHAN_REQ_WG_WAIT,
  UVCHAN_REQ_SLEEP,
  UVCHAN_REQ_TASK, /**< a task's start or yield */
  UVCHAN_REQ_AWAIT, /**< a task awaiting an operation outside uvchan (uvchan_task_await()) */
  UVCHAN_REQ_RESERVE, /**< a reservation of a buffer slot (two-phase send) */
  UVCHAN_REQ_NOTIFY   /**< a pipeline object's own end or close notice: never waits */
} uvchan_req_type;

/** The direction of a select case. */
typedef enum {
  UVCHAN_OP_SEND = 1,
  UVCHAN_OP_RECV = 2,
  UVCHAN_OP_RESERVE = 3 /**< reserve a buffer slot; the case's value is a uvchan_permit_t* */
} uvchan_op;

/** Runs from the loop once uvchan_ctx_close() is done: the context may then be freed. */
typedef void (*uvchan_ctx_close_cb)(uvchan_ctx_t* ctx);
/** Completion of a request seen as uvchan_req_t (a wait-group wait): 0 or a negative UV_E* code. */
typedef void (*uvchan_req_cb)(uvchan_req_t* req, int status);
/** Completion of a send, run once from the loop (statuses: uvchan_send()). */
typedef void (*uvchan_send_cb)(uvchan_send_t* req, int status);
/** Completion of a receive, run once from the loop (statuses: uvchan_recv()). */
typedef void (*uvchan_recv_cb)(uvchan_recv_t* req, int status);
/** Completion of a select, run once from the loop; req->index names the case (uvchan_select()). */
typedef void (*uvchan_select_cb)(uvchan_select_t* req, int status);
/** Completion of a slot reservation, run once from the loop (statuses: uvchan_reserve()). */
typedef void (*uvchan_reserve_cb)(uvchan_reserve_t* req, int status);
/** A channel's element destructor: uvchan_destroy() calls it for each value still buffered. */
typedef void (*uvchan_elem_destroy_cb)(uvchan_t* ch, void* value);
/** Runs from the loop once uvchan_timer_close() is done: the timer may then be freed. */
typedef void (*uvchan_timer_close_cb)(uvchan_timer_t* timer);
/** A task's function (uvchan_task_spawn()): the task ends when it returns. */
typedef void (*uvchan_task_fn)(void* arg);
/** A trace hook (uvchan_ctx_set_trace()), called synchronously for every channel event. */
typedef void (*uvchan_trace_cb)(const uvchan_trace_t* event, void* arg);
/** Called by uvchan_ctx_walk_waiting() once for every waiting operation. */
typedef void (*uvchan_walk_cb)(const uvchan_waiting_t* waiting, void* arg);
/** The `cancel` and `release` hooks of an await (uvchan_await_init()). */
typedef void (*uvchan_await_cb)(uvchan_await_t* aw);

/** Private building blocks, embedded in the public structs so the caller can own them. */
struct uvchan__link_s {
  struct uvchan__link_s* next;
  struct uvchan__link_s* prev;
};

/* A party waiting on a channel (Go's sudog): one inside every request, one in every select case. */
struct uvchan__waiter_s {
  struct uvchan__link_s link;
  uvchan_req_t* req;
  uvchan_t* chan;
  void* value;
  unsigned op;
  unsigned index;
};

/* Something a context owns besides channels and tasks (a timer channel, an I/O adapter...): the
 * context's graceful shutdown calls `shutdown`, which closes it and unregisters it. */
struct uvchan__res_s {
  struct uvchan__link_s link;
  void (*shutdown)(struct uvchan__res_s* res);
};

/* A node of the context's deadline heap (a pairing heap). */
struct uvchan__tmnode_s {
  struct uvchan__tmnode_s* child;
  struct uvchan__tmnode_s* next;
  struct uvchan__tmnode_s* prev; /**< left sibling, or parent for a first child */
  uint64_t due;
};

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Library                                                                                      */

/** The library's version as "MAJOR.MINOR.PATCH". */
UVCHAN_EXTERN const char* uvchan_version_string(void);

/** The library's version as UVCHAN_VERSION_HEX was when it was built. */
UVCHAN_EXTERN unsigned int uvchan_version(void);

#ifdef __cplusplus
}
#endif
#endif /* UVCHAN_COMMON_H */
