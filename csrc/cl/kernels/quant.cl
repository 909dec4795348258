/* The 8-bit quantizer of the reduction unit, bit-exact to butterfly.h's formula in float32:
 *     inv = 255 / (max - min)   (inv = 0 when max == min)
 *     q   = clamp(floor((x - min) * inv + 0.5), 0, 255)
 * min / max are exact whatever the reduction order.  The header rounds the product
 * (x - min) * inv to float before adding 0.5; an fma would round once, so contraction is
 * off here and the product goes through a volatile.  (A deliberately fma'd variant gave
 * the same bytes on every test input, boundaries included: the double rounding only
 * matters in rare corner cases; we still follow the formula's operation order.)
 * The division needs correctly rounded division: the host builds with
 * -cl-fp32-correctly-rounded-divide-sqrt when the device has it, and otherwise computes
 * inv itself (quant_final's `want_inv` = 0). */
#pragma OPENCL FP_CONTRACT OFF

/* Partial min / max: global (L * chunks, N), one work-group per chunk of a sample; the
 * local size L is a power of two chosen by the host.  part[n][chunk] = (min, max). */
__kernel void quant_minmax(__global const float *restrict x, int len, int chunk_len,
                           __global float *restrict part, __local float *lo, __local float *hi)
{
    const int chunk = get_group_id(0), n = get_global_id(1), nchunks = get_num_groups(0);
    const int l = get_local_id(0), L = get_local_size(0);
    const int begin = chunk * chunk_len, end = min(begin + chunk_len, len);
    __global const float *xp = x + (size_t)n * len;
    float a = INFINITY, b = -INFINITY;
    for (int i = begin + l; i < end; i += L) {
        const float v = xp[i];
        if (isnan(v)) { /* fmin / fmax skip a NaN: an infinite range reports it instead */
            a = -INFINITY;
            b = INFINITY;
        }
        a = fmin(a, v);
        b = fmax(b, v);
    }
    lo[l] = a;
    hi[l] = b;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = L / 2; h > 0; h /= 2) {
        if (l < h) {
            lo[l] = fmin(lo[l], lo[l + h]);
            hi[l] = fmax(hi[l], hi[l + h]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0) {
        part[((size_t)n * nchunks + chunk) * 2] = lo[0];
        part[((size_t)n * nchunks + chunk) * 2 + 1] = hi[0];
    }
}

/* One work-item per sample: range[n] = (min, max), inv[n]. */
__kernel void quant_final(__global const float *restrict part, int nchunks,
                          __global float *restrict range, __global float *restrict inv,
                          int N, int want_inv)
{
    const int n = get_global_id(0);
    if (n >= N)
        return;
    float a = INFINITY, b = -INFINITY;
    for (int c = 0; c < nchunks; c++) {
        a = fmin(a, part[((size_t)n * nchunks + c) * 2]);
        b = fmax(b, part[((size_t)n * nchunks + c) * 2 + 1]);
    }
    range[2 * n] = a;
    range[2 * n + 1] = b;
    if (want_inv) {
        const float d = b - a;
        inv[n] = d == 0.0f ? 0.0f : 255.0f / d;
    }
}

/* global (len, N) */
__kernel void quantize(__global const float *restrict x, __global uchar *restrict q,
                       __global const float *restrict range, __global const float *restrict inv,
                       int len)
{
    const int i = get_global_id(0), n = get_global_id(1);
    if (i >= len)
        return;
    const float lo = range[2 * n], s = inv[n];
    const size_t at = (size_t)n * len + i;
    volatile float t = (x[at] - lo) * s; /* rounded to float here, never fused */
    float v = floor(t + 0.5f);
    v = fmin(fmax(v, 0.0f), 255.0f);
    q[at] = (uchar)v;
}
