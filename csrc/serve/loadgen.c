/* The load generator, in C so that the load costs the machine little next to the pool it
 * measures (a Python thread per client spends more CPU per request than a small model's
 * compute, and on a small machine takes it from the workers).
 *
 * One thread drives every client's connection from one poll loop (a thread per client
 * would cost a wake-up per answer each, taken from the pool on a small machine).  Closed
 * loop: a client sends its next request as soon as its last one is answered.  Open loop:
 * each request goes at its due time however many are still unanswered (a client with one
 * request out would hold the next one back behind a slow answer, then send late ones in a
 * bunch); a timer wakes the loop for the next due time to the microsecond. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/spec.h"
#include "serve/serve.h"

/* A request out: its id and the time its latency counts from (sent, or due). */
typedef struct pending {
    uint64_t id, from_ns;
} pending;

/* One client: its connection and its requests out, oldest first. */
typedef struct conn {
    bf_client *client;
    pending *v;
    size_t n, cap;
    uint64_t next;      /* closed loop: its requests so far */
} conn;

typedef struct load_run {
    const bf_load_params *p;
    size_t elems;
    conn *conns;
    uint64_t start_ns, end_ns, last_answer_ns;
    uint64_t sent, ok, errors;
    size_t records;
    bf_status last_error;
} load_run;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t clamp_us(uint64_t ns)
{
    uint64_t us = ns / 1000u;
    return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int conn_push(conn *c, uint64_t id, uint64_t from_ns)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        pending *v = realloc(c->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        c->v = v, c->cap = cap;
    }
    c->v[c->n++] = (pending){id, from_ns};
    return 0;
}

/* Removes the request id; the time its latency counts from, or 0 when it is not out
 * (timed out already, or not ours). */
static uint64_t conn_take(conn *c, uint64_t id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].id == id) {
            uint64_t from = c->v[i].from_ns;
            memmove(c->v + i, c->v + i + 1, (c->n - i - 1) * sizeof *c->v);
            c->n--;
            return from;
        }
    return 0;
}

/* Drops the requests out since before `before`; how many. */
static size_t conn_expire(conn *c, uint64_t before)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].from_ns >= before)
            c->v[k++] = c->v[i];
    size_t dropped = c->n - k;
    c->n = k;
    return dropped;
}

static void count_error(load_run *run, bf_status st, uint64_t n)
{
    run->errors += n;
    run->last_error = st;
}

/* Sends request j (payload j % n_payloads) on client ci; latency counts from from_ns. */
static void post(load_run *run, int ci, uint64_t j, uint64_t from_ns)
{
    const bf_load_params *p = run->p;
    conn *c = &run->conns[ci];
    size_t i = (size_t)(j % (uint64_t)p->n_payloads);
    uint64_t id;
    run->sent++;
    bf_status st = bf_client_post(c->client, p->payloads + i * run->elems, p->dims,
                                  p->ranges[2 * i], p->ranges[2 * i + 1], p->k, &id);
    if (st == BF_STATUS_OK && conn_push(c, id, from_ns) == 0)
        return;
    count_error(run, st == BF_STATUS_OK ? BF_STATUS_OUT_OF_MEMORY : st, 1);
}

/* Closed loop: client ci's next request, if the window is still open. */
static void post_next(load_run *run, int ci, uint64_t now)
{
    conn *c = &run->conns[ci];
    if (now < run->end_ns)
        post(run, ci, (uint64_t)ci + c->next++ * (uint64_t)run->p->n_clients, now_ns());
}

static void record(load_run *run, uint64_t from_ns, uint64_t latency_ns, const bf_result *r)
{
    const bf_load_params *p = run->p;
    size_t rec = run->records++;
    if (rec >= p->max_records)
        return;
    if (p->latency_us)
        p->latency_us[rec] = clamp_us(latency_ns);
    if (p->queue_us)
        p->queue_us[rec] = r->queue_us;
    if (p->compute_us)
        p->compute_us[rec] = r->compute_us;
    if (p->batch)
        p->batch[rec] = (uint16_t)(r->batch > UINT16_MAX ? UINT16_MAX : r->batch);
    if (p->start_us)
        p->start_us[rec] = clamp_us(from_ns - run->start_ns);
}

/* Reads every answer waiting for client ci (closed loop: sends its next request). */
static void collect(load_run *run, int ci)
{
    conn *c = &run->conns[ci];
    uint64_t id;
    int has_id;
    bf_result r = {0};
    bf_status st;
    while (bf_client_take(c->client, &id, &has_id, &r, &st) == 1) {
        /* a reply naming no request answers one of ours all the same (the oldest: replies
         * the broker makes itself come in order) */
        if (!has_id && c->n > 0)
            id = c->v[0].id;
        uint64_t t1 = now_ns(), from = conn_take(c, id);
        if (from == 0)
            continue; /* timed out already: counted then */
        run->last_answer_ns = t1;
        if (st == BF_STATUS_OK) {
            run->ok++;
            record(run, from, t1 - from, &r);
        } else {
            count_error(run, st, 1);
        }
        if (run->p->rate == 0)
            post_next(run, ci, t1);
    }
}

static bf_status drive(load_run *run)
{
    const bf_load_params *p = run->p;
    int nc = p->n_clients, open = p->rate > 0;
    uint64_t timeout_ns = (uint64_t)p->client.timeout_ms * 1000000u;
    uint64_t sweep_every = timeout_ns / 8 > 1000000u ? timeout_ns / 8 : 1000000u;
    zmq_pollitem_t *items = calloc((size_t)nc + 1, sizeof *items);
    if (items == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "bf_load_run: %d clients", nc);
    bf_timer timer;
    bf_timer_open(&timer);
    for (int c = 0; c < nc; c++)
        items[c] = (zmq_pollitem_t){bf_client_socket(run->conns[c].client), 0, ZMQ_POLLIN, 0};
    if (timer.fd >= 0)
        items[nc] = (zmq_pollitem_t){NULL, timer.fd, ZMQ_POLLIN, 0};
    uint64_t next_sweep = run->start_ns + sweep_every, j = 0;
    uint64_t due = open ? run->start_ns : run->end_ns; /* open loop: request j's */
    if (!open)
        for (int c = 0; c < nc; c++)
            post_next(run, c, run->start_ns);
    for (;;) {
        uint64_t now = now_ns();
        /* at most a few dozen sends between reads: a rate beyond what this thread can send
         * must not stop it reading answers (it then sends late, and that counts) */
        for (int burst = 0; open && due <= now && due < run->end_ns && burst < 64; burst++,
             due = run->start_ns + (uint64_t)((double)++j * 1e9 / p->rate))
            post(run, (int)(j % (uint64_t)nc), j, due);
        if (now >= next_sweep) { /* unanswered past the client's timeout: failed */
            for (int c = 0; c < nc; c++) {
                size_t lost = conn_expire(&run->conns[c], now > timeout_ns ? now - timeout_ns : 0);
                if (lost)
                    count_error(run, BF_STATUS_TIMEOUT, lost);
                if (!open && run->conns[c].n == 0) /* timed out, or could not send */
                    post_next(run, c, now);
            }
            next_sweep = now + sweep_every;
        }
        size_t outstanding = 0;
        for (int c = 0; c < nc; c++)
            outstanding += run->conns[c].n;
        if (outstanding == 0 && (open ? due >= run->end_ns : now >= run->end_ns))
            break;
        uint64_t wake = next_sweep; /* or the next request due (perhaps already), or the end */
        if (open && due < run->end_ns && due < wake)
            wake = due;
        else if (!open && run->end_ns > now && run->end_ns < wake)
            wake = run->end_ns;
        bf_timer_arm(&timer, (wake + 999) / 1000); /* ns -> us, never early */
        long ms = timer.armed_us ? 100 : (long)(((wake > now ? wake - now : 0) + 999999) / 1000000);
        if (zmq_poll(items, timer.fd >= 0 ? nc + 1 : nc, ms) < 0) {
            count_error(run, bf_zmq_error("load generator poll"), outstanding);
            break; /* a signal (Ctrl-C): what is out is lost */
        }
        if (timer.fd >= 0 && (items[nc].revents & ZMQ_POLLIN))
            bf_timer_fired(&timer);
        for (int c = 0; c < nc; c++)
            if (items[c].revents & ZMQ_POLLIN)
                collect(run, c);
    }
    free(items);
    bf_timer_close(&timer);
    return BF_STATUS_OK;
}

/* Opens every connection with one round trip before the clock starts, so that no
 * measured request waits for a TCP connect and a ZeroMQ handshake; waits up to the
 * client's timeout.  Returns how many were answered; -1: no memory to try, -2: the wait
 * failed (zmq_errno says why: a signal). */
static int warm_up(load_run *run)
{
    const bf_load_params *p = run->p;
    int nc = p->n_clients, waiting = 0; /* 1..1024, checked */
    uint64_t *ids = calloc((unsigned)nc, sizeof *ids);
    zmq_pollitem_t *items = calloc((unsigned)nc, sizeof *items);
    int answered = 0;
    if (ids == NULL || items == NULL) {
        free(ids), free(items);
        return -1; /* no warm-up: the run still measures, slightly worse */
    }
    for (int c = 0; c < nc; c++) {
        bf_client *cl = run->conns[c].client;
        items[c] = (zmq_pollitem_t){bf_client_socket(cl), 0, ZMQ_POLLIN, 0};
        if (bf_client_post(cl, p->payloads, p->dims, p->ranges[0], p->ranges[1], p->k,
                           &ids[c]) == BF_STATUS_OK)
            waiting++;
        else
            ids[c] = 0;
    }
    uint64_t deadline = bf_now_us() + (uint64_t)p->client.timeout_ms * 1000u;
    while (waiting > 0) {
        uint64_t now = bf_now_us();
        if (now >= deadline)
            break;
        if (zmq_poll(items, nc, (long)(deadline - now + 999) / 1000) < 0) {
            answered = -2; /* a signal (Ctrl-C) */
            break;
        }
        for (int c = 0; c < nc; c++) {
            uint64_t id;
            int has_id;
            bf_result r = {0};
            bf_status st;
            while ((items[c].revents & ZMQ_POLLIN) && ids[c] &&
                   bf_client_take(run->conns[c].client, &id, &has_id, &r, &st) == 1)
                if (id == ids[c] || !has_id)
                    ids[c] = 0, waiting--, answered++;
        }
    }
    free(ids), free(items);
    return answered;
}

/* ---- the run ---------------------------------------------------------------------------- */

bf_load_params bf_load_default_params(void)
{
    bf_load_params p = {0};
    p.client = bf_client_default_params();
    p.n_clients = 1;
    p.seconds = 1.0;
    p.k = 1;
    return p;
}

bf_status bf_load_run(const bf_load_params *p, bf_load_result *out)
{
    if (p == NULL || out == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_load_run: NULL argument");
    memset(out, 0, sizeof *out);
    if (p->n_clients < 1 || p->n_clients > 1024 || !(p->seconds > 0 && p->seconds <= 86400) ||
        !(p->rate >= 0 && p->rate <= 1e7) || p->n_payloads < 1 || p->payloads == NULL ||
        p->ranges == NULL || p->k < 1 || (p->max_records > 0 && p->latency_us == NULL &&
                                          p->queue_us == NULL && p->compute_us == NULL &&
                                          p->batch == NULL && p->start_us == NULL))
        return bf_error(BF_STATUS_INVALID_ARGUMENT,
                        "bf_load_run: n_clients in [1, 1024], seconds in (0, 86400], rate in "
                        "[0, 1e7], payloads, ranges, k >= 1 and record arrays");
    size_t elems = 1;
    for (int d = 0; d < 3; d++) {
        if (p->dims[d] < 1 || p->dims[d] > (1 << 20))
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_load_run: dims must be positive");
        elems *= (size_t)p->dims[d];
    }
    /* a bad range would only come back as error replies, one per request: refuse it here */
    for (int i = 0; i < p->n_payloads; i++)
        if (!bf_range_ok(p->ranges[2 * i], p->ranges[2 * i + 1]))
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_load_run: payload %d: quantization "
                            "range (%g, %g) must be finite, min <= max, max - min finite", i,
                            p->ranges[2 * i], p->ranges[2 * i + 1]);
    load_run run = {.p = p, .elems = elems};
    run.conns = calloc((size_t)p->n_clients, sizeof *run.conns);
    if (run.conns == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "bf_load_run: %d clients", p->n_clients);
    bf_sched_saved saved;
    bf_status st = bf_rt_enter(p->rt_priority, &saved);
    int made = 0;
    /* one context, so one I/O thread, for all the clients: fewer threads to wake */
    void *zctx = st == BF_STATUS_OK ? zmq_ctx_new() : NULL;
    if (zctx == NULL) {
        free(run.conns);
        bf_rt_leave(&saved);
        return st == BF_STATUS_OK ? bf_zmq_error("zmq_ctx_new") : st;
    }
    st = bf_rt_zmq(zctx, p->rt_priority); /* allowed: this thread has it */
    if (st != BF_STATUS_OK)
        goto done;
    for (; made < p->n_clients; made++) {
        st = bf_client_create_in(&run.conns[made].client, &p->client, zctx);
        if (st != BF_STATUS_OK)
            goto done;
    }
    int warm = warm_up(&run);
    if (warm == 0 || warm == -2) {
        st = warm == -2 ? bf_zmq_error("load test")
                        : bf_error(BF_STATUS_TIMEOUT, "load test: no answer from %s to any of "
                                   "%d requests within %d ms (is a pool serving there?)",
                                   p->client.endpoint, p->n_clients, p->client.timeout_ms);
        goto done;
    }
    run.start_ns = now_ns();
    run.end_ns = run.start_ns + (uint64_t)(p->seconds * 1e9);
    run.last_answer_ns = run.start_ns;
    st = drive(&run);
    out->sent = run.sent;
    out->ok = run.ok;
    out->errors = run.errors;
    out->last_error = run.last_error;
    out->n_records = run.records < p->max_records ? run.records : p->max_records;
    out->seconds = (double)(run.last_answer_ns - run.start_ns) / 1e9;
done:
    for (int i = 0; i < made; i++) {
        bf_client_destroy(run.conns[i].client);
        free(run.conns[i].v);
    }
    zmq_ctx_term(zctx);
    free(run.conns);
    bf_rt_leave(&saved);
    return st;
}
