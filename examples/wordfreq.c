/* wordfreq: the 10 most frequent words of stdin, as "count word" lines (count descending, then
 * word ascending), in bounded memory on any input size.
 *
 *   stdin --adapter--> chunks --split--> batches --count x K--> tables_k --merge--> tables --> sum
 *
 * A word is a maximal run of ASCII letters, lowercased. The pipeline is callback-only:
 *   - split: a stage that cuts 64 KiB chunks into batches of words (several per chunk; a word
 *     cut by a chunk boundary is carried to the next chunk; `finish` flushes the last one);
 *   - count: K stages on the one batches channel (fan-out), each asynchronous: it counts a batch
 *     into its own table on libuv's threadpool (uv_queue_work), and its `finish` emits the table;
 *   - merge: the K table channels into one (fan-in); the sink adds the tables up and prints.
 * All of them are members of one pipeline: the first error stops the rest.
 *
 * Backpressure reaches stdin: the chunk channel holds 4 chunks, the adapter stops reading while
 * it is full, and every stage holds at most one input, so memory is bounded by the channels'
 * capacities plus the word tables (one entry per distinct word). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

enum { CHUNK = 64 * 1024, BATCH = 16 * 1024, MAX_COUNTERS = 4, TOP = 10 };

static uv_loop_t* loop;
static uvchan_ctx_t ctx;

/* ---- chunk buffers: a small pool; the chunk channel's destructor returns buffers to it ---- */

typedef struct {
  char* base;
  size_t len;
} chunk_t;

static char* pool_free[8];
static int pool_n;

static char* pool_get(void) {
  char* b = pool_n > 0 ? pool_free[--pool_n] : malloc(CHUNK);
  if (b == NULL) {
    fprintf(stderr, "wordfreq: out of memory\n");
    exit(1);
  }
  return b;
}

static void pool_put(char* b) {
  if (pool_n < (int)(sizeof(pool_free) / sizeof(pool_free[0])))
    pool_free[pool_n++] = b;
  else
    free(b);
}

static void chunk_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  pool_put(((chunk_t*)value)->base);
}

/* ==== TEMPORARY stdin adapter ==================================================================
 * Stands in for the stream adapter of issue 13 (stream -> channel of buffers), which does not
 * exist yet: replace this section with it. It reads fd 0 into the `chunks` channel: a pipe or a
 * tty with uv_read_start, stopped (uv_read_stop) while the channel is full and started again
 * when a send of the pending chunk completes; a regular file with uv_fs_read, one read per free
 * slot. EOF closes the channel; a read error closes it too and is reported at the end. Buffers
 * come from the pool, and go back to it through the channel's element destructor. */

static struct {
  uvchan_t* ch;
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
  } h;
  int is_stream;
  int open;   /* the stream handle is not closed */
  int status; /* a read error, if any */
  uv_fs_t fs;
  uvchan_send_t send;
  chunk_t pending; /* the chunk a waiting send holds */
  int sending;
  int stopped; /* the pipeline ended early: stop reading */
} in;

static void adapter_close(void) {
  if (in.is_stream && in.open) {
    in.open = 0;
    uv_close((uv_handle_t*)&in.h, NULL);
  }
}

static void adapter_end(int status) {
  if (status < 0 && status != UV_EOF && in.status == 0)
    in.status = status;
  (void)uvchan_close(in.ch); /* UV_EPIPE if closed already */
  adapter_close();
}

static void file_read_next(void);
static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
static void on_stream_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);

static void on_chunk_sent(uvchan_send_t* req, int status) {
  (void)req;
  in.sending = 0;
  if (status != 0) { /* the pipeline ended: the chunk was not taken */
    pool_put(in.pending.base);
    adapter_end(0);
    return;
  }
  if (in.stopped)
    return;
  if (!in.is_stream)
    file_read_next();
  else if ((status = uv_read_start((uv_stream_t*)&in.h, on_alloc, on_stream_read)) != 0)
    adapter_end(status);
}

/* Hands a chunk to the channel: at once if it has room, else through a send that waits. */
static int adapter_put(char* base, size_t len) {
  chunk_t c = {base, len};
  int r = uvchan_try_send(in.ch, &c);
  if (r != UV_EAGAIN)
    return r;
  in.pending = c;
  in.sending = 1;
  return uvchan_send(&in.send, in.ch, &in.pending, on_chunk_sent) == 0 ? UV_EAGAIN : UV_EPIPE;
}

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(pool_get(), CHUNK);
}

static void on_stream_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  int r;
  if (nread <= 0) {
    if (buf->base != NULL)
      pool_put(buf->base);
    if (nread < 0)
      adapter_end((int)nread); /* UV_EOF, or a read error */
    return;
  }
  r = adapter_put(buf->base, (size_t)nread);
  if (r == UV_EAGAIN) {
    uv_read_stop(s); /* the channel is full: backpressure reaches the fd */
  } else if (r != 0) {
    pool_put(buf->base);
    adapter_end(0);
  }
}

static char* file_buf;
static void on_file_read(uv_fs_t* req) {
  ssize_t n = req->result;
  int r;
  uv_fs_req_cleanup(req);
  if (n <= 0 || in.stopped) {
    pool_put(file_buf);
    adapter_end(n < 0 ? (int)n : 0);
    return;
  }
  r = adapter_put(file_buf, (size_t)n);
  if (r == 0) {
    file_read_next();
  } else if (r != UV_EAGAIN) {
    pool_put(file_buf);
    adapter_end(0);
  }
}

static void file_read_next(void) {
  uv_buf_t b;
  file_buf = pool_get();
  b = uv_buf_init(file_buf, CHUNK);
  if (uv_fs_read(loop, &in.fs, 0, &b, 1, -1, on_file_read) != 0) {
    pool_put(file_buf);
    adapter_end(UV_EIO);
  }
}

static int adapter_start(uvchan_t* ch) {
  uv_handle_type t = uv_guess_handle(0);
  int r;
  in.ch = ch;
  if (t == UV_TTY) {
    r = uv_tty_init(loop, &in.h.tty, 0, 1);
  } else if (t == UV_NAMED_PIPE || t == UV_TCP) {
    r = uv_pipe_init(loop, &in.h.pipe, 0);
    if (r == 0 && (r = uv_pipe_open(&in.h.pipe, 0)) != 0)
      uv_close((uv_handle_t*)&in.h.pipe, NULL);
  } else {
    file_read_next(); /* a regular file, /dev/null... */
    return 0;
  }
  if (r != 0)
    return r;
  in.is_stream = 1;
  in.open = 1;
  return uv_read_start((uv_stream_t*)&in.h, on_alloc, on_stream_read);
}

/* The pipeline failed: stop reading, and give back a chunk a send still holds. */
static void adapter_stop(void) {
  in.stopped = 1;
  if (in.sending)
    (void)uvchan_cancel((uvchan_req_t*)&in.send); /* on_chunk_sent puts the chunk back */
  adapter_close();
}
/* ==== end of the temporary stdin adapter ==================================================== */

/* ---- batches of words: NUL-terminated, lowercased, back to back ---- */

typedef struct {
  size_t len, cap;
  char data[]; /* cap bytes: BATCH, or one word longer than that */
} batch_t;

static void batch_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  free(*(batch_t**)value);
}

/* ---- word tables: open addressing, words in the table's own arena ---- */

typedef struct {
  char* word;
  uint64_t hash;
  uint64_t count;
} entry_t;

typedef struct arena_s {
  struct arena_s* next;
  size_t used;
  char mem[64 * 1024 - 2 * sizeof(size_t)];
} arena_t;

typedef struct {
  entry_t* slots;
  size_t cap, n;
  arena_t* arena;
  char** big; /* words longer than an arena block */
  size_t nbig;
} table_t;

static table_t* table_new(void) {
  table_t* t = calloc(1, sizeof(*t));
  if (t != NULL) {
    t->cap = 1024;
    t->slots = calloc(t->cap, sizeof(entry_t));
  }
  return t != NULL && t->slots != NULL ? t : NULL;
}

static void table_free(table_t* t) {
  arena_t* a;
  if (t == NULL)
    return;
  while ((a = t->arena) != NULL) {
    t->arena = a->next;
    free(a);
  }
  for (size_t i = 0; i < t->nbig; i++)
    free(t->big[i]);
  free(t->big);
  free(t->slots);
  free(t);
}

static void table_dtor(uvchan_t* ch, void* value) {
  (void)ch;
  table_free(*(table_t**)value);
}

static uint64_t hash_word(const char* w, size_t len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++)
    h = (h ^ (unsigned char)w[i]) * 1099511628211ull;
  return h;
}

static char* table_store(table_t* t, const char* w, size_t len) {
  char* p;
  if (len + 1 > sizeof(t->arena->mem)) {
    char** big = realloc(t->big, (t->nbig + 1) * sizeof(char*));
    if (big == NULL || (p = malloc(len + 1)) == NULL)
      return NULL;
    t->big = big;
    t->big[t->nbig++] = p;
  } else {
    if (t->arena == NULL || t->arena->used + len + 1 > sizeof(t->arena->mem)) {
      arena_t* a = malloc(sizeof(arena_t));
      if (a == NULL)
        return NULL;
      a->next = t->arena;
      a->used = 0;
      t->arena = a;
    }
    p = t->arena->mem + t->arena->used;
    t->arena->used += len + 1;
  }
  memcpy(p, w, len + 1);
  return p;
}

static int table_grow(table_t* t) {
  size_t cap = t->cap * 2, i, j;
  entry_t* s = calloc(cap, sizeof(entry_t));
  if (s == NULL)
    return UV_ENOMEM;
  for (i = 0; i < t->cap; i++) {
    if (t->slots[i].word == NULL)
      continue;
    for (j = t->slots[i].hash & (cap - 1); s[j].word != NULL; j = (j + 1) & (cap - 1))
      ;
    s[j] = t->slots[i];
  }
  free(t->slots);
  t->slots = s;
  t->cap = cap;
  return 0;
}

/* Adds `count` to word `w` (NUL-terminated, `len` letters). */
static int table_add(table_t* t, const char* w, size_t len, uint64_t hash, uint64_t count) {
  size_t j;
  entry_t* e;
  if (t->n * 10 >= t->cap * 7 && table_grow(t) != 0)
    return UV_ENOMEM;
  for (j = hash & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
    e = &t->slots[j];
    if (e->word == NULL)
      break;
    if (e->hash == hash && strcmp(e->word, w) == 0) {
      e->count += count;
      return 0;
    }
  }
  if ((e->word = table_store(t, w, len)) == NULL)
    return UV_ENOMEM;
  e->hash = hash;
  e->count = count;
  t->n++;
  return 0;
}

/* ---- split: chunks -> batches ---- */

static struct {
  batch_t* b;
  char* carry; /* the word cut at the end of the last chunk */
  size_t ncarry, capcarry;
} sp;

/* Emits the batch being filled, if it holds a word. */
static int split_flush(uvchan_job_t* job) {
  int r;
  if (sp.b == NULL || sp.b->len == 0)
    return 0;
  r = uvchan_job_emit(job, &sp.b);
  if (r == 0)
    sp.b = NULL; /* the batch is the pipeline's now */
  return r;
}

static int split_word(uvchan_job_t* job, const char* w, size_t len) {
  size_t cap = len + 1 > BATCH ? len + 1 : BATCH;
  int r;
  if (sp.b != NULL && sp.b->len + len + 1 > sp.b->cap && (r = split_flush(job)) != 0)
    return r;
  if (sp.b == NULL) {
    if ((sp.b = malloc(sizeof(batch_t) + cap)) == NULL)
      return UV_ENOMEM;
    sp.b->len = 0;
    sp.b->cap = cap;
  }
  memcpy(sp.b->data + sp.b->len, w, len);
  sp.b->data[sp.b->len + len] = '\0';
  sp.b->len += len + 1;
  return 0;
}

static int carry_push(char c) {
  if (sp.ncarry == sp.capcarry) {
    size_t cap = sp.capcarry != 0 ? sp.capcarry * 2 : 64;
    char* p = realloc(sp.carry, cap);
    if (p == NULL)
      return UV_ENOMEM;
    sp.carry = p;
    sp.capcarry = cap;
  }
  sp.carry[sp.ncarry++] = c;
  return 0;
}

static int split_fn(uvchan_job_t* job, void* value) {
  chunk_t c = *(chunk_t*)value;
  int r = 0;
  for (size_t i = 0; i < c.len && r == 0; i++) {
    unsigned char ch = (unsigned char)c.base[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
      r = carry_push((char)(ch | 0x20));
    else if (sp.ncarry > 0) {
      r = split_word(job, sp.carry, sp.ncarry);
      sp.ncarry = 0;
    }
  }
  pool_put(c.base);
  return r != 0 ? r : split_flush(job); /* the chunk's words go on now; a cut word waits */
}

static int split_finish(uvchan_job_t* job, void* value) {
  int r;
  (void)value;
  if (sp.ncarry > 0 && (r = split_word(job, sp.carry, sp.ncarry)) != 0)
    return r;
  sp.ncarry = 0;
  return split_flush(job);
}

/* ---- count: batches -> a table per counter, on the threadpool ---- */

typedef struct {
  uvchan_stage_t stage;
  uv_work_t work;
  uvchan_job_t* job; /* the job the work is for */
  batch_t* batch;
  table_t* table;
  int status;
} counter_t;

static void count_work(uv_work_t* w) { /* on a threadpool thread: touches only its own table */
  counter_t* c = w->data;
  const char* p = c->batch->data;
  const char* end = p + c->batch->len;
  size_t len;
  c->status = 0;
  while (p < end && c->status == 0) {
    len = strlen(p);
    c->status = table_add(c->table, p, len, hash_word(p, len), 1);
    p += len + 1;
  }
}

static void count_after(uv_work_t* w, int status) {
  counter_t* c = w->data;
  free(c->batch);
  c->batch = NULL;
  (void)uvchan_job_done(c->job, status != 0 ? status : c->status);
}

static int count_fn(uvchan_job_t* job, void* value) {
  counter_t* c = job->stage->data;
  c->job = job;
  c->batch = *(batch_t**)value; /* this job owns it now; count_after frees it */
  c->work.data = c;
  return uv_queue_work(loop, &c->work, count_work, count_after);
}

static int count_finish(uvchan_job_t* job, void* value) {
  counter_t* c = job->stage->data;
  int r;
  (void)value;
  r = uvchan_job_emit(job, &c->table);
  if (r == 0)
    c->table = NULL; /* the merge and the sink own it now */
  (void)uvchan_job_done(job, r);
  return 0;
}

/* ---- sink: adds the tables up, prints the top ---- */

static struct {
  uvchan_recv_t req;
  table_t* got;
  table_t* total;
  int status;
  int done;
} sink;

static void sink_add(table_t* t) {
  if (sink.total == NULL || t->n > sink.total->n) { /* add the smaller into the larger */
    table_t* x = sink.total;
    sink.total = t;
    t = x;
  }
  for (size_t i = 0; t != NULL && i < t->cap && sink.status == 0; i++)
    if (t->slots[i].word != NULL)
      sink.status = table_add(sink.total, t->slots[i].word, strlen(t->slots[i].word),
                              t->slots[i].hash, t->slots[i].count);
  table_free(t);
}

static int by_count_then_word(const void* a, const void* b) {
  const entry_t* x = *(entry_t* const*)a;
  const entry_t* y = *(entry_t* const*)b;
  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  return strcmp(x->word, y->word);
}

static void print_top(void) {
  entry_t** all;
  size_t n = 0;
  if (sink.total == NULL)
    return;
  all = malloc((sink.total->n + 1) * sizeof(entry_t*));
  if (all == NULL) {
    sink.status = UV_ENOMEM;
    return;
  }
  for (size_t i = 0; i < sink.total->cap; i++)
    if (sink.total->slots[i].word != NULL)
      all[n++] = &sink.total->slots[i];
  qsort(all, n, sizeof(entry_t*), by_count_then_word);
  for (size_t i = 0; i < n && i < TOP; i++)
    printf("%llu %s\n", (unsigned long long)all[i]->count, all[i]->word);
  free(all);
}

static void on_table(uvchan_recv_t* req, int status) {
  if (status == 0) {
    sink_add(sink.got);
    uvchan_recv(req, req->data, &sink.got, on_table);
    return;
  }
  sink.done = status; /* UV_EOF: every counter's table is in */
}

/* ---- wiring ---- */

static uvchan_pipeline_t pipeline;
static int pipeline_status = 1;

static void on_pipeline_end(uvchan_pipeline_t* p, int status) {
  (void)p;
  pipeline_status = status;
  if (status != 0)
    adapter_stop();
}

int main(void) {
  uvchan_t chunks, batches, counted[MAX_COUNTERS], tables;
  uvchan_t* ins[MAX_COUNTERS];
  uvchan_stage_t split;
  counter_t counters[MAX_COUNTERS];
  uvchan_merge_t merge;
  uvchan_stage_opts_t split_opts = {1, 0, split_finish, &pipeline};
  uvchan_stage_opts_t count_opts = {1, UVCHAN_STAGE_ASYNC, count_finish, &pipeline};
  uvchan_merge_opts_t merge_opts = {0, &pipeline};
  unsigned k = uv_available_parallelism(), i;
  int r, failed = 0;

  k = k < 1 ? 1 : k > MAX_COUNTERS ? MAX_COUNTERS : k;
  loop = uv_default_loop();
  if ((r = uvchan_ctx_init(loop, &ctx)) != 0 || (r = uvchan_pipeline_init(&ctx, &pipeline)) != 0)
    goto fail;
  uvchan_init(&ctx, &chunks, sizeof(chunk_t), 4);
  uvchan_init(&ctx, &batches, sizeof(batch_t*), 2 * k);
  uvchan_init(&ctx, &tables, sizeof(table_t*), 1);
  uvchan_set_destructor(&chunks, chunk_dtor);
  uvchan_set_destructor(&batches, batch_dtor);
  uvchan_set_destructor(&tables, table_dtor);
  if ((r = uvchan_stage_init(&ctx, &split, &chunks, &batches, split_fn, &split_opts)) != 0)
    goto fail;
  memset(counters, 0, sizeof(counters));
  for (i = 0; i < k; i++) {
    uvchan_init(&ctx, &counted[i], sizeof(table_t*), 1);
    uvchan_set_destructor(&counted[i], table_dtor);
    ins[i] = &counted[i];
    if ((counters[i].table = table_new()) == NULL) {
      r = UV_ENOMEM;
      goto fail;
    }
    r = uvchan_stage_init(&ctx, &counters[i].stage, &batches, &counted[i], count_fn, &count_opts);
    if (r != 0)
      goto fail;
    counters[i].stage.data = &counters[i];
  }
  if ((r = uvchan_merge_init(&ctx, &merge, ins, k, &tables, &merge_opts)) != 0 ||
      (r = uvchan_pipeline_start(&pipeline, on_pipeline_end)) != 0)
    goto fail;
  sink.req.data = &tables;
  if ((r = uvchan_recv(&sink.req, &tables, &sink.got, on_table)) != 0 ||
      (r = adapter_start(&chunks)) != 0)
    goto fail;
  uv_run(loop, UV_RUN_DEFAULT);

  if (pipeline_status != 0 || in.status != 0 || sink.status != 0 || sink.done != UV_EOF) {
    r = in.status != 0 ? in.status : pipeline_status != 0 ? pipeline_status : sink.status;
    fprintf(stderr, "wordfreq: %s\n", r != 0 ? uv_strerror(r) : "pipeline stalled");
    failed = 1;
  } else {
    print_top();
    failed = sink.status != 0;
  }
  /* Teardown: close the pipeline, destroy the channels (what they hold goes to their
   * destructors), close the context. */
  uvchan_pipeline_close(&pipeline, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uvchan_destroy(&chunks);
  uvchan_destroy(&batches);
  uvchan_destroy(&tables);
  for (i = 0; i < k; i++) {
    uvchan_destroy(&counted[i]);
    table_free(counters[i].table);
  }
  table_free(sink.total);
  free(sp.b);
  free(sp.carry);
  while (pool_n > 0)
    free(pool_free[--pool_n]);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return failed;

fail:
  fprintf(stderr, "wordfreq: %s\n", uv_strerror(r));
  return 1;
}
