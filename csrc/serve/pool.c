/* The pool object: parameters, the broker thread, the worker threads and their computes,
 * start / stop / destroy, stats.  The broker logic is in broker.c, the worker's in worker.c. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "serve/broker.h"

typedef struct pool_worker {
    bf_pool *pool;
    bf_worker_params params;
    bf_compute compute;
    bf_worker_ctl ctl;
    pthread_t thread;
    int started;
    bf_status status;
    char error[BF_WIRE_ERROR_MAX]; /* its loop's error message, once it returned */
} pool_worker;

struct bf_pool {
    bf_pool_params params;       /* strings point at the copies below */
    char *frontend, *backend, *curve_key_file, *curve_allow_file, *curve_worker_allow_file;
    char *model_path, *model_hash;
    void *zctx;
    bf_broker broker;
    pthread_t broker_thread;
    int running;
    bf_status broker_status;
    pool_worker *workers;
    char inproc_backend[64], inproc_control[64];
    char endpoints[2][256];      /* as bound */
};

bf_pool_params bf_pool_default_params(void)
{
    bf_pool_params p = {0};
    p.frontend = "tcp://127.0.0.1:5555";
    p.backend = NULL;
    p.n_workers = 1;
    p.queue_max = BF_QUEUE_MAX;
    p.max_message = BF_MAX_MESSAGE;
    p.heartbeat_interval_ms = BF_HEARTBEAT_INTERVAL_MS;
    p.heartbeat_liveness = BF_HEARTBEAT_LIVENESS;
    p.queue_timeout_ms = BF_QUEUE_TIMEOUT_MS;
    p.drain_timeout_ms = BF_DRAIN_TIMEOUT_MS;
    p.conn = bf_conn_default_params();
    p.worker = bf_worker_default_params();
    return p;
}

static char *dup_or_null(const char *s, int *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    *oom |= d == NULL;
    return d;
}

static bf_status check_params(const bf_pool_params *p)
{
    if (p->frontend == NULL || p->frontend[0] == '\0')
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "pool: no frontend endpoint");
    if (p->n_workers < 0 || p->n_workers > 1024 || p->queue_max < 1 || p->max_message < 16 ||
        p->heartbeat_interval_ms < 1 || p->heartbeat_liveness < 1 ||
        p->queue_timeout_ms < 0 || p->drain_timeout_ms < 0 || p->n_threads < 0)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "pool: n_workers in [0, 1024], "
                        "queue_max >= 1, max_message >= 16, heartbeats >= 1, timeouts >= 0");
    if (p->n_workers == 0 && p->backend == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "pool: no worker threads and no "
                        "backend endpoint for worker processes");
    if ((p->curve_allow_file || p->curve_worker_allow_file) && !p->curve_key_file)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "pool: an allow list needs CURVE on "
                        "(curve_key_file)");
    bf_status st = bf_rt_check(p->rt_priority);
    if (st == BF_STATUS_OK)
        st = bf_conn_check(&p->conn, "pool");
    if (st != BF_STATUS_OK)
        return st;
    if (p->curve_worker_allow_file && !p->backend)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "pool: a worker allow list needs a "
                        "backend endpoint");
    bf_worker_params w = p->worker;
    w.heartbeat_interval_ms = p->heartbeat_interval_ms;
    w.heartbeat_liveness = p->heartbeat_liveness;
    return bf_worker_params_check(&w);
}

bf_status bf_pool_create(bf_pool **out, const bf_pool_params *params)
{
    bf_pool *pool = NULL;
    int oom = 0;
    if (out == NULL || params == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_pool_create: NULL argument");
    *out = NULL;
    bf_status st = check_params(params);
    if (st != BF_STATUS_OK)
        return st;
    pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "pool");
    pthread_mutex_init(&pool->broker.stats_lock, NULL);
    pool->params = *params;
    pool->params.frontend = pool->frontend = dup_or_null(params->frontend, &oom);
    pool->params.backend = pool->backend = dup_or_null(params->backend, &oom);
    pool->params.curve_key_file = pool->curve_key_file =
        dup_or_null(params->curve_key_file, &oom);
    pool->params.curve_allow_file = pool->curve_allow_file =
        dup_or_null(params->curve_allow_file, &oom);
    pool->params.curve_worker_allow_file = pool->curve_worker_allow_file =
        dup_or_null(params->curve_worker_allow_file, &oom);
    pool->params.worker.compute.model_path = pool->model_path =
        dup_or_null(params->worker.compute.model_path, &oom);
    pool->params.worker.compute.model_hash = pool->model_hash =
        dup_or_null(params->worker.compute.model_hash, &oom);
    pool->params.worker.connect = NULL;
    if (oom) {
        bf_pool_destroy(pool);
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "pool parameters");
    }
    snprintf(pool->inproc_backend, sizeof pool->inproc_backend, "inproc://bf-pool-%p-be",
             (void *)pool);
    snprintf(pool->inproc_control, sizeof pool->inproc_control, "inproc://bf-pool-%p-ctl",
             (void *)pool);
    *out = pool;
    return BF_STATUS_OK;
}

/* ---- sockets ---------------------------------------------------------------------- */

static bf_status bind_endpoint(void *sock, const char *ep, char *bound, size_t len)
{
    if (zmq_bind(sock, ep) != 0)
        return bf_zmq_error(ep);
    if (bound) {
        size_t n = len;
        if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, bound, &n) != 0)
            snprintf(bound, len, "%s", ep);
    }
    return BF_STATUS_OK;
}

/* CURVE server options (and the ZAP domain the handler tells them apart by) on a socket. */
static bf_status curve_server(void *sock, const char *sec, const char *domain)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, BF_CURVE_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0)
        return bf_zmq_error("CURVE server options");
    return BF_STATUS_OK;
}

static bf_status setup_curve(bf_pool *pool, void *frontend, void *backend)
{
    char pub[BF_CURVE_KEY_LEN + 1], sec[BF_CURVE_KEY_LEN + 1];
    bf_status st = bf_curve_key_read(pool->params.curve_key_file, pub, sec);
    if (st != BF_STATUS_OK)
        return st;
    if (sec[0] == '\0')
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "%s: the server needs its secret key",
                        pool->params.curve_key_file);
    if (pool->params.curve_allow_file) {
        st = bf_curve_allow_load(&pool->broker.allow, pool->params.curve_allow_file);
        if (st != BF_STATUS_OK)
            return st;
    }
    if (pool->params.curve_worker_allow_file) {
        st = bf_curve_allow_load(&pool->broker.worker_allow,
                                 pool->params.curve_worker_allow_file);
        if (st != BF_STATUS_OK)
            return st;
    }
    /* the ZAP handler must be bound before a CURVE socket binds in this context */
    pool->broker.zap = zmq_socket(pool->zctx, ZMQ_REP);
    if (pool->broker.zap == NULL)
        return bf_zmq_error("zap socket");
    st = bind_endpoint(pool->broker.zap, "inproc://zeromq.zap.01", NULL, 0);
    if (st != BF_STATUS_OK)
        return st;
    st = curve_server(frontend, sec, BF_ZAP_CLIENTS);
    /* thread workers come in over inproc, which has no handshake: only tcp workers are
     * checked */
    if (st == BF_STATUS_OK && pool->params.curve_worker_allow_file)
        st = curve_server(backend, sec, BF_ZAP_WORKERS);
    return st;
}

static void *new_socket(bf_pool *pool, int type)
{
    int zero = 0;
    void *s = zmq_socket(pool->zctx, type);
    if (s)
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    return s;
}

/* Each client connection holds a descriptor: the soft limit (often 1,024) up to the hard
 * one, which only root may raise. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static bf_status open_sockets(bf_pool *pool)
{
    bf_broker *b = &pool->broker;
    int one = 1;
    /* messages far past the limit are cut off by libzmq (the peer is disconnected);
     * those up to twice the limit get a readable "too large" reply */
    int64_t hard_cap = 2 * (int64_t)pool->params.max_message + 4096;
    b->frontend = new_socket(pool, ZMQ_ROUTER);
    b->backend = new_socket(pool, ZMQ_ROUTER);
    b->control = new_socket(pool, ZMQ_PULL);
    if (!b->frontend || !b->backend || !b->control)
        return bf_zmq_error("pool sockets");
    zmq_setsockopt(b->frontend, ZMQ_MAXMSGSIZE, &hard_cap, sizeof hard_cap);
    /* the last replies of a drain must still reach their clients after the broker exits */
    int linger = 500;
    zmq_setsockopt(b->frontend, ZMQ_LINGER, &linger, sizeof linger);
    /* so that a send to a vanished worker fails (and we purge it) instead of vanishing */
    zmq_setsockopt(b->backend, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    /* a worker keeps its routing id for its life: when it reconnects, its new connection
     * takes the id over from the old one (which may linger half-open), and its READY
     * re-queues what the old one held at once */
    zmq_setsockopt(b->backend, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    bf_zmq_set_hwm(b->backend, BF_WORKER_HWM);
    bf_status st = bf_conn_apply(b->frontend, &pool->params.conn);
    if (st == BF_STATUS_OK)
        st = bf_conn_apply(b->backend, &pool->params.conn);
    if (st == BF_STATUS_OK && pool->params.curve_key_file)
        st = setup_curve(pool, b->frontend, b->backend);
    if (st != BF_STATUS_OK)
        return st;
    st = bind_endpoint(b->frontend, pool->params.frontend, pool->endpoints[0],
                       sizeof pool->endpoints[0]);
    b->frontend_bound = pool->endpoints[0];
    if (st == BF_STATUS_OK)
        st = bind_endpoint(b->backend, pool->inproc_backend, NULL, 0);
    if (st == BF_STATUS_OK && pool->params.backend)
        st = bind_endpoint(b->backend, pool->params.backend, pool->endpoints[1],
                           sizeof pool->endpoints[1]);
    if (st == BF_STATUS_OK)
        st = bind_endpoint(b->control, pool->inproc_control, NULL, 0);
    return st;
}

static void close_sockets(bf_pool *pool)
{
    bf_broker *b = &pool->broker;
    void **socks[4] = {&b->frontend, &b->backend, &b->control, &b->zap};
    for (int i = 0; i < 4; i++)
        if (*socks[i])
            zmq_close(*socks[i]), *socks[i] = NULL;
}

/* ---- threads ---------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    pool_worker *pw = arg;
    char name[16];
    snprintf(name, sizeof name, "bf-worker%d", (int)(pw - pw->pool->workers) % 1000);
    pthread_setname_np(pthread_self(), name); /* for top -H, perf, gdb */
    bf_set_num_threads(pw->params.n_threads); /* this thread's share of the cores */
    pw->status = bf_worker_loop(pw->pool->zctx, &pw->params, &pw->compute, &pw->ctl);
    if (pw->status != BF_STATUS_OK) /* the message is this thread's: keep it for the pool */
        snprintf(pw->error, sizeof pw->error, "%s", bf_last_error());
    return NULL;
}

static void *broker_main(void *arg)
{
    bf_pool *pool = arg;
    pthread_setname_np(pthread_self(), "bf-broker");
    pool->broker_status = bf_broker_loop(&pool->broker);
    return NULL;
}

static void teardown(bf_pool *pool)
{
    bf_broker *b = &pool->broker;
    for (int i = 0; pool->workers && i < pool->params.n_workers; i++) {
        pool_worker *pw = &pool->workers[i];
        atomic_store(&pw->ctl.stop, 1);
        if (pw->started)
            pthread_join(pw->thread, NULL);
        bf_compute_destroy(&pw->compute);
    }
    free(pool->workers);
    pool->workers = NULL;
    close_sockets(pool);
    if (pool->zctx)
        zmq_ctx_term(pool->zctx);
    pool->zctx = NULL;
    free(b->workers);
    b->workers = NULL;
    b->n_workers = b->cap_workers = 0;
    bf_curve_allow_free(&b->allow);
    bf_curve_allow_free(&b->worker_allow);
    msgpack_sbuffer_destroy(&b->sb);
    for (int i = 0; i < 5; i++)
        zmq_msg_close(&b->parts[i]);
}

static bf_status start_workers(bf_pool *pool)
{
    const bf_pool_params *pp = &pool->params;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int cores = pp->n_threads > 0 ? pp->n_threads : (online > 0 ? (int)online : 1);
    int share = pp->n_workers > 0 && cores / pp->n_workers > 1 ? cores / pp->n_workers : 1;
    pool->workers = calloc((size_t)(pp->n_workers ? pp->n_workers : 1), sizeof *pool->workers);
    if (pool->workers == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "pool workers");
    for (int i = 0; i < pp->n_workers; i++) {
        pool_worker *pw = &pool->workers[i];
        pw->pool = pool;
        pw->ctl.broker_finished = &pool->broker.finished;
        pw->params = pp->worker;
        pw->params.connect = pool->inproc_backend;
        pw->params.heartbeat_interval_ms = pp->heartbeat_interval_ms;
        pw->params.heartbeat_liveness = pp->heartbeat_liveness;
        pw->params.n_threads = share;
        pw->params.rt_priority = 0; /* the thread is started under the pool's */
        if (pw->params.compute.max_batch < pw->params.max_batch)
            pw->params.compute.max_batch = pw->params.max_batch;
        pw->params.compute.n_threads = share;
        bf_status st = bf_compute_create(&pw->compute, &pw->params.compute);
        if (st != BF_STATUS_OK)
            return st;
    }
    for (int i = 0; i < pp->n_workers; i++) {
        int rc = bf_spawn(&pool->workers[i].thread, worker_main, &pool->workers[i],
                          pp->rt_priority);
        if (rc != 0)
            return bf_error(BF_STATUS_OUT_OF_MEMORY, "cannot start worker thread %d: %s", i,
                            strerror(rc));
        pool->workers[i].started = 1;
    }
    /* a worker whose loop cannot start (its buffers, its heartbeat thread) fails the start,
     * rather than leaving a pool that never answers: each says which within moments */
    uint64_t deadline = bf_now_us() + (uint64_t)BF_WORKER_START_MS * 1000u;
    for (int i = 0; i < pp->n_workers; i++) {
        pool_worker *pw = &pool->workers[i];
        while (atomic_load(&pw->ctl.ready) == 0 && bf_now_us() < deadline)
            usleep(200);
        if (atomic_load(&pw->ctl.ready) < 0) {
            pthread_join(pw->thread, NULL);
            pw->started = 0;
            return bf_error(pw->status, "worker %d could not start: %s", i, pw->error);
        }
    }
    return BF_STATUS_OK;
}

bf_status bf_pool_start(bf_pool *pool)
{
    if (pool == NULL || pool->running)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_pool_start: %s",
                        pool ? "already running" : "NULL pool");
    bf_broker *b = &pool->broker;
    memset(&b->stats, 0, sizeof b->stats);
    b->params = &pool->params;
    b->draining = 0;
    b->fd_checked_us = b->fd_logged_us = 0;
    atomic_store(&b->stop_requested, 0);
    atomic_store(&b->finished, 0);
    msgpack_sbuffer_init(&b->sb);
    for (int i = 0; i < 5; i++)
        zmq_msg_init(&b->parts[i]);
    pool->endpoints[0][0] = pool->endpoints[1][0] = '\0';
    /* real-time: the workers, the broker and the I/O threads at one priority.  A woken
     * thread then goes to an idle core (or waits for a worker to block), where one of a
     * higher priority would preempt the worker on its own core and push it elsewhere:
     * measured, that cost 13 % of one worker's throughput and raised the tail.  Asked of
     * libzmq only once known to be allowed: it aborts where it is not. */
    int rt = pool->params.rt_priority;
    raise_fd_limit();
    bf_status st = bf_rt_probe(rt);
    if (st != BF_STATUS_OK)
        goto fail;
    pool->zctx = zmq_ctx_new();
    if (pool->zctx == NULL) {
        st = bf_zmq_error("zmq_ctx_new");
        goto fail;
    }
    st = bf_rt_zmq(pool->zctx, rt);
    if (st == BF_STATUS_OK)
        st = open_sockets(pool);
    if (st == BF_STATUS_OK)
        st = start_workers(pool);
    if (st != BF_STATUS_OK)
        goto fail;
    int rc = bf_spawn(&pool->broker_thread, broker_main, pool, rt);
    if (rc != 0) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "cannot start the broker thread: %s",
                      strerror(rc));
        goto fail;
    }
    pool->running = 1;
    return BF_STATUS_OK;
fail:
    teardown(pool);
    return st;
}

bf_status bf_pool_stop(bf_pool *pool)
{
    if (pool == NULL || !pool->running)
        return BF_STATUS_OK;
    atomic_store(&pool->broker.stop_requested, 1);
    /* wake the broker now rather than at its next tick */
    void *push = zmq_socket(pool->zctx, ZMQ_PUSH);
    if (push) {
        int linger = 100;
        zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(push, pool->inproc_control) == 0)
            zmq_send(push, "STOP", 4, ZMQ_DONTWAIT);
        zmq_close(push);
    }
    pthread_join(pool->broker_thread, NULL);
    teardown(pool);
    pool->running = 0;
    bf_status st = pool->broker_status;
    return st == BF_STATUS_OK ? st : bf_error(st, "pool broker stopped with: %s",
                                              bf_status_str(st));
}

void bf_pool_destroy(bf_pool *pool)
{
    if (pool == NULL)
        return;
    bf_pool_stop(pool);
    free(pool->frontend), free(pool->backend), free(pool->curve_key_file);
    free(pool->curve_allow_file), free(pool->curve_worker_allow_file);
    free(pool->model_path), free(pool->model_hash);
    pthread_mutex_destroy(&pool->broker.stats_lock);
    free(pool);
}

bf_status bf_pool_endpoint(const bf_pool *pool, int which, char *buf, size_t len)
{
    if (pool == NULL || buf == NULL || len == 0 || which < 0 || which > 1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_pool_endpoint: bad argument");
    if (pool->endpoints[which][0] == '\0')
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "pool %s endpoint not bound",
                        which ? "backend" : "frontend");
    if ((size_t)snprintf(buf, len, "%s", pool->endpoints[which]) >= len)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "endpoint buffer too small");
    return BF_STATUS_OK;
}

bf_status bf_pool_stats(const bf_pool *pool, bf_serve_stats *out)
{
    if (pool == NULL || out == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_pool_stats: NULL argument");
    bf_broker *b = (bf_broker *)&pool->broker;
    pthread_mutex_lock(&b->stats_lock);
    *out = b->stats;
    pthread_mutex_unlock(&b->stats_lock);
    return BF_STATUS_OK;
}

bf_status bf_pool_kill_worker(bf_pool *pool, int index)
{
    if (pool == NULL || !pool->running || index < 0 || index >= pool->params.n_workers)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_pool_kill_worker: no worker %d",
                        index);
    atomic_store(&pool->workers[index].ctl.kill, 1);
    return BF_STATUS_OK;
}
