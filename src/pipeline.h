/* Internal: the machinery every pipeline object shares (pipeline.c), for objects defined in other
 * files (stream.c). Such an object is a node of kind UVCHAN__PNODE_EXT whose hooks say what it
 * does at start, on an early end, at its close and when its memory goes; everything else (the
 * end and close notices, the pipeline group, the context's shutdown) is the shared code's, so it
 * behaves as a stage does. */
#ifndef UVCHAN_PIPELINE_INTERNAL_H
#define UVCHAN_PIPELINE_INTERNAL_H

typedef struct uvchan__pnode_s uvchan__node;

#define UVCHAN__PNODE_MAGIC 0x75706e64u /* "upnd" */

/* Object kinds; UVCHAN__PNODE_EXT runs node->ops. */
enum { UVCHAN__STAGE = 1, UVCHAN__MERGE, UVCHAN__BCAST, UVCHAN__PNODE_EXT };

/* Node states, in this order (state comparisons rely on it). */
enum {
  UVCHAN__N_INIT = 1,
  UVCHAN__N_RUNNING,
  UVCHAN__N_ENDED,
  UVCHAN__N_CLOSING,
  UVCHAN__N_CLOSED
};

struct uvchan__pnode_ops_s {
  /* The node is RUNNING now (its start call, or its pipeline's): take the first input. Nothing
   * may complete inside the start call: wait through requests. */
  void (*start)(uvchan__node* node);
  /* End a RUNNING node early with `status`: decide the fate of what it holds, cancel what it
   * waits for, then call uvchan__node_end(). */
  void (*abort)(uvchan__node* node, int status);
  /* The close began (the node is CLOSING, after an abort if it ran): let go of outside things;
   * an asynchronous close of its own (a libuv handle) counts in node->busy until it is done. May
   * be NULL. */
  void (*closing)(uvchan__node* node);
  /* Nothing is in flight any more: free what the node allocated. May be NULL. */
  void (*release)(uvchan__node* node);
  /* Call the user's end callback `cb` (node->end_cb, never NULL here) with `status`. */
  void (*call_end)(uvchan__node* node, void (*cb)(void), int status);
  /* Call the user's close callback `cb` (never NULL here); it may free the object. */
  void (*call_close)(uvchan__node* node, void (*cb)(void));
};

/* A context new objects may join: live and not closing. */
int uvchan__ctx_open(const uvchan_ctx_t* ctx);
/* 0 when `p` is NULL or a pipeline of `ctx` that has not started, else UV_EINVAL. */
int uvchan__node_check_pipe(uvchan_ctx_t* ctx, uvchan_pipeline_t* p);
/* The last checks of an object's init, after its arguments: 0, the thread check's code, or
 * UV_EBUSY for a live object. */
int uvchan__node_gate(uvchan_ctx_t* ctx, const uvchan__node* node);
/* Initialises `node` (INIT), registers it with its context and joins pipeline `p` (may be NULL);
 * `ops` for UVCHAN__PNODE_EXT, else NULL. The caller checked everything. */
void uvchan__node_init(uvchan__node* node, uvchan_ctx_t* ctx, unsigned kind, uvchan_pipeline_t* p,
                       const struct uvchan__pnode_ops_s* ops);
/* A live node of `kind`. */
int uvchan__node_ok(const uvchan__node* node, unsigned kind);
/* The start call of an EXT node: checks, records `cb`, runs ops->start. */
int uvchan__node_ext_start(uvchan__node* node, void (*cb)(void));
/* The close call of any node. */
int uvchan__node_close(uvchan__node* node, void (*cb)(void));
/* The node has ended with `status`: queues its end callback, tells its pipeline. */
void uvchan__node_end(uvchan__node* node, int status);
/* One of the node's requests (or async operations) came back: a closing node may be done. */
void uvchan__node_back(uvchan__node* node);
/* A closing node with nothing in flight releases its memory and queues its close notice. */
void uvchan__node_maybe_closed(uvchan__node* node);
/* The element destructor of `ch` on `value`, if `ch` is alive and has one. */
void uvchan__destroy_value(uvchan_t* ch, void* value);

/* The try-operations of the objects' pumps: from the loop's thread (every entry point checked
 * it), on channels checked at init, so only the channel's liveness is checked again before the
 * inline matching. */
UVCHAN__INLINE int uvchan__try_send(uvchan_t* ch, const void* value) {
  int r;
  if (UVCHAN__UNLIKELY(!uvchan__chan_ok(ch)))
    return UV_EINVAL;
  r = uvchan__send_now(ch, value, NULL);
  return r != UVCHAN__MUST_WAIT ? r : UV_EAGAIN;
}

UVCHAN__INLINE int uvchan__try_recv(uvchan_t* ch, void* value) {
  int r;
  if (UVCHAN__UNLIKELY(!uvchan__chan_ok(ch)))
    return UV_EINVAL;
  r = uvchan__recv_now(ch, value, NULL);
  return r != UVCHAN__MUST_WAIT ? r : UV_EAGAIN;
}

/* A try-operation (or a request) on a channel destroyed under the object answers UV_EINVAL (the
 * channels were checked at init); report it as a request waiting on it would have seen it. */
static inline int uvchan__gone(int status) {
  return status == UV_EINVAL ? UV_ECANCELED : status;
}

#endif /* UVCHAN_PIPELINE_INTERNAL_H */
