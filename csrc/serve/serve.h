/* Internals shared by the pool, the worker and the client (private). */
#ifndef BF_SERVE_H
#define BF_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <zmq.h>

#include "butterfly.h"
#include "serve/protocol.h"
#include "wire/wire.h"

/* Monotonic clock, microseconds. */
uint64_t bf_now_us(void);

/* A deadline for zmq_poll finer than its milliseconds: a one-shot timerfd to put among
 * the poll items (fd -1 where the system has none: then the caller rounds the wait up to
 * whole milliseconds). */
typedef struct bf_timer {
    int fd;
    uint64_t armed_us; /* 0: disarmed */
} bf_timer;
void bf_timer_open(bf_timer *t);
void bf_timer_close(bf_timer *t);
/* Makes the fd readable at at_us (bf_now_us's clock); 0 disarms; the same time again is
 * free.  bf_timer_fired after the fd was seen readable: reads it, and it is disarmed. */
void bf_timer_arm(bf_timer *t, uint64_t at_us);
void bf_timer_fired(bf_timer *t);

/* pthread_create with every signal blocked in the new thread, so that signals reach the
 * caller's (Python's) thread and the pool's polls never see EINTR; rt_priority > 0 starts
 * it under SCHED_FIFO at that priority, 0 inherits the caller's scheduling; 0 or an errno. */
int bf_spawn(pthread_t *t, void *(*fn)(void *), void *arg, int rt_priority);

/* Real-time scheduling (rt_priority: 0 = the normal scheduler, 1..98 = SCHED_FIFO at that
 * priority; a worker's heartbeat thread runs one higher), so that no other process's
 * thread -- a kernel daemon, a log shipper -- takes a serving thread's CPU for
 * milliseconds.  bf_rt_enter puts the calling thread under it (nothing for 0) and keeps
 * its old scheduling in *saved for bf_rt_leave; REFUSED when the system does not allow it
 * (root, CAP_SYS_NICE or RLIMIT_RTPRIO needed).  A probe (enter + leave) is how the
 * caller knows it may ask libzmq for it: libzmq aborts the process when its I/O threads
 * cannot get what bf_rt_zmq asked for. */
typedef struct bf_sched_saved {
    int policy, priority, changed;
} bf_sched_saved;
bf_status bf_rt_check(int rt_priority); /* the range only */
/* The calling thread's real-time priority + 1 (at most the maximum); 0 if it has none. */
int bf_rt_above(void);
bf_status bf_rt_enter(int rt_priority, bf_sched_saved *saved);
void bf_rt_leave(const bf_sched_saved *saved);
bf_status bf_rt_probe(int rt_priority);
/* The context's I/O threads too (before its first socket); nothing for 0. */
bf_status bf_rt_zmq(void *zctx, int rt_priority);

/* zmq failure as a status: EINTR -> INTERRUPTED, ETERM -> NETWORK, else NETWORK + text. */
bf_status bf_zmq_error(const char *what);

/* Connection heartbeats (bf_conn_params): the defaults; a range check naming `who`; the
 * ZeroMQ options on a socket, before its bind / connect (they apply to TCP connections,
 * inproc has none to close). */
bf_conn_params bf_conn_default_params(void);
bf_status bf_conn_check(const bf_conn_params *c, const char *who);
bf_status bf_conn_apply(void *sock, const bf_conn_params *c);

/* Sets a socket's send and receive high-water marks (messages); before bind / connect. */
void bf_zmq_set_hwm(void *sock, int hwm);

/* Sends the frames of parts[] (n of them) as one message; flags adds e.g. ZMQ_DONTWAIT. */
int bf_zmq_send_parts(void *sock, const void *const *parts, const size_t *lens, int n,
                      int flags);
/* Receives a whole message into at most max parts (zmq_msg_init'ed by the caller, closed
 * and re-inited here); extra parts are read and dropped.  Returns the number of parts
 * (> max means it had extra ones) or -1 with errno. */
int bf_zmq_recv_parts(void *sock, zmq_msg_t *parts, int max, int flags);

/* bf_client_create on a ZeroMQ context of the caller's (NULL: its own); the caller
 * terminates a shared context after destroying every client on it. */
bf_status bf_client_create_in(bf_client **out, const bf_client_params *params, void *zctx);

/* The load generator's asynchronous use of a client (no retries): post sends a request
 * without waiting (BF_STATUS_BUSY when it cannot be sent now), *id its id; take reads one
 * reply waiting on the socket without blocking: 1 with *out and *st (the reply's status)
 * set and *id its request's id (*has_id 0: an error reply that names no request, e.g. to a
 * message refused unread), 0 when none is waiting; socket is the one to poll. */
bf_status bf_client_post(bf_client *c, const uint8_t *payload, const int dims[3], float min,
                         float max, int k, uint64_t *id);
int bf_client_take(bf_client *c, uint64_t *id, int *has_id, bf_result *out, bf_status *st);
void *bf_client_socket(bf_client *c);

/* Softmax of logits[0..n) (skipped when probs_already) and its k best classes. */
bf_status bf_topk(const float *logits, int n, int probs_already, int k, int *classes,
                  float *probs);

/* Thread worker controls, set by the pool. */
typedef struct bf_worker_ctl {
    /* the broker's `finished`: once set, a DISCONNECT means leave; before, even while the
     * pool drains, it means reconnect (the broker purged this worker, and may still have
     * work for it) */
    const atomic_int *broker_finished;
    atomic_int stop;    /* leave now (the broker is gone) */
    atomic_int ready;   /* set by the loop: 1 once it serves, -1 when it could not start */
    atomic_int kill;    /* vanish now without a word (fault injection) */
} bf_worker_ctl;

/* The worker loop shared by pool threads (ctl != NULL) and bf_worker_run (ctl == NULL).
 * Uses zctx for its sockets and compute for the work; owns neither. */
bf_status bf_worker_loop(void *zctx, const bf_worker_params *params, bf_compute *compute,
                         bf_worker_ctl *ctl);

bf_status bf_worker_params_check(const bf_worker_params *p);
/* The engine backend (compute_plan.c). */
bf_status bf_compute_plan_create(bf_compute *out, const bf_compute_params *params);

/* CURVE: reads a key file's keys (see butterfly.h); the ZAP handler's allow list. */
typedef struct bf_curve_allow {
    int n;
    uint8_t (*keys)[32];
} bf_curve_allow;
bf_status bf_curve_allow_load(bf_curve_allow *allow, const char *path);
void bf_curve_allow_free(bf_curve_allow *allow);
/* ZAP domains of the pool's CURVE sockets. */
#define BF_ZAP_CLIENTS "bf-clients"
#define BF_ZAP_WORKERS "bf-workers"
/* Answers one ZAP request waiting on the REP socket zap: clients against `clients` (empty:
 * any CURVE client), workers (domain BF_ZAP_WORKERS) against `workers` (empty: none). */
void bf_zap_handle(void *zap, const bf_curve_allow *clients, const bf_curve_allow *workers);
/* The keys of a CURVE client socket (a client or a worker), read once. */
typedef struct bf_curve_peer {
    int on;
    char server[BF_CURVE_KEY_LEN + 1], pub[BF_CURVE_KEY_LEN + 1], sec[BF_CURVE_KEY_LEN + 1];
} bf_curve_peer;
/* Reads the server's public key and this peer's pair (key_file NULL: a fresh pair, or an
 * error when need_key_file); server_key_file NULL: CURVE off (peer->on = 0). */
bf_status bf_curve_peer_load(bf_curve_peer *peer, const char *server_key_file,
                             const char *key_file, int need_key_file);
/* Sets the CURVE client options on sock (nothing when CURVE is off). */
bf_status bf_curve_peer_apply(const bf_curve_peer *peer, void *sock);

/* Latency histogram bucket of us. */
int bf_stats_bucket(uint64_t us);

#endif /* BF_SERVE_H */
