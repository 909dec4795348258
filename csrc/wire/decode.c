/* Decoding request / reply bodies: prescan, unpack with msgpack-c, then walk the map and
 * check every field's type, range and size against docs/PROTOCOL.md.  Unknown keys are
 * ignored (so minor additions stay compatible); a repeated known key is an error. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zstd.h>

#include "core/mpobj.h"
#include "core/spec.h"
#include "wire/wire.h"

/* ---- field readers (each returns 0 or sets the error and returns -1) ---------------- */

/* Sets a protocol error message; returns -1 for `return PROTO(...)`. */
__attribute__((format(printf, 1, 2))) static int proto_error(const char *fmt, ...)
{
    char msg[BF_WIRE_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bf_error(BF_STATUS_PROTOCOL, "%s", msg);
    return -1;
}
#define PROTO(...) proto_error(__VA_ARGS__)

static int get_int(const msgpack_object *o, const char *what, int64_t lo, int64_t hi,
                   int64_t *out)
{
    int64_t v;
    if (!bf_mp_int(o, &v)) {
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return PROTO("\"%s\" out of range", what); /* over INT64_MAX */
        return PROTO("\"%s\" must be an integer", what);
    }
    if (v < lo || v > hi)
        return PROTO("\"%s\" = %lld out of range [%lld, %lld]", what, (long long)v,
                     (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

static int get_float(const msgpack_object *o, const char *what, float *out)
{
    double v;
    if (!bf_mp_number(o, &v))
        return PROTO("\"%s\" must be a number", what);
    if (!isfinite(v) || fabs(v) > FLT_MAX)
        return PROTO("\"%s\" must be a finite float32", what);
    *out = (float)v;
    return 0;
}

static int get_str(const msgpack_object *o, const char *what, const char **s, size_t *n)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return PROTO("\"%s\" must be a string", what);
    *s = o->via.str.ptr;
    *n = o->via.str.size;
    return 0;
}

/* The client's bytes s[0..n) for an error text: valid UTF-8, at most ~32 bytes, "..." when
 * cut.  Returns a thread-local buffer, valid until the next call. */
static const char *quote(const char *s, size_t n)
{
    static _Thread_local char buf[48];
    size_t used = bf_wire_text(buf, 36, s, n);
    if (used < n)
        strcat(buf, "...");
    return buf;
}

static int str_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

bf_status bf_wire_prescan(const void *buf, size_t len)
{
    size_t used;
    if (buf == NULL || len == 0)
        return bf_error(BF_STATUS_PROTOCOL, "empty message");
    if (bf_mp_scan(buf, len, BF_WIRE_MAX_DEPTH, BF_WIRE_MAX_OBJECTS, &used) < 0)
        return bf_error(BF_STATUS_PROTOCOL, "malformed msgpack (truncated, too deep, "
                        "oversized container or over %d objects)", BF_WIRE_MAX_OBJECTS);
    if (used != len)
        return bf_error(BF_STATUS_PROTOCOL, "%zu trailing bytes after the msgpack body",
                        len - used);
    return BF_STATUS_OK;
}

/* Unpacks buf into *up after the prescan and checks it is a map with our version. */
static bf_status unpack_map(msgpack_unpacked *up, const void *buf, size_t len,
                            const msgpack_object_map **map)
{
    bf_status st = bf_wire_prescan(buf, len);
    if (st != BF_STATUS_OK)
        return st;
    size_t off = 0;
    msgpack_unpack_return ret = msgpack_unpack_next(up, buf, len, &off);
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "unpacking a message");
    if (ret != MSGPACK_UNPACK_SUCCESS || off != len)
        return bf_error(BF_STATUS_PROTOCOL, "malformed msgpack");
    if (up->data.type != MSGPACK_OBJECT_MAP)
        return bf_error(BF_STATUS_PROTOCOL, "body must be a msgpack map");
    *map = &up->data.via.map;
    const msgpack_object *v = NULL;
    for (uint32_t i = 0; i < (*map)->size; i++) {
        if (!bf_mp_key_is(&(*map)->ptr[i].key, "v"))
            continue;
        if (v != NULL)
            return bf_error(BF_STATUS_PROTOCOL, "repeated key \"v\"");
        v = &(*map)->ptr[i].val;
    }
    int64_t ver = 0;
    if (v == NULL)
        return bf_error(BF_STATUS_PROTOCOL, "missing \"v\" (protocol version)");
    if (get_int(v, "v", 0, INT32_MAX, &ver) < 0)
        return BF_STATUS_PROTOCOL;
    if (ver != BF_PROTOCOL_VERSION)
        return bf_error(BF_STATUS_PROTOCOL, "protocol version %lld, this server speaks %d",
                        (long long)ver, BF_PROTOCOL_VERSION);
    return BF_STATUS_OK;
}


/* Finds the values of `names` in map (NULL where absent); a repeated name is an error. */
static int collect(const msgpack_object_map *map, const char *const *names, int n,
                   const msgpack_object **vals)
{
    for (int j = 0; j < n; j++)
        vals[j] = NULL;
    for (uint32_t i = 0; i < map->size; i++) {
        for (int j = 0; j < n; j++) {
            if (!bf_mp_key_is(&map->ptr[i].key, names[j]))
                continue;
            if (vals[j])
                return PROTO("key \"%s\" repeated", names[j]);
            vals[j] = &map->ptr[i].val;
        }
    }
    return 0;
}

static int require(const msgpack_object *const *vals, const char *const *names, int n)
{
    for (int j = 0; j < n; j++)
        if (vals[j] == NULL)
            return PROTO("missing \"%s\"", names[j]);
    return 0;
}

enum { RQ_ID, RQ_MODEL, RQ_SPLIT, RQ_CODEC, RQ_SHAPE, RQ_DTYPE, RQ_MIN, RQ_MAX, RQ_PAYLOAD,
       RQ_K, RQ_REQUIRED_, RQ_LOGITS = RQ_REQUIRED_, RQ_COUNT_ };
static const char *const rq_names[RQ_COUNT_] = {
    "id", "model", "split", "codec", "shape", "dtype", "min", "max", "payload", "k", "logits"};

static int decode_shape(const msgpack_object *o, int dims[3])
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3)
        return PROTO("\"shape\" must be an array [C, H, W]");
    uint64_t elems = 1;
    for (int i = 0; i < 3; i++) {
        int64_t d = 0;
        if (get_int(&o->via.array.ptr[i], "shape", 1, BF_WIRE_MAX_DIM, &d) < 0)
            return -1;
        dims[i] = (int)d;
        elems *= (uint64_t)d;
    }
    if (elems > BF_WIRE_MAX_ELEMS)
        return PROTO("shape [%d, %d, %d] is absurdly large", dims[0], dims[1], dims[2]);
    return 0;
}

static int decode_model(const msgpack_object *o, char model[17])
{
    const char *s = NULL;
    size_t n = 0;
    if (get_str(o, "model", &s, &n) < 0)
        return -1;
    if (n != 16)
        return PROTO("\"model\" must be 16 hex digits");
    if (!bf_is_model_hash(s, n))
        return PROTO("\"model\" must be 16 lowercase hex digits");
    memcpy(model, s, 16);
    model[16] = '\0';
    return 0;
}

static int decode_payload(const msgpack_object *o, bf_wire_request *r)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return PROTO("\"payload\" must be msgpack bin");
    r->payload = (const uint8_t *)o->via.bin.ptr;
    r->payload_len = o->via.bin.size;
    size_t elems = bf_wire_request_elems(r);
    if (r->codec == BF_CODEC_RAW && r->payload_len != elems)
        return PROTO("payload has %zu bytes, shape [%d, %d, %d] needs %zu", r->payload_len,
                     r->dims[0], r->dims[1], r->dims[2], elems);
    if (r->codec == BF_CODEC_ZSTD && (r->payload_len == 0 ||
                                      r->payload_len > ZSTD_compressBound(elems)))
        return PROTO("zstd payload of %zu bytes cannot hold %zu", r->payload_len, elems);
    /* the frame header is cheap to read: reject a frame that does not hold the shape */
    if (r->codec == BF_CODEC_ZSTD &&
        ZSTD_getFrameContentSize(r->payload, r->payload_len) != (unsigned long long)elems)
        return PROTO("zstd frame does not declare the %zu bytes its shape needs", elems);
    return 0;
}

static int decode_request_fields(bf_wire_request *r, const msgpack_object *const *v)
{
    const char *s = NULL;
    size_t n = 0;
    int64_t i64 = 0;
    if (decode_model(v[RQ_MODEL], r->model) < 0)
        return -1;
    if (get_int(v[RQ_SPLIT], "split", -1, INT32_MAX, &i64) < 0)
        return -1;
    r->split = (int)i64;
    if (get_str(v[RQ_CODEC], "codec", &s, &n) < 0)
        return -1;
    if (str_eq(s, n, "raw"))
        r->codec = BF_CODEC_RAW;
    else if (str_eq(s, n, "zstd"))
        r->codec = BF_CODEC_ZSTD;
    else
        return PROTO("unknown codec \"%s\"", quote(s, n));
    if (get_str(v[RQ_DTYPE], "dtype", &s, &n) < 0)
        return -1;
    if (!str_eq(s, n, "u8"))
        return PROTO("dtype must be \"u8\"");
    if (decode_shape(v[RQ_SHAPE], r->dims) < 0 || get_float(v[RQ_MIN], "min", &r->min) < 0 ||
        get_float(v[RQ_MAX], "max", &r->max) < 0)
        return -1;
    if (!bf_range_ok(r->min, r->max))
        return PROTO("quantization range (%g, %g): need min <= max, max - min finite", r->min,
                     r->max);
    if (get_int(v[RQ_K], "k", 1, BF_TOPK_MAX, &i64) < 0)
        return -1;
    r->k = (int)i64;
    if (v[RQ_LOGITS]) {
        if (v[RQ_LOGITS]->type != MSGPACK_OBJECT_BOOLEAN)
            return PROTO("\"logits\" must be a boolean");
        r->want_logits = v[RQ_LOGITS]->via.boolean;
    }
    return decode_payload(v[RQ_PAYLOAD], r);
}

bf_status bf_wire_request_decode(bf_wire_request *req, const void *buf, size_t len)
{
    msgpack_unpacked up;
    const msgpack_object_map *map;
    const msgpack_object *v[RQ_COUNT_];
    bf_wire_request r = {0};
    bf_status st = BF_STATUS_PROTOCOL;
    msgpack_unpacked_init(&up);
    *req = r;
    st = unpack_map(&up, buf, len, &map);
    if (st != BF_STATUS_OK)
        goto fail;
    st = BF_STATUS_PROTOCOL;
    if (collect(map, rq_names, RQ_COUNT_, v) < 0)
        goto fail;
    /* the id first, so that an error reply can carry it */
    if (v[RQ_ID]) {
        if (v[RQ_ID]->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            PROTO("\"id\" must be an unsigned integer");
            goto fail;
        }
        r.id = v[RQ_ID]->via.u64;
        r.has_id = 1;
    }
    if (require(v, rq_names, RQ_REQUIRED_) < 0 || decode_request_fields(&r, v) < 0)
        goto fail;
    st = BF_STATUS_OK;
fail:
    if (st != BF_STATUS_OK)
        r.payload = NULL, r.payload_len = 0;
    *req = r;
    msgpack_unpacked_destroy(&up);
    return st;
}

size_t bf_wire_request_elems(const bf_wire_request *req)
{
    return (size_t)req->dims[0] * (size_t)req->dims[1] * (size_t)req->dims[2];
}

/* ---- replies ---------------------------------------------------------------------- */

enum { RP_ID, RP_STATUS, RP_ERROR, RP_TOPK, RP_TIMING, RP_LOGITS, RP_COUNT_ };
static const char *const rp_names[RP_COUNT_] = {"id", "status", "error", "topk", "timing",
                                                "logits"};

static int decode_topk(const msgpack_object *o, bf_wire_reply *r)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > BF_TOPK_MAX)
        return PROTO("\"topk\" must be an array of at most %d pairs", BF_TOPK_MAX);
    r->k = (int)o->via.array.size;
    for (int i = 0; i < r->k; i++) {
        const msgpack_object *p = &o->via.array.ptr[i];
        int64_t c = 0;
        if (p->type != MSGPACK_OBJECT_ARRAY || p->via.array.size != 2)
            return PROTO("\"topk\" items must be [class, prob]");
        if (get_int(&p->via.array.ptr[0], "topk class", 0, INT32_MAX, &c) < 0 ||
            get_float(&p->via.array.ptr[1], "topk prob", &r->probs[i]) < 0)
            return -1;
        r->classes[i] = (int)c;
    }
    return 0;
}

static int decode_timing(const msgpack_object *o, bf_wire_reply *r)
{
    static const char *const names[3] = {"queue_us", "compute_us", "batch"};
    const msgpack_object *v[3];
    int64_t x[3] = {0, 0, 0};
    if (o->type != MSGPACK_OBJECT_MAP)
        return PROTO("\"timing\" must be a map");
    if (collect(&o->via.map, names, 3, v) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        if (v[i] && get_int(v[i], names[i], 0, UINT32_MAX, &x[i]) < 0)
            return -1;
    r->queue_us = (uint32_t)x[0];
    r->compute_us = (uint32_t)x[1];
    r->batch = (int)(x[2] > INT32_MAX ? INT32_MAX : x[2]);
    return 0;
}

static int decode_reply_fields(bf_wire_reply *r, const msgpack_object *const *v)
{
    const char *s = NULL;
    size_t n = 0;
    if (v[RP_ID] == NULL || v[RP_STATUS] == NULL)
        return PROTO("reply without \"id\" or \"status\"");
    if (v[RP_ID]->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        r->id = v[RP_ID]->via.u64, r->has_id = 1;
    else if (v[RP_ID]->type != MSGPACK_OBJECT_NIL)
        return PROTO("\"id\" must be an unsigned integer or nil");
    if (get_str(v[RP_STATUS], "status", &s, &n) < 0)
        return -1;
    r->status = bf_wire_status_parse(s, n);
    if (r->status != BF_STATUS_OK) {
        if (!str_eq(s, n, "protocol") && r->status == BF_STATUS_PROTOCOL)
            snprintf(r->error, sizeof r->error, "unknown status \"%s\": ", quote(s, n));
        if (v[RP_ERROR] && get_str(v[RP_ERROR], "error", &s, &n) == 0) {
            size_t have = strlen(r->error);
            bf_wire_text(r->error + have, sizeof r->error - have, s, n);
        }
        return 0;
    }
    if (v[RP_TOPK] == NULL)
        return PROTO("ok reply without \"topk\"");
    if (decode_topk(v[RP_TOPK], r) < 0 || (v[RP_TIMING] && decode_timing(v[RP_TIMING], r) < 0))
        return -1;
    if (v[RP_LOGITS]) {
        if (v[RP_LOGITS]->type != MSGPACK_OBJECT_BIN || v[RP_LOGITS]->via.bin.size % 4 ||
            v[RP_LOGITS]->via.bin.size / 4 > BF_WIRE_MAX_LOGITS)
            return PROTO("\"logits\" must be bin of float32");
        r->logits = v[RP_LOGITS]->via.bin.ptr;
        r->n_logits = (int)(v[RP_LOGITS]->via.bin.size / 4);
    }
    return 0;
}

bf_status bf_wire_reply_decode(bf_wire_reply *rep, const void *buf, size_t len)
{
    msgpack_unpacked up;
    const msgpack_object_map *map;
    const msgpack_object *v[RP_COUNT_];
    bf_status st;
    memset(rep, 0, sizeof *rep);
    msgpack_unpacked_init(&up);
    st = unpack_map(&up, buf, len, &map);
    if (st != BF_STATUS_OK)
        goto fail;
    st = BF_STATUS_PROTOCOL;
    if (collect(map, rp_names, RP_COUNT_, v) < 0 || decode_reply_fields(rep, v) < 0)
        goto fail;
    st = BF_STATUS_OK;
fail:
    msgpack_unpacked_destroy(&up);
    return st;
}

/* ---- payload codecs --------------------------------------------------------------- */

bf_status bf_wire_payload_decode(const bf_wire_request *req, uint8_t *dst, size_t dst_len)
{
    if (dst_len != bf_wire_request_elems(req))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "payload buffer of the wrong size");
    if (req->codec == BF_CODEC_RAW) {
        if (req->payload_len != dst_len)
            return bf_error(BF_STATUS_PROTOCOL, "payload size does not match its shape");
        memcpy(dst, req->payload, dst_len);
        return BF_STATUS_OK;
    }
    unsigned long long want = ZSTD_getFrameContentSize(req->payload, req->payload_len);
    if (want != dst_len)
        return bf_error(BF_STATUS_PROTOCOL, "zstd frame content size %llu, shape needs %zu",
                        want, dst_len);
    size_t got = ZSTD_decompress(dst, dst_len, req->payload, req->payload_len);
    if (ZSTD_isError(got) || got != dst_len)
        return bf_error(BF_STATUS_PROTOCOL, "zstd payload: %s",
                        ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
    return BF_STATUS_OK;
}
