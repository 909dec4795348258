/* The broker: zguide's load-balancing broker with Paranoid Pirate heartbeats.  Clients talk
 * to the frontend ROUTER, workers to the backend ROUTER.  Requests wait in a bounded FIFO
 * and go to the worker with the most free credit (least recently used among equals); a
 * worker that falls silent is purged and its requests go back to the head of the queue.
 * Every client message gets exactly one reply from here or from a worker, via here. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "serve/broker.h"

#define STATS(b, stmt)                                                                    \
    do {                                                                                  \
        pthread_mutex_lock(&(b)->stats_lock);                                             \
        stmt;                                                                             \
        pthread_mutex_unlock(&(b)->stats_lock);                                           \
    } while (0)

/* ---- request lists ---------------------------------------------------------------- */

static void list_push(bf_request_list *l, bf_request *r, int front)
{
    r->prev = r->next = NULL;
    if (l->head == NULL) {
        l->head = l->tail = r;
    } else if (front) {
        r->next = l->head, l->head->prev = r, l->head = r;
    } else {
        r->prev = l->tail, l->tail->next = r, l->tail = r;
    }
    l->len++;
}

static void list_remove(bf_request_list *l, bf_request *r)
{
    if (r->prev) r->prev->next = r->next; else l->head = r->next;
    if (r->next) r->next->prev = r->prev; else l->tail = r->prev;
    r->prev = r->next = NULL;
    l->len--;
}

static void request_free(bf_request *r)
{
    if (r) {
        zmq_msg_close(&r->body);
        free(r);
    }
}

/* ---- replies to clients ----------------------------------------------------------- */

/* Sends body to a client; a client that vanished or stopped reading just loses it (the
 * Lazy Pirate client resends on a new socket). */
static void send_to_client(bf_broker *b, const uint8_t *cid, size_t cid_len, int delim,
                           zmq_msg_t *body)
{
    if (zmq_send(b->frontend, cid, cid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    if (delim)
        zmq_send(b->frontend, "", 0, ZMQ_SNDMORE);
    zmq_msg_send(body, b->frontend, 0);
}

static void reply_error(bf_broker *b, const uint8_t *cid, size_t cid_len, int delim,
                        int has_id, uint64_t id, bf_status st, const char *msg)
{
    zmq_msg_t m;
    msgpack_sbuffer_clear(&b->sb);
    if (bf_wire_reply_error_encode(&b->sb, has_id, id, st, msg) != BF_STATUS_OK)
        return;
    if (zmq_msg_init_size(&m, b->sb.size) != 0)
        return;
    memcpy(zmq_msg_data(&m), b->sb.data, b->sb.size);
    if (st == BF_STATUS_BUSY) /* counted before it is sent, as the workers' replies */
        STATS(b, b->stats.busy++);
    else
        STATS(b, b->stats.errors++);
    send_to_client(b, cid, cid_len, delim, &m);
    zmq_msg_close(&m);
}

static void request_fail(bf_broker *b, bf_request *r, bf_status st, const char *msg)
{
    reply_error(b, r->cid, r->cid_len, r->delim, 1, r->id, st, msg);
    request_free(r);
}

/* ---- workers ---------------------------------------------------------------------- */

static bf_worker_rec *worker_find(bf_broker *b, const void *wid, size_t len)
{
    for (int i = 0; i < b->n_workers; i++)
        if (b->workers[i].wid_len == len && memcmp(b->workers[i].wid, wid, len) == 0)
            return &b->workers[i];
    return NULL;
}

static int send_worker_command(bf_broker *b, const bf_worker_rec *w, uint8_t cmd)
{
    const void *parts[3] = {w->wid, BF_WORKER_HEADER, &cmd};
    size_t lens[3] = {w->wid_len, strlen(BF_WORKER_HEADER), 1};
    return bf_zmq_send_parts(b->backend, parts, lens, 3, ZMQ_DONTWAIT);
}

/* Puts a worker's requests back at the head of the queue, oldest first; one dispatched
 * BF_DISPATCH_MAX times already is answered with an error instead. */
static void requeue_inflight(bf_broker *b, bf_worker_rec *w)
{
    int n = 0;
    while (w->inflight.tail) {
        bf_request *r = w->inflight.tail;
        list_remove(&w->inflight, r);
        b->in_flight--;
        if (r->attempts >= BF_DISPATCH_MAX) {
            char msg[128];
            snprintf(msg, sizeof msg, "no answer from the %d workers that took this request "
                     "(each died or reconnected first); not sent again", r->attempts);
            request_fail(b, r, BF_STATUS_BACKEND, msg);
            continue;
        }
        list_push(&b->queue, r, 1);
        n++;
    }
    STATS(b, b->stats.requeued += (uint64_t)n);
}

static void worker_purge(bf_broker *b, bf_worker_rec *w)
{
    requeue_inflight(b, w);
    *w = b->workers[--b->n_workers];
    STATS(b, b->stats.workers_purged++);
}

static void worker_ready(bf_broker *b, const zmq_msg_t *wid, const zmq_msg_t *cap)
{
    uint64_t capacity = zmq_msg_size(cap) == 4 ? bf_get_le(zmq_msg_data((zmq_msg_t *)cap), 4) : 0;
    size_t len = zmq_msg_size(wid);
    if (capacity < 1 || capacity > BF_CREDIT_MAX || len == 0 || len > BF_ID_MAX)
        return; /* not a worker we can use */
    bf_worker_rec *w = worker_find(b, zmq_msg_data((zmq_msg_t *)wid), len);
    if (w) {
        requeue_inflight(b, w); /* a worker that says READY again has forgotten them */
    } else {
        if (b->n_workers == b->cap_workers) {
            int cap2 = b->cap_workers ? 2 * b->cap_workers : 8;
            bf_worker_rec *nw = realloc(b->workers, (size_t)cap2 * sizeof *nw);
            if (nw == NULL)
                return; /* it will time out, say READY again and be let in later */
            b->workers = nw, b->cap_workers = cap2;
        }
        w = &b->workers[b->n_workers++];
        memset(w, 0, sizeof *w);
        memcpy(w->wid, zmq_msg_data((zmq_msg_t *)wid), len);
        w->wid_len = (uint8_t)len;
    }
    w->capacity = (int)capacity;
}

static void worker_reply(bf_broker *b, bf_worker_rec *w, const zmq_msg_t *meta_msg,
                         zmq_msg_t *body)
{
    if (zmq_msg_size(meta_msg) != BF_REPLY_META_SIZE)
        return;
    bf_reply_meta m;
    bf_reply_meta_unpack(zmq_msg_data((zmq_msg_t *)meta_msg), &m);
    bf_request *r = w->inflight.head;
    while (r && r->tag != m.tag)
        r = r->next;
    if (r == NULL) { /* re-queued since, or never ours: someone else answers */
        STATS(b, b->stats.late_replies++);
        return;
    }
    list_remove(&w->inflight, r);
    b->in_flight--;
    /* counted before it is sent, so a client holding its reply sees it in the stats */
    uint64_t total = bf_now_us() - r->arrived_us;
    pthread_mutex_lock(&b->stats_lock);
    if (m.status == BF_STATUS_OK)
        b->stats.replies_ok++;
    else if (m.status == BF_STATUS_BUSY)
        b->stats.busy++;
    else
        b->stats.errors++;
    if (m.batch > 0) {
        if (m.index == 0) {
            b->stats.batches++;
            b->stats.batch_hist[m.batch < BF_STATS_BATCH_MAX ? m.batch : BF_STATS_BATCH_MAX]++;
        }
        b->stats.queue_us[bf_stats_bucket(m.queue_us)]++;
        b->stats.compute_us[bf_stats_bucket(m.compute_us)]++;
    }
    b->stats.total_us[bf_stats_bucket(total)]++;
    pthread_mutex_unlock(&b->stats_lock);
    send_to_client(b, r->cid, r->cid_len, r->delim, body);
    request_free(r);
}

/* One message from the backend: [wid][hdr][cmd]...; -1 when none was waiting. */
static int backend_message(bf_broker *b)
{
    zmq_msg_t *p = b->parts;
    int n = bf_zmq_recv_parts(b->backend, p, 5, ZMQ_DONTWAIT);
    if (n < 0)
        return -1;
    if (n < 3 || n > 5 || zmq_msg_size(&p[1]) != strlen(BF_WORKER_HEADER) ||
        memcmp(zmq_msg_data(&p[1]), BF_WORKER_HEADER, 4) != 0 || zmq_msg_size(&p[2]) != 1)
        return 0; /* not our protocol: no one to answer */
    uint8_t cmd = *(uint8_t *)zmq_msg_data(&p[2]);
    if (cmd == BF_CMD_READY && n == 4)
        worker_ready(b, &p[0], &p[3]);
    bf_worker_rec *w = worker_find(b, zmq_msg_data(&p[0]), zmq_msg_size(&p[0]));
    if (w == NULL) {
        /* a worker we purged (or never met): make it reconnect and say READY */
        bf_worker_rec tmp = {0};
        if (zmq_msg_size(&p[0]) <= BF_ID_MAX && cmd != BF_CMD_DISCONNECT) {
            tmp.wid_len = (uint8_t)zmq_msg_size(&p[0]);
            memcpy(tmp.wid, zmq_msg_data(&p[0]), tmp.wid_len);
            send_worker_command(b, &tmp, BF_CMD_DISCONNECT);
        }
        return 0;
    }
    w->expiry_us = bf_now_us() + (uint64_t)b->params->heartbeat_interval_ms * 1000u *
                                     (uint64_t)b->params->heartbeat_liveness;
    if (cmd == BF_CMD_REPLY && n == 5)
        worker_reply(b, w, &p[3], &p[4]);
    else if (cmd == BF_CMD_DISCONNECT)
        worker_purge(b, w);
    return 0;
}

/* ---- clients ---------------------------------------------------------------------- */

/* Checks a client message's frames; returns its body or NULL with *msg set. */
static zmq_msg_t *client_body(bf_broker *b, int n, int *delim, const char **msg)
{
    zmq_msg_t *p = b->parts;
    *delim = n >= 2 && zmq_msg_size(&p[1]) == 0;
    *msg = NULL;
    if (n == 2 && !*delim)
        return &p[1];
    if (n == 3 && *delim && zmq_msg_size(&p[2]) > 0)
        return &p[2];
    *msg = n <= 2 ? "empty message" : "expected one body frame (after an empty delimiter)";
    return NULL;
}

/* One client message; -1 when none was waiting. */
static int frontend_message(bf_broker *b)
{
    zmq_msg_t *p = b->parts;
    int n = bf_zmq_recv_parts(b->frontend, p, 4, ZMQ_DONTWAIT);
    if (n < 1)
        return -1;
    STATS(b, b->stats.requests++);
    const uint8_t *cid = zmq_msg_data(&p[0]);
    size_t cid_len = zmq_msg_size(&p[0]), limit = (size_t)b->params->max_message;
    int delim;
    const char *why;
    char msg[BF_WIRE_ERROR_MAX];
    bf_wire_request req;
    if (cid_len == 0 || cid_len > BF_ID_MAX)
        return 0; /* cannot be addressed */
    zmq_msg_t *body = client_body(b, n, &delim, &why);
    if (body == NULL) {
        STATS(b, b->stats.malformed++);
        reply_error(b, cid, cid_len, delim, 0, 0, BF_STATUS_PROTOCOL, why);
        return 0;
    }
    if (zmq_msg_size(body) > limit) {
        snprintf(msg, sizeof msg, "message of %zu bytes over the limit of %zu",
                 zmq_msg_size(body), limit);
        reply_error(b, cid, cid_len, delim, 0, 0, BF_STATUS_REFUSED, msg);
        return 0;
    }
    bf_status st = bf_wire_request_decode(&req, zmq_msg_data(body), zmq_msg_size(body));
    if (st != BF_STATUS_OK) {
        STATS(b, b->stats.malformed++);
        reply_error(b, cid, cid_len, delim, req.has_id, req.id, st, bf_last_error());
        return 0;
    }
    if (b->draining || b->queue.len >= b->params->queue_max) {
        snprintf(msg, sizeof msg, b->draining ? "the pool is shutting down"
                 : "queue full (%d requests waiting)", b->queue.len);
        reply_error(b, cid, cid_len, delim, 1, req.id, BF_STATUS_BUSY, msg);
        return 0;
    }
    bf_request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        reply_error(b, cid, cid_len, delim, 1, req.id, BF_STATUS_OUT_OF_MEMORY, "broker");
        return 0;
    }
    r->id = req.id;
    r->arrived_us = bf_now_us();
    r->delim = delim;
    r->cid_len = (uint8_t)cid_len;
    memcpy(r->cid, cid, cid_len);
    zmq_msg_init(&r->body);
    zmq_msg_move(&r->body, body);
    list_push(&b->queue, r, 0);
    return 0;
}

/* ---- dispatch, heartbeats, timeouts ----------------------------------------------- */

/* The live worker with the most free credit, least recently used among equals. */
static bf_worker_rec *pick_worker(bf_broker *b)
{
    bf_worker_rec *best = NULL;
    int best_free = 0;
    for (int i = 0; i < b->n_workers; i++) {
        bf_worker_rec *w = &b->workers[i];
        int free_slots = w->capacity - w->inflight.len;
        if (free_slots > best_free ||
            (free_slots == best_free && best && w->last_used_us < best->last_used_us))
            best = w, best_free = free_slots;
    }
    return best_free > 0 ? best : NULL;
}

/* Sends r to w; -1 when the worker is gone (EHOSTUNREACH) or cannot take it now. */
static int send_request(bf_broker *b, bf_worker_rec *w, bf_request *r, uint64_t now)
{
    uint8_t cmd = BF_CMD_REQUEST, meta[BF_DISPATCH_META_SIZE];
    uint64_t waited = now - r->arrived_us;
    bf_put_le(meta, r->tag, 8);
    bf_put_le(meta + 8, waited > UINT32_MAX ? UINT32_MAX : waited, 4);
    const void *parts[4] = {w->wid, BF_WORKER_HEADER, &cmd, meta};
    size_t lens[4] = {w->wid_len, strlen(BF_WORKER_HEADER), 1, sizeof meta};
    if (bf_zmq_send_parts(b->backend, parts, lens, 4, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
        return -1;
    zmq_msg_t copy; /* shares the body's buffer: kept for a re-send if the worker dies */
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, &r->body);
    int rc = zmq_msg_send(&copy, b->backend, 0);
    zmq_msg_close(&copy);
    return rc < 0 ? -1 : 0;
}

static void dispatch(bf_broker *b)
{
    uint64_t now = bf_now_us();
    bf_worker_rec *w;
    while (b->queue.head && (w = pick_worker(b)) != NULL) {
        bf_request *r = b->queue.head;
        list_remove(&b->queue, r);
        r->tag = ++b->next_tag;
        if (send_request(b, w, r, now) < 0) {
            list_push(&b->queue, r, 1);
            if (zmq_errno() == EHOSTUNREACH)
                worker_purge(b, w);
            else
                break; /* EAGAIN: try again next turn */
            continue;
        }
        r->attempts++;
        w->last_used_us = now;
        list_push(&w->inflight, r, 0);
        b->in_flight++;
    }
}

static void heartbeat_and_purge(bf_broker *b, uint64_t now)
{
    for (int i = b->n_workers - 1; i >= 0; i--)
        if (now > b->workers[i].expiry_us)
            worker_purge(b, &b->workers[i]);
    if (now >= b->next_heartbeat_us) {
        /* no route: its connection is gone (closed by the worker, or by the connection
         * heartbeats), so its requests need not wait for its liveness to run out */
        for (int i = b->n_workers - 1; i >= 0; i--)
            if (send_worker_command(b, &b->workers[i], BF_CMD_HEARTBEAT) < 0 &&
                zmq_errno() == EHOSTUNREACH)
                worker_purge(b, &b->workers[i]);
        b->next_heartbeat_us = now + (uint64_t)b->params->heartbeat_interval_ms * 1000u;
    }
    /* requests that waited too long get a timeout (the client has likely given up) */
    uint64_t max_wait = (uint64_t)b->params->queue_timeout_ms * 1000u;
    while (max_wait && b->queue.head && now - b->queue.head->arrived_us > max_wait) {
        bf_request *r = b->queue.head;
        list_remove(&b->queue, r);
        request_fail(b, r, BF_STATUS_TIMEOUT, "waited in the queue past queue_timeout_ms");
    }
}

/* End of a drain: answer what is left, tell the workers, forget everything. */
static void finish(bf_broker *b)
{
    atomic_store(&b->finished, 1); /* before the DISCONNECTs that mean "leave" */
    for (int i = 0; i < b->n_workers; i++) {
        requeue_inflight(b, &b->workers[i]);
        send_worker_command(b, &b->workers[i], BF_CMD_DISCONNECT);
    }
    b->n_workers = 0;
    while (b->queue.head) {
        bf_request *r = b->queue.head;
        list_remove(&b->queue, r);
        request_fail(b, r, BF_STATUS_BUSY, "the pool stopped before this request ran");
    }
}

static void control_message(bf_broker *b)
{
    bf_zmq_recv_parts(b->control, b->parts, 1, ZMQ_DONTWAIT);
    if (!b->draining) {
        b->draining = 1;
        b->drain_deadline_us = bf_now_us() + (uint64_t)b->params->drain_timeout_ms * 1000u;
        STATS(b, (b->stats.drain_queued[0] = b->queue.len,
                  b->stats.drain_in_flight[0] = b->in_flight));
    }
}

/* ---- the descriptor limit --------------------------------------------------------- */

/* Says on stderr, at most every BF_FD_LOG_INTERVAL_MS, that the process has no descriptor
 * left for a new client connection (looked at every BF_THREAD_POLL_MS).  libzmq's listener
 * then retries its accept without a pause until one frees (its I/O thread busy meanwhile);
 * the connections the pool has are served on. */
static void check_fd_limit(bf_broker *b, uint64_t now)
{
    if (now < b->fd_checked_us + (uint64_t)BF_THREAD_POLL_MS * 1000u)
        return;
    b->fd_checked_us = now;
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (probe >= 0) {
        close(probe);
        return;
    }
    int err = errno;
    if ((err != EMFILE && err != ENFILE) ||
        (b->fd_logged_us && now - b->fd_logged_us < (uint64_t)BF_FD_LOG_INTERVAL_MS * 1000u))
        return;
    b->fd_logged_us = now;
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_NOFILE, &rl);
    fprintf(stderr, "butterfly pool: no descriptor left for a new client connection on %s "
            "(%s, limit %llu): serving the connections it has, new ones wait until some "
            "close (a vanished client's within conn_heartbeat_ms + conn_timeout_ms); for "
            "more clients raise the limit (ulimit -n)\n",
            b->frontend_bound ? b->frontend_bound : "the frontend", strerror(err),
            (unsigned long long)rl.rlim_cur);
    fflush(stderr);
}

static int loop_timeout_ms(const bf_broker *b, uint64_t now)
{
    int ms = b->next_heartbeat_us > now ? (int)((b->next_heartbeat_us - now + 999) / 1000) : 0;
    if (b->draining && ms > 10)
        ms = 10;
    return ms < BF_THREAD_POLL_MS ? ms : BF_THREAD_POLL_MS;
}

bf_status bf_broker_loop(bf_broker *b)
{
    bf_status st = BF_STATUS_OK;
    zmq_pollitem_t items[4] = {
        {b->control, 0, ZMQ_POLLIN, 0}, {b->backend, 0, ZMQ_POLLIN, 0},
        {b->frontend, 0, ZMQ_POLLIN, 0}, {b->zap, 0, ZMQ_POLLIN, 0}};
    int n_items = b->zap ? 4 : 3;
    b->next_heartbeat_us = bf_now_us();
    for (;;) {
        if (zmq_poll(items, n_items, loop_timeout_ms(b, bf_now_us())) < 0) {
            if (zmq_errno() != ETERM)
                st = bf_zmq_error("broker poll");
            break;
        }
        if (n_items == 4 && (items[3].revents & ZMQ_POLLIN))
            bf_zap_handle(b->zap, &b->allow, &b->worker_allow);
        if ((items[0].revents & ZMQ_POLLIN) || atomic_load(&b->stop_requested))
            control_message(b);
        /* bounded turns, so that neither side starves the other */
        for (int i = 0; i < 256 && (items[1].revents & ZMQ_POLLIN); i++)
            if (backend_message(b) < 0)
                break;
        for (int i = 0; i < 256 && (items[2].revents & ZMQ_POLLIN); i++)
            if (frontend_message(b) < 0)
                break;
        uint64_t now = bf_now_us();
        check_fd_limit(b, now);
        heartbeat_and_purge(b, now);
        dispatch(b);
        STATS(b, (b->stats.workers = b->n_workers, b->stats.queued = b->queue.len,
                  b->stats.in_flight = b->in_flight));
        if (b->draining && ((b->queue.len == 0 && b->in_flight == 0) ||
                            now >= b->drain_deadline_us))
            break;
    }
    STATS(b, (b->stats.drain_queued[1] = b->queue.len,
              b->stats.drain_in_flight[1] = b->in_flight));
    finish(b);
    STATS(b, (b->stats.workers = 0, b->stats.queued = 0, b->stats.in_flight = 0));
    return st;
}
