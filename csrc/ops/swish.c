/* Swish, x * sigmoid(x), in inference by a kernel of our own rather than oneDNN's eltwise
 * (standalone, or as a conv's post-op).  oneDNN's took 0.33 ms on top of the 16 -> 96
 * pointwise conv at 112x112 of EfficientNet-B0 at batch 1, 2.1 of its 7.3 ms in all; this
 * pass over the conv's output while it is still in cache takes 0.21 ms there (AMD EPYC,
 * AVX-512, 2 threads; docs/PERFORMANCE.md).  Training keeps oneDNN's forward and backward.
 *
 * One formula, written three times (AVX-512, AVX2 + FMA, scalar C) with the same operations
 * in the same order, so that every path gives the same bits:
 *   e = exp(-min(|x|, 80))      Cody-Waite reduction, degree-7 polynomial, times 2^n
 *   s = 1 / (1 + e)             sigmoid(|x|)
 *   s = e * s where x < 0       sigmoid(x) = 1 - sigmoid(-x) = e / (1 + e)
 *   s = 0 where x < -80         (x e^x is below 1e-33 there)
 *   y = x * s
 * The clamp keeps 2^n a normal float.  A NaN stays NaN (the last product), +Inf stays +Inf
 * and -Inf gives NaN, as x * sigmoid(x) does.  Largest error against float64: 2.3e-7
 * relative.  Elements past the last whole vector go through the same vector code (a padded
 * copy), so an element's result never depends on where it sits in its tensor. */
#include <math.h>
#include <string.h>

#include "core/plan.h"

#define SW_CLAMP 80.0f
#define SW_LOG2E 1.44269504088896341f
#define SW_LN2_HI 0.693359375f    /* ln 2 split in two: n * hi is exact for |n| < 2^9 */
#define SW_LN2_LO -2.12194440e-4f
/* exp(r) = 1 + r + r^2 P(r) on |r| <= ln(2) / 2 (Cephes' expf) */
#define SW_P0 1.9875691500e-4f
#define SW_P1 1.3981999507e-3f
#define SW_P2 8.3334519073e-3f
#define SW_P3 4.1665795894e-2f
#define SW_P4 1.6666665459e-1f
#define SW_P5 5.0000001201e-1f

/* Below this many elements the pass runs on the calling thread alone. */
enum { SW_PARALLEL_MIN = 1 << 14, SW_CHUNK = 1024 };

static float swish_scalar(float x)
{
    float t = -fminf(fabsf(x), SW_CLAMP); /* fminf(NaN, c) = c, as the vector min's */
    float n = nearbyintf(t * SW_LOG2E);
    float r = fmaf(-n, SW_LN2_HI, t);
    r = fmaf(-n, SW_LN2_LO, r);
    float p = SW_P0;
    p = fmaf(p, r, SW_P1);
    p = fmaf(p, r, SW_P2);
    p = fmaf(p, r, SW_P3);
    p = fmaf(p, r, SW_P4);
    p = fmaf(p, r, SW_P5);
    p = fmaf(p, r * r, r + 1.0f);
    float e = ldexpf(p, (int)n);
    float s = 1.0f / (e + 1.0f);
    if (x < 0.0f)
        s = s * e;
    if (x < -SW_CLAMP)
        s = 0.0f;
    return x * s;
}

static void swish_run_scalar(const float *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = swish_scalar(src[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define SW_AVX512 __attribute__((target("avx512f")))
#define SW_AVX2 __attribute__((target("avx2,fma")))

SW_AVX512 static inline __m512 swish_v16(__m512 x)
{
    __m512 t = _mm512_sub_ps(_mm512_setzero_ps(),
                             _mm512_min_ps(_mm512_abs_ps(x), _mm512_set1_ps(SW_CLAMP)));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(SW_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SW_LN2_HI), t);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SW_LN2_LO), r);
    __m512 p = _mm512_set1_ps(SW_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SW_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SW_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SW_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SW_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SW_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 e = _mm512_scalef_ps(p, n);
    __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
    s = _mm512_mask_mul_ps(s, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), s, e);
    s = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-SW_CLAMP), _CMP_NLT_UQ), s);
    return _mm512_mul_ps(x, s);
}

SW_AVX512 static void swish_run_avx512(const float *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, swish_v16(_mm512_loadu_ps(src + i)));
    if (i < n) {
        float buf[16] = {0};
        memcpy(buf, src + i, (n - i) * sizeof(float));
        _mm512_storeu_ps(buf, swish_v16(_mm512_loadu_ps(buf)));
        memcpy(dst + i, buf, (n - i) * sizeof(float));
    }
}

SW_AVX2 static inline __m256 swish_v8(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_sub_ps(_mm256_setzero_ps(),
                             _mm256_min_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(SW_CLAMP)));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(SW_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SW_LN2_HI), t);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SW_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SW_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SW_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SW_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SW_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SW_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SW_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n for n in [-116, 0] (|t| <= 80): the exponent field alone, exact */
    __m256 two_n = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
    __m256 e = _mm256_mul_ps(p, two_n);
    __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
    s = _mm256_blendv_ps(s, _mm256_mul_ps(s, e),
                         _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    s = _mm256_and_ps(s, _mm256_cmp_ps(x, _mm256_set1_ps(-SW_CLAMP), _CMP_NLT_UQ));
    return _mm256_mul_ps(x, s);
}

SW_AVX2 static void swish_run_avx2(const float *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, swish_v8(_mm256_loadu_ps(src + i)));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, src + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(buf, swish_v8(_mm256_loadu_ps(buf)));
        memcpy(dst + i, buf, (n - i) * sizeof(float));
    }
}
#endif

typedef void (*swish_kernel)(const float *src, float *dst, size_t n);

/* The kernel for `isa`, or NULL where this CPU cannot run it.  BF_KERNEL_BEST: the widest
 * oneDNN itself may use (ONEDNN_MAX_CPU_ISA limits both) that this CPU runs, what plans run;
 * never NULL. */
static swish_kernel swish_pick(bf_kernel_isa isa)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == BF_KERNEL_BEST) {
        dnnl_cpu_isa_t have = dnnl_get_effective_cpu_isa();
        swish_kernel k = NULL;
        if ((have & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core)
            k = swish_pick(BF_KERNEL_AVX512);
        if (!k && (have & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2)
            k = swish_pick(BF_KERNEL_AVX2);
        return k ? k : swish_run_scalar;
    }
    if (isa == BF_KERNEL_AVX512)
        return __builtin_cpu_supports("avx512f") ? swish_run_avx512 : NULL;
    if (isa == BF_KERNEL_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? swish_run_avx2
                                                                              : NULL;
#endif
    return isa == BF_KERNEL_BEST || isa == BF_KERNEL_SCALAR ? swish_run_scalar : NULL;
}

static void swish_with(swish_kernel k, const float *src, float *dst, size_t n)
{
    size_t chunks = (n + SW_CHUNK - 1) / SW_CHUNK;
#pragma omp parallel for schedule(static) if (n >= SW_PARALLEL_MIN)
    for (size_t c = 0; c < chunks; c++) {
        size_t at = c * SW_CHUNK;
        k(src + at, dst + at, n - at < SW_CHUNK ? n - at : SW_CHUNK);
    }
}

bf_status bf_swish(bf_kernel_isa kernel, const float *src, float *dst, size_t n)
{
    swish_kernel k = swish_pick(kernel);
    if ((n && (!src || !dst)) || (int)kernel < BF_KERNEL_BEST || kernel > BF_KERNEL_SCALAR)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_swish: bad argument");
    if (!k)
        return bf_error(BF_STATUS_UNSUPPORTED, "bf_swish: this CPU cannot run kernel %d",
                        (int)kernel);
    swish_with(k, src, dst, n);
    return BF_STATUS_OK;
}

/* A standalone swish layer in inference: its source into a new value of the same layout. */
static bf_status swish_node_run(bf_plan *p, bf_node *n)
{
    const bf_value *in = &p->values[n->src[0]], *out = &p->values[n->dst];
    const float *x = bf_mem_handle(in->mem);
    float *y = bf_mem_handle(out->mem);
    if (!x || !y)
        return bf_error(BF_STATUS_BACKEND, "swish: a value has no buffer");
    return bf_swish(BF_KERNEL_BEST, x, y, in->size / sizeof(float));
}

bf_status bf_op_swish_fwd(bf_plan *p, const bf_node *proto)
{
    bf_node *n = bf_plan_push_node(p, proto);
    if (!n)
        return BF_STATUS_OUT_OF_MEMORY;
    n->run = swish_node_run;
    n->dst = bf_plan_add_value(p, p->values[n->src[0]].md);
    return n->dst < 0 ? BF_STATUS_OUT_OF_MEMORY : BF_STATUS_OK;
}

bf_status bf_node_post_swish(bf_plan *p, const bf_node *n)
{
    const bf_value *v = &p->values[n->dst];
    float *y = bf_mem_handle(v->mem);
    if (!y)
        return bf_error(BF_STATUS_BACKEND, "swish: a value has no buffer");
    return bf_swish(BF_KERNEL_BEST, y, y, v->size / sizeof(float));
}
