/* The client: zguide's Lazy Pirate.  One request at a time; on timeout the socket is closed
 * and reopened (a DEALER keeps queued messages and a half-dead connection) and the same
 * request, same id, is sent again.  Replies whose id is not the outstanding one are old
 * duplicates and are dropped, so the caller sees each answer once. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/spec.h"
#include "serve/serve.h"

struct bf_client {
    void *zctx, *sock;
    bf_client_params p;
    char *endpoint;
    char model[17];
    bf_curve_peer curve;
    uint64_t next_id;
    int own_ctx;            /* zctx is ours to terminate */
    msgpack_sbuffer sb;
    zmq_msg_t parts[3];
};

bf_client_params bf_client_default_params(void)
{
    bf_client_params p = {0};
    p.endpoint = "tcp://127.0.0.1:5555";
    p.timeout_ms = BF_CLIENT_TIMEOUT_MS;
    p.retries = BF_CLIENT_RETRIES;
    p.model_hash = NULL;
    p.split = -1;
    p.codec = BF_CODEC_RAW;
    p.zstd_level = 3;
    p.conn = bf_conn_default_params();
    return p;
}

static bf_status open_socket(bf_client *c)
{
    int zero = 0;
    c->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (c->sock == NULL)
        return bf_zmq_error("client socket");
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &c->p.timeout_ms, sizeof c->p.timeout_ms);
    bf_status st = bf_curve_peer_apply(&c->curve, c->sock);
    if (st == BF_STATUS_OK)
        st = bf_conn_apply(c->sock, &c->p.conn);
    if (st != BF_STATUS_OK)
        return st;
    if (zmq_connect(c->sock, c->endpoint) != 0)
        return bf_zmq_error(c->endpoint);
    return BF_STATUS_OK;
}

bf_status bf_client_create(bf_client **out, const bf_client_params *params)
{
    return bf_client_create_in(out, params, NULL);
}

bf_status bf_client_create_in(bf_client **out, const bf_client_params *params, void *zctx)
{
    bf_client *c = NULL;
    bf_status st;
    if (out == NULL || params == NULL || params->endpoint == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_client_create: NULL argument");
    *out = NULL;
    if (params->timeout_ms < 1 || params->retries < 0 || params->retries > 1000 ||
        params->split < -1 || (params->codec != BF_CODEC_RAW && params->codec != BF_CODEC_ZSTD))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "client: timeout_ms >= 1, retries in "
                        "[0, 1000], split >= -1, codec raw or zstd");
    if ((st = bf_conn_check(&params->conn, "client")) != BF_STATUS_OK)
        return st;
    if (params->model_hash && !bf_is_model_hash(params->model_hash, strlen(params->model_hash)))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "client: model_hash must be 16 "
                        "lowercase hex digits (bf_model_hash)");
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "client");
    msgpack_sbuffer_init(&c->sb);
    for (int i = 0; i < 3; i++)
        zmq_msg_init(&c->parts[i]);
    c->p = *params;
    c->p.curve_key_file = c->p.curve_server_key = NULL; /* only used below */
    snprintf(c->model, sizeof c->model, "%s", params->model_hash ? params->model_hash
                                                                 : "0000000000000000");
    c->endpoint = strdup(params->endpoint);
    c->p.endpoint = c->endpoint;
    c->p.curve_server_key = params->curve_server_key;
    c->p.curve_key_file = params->curve_key_file;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* distinct id ranges per client make logs readable; correctness needs no uniqueness */
    c->next_id = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)c;
    st = c->endpoint ? BF_STATUS_OK : bf_error(BF_STATUS_OUT_OF_MEMORY, "client endpoint");
    if (st == BF_STATUS_OK)
        st = bf_curve_peer_load(&c->curve, c->p.curve_server_key, c->p.curve_key_file, 0);
    c->p.curve_server_key = c->p.curve_key_file = NULL; /* borrowed; not kept */
    c->own_ctx = zctx == NULL;
    if (st == BF_STATUS_OK && (c->zctx = zctx ? zctx : zmq_ctx_new()) == NULL)
        st = bf_zmq_error("zmq_ctx_new");
    if (st == BF_STATUS_OK)
        st = open_socket(c);
    if (st != BF_STATUS_OK)
        goto fail;
    *out = c;
    return BF_STATUS_OK;
fail:
    bf_client_destroy(c);
    return st;
}

void bf_client_destroy(bf_client *c)
{
    if (c == NULL)
        return;
    if (c->sock)
        zmq_close(c->sock);
    if (c->zctx && c->own_ctx)
        zmq_ctx_term(c->zctx);
    for (int i = 0; i < 3; i++)
        zmq_msg_close(&c->parts[i]);
    msgpack_sbuffer_destroy(&c->sb);
    free(c->endpoint);
    free(c);
}

/* Copies a decoded reply into *out; returns its status (the server's message as the error). */
static bf_status take_reply(const bf_wire_reply *rep, bf_result *out)
{
    if (rep->status != BF_STATUS_OK)
        return bf_error(rep->status, "server: %s", rep->error[0] ? rep->error
                                                                  : bf_status_str(rep->status));
    out->k = rep->k;
    memcpy(out->classes, rep->classes, sizeof out->classes);
    memcpy(out->probs, rep->probs, sizeof out->probs);
    out->queue_us = rep->queue_us;
    out->compute_us = rep->compute_us;
    out->batch = rep->batch;
    out->n_logits = 0;
    if (out->logits && rep->logits) {
        int n = rep->n_logits < out->logits_cap ? rep->n_logits : out->logits_cap;
        memcpy(out->logits, rep->logits, (size_t)n * sizeof(float)); /* unaligned source */
        out->n_logits = n;
    }
    return BF_STATUS_OK;
}

/* Reads one message waiting on the socket (never blocks): 0 when none; 1 with *st the
 * reply's status and *out filled, *id its id (0 and *has_id 0 when it carries none);
 * 2 for something that is not a reply (dropped). */
static int read_reply(bf_client *c, uint64_t *id, int *has_id, bf_result *out, bf_status *st)
{
    int n = bf_zmq_recv_parts(c->sock, c->parts, 3, ZMQ_DONTWAIT);
    if (n < 0)
        return 0;
    zmq_msg_t *body = n == 2 && zmq_msg_size(&c->parts[0]) == 0 ? &c->parts[1]
                      : n == 1 ? &c->parts[0] : NULL;
    if (body == NULL)
        return 2; /* not shaped like a reply */
    bf_wire_reply rep;
    *id = 0, *has_id = 0;
    if (bf_wire_reply_decode(&rep, zmq_msg_data(body), zmq_msg_size(body)) != 0) {
        *st = bf_error(BF_STATUS_PROTOCOL, "undecodable reply: %s", bf_last_error());
        return 1;
    }
    *id = rep.id, *has_id = rep.has_id;
    *st = take_reply(&rep, out);
    return 1;
}

/* Waits up to timeout_ms for the reply to id: 1 and *st set when it came (or failed),
 * 0 on timeout. */
static int await_reply(bf_client *c, uint64_t id, bf_result *out, bf_status *st)
{
    uint64_t deadline = bf_now_us() + (uint64_t)c->p.timeout_ms * 1000u;
    for (;;) {
        uint64_t now = bf_now_us();
        if (now >= deadline)
            return 0;
        zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, (long)((deadline - now + 999) / 1000));
        if (rc < 0) {
            *st = bf_zmq_error("client poll");
            return 1;
        }
        uint64_t got_id;
        int has_id;
        while (rc > 0 && (rc = read_reply(c, &got_id, &has_id, out, st)) > 0) {
            /* an answer to an earlier attempt (already given up on) is dropped */
            if (rc == 1 && (!has_id || got_id == id))
                return 1;
        }
    }
}

static bf_status check_input(const uint8_t *payload, const int dims[3], float min, float max)
{
    if (payload == NULL || dims == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "classify: NULL payload or dims");
    uint64_t elems = 1;
    for (int i = 0; i < 3; i++) {
        if (dims[i] < 1 || dims[i] > BF_WIRE_MAX_DIM)
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "classify: dims must be in [1, %d]",
                            BF_WIRE_MAX_DIM);
        elems *= (uint64_t)dims[i];
    }
    if (elems > BF_WIRE_MAX_ELEMS)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "classify: payload too large");
    if (!bf_range_ok(min, max))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "classify: quantization range (%g, %g) "
                        "must be finite, min <= max, max - min finite", min, max);
    return BF_STATUS_OK;
}

/* Encodes a request for payload into c->sb under a new id (*id). */
static bf_status encode_request(bf_client *c, const uint8_t *payload, const int dims[3],
                                float min, float max, int k, int want_logits, uint64_t *id)
{
    bf_status st = check_input(payload, dims, min, max);
    if (st != BF_STATUS_OK)
        return st;
    uint8_t *coded = NULL;
    bf_wire_request req = {0};
    req.id = *id = ++c->next_id;
    memcpy(req.model, c->model, sizeof req.model);
    req.split = c->p.split;
    req.codec = c->p.codec;
    memcpy(req.dims, dims, sizeof req.dims);
    req.min = min, req.max = max;
    req.k = k < 1 ? 1 : k > BF_TOPK_MAX ? BF_TOPK_MAX : k;
    req.want_logits = want_logits;
    req.payload = payload;
    req.payload_len = (size_t)dims[0] * dims[1] * dims[2];
    if (c->p.codec == BF_CODEC_ZSTD) {
        st = bf_wire_payload_encode(BF_CODEC_ZSTD, c->p.zstd_level, payload, req.payload_len,
                                    &coded, &req.payload_len);
        if (st != BF_STATUS_OK)
            return st;
        req.payload = coded;
    }
    msgpack_sbuffer_clear(&c->sb);
    st = bf_wire_request_encode(&req, &c->sb);
    free(coded);
    return st;
}

static int send_encoded(bf_client *c, int flags)
{
    const void *parts[2] = {"", c->sb.data};
    size_t lens[2] = {0, c->sb.size};
    return bf_zmq_send_parts(c->sock, parts, lens, 2, flags);
}

bf_status bf_client_classify(bf_client *c, const uint8_t *payload, const int dims[3],
                             float min, float max, int k, bf_result *out)
{
    if (c == NULL || out == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "classify: NULL client or result");
    uint64_t id;
    bf_status st = encode_request(c, payload, dims, min, max, k,
                                  out->logits != NULL && out->logits_cap > 0, &id);
    if (st != BF_STATUS_OK)
        return st;
    uint64_t t0 = bf_now_us();
    for (int attempt = 0; attempt <= c->p.retries; attempt++) {
        if (attempt > 0) { /* Lazy Pirate: a fresh socket, the same request */
            zmq_close(c->sock);
            c->sock = NULL;
            if ((st = open_socket(c)) != BF_STATUS_OK)
                return st;
        }
        out->attempts = attempt + 1;
        if (send_encoded(c, 0) < 0) {
            if (zmq_errno() == EAGAIN)
                continue; /* nowhere to send within timeout_ms: counts as a timeout */
            return bf_zmq_error("client send");
        }
        if (await_reply(c, id, out, &st)) {
            out->total_us = (uint32_t)(bf_now_us() - t0);
            return st;
        }
    }
    out->total_us = (uint32_t)(bf_now_us() - t0);
    return bf_error(BF_STATUS_TIMEOUT, "no reply from %s after %d attempt(s) of %d ms "
                    "(is the pool running? does it require CURVE keys?)", c->endpoint,
                    c->p.retries + 1, c->p.timeout_ms);
}

bf_status bf_client_post(bf_client *c, const uint8_t *payload, const int dims[3], float min,
                         float max, int k, uint64_t *id)
{
    bf_status st = encode_request(c, payload, dims, min, max, k, 0, id);
    if (st != BF_STATUS_OK)
        return st;
    if (send_encoded(c, ZMQ_DONTWAIT) < 0)
        return zmq_errno() == EAGAIN ? bf_error(BF_STATUS_BUSY, "client: cannot send now "
                                                "(no connection, or its queue is full)")
                                     : bf_zmq_error("client send");
    return BF_STATUS_OK;
}

int bf_client_take(bf_client *c, uint64_t *id, int *has_id, bf_result *out, bf_status *st)
{
    int rc;
    while ((rc = read_reply(c, id, has_id, out, st)) == 2) {
        /* not shaped like a reply: dropped */
    }
    return rc;
}

void *bf_client_socket(bf_client *c)
{
    return c->sock;
}
