/* Small helpers of the serving code: clock, timers, threads and their scheduling,
 * multipart send/receive, error replies, top-k, latency buckets. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/timerfd.h>
#endif

#include "serve/serve.h"

uint64_t bf_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void bf_timer_open(bf_timer *t)
{
#ifdef __linux__
    t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
#else
    t->fd = -1;
#endif
    t->armed_us = 0;
}

void bf_timer_close(bf_timer *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
}

void bf_timer_arm(bf_timer *t, uint64_t at_us)
{
    if (t->fd < 0 || at_us == t->armed_us)
        return;
#ifdef __linux__
    struct itimerspec its = {{0, 0}, {0, 0}}; /* all zero: disarm */
    its.it_value.tv_sec = (time_t)(at_us / 1000000u);
    its.it_value.tv_nsec = (long)(at_us % 1000000u) * 1000;
    bf_timer_fired(t); /* an expiry not yet read would keep the fd readable */
    if (timerfd_settime(t->fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        t->armed_us = at_us;
#endif
}

void bf_timer_fired(bf_timer *t)
{
    uint64_t expirations;
    if (t->fd >= 0 && read(t->fd, &expirations, sizeof expirations) < 0) {
        /* EAGAIN: nothing to read */
    }
    t->armed_us = 0;
}

int bf_spawn(pthread_t *t, void *(*fn)(void *), void *arg, int rt_priority)
{
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return rc;
    if (rt_priority > 0) {
        struct sched_param sp = {.sched_priority = rt_priority};
        pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
        pthread_attr_setschedparam(&attr, &sp);
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

/* ---- real-time scheduling ------------------------------------------------------------ */

bf_status bf_rt_check(int rt_priority)
{
    int max = sched_get_priority_max(SCHED_FIFO);
    max = (max > 0 ? max : 99) - 1; /* heartbeat threads run one higher */
    if (rt_priority < 0 || rt_priority > max)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "rt_priority %d: 0 (off) or 1..%d "
                        "(SCHED_FIFO)", rt_priority, max);
    return BF_STATUS_OK;
}

int bf_rt_above(void)
{
    int policy;
    struct sched_param sp;
    if (pthread_getschedparam(pthread_self(), &policy, &sp) != 0 ||
        (policy != SCHED_FIFO && policy != SCHED_RR))
        return 0;
    return sp.sched_priority < sched_get_priority_max(policy) ? sp.sched_priority + 1
                                                               : sp.sched_priority;
}

bf_status bf_rt_enter(int rt_priority, bf_sched_saved *saved)
{
    struct sched_param sp;
    memset(saved, 0, sizeof *saved);
    bf_status st = bf_rt_check(rt_priority);
    if (st != BF_STATUS_OK || rt_priority == 0)
        return st;
    if (pthread_getschedparam(pthread_self(), &saved->policy, &sp) != 0)
        return bf_error(BF_STATUS_REFUSED, "rt_priority: cannot read this thread's scheduling");
    saved->priority = sp.sched_priority;
    sp.sched_priority = rt_priority;
    int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
    if (rc != 0)
        return bf_error(BF_STATUS_REFUSED, "rt_priority %d: SCHED_FIFO refused (%s); it "
                        "needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO of at least %d (and "
                        "real-time time in the cgroup)", rt_priority, strerror(rc), rt_priority);
    saved->changed = 1;
    return BF_STATUS_OK;
}

void bf_rt_leave(const bf_sched_saved *saved)
{
    if (!saved->changed)
        return;
    struct sched_param sp = {.sched_priority = saved->priority};
    pthread_setschedparam(pthread_self(), saved->policy, &sp); /* giving up is allowed */
}

bf_status bf_rt_probe(int rt_priority)
{
    bf_sched_saved saved;
    bf_status st = bf_rt_enter(rt_priority, &saved);
    bf_rt_leave(&saved);
    return st;
}

bf_status bf_rt_zmq(void *zctx, int rt_priority)
{
    if (rt_priority == 0)
        return BF_STATUS_OK;
    if (zmq_ctx_set(zctx, ZMQ_THREAD_SCHED_POLICY, SCHED_FIFO) != 0 ||
        zmq_ctx_set(zctx, ZMQ_THREAD_PRIORITY, rt_priority) != 0)
        return bf_zmq_error("real-time I/O threads");
    return BF_STATUS_OK;
}

bf_status bf_zmq_error(const char *what)
{
    int e = zmq_errno();
    if (e == EINTR)
        return bf_error(BF_STATUS_INTERRUPTED, "%s: interrupted by a signal", what);
    if (e == EAGAIN)
        return bf_error(BF_STATUS_TIMEOUT, "%s: timed out", what);
    return bf_error(BF_STATUS_NETWORK, "%s: %s", what, zmq_strerror(e));
}

bf_conn_params bf_conn_default_params(void)
{
    bf_conn_params c = {BF_CONN_HEARTBEAT_MS, BF_CONN_TIMEOUT_MS, BF_CONN_TTL_MS};
    return c;
}

bf_status bf_conn_check(const bf_conn_params *c, const char *who)
{
    const int day = 86400000;
    if (c->heartbeat_ms < 0 || c->heartbeat_ms > day ||
        (c->heartbeat_ms > 0 && (c->timeout_ms < 1 || c->timeout_ms > day)) ||
        c->ttl_ms < 0 || c->ttl_ms > BF_CONN_TTL_MAX || (c->ttl_ms > 0 && c->ttl_ms < 100))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "%s: conn_heartbeat_ms in [0, 1 day] "
                        "(0: off), conn_timeout_ms in [1, 1 day] with heartbeats on, "
                        "conn_ttl_ms 0 or in [100, %d]", who, BF_CONN_TTL_MAX);
    return BF_STATUS_OK;
}

bf_status bf_conn_apply(void *sock, const bf_conn_params *c)
{
    if (c->heartbeat_ms == 0)
        return BF_STATUS_OK;
    /* heartbeats begin after the handshake: a peer that vanished before finishing it (one
     * accepted from the listen backlog after it had gone) is given as long, not libzmq's
     * 30 s */
    int64_t sum = (int64_t)c->heartbeat_ms + c->timeout_ms;
    int handshake = sum > INT32_MAX ? INT32_MAX : (int)sum;
    if (zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &handshake, sizeof handshake) != 0 ||
        zmq_setsockopt(sock, ZMQ_HEARTBEAT_IVL, &c->heartbeat_ms, sizeof(int)) != 0 ||
        zmq_setsockopt(sock, ZMQ_HEARTBEAT_TIMEOUT, &c->timeout_ms, sizeof(int)) != 0 ||
        zmq_setsockopt(sock, ZMQ_HEARTBEAT_TTL, &c->ttl_ms, sizeof(int)) != 0)
        return bf_zmq_error("connection heartbeat options");
    return BF_STATUS_OK;
}

void bf_zmq_set_hwm(void *sock, int hwm)
{
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
}

int bf_zmq_send_parts(void *sock, const void *const *parts, const size_t *lens, int n,
                      int flags)
{
    for (int i = 0; i < n; i++)
        if (zmq_send(sock, parts[i], lens[i], flags | (i + 1 < n ? ZMQ_SNDMORE : 0)) < 0)
            return -1;
    return 0;
}

int bf_zmq_recv_parts(void *sock, zmq_msg_t *parts, int max, int flags)
{
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t scratch, *m = n < max ? &parts[n] : &scratch;
        if (n >= max)
            zmq_msg_init(&scratch);
        else
            zmq_msg_close(m), zmq_msg_init(m);
        /* later parts of a message are already here: never wait for them */
        if (zmq_msg_recv(m, sock, n == 0 ? flags : 0) < 0) {
            if (n >= max)
                zmq_msg_close(&scratch);
            return -1;
        }
        more = zmq_msg_more(m);
        if (n >= max)
            zmq_msg_close(&scratch);
        n++;
    }
    return n;
}

bf_status bf_topk(const float *logits, int n, int probs_already, int k, int *classes,
                  float *probs)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(logits[i]))
            return bf_error(BF_STATUS_NUMERIC, "logit %d is not finite", i);
        mx = logits[i] > mx ? logits[i] : mx;
    }
    double sum = 0.0;
    if (!probs_already)
        for (int i = 0; i < n; i++)
            sum += exp((double)(logits[i] - mx));
    if (k > n)
        k = n;
    /* selection of the k largest: k <= BF_TOPK_MAX, so O(n k) is fine */
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int t = 0; t < j && !taken; t++)
                taken = classes[t] == i;
            if (!taken && (best < 0 || logits[i] > logits[best]))
                best = i;
        }
        classes[j] = best;
        probs[j] = probs_already ? logits[best] : (float)(exp((double)(logits[best] - mx)) / sum);
    }
    return BF_STATUS_OK;
}

int bf_stats_bucket(uint64_t us)
{
    int b = 0;
    while (us > 0 && b < BF_STATS_BUCKETS - 1)
        us >>= 1, b++;
    return b;
}

double bf_stats_quantile(const uint64_t hist[BF_STATS_BUCKETS], double q)
{
    uint64_t total = 0, seen = 0;
    for (int b = 0; b < BF_STATS_BUCKETS; b++)
        total += hist[b];
    if (total == 0)
        return 0.0;
    q = q < 0 ? 0 : q > 1 ? 1 : q;
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    rank = rank ? rank : 1;
    for (int b = 0; b < BF_STATS_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= rank)
            return b == 0 ? 1.0 : ldexp(1.0, b); /* bucket b holds [2^(b-1), 2^b) */
    }
    return ldexp(1.0, BF_STATS_BUCKETS - 1);
}
