/* The seed's dry run, callback style: a producer sends 10 then 20 on an unbuffered channel; main
 * receives both. The table is printed from uvchan's live trace of the run, not written by hand.
 *
 *   func producer(ch chan int) { ch <- 10; ch <- 20 }
 *   func main() { ch := make(chan int); go producer(ch); val1 := <-ch; val2 := <-ch }
 */
#include <stdio.h>
#include <string.h>

#include "uvchan.h"

typedef struct {
  const char* name;
  const char* point[2]; /* the seed's labels for this party's two operations */
  int op;
} party_t;

static party_t main_party = {"main", {"Point C", "Point D"}, 0};
static party_t producer_party = {"producer", {"Point A", "Point B"}, 0};
static int step;

static void row(const char* m, const char* p, const char* chan) {
  printf("| %4d | %-26s | %-26s | %-30s |\n", ++step, m, p, chan);
}

/* Turns each channel event into a row of the seed's trace table. */
static void on_trace(const uvchan_trace_t* ev, void* arg) {
  party_t* who = ev->req != NULL ? ev->req->data : NULL;
  party_t* peer = ev->peer != NULL ? ev->peer->data : NULL;
  char a[64], b[64], c[64];
  (void)arg;
  if (ev->kind == UVCHAN_TRACE_WAIT) {
    snprintf(a, sizeof(a), "Blocked at %s", who->point[who->op]);
    snprintf(c, sizeof(c), "Empty: %s waits", who->name);
    if (who == &main_party)
      row(a, "", c);
    else
      row("", a, c);
  } else if (ev->kind == UVCHAN_TRACE_HANDSHAKE) {
    party_t* sender = ev->op == UVCHAN_OP_SEND ? who : peer;
    party_t* receiver = ev->op == UVCHAN_OP_SEND ? peer : who;
    int v = *(const int*)ev->value;
    snprintf(a, sizeof(a), "Receives %d (%s)", v, receiver->point[receiver->op]);
    snprintf(b, sizeof(b), "Sends %d (%s)", v, sender->point[sender->op]);
    snprintf(c, sizeof(c), "Handshake! %d passes", v);
    (void)sender;
    row(a, b, c);
  }
}

static uvchan_t ch;
static uvchan_send_t send_req;
static uvchan_recv_t recv_req;
static int to_send[2] = {10, 20};
static int vals[2];

static void producer_sent(uvchan_send_t* req, int status) {
  party_t* p = req->data;
  if (status != 0 || ++p->op == 2)
    return; /* the producer is done after its second send */
  uvchan_send(&send_req, &ch, &to_send[p->op], producer_sent);
}

static void main_received(uvchan_recv_t* req, int status);

/* main "processes val1" for a moment before it reaches Point D, as in the seed's step 4. */
static uv_timer_t processing;
static void main_next(uv_timer_t* t) {
  (void)t;
  uvchan_recv(&recv_req, &ch, &vals[1], main_received);
}

static void main_received(uvchan_recv_t* req, int status) {
  party_t* p = req->data;
  if (status != 0)
    return;
  printf("  (main: val%d = %d)\n", p->op + 1, vals[p->op]);
  if (++p->op == 2)
    return;
  uv_timer_start(&processing, main_next, 10, 0);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  uvchan_ctx_t ctx;

  uvchan_ctx_init(loop, &ctx);
  uvchan_ctx_set_trace(&ctx, on_trace, NULL);
  uvchan_init(&ctx, &ch, sizeof(int), 0); /* ch := make(chan int) */
  uv_timer_init(loop, &processing);

  printf("The handshake, traced live from uvchan (unbuffered channel):\n\n");
  printf("| %4s | %-26s | %-26s | %-30s |\n", "step", "main", "producer", "channel");
  printf("|------|----------------------------|----------------------------|--------------------------------|\n");
  /* main reaches `val1 := <-ch` first; the producer starts when the loop runs. */
  recv_req.data = &main_party;
  send_req.data = &producer_party;
  uvchan_recv(&recv_req, &ch, &vals[0], main_received);
  uvchan_send(&send_req, &ch, &to_send[0], producer_sent);
  uv_run(loop, UV_RUN_DEFAULT);

  printf("\nval1 = %d, val2 = %d\n", vals[0], vals[1]);
  uvchan_destroy(&ch);
  uv_close((uv_handle_t*)&processing, NULL);
  uvchan_ctx_close(&ctx, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 && vals[0] == 10 && vals[1] == 20 ? 0 : 1;
}
