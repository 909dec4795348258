/* Request / reply bodies: encode with msgpack-c's packer, decode by walking the unpacked
 * map and checking every field's type, range and size against docs/PROTOCOL.md. */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "wire/wire.h"

static const char *const status_names[BF_STATUS_COUNT_] = {
    [BF_STATUS_OK] = "ok",
    [BF_STATUS_INVALID_ARGUMENT] = "invalid_argument",
    [BF_STATUS_OUT_OF_MEMORY] = "out_of_memory",
    [BF_STATUS_UNSUPPORTED] = "unsupported",
    [BF_STATUS_BAD_MODEL] = "bad_model",
    [BF_STATUS_IO] = "io",
    [BF_STATUS_BACKEND] = "backend",
    [BF_STATUS_OPENCL] = "opencl",
    [BF_STATUS_NETWORK] = "network",
    [BF_STATUS_PROTOCOL] = "protocol",
    [BF_STATUS_TIMEOUT] = "timeout",
    [BF_STATUS_INTERRUPTED] = "interrupted",
    [BF_STATUS_BUSY] = "busy",
    [BF_STATUS_REFUSED] = "refused",
    [BF_STATUS_NUMERIC] = "numeric",
};

const char *bf_wire_status_name(bf_status status)
{
    if ((unsigned)status < BF_STATUS_COUNT_ && status_names[status])
        return status_names[status];
    return "backend";
}

bf_status bf_wire_status_parse(const char *name, size_t len)
{
    for (int i = 0; i < BF_STATUS_COUNT_; i++)
        if (status_names[i] && strlen(status_names[i]) == len &&
            memcmp(status_names[i], name, len) == 0)
            return (bf_status)i;
    return BF_STATUS_PROTOCOL;
}

/* ---- packing ---------------------------------------------------------------------- */

static int pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_key(msgpack_packer *pk, const char *key) { return pack_str(pk, key); }

bf_status bf_wire_request_encode(const bf_wire_request *r, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int e = msgpack_pack_map(&pk, r->want_logits ? 12 : 11);
    e |= pack_key(&pk, "v") || msgpack_pack_int(&pk, BF_PROTOCOL_VERSION);
    e |= pack_key(&pk, "id") || msgpack_pack_uint64(&pk, r->id);
    e |= pack_key(&pk, "model") || pack_str(&pk, r->model);
    e |= pack_key(&pk, "split") || msgpack_pack_int(&pk, r->split);
    e |= pack_key(&pk, "codec") || pack_str(&pk, r->codec == BF_CODEC_ZSTD ? "zstd" : "raw");
    e |= pack_key(&pk, "shape") || msgpack_pack_array(&pk, 3);
    for (int i = 0; i < 3; i++)
        e |= msgpack_pack_int(&pk, r->dims[i]);
    e |= pack_key(&pk, "dtype") || pack_str(&pk, "u8");
    e |= pack_key(&pk, "min") || msgpack_pack_float(&pk, r->min);
    e |= pack_key(&pk, "max") || msgpack_pack_float(&pk, r->max);
    e |= pack_key(&pk, "payload") || msgpack_pack_bin(&pk, r->payload_len) ||
         msgpack_pack_bin_body(&pk, r->payload, r->payload_len);
    e |= pack_key(&pk, "k") || msgpack_pack_int(&pk, r->k);
    if (r->want_logits)
        e |= pack_key(&pk, "logits") || msgpack_pack_true(&pk);
    return e ? bf_error(BF_STATUS_OUT_OF_MEMORY, "encoding a request") : BF_STATUS_OK;
}

/* Length of the well-formed UTF-8 character at s[0..n), or 0 (RFC 3629, table 3-7 of
 * the Unicode standard: the second byte's range depends on the first). */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0x01 && c <= 0x7F)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

size_t bf_wire_text(char *dst, size_t cap, const char *src, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t len = utf8_char_len(s + i, n - i), out = len ? len : 4;
        if (o + out >= cap)
            break;
        if (len) {
            memcpy(dst + o, s + i, len);
        } else {
            dst[o] = '\\', dst[o + 1] = 'x', dst[o + 2] = hex[s[i] >> 4];
            dst[o + 3] = hex[s[i] & 15];
            len = 1;
        }
        i += len, o += out;
    }
    dst[o] = '\0';
    return i;
}

bf_status bf_wire_reply_encode(const bf_wire_reply *r, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int ok = r->status == BF_STATUS_OK;
    int n = 3 + (ok ? 2 + (r->n_logits > 0) : 1);
    int e = msgpack_pack_map(&pk, (size_t)n);
    e |= pack_key(&pk, "v") || msgpack_pack_int(&pk, BF_PROTOCOL_VERSION);
    e |= pack_key(&pk, "id") || (r->has_id ? msgpack_pack_uint64(&pk, r->id)
                                           : msgpack_pack_nil(&pk));
    e |= pack_key(&pk, "status") || pack_str(&pk, bf_wire_status_name(r->status));
    if (!ok) {
        char text[BF_WIRE_ERROR_MAX]; /* whoever filled r->error, the str is valid UTF-8 */
        bf_wire_text(text, sizeof text, r->error, strnlen(r->error, sizeof r->error));
        return (e | pack_key(&pk, "error") || pack_str(&pk, text))
                   ? bf_error(BF_STATUS_OUT_OF_MEMORY, "encoding a reply") : BF_STATUS_OK;
    }
    e |= pack_key(&pk, "topk") || msgpack_pack_array(&pk, (size_t)r->k);
    for (int i = 0; i < r->k; i++)
        e |= msgpack_pack_array(&pk, 2) || msgpack_pack_int(&pk, r->classes[i]) ||
             msgpack_pack_float(&pk, r->probs[i]);
    e |= pack_key(&pk, "timing") || msgpack_pack_map(&pk, 3);
    e |= pack_key(&pk, "queue_us") || msgpack_pack_uint32(&pk, r->queue_us);
    e |= pack_key(&pk, "compute_us") || msgpack_pack_uint32(&pk, r->compute_us);
    e |= pack_key(&pk, "batch") || msgpack_pack_int(&pk, r->batch);
    if (r->n_logits > 0)
        e |= pack_key(&pk, "logits") || msgpack_pack_bin(&pk, (size_t)r->n_logits * 4) ||
             msgpack_pack_bin_body(&pk, r->logits, (size_t)r->n_logits * 4);
    return e ? bf_error(BF_STATUS_OUT_OF_MEMORY, "encoding a reply") : BF_STATUS_OK;
}

bf_status bf_wire_reply_error_encode(msgpack_sbuffer *sb, int has_id, uint64_t id,
                                     bf_status status, const char *message)
{
    bf_wire_reply r = {0};
    r.has_id = has_id;
    r.id = id;
    r.status = status == BF_STATUS_OK ? BF_STATUS_BACKEND : status;
    if (message)
        bf_wire_text(r.error, sizeof r.error, message, strlen(message));
    return bf_wire_reply_encode(&r, sb);
}

bf_status bf_wire_payload_encode(bf_codec codec, int level, const uint8_t *src, size_t len,
                                 uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t cap = codec == BF_CODEC_ZSTD ? ZSTD_compressBound(len) : len;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (buf == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "payload buffer of %zu bytes", cap);
    if (codec == BF_CODEC_RAW) {
        memcpy(buf, src, len);
    } else if (codec == BF_CODEC_ZSTD) {
        cap = ZSTD_compress(buf, cap, src, len, level);
        if (ZSTD_isError(cap)) {
            free(buf);
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "zstd: %s", ZSTD_getErrorName(cap));
        }
    } else {
        free(buf);
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "unknown codec %d", (int)codec);
    }
    *out = buf;
    *out_len = cap;
    return BF_STATUS_OK;
}

bf_status bf_payload_encode(bf_codec codec, int level, const uint8_t *src, size_t len,
                            uint8_t **out, size_t *out_len)
{
    if ((!src && len) || !out || !out_len)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_payload_encode: NULL argument");
    return bf_wire_payload_encode(codec, level, src, len, out, out_len);
}
