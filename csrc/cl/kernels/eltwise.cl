/* Element-wise ops that could not be fused into a convolution: add (+ activation), a
 * per-channel affine (a batch-norm with no conv before it, or a lone activation with
 * scale 1 / shift 0), mul, the copies of a concat and nearest-neighbour upsampling.
 * act: any BF_ACT_* code; alpha / beta are the activation's (hardsigmoid: slope, offset;
 * clip: min, max; leaky ReLU: slope), ignored by the others. */
float bf_act_ab(float v, int act, float alpha, float beta)
{
    switch (act) {
    case 6: /* hardsigmoid */
        return fmin(fmax(alpha * v + beta, 0.0f), 1.0f);
    case 7: /* clip, as oneDNN: max first, then min */
        return fmin(fmax(v, alpha), beta);
    case 8: /* leaky ReLU */
        return v > 0.0f ? v : alpha * v;
    default:
        return BF_ACT(v, act);
    }
}

__kernel void add_act(__global const float *restrict a, __global const float *restrict b,
                      __global float *restrict y, int n, int act, float alpha, float beta)
{
    const int i = get_global_id(0);
    if (i < n)
        y[i] = bf_act_ab(a[i] + b[i], act, alpha, beta);
}

/* global (HW, N*C); scale/shift per channel, NULL-free: the host always passes both */
__kernel void affine_act(__global const float *restrict x, __global float *restrict y,
                         __global const float *restrict scale,
                         __global const float *restrict shift, int HW, int C, int act,
                         float alpha, float beta)
{
    const int i = get_global_id(0), z = get_global_id(1);
    if (i >= HW)
        return;
    const int c = z % C;
    const size_t at = (size_t)z * HW + i;
    y[at] = bf_act_ab(x[at] * scale[c] + shift[c], act, alpha, beta);
}

/* y = a * b with b of a's shape, or (bcast) b of shape (N, C, 1, 1): one factor per
 * channel (squeeze-and-excitation).  global (HW, N*C). */
__kernel void mul_bcast(__global const float *restrict a, __global const float *restrict b,
                        __global float *restrict y, int HW, int bcast)
{
    const int i = get_global_id(0), z = get_global_id(1);
    if (i >= HW)
        return;
    const size_t at = (size_t)z * HW + i;
    y[at] = a[at] * b[bcast ? (size_t)z : at];
}

/* One source of a concat over channels: x, `len` = C_src*H*W floats per sample, into y
 * (`ylen` floats per sample) at `offset` = (channels before it) * H*W.  global (len, N). */
__kernel void concat_copy(__global const float *restrict x, __global float *restrict y,
                          int len, int ylen, int offset)
{
    const int i = get_global_id(0), n = get_global_id(1);
    if (i < len)
        y[(size_t)n * ylen + offset + i] = x[(size_t)n * len + i];
}

/* global (OW, OH, N*C) */
__kernel void upsample_nearest(__global const float *restrict x, __global float *restrict y,
                               int H, int W, int s)
{
    const int ox = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
    const int OW = W * s, OH = H * s;
    if (ox >= OW || oy >= OH)
        return;
    y[((size_t)z * OH + oy) * OW + ox] = x[((size_t)z * H + oy / s) * W + ox / s];
}

/* Softmax over channels at each pixel (oneDNN's softmax_accurate on axis 1: subtract the
 * maximum, exp, normalize).  global (HW, N). */
__kernel void softmax_channels(__global const float *restrict x, __global float *restrict y,
                               int C, int HW)
{
    const int i = get_global_id(0), n = get_global_id(1);
    if (i >= HW)
        return;
    __global const float *xp = x + (size_t)n * C * HW + i;
    __global float *yp = y + (size_t)n * C * HW + i;
    float m = -INFINITY, s = 0.0f;
    for (int c = 0; c < C; c++)
        m = fmax(m, xp[(size_t)c * HW]);
    for (int c = 0; c < C; c++) {
        const float e = exp(xp[(size_t)c * HW] - m);
        yp[(size_t)c * HW] = e;
        s += e;
    }
    for (int c = 0; c < C; c++)
        yp[(size_t)c * HW] /= s;
}
