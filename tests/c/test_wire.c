/* Wire codec tests: round trips, and every malformed body rejected with BF_STATUS_PROTOCOL
 * (never a crash: run under ASan + UBSan too). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "../fuzz/utf8_check.h"
#include "wire/wire.h"

static int n_pass, n_fail;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK(%s) failed [%s]\n", __FILE__, __LINE__, #cond,   \
                    bf_last_error());                                                     \
            return 1;                                                                     \
        }                                                                                 \
    } while (0)

static void run(const char *name, int (*fn)(void))
{
    int rc = fn();
    printf("%-40s %s\n", name, rc ? "FAIL" : "ok");
    if (rc)
        n_fail++;
    else
        n_pass++;
}

static uint8_t g_payload[2 * 4 * 4];

static bf_wire_request sample_request(void)
{
    bf_wire_request r = {0};
    r.id = 0x123456789abcULL;
    strcpy(r.model, "0123456789abcdef");
    r.split = 7;
    r.codec = BF_CODEC_RAW;
    r.dims[0] = 2, r.dims[1] = 4, r.dims[2] = 4;
    r.min = -1.5f, r.max = 3.25f;
    for (size_t i = 0; i < sizeof g_payload; i++)
        g_payload[i] = (uint8_t)(i * 7);
    r.payload = g_payload;
    r.payload_len = sizeof g_payload;
    r.k = 5;
    return r;
}

static int test_request_roundtrip(void)
{
    bf_wire_request r = sample_request(), d;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    r.want_logits = 1;
    CHECK(bf_wire_request_encode(&r, &sb) == BF_STATUS_OK);
    CHECK(bf_wire_request_decode(&d, sb.data, sb.size) == BF_STATUS_OK);
    CHECK(d.id == r.id && d.has_id && strcmp(d.model, r.model) == 0 && d.split == 7);
    CHECK(d.codec == BF_CODEC_RAW && d.dims[0] == 2 && d.dims[1] == 4 && d.dims[2] == 4);
    CHECK(d.min == r.min && d.max == r.max && d.k == 5 && d.want_logits == 1);
    CHECK(d.payload_len == sizeof g_payload && memcmp(d.payload, g_payload, d.payload_len) == 0);
    /* the payload is borrowed from the buffer, not copied */
    CHECK((const char *)d.payload >= sb.data && (const char *)d.payload < sb.data + sb.size);
    uint8_t out[sizeof g_payload];
    CHECK(bf_wire_payload_decode(&d, out, sizeof out) == BF_STATUS_OK);
    CHECK(memcmp(out, g_payload, sizeof out) == 0);
    /* any finite float32 is a bound, FLT_MAX included; but not a range whose span
     * overflows (dequantizing computes max - min) */
    r.min = 3.0e38f, r.max = FLT_MAX;
    msgpack_sbuffer_clear(&sb);
    CHECK(bf_wire_request_encode(&r, &sb) == BF_STATUS_OK);
    CHECK(bf_wire_request_decode(&d, sb.data, sb.size) == BF_STATUS_OK);
    CHECK(d.min == 3.0e38f && d.max == FLT_MAX);
    r.min = -2.0e38f, r.max = 2.0e38f;
    msgpack_sbuffer_clear(&sb);
    CHECK(bf_wire_request_encode(&r, &sb) == BF_STATUS_OK);
    CHECK(bf_wire_request_decode(&d, sb.data, sb.size) == BF_STATUS_PROTOCOL);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static int test_zstd_roundtrip(void)
{
    bf_wire_request r = sample_request(), d;
    uint8_t big[3 * 16 * 16], out[sizeof big];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (i % 5) ? 0 : (uint8_t)i; /* ReLU-like zeros compress */
    uint8_t *coded = NULL;
    size_t coded_len = 0;
    CHECK(bf_wire_payload_encode(BF_CODEC_ZSTD, 3, big, sizeof big, &coded, &coded_len) ==
          BF_STATUS_OK);
    CHECK(coded_len < sizeof big);
    r.codec = BF_CODEC_ZSTD;
    r.dims[0] = 3, r.dims[1] = 16, r.dims[2] = 16;
    r.payload = coded;
    r.payload_len = coded_len;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CHECK(bf_wire_request_encode(&r, &sb) == BF_STATUS_OK);
    CHECK(bf_wire_request_decode(&d, sb.data, sb.size) == BF_STATUS_OK);
    CHECK(d.codec == BF_CODEC_ZSTD && d.payload_len == coded_len);
    CHECK(bf_wire_payload_decode(&d, out, sizeof out) == BF_STATUS_OK);
    CHECK(memcmp(out, big, sizeof big) == 0);
    /* a frame of the wrong content size, and garbage, are protocol errors */
    d.dims[1] = 8;
    CHECK(bf_wire_payload_decode(&d, out, sizeof out / 2) == BF_STATUS_PROTOCOL);
    d.dims[1] = 16;
    uint8_t junk[40];
    memset(junk, 0xab, sizeof junk);
    d.payload = junk;
    d.payload_len = sizeof junk;
    CHECK(bf_wire_payload_decode(&d, out, sizeof out) == BF_STATUS_PROTOCOL);
    memcpy(junk, coded, coded_len < sizeof junk ? coded_len : sizeof junk);
    d.payload_len = coded_len < sizeof junk ? coded_len / 2 : sizeof junk; /* truncated */
    CHECK(bf_wire_payload_decode(&d, out, sizeof out) == BF_STATUS_PROTOCOL);
    free(coded);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static int test_reply_roundtrip(void)
{
    bf_wire_reply r = {0}, d;
    float logits[10];
    for (int i = 0; i < 10; i++)
        logits[i] = (float)i - 4.5f;
    r.id = 42, r.has_id = 1, r.status = BF_STATUS_OK, r.k = 3;
    for (int i = 0; i < 3; i++)
        r.classes[i] = 9 - i, r.probs[i] = 0.5f / (float)(i + 1);
    r.logits = logits, r.n_logits = 10;
    r.queue_us = 12, r.compute_us = 345, r.batch = 4;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CHECK(bf_wire_reply_encode(&r, &sb) == BF_STATUS_OK);
    CHECK(bf_wire_reply_decode(&d, sb.data, sb.size) == BF_STATUS_OK);
    CHECK(d.id == 42 && d.has_id && d.status == BF_STATUS_OK && d.k == 3);
    CHECK(d.classes[2] == 7 && d.probs[1] == 0.25f && d.n_logits == 10);
    CHECK(d.queue_us == 12 && d.compute_us == 345 && d.batch == 4);
    float back[10];
    memcpy(back, d.logits, sizeof back);
    CHECK(memcmp(back, logits, sizeof back) == 0);
    /* error reply without an id */
    msgpack_sbuffer_clear(&sb);
    bf_wire_reply e = {0};
    e.status = BF_STATUS_BUSY;
    strcpy(e.error, "queue full");
    CHECK(bf_wire_reply_encode(&e, &sb) == BF_STATUS_OK);
    CHECK(bf_wire_reply_decode(&d, sb.data, sb.size) == BF_STATUS_OK);
    CHECK(!d.has_id && d.status == BF_STATUS_BUSY && strcmp(d.error, "queue full") == 0);
    msgpack_sbuffer_destroy(&sb);
    for (int s = 0; s < BF_STATUS_COUNT_; s++) {
        const char *n = bf_wire_status_name((bf_status)s);
        CHECK(bf_wire_status_parse(n, strlen(n)) == (bf_status)s);
    }
    return 0;
}

/* ---- malformed requests ------------------------------------------------------------ */

typedef void (*value_fn)(msgpack_packer *pk);

static void pack_s(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* Packs the sample request, leaving out key `drop`, and packing `key`'s value with fn
 * (`key` may be new, or repeated when dup is set). */
static void pack_custom(msgpack_sbuffer *sb, const char *drop, const char *key, value_fn fn,
                        int dup)
{
    static const char *keys[] = {"v", "id", "model", "split", "codec", "shape",
                                 "dtype", "min", "max", "payload", "k"};
    int n = 11, extra = 1;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    for (int i = 0; i < 11; i++)
        if (key && strcmp(keys[i], key) == 0 && !dup)
            extra = 0;
    msgpack_pack_map(&pk, (size_t)(n - (drop != NULL) + (key ? extra : 0)));
    for (int i = 0; i < 11; i++) {
        const char *k = keys[i];
        if (drop && strcmp(drop, k) == 0)
            continue;
        pack_s(&pk, k);
        if (key && strcmp(key, k) == 0 && !dup) {
            fn(&pk);
            continue;
        }
        switch (i) {
        case 0: msgpack_pack_int(&pk, 1); break;
        case 1: msgpack_pack_uint64(&pk, 99); break;
        case 2: pack_s(&pk, "0123456789abcdef"); break;
        case 3: msgpack_pack_int(&pk, 3); break;
        case 4: pack_s(&pk, "raw"); break;
        case 5: msgpack_pack_array(&pk, 3); msgpack_pack_int(&pk, 2);
                msgpack_pack_int(&pk, 4); msgpack_pack_int(&pk, 4); break;
        case 6: pack_s(&pk, "u8"); break;
        case 7: msgpack_pack_float(&pk, 0.0f); break;
        case 8: msgpack_pack_float(&pk, 1.0f); break;
        case 9: msgpack_pack_bin(&pk, 32); msgpack_pack_bin_body(&pk, g_payload, 32); break;
        case 10: msgpack_pack_int(&pk, 3); break;
        }
    }
    if (key && extra) {
        pack_s(&pk, key);
        fn(&pk);
    }
}

static void v_str(msgpack_packer *pk) { pack_s(pk, "hello"); }
static void v_int(msgpack_packer *pk) { msgpack_pack_int(pk, 1); }
static void v_neg(msgpack_packer *pk) { msgpack_pack_int(pk, -5); }
static void v_two(msgpack_packer *pk) { msgpack_pack_int(pk, 2); }
static void v_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void v_big(msgpack_packer *pk) { msgpack_pack_int(pk, 1000); }
static void v_nan(msgpack_packer *pk) { msgpack_pack_double(pk, NAN); }
static void v_inf(msgpack_packer *pk) { msgpack_pack_double(pk, INFINITY); }
static void v_huge(msgpack_packer *pk) { msgpack_pack_double(pk, 1e300); }
static void v_minus(msgpack_packer *pk) { msgpack_pack_float(pk, -2.0f); }
static void v_zstd(msgpack_packer *pk) { pack_s(pk, "zstd"); }
static void v_jpeg(msgpack_packer *pk) { pack_s(pk, "jpeg"); }
static void v_f32(msgpack_packer *pk) { pack_s(pk, "f32"); }
static void v_model_short(msgpack_packer *pk) { pack_s(pk, "abc"); }
static void v_model_upper(msgpack_packer *pk) { pack_s(pk, "0123456789ABCDEF"); }
static void v_shape2(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2), msgpack_pack_int(pk, 2), msgpack_pack_int(pk, 16);
}
static void v_shape0(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3), msgpack_pack_int(pk, 0), msgpack_pack_int(pk, 4),
        msgpack_pack_int(pk, 4);
}
static void v_shape_abs(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3), msgpack_pack_int(pk, 65536), msgpack_pack_int(pk, 65536),
        msgpack_pack_int(pk, 65536);
}
static void v_shape_mismatch(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3), msgpack_pack_int(pk, 3), msgpack_pack_int(pk, 4),
        msgpack_pack_int(pk, 4);
}
static void v_shape_strs(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3), pack_s(pk, "a"), pack_s(pk, "b"), pack_s(pk, "c");
}
static void v_payload_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 32);
    for (int i = 0; i < 32; i++)
        msgpack_pack_int(pk, i);
}
static void v_payload_short(msgpack_packer *pk)
{
    msgpack_pack_bin(pk, 31), msgpack_pack_bin_body(pk, g_payload, 31);
}
static void v_payload_str(msgpack_packer *pk) { pack_s(pk, "0123456789abcdef0123456789abcdef"); }

static int expect_protocol(const char *drop, const char *key, value_fn fn, int dup)
{
    msgpack_sbuffer sb;
    bf_wire_request d;
    msgpack_sbuffer_init(&sb);
    pack_custom(&sb, drop, key, fn, dup);
    bf_status st = bf_wire_request_decode(&d, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (st != BF_STATUS_PROTOCOL || bf_last_error()[0] == '\0') {
        fprintf(stderr, "  drop=%s key=%s dup=%d: status %s\n", drop ? drop : "-",
                key ? key : "-", dup, bf_status_str(st));
        return 1;
    }
    return 0;
}

static int test_malformed_fields(void)
{
    /* the unmodified builder decodes, so each case below fails for its own reason */
    msgpack_sbuffer sb;
    bf_wire_request d;
    msgpack_sbuffer_init(&sb);
    pack_custom(&sb, NULL, "extra_key_ignored", v_str, 0);
    CHECK(bf_wire_request_decode(&d, sb.data, sb.size) == BF_STATUS_OK && d.id == 99);
    msgpack_sbuffer_destroy(&sb);

    static const char *required[] = {"v", "id", "model", "split", "codec", "shape",
                                     "dtype", "min", "max", "payload", "k"};
    for (int i = 0; i < 11; i++)
        CHECK(expect_protocol(required[i], NULL, NULL, 0) == 0);
    struct { const char *key; value_fn fn; int dup; } cases[] = {
        {"v", v_two, 0}, {"v", v_str, 0}, {"v", v_nil, 0}, {"id", v_neg, 0},
        {"id", v_str, 0}, {"model", v_int, 0}, {"model", v_model_short, 0},
        {"model", v_model_upper, 0}, {"split", v_str, 0}, {"split", v_neg, 0},
        {"codec", v_jpeg, 0}, {"codec", v_int, 0}, {"codec", v_zstd, 0},
        {"shape", v_shape2, 0}, {"shape", v_shape0, 0}, {"shape", v_shape_abs, 0},
        {"shape", v_shape_mismatch, 0}, {"shape", v_shape_strs, 0}, {"shape", v_int, 0},
        {"dtype", v_f32, 0}, {"min", v_nan, 0}, {"min", v_inf, 0}, {"min", v_str, 0},
        {"max", v_minus, 0}, {"max", v_huge, 0}, {"payload", v_payload_array, 0},
        {"payload", v_payload_short, 0}, {"payload", v_payload_str, 0}, {"k", v_big, 0},
        {"k", v_neg, 0}, {"k", v_nil, 0}, {"logits", v_int, 0}, {"k", v_int, 1},
        {"id", v_int, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(expect_protocol(NULL, cases[i].key, cases[i].fn, cases[i].dup) == 0);
    return 0;
}

static int test_malformed_bytes(void)
{
    bf_wire_request d;
    bf_wire_reply rp;
    CHECK(bf_wire_request_decode(&d, NULL, 0) == BF_STATUS_PROTOCOL);
    CHECK(bf_wire_request_decode(&d, "", 0) == BF_STATUS_PROTOCOL);
    /* not a map; map32 declaring 2^32-1 entries; bin32 declaring 4 GB; deep nesting;
     * the never-used byte 0xc1; trailing bytes */
    static const uint8_t not_map[] = {0x93, 1, 2, 3};
    static const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 1};
    static const uint8_t huge_arr[] = {0x81, 0xa1, 'v', 0xdd, 0xff, 0xff, 0xff, 0xff, 0};
    static const uint8_t huge_bin[] = {0x81, 0xa1, 'x', 0xc6, 0xff, 0xff, 0xff, 0xff, 0};
    static const uint8_t unused[] = {0x81, 0xa1, 'v', 0xc1};
    static const uint8_t trailing[] = {0x81, 0xa1, 'v', 0x01, 0x00};
    uint8_t deep[64];
    deep[0] = 0x81, deep[1] = 0xa1, deep[2] = 'x';
    for (int i = 3; i < 63; i++)
        deep[i] = 0x91; /* [[[[...]]]] */
    deep[63] = 0x01;
    struct { const void *p; size_t n; } bad[] = {
        {not_map, sizeof not_map}, {huge_map, sizeof huge_map}, {huge_arr, sizeof huge_arr},
        {huge_bin, sizeof huge_bin}, {unused, sizeof unused}, {trailing, sizeof trailing},
        {deep, sizeof deep},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(bf_wire_request_decode(&d, bad[i].p, bad[i].n) == BF_STATUS_PROTOCOL);
        CHECK(bf_wire_reply_decode(&rp, bad[i].p, bad[i].n) == BF_STATUS_PROTOCOL);
    }
    /* "v" twice (repeated keys are errors, the version's too) */
    static const uint8_t two_v[] = {0x82, 0xa1, 'v', 1, 0xa1, 'v', 1};
    CHECK(bf_wire_request_decode(&d, two_v, sizeof two_v) == BF_STATUS_PROTOCOL);
    CHECK(strstr(bf_last_error(), "repeated") != NULL);
    /* a body of many small objects (unpacked, each would cost 24 bytes): refused over
     * BF_WIRE_MAX_OBJECTS, whatever the body's size; a valid request with an unknown key
     * of a few hundred still decodes */
    bf_wire_request r = sample_request();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int n_nils = 400; n_nils <= 4000; n_nils += 3600) {
        msgpack_packer pk;
        msgpack_sbuffer_clear(&sb);
        CHECK(bf_wire_request_encode(&r, &sb) == BF_STATUS_OK);
        /* the encoder wrote a fixmap: one more key, "pad": [nil x n_nils] */
        CHECK((((uint8_t *)sb.data)[0] & 0xf0) == 0x80 && (((uint8_t *)sb.data)[0] & 0x0f) < 15);
        ((uint8_t *)sb.data)[0]++;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_str_with_body(&pk, "pad", 3);
        msgpack_pack_array(&pk, (size_t)n_nils);
        for (int i = 0; i < n_nils; i++)
            msgpack_pack_nil(&pk);
        bf_status st = bf_wire_request_decode(&d, sb.data, sb.size);
        if (n_nils < BF_WIRE_MAX_OBJECTS)
            CHECK(st == BF_STATUS_OK && d.id == r.id);
        else
            CHECK(st == BF_STATUS_PROTOCOL && strstr(bf_last_error(), "objects") != NULL);
    }
    /* every truncation of a valid request */
    msgpack_sbuffer_clear(&sb);
    CHECK(bf_wire_request_encode(&r, &sb) == BF_STATUS_OK);
    for (size_t n = 0; n < sb.size; n++)
        CHECK(bf_wire_request_decode(&d, sb.data, n) == BF_STATUS_PROTOCOL);
    /* random bytes, and random single-byte corruptions of a valid request */
    uint8_t buf[256];
    srand(1234);
    for (int it = 0; it < 20000; it++) {
        size_t n = (size_t)(rand() % (int)sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand();
        CHECK(bf_wire_request_decode(&d, buf, n) != BF_STATUS_OK);
        CHECK(bf_wire_reply_decode(&rp, buf, n) != BF_STATUS_OK || rp.k <= BF_TOPK_MAX);
    }
    uint8_t *copy = malloc(sb.size);
    CHECK(copy);
    for (int it = 0; it < 20000; it++) {
        memcpy(copy, sb.data, sb.size);
        copy[rand() % (int)sb.size] = (uint8_t)rand();
        bf_status st = bf_wire_request_decode(&d, copy, sb.size);
        CHECK(st == BF_STATUS_OK || st == BF_STATUS_PROTOCOL);
        if (st == BF_STATUS_OK)
            CHECK(d.payload_len == bf_wire_request_elems(&d));
    }
    free(copy);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

/* Error texts are valid UTF-8 (a reply's "error" is a msgpack str; Python's decoder is
 * strict): the decoder quoted 32 bytes of the client's codec, cutting a character. */
static int test_error_text_utf8(void)
{
    char out[64];
    /* kept: ASCII, 2-, 3- and 4-byte characters */
    CHECK(bf_wire_text(out, sizeof out, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10) == 10);
    CHECK(strcmp(out, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80") == 0);
    /* escaped: stray continuation, overlong, surrogate, over U+10FFFF, cut sequence, NUL */
    CHECK(bf_wire_text(out, sizeof out, "\x80\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82", 12) == 12);
    CHECK(strcmp(out, "\\x80\\xc0\\xaf\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\\xe2\\x82") == 0);
    CHECK(bf_wire_text(out, sizeof out, "a\0b", 3) == 3 && strcmp(out, "a\\x00b") == 0);
    /* cut between characters, never inside one or inside an escape */
    CHECK(bf_wire_text(out, 3, "a\xc3\xa9", 3) == 1 && strcmp(out, "a") == 0);
    CHECK(bf_wire_text(out, 5, "ab\xff", 3) == 2 && strcmp(out, "ab") == 0);
    CHECK(test_utf8_valid(out, strlen(out)));

    /* a request whose codec is 18 two-byte characters (one across byte 32) and bad bytes */
    char codec[64] = "x";
    for (int i = 0; i < 18; i++)
        strcat(codec, "\xc3\xa9");
    strcat(codec, "\xff\xed\xa0\x80");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bf_wire_request r = sample_request(), d;
    CHECK(bf_wire_request_encode(&r, &sb) == BF_STATUS_OK);
    char *at = NULL;
    for (size_t i = 0; i + 4 <= sb.size && at == NULL; i++)
        at = memcmp(sb.data + i, "\xa3raw", 4) == 0 ? sb.data + i : NULL;
    CHECK(at != NULL);
    size_t head = (size_t)(at - sb.data), tail = sb.size - head - 4;
    char *body = malloc(sb.size + 64);
    CHECK(body != NULL);
    memcpy(body, sb.data, head);
    body[head] = (char)0xd9, body[head + 1] = (char)strlen(codec);
    memcpy(body + head + 2, codec, strlen(codec));
    memcpy(body + head + 2 + strlen(codec), at + 4, tail);
    size_t len = head + 2 + strlen(codec) + tail;
    CHECK(bf_wire_request_decode(&d, body, len) == BF_STATUS_PROTOCOL);
    CHECK(strstr(bf_last_error(), "unknown codec") && d.has_id);
    msgpack_sbuffer_clear(&sb);
    CHECK(bf_wire_reply_error_encode(&sb, d.has_id, d.id, BF_STATUS_PROTOCOL, bf_last_error()) ==
          BF_STATUS_OK);
    CHECK(test_msgpack_text_valid(sb.data, sb.size));
    bf_wire_reply rep;
    CHECK(bf_wire_reply_decode(&rep, sb.data, sb.size) == BF_STATUS_OK);
    CHECK(strstr(rep.error, "x\xc3\xa9\xc3\xa9") && strstr(rep.error, "..."));
    free(body);

    /* a reply from elsewhere with a bad error text and unknown status: decoded as text */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 4);
    pack_s(&pk, "v"), msgpack_pack_int(&pk, 1);
    pack_s(&pk, "id"), msgpack_pack_nil(&pk);
    pack_s(&pk, "status"), msgpack_pack_str(&pk, 3), msgpack_pack_str_body(&pk, "\xffzz", 3);
    pack_s(&pk, "error"), msgpack_pack_str(&pk, 4), msgpack_pack_str_body(&pk, "e\xc3\xa9\xc3", 4);
    CHECK(bf_wire_reply_decode(&rep, sb.data, sb.size) == BF_STATUS_OK);
    CHECK(rep.status == BF_STATUS_PROTOCOL && test_utf8_valid(rep.error, strlen(rep.error)));
    CHECK(strstr(rep.error, "e\xc3\xa9\\xc3") != NULL);
    /* an error text filled in by a caller, cut anywhere: still sent as valid UTF-8 */
    bf_wire_reply e = {0};
    e.status = BF_STATUS_BACKEND;
    memset(e.error, 'a', sizeof e.error - 2);
    e.error[sizeof e.error - 2] = (char)0xc3; /* the first byte of a character cut off */
    msgpack_sbuffer_clear(&sb);
    CHECK(bf_wire_reply_encode(&e, &sb) == BF_STATUS_OK && test_msgpack_text_valid(sb.data, sb.size));
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

int main(void)
{
    run("request round trip", test_request_roundtrip);
    run("zstd payload round trip", test_zstd_roundtrip);
    run("reply round trip", test_reply_roundtrip);
    run("malformed fields rejected", test_malformed_fields);
    run("malformed bytes rejected", test_malformed_bytes);
    run("error texts are valid UTF-8", test_error_text_utf8);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
