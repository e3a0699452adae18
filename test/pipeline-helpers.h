/* Callback-only sources and sinks for the pipeline suites, and heap values whose live count
 * proves that nothing a pipeline held was lost or leaked. */
#ifndef UVCHAN_PIPELINE_HELPERS_H
#define UVCHAN_PIPELINE_HELPERS_H

#include "test-helpers.h"

/* ---- a source: sends vals[0..n) (or 0..n-1 when vals is NULL) with callback requests, then
 * closes the channel if asked ---- */
typedef struct {
  uvchan_send_t req;
  uvchan_t* ch;
  const int* vals;
  int n, i;
  int close_at_end;
  int value;
  int accepted; /* values the channel took */
  int status;   /* the first failure, if any */
  int waiting;
} src_t;

static inline void src_next(src_t* s);

static inline void src_sent(uvchan_send_t* r, int st) {
  src_t* s = r->data;
  s->waiting = 0;
  if (st != 0) {
    s->status = st;
    return;
  }
  s->accepted++;
  s->i++;
  src_next(s);
}

static inline void src_next(src_t* s) {
  int r;
  while (s->i < s->n) {
    s->value = s->vals != NULL ? s->vals[s->i] : s->i;
    r = uvchan_try_send(s->ch, &s->value);
    if (r == 0) {
      s->accepted++;
      s->i++;
      continue;
    }
    if (r != UV_EAGAIN) {
      s->status = r;
      return;
    }
    s->req.data = s;
    assert_int_equal(uvchan_send(&s->req, s->ch, &s->value, src_sent), 0);
    s->waiting = 1;
    return;
  }
  if (s->close_at_end)
    assert_int_equal(uvchan_close(s->ch), 0);
}

static inline void src_start(src_t* s, uvchan_t* ch, const int* vals, int n, int close_at_end) {
  memset(s, 0, sizeof(*s));
  s->ch = ch;
  s->vals = vals;
  s->n = n;
  s->close_at_end = close_at_end;
  src_next(s);
}

/* ---- a sink: receives ints with callback requests until UV_EOF (or until paused) ---- */
enum { SINK_MAX = 8192 };
typedef struct {
  uvchan_recv_t req;
  uvchan_t* ch;
  int got[SINK_MAX];
  int n;
  int value;
  int end;     /* the status that stopped it: UV_EOF, UV_ECANCELED... */
  int paused;  /* 1: take no more after the current receive */
  int limit;   /* > 0: pause after this many */
  int waiting;
} sink_t;

static inline void sink_recv(uvchan_recv_t* r, int st) {
  sink_t* k = r->data;
  k->waiting = 0;
  if (st != 0) {
    k->end = st;
    return;
  }
  assert_true(k->n < SINK_MAX);
  k->got[k->n++] = k->value;
  if (k->limit > 0 && k->n >= k->limit)
    k->paused = 1;
  if (!k->paused) {
    assert_int_equal(uvchan_recv(&k->req, k->ch, &k->value, sink_recv), 0);
    k->waiting = 1;
  }
}

static inline void sink_start(sink_t* k, uvchan_t* ch) {
  memset(k, 0, sizeof(*k));
  k->ch = ch;
  k->req.data = k;
  assert_int_equal(uvchan_recv(&k->req, ch, &k->value, sink_recv), 0);
  k->waiting = 1;
}

static inline void sink_resume(sink_t* k) {
  k->paused = 0;
  k->limit = 0;
  if (!k->waiting && k->end == 0) {
    assert_int_equal(uvchan_recv(&k->req, k->ch, &k->value, sink_recv), 0);
    k->waiting = 1;
  }
}

/* ---- heap values: an element is an int*; live counts those not yet freed ---- */
static int live;

static inline int* hv_new(int v) {
  int* p = malloc(sizeof(int));
  assert_non_null(p);
  *p = v;
  live++;
  return p;
}

static inline void hv_free(int* p) {
  assert_true(live > 0);
  live--;
  free(p);
}

static int destroyed; /* values handed to hv_dtor */
static inline void hv_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  destroyed++;
  hv_free(*(int**)value);
}

/* End and close callbacks that count and record. */
typedef struct {
  int calls;
  int status;
} endc_t;

static inline void stage_end(uvchan_stage_t* st, int status) {
  endc_t* e = st->data;
  e->calls++;
  e->status = status;
}

static int closes;
static inline void stage_closed(uvchan_stage_t* st) {
  (void)st;
  closes++;
}

#endif
