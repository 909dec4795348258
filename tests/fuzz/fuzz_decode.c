/* libFuzzer harness for the wire decoders: any bytes into the request decoder (then the
 * payload codec, for what decodes) and the reply decoder.  Must never crash, leak or read
 * out of bounds; a decode that succeeds must satisfy the protocol's invariants, and the
 * error reply the pool would send for a request that fails must be valid UTF-8 msgpack
 * (a strict decoder, Python's, refuses anything else). */
#include <stdlib.h>
#include <string.h>

#include "utf8_check.h"
#include "wire/wire.h"

/* The error reply the pool sends for a request refused with st; aborts unless every str
 * in it is valid UTF-8. */
static void check_error_reply(const bf_wire_request *req, bf_status st)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (bf_wire_reply_error_encode(&sb, req->has_id, req->id, st, bf_last_error()) ==
            BF_STATUS_OK && !test_msgpack_text_valid(sb.data, sb.size))
        abort(); /* an error reply a strict msgpack decoder cannot read */
    msgpack_sbuffer_destroy(&sb);
}

#define PAYLOAD_CAP (1u << 20) /* decode payloads up to this size (keeps runs fast) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bf_wire_request req;
    bf_wire_reply rep;
    bf_status st = bf_wire_request_decode(&req, data, size);
    if (st != BF_STATUS_OK) {
        check_error_reply(&req, st);
    } else {
        size_t elems = bf_wire_request_elems(&req);
        if (req.k < 1 || req.k > BF_TOPK_MAX || req.min > req.max || elems == 0 ||
            elems > BF_WIRE_MAX_ELEMS || req.payload < data || req.payload + req.payload_len >
            data + size || (req.codec == BF_CODEC_RAW && req.payload_len != elems))
            abort(); /* the decoder let an invalid request through */
        if (elems <= PAYLOAD_CAP) {
            uint8_t *buf = malloc(elems);
            if (buf) {
                bf_status pst = bf_wire_payload_decode(&req, buf, elems);
                if (pst != BF_STATUS_OK)
                    check_error_reply(&req, pst);
                free(buf);
            }
        }
    }
    if (bf_wire_reply_decode(&rep, data, size) == BF_STATUS_OK) {
        if (rep.k < 0 || rep.k > BF_TOPK_MAX || rep.n_logits < 0 ||
            !test_utf8_valid(rep.error, strlen(rep.error)))
            abort(); /* the client hands rep.error to its caller as text */
        if (rep.logits) { /* touch every byte the reply claims */
            volatile uint8_t x = 0;
            for (int i = 0; i < rep.n_logits * 4; i++)
                x ^= ((const uint8_t *)rep.logits)[i];
            (void)x;
        }
    }
    return 0;
}
