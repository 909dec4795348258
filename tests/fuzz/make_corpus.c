/* Writes seed inputs for fuzz_decode into the directory argv[1]: valid requests (raw and
 * zstd, with and without logits), one whose codec is not UTF-8, replies (ok with logits,
 * error, nil id). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

static int save(const char *dir, const char *name, const msgpack_sbuffer *sb)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(sb->data, 1, sb->size, f) != sb->size) {
        perror(path);
        if (f)
            fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

/* The request in sb with its codec "raw" replaced by 41 bytes that are no codec: two-byte
 * characters across the 32nd byte, then bytes that are not UTF-8 at all.  The error reply
 * quotes them: it once cut a character in two, which a strict decoder refuses. */
static int save_bad_codec(const char *dir, const msgpack_sbuffer *sb)
{
    static const char raw[] = "\xa3raw";
    static const char bad[] = "\xd9\x29" "x\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                              "\xc3\xa9\xc3\xa9\xff\xed\xa0\x80";
    msgpack_sbuffer out;
    const char *at = NULL;
    for (size_t i = 0; i + 4 <= sb->size && at == NULL; i++)
        if (memcmp(sb->data + i, raw, 4) == 0)
            at = sb->data + i;
    if (at == NULL)
        return 1;
    msgpack_sbuffer_init(&out);
    msgpack_sbuffer_write(&out, sb->data, (size_t)(at - sb->data));
    msgpack_sbuffer_write(&out, bad, sizeof bad - 1);
    msgpack_sbuffer_write(&out, at + 4, sb->size - (size_t)(at - sb->data) - 4);
    int rc = save(dir, "request_codec_not_utf8", &out);
    msgpack_sbuffer_destroy(&out);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    uint8_t payload[2 * 7 * 7];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (i % 3) ? 0 : (uint8_t)(i * 5);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = 0;
    bf_wire_request r = {0};
    r.id = 1;
    memcpy(r.model, "0123456789abcdef", 17);
    r.split = 12;
    r.dims[0] = 2, r.dims[1] = 7, r.dims[2] = 7;
    r.min = -0.5f, r.max = 4.0f;
    r.payload = payload, r.payload_len = sizeof payload;
    r.k = 5;
    rc |= bf_wire_request_encode(&r, &sb) || save(argv[1], "request_raw", &sb);
    rc |= save_bad_codec(argv[1], &sb);
    msgpack_sbuffer_clear(&sb);
    r.want_logits = 1;
    rc |= bf_wire_request_encode(&r, &sb) || save(argv[1], "request_raw_logits", &sb);
    uint8_t *coded = NULL;
    size_t coded_len = 0;
    rc |= bf_wire_payload_encode(BF_CODEC_ZSTD, 3, payload, sizeof payload, &coded, &coded_len);
    r.codec = BF_CODEC_ZSTD, r.payload = coded, r.payload_len = coded_len;
    msgpack_sbuffer_clear(&sb);
    rc |= bf_wire_request_encode(&r, &sb) || save(argv[1], "request_zstd", &sb);
    free(coded);
    float logits[10] = {0.5f, -1, 2, 3, 0, 0, 1, 7, -3, 0.25f};
    bf_wire_reply rep = {0};
    rep.id = 1, rep.has_id = 1, rep.k = 2, rep.classes[0] = 7, rep.classes[1] = 3;
    rep.probs[0] = 0.9f, rep.probs[1] = 0.05f, rep.logits = logits, rep.n_logits = 10;
    rep.queue_us = 10, rep.compute_us = 300, rep.batch = 2;
    msgpack_sbuffer_clear(&sb);
    rc |= bf_wire_reply_encode(&rep, &sb) || save(argv[1], "reply_ok", &sb);
    bf_wire_reply err = {0};
    err.status = BF_STATUS_REFUSED;
    strcpy(err.error, "model 0123456789abcdef, this pool serves model fedcba9876543210");
    msgpack_sbuffer_clear(&sb);
    rc |= bf_wire_reply_encode(&err, &sb) || save(argv[1], "reply_error_nil_id", &sb);
    msgpack_sbuffer_destroy(&sb);
    return rc != 0;
}
