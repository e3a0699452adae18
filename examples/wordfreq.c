/* wordfreq: the 10 most frequent words of stdin, as "count word" lines (count descending, then
 * word ascending), in bounded memory on any input size.
 *
 *   stdin --reader--> chunks --split--> batches --count x K--> tables_k --merge--> tables --> sum
 *
 * A word is a maximal run of ASCII letters, lowercased. The pipeline is callback-only:
 *   - split: a stage that cuts 64 KiB chunks into batches of words (several per chunk; a word
 *     cut by a chunk boundary is carried to the next chunk; `finish` flushes the last one);
 *   - count: K stages on the one batches channel (fan-out), each asynchronous: it counts a batch
 *     into its own table on libuv's threadpool (uv_queue_work), and its `finish` emits the table;
 *   - merge: the K table channels into one (fan-in); the sink adds the tables up and prints.
 * All of them, and the reader of stdin, are members of one pipeline: the first error stops the
 * rest.
 *
 * Backpressure reaches stdin: the chunk channel holds 4 chunks, the reader stops reading while
 * it is full, and every stage holds at most one input, so memory is bounded by the channels'
 * capacities plus the word tables (one entry per distinct word). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvchan.h"

enum { CHUNK = 64 * 1024, BATCH = 16 * 1024, MAX_COUNTERS = 4, TOP = 10 };

static uv_loop_t* loop;
static uvchan_ctx_t ctx;

/* ---- chunks: stdin read by a stream reader into a channel of buffers (uvchan/stream.h) ----
 * The reader opens fd 0 as what it is (a pipe or a TTY is read as a stream, a regular file with
 * uv_fs_read), reads 64 KiB blocks of the pool into `chunks`, and stops reading while `chunks` is
 * full. EOF closes the channel; a read error ends the reader, and so the pipeline, with it. A
 * chunk received by the split stage is the stage's, and is released there; chunks left in the
 * channel at teardown go back to the pool through its destructor (uvchan_buf_chan_init). */

static uvchan_pool_t pool;
static uvchan_reader_t reader;


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
  uvchan_buf_t c = *(uvchan_buf_t*)value;
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
  uvchan_buf_release(&c);
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
  pipeline_status = status; /* a failure stopped every member, the reader included */
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
  uvchan_io_opts_t reader_opts = {0, &pipeline, 0, NULL};
  unsigned k = uv_available_parallelism(), i;
  int r, failed = 0;

  k = k < 1 ? 1 : k > MAX_COUNTERS ? MAX_COUNTERS : k;
  loop = uv_default_loop();
  if ((r = uvchan_ctx_init(loop, &ctx)) != 0 || (r = uvchan_pipeline_init(&ctx, &pipeline)) != 0 ||
      (r = uvchan_pool_init(&pool, CHUNK, 8)) != 0 || (r = uvchan_buf_chan_init(&ctx, &chunks, 4)) != 0 ||
      (r = uvchan_reader_init_fd(&ctx, &reader, 0, &chunks, &pool, &reader_opts)) != 0)
    goto fail;
  uvchan_init(&ctx, &batches, sizeof(batch_t*), 2 * k);
  uvchan_init(&ctx, &tables, sizeof(table_t*), 1);
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
  if ((r = uvchan_recv(&sink.req, &tables, &sink.got, on_table)) != 0)
    goto fail;
  uv_run(loop, UV_RUN_DEFAULT);

  if (pipeline_status != 0 || sink.status != 0 || sink.done != UV_EOF) {
    r = reader.status != 0 ? reader.status : pipeline_status != 0 ? pipeline_status : sink.status;
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
  uvchan_pool_destroy(&pool);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return failed;

fail:
  fprintf(stderr, "wordfreq: %s\n", uv_strerror(r));
  return 1;
}
