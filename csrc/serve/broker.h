/* The broker's state (private to pool.c and broker.c). */
#ifndef BF_SERVE_BROKER_H
#define BF_SERVE_BROKER_H

#include <pthread.h>

#include "serve/serve.h"

/* A client request the broker holds: queued, or in flight at one worker. */
typedef struct bf_request {
    struct bf_request *next, *prev;
    uint64_t tag;          /* broker-wide handle, matches the worker's reply */
    uint64_t id;           /* the client's request id */
    uint64_t arrived_us;
    int attempts;          /* dispatches so far */
    int delim;             /* the client sent an empty delimiter frame (REQ style) */
    uint8_t cid_len;
    uint8_t cid[BF_ID_MAX]; /* client routing id */
    zmq_msg_t body;
} bf_request;

typedef struct bf_request_list {
    bf_request *head, *tail;
    int len;
} bf_request_list;

typedef struct bf_worker_rec {
    uint8_t wid[BF_ID_MAX];
    uint8_t wid_len;
    int capacity;          /* credit granted in READY */
    uint64_t expiry_us;    /* dead if silent past this */
    uint64_t last_used_us; /* for least-recently-used order among equally loaded workers */
    bf_request_list inflight;
} bf_worker_rec;

typedef struct bf_broker {
    /* set up by the pool before the thread starts */
    void *frontend, *backend, *control, *zap;
    const char *frontend_bound;           /* as bound, for the log */
    uint64_t fd_checked_us, fd_logged_us; /* last descriptor limit check, and line */
    const bf_pool_params *params;
    bf_curve_allow allow;        /* client keys (empty: any CURVE client) */
    bf_curve_allow worker_allow; /* worker keys on a CURVE backend (never empty there) */
    atomic_int stop_requested;
    atomic_int finished;     /* set before the last DISCONNECTs: the pool's workers leave */
    pthread_mutex_t stats_lock;
    bf_serve_stats stats;    /* guarded by stats_lock */
    /* the broker thread's own */
    bf_worker_rec *workers;
    int n_workers, cap_workers;
    bf_request_list queue;
    int in_flight;
    uint64_t next_tag, next_heartbeat_us;
    int draining;
    uint64_t drain_deadline_us;
    msgpack_sbuffer sb;
    zmq_msg_t parts[5];
} bf_broker;

/* Serves until stopped (stop_requested + a message on control) and drained; then answers
 * what is left with an error and says DISCONNECT to every worker.  Leaves the sockets open. */
bf_status bf_broker_loop(bf_broker *b);

#endif /* BF_SERVE_BROKER_H */
