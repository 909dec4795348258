/* The worker: Paranoid Pirate on the worker side (heartbeats, reconnect with back-off) plus
 * dynamic batching.  One loop serves both pool threads and standalone worker processes.
 *
 * Flow control is by credit: READY tells the broker how many requests this worker may hold
 * at once (its batch capacity plus `prefetch`); each reply gives one credit back.  So the
 * broker can hand a worker a whole batch, and the worker runs what arrived within
 * batch_timeout_us.  The prefetched requests wait in the worker while it computes, so the
 * next batch is already there when one ends: without them a busy worker idles for a
 * broker round trip after every batch (~20 % of a 350 us compute on loopback).
 *
 * While a batch computes, a heartbeat thread keeps saying HEARTBEAT on the worker's socket
 * (the two threads take turns on it under a mutex: the loop never touches the socket while
 * it computes, the heartbeat thread only then), so a batch longer than the broker's
 * patience (interval x liveness) does not get the worker taken for dead. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve.h"

typedef struct slot {
    uint64_t tag;           /* the broker's handle */
    uint32_t broker_us;     /* time it waited in the broker */
    uint64_t arrived_us;
    uint64_t id;
    int k, want_logits;
} slot;

typedef struct worker {
    void *zctx, *sock;
    const bf_worker_params *p;
    bf_compute *c;
    bf_worker_ctl *ctl;
    int cap;                /* batch capacity */
    int credit;             /* requests it may hold: cap + prefetch */
    size_t elems;           /* C*H*W */
    uint8_t *buf;           /* credit payloads, contiguous */
    float *logits;          /* cap * num_classes */
    bf_feature *feats;
    slot *slots;
    int n;                  /* requests collected */
    uint64_t batch_deadline_us, broker_expiry_us, next_heartbeat_us;
    bf_timer batch_timer;   /* wakes the loop at batch_deadline_us to the microsecond */
    int reconnect_ms;
    int send_failed;        /* a reply could not be sent: reconnect */
    char id[24];            /* routing id, the same on every connection of its life */
    bf_curve_peer curve;    /* keys for a CURVE backend */
    /* the heartbeat thread: sends on sock only while `computing`, both under mu */
    pthread_t hb_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int hb_started, computing, hb_quit;
    msgpack_sbuffer sb;
} worker;

enum { KEEP_ON = 0, RECONNECT = 1, LEAVE = 2 };

static uint64_t liveness_us(const worker *w)
{
    return (uint64_t)w->p->heartbeat_interval_ms * 1000u * (uint64_t)w->p->heartbeat_liveness;
}

static int send_command(worker *w, uint8_t cmd)
{
    const void *parts[2] = {BF_WORKER_HEADER, &cmd};
    size_t lens[2] = {strlen(BF_WORKER_HEADER), 1};
    return bf_zmq_send_parts(w->sock, parts, lens, 2, ZMQ_DONTWAIT);
}

/* A routing id for the worker's life: a worker that reconnects (it heard nothing from the
 * broker for a while) comes back under the same id, so the broker re-queues what it had
 * sent the old connection at once instead of keeping a ghost of it until its heartbeats
 * run out.  64 random bits: two workers of a pool never share one. */
static void worker_id(worker *w)
{
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r) {
        struct timespec ts; /* no urandom: time, pid and address, mixed */
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 16) ^
            (uint64_t)(uintptr_t)w;
        r = (r ^ (r >> 31)) * 0x9e3779b97f4a7c15u;
    }
    if (fd >= 0)
        close(fd);
    snprintf(w->id, sizeof w->id, "bfw-%016llx", (unsigned long long)r);
}

static bf_status worker_connect(worker *w)
{
    int zero = 0;
    w->sock = zmq_socket(w->zctx, ZMQ_DEALER);
    if (w->sock == NULL)
        return bf_zmq_error("worker socket");
    zmq_setsockopt(w->sock, ZMQ_LINGER, &zero, sizeof zero);
    bf_zmq_set_hwm(w->sock, BF_WORKER_HWM);
    /* the broker tells a reconnect from a new worker by it (see worker_id) */
    zmq_setsockopt(w->sock, ZMQ_ROUTING_ID, w->id, strlen(w->id));
    w->send_failed = 0;
    bf_status st = bf_curve_peer_apply(&w->curve, w->sock);
    if (st == BF_STATUS_OK)
        st = bf_conn_apply(w->sock, &w->p->conn);
    if (st != BF_STATUS_OK)
        return st;
    if (zmq_connect(w->sock, w->p->connect) != 0)
        return bf_zmq_error(w->p->connect);
    uint8_t cmd = BF_CMD_READY, cap[4];
    bf_put_le(cap, (uint64_t)w->credit, 4);
    const void *parts[3] = {BF_WORKER_HEADER, &cmd, cap};
    size_t lens[3] = {strlen(BF_WORKER_HEADER), 1, 4};
    /* never blocking: with no usable connection (a broker refusing the CURVE handshake,
     * say) a blocking send would wait for ever, deaf to stop; unsent, READY goes again
     * when the broker's silence makes the worker reconnect */
    if (bf_zmq_send_parts(w->sock, parts, lens, 3, ZMQ_DONTWAIT) < 0 && zmq_errno() != EAGAIN)
        return bf_zmq_error("worker READY");
    uint64_t now = bf_now_us();
    w->broker_expiry_us = now + liveness_us(w);
    w->next_heartbeat_us = now + (uint64_t)w->p->heartbeat_interval_ms * 1000u;
    w->n = 0; /* requests collected on a lost connection are the broker's to re-queue */
    return BF_STATUS_OK;
}

/* Sends one reply: [hdr][REPLY][meta][body in w->sb].  The connection's high-water mark
 * is above anything the credit allows, so a send that fails means the connection is
 * broken: the loop then reconnects, and the broker re-queues what this worker held when
 * it purges the old connection -- no request is left in flight without an answer. */
static void send_reply(worker *w, const bf_reply_meta *m)
{
    uint8_t cmd = BF_CMD_REPLY, meta[BF_REPLY_META_SIZE];
    bf_reply_meta_pack(m, meta);
    const void *parts[4] = {BF_WORKER_HEADER, &cmd, meta, w->sb.data};
    size_t lens[4] = {strlen(BF_WORKER_HEADER), 1, sizeof meta, w->sb.size};
    if (bf_zmq_send_parts(w->sock, parts, lens, 4, ZMQ_DONTWAIT) < 0)
        w->send_failed = 1;
}

static void reply_error(worker *w, uint64_t tag, uint32_t queue_us, int has_id, uint64_t id,
                        bf_status st, const char *msg)
{
    bf_reply_meta m = {tag, queue_us, 0, 0, 0, (uint8_t)st};
    msgpack_sbuffer_clear(&w->sb);
    if (bf_wire_reply_error_encode(&w->sb, has_id, id, st, msg) == BF_STATUS_OK)
        send_reply(w, &m);
}

/* Checks a decoded request against what this worker serves; 0 or an error reply sent. */
static int check_request(worker *w, const bf_wire_request *r, uint64_t tag, uint32_t bq)
{
    char msg[BF_WIRE_ERROR_MAX];
    const bf_compute *c = w->c;
    if (c->model_hash[0] && strcmp(c->model_hash, r->model) != 0)
        snprintf(msg, sizeof msg, "model %s, this pool serves model %s", r->model,
                 c->model_hash);
    else if (c->split >= 0 && r->split != c->split)
        snprintf(msg, sizeof msg, "split %d, this pool serves split %d", r->split, c->split);
    else if (memcmp(r->dims, c->dims, sizeof r->dims) != 0)
        snprintf(msg, sizeof msg, "shape [%d, %d, %d] does not match the split's [%d, %d, %d]",
                 r->dims[0], r->dims[1], r->dims[2], c->dims[0], c->dims[1], c->dims[2]);
    else if (bf_wire_request_elems(r) > (size_t)w->p->max_payload)
        snprintf(msg, sizeof msg, "payload of %zu bytes over the limit of %d",
                 bf_wire_request_elems(r), w->p->max_payload);
    else
        return 0;
    reply_error(w, tag, bq, 1, r->id, BF_STATUS_REFUSED, msg);
    return -1;
}

/* A REQUEST: [hdr][cmd][dispatch meta][body]; good ones join the batch. */
static void accept_request(worker *w, zmq_msg_t *parts, int n)
{
    if (n != 4 || zmq_msg_size(&parts[2]) != BF_DISPATCH_META_SIZE)
        return; /* not from our broker: nothing to address a reply to */
    const uint8_t *meta = zmq_msg_data(&parts[2]);
    uint64_t tag = bf_get_le(meta, 8), now = bf_now_us();
    uint32_t bq = (uint32_t)bf_get_le(meta + 8, 4);
    bf_wire_request r;
    bf_status st = bf_wire_request_decode(&r, zmq_msg_data(&parts[3]), zmq_msg_size(&parts[3]));
    if (st != BF_STATUS_OK) {
        reply_error(w, tag, bq, r.has_id, r.id, st, bf_last_error());
        return;
    }
    if (check_request(w, &r, tag, bq) < 0)
        return;
    if (w->n >= w->credit) { /* the broker gave more than our credit: a broker bug */
        reply_error(w, tag, bq, 1, r.id, BF_STATUS_BUSY, "worker over capacity");
        return;
    }
    st = bf_wire_payload_decode(&r, w->buf + (size_t)w->n * w->elems, w->elems);
    if (st != BF_STATUS_OK) {
        reply_error(w, tag, bq, 1, r.id, st, bf_last_error());
        return;
    }
    if (w->n == 0)
        w->batch_deadline_us = now + (uint64_t)w->p->batch_timeout_us;
    w->feats[w->n] = (bf_feature){w->buf + (size_t)w->n * w->elems,
                                  {r.dims[0], r.dims[1], r.dims[2]}, r.min, r.max};
    w->slots[w->n] = (slot){tag, bq, now, r.id, r.k, r.want_logits};
    w->n++;
}

/* Drops the first m requests; the rest move to the front and start the next batch. */
static void shift_out(worker *w, int m)
{
    int left = w->n - m;
    if (left > 0) {
        memmove(w->buf, w->buf + (size_t)m * w->elems, (size_t)left * w->elems);
        memmove(w->slots, w->slots + m, (size_t)left * sizeof *w->slots);
        memmove(w->feats, w->feats + m, (size_t)left * sizeof *w->feats);
        for (int i = 0; i < left; i++)
            w->feats[i].data = w->buf + (size_t)i * w->elems;
        w->batch_deadline_us = w->slots[0].arrived_us + (uint64_t)w->p->batch_timeout_us;
    }
    w->n = left;
}

static void *heartbeat_main(void *arg)
{
    worker *w = arg;
    pthread_setname_np(pthread_self(), "bf-heartbeat");
    pthread_mutex_lock(&w->mu);
    while (!w->hb_quit) {
        uint64_t now = bf_now_us();
        int killed = w->ctl && atomic_load(&w->ctl->kill); /* "crashed": not a word */
        if (w->computing && w->sock && !killed && now >= w->next_heartbeat_us) {
            send_command(w, BF_CMD_HEARTBEAT);
            w->next_heartbeat_us = now + (uint64_t)w->p->heartbeat_interval_ms * 1000u;
        }
        /* wake at the next heartbeat due, else an interval from now (or when told to quit):
         * a compute that begins meanwhile is seen within one interval, no signal needed */
        uint64_t interval = (uint64_t)w->p->heartbeat_interval_ms * 1000u;
        uint64_t until = w->computing && w->next_heartbeat_us > now ? w->next_heartbeat_us
                                                                    : now + interval;
        struct timespec ts; /* the condition variable waits on CLOCK_MONOTONIC */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (until - now) * 1000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Starts the heartbeat thread with every signal blocked (they belong to the caller); a
 * real-time worker's one priority higher, so that it beats while the worker computes
 * however busy the cores are (SCHED_FIFO does not preempt a thread for one of the same
 * priority, and every core may be computing). */
static bf_status heartbeat_start(worker *w)
{
    pthread_condattr_t ca; /* a wall clock stepped back must not delay a heartbeat */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = bf_spawn(&w->hb_thread, heartbeat_main, w, bf_rt_above());
    if (rc == EPERM) /* a real-time caller not allowed one higher: its own, then */
        rc = bf_spawn(&w->hb_thread, heartbeat_main, w, 0);
    if (rc != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "worker: cannot start its heartbeat thread");
    }
    w->hb_started = 1;
    return BF_STATUS_OK;
}

static void heartbeat_stop(worker *w)
{
    if (!w->hb_started)
        return;
    pthread_mutex_lock(&w->mu);
    w->hb_quit = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->hb_thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    w->hb_started = 0;
}

/* Hands the socket to the heartbeat thread for the length of a compute, and back. */
static void set_computing(worker *w, int on)
{
    pthread_mutex_lock(&w->mu);
    w->computing = on;
    pthread_mutex_unlock(&w->mu);
}

/* Runs requests [first, first + n) of the collected ones as one batch and replies to
 * each; returns 0, -1 when the worker was "killed" meanwhile, 1 when the batch failed as
 * NUMERIC and hold_numeric asked to reply nothing then. */
static int compute_and_reply(worker *w, int first, int n, int hold_numeric)
{
    int nc = w->c->num_classes;
    float *logits = w->logits + (size_t)first * nc;
    set_computing(w, 1);
    uint64_t t0 = bf_now_us();
    bf_status st = w->c->run(w->c->ctx, n, w->feats + first, logits);
    uint64_t t1 = bf_now_us();
    set_computing(w, 0);
    /* deaf to the broker meanwhile: its heartbeats are waiting in the socket */
    w->broker_expiry_us += t1 - t0;
    char msg[BF_WIRE_ERROR_MAX + 16];
    if (st != BF_STATUS_OK)
        snprintf(msg, sizeof msg, "compute: %s", bf_last_error());
    if (w->ctl && atomic_load(&w->ctl->kill))
        return -1; /* "crashed" mid-batch: these replies are never sent */
    if (st == BF_STATUS_NUMERIC && hold_numeric)
        return 1;
    for (int i = 0; i < n; i++) {
        const slot *s = &w->slots[first + i];
        uint64_t waited = t0 - s->arrived_us + s->broker_us;
        bf_reply_meta m = {s->tag, (uint32_t)(waited > UINT32_MAX ? UINT32_MAX : waited),
                           (uint32_t)(t1 - t0), (uint16_t)n, (uint16_t)i, 0};
        bf_wire_reply r = {0};
        r.id = s->id, r.has_id = 1, r.status = st;
        const float *lg = logits + (size_t)i * nc;
        if (st == BF_STATUS_OK && bf_topk(lg, nc, w->c->probs, s->k, r.classes, r.probs) != 0) {
            r.status = BF_STATUS_NUMERIC;
            bf_wire_text(r.error, sizeof r.error, bf_last_error(), strlen(bf_last_error()));
        } else if (st != BF_STATUS_OK) {
            bf_wire_text(r.error, sizeof r.error, msg, strlen(msg));
        }
        r.k = s->k < nc ? s->k : nc;
        r.queue_us = m.queue_us, r.compute_us = m.compute_us, r.batch = n;
        if (s->want_logits)
            r.logits = lg, r.n_logits = nc;
        m.status = (uint8_t)r.status;
        msgpack_sbuffer_clear(&w->sb);
        if (bf_wire_reply_encode(&r, &w->sb) == BF_STATUS_OK)
            send_reply(w, &m);
    }
    return 0;
}

/* Runs the first batch (up to cap of the requests collected) and replies to each.  A
 * batch refused as NUMERIC may hold one request whose values overflow: each of its
 * requests then runs alone, so that only that one is answered with the error. */
static void run_batch(worker *w)
{
    int nb = w->n < w->cap ? w->n : w->cap;
    if (compute_and_reply(w, 0, nb, nb > 1) == 1)
        for (int i = 0; i < nb && compute_and_reply(w, i, 1, 0) == 0; i++)
            ;
    shift_out(w, nb);
}

/* Reads what is waiting; returns KEEP_ON, RECONNECT or LEAVE. */
static int drain_socket(worker *w, zmq_msg_t *parts)
{
    for (int budget = 2 * w->credit + 16; budget > 0 && w->n < w->credit; budget--) {
        int n = bf_zmq_recv_parts(w->sock, parts, 4, ZMQ_DONTWAIT);
        if (n < 0)
            return KEEP_ON; /* EAGAIN: nothing more */
        if (n < 2 || zmq_msg_size(&parts[0]) != strlen(BF_WORKER_HEADER) ||
            memcmp(zmq_msg_data(&parts[0]), BF_WORKER_HEADER, 4) != 0 ||
            zmq_msg_size(&parts[1]) != 1)
            continue; /* not our protocol */
        w->broker_expiry_us = bf_now_us() + liveness_us(w);
        w->reconnect_ms = BF_RECONNECT_INIT_MS;
        uint8_t cmd = *(const uint8_t *)zmq_msg_data(&parts[1]);
        if (cmd == BF_CMD_REQUEST)
            accept_request(w, parts, n);
        else if (cmd == BF_CMD_DISCONNECT)
            return w->ctl && w->ctl->broker_finished && atomic_load(w->ctl->broker_finished)
                       ? LEAVE : RECONNECT;
        /* HEARTBEAT: the expiry above is all it does */
    }
    return KEEP_ON;
}

/* A pool's worker told to stop, or to vanish. */
static int told_to_quit(const worker *w)
{
    return w->ctl && (atomic_load(&w->ctl->stop) || atomic_load(&w->ctl->kill));
}

/* Sleeps ms, in slices so that flags are seen; INTERRUPTED on a signal. */
static bf_status backoff(worker *w, int ms)
{
    while (ms > 0) {
        if (told_to_quit(w))
            return BF_STATUS_OK;
        int slice = ms < BF_THREAD_POLL_MS ? ms : BF_THREAD_POLL_MS;
        struct pollfd pfd = {w->p->stop_fd > 0 ? w->p->stop_fd : -1, POLLIN, 0};
        int r = poll(&pfd, 1, slice); /* a negative fd is ignored: a plain sleep */
        if ((r < 0 && errno == EINTR) || (r > 0 && (pfd.revents & (POLLIN | POLLHUP))))
            return bf_error(BF_STATUS_INTERRUPTED, "worker: stopped by a signal");
        ms -= slice;
    }
    return BF_STATUS_OK;
}

/* zmq_poll's timeout for the next wait; arms the batch timer for a partial batch. */
static int poll_timeout_ms(worker *w, uint64_t now)
{
    uint64_t until = w->next_heartbeat_us < w->broker_expiry_us ? w->next_heartbeat_us
                                                                : w->broker_expiry_us;
    int waiting = w->n > 0 && w->n < w->cap; /* a partial batch waits for company */
    bf_timer_arm(&w->batch_timer, waiting ? w->batch_deadline_us : 0);
    if (waiting && w->batch_timer.armed_us != w->batch_deadline_us &&
        w->batch_deadline_us < until)
        until = w->batch_deadline_us; /* no timer: the wait rounds up to whole ms */
    int ms = until > now ? (int)((until - now + 999) / 1000) : 0;
    if (w->n >= w->cap)
        ms = 0; /* a full batch is waiting: just look for more news */
    if (w->ctl && ms > BF_THREAD_POLL_MS)
        ms = BF_THREAD_POLL_MS;
    return ms;
}

static bf_status serve(worker *w, zmq_msg_t *parts)
{
    bf_status st = worker_connect(w);
    if (st == BF_STATUS_OK && w->ctl) /* it can serve: its pool may count on it */
        atomic_store(&w->ctl->ready, 1);
    while (st == BF_STATUS_OK) {
        if (told_to_quit(w))
            break;
        int ms = poll_timeout_ms(w, bf_now_us()), n_items = 1, i_timer = -1, i_stop = -1;
        zmq_pollitem_t items[3] = {{w->sock, 0, ZMQ_POLLIN, 0}};
        if (w->batch_timer.fd >= 0)
            i_timer = n_items, items[n_items++] = (zmq_pollitem_t){NULL, w->batch_timer.fd,
                                                                   ZMQ_POLLIN, 0};
        if (w->p->stop_fd > 0)
            i_stop = n_items, items[n_items++] = (zmq_pollitem_t){NULL, w->p->stop_fd,
                                                                  ZMQ_POLLIN, 0};
        if (zmq_poll(items, n_items, ms) < 0) {
            st = zmq_errno() == ETERM ? BF_STATUS_OK : bf_zmq_error("worker poll");
            break;
        }
        if (i_timer >= 0 && (items[i_timer].revents & ZMQ_POLLIN))
            bf_timer_fired(&w->batch_timer);
        if (i_stop >= 0 && (items[i_stop].revents & ZMQ_POLLIN)) {
            st = bf_error(BF_STATUS_INTERRUPTED, "worker: stopped by a signal");
            break;
        }
        int what = (items[0].revents & ZMQ_POLLIN) ? drain_socket(w, parts) : KEEP_ON;
        uint64_t now = bf_now_us();
        if (what == LEAVE)
            break;
        /* after a DISCONNECT the broker has re-queued what this worker holds: not run here */
        if (what != RECONNECT && w->n > 0 && (w->n >= w->cap || now >= w->batch_deadline_us))
            run_batch(w);
        if (now >= w->next_heartbeat_us) {
            send_command(w, BF_CMD_HEARTBEAT);
            w->next_heartbeat_us = now + (uint64_t)w->p->heartbeat_interval_ms * 1000u;
        }
        if (what == RECONNECT || w->send_failed || now >= w->broker_expiry_us) {
            zmq_close(w->sock);
            w->sock = NULL;
            st = backoff(w, w->reconnect_ms);
            w->reconnect_ms = w->reconnect_ms * 2 < w->p->reconnect_max_ms
                                  ? w->reconnect_ms * 2 : w->p->reconnect_max_ms;
            if (st == BF_STATUS_OK && !told_to_quit(w))
                st = worker_connect(w);
        }
    }
    return st;
}

bf_status bf_worker_loop(void *zctx, const bf_worker_params *params, bf_compute *compute,
                         bf_worker_ctl *ctl)
{
    worker w = {0};
    zmq_msg_t parts[4];
    bf_status st = BF_STATUS_OUT_OF_MEMORY;
    for (int i = 0; i < 4; i++)
        zmq_msg_init(&parts[i]);
    msgpack_sbuffer_init(&w.sb);
    w.zctx = zctx, w.p = params, w.c = compute, w.ctl = ctl;
    w.cap = params->max_batch < compute->max_batch ? params->max_batch : compute->max_batch;
    w.credit = w.cap + (params->prefetch < 0 ? w.cap : params->prefetch);
    if (w.credit > BF_CREDIT_MAX)
        w.credit = BF_CREDIT_MAX;
    w.elems = (size_t)compute->dims[0] * compute->dims[1] * compute->dims[2];
    w.reconnect_ms = BF_RECONNECT_INIT_MS;
    worker_id(&w);
    w.buf = malloc((size_t)w.credit * w.elems);
    w.logits = malloc((size_t)w.cap * compute->num_classes * sizeof(float));
    w.feats = calloc((size_t)w.credit, sizeof *w.feats);
    w.slots = calloc((size_t)w.credit, sizeof *w.slots);
    if (!w.buf || !w.logits || !w.feats || !w.slots) {
        bf_error(st, "worker buffers for a batch of %d", w.cap);
        goto fail;
    }
    st = bf_curve_peer_load(&w.curve, params->curve_server_key, params->curve_key_file, 1);
    if (st == BF_STATUS_OK)
        st = heartbeat_start(&w);
    if (st != BF_STATUS_OK)
        goto fail;
    bf_timer_open(&w.batch_timer);
    st = serve(&w, parts);
    bf_timer_close(&w.batch_timer);
fail:
    if (ctl && atomic_load(&ctl->ready) == 0)
        atomic_store(&ctl->ready, -1);
    heartbeat_stop(&w);
    if (w.sock)
        zmq_close(w.sock);
    for (int i = 0; i < 4; i++)
        zmq_msg_close(&parts[i]);
    msgpack_sbuffer_destroy(&w.sb);
    free(w.buf), free(w.logits), free(w.feats), free(w.slots);
    return st;
}

bf_worker_params bf_worker_default_params(void)
{
    bf_worker_params p = {0};
    p.connect = "tcp://127.0.0.1:5556";
    p.max_batch = 1;
    p.prefetch = -1;
    p.batch_timeout_us = BF_BATCH_TIMEOUT_US;
    p.heartbeat_interval_ms = BF_HEARTBEAT_INTERVAL_MS;
    p.heartbeat_liveness = BF_HEARTBEAT_LIVENESS;
    p.reconnect_max_ms = BF_RECONNECT_MAX_MS;
    p.max_payload = BF_MAX_MESSAGE;
    p.conn = bf_conn_default_params();
    p.compute = bf_compute_default_params();
    return p;
}

bf_status bf_worker_params_check(const bf_worker_params *p)
{
    if (p->max_batch < 1 || p->max_batch > BF_BATCH_MAX || p->batch_timeout_us < 0 ||
        p->batch_timeout_us > 10000000 || p->prefetch < -1 || p->prefetch > BF_CREDIT_MAX)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "worker: max_batch in [1, %d], "
                        "batch_timeout_us in [0, 10 s], prefetch in [-1, %d]", BF_BATCH_MAX,
                        BF_CREDIT_MAX);
    if (p->heartbeat_interval_ms < 1 || p->heartbeat_liveness < 1 ||
        p->reconnect_max_ms < BF_RECONNECT_INIT_MS || p->max_payload < 1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "worker: heartbeat_interval_ms, "
                        "heartbeat_liveness, max_payload >= 1, reconnect_max_ms >= %d",
                        BF_RECONNECT_INIT_MS);
    bf_status st = bf_conn_check(&p->conn, "worker");
    return st == BF_STATUS_OK ? bf_rt_check(p->rt_priority) : st;
}

bf_status bf_worker_run(const bf_worker_params *params)
{
    if (params == NULL || params->connect == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_worker_run: no endpoint");
    bf_status st = bf_worker_params_check(params);
    if (st != BF_STATUS_OK)
        return st;
    bf_worker_params p = *params;
    bf_compute c = {0};
    bf_sched_saved saved = {0};
    void *zctx = NULL;
    if (p.compute.max_batch < p.max_batch)
        p.compute.max_batch = p.max_batch;
    if (p.n_threads > 0)
        bf_set_num_threads(p.n_threads);
    if (p.compute.n_threads == 0)
        p.compute.n_threads = p.n_threads;
    st = bf_compute_create(&c, &p.compute);
    if (st != BF_STATUS_OK)
        goto fail;
    /* this thread and the I/O threads at the priority asked (as in a pool), its heartbeat
     * thread one higher; asked of libzmq once this thread has it */
    st = bf_rt_enter(p.rt_priority, &saved);
    if (st != BF_STATUS_OK)
        goto fail;
    zctx = zmq_ctx_new();
    if (zctx == NULL) {
        st = bf_zmq_error("zmq_ctx_new");
        goto fail;
    }
    st = bf_rt_zmq(zctx, p.rt_priority);
    if (st == BF_STATUS_OK)
        st = bf_worker_loop(zctx, &p, &c, NULL);
fail:
    if (zctx)
        zmq_ctx_term(zctx);
    bf_rt_leave(&saved);
    bf_compute_destroy(&c);
    return st;
}
