/* The load generator: client threads in C, so that the load costs the machine little next
 * to the pool it measures (a Python thread per client spends more CPU per request than a
 * small model's compute, and on a small machine takes it from the workers). */
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

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static uint32_t clamp_us(uint64_t ns)
{
    uint64_t us = ns / 1000u;
    return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void *load_main(void *v)
{
    load_thread *t = v;
    load_run *run = t->run;
    const bf_load_params *p = run->p;
    uint64_t end = run->start_ns + (uint64_t)(p->seconds * 1e9);
    double period_ns = p->rate > 0 ? 1e9 * p->n_clients / p->rate : 0;
    for (uint64_t j = 0;; j++) {
        uint64_t due = 0, t0;
        if (p->rate > 0) {
            due = run->start_ns + (uint64_t)((double)t->index * 1e9 / p->rate +
                                             (double)j * period_ns);
            if (due >= end)
                break;
            if (now_ns() < due)
                sleep_until_ns(due);
            t0 = due;
        } else {
            t0 = now_ns();
            if (t0 >= end)
                break;
        }
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
            atomic_fetch_add(&run->errors, 1);
            atomic_store(&run->last_error, (int)st);
            if (st == BF_STATUS_INTERRUPTED)
                break;
            continue;
        }
        atomic_fetch_add(&run->ok, 1);
        size_t rec = atomic_fetch_add(&run->next_record, 1);
        if (rec < p->max_records) {
            if (p->latency_us)
                p->latency_us[rec] = clamp_us(t1 - t0);
            if (p->queue_us)
                p->queue_us[rec] = r.queue_us;
            if (p->compute_us)
                p->compute_us[rec] = r.compute_us;
            if (p->batch)
                p->batch[rec] = (uint16_t)(r.batch > UINT16_MAX ? UINT16_MAX : r.batch);
        }
    }
    return NULL;
}

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
    run.start_ns = now_ns() + 1000000u; /* 1 ms for the threads to start */
    atomic_store(&run.last_answer_ns, run.start_ns);
    for (; started < p->n_clients; started++) {
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
