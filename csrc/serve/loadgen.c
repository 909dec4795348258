/* The load generator, in C so that the load costs the machine little next to the pool it
 * measures (a Python thread per client spends more CPU per request than a small model's
 * compute, and on a small machine takes it from the workers).
 *
 * Closed loop: a thread per client, one request at a time.  Open loop: one thread drives
 * every client's connection, sending each request at its due time whatever is still
 * outstanding (a client with one request at a time would hold the next one back while a
 * slow answer is out, and then send late ones in a bunch), and reads the answers as they
 * come; a timer wakes it for the next due time to the microsecond. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve.h"

typedef struct load_run {
    const bf_load_params *p;
    size_t elems;
    uint64_t start_ns;
    atomic_size_t next_record;
    atomic_uint_fast64_t sent, ok, errors, last_answer_ns;
    atomic_int last_error;
} load_run;

typedef struct load_thread {
    load_run *run;
    bf_client *client;
    int index;
    pthread_t th;
} load_thread;

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

/* ---- open loop ------------------------------------------------------------------------ */

typedef struct pending {
    uint64_t id, due_ns;
} pending;

/* Requests a client has out, oldest first (answers mostly come in order). */
typedef struct outbox {
    pending *v;
    size_t n, cap;
} outbox;

static int outbox_push(outbox *o, uint64_t id, uint64_t due_ns)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        pending *v = realloc(o->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        o->v = v, o->cap = cap;
    }
    o->v[o->n++] = (pending){id, due_ns};
    return 0;
}

/* Removes the request id; its due time, or 0 when it is not out (answered or timed out). */
static uint64_t outbox_take(outbox *o, uint64_t id)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->v[i].id == id) {
            uint64_t due = o->v[i].due_ns;
            memmove(o->v + i, o->v + i + 1, (o->n - i - 1) * sizeof *o->v);
            o->n--;
            return due;
        }
    return 0;
}

/* Drops the requests due before `before`; how many. */
static size_t outbox_expire(outbox *o, uint64_t before)
{
    size_t k = 0;
    for (size_t i = 0; i < o->n; i++)
        if (o->v[i].due_ns >= before)
            o->v[k++] = o->v[i];
    size_t dropped = o->n - k;
    o->n = k;
    return dropped;
}

static void record(load_run *run, uint64_t latency_ns, const bf_result *r)
{
    const bf_load_params *p = run->p;
    size_t rec = atomic_fetch_add(&run->next_record, 1);
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
}

static void count_error(load_run *run, bf_status st, uint64_t n)
{
    atomic_fetch_add(&run->errors, n);
    atomic_store(&run->last_error, (int)st);
}

/* Reads every answer waiting for client i. */
static void collect(load_run *run, bf_client *c, outbox *o)
{
    uint64_t id;
    bf_result r = {0};
    bf_status st;
    while (bf_client_take(c, &id, &r, &st) == 1) {
        uint64_t t1 = now_ns(), due = outbox_take(o, id);
        if (due == 0)
            continue; /* timed out already: counted then */
        atomic_store(&run->last_answer_ns, t1);
        if (st != BF_STATUS_OK) {
            count_error(run, st, 1);
            continue;
        }
        atomic_fetch_add(&run->ok, 1);
        record(run, t1 - due, &r);
    }
}

static bf_status open_loop(load_run *run, load_thread *th)
{
    const bf_load_params *p = run->p;
    int nc = p->n_clients;
    uint64_t end = run->start_ns + (uint64_t)(p->seconds * 1e9);
    uint64_t timeout_ns = (uint64_t)p->client.timeout_ms * 1000000u;
    uint64_t sweep_every = timeout_ns / 8 > 1000000u ? timeout_ns / 8 : 1000000u;
    outbox *out = calloc((size_t)nc, sizeof *out);
    zmq_pollitem_t *items = calloc((size_t)nc + 1, sizeof *items);
    bf_timer timer;
    bf_timer_open(&timer);
    if (out == NULL || items == NULL) {
        free(out), free(items), bf_timer_close(&timer);
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "bf_load_run: %d clients", nc);
    }
    size_t outstanding = 0;
    uint64_t next_sweep = run->start_ns + sweep_every;
    for (uint64_t j = 0;;) {
        uint64_t now = now_ns(), due = run->start_ns + (uint64_t)((double)j * 1e9 / p->rate);
        for (; due <= now && due < end; due = run->start_ns + (uint64_t)(++j * 1e9 / p->rate)) {
            int c = (int)(j % (uint64_t)nc);
            size_t i = (size_t)(j % (uint64_t)p->n_payloads);
            uint64_t id;
            atomic_fetch_add(&run->sent, 1);
            bf_status st = bf_client_post(th[c].client, p->payloads + i * run->elems, p->dims,
                                          p->ranges[2 * i], p->ranges[2 * i + 1], p->k, &id);
            if (st == BF_STATUS_OK && outbox_push(&out[c], id, due) == 0)
                outstanding++;
            else
                count_error(run, st == BF_STATUS_OK ? BF_STATUS_OUT_OF_MEMORY : st, 1);
        }
        if (now >= next_sweep) { /* unanswered past the client's timeout: failed */
            size_t lost = 0;
            for (int c = 0; c < nc; c++)
                lost += outbox_expire(&out[c], now > timeout_ns ? now - timeout_ns : 0);
            if (lost)
                count_error(run, BF_STATUS_TIMEOUT, lost);
            next_sweep = now + sweep_every;
        }
        outstanding = 0;
        for (int c = 0; c < nc; c++)
            outstanding += out[c].n;
        if (due >= end && outstanding == 0)
            break;
        uint64_t wake = due < end && due < next_sweep ? due : next_sweep;
        bf_timer_arm(&timer, (wake + 999) / 1000); /* ns -> us, never early */
        int n = 0;
        for (int c = 0; c < nc; c++)
            items[n++] = (zmq_pollitem_t){bf_client_socket(th[c].client), 0, ZMQ_POLLIN, 0};
        if (timer.fd >= 0)
            items[n++] = (zmq_pollitem_t){NULL, timer.fd, ZMQ_POLLIN, 0};
        long ms = timer.armed_us ? 100 : (long)((wake > now ? wake - now : 0) + 999999) / 1000000;
        if (zmq_poll(items, n, ms) < 0) {
            count_error(run, bf_zmq_error("load generator poll"), outstanding);
            break; /* a signal (Ctrl-C): what is out is lost */
        }
        if (timer.fd >= 0 && (items[nc].revents & ZMQ_POLLIN))
            bf_timer_fired(&timer);
        for (int c = 0; c < nc; c++)
            if (items[c].revents & ZMQ_POLLIN)
                collect(run, th[c].client, &out[c]);
    }
    for (int c = 0; c < nc; c++)
        free(out[c].v);
    free(out), free(items);
    bf_timer_close(&timer);
    return BF_STATUS_OK;
}

/* A closed-loop client: its next request as soon as the last one is answered. */
static void *load_main(void *v)
{
    load_thread *t = v;
    pthread_setname_np(pthread_self(), "bf-load");
    load_run *run = t->run;
    const bf_load_params *p = run->p;
    uint64_t end = run->start_ns + (uint64_t)(p->seconds * 1e9);
    for (uint64_t j = 0;; j++) {
        uint64_t t0 = now_ns();
        if (t0 >= end)
            break;
        size_t i = (size_t)(((uint64_t)t->index + j * (uint64_t)p->n_clients) %
                            (uint64_t)p->n_payloads);
        bf_result r = {0};
        atomic_fetch_add(&run->sent, 1);
        bf_status st = bf_client_classify(t->client, p->payloads + i * run->elems, p->dims,
                                          p->ranges[2 * i], p->ranges[2 * i + 1], p->k, &r);
        uint64_t t1 = now_ns();
        uint_fast64_t last = atomic_load(&run->last_answer_ns);
        while (last < t1 && !atomic_compare_exchange_weak(&run->last_answer_ns, &last, t1)) {
        }
        if (st != BF_STATUS_OK) {
            count_error(run, st, 1);
            if (st == BF_STATUS_INTERRUPTED)
                break;
            continue;
        }
        atomic_fetch_add(&run->ok, 1);
        record(run, t1 - t0, &r);
    }
    return NULL;
}

/* Opens every connection with one round trip before the clock starts (answered or not
 * within the client's timeout), so that no measured request waits for a TCP connect and
 * a ZeroMQ handshake. */
static void warm_up(load_run *run, load_thread *th)
{
    const bf_load_params *p = run->p;
    int nc = p->n_clients, waiting = 0;
    uint64_t *ids = calloc((size_t)nc, sizeof *ids);
    zmq_pollitem_t *items = calloc((size_t)nc, sizeof *items);
    if (ids == NULL || items == NULL)
        goto done; /* no warm-up: the run still measures, slightly worse */
    for (int c = 0; c < nc; c++) {
        items[c] = (zmq_pollitem_t){bf_client_socket(th[c].client), 0, ZMQ_POLLIN, 0};
        if (bf_client_post(th[c].client, p->payloads, p->dims, p->ranges[0], p->ranges[1],
                           p->k, &ids[c]) == BF_STATUS_OK)
            waiting++;
        else
            ids[c] = 0;
    }
    uint64_t deadline = bf_now_us() + (uint64_t)p->client.timeout_ms * 1000u;
    while (waiting > 0) {
        uint64_t now = bf_now_us();
        if (now >= deadline || zmq_poll(items, nc, (long)(deadline - now + 999) / 1000) < 0)
            break;
        for (int c = 0; c < nc; c++) {
            uint64_t id;
            bf_result r = {0};
            bf_status st;
            while ((items[c].revents & ZMQ_POLLIN) && ids[c] &&
                   bf_client_take(th[c].client, &id, &r, &st) == 1)
                if (id == ids[c])
                    ids[c] = 0, waiting--;
        }
    }
done:
    free(ids), free(items);
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
                                          p->batch == NULL))
        return bf_error(BF_STATUS_INVALID_ARGUMENT,
                        "bf_load_run: n_clients in [1, 1024], seconds in (0, 86400], rate in "
                        "[0, 1e7], payloads, ranges, k >= 1 and record arrays");
    size_t elems = 1;
    for (int d = 0; d < 3; d++) {
        if (p->dims[d] < 1 || p->dims[d] > (1 << 20))
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_load_run: dims must be positive");
        elems *= (size_t)p->dims[d];
    }
    load_run run = {.p = p, .elems = elems};
    load_thread *th = calloc((size_t)p->n_clients, sizeof *th);
    if (th == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "bf_load_run: %d threads", p->n_clients);
    bf_status st = BF_STATUS_OK;
    int made = 0, started = 0;
    /* one context, so one I/O thread, for all the clients: fewer threads to wake */
    void *zctx = zmq_ctx_new();
    if (zctx == NULL) {
        free(th);
        return bf_zmq_error("zmq_ctx_new");
    }
    for (; made < p->n_clients; made++) {
        th[made] = (load_thread){&run, NULL, made, 0};
        st = bf_client_create_in(&th[made].client, &p->client, zctx);
        if (st != BF_STATUS_OK)
            goto done;
    }
    warm_up(&run, th);
    run.start_ns = now_ns() + 1000000u; /* 1 ms for the threads to start */
    atomic_store(&run.last_answer_ns, run.start_ns);
    if (p->rate > 0)
        st = open_loop(&run, th);
    for (; p->rate == 0 && started < p->n_clients; started++) {
        if (pthread_create(&th[started].th, NULL, load_main, &th[started]) != 0) {
            st = bf_error(BF_STATUS_OUT_OF_MEMORY, "bf_load_run: pthread_create");
            break;
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i].th, NULL);
    out->sent = atomic_load(&run.sent);
    out->ok = atomic_load(&run.ok);
    out->errors = atomic_load(&run.errors);
    out->last_error = (bf_status)atomic_load(&run.last_error);
    size_t recs = atomic_load(&run.next_record);
    out->n_records = recs < p->max_records ? recs : p->max_records;
    uint64_t last = atomic_load(&run.last_answer_ns);
    out->seconds = last > run.start_ns ? (double)(last - run.start_ns) / 1e9 : 0.0;
done:
    for (int i = 0; i < made; i++)
        bf_client_destroy(th[i].client);
    zmq_ctx_term(zctx);
    free(th);
    return st;
}
