/* C-level tests of the public header: model description, plans, the four parts, errors.
 * Run plain and under ASan + UBSan by `make test`. */
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "butterfly.h"

static int passed, failed;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    bf_last_error());                                                      \
        }                                                                                  \
    } while (0)

static void key(msgpack_packer *pk, const char *k) { msgpack_pack_str_with_body(pk, k, strlen(k)); }

static void pair(msgpack_packer *pk, const char *k, int a, int b)
{
    key(pk, k);
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, a);
    msgpack_pack_int(pk, b);
}

/* layer: type, part, input, extra (conv out channels or 0) */
static void layer(msgpack_packer *pk, const char *type, const char *part, int input, int out_c)
{
    msgpack_pack_map(pk, out_c ? 7 : (input < 0 ? 3 : 3));
    key(pk, "type");
    key(pk, type);
    key(pk, "part");
    key(pk, part);
    if (input < 0) {
        key(pk, "shape");
        msgpack_pack_array(pk, 3);
        msgpack_pack_int(pk, 3);
        msgpack_pack_int(pk, 9);
        msgpack_pack_int(pk, 8);
        return;
    }
    key(pk, "inputs");
    msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, input);
    if (out_c) {
        key(pk, "out_channels");
        msgpack_pack_int(pk, out_c);
        pair(pk, "kernel", 3, 3);
        pair(pk, "stride", 2, 2);
        pair(pk, "pad", 1, 1);
    }
}

static void param(msgpack_packer *pk, const char *name, int n, const int *dims, float seed)
{
    size_t count = 1;
    float *d;
    for (int i = 0; i < n; i++)
        count *= (size_t)dims[i];
    d = malloc(count * sizeof *d);
    for (size_t i = 0; i < count; i++)
        d[i] = sinf(seed + 0.37f * (float)i);
    msgpack_pack_map(pk, 3);
    key(pk, "name");
    key(pk, name);
    key(pk, "shape");
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++)
        msgpack_pack_int(pk, dims[i]);
    key(pk, "data");
    msgpack_pack_bin_with_body(pk, d, count * sizeof *d);
    free(d);
}

/* input(3x9x8) -conv(4)-relu | quantize || dequantize | conv(6) - gap - linear(5) */
static void make_model(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    int w1[4] = {4, 3, 3, 3}, w2[4] = {6, 4, 3, 3}, wl[2] = {5, 6}, bl[1] = {5};
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    key(&pk, "format");
    key(&pk, "butterfly-model");
    key(&pk, "version");
    msgpack_pack_int(&pk, BF_MODEL_FORMAT_VERSION);
    key(&pk, "layers");
    msgpack_pack_array(&pk, 8);
    layer(&pk, "input", "head", -1, 0);
    layer(&pk, "conv", "head", 0, 4);
    layer(&pk, "relu", "head", 1, 0);
    layer(&pk, "quantize", "reduce", 2, 0);
    layer(&pk, "dequantize", "restore", 3, 0);
    layer(&pk, "conv", "tail", 4, 6);
    layer(&pk, "global_avgpool", "tail", 5, 0);
    msgpack_pack_map(&pk, 5);
    key(&pk, "type");
    key(&pk, "linear");
    key(&pk, "part");
    key(&pk, "tail");
    key(&pk, "inputs");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, 6);
    key(&pk, "out_channels");
    msgpack_pack_int(&pk, 5);
    key(&pk, "bias");
    msgpack_pack_true(&pk);
    key(&pk, "params");
    msgpack_pack_array(&pk, 8);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 1);
    param(&pk, "weight", 4, w1, 0.1f);
    for (int i = 0; i < 3; i++)
        msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 1);
    param(&pk, "weight", 4, w2, 0.7f);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 2);
    param(&pk, "weight", 2, wl, 1.3f);
    param(&pk, "bias", 1, bl, 2.1f);
}

static bf_plan *plan(bf_model *m, bf_part a, bf_part b, int batch)
{
    bf_plan *p = NULL;
    bf_plan_params pp = bf_plan_default_params();
    pp.part_begin = a;
    pp.part_end = b;
    pp.batch = batch;
    CHECK(bf_plan_create(&p, m, &pp) == BF_STATUS_OK);
    return p;
}

static void test_split_composes(bf_model *m)
{
    enum { N = 3 };
    float x[N * 3 * 9 * 8], feat[N * 4 * 5 * 4], back[N * 4 * 5 * 4], y1[N * 5], y2[N * 5];
    float range[2 * N], range2[2 * N];
    uint8_t q[N * 4 * 5 * 4];
    bf_plan *full = plan(m, BF_PART_HEAD, BF_PART_TAIL, N), *head = plan(m, BF_PART_HEAD, BF_PART_HEAD, N);
    bf_plan *red = plan(m, BF_PART_REDUCE, BF_PART_REDUCE, N), *res = plan(m, BF_PART_RESTORE, BF_PART_RESTORE, N);
    bf_plan *tail = plan(m, BF_PART_TAIL, BF_PART_TAIL, N), *mob = plan(m, BF_PART_HEAD, BF_PART_REDUCE, N);
    bf_io_desc io;
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = cosf(0.11f * (float)i);
    CHECK(bf_plan_io(full, 1, &io) == BF_STATUS_OK && io.dims[1] == 5 && io.dtype == BF_F32);
    CHECK(bf_plan_io(red, 1, &io) == BF_STATUS_OK && io.quantized && io.dims[1] == 4 &&
          io.dims[2] == 5 && io.dims[3] == 4);
    CHECK(bf_plan_forward(full, x, NULL, y1, NULL) == BF_STATUS_OK);
    CHECK(bf_plan_forward(head, x, NULL, feat, NULL) == BF_STATUS_OK);
    CHECK(bf_plan_forward(red, feat, NULL, q, range) == BF_STATUS_OK);
    CHECK(range[0] == 0.0f && range[1] > 0.0f); /* after a ReLU */
    CHECK(bf_plan_forward(res, q, range, back, NULL) == BF_STATUS_OK);
    CHECK(bf_plan_forward(tail, back, NULL, y2, NULL) == BF_STATUS_OK);
    CHECK(memcmp(y1, y2, sizeof y1) == 0);
    memset(q, 0, sizeof q);
    CHECK(bf_plan_forward(mob, x, NULL, q, range2) == BF_STATUS_OK);
    CHECK(memcmp(range, range2, sizeof range) == 0);
    /* bad calls */
    CHECK(bf_plan_forward(res, q, NULL, back, NULL) == BF_STATUS_INVALID_ARGUMENT);
    range2[0] = NAN;
    CHECK(bf_plan_forward(res, q, range2, back, NULL) == BF_STATUS_INVALID_ARGUMENT);
    x[5] = NAN;
    CHECK(bf_plan_forward(full, x, NULL, y1, NULL) == BF_STATUS_NUMERIC);
    CHECK(strstr(bf_last_error(), "NaN") != NULL);
    CHECK(bf_plan_forward(red, feat, NULL, q, NULL) == BF_STATUS_INVALID_ARGUMENT);
    bf_plan_destroy(full);
    bf_plan_destroy(head);
    bf_plan_destroy(red);
    bf_plan_destroy(res);
    bf_plan_destroy(tail);
    bf_plan_destroy(mob);
}

static void test_profile(bf_model *m)
{
    enum { N = 2 };
    float x[N * 3 * 9 * 8];
    bf_layer_time rows[16];
    int n = -1, n0 = -1;
    double total = 0;
    bf_plan *full = plan(m, BF_PART_HEAD, BF_PART_TAIL, N);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = sinf(0.3f * (float)i);
    CHECK(bf_plan_profile(full, x, NULL, 3, NULL, 0, &n0) == BF_STATUS_OK && n0 == 7);
    CHECK(bf_plan_profile(full, x, NULL, 3, rows, 16, &n) == BF_STATUS_OK && n == 7);
    for (int i = 0; i < n && i < 16; i++) {
        bf_layer_info info;
        bf_model_layer_info(m, rows[i].layer, &info);
        CHECK(rows[i].layer == i + 1 && rows[i].ms_median >= 0 && rows[i].macs == info.macs);
        total += rows[i].ms_median;
    }
    CHECK(total > 0);
    /* conv (its kernel), relu (fused into it), quantize, dequantize (the core's own) */
    CHECK(rows[0].kernel[0] != '\0' && strcmp(rows[0].kernel, "butterfly") != 0);
    CHECK(rows[1].kernel[0] == '\0');
    CHECK(strcmp(rows[2].kernel, "butterfly") == 0 && strcmp(rows[3].kernel, "butterfly") == 0);
    CHECK(bf_plan_profile(full, x, NULL, 0, rows, 16, &n) == BF_STATUS_INVALID_ARGUMENT);
    x[0] = NAN;
    CHECK(bf_plan_profile(full, x, NULL, 3, rows, 16, &n) == BF_STATUS_NUMERIC);
    bf_plan_destroy(full);
}

static void test_bad_descriptions(const msgpack_sbuffer *sb)
{
    bf_model *m = NULL;
    char junk[256];
    for (size_t cut = 0; cut < sb->size; cut += sb->size / 37 + 1) {
        CHECK(bf_model_load_buffer(&m, sb->data, cut, BF_LOAD_ALL) == BF_STATUS_BAD_MODEL);
        CHECK(m == NULL);
    }
    srand(7);
    for (int t = 0; t < 50; t++) {
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (char)(rand() & 0xff);
        CHECK(bf_model_load_buffer(&m, junk, sizeof junk, BF_LOAD_ALL) != BF_STATUS_OK);
    }
    CHECK(bf_model_load_file(&m, "/nonexistent/model.bfly", BF_LOAD_ALL) == BF_STATUS_IO);
    CHECK(bf_model_load_buffer(NULL, sb->data, sb->size, BF_LOAD_ALL) == BF_STATUS_INVALID_ARGUMENT);
}

static void test_roundtrip_and_halves(bf_model *m)
{
    void *buf = NULL;
    size_t len = 0;
    bf_model *m2 = NULL, *mob = NULL, *cloud = NULL;
    char h1[17], h2[17], h3[17];
    bf_plan *p = NULL;
    bf_plan_params pp = bf_plan_default_params();
    CHECK(bf_model_save_buffer(m, &buf, &len) == BF_STATUS_OK);
    CHECK(bf_model_load_buffer(&m2, buf, len, BF_LOAD_ALL) == BF_STATUS_OK);
    CHECK(bf_model_load_buffer(&mob, buf, len, BF_LOAD_MOBILE) == BF_STATUS_OK);
    CHECK(bf_model_load_buffer(&cloud, buf, len, BF_LOAD_CLOUD) == BF_STATUS_OK);
    bf_model_hash(m, h1);
    bf_model_hash(mob, h2);
    bf_model_hash(cloud, h3);
    CHECK(strcmp(h1, h2) == 0 && strcmp(h1, h3) == 0 && strlen(h1) == 16);
    CHECK(bf_model_num_layers(m2) == 8);
    CHECK(bf_model_layer(m2, 5)->type == BF_LAYER_CONV && bf_model_layer(m2, 5)->out_channels == 6);
    pp.part_end = BF_PART_TAIL;
    CHECK(bf_plan_create(&p, mob, &pp) == BF_STATUS_INVALID_ARGUMENT && p == NULL);
    pp.part_begin = BF_PART_TAIL;
    pp.part_end = BF_PART_HEAD;
    CHECK(bf_plan_create(&p, m, &pp) == BF_STATUS_INVALID_ARGUMENT);
    pp = bf_plan_default_params();
    pp.batch = 0;
    CHECK(bf_plan_create(&p, m, &pp) == BF_STATUS_INVALID_ARGUMENT);
    free(buf);
    bf_model_destroy(m2);
    bf_model_destroy(mob);
    bf_model_destroy(cloud);
    bf_model_destroy(NULL);
    bf_plan_destroy(NULL);
}

/* One layer spec parsed from msgpack: {"type": type, "inputs": [0..n_in), extra int pairs}. */
static bf_status parse_spec(bf_layer_spec *s, const char *type, int n_in, int out_c, int k,
                            int stride, int index)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    bf_status st;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, out_c ? 6 : 2);
    key(&pk, "type");
    key(&pk, type);
    key(&pk, "inputs");
    msgpack_pack_array(&pk, (size_t)n_in);
    for (int i = 0; i < n_in; i++)
        msgpack_pack_int(&pk, i);
    if (out_c) {
        key(&pk, "out_channels");
        msgpack_pack_int(&pk, out_c);
        pair(&pk, "kernel", k, k);
        pair(&pk, "stride", stride, stride);
        pair(&pk, "pad", k / 2, k / 2);
    }
    st = bf_layer_spec_parse(s, sb.data, sb.size, index);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

/* The table of layer types through the public calls: every type has a name that parses
 * back to it, and shape inference gives the shapes and parameters of each family. */
static void test_layer_infer(void)
{
    const int x[2][3] = {{3, 9, 8}, {3, 9, 8}}, other[2][3] = {{3, 9, 8}, {3, 4, 4}};
    bf_layer_spec s;
    bf_layer_info info;
    bf_param_view pv[BF_MAX_PARAMS];
    int n = -1;
    for (int t = 0; t < BF_LAYER_TYPE_COUNT_; t++) {
        const char *name = bf_layer_type_str((bf_layer_type)t);
        CHECK(strcmp(name, "?") != 0);
        bf_status st = parse_spec(&s, name, 0, 0, 0, 0, 5);
        if (t == BF_LAYER_INPUT) /* which also needs its shape */
            CHECK(st == BF_STATUS_BAD_MODEL && strstr(bf_last_error(), "shape"));
        else if (t == BF_LAYER_CLIP || t == BF_LAYER_HARDSIGMOID || t == BF_LAYER_LEAKY_RELU)
            CHECK(st == BF_STATUS_BAD_MODEL && strstr(bf_last_error(), "needs 'alpha'"));
        else
            CHECK(st == BF_STATUS_OK && (int)s.type == t);
    }
    CHECK(strcmp(bf_layer_type_str(BF_LAYER_TYPE_COUNT_), "?") == 0);
    CHECK(parse_spec(&s, "conv", 1, 4, 3, 2, 1) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 1, x, &info, pv, &n) == BF_STATUS_OK && n == 1);
    CHECK(info.out_dims[0] == 4 && info.out_dims[1] == 5 && info.out_dims[2] == 4);
    CHECK(info.macs == 4 * 5 * 4 * 3 * 9 && info.n_params == 4 * 3 * 9);
    CHECK(!strcmp(pv[0].name, "weight") && pv[0].ndims == 4 && pv[0].dims[0] == 4 &&
          pv[0].dims[1] == 3 && pv[0].dims[2] == 3 && pv[0].dims[3] == 3 && !pv[0].data);
    CHECK(parse_spec(&s, "deconv", 1, 2, 3, 2, 1) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 1, x, &info, pv, &n) == BF_STATUS_OK && n == 1);
    CHECK(info.out_dims[0] == 2 && info.out_dims[1] == 17 && info.out_dims[2] == 15);
    CHECK(parse_spec(&s, "batchnorm", 1, 0, 0, 0, 1) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 1, x, &info, pv, &n) == BF_STATUS_OK && n == 4);
    CHECK(!strcmp(pv[3].name, "running_var") && pv[3].ndims == 1 && pv[3].dims[0] == 3);
    CHECK(parse_spec(&s, "linear", 1, 7, 1, 1, 1) == BF_STATUS_OK);
    s.has_bias = 1;
    CHECK(bf_layer_infer(&s, 1, x, &info, pv, &n) == BF_STATUS_OK && n == 2);
    CHECK(pv[0].dims[0] == 7 && pv[0].dims[1] == 3 * 9 * 8 && !strcmp(pv[1].name, "bias"));
    CHECK(info.out_dims[0] == 7 && info.out_dims[1] == 1 && info.out_dims[2] == 1);
    CHECK(parse_spec(&s, "global_avgpool", 1, 0, 0, 0, 1) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 1, x, &info, pv, &n) == BF_STATUS_OK && n == 0 &&
          info.out_dims[1] == 1 && info.out_dims[2] == 1);
    CHECK(parse_spec(&s, "quantize", 1, 0, 0, 0, 1) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 1, x, &info, pv, &n) == BF_STATUS_OK && info.out_bytes == 3 * 9 * 8);
    CHECK(parse_spec(&s, "add", 2, 0, 0, 0, 2) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 2, x, &info, pv, &n) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 2, other, &info, pv, &n) == BF_STATUS_BAD_MODEL);
    CHECK(strstr(bf_last_error(), "different shapes") != NULL);
    CHECK(parse_spec(&s, "relu", 2, 0, 0, 0, 2) == BF_STATUS_OK);
    CHECK(bf_layer_infer(&s, 2, x, &info, pv, &n) == BF_STATUS_BAD_MODEL);
    CHECK(parse_spec(&s, "relu", 1, 0, 0, 0, 0) == BF_STATUS_BAD_MODEL); /* input 0 of layer 0 */
    CHECK(parse_spec(&s, "no_such_type", 1, 0, 0, 0, 1) == BF_STATUS_BAD_MODEL);
    CHECK(bf_layer_spec_parse(&s, "\xc1", 1, 1) == BF_STATUS_BAD_MODEL);
}

/* A linear layer of out_c outputs (with bias) reading layer `input`. */
static void linear(msgpack_packer *pk, const char *part, int input, int out_c)
{
    msgpack_pack_map(pk, 5);
    key(pk, "type");
    key(pk, "linear");
    key(pk, "part");
    key(pk, part);
    key(pk, "inputs");
    msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, input);
    key(pk, "out_channels");
    msgpack_pack_int(pk, out_c);
    key(pk, "bias");
    msgpack_pack_true(pk);
}

/* A head whose output is (N, C) after a linear layer: the whole plan is its parts run one
 * after the other, bit for bit (the cut reads (N, 4) as (N, 4, 1, 1)).
 * input(3x9x8) - gap - linear(4) | quantize || dequantize | linear(5) */
static void test_cut_after_linear(void)
{
    enum { N = 2 };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    bf_model *m = NULL;
    int w1[2] = {4, 3}, b1[1] = {4}, w2[2] = {5, 4}, b2[1] = {5};
    float x[N * 3 * 9 * 8], f[N * 4], r[2 * N], y1[N * 5], y2[N * 5];
    uint8_t q[N * 4];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    key(&pk, "format");
    key(&pk, "butterfly-model");
    key(&pk, "version");
    msgpack_pack_int(&pk, BF_MODEL_FORMAT_VERSION);
    key(&pk, "layers");
    msgpack_pack_array(&pk, 6);
    layer(&pk, "input", "head", -1, 0);
    layer(&pk, "global_avgpool", "head", 0, 0);
    linear(&pk, "head", 1, 4);
    layer(&pk, "quantize", "reduce", 2, 0);
    layer(&pk, "dequantize", "restore", 3, 0);
    linear(&pk, "tail", 4, 5);
    key(&pk, "params");
    msgpack_pack_array(&pk, 6);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 2);
    param(&pk, "weight", 2, w1, 0.3f);
    param(&pk, "bias", 1, b1, 1.1f);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_array(&pk, 2);
    param(&pk, "weight", 2, w2, 0.9f);
    param(&pk, "bias", 1, b2, 1.7f);
    CHECK(bf_model_load_buffer(&m, sb.data, sb.size, BF_LOAD_ALL) == BF_STATUS_OK);
    msgpack_sbuffer_destroy(&sb);
    if (!m)
        return;
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = cosf(0.23f * (float)i);
    bf_plan *full = plan(m, BF_PART_HEAD, BF_PART_TAIL, N), *head = plan(m, BF_PART_HEAD, BF_PART_HEAD, N);
    bf_plan *red = plan(m, BF_PART_REDUCE, BF_PART_REDUCE, N), *res = plan(m, BF_PART_RESTORE, BF_PART_RESTORE, N);
    bf_plan *tail = plan(m, BF_PART_TAIL, BF_PART_TAIL, N);
    CHECK(bf_plan_forward(full, x, NULL, y1, NULL) == BF_STATUS_OK);
    CHECK(bf_plan_forward(head, x, NULL, f, NULL) == BF_STATUS_OK);
    CHECK(bf_plan_forward(red, f, NULL, q, r) == BF_STATUS_OK);
    CHECK(bf_plan_forward(res, q, r, f, NULL) == BF_STATUS_OK);
    CHECK(bf_plan_forward(tail, f, NULL, y2, NULL) == BF_STATUS_OK);
    CHECK(memcmp(y1, y2, sizeof y1) == 0);
    bf_plan_destroy(full);
    bf_plan_destroy(head);
    bf_plan_destroy(red);
    bf_plan_destroy(res);
    bf_plan_destroy(tail);
    bf_model_destroy(m);
}

/* bf_swish: every kernel this CPU runs gives the same bits, in place too, near float64's
 * x / (1 + e^-x), at every length (the elements past the last whole vector included). */
static void test_swish(void)
{
    enum { N = 103 };
    float x[N], y[N], z[N];
    int kernels = 0;
    double worst = 0;
    for (int i = 0; i < N; i++)
        x[i] = (float)(i % 2 ? -1 : 1) * 0.37f * (float)(i * i % 97) - (i == 5 ? 85.0f : 0.0f);
    CHECK(bf_swish(BF_KERNEL_SCALAR, x, z, N) == BF_STATUS_OK);
    for (int i = 0; i < N; i++) {
        double ref = x[i] / (1.0 + exp(-(double)x[i]));
        double err = fabs(z[i] - ref) / (fabs(ref) + 1e-30);
        worst = err > worst ? err : worst;
    }
    CHECK(worst < 5e-7);
    for (int k = BF_KERNEL_BEST; k <= BF_KERNEL_SCALAR; k++)
        for (int n = 1; n <= N; n += 17) {
            bf_status st = bf_swish((bf_kernel_isa)k, x, y, (size_t)n);
            CHECK(st == BF_STATUS_OK || (st == BF_STATUS_UNSUPPORTED && k != BF_KERNEL_BEST));
            if (st != BF_STATUS_OK)
                break;
            kernels += n == 1;
            CHECK(memcmp(y, z, (size_t)n * sizeof(float)) == 0);
            memcpy(y, x, sizeof x);
            CHECK(bf_swish((bf_kernel_isa)k, y, y, (size_t)n) == BF_STATUS_OK);
            CHECK(memcmp(y, z, (size_t)n * sizeof(float)) == 0);
        }
    CHECK(kernels >= 2); /* the best one and scalar C at least */
    CHECK(bf_swish((bf_kernel_isa)7, x, y, N) == BF_STATUS_INVALID_ARGUMENT);
    CHECK(bf_swish(BF_KERNEL_BEST, NULL, y, N) == BF_STATUS_INVALID_ARGUMENT);
    CHECK(bf_swish(BF_KERNEL_BEST, NULL, NULL, 0) == BF_STATUS_OK);
}

int main(void)
{
    msgpack_sbuffer sb;
    bf_model *m = NULL;
    bf_layer_info info;
    msgpack_sbuffer_init(&sb);
    make_model(&sb);
    CHECK(bf_model_load_buffer(&m, sb.data, sb.size, BF_LOAD_ALL) == BF_STATUS_OK);
    if (!m) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    CHECK(bf_model_layer_info(m, 3, &info) == BF_STATUS_OK && info.out_bytes == 4 * 5 * 4);
    CHECK(bf_model_layer_info(m, 1, &info) == BF_STATUS_OK && info.macs == 4 * 5 * 4 * 3 * 9);
    test_split_composes(m);
    test_layer_infer();
    test_profile(m);
    test_bad_descriptions(&sb);
    test_roundtrip_and_halves(m);
    test_cut_after_linear();
    test_swish();
    CHECK(strcmp(bf_status_str(BF_STATUS_TIMEOUT), "timeout") == 0);
    bf_model_destroy(m);
    msgpack_sbuffer_destroy(&sb);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
