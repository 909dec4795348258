/* Convolution (and linear layers, as 1x1 convs over the flattened input):
 *   conv_gemm        register-tiled GEMM on x itself (1x1 stride 1) or on im2col columns
 *   conv_tiled_s1/s2 the same GEMM tile reading the zero-padded input directly (implicit
 *                    GEMM) for strides 1 and 2: every ResNet conv without an im2col buffer
 *   conv_dw_s1/s2    depthwise / thin-group convs as row tiles; conv_direct for the rest
 *   im2col, pad_input the gathers those need.
 * Epilogue (all kernels): + bias (batch-norm folded in), + residual, then an activation
 * without parameters (BF_ACT).
 * Build options: BF_TN = pixels per work-item (a vector of 4, 8 or 16), BF_TM = output
 * channels per work-item (8 or 16), BF_P_FAST = 1 when neighbouring work-items should take
 * neighbouring pixels (GPU coalescing), 0 when they should share pixels and take
 * neighbouring output channels (CPU cache reuse); BF_RW = outputs along a row per
 * work-item in im2col / conv_direct / pools (1 on GPUs, 16 on CPUs, where per-work-item
 * index arithmetic would dominate). */
#ifndef BF_TN
#define BF_TN 8
#endif
#ifndef BF_P_FAST
#define BF_P_FAST 0
#endif
#ifndef BF_RW
#define BF_RW 1 /* outputs of a row per work-item in the gather kernels */
#endif
#ifndef BF_TM
#define BF_TM 8 /* output channels per work-item: 8 or 16 */
#endif

#define BF_CAT_(a, b) a##b
#define BF_CAT(a, b) BF_CAT_(a, b)
#define floatn BF_CAT(float, BF_TN)
#define vloadn BF_CAT(vload, BF_TN)
#define vstoren BF_CAT(vstore, BF_TN)

/* act: the core's BF_ACT_* codes that take no parameters: 0 none, 1 ReLU, 2 ReLU6,
 * 3 sigmoid, 4 swish (x * sigmoid(x)), 5 hardswish (x * clip(x / 6 + 0.5, 0, 1)), each
 * as oneDNN's eltwise (logistic, swish with alpha 1, hardswish with 1/6 and 1/2).  `v`
 * is evaluated several times: pass a variable.  Scalars and vectors alike. */
#define BF_SIGMOID(v) (1.0f / (1.0f + exp(-(v))))
#define BF_ACT(v, act)                                                                     \
    ((act) == 1   ? fmax((v), 0.0f)                                                        \
     : (act) == 2 ? fmin(fmax((v), 0.0f), 6.0f)                                            \
     : (act) == 3 ? BF_SIGMOID(v)                                                          \
     : (act) == 4 ? (v) / (1.0f + exp(-(v)))                                               \
     : (act) == 5 ? (v) * fmin(fmax((v) * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f)               \
                  : (v))

#if BF_P_FAST
#define BF_TILE_IDS(ob, pb) const int pb = get_global_id(0), ob = get_global_id(1)
#else
#define BF_TILE_IDS(ob, pb) const int ob = get_global_id(0), pb = get_global_id(1)
#endif

/* The TM accumulators a0.. of a work-item, and one k step: TM weights (one vector load)
 * times the x vector. */
#if BF_TM == 16
#define BF_ACC_DECL                                                                        \
    floatn a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, a8 = 0, a9 = 0, \
           a10 = 0, a11 = 0, a12 = 0, a13 = 0, a14 = 0, a15 = 0
#define BF_ACC_LIST a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15
#define BF_STEP(xv, wp)                                                                    \
    do {                                                                                   \
        const float16 wv = vload16(0, (wp));                                               \
        BF_FMA8_AT(xv, wv.lo, a0, a1, a2, a3, a4, a5, a6, a7);                             \
        BF_FMA8_AT(xv, wv.hi, a8, a9, a10, a11, a12, a13, a14, a15);                       \
    } while (0)
#else
#define BF_ACC_DECL floatn a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0
#define BF_ACC_LIST a0, a1, a2, a3, a4, a5, a6, a7
#define BF_STEP(xv, wp)                                                                    \
    do {                                                                                   \
        const float8 wv = vload8(0, (wp));                                                 \
        BF_FMA8_AT(xv, wv, a0, a1, a2, a3, a4, a5, a6, a7);                                \
    } while (0)
#endif

#define BF_FMA8_AT(xv, wv, b0, b1, b2, b3, b4, b5, b6, b7)                                 \
    do {                                                                                   \
        b0 = fma((floatn)((wv).s0), (xv), b0);                                             \
        b1 = fma((floatn)((wv).s1), (xv), b1);                                             \
        b2 = fma((floatn)((wv).s2), (xv), b2);                                             \
        b3 = fma((floatn)((wv).s3), (xv), b3);                                             \
        b4 = fma((floatn)((wv).s4), (xv), b4);                                             \
        b5 = fma((floatn)((wv).s5), (xv), b5);                                             \
        b6 = fma((floatn)((wv).s6), (xv), b6);                                             \
        b7 = fma((floatn)((wv).s7), (xv), b7);                                             \
    } while (0)

/* Epilogue of one tile row: + bias, + residual, activation, store the nvalid lanes. */
void bf_store_tile(floatn v, float b, __global const float *restrict res, int has_res,
                          int act, __global float *restrict y, size_t at, int nvalid)
{
    v += (floatn)(b);
    if (has_res)
        v += vloadn(0, res + at);
    v = BF_ACT(v, act);
    if (nvalid == BF_TN) {
        vstoren(v, 0, y + at);
    } else {
        float t[BF_TN];
        vstoren(v, 0, t);
        for (int j = 0; j < nvalid; j++)
            y[at + j] = t[j];
    }
}

#define BF_STORE_TILES(AT)                                                                 \
    do {                                                                                   \
        floatn acc[BF_TM] = {BF_ACC_LIST};                                                 \
        for (int i = 0; i < BF_TM && ob * BF_TM + i < Og; i++) {                           \
            const int o = g * Og + ob * BF_TM + i;                                         \
            bf_store_tile(acc[i], bias[o], res, has_res, act, y, (AT), nvalid);            \
        }                                                                                  \
    } while (0)

/*
 * y[n, g*Og + o, p] = act(sum_k w[g, o, k] * x[n*G + g, k, p] + bias + res)
 * w is packed [G][ceil(Og/TM)][K][TM] (zero rows past Og) so that one vector load gives
 * the TM weights of a k; x rows are `x_ld` floats apart, blocks (n, g) `x_zstride` apart.
 * Buffers carry slack, so whole-vector loads past P (discarded lanes) stay in bounds.
 * global (Ob, ceil(P / TN), N*G) on CPUs, dims 0 and 1 swapped on GPUs.
 */
__kernel void conv_gemm(__global const float *restrict w, __global const float *restrict bias,
                        __global const float *restrict x, __global float *restrict y,
                        __global const float *restrict res, int Og, int K, int P, int x_ld,
                        int x_zstride, int G, int act, int has_res)
{
    BF_TILE_IDS(ob, pb);
    const int z = get_global_id(2), Ob = (Og + BF_TM - 1) / BF_TM, p0 = pb * BF_TN;
    if (ob >= Ob || p0 >= P)
        return;
    const int g = z % G, n = z / G, nvalid = min(BF_TN, P - p0);
    __global const float *wp = w + (size_t)(g * Ob + ob) * K * BF_TM;
    __global const float *xp = x + (size_t)z * x_zstride + p0;
    BF_ACC_DECL;
    for (int k = 0; k < K; k++) {
        const floatn xv = vloadn(0, xp + (size_t)k * x_ld);
        BF_STEP(xv, wp + k * BF_TM);
    }
    BF_STORE_TILES(((size_t)n * G * Og + o) * P + p0);
}

/*
 * Implicit GEMM for strides 1 and 2 (every conv of a ResNet but the 1x1 stride-1 ones,
 * which take conv_gemm on x directly): a tile is TN neighbouring outputs of one output
 * row, and its x vector for k = (c, ky, kx) is one contiguous load from a prepared input
 * grid: for stride 1 the zero-padded input (Hp x Wp per channel), for stride 2 its four
 * phases (even/odd rows x even/odd columns, each Hp x Wp, see phase_split), in which a
 * stride-2 window is again contiguous.  No im2col buffer: the input is re-read kh*kw times
 * from cache instead of being written and read kh*kw times through memory.
 * global (Ob, OH * xblocks, N*G), xblocks = ceil(OW / TN); dims 0 and 1 swapped on GPUs.
 */
#define BF_PLANE(S) ((size_t)(S) * (S) * Hp * Wp) /* floats per channel of the grid */
#define BF_XAT_S1(xc, ry, rx) ((xc) + (oy + (ry)) * Wp + ox0 + (rx))
#define BF_XAT_S2(xc, ry, rx)                                                              \
    ((xc) + (((ry) & 1) * 2 + ((rx) & 1)) * Hp * Wp + (oy + ((ry) >> 1)) * Wp + ox0 +      \
     ((rx) >> 1))

#define BF_CONV_TILED(NAME, XAT, S)                                                        \
__kernel void NAME(__global const float *restrict w, __global const float *restrict bias,  \
                   __global const float *restrict x, __global float *restrict y,           \
                   __global const float *restrict res, int Og, int Cg, int kh, int kw,     \
                   int dh, int dw, int Hp, int Wp, int OH, int OW, int xblocks, int G,     \
                   int act, int has_res)                                                   \
{                                                                                          \
    BF_TILE_IDS(ob, t);                                                                    \
    const int z = get_global_id(2), Ob = (Og + BF_TM - 1) / BF_TM;                         \
    const int oy = t / xblocks, ox0 = (t - oy * xblocks) * BF_TN;                          \
    if (ob >= Ob || oy >= OH)                                                              \
        return;                                                                            \
    const int g = z % G, n = z / G, nvalid = min(BF_TN, OW - ox0);                         \
    __global const float *wp = w + (size_t)(g * Ob + ob) * Cg * kh * kw * BF_TM;           \
    __global const float *xc = x + (size_t)z * Cg * BF_PLANE(S);                           \
    BF_ACC_DECL;                                                                           \
    for (int c = 0; c < Cg; c++, xc += BF_PLANE(S))                                        \
        for (int ky = 0; ky < kh; ky++)                                                    \
            for (int kx = 0; kx < kw; kx++, wp += BF_TM) {                                 \
                const floatn xv = vloadn(0, XAT(xc, ky * dh, kx * dw));                    \
                BF_STEP(xv, wp);                                                           \
            }                                                                              \
    BF_STORE_TILES((((size_t)n * G * Og + o) * OH + oy) * OW + ox0);                       \
}

BF_CONV_TILED(conv_tiled_s1, BF_XAT_S1, 1)
BF_CONV_TILED(conv_tiled_s2, BF_XAT_S2, 2)

/* Padded copy for stride-1 tiles: (N*C, H, W) -> (N*C, Hp, Wp) with the input at (ph, pw)
 * and `fill` around it (0 for convs, -inf for max-pooling).  One padded row per
 * work-item: the copy is a plain loop the compiler turns into vector moves.
 * global (Hp, N*C). */
__kernel void pad_input(__global const float *restrict x, __global float *restrict xp, int H,
                        int W, int Hp, int Wp, int ph, int pw, float fill)
{
    const int iy = get_global_id(0), z = get_global_id(1), sy = iy - ph;
    if (iy >= Hp)
        return;
    __global float *dst = xp + ((size_t)z * Hp + iy) * Wp;
    if (sy < 0 || sy >= H) {
        for (int i = 0; i < Wp; i++)
            dst[i] = fill;
        return;
    }
    __global const float *src = x + ((size_t)z * H + sy) * W;
    for (int i = 0; i < pw; i++)
        dst[i] = fill;
    for (int i = 0; i < W; i++)
        dst[pw + i] = src[i];
    for (int i = pw + W; i < Wp; i++)
        dst[i] = fill;
}

/* Phase grid for stride-2 tiles: phase (py, px) of channel z holds the padded input's
 * rows py, py+2, ... and columns px, px+2, ...: (N*C, 2, 2, Hq, Wq), Hq = ceil(Hpad / 2),
 * with `fill` outside the input.  Work-item: one row of one phase, both column phases;
 * where both source columns of a j are inside, 8 js at a time de-interleave one 16-vector.
 * global (2 * Hq, N*C). */
__kernel void phase_split(__global const float *restrict x, __global float *restrict xq, int H,
                          int W, int Hq, int Wq, int ph, int pw, float fill)
{
    const int r = get_global_id(0), z = get_global_id(1), py = r & 1, i = r >> 1;
    if (i >= Hq)
        return;
    const int sy = 2 * i + py - ph, row_ok = sy >= 0 && sy < H;
    __global const float *src = x + ((size_t)z * H + (row_ok ? sy : 0)) * W;
    __global float *d0 = xq + (((size_t)z * 4 + py * 2) * Hq + i) * Wq, *d1 = d0 + Hq * Wq;
    /* [ja, jb): 0 <= 2j - pw and 2j + 1 - pw < W */
    const int ja = row_ok ? min(Wq, (pw + 1) / 2) : Wq;
    const int jb = row_ok ? min(Wq, max(ja, (W + pw) / 2)) : Wq;
    int j = ja;
    for (; j + 8 <= jb; j += 8) {
        const float16 v = vload16(0, src + 2 * j - pw);
        vstore8(v.even, 0, d0 + j);
        vstore8(v.odd, 0, d1 + j);
    }
    for (int k = 0; k < Wq; k++) {
        if (k >= ja && k < j)
            continue; /* done by the vector loop */
        const int s0 = 2 * k - pw, s1 = s0 + 1;
        d0[k] = row_ok && s0 >= 0 && s0 < W ? src[s0] : fill;
        d1[k] = row_ok && s1 >= 0 && s1 < W ? src[s1] : fill;
    }
}

/* y[z, oy, ox] = x[z, s*oy, s*ox]: the input of a strided 1x1 conv, which then runs as
 * a plain GEMM.  global (OH, N*C). */
__kernel void subsample(__global const float *restrict x, __global float *restrict y, int H,
                        int W, int OH, int OW, int s)
{
    const int oy = get_global_id(0), z = get_global_id(1);
    if (oy >= OH)
        return;
    __global const float *src = x + ((size_t)z * H + (size_t)oy * s) * W;
    __global float *dst = y + ((size_t)z * OH + oy) * OW;
    for (int j = 0; j < OW; j++)
        dst[j] = src[j * s];
}

/* Depthwise and thin-group convs (strides 1, 2) as row tiles: TN outputs of one row and
 * one channel per work-item, x vectors from the prepared grid as in conv_tiled, the
 * weight broadcast.  global (OH * xblocks, N*O). */
#define BF_CONV_DW(NAME, XAT, S)                                                           \
__kernel void NAME(__global const float *restrict w, __global const float *restrict bias,  \
                   __global const float *restrict x, __global float *restrict y,           \
                   __global const float *restrict res, int C, int O, int G, int kh,        \
                   int kw, int dh, int dw, int Hp, int Wp, int OH, int OW, int xblocks,    \
                   int act, int has_res)                                                   \
{                                                                                          \
    const int t = get_global_id(0), z = get_global_id(1);                                  \
    const int oy = t / xblocks, ox0 = (t - oy * xblocks) * BF_TN;                          \
    if (oy >= OH)                                                                          \
        return;                                                                            \
    const int n = z / O, o = z - n * O, Cg = C / G, g = o / (O / G);                       \
    __global const float *wp = w + (size_t)o * Cg * kh * kw;                               \
    __global const float *xc = x + ((size_t)n * C + g * Cg) * BF_PLANE(S);                 \
    floatn acc = 0;                                                                        \
    for (int c = 0; c < Cg; c++, xc += BF_PLANE(S))                                        \
        for (int ky = 0; ky < kh; ky++)                                                    \
            for (int kx = 0; kx < kw; kx++)                                                \
                acc = fma((floatn)(*wp++), vloadn(0, XAT(xc, ky * dh, kx * dw)), acc);     \
    bf_store_tile(acc, bias[o], res, has_res, act, y,                                      \
                  ((size_t)z * OH + oy) * OW + ox0, min(BF_TN, OW - ox0));                 \
}

BF_CONV_DW(conv_dw_s1, BF_XAT_S1, 1)
BF_CONV_DW(conv_dw_s2, BF_XAT_S2, 2)

/* col[z, k, p] for z = n*G + g, k = (c, ky, kx) over the group's channels; p < Ppad
 * (columns past OH*OW are zero, so GEMM tiles never read garbage).  A work-item fills
 * BF_RW neighbouring pixels of one output row: the index arithmetic (integer divisions)
 * is paid once per run of pixels.  global (ceil(OW / BF_RW), OH, K * N * G). */
__kernel void im2col(__global const float *restrict x, __global float *restrict col, int C,
                     int H, int W, int OH, int OW, int G, int kh, int kw, int sh, int sw,
                     int ph, int pw, int dh, int dw, int Ppad, int K)
{
    const int xb = get_global_id(0), oy = get_global_id(1), kz = get_global_id(2);
    if (xb * BF_RW >= OW || oy >= OH)
        return;
    const int z = kz / K, k = kz - z * K, n = z / G, g = z - n * G, Cg = C / G;
    const int khw = kh * kw, c = k / khw, r = k - c * khw, ky = r / kw, kx = r - ky * kw;
    const int iy = oy * sh - ph + ky * dh, P = OH * OW;
    __global float *dst = col + ((size_t)z * K + k) * Ppad + oy * OW;
    __global const float *src = x + (((size_t)n * C + g * Cg + c) * H + iy) * W;
    const int row_ok = iy >= 0 && iy < H;
    for (int j = 0; j < BF_RW; j++) {
        const int ox = xb * BF_RW + j, ix = ox * sw - pw + kx * dw;
        if (ox < OW)
            dst[ox] = row_ok && ix >= 0 && ix < W ? src[ix] : 0.0f;
    }
    if (oy == OH - 1 && xb == 0)
        for (int p = P; p < Ppad; p++)
            col[((size_t)z * K + k) * Ppad + p] = 0.0f;
}

/* BF_RW neighbouring outputs of one row per work-item: (xb, oy, n*O + o).  Any groups,
 * stride, padding, dilation; used for depthwise and thin-group convs where a GEMM tile
 * would be mostly padding.  w is the model's (O, C/G, kh, kw) layout, batch-norm folded. */
__kernel void conv_direct(__global const float *restrict w, __global const float *restrict bias,
                          __global const float *restrict x, __global float *restrict y,
                          __global const float *restrict res, int C, int H, int W, int O,
                          int OH, int OW, int G, int kh, int kw, int sh, int sw, int ph, int pw,
                          int dh, int dw, int act, int has_res)
{
    const int xb = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
    if (xb * BF_RW >= OW || oy >= OH)
        return;
    const int n = z / O, o = z - n * O, Cg = C / G, g = o / (O / G), ox0 = xb * BF_RW;
    __global const float *wp = w + (size_t)o * Cg * kh * kw;
    float acc[BF_RW];
    for (int j = 0; j < BF_RW; j++)
        acc[j] = 0.0f;
    for (int c = 0; c < Cg; c++) {
        __global const float *xp = x + ((size_t)n * C + g * Cg + c) * H * W;
        for (int ky = 0; ky < kh; ky++) {
            const int iy = oy * sh - ph + ky * dh;
            if (iy < 0 || iy >= H)
                continue;
            for (int kx = 0; kx < kw; kx++) {
                const float wv = wp[(c * kh + ky) * kw + kx];
                for (int j = 0; j < BF_RW; j++) {
                    const int ix = (ox0 + j) * sw - pw + kx * dw;
                    if (ix >= 0 && ix < W)
                        acc[j] = fma(wv, xp[iy * W + ix], acc[j]);
                }
            }
        }
    }
    const size_t at = ((size_t)z * OH + oy) * OW + ox0;
    for (int j = 0; j < BF_RW && ox0 + j < OW; j++) {
        float v = acc[j] + bias[o];
        if (has_res)
            v += res[at + j];
        y[at + j] = BF_ACT(v, act);
    }
}
