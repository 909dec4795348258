/* Serving tests on loopback with the echo compute: API errors, the busy reply, malformed
 * messages, CURVE for clients and workers, standalone workers (over tcp, stopped by their
 * stop_fd), drain on stop, an interrupted client wait, and the engine backend.
 * Every loop is bounded in count and time; the whole file runs in a few seconds. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <math.h>
#include <signal.h>
#include <unistd.h>

#include "serve_common.h"

/* ---- raw sockets ------------------------------------------------------------------- */

static void *raw_dealer(void *zctx, const char *ep)
{
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0, tmo = 2000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_connect(s, ep);
    return s;
}

static void raw_send(void *s, const void *body, size_t len, int delim)
{
    if (delim)
        zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, body, len, 0);
}

static uint8_t g_reply[1 << 16];

/* Receives one reply (with or without delimiter) and decodes it; -1 on timeout. */
static int raw_recv(void *s, bf_wire_reply *rep, int *delim)
{
    int n = zmq_recv(s, g_reply, sizeof g_reply, 0);
    if (n < 0)
        return -1;
    *delim = n == 0;
    if (n == 0 && (n = zmq_recv(s, g_reply, sizeof g_reply, 0)) < 0)
        return -1;
    return bf_wire_reply_decode(rep, g_reply, (size_t)n) == BF_STATUS_OK ? 0 : -1;
}

static void encode_good(msgpack_sbuffer *sb, uint64_t id, const uint8_t *payload)
{
    bf_wire_request r = {0};
    r.id = id;
    memcpy(r.model, HASH, 17);
    r.split = SPLIT;
    memcpy(r.dims, DIMS, sizeof DIMS);
    r.max = 1.0f;
    r.payload = payload;
    r.payload_len = ELEMS;
    r.k = 2;
    msgpack_sbuffer_clear(sb);
    bf_wire_request_encode(&r, sb);
}

static int test_busy(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    pp.queue_max = 2;
    pp.worker.compute.delay_us = 30000;
    bf_pool *pool = start_pool(&pp, ep);
    void *zctx = zmq_ctx_new(), *s = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint8_t p[ELEMS] = {0};
    int seen[10] = {0}, ok = 0, busy = 0;
    CHECK(pool);
    s = raw_dealer(zctx, ep);
    for (int i = 0; i < 10; i++) {
        encode_good(&sb, 100 + (uint64_t)i, p);
        raw_send(s, sb.data, sb.size, 1);
    }
    for (int i = 0; i < 10; i++) {
        bf_wire_reply rep;
        int delim;
        CHECK(raw_recv(s, &rep, &delim) == 0 && delim && rep.has_id);
        CHECK(rep.id >= 100 && rep.id < 110 && !seen[rep.id - 100]);
        seen[rep.id - 100] = 1;
        ok += rep.status == BF_STATUS_OK;
        busy += rep.status == BF_STATUS_BUSY;
    }
    printf("  %d ok, %d busy\n", ok, busy);
    CHECK(ok >= 2 && busy >= 1 && ok + busy == 10);
    zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 0;
fail:
    if (s)
        zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 1;
}

static void encode_req(msgpack_sbuffer *sb, uint64_t id, const char *model, int split,
                       int c, int h, int w)
{
    static uint8_t payload[4096];
    bf_wire_request r = {0};
    r.id = id;
    snprintf(r.model, sizeof r.model, "%s", model);
    r.split = split;
    r.dims[0] = c, r.dims[1] = h, r.dims[2] = w;
    r.max = 1.0f;
    r.payload = payload;
    r.payload_len = (size_t)c * h * w;
    r.k = 1;
    msgpack_sbuffer_clear(sb);
    bf_wire_request_encode(&r, sb);
}

static int test_malformed(void)
{
    char ep[256];
    bf_pool_params pp = test_params(2);
    pp.max_message = 4096;
    bf_pool *pool = start_pool(&pp, ep);
    void *zctx = zmq_ctx_new(), *s = NULL;
    bf_client *c = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    static uint8_t junk[5000];
    bf_wire_reply rep;
    int delim;
    CHECK(pool);
    s = raw_dealer(zctx, ep);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    /* undecodable: error reply with a nil id, in the shape the client used */
    static const uint8_t wrong_version[] = {0x82, 0xa1, 'v', 0x02, 0xa2, 'i', 'd', 0x05};
    static const uint8_t wrong_type[] = {0x81, 0xa1, 'v', 0xa1, '1'};
    static const uint8_t huge_bin[] = {0x82, 0xa1, 'v', 0x01, 0xa1, 'p', 0xc6, 0xff, 0xff,
                                       0xff, 0xf0, 0x00};
    static const uint8_t array_body[] = {0x92, 0x01, 0x02};
    struct { const void *p; size_t n; int delim; bf_status want; } bad[] = {
        {junk, 100, 1, BF_STATUS_PROTOCOL}, {junk, 1, 0, BF_STATUS_PROTOCOL},
        {wrong_version, sizeof wrong_version, 1, BF_STATUS_PROTOCOL},
        {wrong_type, sizeof wrong_type, 1, BF_STATUS_PROTOCOL},
        {huge_bin, sizeof huge_bin, 1, BF_STATUS_PROTOCOL},
        {array_body, sizeof array_body, 0, BF_STATUS_PROTOCOL},
        {junk, sizeof junk, 1, BF_STATUS_REFUSED}, /* over max_message */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_send(s, bad[i].p, bad[i].n, bad[i].delim);
        CHECK(raw_recv(s, &rep, &delim) == 0);
        CHECK(rep.status == bad[i].want && !rep.has_id && delim == bad[i].delim);
        CHECK(rep.error[0] != '\0');
    }
    /* the wrong version keeps its reason */
    raw_send(s, wrong_version, sizeof wrong_version, 1);
    CHECK(raw_recv(s, &rep, &delim) == 0 && strstr(rep.error, "version"));
    /* frame shapes: a lone delimiter, delimiter + empty body, three body frames */
    zmq_send(s, "", 0, 0);
    CHECK(raw_recv(s, &rep, &delim) == 0 && rep.status == BF_STATUS_PROTOCOL);
    zmq_send(s, "", 0, ZMQ_SNDMORE), zmq_send(s, "", 0, 0);
    CHECK(raw_recv(s, &rep, &delim) == 0 && rep.status == BF_STATUS_PROTOCOL);
    zmq_send(s, "", 0, ZMQ_SNDMORE), zmq_send(s, "a", 1, ZMQ_SNDMORE), zmq_send(s, "b", 1, 0);
    CHECK(raw_recv(s, &rep, &delim) == 0 && rep.status == BF_STATUS_PROTOCOL);
    /* truncated request: its id may not be readable, but it is answered */
    encode_req(&sb, 7, HASH, SPLIT, 2, 4, 4);
    raw_send(s, sb.data, sb.size - 3, 1);
    CHECK(raw_recv(s, &rep, &delim) == 0 && rep.status == BF_STATUS_PROTOCOL);
    /* well-formed but refused: the id comes back */
    struct { const char *model; int split, c, h, w; } refused[] = {
        {"ffffffffffffffff", SPLIT, 2, 4, 4}, {HASH, SPLIT + 1, 2, 4, 4},
        {HASH, SPLIT, 2, 4, 5}, {HASH, SPLIT, 1, 4, 4}};
    for (int i = 0; i < 4; i++) {
        encode_req(&sb, 50 + (uint64_t)i, refused[i].model, refused[i].split, refused[i].c,
                   refused[i].h, refused[i].w);
        raw_send(s, sb.data, sb.size, 1);
        CHECK(raw_recv(s, &rep, &delim) == 0);
        CHECK(rep.status == BF_STATUS_REFUSED && rep.has_id && rep.id == 50 + (uint64_t)i);
    }
    /* a good request without the delimiter is answered without one */
    encode_req(&sb, 77, HASH, SPLIT, 2, 4, 4);
    raw_send(s, sb.data, sb.size, 0);
    CHECK(raw_recv(s, &rep, &delim) == 0 && rep.status == BF_STATUS_OK && !delim &&
          rep.id == 77);
    /* and the pool still serves a normal client */
    bf_client_params cp = client_params(ep);
    bf_result r = {0};
    uint8_t p[ELEMS] = {3};
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    CHECK(bf_client_classify(c, p, DIMS, 0, 1, 1, &r) == BF_STATUS_OK && r.classes[0] == 3);
    /* the client reports a refusal as such */
    int wrong_dims[3] = {2, 4, 5};
    uint8_t big[40] = {0};
    CHECK(bf_client_classify(c, big, wrong_dims, 0, 1, 1, &r) == BF_STATUS_REFUSED);
    CHECK(strstr(bf_last_error(), "shape") != NULL);
    bf_serve_stats st;
    CHECK(bf_pool_stats(pool, &st) == BF_STATUS_OK);
    CHECK(st.malformed >= 10 && st.replies_ok == 2);
    bf_client_destroy(c);
    zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_client_destroy(c);
    if (s)
        zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 1;
}

static int test_curve(void)
{
    char ep[256], dir[] = "/tmp/bf_curve_XXXXXX", server[300], cli[300], cli_pub[300],
                  other[300], allow[300], pub[BF_CURVE_KEY_LEN + 1], sec[BF_CURVE_KEY_LEN + 1];
    bf_pool *pool = NULL;
    bf_client *c = NULL;
    bf_result r = {0};
    uint8_t p[ELEMS] = {4};
    CHECK(mkdtemp(dir) != NULL);
    snprintf(server, sizeof server, "%s/server.key", dir);
    snprintf(cli, sizeof cli, "%s/client.key", dir);
    snprintf(cli_pub, sizeof cli_pub, "%s/client.key.pub", dir);
    snprintf(other, sizeof other, "%s/other.key", dir);
    snprintf(allow, sizeof allow, "%s/allow", dir);
    CHECK(bf_curve_keygen(server, pub) == BF_STATUS_OK && strlen(pub) == BF_CURVE_KEY_LEN);
    CHECK(bf_curve_key_read(server, pub, sec) == BF_STATUS_OK && sec[0] != '\0');
    CHECK(bf_curve_keygen(cli, NULL) == BF_STATUS_OK);
    CHECK(bf_curve_keygen(other, NULL) == BF_STATUS_OK);
    CHECK(bf_curve_key_read(cli_pub, pub, sec) == BF_STATUS_OK && sec[0] == '\0');
    FILE *f = fopen(allow, "w");
    CHECK(f);
    fprintf(f, "# allowed clients\npublic = %s\n", pub);
    fclose(f);
    bf_pool_params pp = test_params(1);
    pp.curve_key_file = server;
    pp.curve_allow_file = allow;
    pool = start_pool(&pp, ep);
    CHECK(pool);
    char server_pub[320];
    snprintf(server_pub, sizeof server_pub, "%s.pub", server);
    bf_client_params cp = client_params(ep);
    cp.curve_server_key = server_pub;
    cp.curve_key_file = cli;
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    CHECK(bf_client_classify(c, p, DIMS, 0, 1, 1, &r) == BF_STATUS_OK && r.classes[0] == 4);
    bf_client_destroy(c), c = NULL;
    /* a plain client cannot complete the handshake; a keyed one not on the list neither */
    cp.timeout_ms = 300, cp.retries = 1;
    for (int i = 0; i < 2; i++) {
        cp.curve_server_key = i ? server_pub : NULL;
        cp.curve_key_file = i ? other : NULL;
        CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
        CHECK(bf_client_classify(c, p, DIMS, 0, 1, 1, &r) == BF_STATUS_TIMEOUT);
        CHECK(r.attempts == 2);
        bf_client_destroy(c), c = NULL;
    }
    bf_serve_stats st;
    CHECK(bf_pool_stats(pool, &st) == BF_STATUS_OK && st.requests == 1);
    bf_pool_destroy(pool);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return 0;
fail:
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 1;
}

/* A worker outside the pool (as bf_worker_run runs it) over TCP, same loop. */
typedef struct ext_arg {
    const char *ep;
    bf_worker_ctl ctl;
    bf_status st;
    const char *server_key, *key; /* CURVE to the backend, or NULL */
} ext_arg;

static void *ext_worker(void *v)
{
    ext_arg *a = v;
    bf_worker_params wp = bf_worker_default_params();
    bf_compute c = {0};
    void *zctx = zmq_ctx_new();
    wp.connect = a->ep;
    wp.curve_server_key = a->server_key;
    wp.curve_key_file = a->key;
    wp.heartbeat_interval_ms = 50;
    wp.max_batch = 4;
    wp.compute = test_params(0).worker.compute;
    wp.compute.max_batch = 4;
    a->st = bf_compute_create(&c, &wp.compute);
    if (a->st == BF_STATUS_OK)
        a->st = bf_worker_loop(zctx, &wp, &c, &a->ctl);
    bf_compute_destroy(&c);
    zmq_ctx_term(zctx);
    return NULL;
}

static int test_external_worker(void)
{
    char ep[256], be[256];
    bf_pool_params pp = test_params(0);
    pp.backend = "tcp://127.0.0.1:*";
    bf_pool *pool = start_pool(&pp, ep);
    ext_arg ea[2];
    pthread_t th[2];
    int started = 0;
    load_arg args[4];
    CHECK(pool);
    CHECK(bf_pool_endpoint(pool, 1, be, sizeof be) == BF_STATUS_OK);
    for (; started < 2; started++) {
        memset(&ea[started], 0, sizeof ea[started]);
        ea[started].ep = be;
        pthread_create(&th[started], NULL, ext_worker, &ea[started]);
    }
    CHECK(run_load(ep, 4, 100, args, BF_CODEC_RAW) == 400);
    bf_serve_stats s;
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK && s.workers == 2);
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    for (int i = 0; i < started; i++)
        atomic_store(&ea[i].ctl.stop, 1), pthread_join(th[i], NULL);
    started = 0;
    CHECK(ea[0].st == BF_STATUS_OK && ea[1].st == BF_STATUS_OK);
    bf_pool_destroy(pool);
    return 0;
fail:
    for (int i = 0; i < started; i++)
        atomic_store(&ea[i].ctl.stop, 1), pthread_join(th[i], NULL);
    bf_pool_destroy(pool);
    return 1;
}

/* A "worker" that takes the request and says READY again (as one that died and came back
 * would) each time: the broker re-queues it twice, then answers it with an error rather
 * than sending it round for ever. */
typedef struct amnesiac_arg {
    const char *be;
    int dispatches;
} amnesiac_arg;

static void *amnesiac_worker(void *v)
{
    amnesiac_arg *a = v;
    void *zctx = zmq_ctx_new(), *s = raw_dealer(zctx, a->be); /* 2 s receive timeout */
    uint8_t cap[4];
    bf_put_le(cap, 1, 4);
    uint8_t cmd = BF_CMD_READY;
    const void *parts[3] = {BF_WORKER_HEADER, &cmd, cap};
    size_t lens[3] = {strlen(BF_WORKER_HEADER), 1, sizeof cap};
    zmq_msg_t p[4];
    for (int i = 0; i < 4; i++)
        zmq_msg_init(&p[i]);
    bf_zmq_send_parts(s, parts, lens, 3, 0);
    for (int n; (n = bf_zmq_recv_parts(s, p, 4, 0)) > 0;) {
        if (n == 4 && *(const uint8_t *)zmq_msg_data(&p[1]) == BF_CMD_REQUEST) {
            if (++a->dispatches == BF_DISPATCH_MAX) { /* the last: a 4th would come soon */
                int tmo = 300;
                zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
            }
            bf_zmq_send_parts(s, parts, lens, 3, 0); /* READY: "I hold nothing" */
        }
    }
    for (int i = 0; i < 4; i++)
        zmq_msg_close(&p[i]);
    zmq_close(s);
    zmq_ctx_term(zctx);
    return NULL;
}

static int test_dispatch_limit(void)
{
    char ep[256], be[256];
    bf_pool_params pp = test_params(0);
    pp.backend = "tcp://127.0.0.1:*";
    bf_pool *pool = start_pool(&pp, ep);
    bf_client *c = NULL;
    amnesiac_arg a = {be, 0};
    pthread_t th;
    int started = 0;
    CHECK(pool);
    CHECK(bf_pool_endpoint(pool, 1, be, sizeof be) == BF_STATUS_OK);
    CHECK(pthread_create(&th, NULL, amnesiac_worker, &a) == 0);
    started = 1;
    bf_client_params cp = client_params(ep);
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    uint8_t payload[ELEMS];
    unsigned seed = 3;
    make_payload(payload, &seed);
    bf_result r = {0};
    bf_status st = bf_client_classify(c, payload, DIMS, -1.0f, 1.0f, 3, &r);
    printf("  %s: %s\n", bf_status_str(st), bf_last_error());
    CHECK(st == BF_STATUS_BACKEND && strstr(bf_last_error(), "not sent again") != NULL);
    pthread_join(th, NULL);
    started = 0;
    CHECK(a.dispatches == BF_DISPATCH_MAX);
    bf_serve_stats s;
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK);
    CHECK(s.requeued == BF_DISPATCH_MAX - 1 && s.errors == 1);
    bf_client_destroy(c);
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    bf_pool_destroy(pool);
    return 0;
fail:
    if (started)
        pthread_join(th, NULL);
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 1;
}

/* CURVE on the backend: a listed worker joins and serves; a worker with another key, a
 * plain one and one without its key file never join. */
static int test_curve_workers(void)
{
    char ep[256], be[256], dir[] = "/tmp/bf_curvew_XXXXXX", server[300], server_pub[310],
                            good[300], good_pub[310], rogue[300], cli[300], allow[300],
                            pub[BF_CURVE_KEY_LEN + 1];
    bf_pool *pool = NULL;
    bf_client *c = NULL;
    ext_arg ea[3];
    pthread_t th[3];
    int started = 0;
    bf_result r = {0};
    bf_serve_stats s;
    uint8_t p[ELEMS] = {3};
    CHECK(mkdtemp(dir) != NULL);
    snprintf(server, sizeof server, "%s/server.key", dir);
    snprintf(server_pub, sizeof server_pub, "%s.pub", server);
    snprintf(good, sizeof good, "%s/good.key", dir);
    snprintf(good_pub, sizeof good_pub, "%s.pub", good);
    snprintf(rogue, sizeof rogue, "%s/rogue.key", dir);
    snprintf(cli, sizeof cli, "%s/client.key", dir);
    snprintf(allow, sizeof allow, "%s/workers", dir);
    CHECK(bf_curve_keygen(server, NULL) == BF_STATUS_OK);
    CHECK(bf_curve_keygen(good, pub) == BF_STATUS_OK);
    CHECK(bf_curve_keygen(rogue, NULL) == BF_STATUS_OK);
    CHECK(bf_curve_keygen(cli, NULL) == BF_STATUS_OK);
    FILE *f = fopen(allow, "w");
    CHECK(f);
    fprintf(f, "public = %s\n", pub);
    fclose(f);
    bf_pool_params pp = test_params(0);
    pp.backend = "tcp://127.0.0.1:*";
    pp.curve_key_file = server;
    pp.curve_worker_allow_file = allow;
    /* a worker allow list needs CURVE and a backend */
    pp.curve_key_file = NULL;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT);
    pp.curve_key_file = server;
    pp.backend = NULL;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT);
    pp.backend = "tcp://127.0.0.1:*";
    pool = start_pool(&pp, ep);
    CHECK(pool);
    CHECK(bf_pool_endpoint(pool, 1, be, sizeof be) == BF_STATUS_OK);
    /* a worker with CURVE but no key pair of its own is refused before it connects */
    bf_worker_params wp = bf_worker_default_params();
    wp.connect = be;
    wp.curve_server_key = server_pub;
    wp.compute = test_params(0).worker.compute;
    CHECK(bf_worker_run(&wp) == BF_STATUS_INVALID_ARGUMENT);
    /* the rogue key and a plain worker: neither joins */
    const char *keys[2] = {rogue, NULL};
    for (; started < 2; started++) {
        memset(&ea[started], 0, sizeof ea[started]);
        ea[started].ep = be;
        ea[started].server_key = keys[started] ? server_pub : NULL;
        ea[started].key = keys[started];
        pthread_create(&th[started], NULL, ext_worker, &ea[started]);
    }
    usleep(400000);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK && s.workers == 0);
    bf_client_params cp = client_params(ep);
    cp.curve_server_key = server_pub;
    cp.curve_key_file = cli;
    cp.timeout_ms = 300, cp.retries = 0;
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    CHECK(bf_client_classify(c, p, DIMS, 0, 1, 1, &r) == BF_STATUS_TIMEOUT);
    bf_client_destroy(c), c = NULL;
    /* the listed worker joins and serves */
    memset(&ea[2], 0, sizeof ea[2]);
    ea[2].ep = be, ea[2].server_key = server_pub, ea[2].key = good;
    pthread_create(&th[2], NULL, ext_worker, &ea[2]);
    started = 3;
    cp.timeout_ms = 3000, cp.retries = 1;
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    CHECK(bf_client_classify(c, p, DIMS, 0, 1, 1, &r) == BF_STATUS_OK && r.classes[0] == 3);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK && s.workers == 1);
    bf_client_destroy(c), c = NULL;
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    for (int i = 0; i < started; i++)
        atomic_store(&ea[i].ctl.stop, 1), pthread_join(th[i], NULL);
    started = 0;
    CHECK(ea[2].st == BF_STATUS_OK);
    bf_pool_destroy(pool);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return 0;
fail:
    bf_client_destroy(c);
    for (int i = 0; i < started; i++)
        atomic_store(&ea[i].ctl.stop, 1), pthread_join(th[i], NULL);
    bf_pool_destroy(pool);
    return 1;
}

/* bf_worker_run stops once its stop_fd is readable (a signal's wakeup pipe in Python). */
static int test_worker_stop_fd(void)
{
    char ep[256], be[256];
    bf_pool_params pp = test_params(0);
    pp.backend = "tcp://127.0.0.1:*";
    bf_pool *pool = start_pool(&pp, ep);
    solo_worker w;
    load_arg args[1];
    solo_init(&w, be); /* be is filled in before the worker starts */
    CHECK(pool && bf_pool_endpoint(pool, 1, be, sizeof be) == BF_STATUS_OK);
    CHECK(solo_start(&w) == 0);
    CHECK(run_load(ep, 1, 20, args, BF_CODEC_RAW) == 20); /* served by that worker */
    CHECK(solo_stop(&w) == BF_STATUS_INTERRUPTED);
    bf_pool_destroy(pool);
    return 0;
fail:
    solo_stop(&w);
    bf_pool_destroy(pool);
    return 1;
}

static int test_stop_drains(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    pp.worker.compute.delay_us = 20000;
    bf_pool *pool = start_pool(&pp, ep);
    void *zctx = zmq_ctx_new(), *s = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint8_t p[ELEMS] = {0};
    CHECK(pool);
    s = raw_dealer(zctx, ep);
    for (int i = 0; i < 5; i++) {
        encode_good(&sb, 200 + (uint64_t)i, p);
        raw_send(s, sb.data, sb.size, 1);
    }
    usleep(20000);
    uint64_t t0 = bf_now_us();
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    printf("  stop took %.0f ms\n", (double)(bf_now_us() - t0) / 1000);
    for (int i = 0; i < 5; i++) {
        bf_wire_reply rep;
        int delim;
        CHECK(raw_recv(s, &rep, &delim) == 0 && rep.status == BF_STATUS_OK);
    }
    /* stop twice is harmless; start again works */
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    CHECK(bf_pool_start(pool) == BF_STATUS_OK);
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 0;
fail:
    if (s)
        zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 1;
}

/* A request its worker never answers before the drain ends (a 500 ms compute, a 50 ms
 * drain): the statistics keep what the drain began and ended with, not zeros. */
static int test_drain_stats(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    pp.worker.compute.delay_us = 500000;
    pp.drain_timeout_ms = 50;
    bf_pool *pool = start_pool(&pp, ep);
    void *zctx = zmq_ctx_new(), *s = NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint8_t p[ELEMS] = {0};
    bf_serve_stats st;
    CHECK(pool);
    s = raw_dealer(zctx, ep);
    encode_good(&sb, 300, p);
    raw_send(s, sb.data, sb.size, 1);
    for (int i = 0; i < 500 && (bf_pool_stats(pool, &st), st.in_flight) != 1; i++)
        usleep(2000);
    CHECK(st.in_flight == 1);
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    CHECK(bf_pool_stats(pool, &st) == BF_STATUS_OK);
    CHECK(st.drain_queued[0] == 0 && st.drain_in_flight[0] == 1);
    CHECK(st.drain_queued[1] == 0 && st.drain_in_flight[1] == 1);
    CHECK(st.in_flight == 0 && st.queued == 0); /* now: it was answered "busy" */
    bf_wire_reply rep;
    int delim;
    CHECK(raw_recv(s, &rep, &delim) == 0 && rep.status == BF_STATUS_BUSY);
    zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 0;
fail:
    if (s)
        zmq_close(s);
    zmq_ctx_term(zctx);
    msgpack_sbuffer_destroy(&sb);
    bf_pool_destroy(pool);
    return 1;
}

static void on_usr1(int sig) { (void)sig; }

typedef struct intr_arg {
    const char *ep;
    bf_status st;
} intr_arg;

static void *intr_client(void *v)
{
    intr_arg *a = v;
    bf_client *c = NULL;
    bf_client_params cp = client_params(a->ep);
    bf_result r = {0};
    uint8_t p[ELEMS] = {0};
    a->st = bf_client_create(&c, &cp);
    if (a->st == BF_STATUS_OK)
        a->st = bf_client_classify(c, p, DIMS, 0, 1, 1, &r);
    bf_client_destroy(c);
    return NULL;
}

static int test_interrupted(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    pp.worker.compute.delay_us = 400000;
    pp.heartbeat_interval_ms = 200; /* liveness must outlast the longest batch */
    bf_pool *pool = start_pool(&pp, ep);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: the poll must come back with EINTR */
    sigaction(SIGUSR1, &sa, &old);
    intr_arg a = {ep, BF_STATUS_OK};
    pthread_t th;
    CHECK(pool);
    pthread_create(&th, NULL, intr_client, &a);
    usleep(100000);
    pthread_kill(th, SIGUSR1);
    pthread_join(th, NULL);
    sigaction(SIGUSR1, &old, NULL);
    CHECK(a.st == BF_STATUS_INTERRUPTED);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_pool_destroy(pool);
    return 1;
}

static int test_api_errors(void)
{
    bf_pool *pool = NULL;
    bf_client *c = NULL;
    bf_pool_params pp = test_params(0);
    bf_client_params cp = client_params("tcp://127.0.0.1:1");
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT && pool == NULL);
    pp = test_params(1);
    pp.worker.max_batch = 0;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT);
    pp = test_params(1);
    pp.worker.prefetch = -2;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT && pool == NULL);
    pp.worker.prefetch = 4097;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT && pool == NULL);
    /* connection heartbeats: a negative interval, no timeout with heartbeats on, a TTL
     * ZeroMQ cannot send (16-bit tenths of a second) */
    pp = test_params(1);
    pp.conn.heartbeat_ms = -1;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT && pool == NULL);
    pp = test_params(1);
    pp.conn.timeout_ms = 0;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT && pool == NULL);
    pp.conn.heartbeat_ms = 0; /* off: the timeout is not used */
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_OK);
    bf_pool_destroy(pool), pool = NULL;
    pp = test_params(1);
    pp.worker.conn.ttl_ms = 6553600;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT && pool == NULL);
    cp.conn.ttl_ms = 50;
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_INVALID_ARGUMENT && c == NULL);
    cp = client_params("tcp://127.0.0.1:1");
    pp = test_params(1);
    pp.frontend = "bogus://x";
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_OK);
    CHECK(bf_pool_start(pool) == BF_STATUS_NETWORK);
    bf_pool_destroy(pool), pool = NULL;
    pp = test_params(1);
    pp.worker.compute.kind = BF_COMPUTE_PLAN; /* no model file */
    pp.worker.compute.model_path = "/nonexistent.bfly";
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_OK);
    CHECK(bf_pool_start(pool) != BF_STATUS_OK);
    bf_pool_destroy(pool), pool = NULL;
    cp.model_hash = "XYZ";
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_INVALID_ARGUMENT && c == NULL);
    cp.model_hash = HASH;
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    int bad[3] = {0, 1, 1};
    bf_result r;
    uint8_t p[4] = {0};
    CHECK(bf_client_classify(c, p, bad, 0, 1, 1, &r) == BF_STATUS_INVALID_ARGUMENT);
    CHECK(bf_client_classify(c, p, DIMS, 1, 0, 1, &r) == BF_STATUS_INVALID_ARGUMENT);
    bf_client_destroy(c);
    bf_pool_destroy(NULL);
    bf_client_destroy(NULL);
    bf_compute_destroy(NULL);
    bf_worker_params wp = bf_worker_default_params();
    wp.connect = NULL;
    CHECK(bf_worker_run(&wp) == BF_STATUS_INVALID_ARGUMENT);
    return 0;
fail:
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 1;
}

/* ---- the engine backend (skipped when the engine is not linked in) ------------------ */

/* Weak, so this file also links with the serving code alone (the engine test is skipped). */
#pragma weak bf_model_load_buffer
#pragma weak bf_model_save_file
#pragma weak bf_model_destroy
#pragma weak bf_model_hash
#pragma weak bf_model_part_range
#pragma weak bf_plan_default_params
#pragma weak bf_plan_create
#pragma weak bf_plan_forward
#pragma weak bf_plan_destroy

static void mkey(msgpack_packer *pk, const char *k) { msgpack_pack_str_with_body(pk, k, strlen(k)); }

static void mlayer(msgpack_packer *pk, const char *type, const char *part, int input, int out_c)
{
    msgpack_pack_map(pk, out_c ? 7 : 3);
    mkey(pk, "type"), mkey(pk, type), mkey(pk, "part"), mkey(pk, part);
    if (input < 0) {
        mkey(pk, "shape"), msgpack_pack_array(pk, 3);
        msgpack_pack_int(pk, 3), msgpack_pack_int(pk, 9), msgpack_pack_int(pk, 8);
        return;
    }
    mkey(pk, "inputs"), msgpack_pack_array(pk, 1), msgpack_pack_int(pk, input);
    if (out_c) {
        static const char *names[3] = {"kernel", "stride", "pad"};
        static const int vals[3] = {3, 2, 1};
        mkey(pk, "out_channels"), msgpack_pack_int(pk, out_c);
        for (int i = 0; i < 3; i++) {
            mkey(pk, names[i]), msgpack_pack_array(pk, 2);
            msgpack_pack_int(pk, vals[i]), msgpack_pack_int(pk, vals[i]);
        }
    }
}

static void mparam(msgpack_packer *pk, const char *name, int n, const int *dims, float seed)
{
    size_t count = 1;
    for (int i = 0; i < n; i++)
        count *= (size_t)dims[i];
    float *d = malloc(count * sizeof *d);
    for (size_t i = 0; i < count && d; i++)
        d[i] = sinf(seed + 0.37f * (float)i);
    msgpack_pack_map(pk, 3);
    mkey(pk, "name"), mkey(pk, name), mkey(pk, "shape"), msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++)
        msgpack_pack_int(pk, dims[i]);
    mkey(pk, "data"), msgpack_pack_bin_with_body(pk, d, d ? count * sizeof *d : 0);
    free(d);
}

/* input(3x9x8) - conv(4) - relu | quantize || dequantize | conv(6) - gap - linear(5) */
static void make_model(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    int w1[4] = {4, 3, 3, 3}, w2[4] = {6, 4, 3, 3}, wl[2] = {5, 6}, bl[1] = {5};
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mkey(&pk, "format"), mkey(&pk, "butterfly-model");
    mkey(&pk, "version"), msgpack_pack_int(&pk, 1);
    mkey(&pk, "layers"), msgpack_pack_array(&pk, 8);
    mlayer(&pk, "input", "head", -1, 0);
    mlayer(&pk, "conv", "head", 0, 4);
    mlayer(&pk, "relu", "head", 1, 0);
    mlayer(&pk, "quantize", "reduce", 2, 0);
    mlayer(&pk, "dequantize", "restore", 3, 0);
    mlayer(&pk, "conv", "tail", 4, 6);
    mlayer(&pk, "global_avgpool", "tail", 5, 0);
    msgpack_pack_map(&pk, 5);
    mkey(&pk, "type"), mkey(&pk, "linear"), mkey(&pk, "part"), mkey(&pk, "tail");
    mkey(&pk, "inputs"), msgpack_pack_array(&pk, 1), msgpack_pack_int(&pk, 6);
    mkey(&pk, "out_channels"), msgpack_pack_int(&pk, 5), mkey(&pk, "bias");
    msgpack_pack_true(&pk);
    mkey(&pk, "params"), msgpack_pack_array(&pk, 8);
    msgpack_pack_array(&pk, 0), msgpack_pack_array(&pk, 1);
    mparam(&pk, "weight", 4, w1, 0.1f);
    for (int i = 0; i < 3; i++)
        msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 1), mparam(&pk, "weight", 4, w2, 0.7f);
    msgpack_pack_array(&pk, 0), msgpack_pack_array(&pk, 2);
    mparam(&pk, "weight", 2, wl, 1.3f), mparam(&pk, "bias", 1, bl, 2.1f);
}

static bf_plan *mk_plan(bf_model *m, bf_part a, bf_part b, int batch)
{
    bf_plan *p = NULL;
    bf_plan_params pp = bf_plan_default_params();
    pp.part_begin = a, pp.part_end = b, pp.batch = batch;
    return bf_plan_create(&p, m, &pp) == BF_STATUS_OK ? p : NULL;
}

typedef struct engine_ref {
    enum { N = 6 } n_;
    uint8_t q[N][4 * 5 * 4];
    float range[2 * N], logits[N * 5];
} engine_ref;

/* The mobile half's payloads and the cloud half's logits, computed locally. */
static int engine_reference(bf_model *m, engine_ref *ref)
{
    static float x[N * 3 * 9 * 8];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = cosf(0.11f * (float)i);
    bf_plan *mob = mk_plan(m, BF_PART_HEAD, BF_PART_REDUCE, N);
    bf_plan *cloud = mk_plan(m, BF_PART_RESTORE, BF_PART_TAIL, 1);
    int rc = -1;
    if (mob && cloud && bf_plan_forward(mob, x, NULL, ref->q, ref->range) == BF_STATUS_OK) {
        rc = 0;
        for (int i = 0; i < N && rc == 0; i++)
            rc = bf_plan_forward(cloud, ref->q[i], ref->range + 2 * i, ref->logits + 5 * i,
                                 NULL) == BF_STATUS_OK ? 0 : -1;
    }
    bf_plan_destroy(mob);
    bf_plan_destroy(cloud);
    return rc;
}

static int test_engine(void)
{
    if (bf_model_load_buffer == NULL) {
        printf("  (engine not linked: skipped)\n");
        return 0;
    }
    char path[] = "/tmp/bf_model_XXXXXX", ep[256], hash[17];
    bf_model *m = NULL;
    bf_pool *pool = NULL;
    bf_client *c = NULL;
    static engine_ref ref;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int fd = mkstemp(path), first, last;
    CHECK(fd >= 0);
    close(fd);
    make_model(&sb);
    CHECK(bf_model_load_buffer(&m, sb.data, sb.size, BF_LOAD_ALL) == BF_STATUS_OK);
    CHECK(bf_model_save_file(m, path) == BF_STATUS_OK);
    CHECK(engine_reference(m, &ref) == 0);
    bf_model_hash(m, hash);
    bf_model_part_range(m, BF_PART_RESTORE, &first, &last);
    bf_pool_params pp = test_params(2);
    pp.worker.max_batch = 4;
    pp.worker.compute.kind = BF_COMPUTE_PLAN;
    pp.worker.compute.model_path = path;
    pool = start_pool(&pp, ep);
    CHECK(pool);
    bf_client_params cp = client_params(ep);
    cp.model_hash = hash;
    cp.split = first;
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    int dims[3] = {4, 5, 4};
    for (int i = 0; i < N; i++) {
        float logits[5];
        bf_result r = {0};
        r.logits = logits, r.logits_cap = 5;
        CHECK(bf_client_classify(c, ref.q[i], dims, ref.range[2 * i], ref.range[2 * i + 1], 5,
                                 &r) == BF_STATUS_OK);
        CHECK(r.n_logits == 5 && r.k == 5);
        for (int j = 0; j < 5; j++)
            CHECK(fabsf(logits[j] - ref.logits[5 * i + j]) <= 1e-4f * (1 + fabsf(logits[j])));
        for (int j = 1; j < 5; j++)
            CHECK(logits[r.classes[j - 1]] >= logits[r.classes[j]]);
    }
    /* another model's hash is refused */
    bf_client_destroy(c), c = NULL;
    cp.model_hash = "0123456789abcdef";
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    bf_result r = {0};
    CHECK(bf_client_classify(c, ref.q[0], dims, 0, 1, 1, &r) == BF_STATUS_REFUSED);
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    bf_model_destroy(m);
    msgpack_sbuffer_destroy(&sb);
    unlink(path);
    return 0;
fail:
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    if (m)
        bf_model_destroy(m);
    msgpack_sbuffer_destroy(&sb);
    unlink(path);
    return 1;
}

int main(void)
{
    run("api errors", test_api_errors);
    run("bounded queue: busy replies", test_busy);
    run("malformed messages: error replies", test_malformed);
    run("CURVE: keyed served, others refused", test_curve);
    run("external workers over tcp", test_external_worker);
    run("a request never answered is not re-sent forever", test_dispatch_limit);
    run("CURVE backend: listed workers only", test_curve_workers);
    run("a standalone worker stops on its stop_fd", test_worker_stop_fd);
    run("stop drains in-flight requests", test_stop_drains);
    run("drain statistics show a request never answered", test_drain_stats);
    run("signal interrupts a client wait", test_interrupted);
    run("engine backend: restore + tail served", test_engine);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
