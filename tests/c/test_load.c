/* Serving tests under load on loopback with the echo compute: concurrent clients, zstd
 * payloads, dynamic batching and its timeout, prefetch, the load generator, a batch longer
 * than the heartbeat liveness, a worker dying mid-load, a broker that stalls, real-time
 * scheduling.
 * Every loop is bounded in count and time; the whole file runs in a few seconds. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <dirent.h>
#include <math.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "serve_common.h"

static int test_concurrent(void)
{
    char ep[256];
    bf_pool_params pp = test_params(2);
    bf_pool *pool = start_pool(&pp, ep);
    load_arg args[4];
    bf_serve_stats s;
    CHECK(pool);
    CHECK(run_load(ep, 4, 250, args, BF_CODEC_RAW) == 1000);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK);
    CHECK(s.requests == 1000 && s.replies_ok == 1000 && s.errors == 0 && s.busy == 0);
    CHECK(s.batches == 1000 && s.batch_hist[1] == 1000);
    printf("  total p50 <= %.0f us, p99 <= %.0f us\n", bf_stats_quantile(s.total_us, 0.5),
           bf_stats_quantile(s.total_us, 0.99));
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_pool_destroy(pool);
    return 1;
}

static int test_zstd_and_logits(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    bf_pool *pool = start_pool(&pp, ep);
    bf_client *c = NULL;
    load_arg args[2];
    CHECK(pool);
    CHECK(run_load(ep, 2, 50, args, BF_CODEC_ZSTD) == 100);
    bf_client_params cp = client_params(ep);
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    float logits[CLASSES + 5];
    bf_result r = {0};
    r.logits = logits, r.logits_cap = CLASSES + 5;
    uint8_t p[ELEMS] = {0};
    p[0] = 7;
    CHECK(bf_client_classify(c, p, DIMS, 0.0f, 2.0f, 50, &r) == BF_STATUS_OK);
    CHECK(r.n_logits == CLASSES && r.k == CLASSES && r.classes[0] == 7 && logits[7] == 8.0f);
    CHECK(r.attempts == 1 && r.batch == 1 && r.total_us > 0);
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 1;
}

static int test_batching(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    pp.worker.max_batch = 8;
    pp.worker.batch_timeout_us = 3000;
    pp.worker.compute.delay_us = 2000; /* per batch: batching pays */
    bf_pool *pool = start_pool(&pp, ep);
    load_arg args[8];
    bf_serve_stats s;
    CHECK(pool);
    CHECK(run_load(ep, 8, 40, args, BF_CODEC_RAW) == 320);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK);
    uint64_t reqs = 0, big = 0;
    for (int b = 1; b <= BF_STATS_BATCH_MAX; b++)
        reqs += (uint64_t)b * s.batch_hist[b], big += b > 1 ? s.batch_hist[b] : 0;
    printf("  %llu batches for 320 requests (max seen by a client %d)\n",
           (unsigned long long)s.batches, args[0].max_batch_seen);
    CHECK(reqs == 320 && big > 0 && s.batches < 320);
    CHECK(s.batch_hist[9] == 0 && s.batch_hist[BF_STATS_BATCH_MAX] == 0);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_pool_destroy(pool);
    return 1;
}

/* A lone request waits batch_timeout_us for company, not the next whole millisecond (the
 * resolution of zmq_poll's timeout): T = 300 us, its wait in the pool is ~300 us, not
 * >= 1,000. */
static int test_batch_timeout(void)
{
    char ep[256];
    enum { N = 31 };
    bf_pool_params pp = test_params(1);
    pp.worker.max_batch = 8;
    pp.worker.batch_timeout_us = 300;
    bf_pool *pool = start_pool(&pp, ep);
    bf_client *c = NULL;
    bf_client_params cp = client_params(ep);
    uint8_t pay[ELEMS];
    unsigned seed = 3;
    uint32_t waited[N];
    CHECK(pool && bf_client_create(&c, &cp) == BF_STATUS_OK);
    for (int i = 0; i < N; i++) {
        bf_result r = {0};
        int cls = make_payload(pay, &seed);
        CHECK(bf_client_classify(c, pay, DIMS, 0.0f, 1.0f, 1, &r) == BF_STATUS_OK);
        CHECK(r.classes[0] == cls && r.batch == 1);
        waited[i] = r.queue_us;
    }
    qsort(waited, N, sizeof *waited, cmp_u32);
    printf("  waited in the pool: min %u us, median %u us\n", waited[0], waited[N / 2]);
    CHECK(waited[0] >= 300 && waited[N / 2] < 900);
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 1;
}

/* Prefetch: a worker holds more than it runs (credit 2 + 3 = 5 for B = 2); what waits in
 * the worker starts the next batch, never a batch over B; everything answered once. */
static int test_prefetch(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    pp.worker.max_batch = 2;
    pp.worker.prefetch = 3;
    pp.worker.batch_timeout_us = 1000;
    pp.worker.compute.delay_us = 1000;
    bf_pool *pool = start_pool(&pp, ep);
    load_arg args[6];
    bf_serve_stats s;
    CHECK(pool);
    CHECK(run_load(ep, 6, 50, args, BF_CODEC_RAW) == 300);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK);
    uint64_t reqs = 0;
    for (int b = 1; b <= BF_STATS_BATCH_MAX; b++)
        reqs += (uint64_t)b * s.batch_hist[b];
    printf("  %llu batches of 1: %llu, of 2: %llu\n", (unsigned long long)s.batches,
           (unsigned long long)s.batch_hist[1], (unsigned long long)s.batch_hist[2]);
    CHECK(reqs == 300 && s.replies_ok == 300 && s.errors == 0 && s.busy == 0);
    for (int b = 3; b <= BF_STATS_BATCH_MAX; b++)
        CHECK(s.batch_hist[b] == 0);
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    bf_pool_destroy(pool);
    pool = NULL;
    /* prefetch 0 (strict dispatch) serves as well */
    pp.worker.prefetch = 0;
    pool = start_pool(&pp, ep);
    CHECK(pool);
    CHECK(run_load(ep, 3, 40, args, BF_CODEC_RAW) == 120);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_pool_destroy(pool);
    return 1;
}

/* The load generator: closed loop counts and records every answer; open loop sends exactly
 * rate x seconds requests at their due times, without waiting for answers; refused and
 * unanswered requests are counted as errors. */
static int test_loadgen(void)
{
    char ep[256];
    enum { NP = 16, CAP = 4096 };
    bf_pool_params pp = test_params(1);
    pp.worker.compute.delay_us = 500;
    bf_pool *pool = start_pool(&pp, ep);
    uint8_t pay[NP * ELEMS];
    float ranges[2 * NP];
    uint32_t *lat = calloc(CAP, sizeof *lat), *comp = calloc(CAP, sizeof *comp);
    uint32_t *que = calloc(CAP, sizeof *que);
    uint16_t *bat = calloc(CAP, sizeof *bat);
    uint32_t *sta = calloc(CAP, sizeof *sta);
    unsigned seed = 7;
    bf_load_result res;
    CHECK(pool && lat && comp && bat && que && sta);
    for (int i = 0; i < NP; i++) {
        make_payload(pay + i * ELEMS, &seed);
        ranges[2 * i] = -1.0f, ranges[2 * i + 1] = 1.0f;
    }
    bf_load_params lp = bf_load_default_params();
    lp.client = client_params(ep);
    lp.n_clients = 3, lp.seconds = 0.3, lp.n_payloads = NP, lp.payloads = pay;
    lp.ranges = ranges, lp.k = 3, lp.max_records = CAP;
    lp.latency_us = lat, lp.compute_us = comp, lp.batch = bat, lp.queue_us = que;
    lp.start_us = sta;
    memcpy(lp.dims, DIMS, sizeof DIMS);
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    printf("  closed loop: %llu answered in %.3f s\n", (unsigned long long)res.ok, res.seconds);
    CHECK(res.ok > 10 && res.errors == 0 && res.sent == res.ok && res.n_records == res.ok);
    CHECK(res.seconds >= 0.29 && res.seconds < 5.0);
    for (size_t i = 0; i < res.n_records; i++)
        CHECK(comp[i] >= 500 && lat[i] >= comp[i] + que[i] && bat[i] == 1 &&
              sta[i] < 300000 && sta[i] + lat[i] <= (uint32_t)(res.seconds * 1e6) + 1);
    /* open loop: 150 requests/s for 0.4 s on 2 connections -> 60 requests */
    lp.n_clients = 2, lp.rate = 150.0, lp.seconds = 0.4;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    CHECK(res.sent == 60 && res.ok == 60 && res.errors == 0 && res.n_records == 60);
    /* each latency began at its request's due time: j / rate after the start */
    qsort(sta, 60, sizeof *sta, cmp_u32);
    for (int j = 0; j < 60; j++)
        CHECK(fabs((double)sta[j] - j * 1e6 / 150.0) <= 1.0);
    /* records beyond the arrays are counted, not written */
    lp.max_records = 5;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    CHECK(res.ok == 60 && res.n_records == 5);
    lp.max_records = CAP;
    /* a rate far beyond what the pool (or the sender) can do: every due request is tried,
     * each is answered or counted as an error (busy, or timed out), and the run ends */
    lp.rate = 1e6, lp.seconds = 0.05;
    uint64_t t_over = bf_now_us();
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    printf("  open loop at 1e6/s: %llu sent, %llu answered, %llu errors in %.2f s\n",
           (unsigned long long)res.sent, (unsigned long long)res.ok,
           (unsigned long long)res.errors, (double)(bf_now_us() - t_over) / 1e6);
    CHECK(res.sent == 50000 && res.ok > 0 && res.ok + res.errors == res.sent);
    CHECK(bf_now_us() - t_over < 15000000);
    lp.rate = 150.0, lp.seconds = 0.4;
    /* another model's hash: every request refused, counted (both loops) */
    lp.client.model_hash = "ffffffffffffffff";
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    CHECK(res.sent == 60 && res.ok == 0 && res.errors == 60 &&
          res.last_error == BF_STATUS_REFUSED);
    lp.rate = 0, lp.seconds = 0.1;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    CHECK(res.ok == 0 && res.errors > 0 && res.last_error == BF_STATUS_REFUSED);
    lp.client.model_hash = HASH;
    bf_pool_destroy(pool);
    /* messages over the pool's size limit are refused unread, with replies that name no
     * request: they still answer (no waiting for the timeout) and count as refused */
    pp.max_message = 64;
    pool = start_pool(&pp, ep);
    CHECK(pool);
    lp.client = client_params(ep);
    lp.n_clients = 2, lp.rate = 0, lp.seconds = 0.1;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    CHECK(res.sent > 10 && res.ok == 0 && res.errors == res.sent &&
          res.last_error == BF_STATUS_REFUSED && res.seconds < 1.0);
    bf_pool_destroy(pool);
    pp.max_message = test_params(1).max_message;
    /* The open loop does not wait for answers: one connection, 200 requests/s, a server
     * taking 20 ms per batch (B = 16).  One request at a time could send at most ~48/s and
     * would fall further behind with every request (the last ones ~1.3 s late); sent on
     * time, each waits at most about a batch in progress plus its own. */
    pp.worker.max_batch = 16, pp.worker.batch_timeout_us = 1000;
    pp.worker.compute.delay_us = 20000;
    pool = start_pool(&pp, ep);
    CHECK(pool);
    lp.client = client_params(ep);
    lp.n_clients = 1, lp.rate = 200.0, lp.seconds = 0.4;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    uint32_t worst = 0;
    uint16_t most = 0;
    for (size_t i = 0; i < res.n_records; i++)
        worst = lat[i] > worst ? lat[i] : worst, most = bat[i] > most ? bat[i] : most;
    printf("  open loop, 1 connection: %llu answered, worst %u us, largest batch %u\n",
           (unsigned long long)res.ok, worst, most);
    CHECK(res.sent == 80 && res.ok == 80 && res.errors == 0 && res.n_records == 80);
    CHECK(most > 1 && worst < 250000);
    bf_pool_destroy(pool);
    /* nobody answers (no workers): the warm-up round trip times out, and the run fails
     * at once with a clear error, nothing sent (both loops) */
    bf_pool_params none = test_params(0);
    none.backend = "tcp://127.0.0.1:*"; /* for workers that never come */
    none.drain_timeout_ms = 100;
    pool = start_pool(&none, ep);
    CHECK(pool);
    lp.client = client_params(ep);
    lp.client.timeout_ms = 100;
    for (int open = 0; open < 2; open++) {
        lp.rate = open ? 100.0 : 0.0, lp.seconds = 0.1;
        uint64_t t0 = bf_now_us();
        CHECK(bf_load_run(&lp, &res) == BF_STATUS_TIMEOUT && res.sent == 0);
        CHECK(strstr(bf_last_error(), "no answer") && bf_now_us() - t0 < 2000000);
    }
    bf_pool_destroy(pool);
    /* Requests that time out during the run count as timeouts, and a closed-loop client
     * whose request timed out sends again while the window is open: a worker taking 60 ms
     * per request, a 100 ms timeout, three clients (the warm-up gets one answer in time). */
    pp = test_params(1);
    pp.worker.compute.delay_us = 60000;
    pool = start_pool(&pp, ep);
    CHECK(pool);
    lp.client = client_params(ep);
    lp.client.timeout_ms = 100;
    lp.n_clients = 3, lp.rate = 0, lp.seconds = 0.5;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    printf("  60 ms per request, 100 ms timeout: %llu sent, %llu answered, %llu timed out\n",
           (unsigned long long)res.sent, (unsigned long long)res.ok,
           (unsigned long long)res.errors);
    CHECK(res.sent > 3 && res.errors > 0 && res.last_error == BF_STATUS_TIMEOUT &&
          res.ok + res.errors == res.sent);
    /* bad parameters: nothing sent */
    lp.n_clients = 0;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_INVALID_ARGUMENT && res.sent == 0);
    lp.n_clients = 1, lp.seconds = -1;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_INVALID_ARGUMENT);
    lp.seconds = 0.1, lp.latency_us = lp.compute_us = lp.queue_us = NULL, lp.batch = NULL;
    lp.start_us = NULL; /* max_records > 0 and nowhere to record */
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_INVALID_ARGUMENT);
    bf_pool_destroy(pool);
    free(lat), free(comp), free(bat), free(que), free(sta);
    return 0;
fail:
    bf_pool_destroy(pool);
    free(lat), free(comp), free(bat), free(que), free(sta);
    return 1;
}

/* A batch four times longer than the broker's patience (3 x 50 ms heartbeats): the worker's
 * heartbeat thread keeps it alive, so nothing is purged, re-queued or computed twice. */
static int test_long_batch(void)
{
    char ep[256];
    bf_pool_params pp = test_params(1);
    pp.worker.compute.delay_us = 600000;
    bf_pool *pool = start_pool(&pp, ep);
    bf_serve_stats s;
    bf_client *c = NULL;
    bf_result r = {0};
    uint8_t p[ELEMS] = {6};
    CHECK(pool);
    bf_client_params cp = client_params(ep);
    cp.timeout_ms = 5000, cp.retries = 0;
    CHECK(bf_client_create(&c, &cp) == BF_STATUS_OK);
    for (int i = 0; i < 2; i++)
        CHECK(bf_client_classify(c, p, DIMS, 0, 1, 1, &r) == BF_STATUS_OK &&
              r.classes[0] == 6 && r.compute_us >= 600000);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK);
    printf("  purged %llu, re-queued %llu, batches %llu\n",
           (unsigned long long)s.workers_purged, (unsigned long long)s.requeued,
           (unsigned long long)s.batches);
    CHECK(s.workers_purged == 0 && s.requeued == 0 && s.late_replies == 0 && s.batches == 2);
    CHECK(s.workers == 1);
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_client_destroy(c);
    bf_pool_destroy(pool);
    return 1;
}

typedef struct killer_arg {
    bf_pool *pool;
    int after_ms;
} killer_arg;

static void *killer(void *v)
{
    killer_arg *k = v;
    usleep((useconds_t)k->after_ms * 1000);
    bf_pool_kill_worker(k->pool, 0);
    return NULL;
}

static int test_worker_dies(void)
{
    char ep[256];
    bf_pool_params pp = test_params(2);
    pp.worker.compute.delay_us = 1000;
    bf_pool *pool = start_pool(&pp, ep);
    load_arg args[4];
    bf_serve_stats s;
    pthread_t th;
    CHECK(pool);
    killer_arg k = {pool, 100};
    pthread_create(&th, NULL, killer, &k);
    int ok = run_load(ep, 4, 150, args, BF_CODEC_RAW);
    pthread_join(th, NULL);
    CHECK(ok == 600);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK);
    printf("  purged %llu, re-queued %llu, late %llu, live workers %d\n",
           (unsigned long long)s.workers_purged, (unsigned long long)s.requeued,
           (unsigned long long)s.late_replies, s.workers);
    CHECK(s.workers_purged == 1 && s.workers == 1 && s.replies_ok == 600);
    CHECK(bf_pool_stop(pool) == BF_STATUS_OK);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_pool_destroy(pool);
    return 1;
}

/* ---- real-time scheduling -------------------------------------------------------------- */

/* How many of this process's threads named `name` run under SCHED_FIFO at priority prio
 * (prio 0: how many there are, whatever their scheduling). */
static int threads_at(const char *name, int prio)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) != NULL) {
        char path[288], comm[64] = "";
        struct sched_param sp;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = '\0';
        if (f)
            fclose(f);
        int tid = atoi(e->d_name);
        if (strcmp(comm, name) == 0 &&
            (prio == 0 || (sched_getscheduler(tid) == SCHED_FIFO &&
                           sched_getparam(tid, &sp) == 0 && sp.sched_priority == prio)))
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* Waits (up to a second) until n threads named `name` exist: a new thread takes its name
 * only once it runs. */
static void wait_for_threads(const char *name, int n)
{
    for (int i = 0; i < 200 && threads_at(name, 0) < n; i++)
        usleep(5000);
}

static bf_load_params rt_load(const char *ep, const uint8_t *pay, const float *ranges)
{
    bf_load_params lp = bf_load_default_params();
    lp.client = client_params(ep);
    lp.n_clients = 2, lp.seconds = 0.1, lp.n_payloads = 1, lp.payloads = pay;
    lp.ranges = ranges, lp.rt_priority = 20;
    memcpy(lp.dims, DIMS, sizeof DIMS);
    return lp;
}

/* body() in a child that gave up root and real-time scheduling (RLIMIT_RTPRIO 0): exit
 * status 0 when it returned true, 2 when the child could not drop its privileges. */
static int rt_child(int (*body)(void))
{
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_RTPRIO, &none) != 0 ||
        (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)))
        return 2;
    return body() ? 0 : 1;
}

static int run_rt_child(int (*body)(void))
{
    int status = 0;
    fflush(NULL); /* or the child writes out what this process has buffered, again */
    pid_t pid = fork(); /* no thread of this process exists now to upset it */
    if (pid == 0)
        exit(rt_child(body));
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return 1;
    return WEXITSTATUS(status);
}

/* No real-time allowed: asking is refused with a clear error, by the pool before libzmq is
 * asked (which would abort) and by the load generator. */
static int rt_refused(void)
{
    bf_pool_params pp = test_params(1);
    pp.rt_priority = 10;
    bf_pool *pool = NULL;
    int ok = bf_pool_create(&pool, &pp) == BF_STATUS_OK &&
             bf_pool_start(pool) == BF_STATUS_REFUSED &&
             strstr(bf_last_error(), "SCHED_FIFO refused") != NULL;
    bf_pool_destroy(pool);
    uint8_t pay[ELEMS] = {0};
    float ranges[2] = {0, 1};
    bf_load_params lp = rt_load("tcp://127.0.0.1:1", pay, ranges);
    bf_load_result res;
    return ok && bf_load_run(&lp, &res) == BF_STATUS_REFUSED &&
           sched_getscheduler(0) == SCHED_OTHER;
}

static int test_realtime(void)
{
    char ep[256], be[256];
    int status = 0;
    bf_pool *pool = NULL;
    bf_pool_params pp = test_params(1);
    solo_worker w;
    bf_load_result res;
    solo_init(&w, be); /* be is filled in before the worker starts */
    uint8_t pay[ELEMS] = {3};
    float ranges[2] = {0, 1};
    /* out of range: refused before anything starts */
    pp.rt_priority = 99; /* its helpers would need 100 */
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT);
    pp.rt_priority = -1;
    CHECK(bf_pool_create(&pool, &pp) == BF_STATUS_INVALID_ARGUMENT);
    w.wp.rt_priority = 100;
    CHECK(bf_worker_run(&w.wp) == BF_STATUS_INVALID_ARGUMENT);
    bf_load_params lp = rt_load("tcp://127.0.0.1:1", pay, ranges);
    lp.rt_priority = 100;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_INVALID_ARGUMENT);

    /* unprivileged: refused (2: the child could not drop root) */
    status = run_rt_child(rt_refused);
    CHECK(status == 0 || status == 2);
    printf("  unprivileged: %s\n", status == 0 ? "refused" : "not checked (cannot drop root)");

    if (bf_rt_probe(10) != BF_STATUS_OK) {
        printf("  real-time scheduling not allowed here, only refusals checked (%s)\n",
               bf_last_error());
        return 0;
    }
    /* the pool's threads run under SCHED_FIFO, the caller's thread is left as it was */
    pp.rt_priority = 10;
    pp.backend = "tcp://127.0.0.1:*";
    pool = start_pool(&pp, ep);
    CHECK(pool && bf_pool_endpoint(pool, 1, be, sizeof be) == BF_STATUS_OK);
    /* at the priority asked, a worker's heartbeat thread one higher (the worker starts it
     * once it runs; a ZeroMQ I/O thread names itself once it runs) */
    wait_for_threads("bf-heartbeat", 1);
    wait_for_threads("ZMQbg/IO/0", 1);
    CHECK(threads_at("bf-worker0", 10) == 1 && threads_at("bf-broker", 10) == 1);
    CHECK(threads_at("bf-heartbeat", 11) == 1 && threads_at("ZMQbg/IO/0", 10) == 1);
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
    /* a worker process's loop: under SCHED_FIFO while it serves, as before once it returns */
    w.wp.rt_priority = 10;
    CHECK(solo_start(&w) == 0);
    wait_for_threads("bf-heartbeat", 2); /* its heartbeat thread runs once it has connected */
    wait_for_threads("ZMQbg/IO/0", 2);
    CHECK(threads_at("t-solo-worker", 10) == 1 && threads_at("bf-heartbeat", 11) == 2);
    CHECK(threads_at("ZMQbg/IO/0", 10) == 2); /* the pool's and the worker's */
    /* the load generator: served, and the calling thread back to normal afterwards */
    lp = rt_load(ep, pay, ranges);
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK && res.ok > 0 && res.errors == 0);
    CHECK(sched_getscheduler(0) == SCHED_OTHER);
    CHECK(solo_stop(&w) == BF_STATUS_INTERRUPTED && w.policy_after == SCHED_OTHER);
    bf_pool_destroy(pool);
    return 0;
fail:
    solo_stop(&w);
    bf_pool_destroy(pool);
    return 1;
}

/* Both workers real-time and computing long batches, overlapping, so that the broker runs
 * (on the core of whichever waits) while the other computes: it never finds that one
 * silent past the liveness (its heartbeat thread, one priority higher, beats mid-batch),
 * and nothing is re-queued. */
static int test_realtime_long_batches(void)
{
    char ep[256];
    bf_pool *pool = NULL;
    bf_serve_stats s;
    bf_load_result res;
    uint8_t pay[ELEMS] = {3};
    float ranges[2] = {0, 1};
    if (bf_rt_probe(10) != BF_STATUS_OK) {
        printf("  real-time scheduling not allowed here: skipped\n");
        return 0;
    }
    bf_pool_params pp = test_params(2); /* heartbeats 50 ms x 3 */
    pp.rt_priority = 10;
    pp.worker.compute.delay_us = 400000;
    pool = start_pool(&pp, ep);
    CHECK(pool);
    /* a 400 ms batch every 250 ms: the workers overlap, each idle a while in turn */
    bf_load_params lp = rt_load(ep, pay, ranges);
    lp.rt_priority = 0, lp.rate = 4.0, lp.seconds = 1.5, lp.client.timeout_ms = 5000;
    CHECK(bf_load_run(&lp, &res) == BF_STATUS_OK);
    CHECK(bf_pool_stats(pool, &s) == BF_STATUS_OK);
    printf("  %llu answered, %llu errors, purged %llu, re-queued %llu\n",
           (unsigned long long)res.ok, (unsigned long long)res.errors,
           (unsigned long long)s.workers_purged, (unsigned long long)s.requeued);
    CHECK(res.ok == 6 && res.errors == 0);
    CHECK(s.workers_purged == 0 && s.requeued == 0 && s.late_replies == 0);
    bf_pool_destroy(pool);
    return 0;
fail:
    bf_pool_destroy(pool);
    return 1;
}

/* ---- a broker that stops reading for a while ---------------------------------------------- */

typedef struct loop_arg {
    void *zctx;
    bf_worker_params wp;
    bf_compute comp;
    bf_worker_ctl ctl;
} loop_arg;

static void *worker_loop_main(void *v)
{
    loop_arg *a = v;
    bf_worker_loop(a->zctx, &a->wp, &a->comp, &a->ctl);
    return NULL;
}

/* A worker holding its whole credit (a batch of 1024 and as many prefetched) while the
 * broker reads nothing for half a second (busy, descheduled) keeps every reply until the
 * broker reads again: none is dropped, so none is left in flight for good. */
static int test_broker_stalls(void)
{
    static loop_arg a; /* zeroed: ctl flags off */
    static char seen[BF_CREDIT_MAX + 1];
    void *rt = NULL;
    msgpack_sbuffer sb;
    zmq_msg_t p[5];
    pthread_t th;
    int started = 0, replies = 0, zero = 0, rc = 1;
    uint32_t cap = 0;
    memset(seen, 0, sizeof seen);
    msgpack_sbuffer_init(&sb);
    for (int i = 0; i < 5; i++)
        zmq_msg_init(&p[i]);
    a.zctx = zmq_ctx_new();
    rt = zmq_socket(a.zctx, ZMQ_ROUTER); /* the broker's backend, default high-water mark */
    zmq_setsockopt(rt, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_bind(rt, "inproc://stalled-broker") == 0);
    a.wp = bf_worker_default_params();
    a.wp.connect = "inproc://stalled-broker";
    a.wp.max_batch = 1024;
    a.wp.compute = test_params(0).worker.compute;
    a.wp.compute.max_batch = 1024;
    CHECK(bf_compute_create(&a.comp, &a.wp.compute) == BF_STATUS_OK);
    CHECK(pthread_create(&th, NULL, worker_loop_main, &a) == 0);
    started = 1;
    CHECK(bf_zmq_recv_parts(rt, p, 5, 0) == 4); /* READY */
    CHECK(*(const uint8_t *)zmq_msg_data(&p[2]) == BF_CMD_READY);
    cap = (uint32_t)bf_get_le(zmq_msg_data(&p[3]), 4);
    CHECK(cap == 2048);
    uint8_t wid[BF_ID_MAX];
    size_t wid_len = zmq_msg_size(&p[0]);
    memcpy(wid, zmq_msg_data(&p[0]), wid_len);
    unsigned seed = 7;
    uint8_t payload[ELEMS];
    make_payload(payload, &seed);
    bf_wire_request req = {0};
    snprintf(req.model, sizeof req.model, "%s", HASH);
    req.split = SPLIT, req.codec = BF_CODEC_RAW, req.k = 1, req.min = -1.0f, req.max = 1.0f;
    memcpy(req.dims, DIMS, sizeof DIMS);
    req.payload = payload, req.payload_len = ELEMS;
    for (uint32_t t = 1; t <= cap; t++) {
        uint8_t cmd = BF_CMD_REQUEST, meta[BF_DISPATCH_META_SIZE];
        req.id = t;
        msgpack_sbuffer_clear(&sb);
        CHECK(bf_wire_request_encode(&req, &sb) == BF_STATUS_OK);
        bf_put_le(meta, t, 8);
        bf_put_le(meta + 8, 0, 4);
        const void *parts[5] = {wid, BF_WORKER_HEADER, &cmd, meta, sb.data};
        size_t lens[5] = {wid_len, strlen(BF_WORKER_HEADER), 1, sizeof meta, sb.size};
        CHECK(bf_zmq_send_parts(rt, parts, lens, 5, ZMQ_DONTWAIT) == 0);
    }
    usleep(500 * 1000); /* the broker busy elsewhere: nothing read */
    for (;;) {
        zmq_pollitem_t it = {rt, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 300) <= 0)
            break;
        int n = bf_zmq_recv_parts(rt, p, 5, 0);
        if (n == 5 && *(const uint8_t *)zmq_msg_data(&p[2]) == BF_CMD_REPLY) {
            uint64_t tag = bf_get_le(zmq_msg_data(&p[3]), 8);
            if (tag >= 1 && tag <= cap && !seen[tag])
                seen[tag] = 1, replies++;
        }
    }
    printf("  %u requests, %d replies\n", cap, replies);
    CHECK(replies == (int)cap);
    rc = 0;
fail:
    if (started) {
        atomic_store(&a.ctl.stop, 1);
        pthread_join(th, NULL);
    }
    for (int i = 0; i < 5; i++)
        zmq_msg_close(&p[i]);
    if (rt)
        zmq_close(rt);
    bf_compute_destroy(&a.comp);
    zmq_ctx_term(a.zctx);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int main(void)
{
    run("4 clients x 250 requests, 2 workers", test_concurrent);
    run("zstd payloads, logits, k clamped", test_zstd_and_logits);
    run("dynamic batching (B=8, T=3 ms)", test_batching);
    run("batch timeout to the microsecond", test_batch_timeout);
    run("prefetch: B=2 + 3 held, batches never over B", test_prefetch);
    run("load generator: closed and open loop", test_loadgen);
    run("a batch longer than the heartbeat liveness", test_long_batch);
    run("worker killed mid-load: re-queued", test_worker_dies);
    run("a broker that stalls loses no reply", test_broker_stalls);
    run("real-time scheduling: pool, worker, load", test_realtime);
    run("real-time long batches on every core", test_realtime_long_batches);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
