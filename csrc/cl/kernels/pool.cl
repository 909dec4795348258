/* Pooling: max, average (padding excluded from the count, like oneDNN's
 * pooling_avg_exclude_padding) and global average.  Max / average: BF_RW outputs of a
 * row per work-item (see conv.cl), global (ceil(OW / BF_RW), OH, N*C); maxpool_s1/s2 are
 * the row-tiled versions for strides 1 and 2 and use conv.cl's tile helpers (all kernel
 * files build into one program, conv.cl first). */
#ifndef BF_RW
#define BF_RW 1
#endif

__kernel void maxpool(__global const float *restrict x, __global float *restrict y, int H,
                      int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw)
{
    const int xb = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
    if (xb * BF_RW >= OW || oy >= OH)
        return;
    __global const float *xp = x + (size_t)z * H * W;
    const int y0 = max(oy * sh - ph, 0), y1 = min(oy * sh - ph + kh, H);
    for (int j = 0; j < BF_RW; j++) {
        const int ox = xb * BF_RW + j;
        if (ox >= OW)
            break;
        const int x0 = max(ox * sw - pw, 0), x1 = min(ox * sw - pw + kw, W);
        float m = -INFINITY;
        for (int iy = y0; iy < y1; iy++)
            for (int ix = x0; ix < x1; ix++)
                m = fmax(m, xp[iy * W + ix]);
        y[((size_t)z * OH + oy) * OW + ox] = m;
    }
}

__kernel void avgpool(__global const float *restrict x, __global float *restrict y, int H,
                      int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw)
{
    const int xb = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
    if (xb * BF_RW >= OW || oy >= OH)
        return;
    __global const float *xp = x + (size_t)z * H * W;
    const int y0 = max(oy * sh - ph, 0), y1 = min(oy * sh - ph + kh, H);
    for (int j = 0; j < BF_RW; j++) {
        const int ox = xb * BF_RW + j;
        if (ox >= OW)
            break;
        const int x0 = max(ox * sw - pw, 0), x1 = min(ox * sw - pw + kw, W);
        float s = 0.0f;
        for (int iy = y0; iy < y1; iy++)
            for (int ix = x0; ix < x1; ix++)
                s += xp[iy * W + ix];
        y[((size_t)z * OH + oy) * OW + ox] = s / (float)((y1 - y0) * (x1 - x0));
    }
}

/* One work-group per (n, c): a strided sum then a tree in local memory.  The local size
 * is a power of two chosen by the host. */
__kernel void global_avgpool(__global const float *restrict x, __global float *restrict y,
                             int HW, __local float *part)
{
    const int z = get_group_id(0), l = get_local_id(0), L = get_local_size(0);
    __global const float *xp = x + (size_t)z * HW;
    float s = 0.0f;
    for (int i = l; i < HW; i += L)
        s += xp[i];
    part[l] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = L / 2; h > 0; h /= 2) {
        if (l < h)
            part[l] += part[l + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (l == 0)
        y[z] = part[0] / (float)HW;
}

/* Max-pooling (strides 1, 2) as row tiles over the -inf-filled grid of conv.cl (padded
 * input for stride 1, phases for stride 2).  global (OH * xblocks, N*C). */
#define BF_MAXPOOL_TILED(NAME, XAT, S)                                                     \
__kernel void NAME(__global const float *restrict x, __global float *restrict y, int kh,    \
                   int kw, int Hp, int Wp, int OH, int OW, int xblocks)                    \
{                                                                                          \
    const int t = get_global_id(0), z = get_global_id(1);                                  \
    const int oy = t / xblocks, ox0 = (t - oy * xblocks) * BF_TN;                          \
    if (oy >= OH)                                                                          \
        return;                                                                            \
    __global const float *xc = x + (size_t)z * BF_PLANE(S);                                \
    floatn m = (floatn)(-INFINITY);                                                        \
    for (int ky = 0; ky < kh; ky++)                                                        \
        for (int kx = 0; kx < kw; kx++)                                                    \
            m = fmax(m, vloadn(0, XAT(xc, ky, kx)));                                       \
    bf_store_tile(m, 0.0f, x, 0, 0, y, ((size_t)z * OH + oy) * OW + ox0,                   \
                  min(BF_TN, OW - ox0));                                                   \
}

BF_MAXPOOL_TILED(maxpool_s1, BF_XAT_S1, 1)
BF_MAXPOOL_TILED(maxpool_s2, BF_XAT_S2, 2)
