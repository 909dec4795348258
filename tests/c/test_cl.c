/* Tests of the OpenCL backend: every kernel path against a plain-C reference on random
 * inputs with odd sizes, strides 1/2, padding, dilation and groups; fusion; the quantizer
 * bit-exact; error paths.  Prints "skipped: no OpenCL device" and exits 0 without one. */
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "butterfly.h"
#include "core/spec.h"

#define MAXL 48
static int g_fail, g_checks;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        g_checks++;                                                                        \
        if (!(cond)) {                                                                     \
            g_fail++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                    \
            printf(__VA_ARGS__);                                                           \
            printf("  [%s]\n", bf_last_error());                                           \
        }                                                                                  \
    } while (0)

/* ---- random numbers (deterministic) ------------------------------------------------------ */

static unsigned long long g_rng = 88172645463325252ULL;
static float frand(float lo, float hi)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return lo + (hi - lo) * (float)((g_rng >> 11) * (1.0 / 9007199254740992.0));
}

/* ---- building models ----------------------------------------------------------------------- */

typedef struct net {
    bf_layer_spec L[MAXL];
    int n;
} net;

static int layer(net *t, bf_layer_type type, int in0, int in1)
{
    bf_layer_spec *s = &t->L[t->n];
    bf_spec_defaults(s);
    s->type = type;
    s->part = t->n ? t->L[t->n - 1].part : BF_PART_HEAD;
    snprintf(s->name, sizeof s->name, "%s%d", bf_layer_type_str(type), t->n);
    s->n_inputs = type == BF_LAYER_INPUT                       ? 0
                  : type == BF_LAYER_ADD || type == BF_LAYER_MUL ? 2
                                                                 : 1;
    s->inputs[0] = in0;
    s->inputs[1] = in1;
    return t->n++;
}

static int input(net *t, int c, int h, int w)
{
    int i = layer(t, BF_LAYER_INPUT, 0, 0);
    t->L[i].shape[0] = c;
    t->L[i].shape[1] = h;
    t->L[i].shape[2] = w;
    return i;
}

static int conv(net *t, int in, int o, int k, int s, int p, int d, int g, int bias)
{
    int i = layer(t, BF_LAYER_CONV, in, 0);
    bf_layer_spec *L = &t->L[i];
    L->out_channels = o;
    L->kernel[0] = L->kernel[1] = k;
    L->stride[0] = L->stride[1] = s;
    L->pad[0] = L->pad[1] = L->pad_end[0] = L->pad_end[1] = p;
    L->dilation[0] = L->dilation[1] = d;
    L->groups = g;
    L->has_bias = bias;
    return i;
}

static int pool(net *t, bf_layer_type type, int in, int k, int s, int p)
{
    int i = layer(t, type, in, 0);
    t->L[i].kernel[0] = t->L[i].kernel[1] = k;
    t->L[i].stride[0] = t->L[i].stride[1] = s;
    t->L[i].pad[0] = t->L[i].pad[1] = t->L[i].pad_end[0] = t->L[i].pad_end[1] = p;
    return i;
}

/* Padding of layer i: top, left, bottom, right. */
static void pads(net *t, int i, int top, int left, int bottom, int right)
{
    t->L[i].pad[0] = top;
    t->L[i].pad[1] = left;
    t->L[i].pad_end[0] = bottom;
    t->L[i].pad_end[1] = right;
}

static int act(net *t, bf_layer_type type, int in, float alpha, float beta)
{
    int i = layer(t, type, in, 0);
    t->L[i].alpha = alpha;
    t->L[i].beta = beta;
    return i;
}

static int concat(net *t, const int *srcs, int n)
{
    int i = layer(t, BF_LAYER_CONCAT, srcs[0], 0);
    t->L[i].n_inputs = n;
    memcpy(t->L[i].inputs, srcs, (size_t)n * sizeof *srcs);
    return i;
}

/* Ends the mobile half with a quantize (reduce) and the cloud half with a dequantize. */
static int quantize(net *t, int in)
{
    int q;
    q = layer(t, BF_LAYER_QUANTIZE, in, 0);
    t->L[q].part = BF_PART_REDUCE;
    layer(t, BF_LAYER_DEQUANTIZE, q, 0);
    t->L[q + 1].part = BF_PART_RESTORE;
    return q;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Serializes the net with random weights and loads it. */
static bf_model *build(const net *t)
{
    bf_layer_info info[MAXL];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    bf_model *m = NULL;
    if (bf_spec_infer(t->L, t->n, info) != BF_STATUS_OK) {
        printf("bad test net: %s\n", bf_last_error());
        return NULL;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "format");
    pack_str(&pk, "butterfly-model");
    pack_str(&pk, "version");
    msgpack_pack_int(&pk, BF_MODEL_FORMAT_VERSION);
    pack_str(&pk, "layers");
    msgpack_pack_array(&pk, (size_t)t->n);
    for (int i = 0; i < t->n; i++)
        bf_spec_pack(&pk, &t->L[i]);
    pack_str(&pk, "params");
    msgpack_pack_array(&pk, (size_t)t->n);
    for (int i = 0; i < t->n; i++) {
        bf_param ps[BF_MAX_PARAMS];
        int np = bf_spec_expected_params(&t->L[i], &info[i], ps);
        msgpack_pack_array(&pk, (size_t)np);
        for (int k = 0; k < np; k++) {
            int64_t cnt = 1;
            float *d;
            for (int j = 0; j < ps[k].ndims; j++)
                cnt *= ps[k].dims[j];
            d = malloc((size_t)cnt * sizeof(float));
            for (int64_t j = 0; j < cnt; j++) {
                float fan = ps[k].ndims == 4
                                ? (float)(ps[k].dims[1] * ps[k].dims[2] * ps[k].dims[3]) : 1;
                d[j] = !strcmp(ps[k].name, "running_var") ? frand(0.5f, 1.5f)
                       : !strcmp(ps[k].name, "gamma")     ? frand(0.5f, 1.5f)
                       : ps[k].ndims == 4 ? frand(-1, 1) * sqrtf(3.0f / fan)
                                          : frand(-0.5f, 0.5f);
            }
            msgpack_pack_map(&pk, 3);
            pack_str(&pk, "name");
            pack_str(&pk, ps[k].name);
            pack_str(&pk, "shape");
            msgpack_pack_array(&pk, (size_t)ps[k].ndims);
            for (int j = 0; j < ps[k].ndims; j++)
                msgpack_pack_int64(&pk, ps[k].dims[j]);
            pack_str(&pk, "data");
            msgpack_pack_bin_with_body(&pk, d, (size_t)cnt * sizeof(float));
            free(d);
        }
    }
    if (bf_model_load_buffer(&m, sb.data, sb.size, BF_LOAD_ALL) != BF_STATUS_OK)
        printf("model load failed: %s\n", bf_last_error());
    msgpack_sbuffer_destroy(&sb);
    return m;
}

/* ---- plain-C reference (unfused, layer by layer, float32) ---------------------------------- */

typedef struct ref {
    float *out[MAXL];    /* per layer, batch x C x H x W */
    unsigned char *q;    /* quantize output */
    float range[16];
} ref;

static const float *param(const bf_model *m, int l, int k)
{
    bf_param_view v;
    return bf_model_param(m, l, k, &v) == BF_STATUS_OK ? v.data : NULL;
}

static void ref_conv(const bf_model *m, int l, const bf_layer_info *I, const float *x, float *y,
                     int N)
{
    const bf_layer_spec *s = bf_model_layer(m, l);
    const float *w = param(m, l, 0), *b = s->has_bias ? param(m, l, 1) : NULL;
    int C = I->in_dims[0], H = I->in_dims[1], W = I->in_dims[2], O = I->out_dims[0];
    int OH = I->out_dims[1], OW = I->out_dims[2], G = s->groups, Cg = C / G, Og = O / G;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    double acc = b ? b[o] : 0;
                    int g = o / Og;
                    for (int c = 0; c < Cg; c++)
                        for (int ky = 0; ky < s->kernel[0]; ky++)
                            for (int kx = 0; kx < s->kernel[1]; kx++) {
                                int iy = oy * s->stride[0] - s->pad[0] + ky * s->dilation[0];
                                int ix = ox * s->stride[1] - s->pad[1] + kx * s->dilation[1];
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    continue;
                                int wi = ((o * Cg + c) * s->kernel[0] + ky) * s->kernel[1] + kx;
                                size_t xi = (((size_t)n * C + g * Cg + c) * H + iy) * W + ix;
                                acc += (double)w[wi] * x[xi];
                            }
                    y[(((size_t)n * O + o) * OH + oy) * OW + ox] = (float)acc;
                }
}

static void ref_pool(const bf_layer_spec *s, const bf_layer_info *I, const float *x, float *y,
                     int N)
{
    int C = I->in_dims[0], H = I->in_dims[1], W = I->in_dims[2];
    int OH = I->out_dims[1], OW = I->out_dims[2];
    for (int z = 0; z < N * C; z++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                double acc = s->type == BF_LAYER_MAXPOOL ? -INFINITY : 0;
                int cnt = 0;
                int kh = s->type == BF_LAYER_GLOBAL_AVGPOOL ? H : s->kernel[0];
                int kw = s->type == BF_LAYER_GLOBAL_AVGPOOL ? W : s->kernel[1];
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++) {
                        int iy = oy * s->stride[0] - s->pad[0] + ky;
                        int ix = ox * s->stride[1] - s->pad[1] + kx;
                        if (s->type == BF_LAYER_GLOBAL_AVGPOOL)
                            iy = ky, ix = kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                            continue;
                        float v = x[((size_t)z * H + iy) * W + ix];
                        acc = s->type == BF_LAYER_MAXPOOL ? fmax(acc, v) : acc + v;
                        cnt++;
                    }
                y[((size_t)z * OH + oy) * OW + ox] =
                    (float)(s->type == BF_LAYER_MAXPOOL ? acc : acc / cnt);
            }
}

/* The header's quantizer, written out in float32 exactly as documented. */
static void ref_quant(const float *x, size_t len, int N, unsigned char *q, float *range)
{
    for (int n = 0; n < N; n++) {
        const float *xp = x + (size_t)n * len;
        float lo = xp[0], hi = xp[0];
        for (size_t i = 1; i < len; i++) {
            lo = xp[i] < lo ? xp[i] : lo;
            hi = xp[i] > hi ? xp[i] : hi;
        }
        volatile float d = hi - lo;
        float inv = d == 0.0f ? 0.0f : 255.0f / d;
        for (size_t i = 0; i < len; i++) {
            volatile float t = (xp[i] - lo) * inv;
            float v = floorf(t + 0.5f);
            v = v < 0 ? 0 : v > 255 ? 255 : v;
            q[(size_t)n * len + i] = (unsigned char)v;
        }
        range[2 * n] = lo;
        range[2 * n + 1] = hi;
    }
}

static void ref_layer(const bf_model *m, int l, ref *r, int N)
{
    const bf_layer_spec *s = bf_model_layer(m, l);
    bf_layer_info I;
    bf_model_layer_info(m, l, &I);
    size_t inlen = (size_t)I.in_dims[0] * I.in_dims[1] * I.in_dims[2];
    size_t len = (size_t)I.out_dims[0] * I.out_dims[1] * I.out_dims[2];
    const float *x = l ? r->out[s->inputs[0]] : NULL;
    float *y = r->out[l] = calloc((size_t)N * len + 1, sizeof(float));
    int C = I.in_dims[0], HW = I.in_dims[1] * I.in_dims[2];
    switch (s->type) {
    case BF_LAYER_CONV:
        ref_conv(m, l, &I, x, y, N);
        break;
    case BF_LAYER_BATCHNORM: {
        const float *g = param(m, l, 0), *b = param(m, l, 1);
        const float *mu = param(m, l, 2), *v = param(m, l, 3);
        for (size_t i = 0; i < (size_t)N * len; i++) {
            int c = (int)(i / HW % C);
            y[i] = (float)((x[i] - mu[c]) / sqrt((double)v[c] + s->eps) * g[c] + b[c]);
        }
        break;
    }
    case BF_LAYER_RELU:
    case BF_LAYER_RELU6:
        for (size_t i = 0; i < (size_t)N * len; i++) {
            y[i] = x[i] > 0 ? x[i] : 0;
            if (s->type == BF_LAYER_RELU6 && y[i] > 6)
                y[i] = 6;
        }
        break;
    case BF_LAYER_SIGMOID:
    case BF_LAYER_SWISH:
    case BF_LAYER_HARDSWISH:
    case BF_LAYER_HARDSIGMOID:
    case BF_LAYER_CLIP:
    case BF_LAYER_LEAKY_RELU:
        for (size_t i = 0; i < (size_t)N * len; i++) {
            double v = x[i], sg = 1 / (1 + exp(-v));
            y[i] = (float)(s->type == BF_LAYER_SIGMOID     ? sg
                           : s->type == BF_LAYER_SWISH     ? v * sg
                           : s->type == BF_LAYER_HARDSWISH ? v * fmin(fmax(v / 6 + 0.5, 0), 1)
                           : s->type == BF_LAYER_HARDSIGMOID
                               ? fmin(fmax(s->alpha * v + s->beta, 0), 1)
                           : s->type == BF_LAYER_CLIP ? fmin(fmax(v, s->alpha), s->beta)
                           : v > 0                    ? v
                                                      : s->alpha * v);
        }
        break;
    case BF_LAYER_ADD:
        for (size_t i = 0; i < (size_t)N * len; i++)
            y[i] = x[i] + r->out[s->inputs[1]][i];
        break;
    case BF_LAYER_MUL: {
        bf_layer_info B;
        bf_model_layer_info(m, s->inputs[1], &B);
        int bcast = B.out_dims[1] * B.out_dims[2] != HW;
        for (size_t i = 0; i < (size_t)N * len; i++)
            y[i] = x[i] * r->out[s->inputs[1]][bcast ? i / HW : i];
        break;
    }
    case BF_LAYER_CONCAT: {
        size_t at = 0, olen = (size_t)I.out_dims[0] * I.out_dims[1] * I.out_dims[2];
        for (int k = 0; k < s->n_inputs; k++) {
            bf_layer_info S;
            bf_model_layer_info(m, s->inputs[k], &S);
            size_t slen = (size_t)S.out_dims[0] * S.out_dims[1] * S.out_dims[2];
            for (int n = 0; n < N; n++)
                memcpy(y + n * olen + at, r->out[s->inputs[k]] + n * slen, slen * sizeof *y);
            at += slen;
        }
        break;
    }
    case BF_LAYER_MAXPOOL:
    case BF_LAYER_AVGPOOL:
    case BF_LAYER_GLOBAL_AVGPOOL:
        ref_pool(s, &I, x, y, N);
        break;
    case BF_LAYER_UPSAMPLE:
        for (int z = 0; z < N * C; z++)
            for (int oy = 0; oy < I.out_dims[1]; oy++)
                for (int ox = 0; ox < I.out_dims[2]; ox++)
                    y[((size_t)z * I.out_dims[1] + oy) * I.out_dims[2] + ox] =
                        x[((size_t)z * I.in_dims[1] + oy / s->scale) * I.in_dims[2] +
                          ox / s->scale];
        break;
    case BF_LAYER_LINEAR:
        for (int n = 0; n < N; n++)
            for (int o = 0; o < (int)len; o++) {
                const float *w = param(m, l, 0), *b = s->has_bias ? param(m, l, 1) : NULL;
                double acc = b ? b[o] : 0;
                for (size_t k = 0; k < inlen; k++)
                    acc += (double)w[o * inlen + k] * x[n * inlen + k];
                y[(size_t)n * len + o] = (float)acc;
            }
        break;
    case BF_LAYER_SOFTMAX:
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                double mx = -INFINITY, sum = 0;
                for (int c = 0; c < C; c++)
                    mx = fmax(mx, x[((size_t)n * C + c) * HW + i]);
                for (int c = 0; c < C; c++)
                    sum += exp(x[((size_t)n * C + c) * HW + i] - mx);
                for (int c = 0; c < C; c++)
                    y[((size_t)n * C + c) * HW + i] =
                        (float)(exp(x[((size_t)n * C + c) * HW + i] - mx) / sum);
            }
        break;
    case BF_LAYER_QUANTIZE:
        r->q = malloc((size_t)N * len);
        ref_quant(x, inlen, N, r->q, r->range);
        break;
    default:
        break;
    }
}

static void ref_free(ref *r)
{
    for (int i = 0; i < MAXL; i++)
        free(r->out[i]);
    free(r->q);
    memset(r, 0, sizeof *r);
}

/* ---- running a case -------------------------------------------------------------------------- */

static int g_device = -1;
static int g_boundary_input; /* fill inputs on the quantizer's rounding boundaries */
static const char *g_kernel; /* when set: the kernel the last op must run */
static float g_input_scale = 2; /* inputs uniform in +-g_input_scale */

/* Values at lo + (j / 2) * step of the quantizer (step = (hi - lo) / 255), i.e. on and
 * halfway between its levels, and one ulp either side: its rounding boundaries. */
static void boundary_fill(float *x, size_t n, int N)
{
    size_t per = n / N;
    for (size_t i = 0; i < n; i++) {
        size_t k = i % per;
        float v = -1.0f + (float)(k % 511) * (2.0f / 510.0f);
        int nudge = (int)(k / 511 % 3);
        x[i] = nudge == 1 ? nextafterf(v, 2.0f) : nudge == 2 ? nextafterf(v, -2.0f) : v;
        if (k < 2)
            x[i] = k ? 1.0f : -1.0f; /* exact range [-1, 1] */
    }
}

/* Runs the mobile half of `t` on OpenCL and compares with the reference.  expect_ops > 0
 * checks the fusion (number of ops); exact: quantized output must match bit for bit. */
static void run_case(const char *what, const net *t, int N, int expect_ops, int exact)
{
    bf_model *m = build(t);
    bf_cl_plan *p = NULL;
    bf_plan_params pp = {BF_PART_HEAD, BF_PART_HEAD, 1, 0};
    bf_io_desc in, out;
    ref r = {0};
    float *x = NULL, *y = NULL, range[16];
    int last, f, l, nops = 0;
    bf_cl_op_time prof[MAXL];
    CHECK(m != NULL, "%s: model", what);
    if (!m)
        return;
    bf_model_part_range(m, BF_PART_REDUCE, &f, &l);
    pp.part_begin = BF_PART_HEAD;
    pp.part_end = f >= 0 ? BF_PART_REDUCE : BF_PART_HEAD;
    pp.batch = N;
    bf_model_part_range(m, pp.part_end, &f, &last);
    bf_status st = bf_cl_plan_create(&p, m, &pp, g_device);
    CHECK(st == BF_STATUS_OK, "%s: plan create -> %s", what, bf_status_str(st));
    if (st != BF_STATUS_OK)
        goto done;
    bf_cl_plan_io(p, 0, &in);
    bf_cl_plan_io(p, 1, &out);
    size_t in_n = (size_t)(in.dims[0] * in.dims[1] * in.dims[2] * in.dims[3]);
    size_t out_n = (size_t)(out.dims[0] * out.dims[1] * out.dims[2] * out.dims[3]);
    x = malloc(in_n * sizeof(float));
    y = calloc(out_n, sizeof(float));
    for (size_t i = 0; i < in_n; i++)
        x[i] = frand(-g_input_scale, g_input_scale);
    if (g_boundary_input)
        boundary_fill(x, in_n, N);
    if (N > 1 && exact) /* a constant sample: max == min gives inv = 0 */
        for (size_t i = in_n / N; i < 2 * in_n / N; i++)
            x[i] = 0.75f;
    r.out[0] = malloc(in_n * sizeof(float));
    memcpy(r.out[0], x, in_n * sizeof(float));
    for (int i = 1; i <= last; i++)
        ref_layer(m, i, &r, N);
    st = bf_cl_plan_forward(p, x, NULL, y, range);
    CHECK(st == BF_STATUS_OK, "%s: forward -> %s", what, bf_status_str(st));
    if (out.quantized) {
        const unsigned char *q = (const unsigned char *)y;
        size_t diff1 = 0, diffbig = 0;
        for (size_t i = 0; i < out_n; i++) {
            int d = abs((int)q[i] - (int)r.q[i]);
            diff1 += d == 1;
            diffbig += d > 1;
        }
        for (int n = 0; n < 2 * N; n++)
            CHECK(exact ? range[n] == r.range[n]
                        : fabsf(range[n] - r.range[n]) <= 1e-4f * (1 + fabsf(r.range[n])),
                  "%s: range[%d] %g vs %g", what, n, range[n], r.range[n]);
        CHECK(diffbig == 0 && (exact ? diff1 == 0 : diff1 * 100 <= out_n),
              "%s: %zu elements 1 LSB off, %zu more than 1 (of %zu)", what, diff1, diffbig, out_n);
        printf("  %-34s payload %zu B, %zu x 1-LSB diffs%s\n", what, out_n, diff1,
               exact ? " (bit-exact required)" : "");
    } else {
        double maxref = 0, maxerr = 0;
        for (size_t i = 0; i < out_n; i++) {
            maxref = fmax(maxref, fabs(r.out[last][i]));
            maxerr = fmax(maxerr, fabs(y[i] - r.out[last][i]));
        }
        CHECK(maxerr <= 1e-4 * fmax(1, maxref), "%s: max err %g (max |ref| %g)", what, maxerr,
              maxref);
        printf("  %-34s max err %.2e (max |ref| %.2f)\n", what, maxerr, maxref);
    }
    bf_cl_plan_profile(p, prof, MAXL, &nops);
    CHECK(expect_ops <= 0 || nops == expect_ops, "%s: %d ops, expected %d", what, nops,
          expect_ops);
    for (int i = 0; i < nops && i < MAXL; i++)
        CHECK(prof[i].ms >= 0 && prof[i].kernel, "%s: profile entry %d", what, i);
    CHECK(!g_kernel || (nops > 0 && nops <= MAXL && !strcmp(prof[nops - 1].kernel, g_kernel)),
          "%s: last op runs %s, expected %s", what, nops > 0 ? prof[nops - 1].kernel : "-",
          g_kernel);
done:
    ref_free(&r);
    free(x);
    free(y);
    bf_cl_plan_destroy(p);
    bf_model_destroy(m);
}

static void test_convs(void)
{
    static const struct { int c, h, w, o, k, s, p, d, g, bias; const char *what; } cs[] = {
        {5, 9, 11, 12, 3, 1, 1, 1, 1, 1, "conv 3x3 s1 p1 (tiled)"},
        {4, 14, 13, 8, 3, 3, 1, 1, 1, 1, "conv 3x3 s3 (im2col+gemm)"},
        {3, 11, 10, 7, 5, 3, 0, 1, 1, 0, "conv 5x5 s3 p0 (im2col+gemm)"},
        {64, 6, 7, 1, 1, 1, 0, 1, 1, 0, "conv 1x1 64->1 (gemm, 1 channel)"},
        {10, 40, 37, 24, 3, 1, 1, 1, 1, 0, "conv 3x3 40x37 (tiled, many tiles)"},
        {16, 7, 5, 20, 1, 1, 0, 1, 1, 0, "conv 1x1 s1 (gemm on x)"},
        {3, 23, 19, 8, 7, 2, 3, 1, 1, 0, "conv 7x7 s2 p3 (phases)"},
        {8, 9, 9, 16, 1, 2, 0, 1, 1, 1, "conv 1x1 s2 (subsample + gemm)"},
        {6, 11, 10, 6, 3, 2, 1, 1, 6, 1, "depthwise 3x3 s2 (dw tiles)"},
        {5, 20, 35, 5, 5, 1, 2, 1, 5, 0, "depthwise 5x5 s1 p2 (dw tiles)"},
        {4, 13, 11, 4, 3, 3, 1, 1, 4, 1, "depthwise 3x3 s3 (direct)"},
        {8, 10, 7, 16, 3, 1, 1, 1, 2, 0, "grouped g=2 (gemm per group)"},
        {8, 10, 7, 8, 3, 1, 1, 1, 4, 1, "grouped g=4, 2 out/group (dw tiles)"},
        {4, 13, 12, 9, 3, 1, 2, 2, 1, 1, "dilated 3x3 d2 p2"},
        {6, 15, 14, 8, 3, 2, 2, 2, 1, 1, "dilated 3x3 d2 s2 (phases)"},
        {8, 10, 11, 6, 1, 3, 0, 1, 1, 1, "conv 1x1 s3 (subsample + gemm)"},
        {8, 10, 11, 16, 1, 2, 0, 1, 2, 0, "grouped 1x1 s2 g=2 (subsample)"},
        {5, 16, 16, 5, 3, 2, 1, 2, 5, 0, "depthwise d2 s2 (phases)"},
        {3, 6, 17, 5, 2, 2, 0, 1, 1, 1, "conv 2x2 s2 p0, 5 outputs"},
        {12, 5, 5, 33, 3, 2, 1, 1, 3, 0, "grouped g=3, 11 out/group, s2"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        net t = {0};
        input(&t, cs[i].c, cs[i].h, cs[i].w);
        conv(&t, 0, cs[i].o, cs[i].k, cs[i].s, cs[i].p, cs[i].d, cs[i].g, cs[i].bias);
        run_case(cs[i].what, &t, i % 2 ? 3 : 2, 1, 0);
    }
}

static void test_fusion(void)
{
    net t = {0};
    int x, a, b, sc, s;
    /* a ResNet basic block with a downsampling shortcut:
     *   a = relu(bn(conv3x3 s2 (x)));  b = bn(conv3x3(a));  sc = bn(conv1x1 s2(x))
     *   relu(b + sc)   -> ops: [conv+bn+relu] [conv+bn] ... fused: 3 convs in 3 ops */
    x = input(&t, 6, 15, 13);
    a = conv(&t, x, 10, 3, 2, 1, 1, 1, 0);
    a = layer(&t, BF_LAYER_BATCHNORM, a, 0);
    a = layer(&t, BF_LAYER_RELU, a, 0);
    sc = conv(&t, x, 10, 1, 2, 0, 1, 1, 0);
    sc = layer(&t, BF_LAYER_BATCHNORM, sc, 0);
    b = conv(&t, a, 10, 3, 1, 1, 1, 1, 0);
    b = layer(&t, BF_LAYER_BATCHNORM, b, 0);
    s = layer(&t, BF_LAYER_ADD, b, sc);
    layer(&t, BF_LAYER_RELU, s, 0);
    run_case("basic block (bn/add/relu fused)", &t, 2, 3, 0);

    memset(&t, 0, sizeof t);
    x = input(&t, 4, 9, 9);
    a = conv(&t, x, 8, 3, 1, 1, 1, 1, 1);
    a = layer(&t, BF_LAYER_BATCHNORM, a, 0);
    layer(&t, BF_LAYER_RELU6, a, 0);
    run_case("conv+bn+relu6", &t, 1, 1, 0);
}

static void test_other_ops(void)
{
    net t = {0};
    int x, m, a, b, g;
    x = input(&t, 5, 17, 14);
    m = pool(&t, BF_LAYER_MAXPOOL, x, 3, 2, 1); /* row tiles, -inf padding */
    a = pool(&t, BF_LAYER_AVGPOOL, x, 3, 2, 1);
    b = layer(&t, BF_LAYER_ADD, m, a);           /* add, not fused (no conv) */
    b = layer(&t, BF_LAYER_BATCHNORM, b, 0);      /* lone batch-norm */
    b = layer(&t, BF_LAYER_RELU6, b, 0);          /* fused into the affine */
    b = pool(&t, BF_LAYER_AVGPOOL, b, 2, 2, 0);
    b = pool(&t, BF_LAYER_MAXPOOL, b, 2, 1, 0);   /* row tiles, stride 1, no padding */
    b = pool(&t, BF_LAYER_MAXPOOL, b, 3, 3, 1);   /* generic kernel (stride 3) */
    b = layer(&t, BF_LAYER_UPSAMPLE, b, 0);
    t.L[b].scale = 3;
    b = layer(&t, BF_LAYER_RELU, b, 0);           /* lone activation */
    b = layer(&t, BF_LAYER_UPSAMPLE, b, 0);
    t.L[b].scale = 2;
    g = layer(&t, BF_LAYER_GLOBAL_AVGPOOL, b, 0);
    (void)g;
    run_case("pools, add, bn, relu/6, upsample, gap", &t, 3, 11, 0);

    memset(&t, 0, sizeof t);
    x = input(&t, 7, 45, 38);
    layer(&t, BF_LAYER_GLOBAL_AVGPOOL, x, 0);
    run_case("global avgpool 45x38", &t, 2, 1, 0);
}

/* A plain classifier: the whole network on the phone (the mobile-only baseline). */
static void test_plain_classifier(void)
{
    net t = {0};
    int x = input(&t, 4, 9, 9), c, l;
    c = conv(&t, x, 8, 3, 1, 1, 1, 1, 0);
    c = layer(&t, BF_LAYER_RELU, c, 0);
    c = layer(&t, BF_LAYER_GLOBAL_AVGPOOL, c, 0);
    l = layer(&t, BF_LAYER_LINEAR, c, 0);
    t.L[l].out_channels = 10;
    t.L[l].has_bias = 1;
    l = layer(&t, BF_LAYER_RELU, l, 0);
    l = layer(&t, BF_LAYER_LINEAR, l, 0);
    t.L[l].out_channels = 7;
    layer(&t, BF_LAYER_SOFTMAX, l, 0);
    run_case("conv, gap, linear+relu, linear, softmax", &t, 3, 5, 0);

    memset(&t, 0, sizeof t);
    x = input(&t, 6, 5, 3);
    l = layer(&t, BF_LAYER_LINEAR, x, 0); /* flattens a (6, 5, 3) input */
    t.L[l].out_channels = 21;
    t.L[l].has_bias = 1;
    run_case("linear on a 6x5x3 input", &t, 2, 1, 0);

    memset(&t, 0, sizeof t);
    x = input(&t, 5, 4, 3);
    layer(&t, BF_LAYER_SOFTMAX, x, 0); /* per pixel, over channels */
    run_case("softmax over channels, 4x3 pixels", &t, 2, 1, 0);
}

static void test_quant(void)
{
    net t = {0};
    int x, c;
    x = input(&t, 3, 37, 29);
    quantize(&t, x);
    run_case("quantize (raw input)", &t, 3, 1, 1);

    memset(&t, 0, sizeof t);
    x = input(&t, 8, 40, 36);
    quantize(&t, x);
    run_case("quantize 11520/sample", &t, 2, 1, 1);
    g_boundary_input = 1;
    run_case("quantize on rounding boundaries", &t, 2, 1, 1);
    g_boundary_input = 0;

    /* head conv, reduce conv + bn + relu + quantize (a butterfly reduction unit) */
    memset(&t, 0, sizeof t);
    x = input(&t, 6, 21, 19);
    c = conv(&t, x, 16, 3, 1, 1, 1, 1, 0);
    c = layer(&t, BF_LAYER_RELU, c, 0);
    c = conv(&t, c, 2, 3, 2, 1, 1, 1, 0);
    t.L[c].part = BF_PART_REDUCE;
    c = layer(&t, BF_LAYER_BATCHNORM, c, 0);
    c = layer(&t, BF_LAYER_RELU, c, 0);
    quantize(&t, c);
    run_case("head + reduction unit + quantize", &t, 2, 3, 0);
}

/* Every activation alone (an affine op), after a conv (the conv epilogue for those
 * without parameters, else conv + affine) and after a batch-norm and an add (fused). */
static void test_activations(void)
{
    static const struct { bf_layer_type type; float alpha, beta; int conv_fuses; } as[] = {
        {BF_LAYER_RELU, 0, 0, 1},          {BF_LAYER_RELU6, 0, 0, 1},
        {BF_LAYER_SIGMOID, 0, 0, 1},       {BF_LAYER_SWISH, 0, 0, 1},
        {BF_LAYER_HARDSWISH, 0, 0, 1},     {BF_LAYER_HARDSIGMOID, 0.2f, 0.5f, 0},
        {BF_LAYER_CLIP, -0.5f, 1.5f, 0},   {BF_LAYER_LEAKY_RELU, 0.1f, 0, 0},
    };
    char what[80];
    g_input_scale = 5; /* past every knee: hardswish's +-3, relu6's 6 after a conv */
    for (size_t i = 0; i < sizeof as / sizeof as[0]; i++) {
        const char *name = bf_layer_type_str(as[i].type);
        net t = {0};
        int x = input(&t, 4, 9, 7), c, b;
        act(&t, as[i].type, x, as[i].alpha, as[i].beta);
        snprintf(what, sizeof what, "%s alone", name);
        g_kernel = "affine_act";
        run_case(what, &t, 2, 1, 0);

        memset(&t, 0, sizeof t);
        x = input(&t, 5, 11, 9);
        c = conv(&t, x, 12, 3, 1, 1, 1, 1, 1);
        act(&t, as[i].type, c, as[i].alpha, as[i].beta);
        c = conv(&t, x, 8, 3, 2, 1, 1, 1, 0);
        c = layer(&t, BF_LAYER_BATCHNORM, c, 0);
        act(&t, as[i].type, c, as[i].alpha, as[i].beta);
        snprintf(what, sizeof what, "conv(+bn) + %s", name);
        g_kernel = as[i].conv_fuses ? "conv_tiled_s2" : "affine_act";
        run_case(what, &t, 3, as[i].conv_fuses ? 2 : 4, 0);

        memset(&t, 0, sizeof t);
        x = input(&t, 4, 8, 10);
        b = layer(&t, BF_LAYER_BATCHNORM, x, 0);
        b = act(&t, as[i].type, b, as[i].alpha, as[i].beta);
        c = layer(&t, BF_LAYER_BATCHNORM, x, 0);
        c = layer(&t, BF_LAYER_ADD, b, c);
        act(&t, as[i].type, c, as[i].alpha, as[i].beta);
        snprintf(what, sizeof what, "bn + %s, add + %s", name, name);
        g_kernel = "add_act";
        run_case(what, &t, 2, 3, 0);
    }
    g_kernel = NULL;
    g_input_scale = 2;
}

/* mul (same shape, per channel), concat of 2 and 5 sources with the image among them. */
static void test_mul_concat(void)
{
    net t = {0};
    int x, a, s, srcs[5];
    /* squeeze-and-excitation, then a product of two branches */
    x = input(&t, 6, 9, 11);
    a = conv(&t, x, 8, 3, 1, 1, 1, 1, 0);
    s = layer(&t, BF_LAYER_GLOBAL_AVGPOOL, a, 0);
    s = conv(&t, s, 4, 1, 1, 0, 1, 1, 1);
    s = layer(&t, BF_LAYER_RELU, s, 0);
    s = conv(&t, s, 8, 1, 1, 0, 1, 1, 1);
    s = layer(&t, BF_LAYER_SIGMOID, s, 0);
    s = layer(&t, BF_LAYER_MUL, a, s);
    a = conv(&t, x, 8, 3, 1, 1, 1, 1, 0);
    layer(&t, BF_LAYER_MUL, s, a);
    g_kernel = "mul_bcast";
    run_case("squeeze-excitation mul, plain mul", &t, 3, 7, 0);

    memset(&t, 0, sizeof t);
    x = input(&t, 3, 10, 9);
    srcs[0] = conv(&t, x, 4, 3, 1, 1, 1, 1, 0);
    srcs[1] = x;
    a = concat(&t, srcs, 2);
    conv(&t, a, 5, 1, 1, 0, 1, 1, 0);
    g_kernel = "conv_gemm";
    run_case("concat conv + image, conv", &t, 2, 3, 0);

    /* sources read again after the concat: their buffers live until then */
    memset(&t, 0, sizeof t);
    x = input(&t, 3, 10, 9);
    srcs[0] = x;
    srcs[1] = conv(&t, x, 3, 3, 1, 1, 1, 1, 0);
    srcs[2] = pool(&t, BF_LAYER_MAXPOOL, x, 3, 1, 1);
    srcs[3] = conv(&t, x, 5, 3, 1, 1, 1, 1, 0);
    srcs[4] = x;
    a = concat(&t, srcs, 5);
    a = conv(&t, a, 6, 1, 1, 0, 1, 1, 0);
    srcs[0] = a;
    srcs[1] = srcs[3];
    srcs[2] = x;
    concat(&t, srcs, 3);
    g_kernel = "concat_copy";
    run_case("concat of 5, conv, concat of 3", &t, 3, 6, 0);

    /* b is read by the pool, then by the concat as its second source: its buffer must
     * not go to q, the same size, computed in between */
    memset(&t, 0, sizeof t);
    x = input(&t, 3, 10, 9);
    srcs[1] = conv(&t, x, 4, 3, 1, 1, 1, 1, 0);
    srcs[0] = pool(&t, BF_LAYER_MAXPOOL, srcs[1], 3, 1, 1);
    srcs[2] = conv(&t, x, 4, 3, 1, 1, 1, 1, 0);
    concat(&t, srcs, 3);
    run_case("concat source alive until the concat", &t, 2, 4, 0);
    g_kernel = NULL;
}

/* Padding larger at the bottom / right than at the top / left, or smaller (ONNX pads). */
static void test_asymmetric_padding(void)
{
    static const struct {
        int c, h, w, o, k, s, g, top, left, bottom, right;
        const char *kernel, *what;
    } cs[] = {
        {5, 9, 11, 12, 3, 1, 1, 1, 1, 0, 2, "conv_tiled_s1", "conv 3x3 s1 pads 1,1,0,2"},
        {3, 23, 19, 8, 7, 2, 1, 3, 2, 2, 3, "conv_tiled_s2", "conv 7x7 s2 pads 3,2,2,3"},
        {16, 7, 5, 20, 1, 1, 1, 0, 0, 1, 1, "conv_tiled_s1", "conv 1x1 s1 pads 0,0,1,1"},
        {8, 9, 9, 16, 1, 2, 1, 0, 0, 1, 0, "conv_tiled_s2", "conv 1x1 s2 pads 0,0,1,0"},
        {4, 14, 13, 8, 3, 3, 1, 1, 0, 2, 1, "conv_gemm", "conv 3x3 s3 pads 1,0,2,1 (im2col)"},
        {4, 13, 11, 4, 3, 3, 4, 0, 1, 1, 2, "conv_direct", "depthwise s3 pads 0,1,1,2"},
        {5, 20, 35, 5, 5, 1, 5, 2, 1, 1, 3, "conv_dw_s1", "depthwise 5x5 s1 pads 2,1,1,3"},
        {6, 11, 10, 6, 3, 2, 6, 0, 0, 1, 1, "conv_dw_s2", "depthwise 3x3 s2 pads 0,0,1,1"},
    };
    static const struct {
        bf_layer_type type;
        int k, s, top, left, bottom, right;
        const char *kernel, *what;
    } ps[] = {
        {BF_LAYER_MAXPOOL, 3, 2, 0, 0, 1, 1, "maxpool_s2", "maxpool 3x3 s2 pads 0,0,1,1"},
        {BF_LAYER_MAXPOOL, 2, 1, 0, 1, 1, 0, "maxpool_s1", "maxpool 2x2 s1 pads 0,1,1,0"},
        {BF_LAYER_MAXPOOL, 3, 3, 1, 0, 0, 1, "maxpool", "maxpool 3x3 s3 pads 1,0,0,1"},
        {BF_LAYER_AVGPOOL, 3, 2, 0, 1, 1, 0, "avgpool", "avgpool 3x3 s2 pads 0,1,1,0"},
        {BF_LAYER_AVGPOOL, 2, 2, 0, 0, 1, 1, "avgpool", "avgpool 2x2 s2 pads 0,0,1,1"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        net t = {0};
        int x = input(&t, cs[i].c, cs[i].h, cs[i].w);
        int c = conv(&t, x, cs[i].o, cs[i].k, cs[i].s, 0, 1, cs[i].g, 1);
        pads(&t, c, cs[i].top, cs[i].left, cs[i].bottom, cs[i].right);
        g_kernel = cs[i].kernel;
        run_case(cs[i].what, &t, i % 2 ? 3 : 2, 1, 0);
    }
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        net t = {0};
        int x = input(&t, 5, 16, 13);
        int p = pool(&t, ps[i].type, x, ps[i].k, ps[i].s, 0);
        pads(&t, p, ps[i].top, ps[i].left, ps[i].bottom, ps[i].right);
        g_kernel = ps[i].kernel;
        run_case(ps[i].what, &t, 2, 1, 0);
    }
    g_kernel = NULL;
}

static void test_errors_and_reload(void)
{
    net t = {0};
    bf_model *m;
    bf_cl_plan *p = NULL;
    bf_plan_params pp = {BF_PART_HEAD, BF_PART_HEAD, 1, 0};
    bf_param_view w;
    float x[2 * 3 * 5 * 5], y1[2 * 4 * 5 * 5], y2[2 * 4 * 5 * 5];
    bf_status st;
    int x0 = input(&t, 3, 5, 5), c = conv(&t, x0, 4, 3, 1, 1, 1, 1, 1);
    quantize(&t, c);
    t.L[c].part = BF_PART_HEAD;
    m = build(&t);
    if (!m)
        return;
    pp.batch = 2;
    pp.part_begin = BF_PART_HEAD;
    pp.part_end = BF_PART_TAIL;
    st = bf_cl_plan_create(&p, m, &pp, g_device);
    CHECK(st == BF_STATUS_UNSUPPORTED && p == NULL && strstr(bf_last_error(), "dequantize"),
          "cloud layers -> UNSUPPORTED (got %s)", bf_status_str(st));
    pp.part_end = BF_PART_HEAD;
    st = bf_cl_plan_create(&p, m, &pp, 999);
    CHECK(st == BF_STATUS_INVALID_ARGUMENT && p == NULL, "bad device index (got %s)",
          bf_status_str(st));
    pp.training = 1;
    st = bf_cl_plan_create(&p, m, &pp, g_device);
    CHECK(st == BF_STATUS_UNSUPPORTED, "training -> UNSUPPORTED");
    pp.training = 0;
    st = bf_cl_plan_create(&p, m, &pp, g_device);
    CHECK(st == BF_STATUS_OK, "head-only plan");
    if (st == BF_STATUS_OK) {
        for (int i = 0; i < 150; i++)
            x[i] = frand(-1, 1);
        CHECK(bf_cl_plan_forward(p, x, NULL, y1, NULL) == BF_STATUS_OK, "forward 1");
        /* weights changed in the model: the plan reloads them before the next run */
        bf_model_param(m, c, 0, &w);
        for (int i = 0; i < 4 * 3 * 9; i++)
            w.data[i] *= 2.0f;
        bf_param_view b;
        bf_model_param(m, c, 1, &b);
        for (int i = 0; i < 4; i++)
            b.data[i] *= 2.0f;
        bf_model_touch(m);
        CHECK(bf_cl_plan_forward(p, x, NULL, y2, NULL) == BF_STATUS_OK, "forward 2");
        int ok = 1;
        for (int i = 0; i < 200; i++)
            ok &= fabsf(y2[i] - 2 * y1[i]) <= 1e-5f * (1 + fabsf(y2[i]));
        CHECK(ok, "weights reloaded after bf_model_touch");
        CHECK(bf_cl_plan_forward(p, NULL, NULL, y2, NULL) == BF_STATUS_INVALID_ARGUMENT,
              "NULL src");
    }
    bf_cl_plan_destroy(p);
    bf_cl_plan_destroy(NULL);
    /* a kernel build failure carries the compiler's log (float5 is no OpenCL type) */
    p = NULL;
    setenv("BF_OPENCL_BUILD_OPTIONS", "-DBF_TN=5", 1);
    st = bf_cl_plan_create(&p, m, &pp, g_device);
    unsetenv("BF_OPENCL_BUILD_OPTIONS");
    CHECK(st == BF_STATUS_OPENCL && p == NULL && strstr(bf_last_error(), "clBuildProgram") &&
              strstr(bf_last_error(), "build log") && strstr(bf_last_error(), "float5"),
          "build failure with its log");
    /* a plan that starts at the reduce part reads the head's output */
    p = NULL;
    pp.part_begin = BF_PART_REDUCE;
    pp.part_end = BF_PART_REDUCE;
    st = bf_cl_plan_create(&p, m, &pp, g_device);
    CHECK(st == BF_STATUS_OK, "reduce-only plan");
    if (st == BF_STATUS_OK) {
        bf_io_desc d;
        bf_cl_plan_io(p, 0, &d);
        CHECK(d.dtype == BF_F32 && d.dims[1] == 4 && d.dims[2] == 5, "reduce-only source");
        bf_cl_plan_io(p, 1, &d);
        CHECK(d.dtype == BF_U8 && d.quantized && d.dims[0] == 2, "reduce-only destination");
    }
    bf_cl_plan_destroy(p);
    bf_model_destroy(m);
}

int main(void)
{
    bf_cl_device_info dev[8];
    int n = 0;
    bf_status st = bf_cl_devices(dev, 8, &n);
    if (st != BF_STATUS_OK || n == 0) {
        printf("skipped: no OpenCL device (%s)\n", st ? bf_last_error() : "no platform");
        return 0;
    }
    for (int i = 0; i < n && i < 8; i++)
        printf("device %d: %s / %s (%s, %d CUs, %lld MiB, local %lld KiB)\n", i, dev[i].platform,
               dev[i].name, dev[i].type == BF_CL_DEVICE_GPU ? "GPU" : "CPU", dev[i].compute_units,
               (long long)(dev[i].global_mem >> 20), (long long)(dev[i].local_mem >> 10));
    if (getenv("BF_CL_DEVICE"))
        g_device = atoi(getenv("BF_CL_DEVICE"));
    /* twice: the device's own work-item layout, then the GPU one (tile width 4, one
     * output per work-item, pixel-fastest GEMM) forced, so both kernel variants run here */
    for (int pass = 0; pass < 2; pass++) {
        printf("-- %s work-item layout\n", pass ? "GPU (forced)" : "device's");
        if (pass)
            setenv("BF_OPENCL_GPU_LAYOUT", "1", 1);
        test_convs();
        test_fusion();
        test_other_ops();
        test_plain_classifier();
        test_quant();
        test_activations();
        test_mul_concat();
        test_asymmetric_padding();
        test_errors_and_reload();
    }
    printf("%s: %d checks, %d failed\n", g_fail ? "FAILED" : "ok", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
