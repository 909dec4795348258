/* The broker <-> worker protocol (private; docs/PROTOCOL.md section 3): named commands,
 * frame layouts and timing constants with their units.  Majordomo / Paranoid Pirate shape:
 * every message starts with BF_WORKER_HEADER, then a one-byte command. */
#ifndef BF_SERVE_PROTOCOL_H
#define BF_SERVE_PROTOCOL_H

#include <stdint.h>
#include <string.h>

#define BF_WORKER_HEADER "BFW1"

enum bf_worker_command {
    BF_CMD_READY = 0x01,      /* worker -> broker: [hdr][cmd][capacity u32 LE] */
    BF_CMD_REQUEST = 0x02,    /* broker -> worker: [hdr][cmd][bf_dispatch_meta][body] */
    BF_CMD_REPLY = 0x03,      /* worker -> broker: [hdr][cmd][bf_reply_meta][body] */
    BF_CMD_HEARTBEAT = 0x04,  /* both ways: [hdr][cmd] */
    BF_CMD_DISCONNECT = 0x05, /* both ways: [hdr][cmd] */
};

/* Timing defaults (bf_*_default_params start from these). */
#define BF_HEARTBEAT_INTERVAL_MS 1000 /* each side sends one at least this often */
#define BF_HEARTBEAT_LIVENESS 3       /* intervals of silence before the peer is dead */
#define BF_RECONNECT_INIT_MS 100      /* worker back-off after losing the broker ... */
#define BF_RECONNECT_MAX_MS 8000      /* ... doubling up to this */
/* ZeroMQ's connection heartbeats (bf_conn_params): a vanished peer's connection is closed
 * within interval + timeout, 15 s; the TTL asks the peer for the same */
#define BF_CONN_HEARTBEAT_MS 5000
#define BF_CONN_TIMEOUT_MS 10000
#define BF_CONN_TTL_MS 15000
#define BF_CONN_TTL_MAX 6553500       /* ms: ZeroMQ sends the TTL as 16-bit tenths of a second */
#define BF_FD_LOG_INTERVAL_MS 10000   /* at most one "descriptor limit" line this often */
#define BF_BATCH_TIMEOUT_US 1000      /* how long a worker waits to fill a batch */
#define BF_QUEUE_MAX 1024             /* requests waiting in the broker */
#define BF_MAX_MESSAGE (8 << 20)      /* bytes of a request body */
#define BF_DRAIN_TIMEOUT_MS 5000      /* bf_pool_stop waits this long for work in flight */
#define BF_QUEUE_TIMEOUT_MS 10000     /* a request queued longer gets "timeout" (its client,
                                         at 3 tries x 3 s, has given up by then) */
#define BF_CLIENT_TIMEOUT_MS 3000     /* per attempt */
#define BF_CLIENT_RETRIES 2           /* resends after the first attempt */
#define BF_THREAD_POLL_MS 50          /* longest a pool thread sleeps between flag checks */
#define BF_WORKER_START_MS 10000      /* bf_pool_start waits this long for its workers */
#define BF_KEY_FILE_MAX_LINES 1000    /* a CURVE key file has 3 */
#define BF_ALLOW_FILE_MAX_LINES (1 << 20) /* an allow list: a key a line */
#define BF_ID_MAX 255                 /* longest ZeroMQ routing id */
#define BF_CREDIT_MAX 4096            /* most requests a worker may hold (READY capacity) */
#define BF_BATCH_MAX 1024             /* largest batch a worker runs (its compute's limit) */
#define BF_DISPATCH_MAX 3             /* a request whose workers died (or reconnected) without
                                         answering this many times is not sent again: it
                                         gets "backend" (it may be what kills them) */
/* High-water mark, in messages, of each broker <-> worker connection, both ends and both
 * ways: a worker that keeps to its credit has at most BF_CREDIT_MAX requests coming and as
 * many replies going, plus heartbeats, so neither side ever finds the pipe full (a reply
 * dropped there would leave its request in flight for good) */
#define BF_WORKER_HWM (2 * BF_CREDIT_MAX + 256)

/* [tag][queue_us]: the broker's handle for the request and how long it waited there. */
#define BF_DISPATCH_META_SIZE 12
/* [tag][queue_us][compute_us][batch][index][status][pad x3] */
#define BF_REPLY_META_SIZE 24

typedef struct bf_reply_meta {
    uint64_t tag;
    uint32_t queue_us;   /* broker wait + worker wait until its batch ran */
    uint32_t compute_us; /* the batch's compute */
    uint16_t batch;      /* requests in that batch */
    uint16_t index;      /* this request's position in it (0 counts the batch once) */
    uint8_t status;      /* bf_status of the reply */
} bf_reply_meta;

static inline void bf_put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t bf_get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline void bf_reply_meta_pack(const bf_reply_meta *m, uint8_t out[BF_REPLY_META_SIZE])
{
    memset(out, 0, BF_REPLY_META_SIZE);
    bf_put_le(out, m->tag, 8);
    bf_put_le(out + 8, m->queue_us, 4);
    bf_put_le(out + 12, m->compute_us, 4);
    bf_put_le(out + 16, m->batch, 2);
    bf_put_le(out + 18, m->index, 2);
    out[20] = m->status;
}

static inline void bf_reply_meta_unpack(const uint8_t in[BF_REPLY_META_SIZE], bf_reply_meta *m)
{
    m->tag = bf_get_le(in, 8);
    m->queue_us = (uint32_t)bf_get_le(in + 8, 4);
    m->compute_us = (uint32_t)bf_get_le(in + 12, 4);
    m->batch = (uint16_t)bf_get_le(in + 16, 2);
    m->index = (uint16_t)bf_get_le(in + 18, 2);
    m->status = in[20];
}

#endif /* BF_SERVE_PROTOCOL_H */
