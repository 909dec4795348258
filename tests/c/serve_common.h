/* Shared by the serving tests (test_serve.c, test_load.c): the CHECK/run harness, the echo
 * model's constants, a pool and a client on loopback, payloads with a known class, a
 * standalone worker on a thread and client threads driving load.  Functions are static
 * inline: each program uses a subset. */
#ifndef BF_TESTS_SERVE_COMMON_H
#define BF_TESTS_SERVE_COMMON_H

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/serve.h"

static int n_pass, n_fail;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK(%s) failed [%s]\n", __FILE__, __LINE__, #cond,   \
                    bf_last_error());                                                     \
            goto fail;                                                                    \
        }                                                                                 \
    } while (0)

static inline void run(const char *name, int (*fn)(void))
{
    uint64_t t0 = bf_now_us();
    int rc = fn();
    printf("%-44s %s (%.2f s)\n", name, rc ? "FAIL" : "ok", (double)(bf_now_us() - t0) / 1e6);
    fflush(stdout);
    if (rc)
        n_fail++;
    else
        n_pass++;
}

#define HASH "00112233445566aa"
#define SPLIT 5
#define CLASSES 10
static const int DIMS[3] = {2, 4, 4};
#define ELEMS 32

static inline bf_pool_params test_params(int workers)
{
    bf_pool_params pp = bf_pool_default_params();
    pp.frontend = "tcp://127.0.0.1:*";
    pp.n_workers = workers;
    pp.n_threads = 2;
    pp.heartbeat_interval_ms = 50;
    pp.heartbeat_liveness = 3;
    pp.drain_timeout_ms = 2000;
    pp.worker.compute.kind = BF_COMPUTE_ECHO;
    memcpy(pp.worker.compute.dims, DIMS, sizeof DIMS);
    pp.worker.compute.num_classes = CLASSES;
    pp.worker.compute.split = SPLIT;
    pp.worker.compute.model_hash = HASH;
    return pp;
}

static inline bf_pool *start_pool(const bf_pool_params *pp, char ep[256])
{
    bf_pool *pool = NULL;
    if (bf_pool_create(&pool, pp) != BF_STATUS_OK || bf_pool_start(pool) != BF_STATUS_OK ||
        bf_pool_endpoint(pool, 0, ep, 256) != BF_STATUS_OK) {
        fprintf(stderr, "pool: %s\n", bf_last_error());
        bf_pool_destroy(pool);
        return NULL;
    }
    return pool;
}

static inline bf_client_params client_params(const char *ep)
{
    bf_client_params cp = bf_client_default_params();
    cp.endpoint = ep;
    cp.model_hash = HASH;
    cp.split = SPLIT;
    cp.timeout_ms = 2000;
    cp.retries = 2;
    return cp;
}

/* A payload whose echo class is known: the byte sum mod CLASSES. */
static inline int make_payload(uint8_t *p, unsigned *seed)
{
    unsigned sum = 0;
    for (int i = 0; i < ELEMS; i++)
        p[i] = (uint8_t)(rand_r(seed) & 0xff), sum += p[i];
    return (int)(sum % CLASSES);
}

/* ---- a standalone worker (bf_worker_run) on a thread, stopped through its stop_fd ------ */

typedef struct solo_worker {
    bf_worker_params wp;  /* set by solo_init; adjust before solo_start */
    pthread_t thread;
    int fds[2], started;
    bf_status st;         /* bf_worker_run's, once stopped */
    int policy_after;     /* the thread's scheduling policy once bf_worker_run returned */
} solo_worker;

static inline void *solo_main(void *v)
{
    solo_worker *w = v;
    pthread_setname_np(pthread_self(), "t-solo-worker");
    w->st = bf_worker_run(&w->wp);
    w->policy_after = sched_getscheduler(0);
    return NULL;
}

/* The echo compute of test_params, heartbeats every 50 ms, connecting to `backend`. */
static inline void solo_init(solo_worker *w, const char *backend)
{
    memset(w, 0, sizeof *w);
    w->fds[0] = w->fds[1] = -1;
    w->wp = bf_worker_default_params();
    w->wp.connect = backend;
    w->wp.heartbeat_interval_ms = 50;
    w->wp.compute = test_params(0).worker.compute;
}

static inline int solo_start(solo_worker *w)
{
    if (pipe(w->fds) != 0)
        return -1;
    w->wp.stop_fd = w->fds[0];
    if (pthread_create(&w->thread, NULL, solo_main, w) != 0)
        return -1;
    w->started = 1;
    return 0;
}

/* Stops (if started), joins and closes; returns bf_worker_run's status (OK if never run). */
static inline bf_status solo_stop(solo_worker *w)
{
    if (w->started) {
        if (write(w->fds[1], "x", 1) != 1)
            fprintf(stderr, "cannot stop the worker\n");
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
    if (w->fds[0] >= 0)
        close(w->fds[0]), close(w->fds[1]);
    w->fds[0] = w->fds[1] = -1;
    return w->st;
}

/* ---- load from several client threads ------------------------------------------------ */

typedef struct load_arg {
    const char *ep;
    int n, seed, ok, wrong, errors, max_batch_seen, codec;
    bf_status last;
} load_arg;

static inline void *load_thread(void *v)
{
    load_arg *a = v;
    bf_client *c = NULL;
    bf_client_params cp = client_params(a->ep);
    cp.codec = a->codec;
    unsigned seed = (unsigned)a->seed;
    if (bf_client_create(&c, &cp) != BF_STATUS_OK) {
        a->errors = a->n;
        return NULL;
    }
    for (int i = 0; i < a->n; i++) {
        uint8_t p[ELEMS];
        bf_result r = {0};
        int want = make_payload(p, &seed);
        bf_status st = bf_client_classify(c, p, DIMS, -1.0f, 1.0f, 3, &r);
        if (st != BF_STATUS_OK) {
            a->errors++, a->last = st;
            continue;
        }
        if (r.k == 3 && r.classes[0] == want && r.probs[0] > 0.9f)
            a->ok++;
        else
            a->wrong++;
        if (r.batch > a->max_batch_seen)
            a->max_batch_seen = r.batch;
    }
    bf_client_destroy(c);
    return NULL;
}

/* Runs n_threads clients x n requests; returns requests answered correctly. */
static inline int run_load(const char *ep, int n_threads, int n, load_arg *args, int codec)
{
    pthread_t th[16];
    int ok = 0;
    for (int i = 0; i < n_threads; i++) {
        args[i] = (load_arg){ep, n, 1000 + i, 0, 0, 0, 0, codec, BF_STATUS_OK};
        pthread_create(&th[i], NULL, load_thread, &args[i]);
    }
    for (int i = 0; i < n_threads; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        if (args[i].errors || args[i].wrong)
            fprintf(stderr, "  client %d: %d errors (last %s), %d wrong\n", i, args[i].errors,
                    bf_status_str(args[i].last), args[i].wrong);
    }
    return ok;
}

static inline int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

#endif
