/* The offload message codec (private): request / reply bodies as one msgpack map each, and
 * the payload codecs.  docs/PROTOCOL.md is the specification; this is its implementation.
 * Decoders never trust their input: every failure is BF_STATUS_PROTOCOL with a message. */
#ifndef BF_WIRE_H
#define BF_WIRE_H

#include <msgpack.h>

#include "butterfly.h"

#define BF_WIRE_MAX_DIM 65536           /* largest C, H or W */
#define BF_WIRE_MAX_ELEMS (64u << 20)   /* largest C*H*W: a 64 MiB feature is absurd already */
#define BF_WIRE_MAX_DEPTH 8             /* msgpack nesting accepted at all */
#define BF_WIRE_MAX_OBJECTS 1024        /* msgpack objects in a body (a request has ~30) */
#define BF_WIRE_MAX_LOGITS (1 << 20)
#define BF_WIRE_ERROR_MAX 256           /* bytes of an error message kept, with the NUL */

typedef struct bf_wire_request {
    uint64_t id;
    int has_id;              /* decode: the id was read (an error reply can carry it) */
    char model[17];          /* 16 hex digits + NUL */
    int split;
    bf_codec codec;
    int dims[3];             /* C, H, W */
    float min, max;
    const uint8_t *payload;  /* coded bytes; decode: points into the decoded buffer */
    size_t payload_len;
    int k;
    int want_logits;
} bf_wire_request;

typedef struct bf_wire_reply {
    uint64_t id;
    int has_id;              /* 0: the request's id was unknown (sent as nil) */
    bf_status status;
    char error[BF_WIRE_ERROR_MAX]; /* message when status != OK */
    int k;
    int classes[BF_TOPK_MAX];
    float probs[BF_TOPK_MAX];
    const void *logits;      /* little-endian f32; decode: points into the decoded buffer */
    int n_logits;
    uint32_t queue_us, compute_us;
    int batch;
} bf_wire_reply;

/* Wire name of a status ("ok", "busy", ...) and back (unknown names give PROTOCOL). */
const char *bf_wire_status_name(bf_status status);
bf_status bf_wire_status_parse(const char *name, size_t len);

/* Checks that buf holds exactly one msgpack object, nesting at most BF_WIRE_MAX_DEPTH, of
 * at most BF_WIRE_MAX_OBJECTS objects, and that no container declares more elements than
 * bytes remain (so unpacking allocates at most ~24 KB, whatever len). */
bf_status bf_wire_prescan(const void *buf, size_t len);

/* Encoders append one map to *sb (initialized by the caller); only memory can fail. */
bf_status bf_wire_request_encode(const bf_wire_request *req, msgpack_sbuffer *sb);
bf_status bf_wire_reply_encode(const bf_wire_reply *rep, msgpack_sbuffer *sb);
/* An error reply (status OK is sent as BACKEND) whose "error" is message, made valid UTF-8
 * and cut between characters to fit (bf_wire_text). */
bf_status bf_wire_reply_error_encode(msgpack_sbuffer *sb, int has_id, uint64_t id,
                                     bf_status status, const char *message);

/* Decoders fill *req / *rep from buf (which must outlive the pointers they set). */
bf_status bf_wire_request_decode(bf_wire_request *req, const void *buf, size_t len);
bf_status bf_wire_reply_decode(bf_wire_reply *rep, const void *buf, size_t len);

/* Copies src[0..n) into dst (cap >= 1 bytes, NUL-terminated) as valid UTF-8, for the
 * "error" text of a reply, which must be a valid msgpack str: a byte that does not begin
 * a well-formed character (RFC 3629: no overlongs, no surrogates) and a NUL are written as
 * "\xNN", and copying stops before a character or escape that would not fit whole.
 * Returns the bytes of src consumed (n when all of it fitted). */
size_t bf_wire_text(char *dst, size_t cap, const char *src, size_t n);

/* Bytes the decoded payload has (C*H*W). */
size_t bf_wire_request_elems(const bf_wire_request *req);
/* Decodes req's payload into dst, which holds exactly bf_wire_request_elems(req) bytes. */
bf_status bf_wire_payload_decode(const bf_wire_request *req, uint8_t *dst, size_t dst_len);
/* Codes src with codec into a malloc'd buffer (*out, freed by the caller). */
bf_status bf_wire_payload_encode(bf_codec codec, int level, const uint8_t *src, size_t len,
                                 uint8_t **out, size_t *out_len);

#endif /* BF_WIRE_H */
