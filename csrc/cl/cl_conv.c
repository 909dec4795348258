/* Convolution (and linear layers) on OpenCL.  At load: batch-norm folded into the weights
 * and bias, weights packed for the GEMM tiles.  At run, by shape (bf_cl_conv_plan):
 *   1x1 stride 1         register-tiled GEMM on x itself
 *   1x1 stride s, pad 0  x subsampled, then the same GEMM
 *   strides 1 and 2      implicit GEMM on the input grid (padded input / its 4 phases)
 *   other strides        GEMM on im2col columns
 *   depthwise / thin groups with short sums: row-tile kernels (strides 1, 2) or direct
 * with bias, residual add and an activation without parameters in the epilogue.  Padding
 * may differ at the bottom / right (pad_end): the grids and bounds take both sides. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cl/cl_ops.h"


static int ceil_div(int a, int b) { return (a + b - 1) / b; }

void bf_cl_conv_plan(const bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, int batch)
{
    const bf_layer_spec *s = bf_model_layer(m, op->first);
    int G = s->groups, Og = s->out_channels / G, C = op->in[0];
    int padded = s->pad[0] || s->pad[1] || s->pad_end[0] || s->pad_end[1];
    op->K = C / G * s->kernel[0] * s->kernel[1];
    op->P = op->out[1] * op->out[2];
    if (s->type == BF_LAYER_LINEAR) {
        /* a 1x1 "conv" over the flattened input: K = C*H*W, one pixel */
        op->K = C * op->in[1] * op->in[2];
        op->path = BF_CONV_GEMM_X;
        op->kernel = BF_K_CONV_GEMM;
        op->col_floats = 0;
        return;
    }
    op->Ppad = ceil_div(op->P, c->tn) * c->tn;
    op->col_floats = 0;
    /* a GEMM tile holds tm output channels: the direct kernels win for thin groups with
     * short sums (depthwise), the GEMM even for one output channel with a long sum */
    if (Og < 4 && op->K < 64 && s->stride[0] == s->stride[1] && s->stride[0] <= 2) {
        op->path = BF_CONV_DW;
        op->kernel = s->stride[0] == 1 ? BF_K_CONV_DW_S1 : BF_K_CONV_DW_S2;
        bf_cl_grid_plan(op, s, batch);
    } else if (Og < 4 && op->K < 64) {
        op->path = BF_CONV_DIRECT;
        op->kernel = BF_K_CONV_DIRECT;
    } else if (s->kernel[0] == 1 && s->kernel[1] == 1 && s->stride[0] == 1 &&
               s->stride[1] == 1 && !padded) {
        op->path = BF_CONV_GEMM_X;
        op->kernel = BF_K_CONV_GEMM;
    } else if (s->kernel[0] == 1 && s->kernel[1] == 1 && s->stride[0] == s->stride[1] &&
               !padded) {
        op->path = BF_CONV_GEMM_SUB;
        op->kernel = BF_K_CONV_GEMM;
        op->col_floats = (size_t)batch * C * op->P;
    } else if (s->stride[0] == s->stride[1] && s->stride[0] <= 2) {
        op->path = BF_CONV_TILED;
        op->kernel = s->stride[0] == 1 ? BF_K_CONV_TILED_S1 : BF_K_CONV_TILED_S2;
        bf_cl_grid_plan(op, s, batch);
    } else {
        op->path = BF_CONV_IM2COL;
        op->kernel = BF_K_CONV_GEMM;
        op->col_floats = (size_t)batch * G * op->K * op->Ppad;
    }
}

/* Folds the batch-norm (if any) into weight rows and bias, in double: w' = w * scale,
 * b' = (b - mean) * scale + beta with scale = gamma / sqrt(var + eps). */
static bf_status fold(const bf_model *m, const bf_cl_op *op, float *w, float *b, int O,
                      size_t per_o)
{
    bf_param_view wv, bv, g, be, mu, var;
    const bf_layer_spec *s = bf_model_layer(m, op->first);
    if (bf_model_param(m, op->first, 0, &wv) != BF_STATUS_OK || !wv.data)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %d (%s): weights not loaded",
                        op->first, s->name);
    memcpy(w, wv.data, (size_t)O * per_o * sizeof(float));
    memset(b, 0, (size_t)O * sizeof(float));
    if (s->has_bias && bf_model_param(m, op->first, 1, &bv) == BF_STATUS_OK && bv.data)
        memcpy(b, bv.data, (size_t)O * sizeof(float));
    if (op->bn < 0)
        return BF_STATUS_OK;
    if (bf_model_param(m, op->bn, 0, &g) || bf_model_param(m, op->bn, 1, &be) ||
        bf_model_param(m, op->bn, 2, &mu) || bf_model_param(m, op->bn, 3, &var) || !g.data ||
        !be.data || !mu.data || !var.data)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %d: batch-norm weights not loaded",
                        op->bn);
    double eps = bf_model_layer(m, op->bn)->eps;
    for (int o = 0; o < O; o++) {
        double sc = g.data[o] / sqrt((double)var.data[o] + eps);
        for (size_t k = 0; k < per_o; k++)
            w[o * per_o + k] = (float)(w[o * per_o + k] * sc);
        b[o] = (float)(((double)b[o] - mu.data[o]) * sc + be.data[o]);
    }
    return BF_STATUS_OK;
}

/* GEMM layout: [G][ceil(Og/TM)][K][TM], zero rows past Og. */
static float *pack_gemm(const float *w, int G, int Og, int K, int tm)
{
    int Ob = ceil_div(Og, tm);
    float *p = calloc((size_t)G * Ob * K * tm, sizeof(float));
    if (!p)
        return NULL;
    for (int g = 0; g < G; g++)
        for (int o = 0; o < Og; o++)
            for (int k = 0; k < K; k++)
                p[(((size_t)g * Ob + o / tm) * K + k) * tm + o % tm] =
                    w[((size_t)g * Og + o) * K + k];
    return p;
}

static bf_status upload(bf_cl_ctx *c, cl_mem *buf, const float *data, size_t n)
{
    bf_status st = BF_STATUS_OK;
    if (!*buf)
        st = bf_cl_buffer(c, n * sizeof(float), buf);
    return st ? st : bf_cl_write(c, *buf, n * sizeof(float), data);
}

bf_status bf_cl_conv_load(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op)
{
    const bf_layer_spec *s = bf_model_layer(m, op->first);
    int O = s->out_channels, G = s->groups, Og = O / G;
    size_t per_o = (size_t)op->K; /* (C/G) * kh * kw */
    float *w = malloc((size_t)O * per_o * sizeof(float)), *b = malloc((size_t)O * sizeof(float));
    float *packed = NULL;
    bf_status st;
    if (!w || !b) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory folding layer %d", op->first);
        goto done;
    }
    if ((st = fold(m, op, w, b, O, per_o)) != BF_STATUS_OK)
        goto done;
    if (op->path != BF_CONV_DIRECT && op->path != BF_CONV_DW) {
        if (!(packed = pack_gemm(w, G, Og, op->K, c->tm))) {
            st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory packing layer %d", op->first);
            goto done;
        }
        st = upload(c, &op->own[0], packed, (size_t)G * ceil_div(Og, c->tm) * op->K * c->tm);
    } else {
        st = upload(c, &op->own[0], w, (size_t)O * per_o);
    }
    if (st == BF_STATUS_OK)
        st = upload(c, &op->own[1], b, (size_t)O);
done:
    free(packed);
    free(w);
    free(b);
    return st;
}

static bf_status run_im2col(bf_cl_ctx *c, const bf_layer_spec *s, bf_cl_op *op, cl_mem x,
                            cl_mem col, int batch, cl_event *ev)
{
    cl_int C = op->in[0], H = op->in[1], W = op->in[2], OH = op->out[1], OW = op->out[2];
    cl_int G = s->groups, Ppad = op->Ppad, K = op->K;
    size_t gws[3] = {(size_t)ceil_div(OW, c->rw), (size_t)OH, (size_t)K * batch * G};
    bf_status st = BF_CL_ARGS(c, BF_K_IM2COL, BF_ARG(x), BF_ARG(col), BF_ARG(C), BF_ARG(H),
                              BF_ARG(W), BF_ARG(OH), BF_ARG(OW), BF_ARG(G), BF_ARG(s->kernel[0]),
                              BF_ARG(s->kernel[1]), BF_ARG(s->stride[0]), BF_ARG(s->stride[1]),
                              BF_ARG(s->pad[0]), BF_ARG(s->pad[1]), BF_ARG(s->dilation[0]),
                              BF_ARG(s->dilation[1]), BF_ARG(Ppad), BF_ARG(K));
    return st ? st : bf_cl_launch(c, BF_K_IM2COL, 3, gws, NULL, ev);
}

/* GEMM on x itself or on im2col columns. */
static bf_status run_gemm(bf_cl_ctx *c, const bf_layer_spec *s, bf_cl_op *op, cl_mem x,
                          cl_mem res, cl_mem y, cl_mem col, int batch)
{
    cl_int G = s->groups, Og = s->out_channels / G, K = op->K, P = op->P, act = op->act;
    cl_int has_res = res != NULL, x_ld = P, x_z = K * P;
    cl_mem src = x, r = res ? res : op->own[0]; /* a dummy when unused */
    size_t ob = (size_t)ceil_div(Og, c->tm), pb = (size_t)ceil_div(P, c->tn), gws[3];
    bf_status st;
    if (op->path == BF_CONV_IM2COL) {
        if ((st = run_im2col(c, s, op, x, col, batch, &op->ev[op->n_ev++])))
            return st;
        src = col;
        x_ld = op->Ppad;
        x_z = K * op->Ppad;
    } else if (op->path == BF_CONV_GEMM_SUB) {
        cl_int H = op->in[1], W = op->in[2], OH = op->out[1], OW = op->out[2];
        size_t g2[3] = {(size_t)OH, (size_t)batch * op->in[0], 1};
        st = BF_CL_ARGS(c, BF_K_SUBSAMPLE, BF_ARG(x), BF_ARG(col), BF_ARG(H), BF_ARG(W),
                        BF_ARG(OH), BF_ARG(OW), BF_ARG(s->stride[0]));
        if (st || (st = bf_cl_launch(c, BF_K_SUBSAMPLE, 2, g2, NULL, &op->ev[op->n_ev++])))
            return st;
        src = col;
    }
    st = BF_CL_ARGS(c, BF_K_CONV_GEMM, BF_ARG(op->own[0]), BF_ARG(op->own[1]), BF_ARG(src),
                    BF_ARG(y), BF_ARG(r), BF_ARG(Og), BF_ARG(K), BF_ARG(P), BF_ARG(x_ld),
                    BF_ARG(x_z), BF_ARG(G), BF_ARG(act), BF_ARG(has_res));
    if (st)
        return st;
    /* CPU: neighbouring work-items share pixels (x stays in cache across channel blocks);
     * GPU: neighbouring work-items take neighbouring pixels (coalesced loads) */
    gws[0] = !c->gpu_layout ? ob : pb;
    gws[1] = !c->gpu_layout ? pb : ob;
    gws[2] = (size_t)batch * G;
    return bf_cl_launch(c, BF_K_CONV_GEMM, 3, gws, NULL, &op->ev[op->n_ev++]);
}

/* Implicit GEMM on the input, zero-padded into the scratch buffer first if needed. */
static bf_status run_tiled(bf_cl_ctx *c, const bf_layer_spec *s, bf_cl_op *op, cl_mem x,
                           cl_mem res, cl_mem y, cl_mem scratch, int batch)
{
    cl_int G = s->groups, Og = s->out_channels / G, Cg = op->in[0] / G, act = op->act;
    cl_int has_res = res != NULL, Hp = op->Hp, Wp = op->Wp, OH = op->out[1], OW = op->out[2];
    cl_int xblocks = ceil_div(OW, c->tn);
    cl_mem src = x, r = res ? res : op->own[0];
    size_t ob = (size_t)ceil_div(Og, c->tm), tiles = (size_t)OH * xblocks, gws[3];
    bf_status st;
    st = bf_cl_grid_run(c, op, x, scratch, batch, s->stride[0], s->pad[0], s->pad[1], 0.0f,
                        &src);
    if (st)
        return st;
    st = BF_CL_ARGS(c, op->kernel, BF_ARG(op->own[0]), BF_ARG(op->own[1]), BF_ARG(src),
                    BF_ARG(y), BF_ARG(r), BF_ARG(Og), BF_ARG(Cg), BF_ARG(s->kernel[0]),
                    BF_ARG(s->kernel[1]), BF_ARG(s->dilation[0]), BF_ARG(s->dilation[1]),
                    BF_ARG(Hp), BF_ARG(Wp), BF_ARG(OH), BF_ARG(OW), BF_ARG(xblocks), BF_ARG(G),
                    BF_ARG(act), BF_ARG(has_res));
    if (st)
        return st;
    gws[0] = !c->gpu_layout ? ob : tiles;
    gws[1] = !c->gpu_layout ? tiles : ob;
    gws[2] = (size_t)batch * G;
    return bf_cl_launch(c, op->kernel, 3, gws, NULL, &op->ev[op->n_ev++]);
}

static bf_status run_direct(bf_cl_ctx *c, const bf_layer_spec *s, bf_cl_op *op, cl_mem x,
                            cl_mem res, cl_mem y, int batch)
{
    cl_int C = op->in[0], H = op->in[1], W = op->in[2], O = op->out[0], OH = op->out[1];
    cl_int OW = op->out[2], act = op->act, has_res = res != NULL;
    cl_mem r = res ? res : op->own[0];
    size_t gws[3] = {(size_t)ceil_div(OW, c->rw), (size_t)OH, (size_t)batch * O};
    bf_status st = BF_CL_ARGS(c, BF_K_CONV_DIRECT, BF_ARG(op->own[0]), BF_ARG(op->own[1]),
                              BF_ARG(x), BF_ARG(y), BF_ARG(r), BF_ARG(C), BF_ARG(H), BF_ARG(W),
                              BF_ARG(O), BF_ARG(OH), BF_ARG(OW), BF_ARG(s->groups),
                              BF_ARG(s->kernel[0]), BF_ARG(s->kernel[1]), BF_ARG(s->stride[0]),
                              BF_ARG(s->stride[1]), BF_ARG(s->pad[0]), BF_ARG(s->pad[1]),
                              BF_ARG(s->dilation[0]), BF_ARG(s->dilation[1]), BF_ARG(act),
                              BF_ARG(has_res));
    if (st)
        return st;
    return bf_cl_launch(c, BF_K_CONV_DIRECT, 3, gws, NULL, &op->ev[op->n_ev++]);
}

/* Depthwise / thin groups, strides 1-2: row tiles over the zero-padded input. */
static bf_status run_dw(bf_cl_ctx *c, const bf_layer_spec *s, bf_cl_op *op, cl_mem x,
                        cl_mem res, cl_mem y, cl_mem scratch, int batch)
{
    cl_int C = op->in[0], O = op->out[0], G = s->groups, Hp = op->Hp, Wp = op->Wp;
    cl_int OH = op->out[1], OW = op->out[2], xblocks = ceil_div(OW, c->tn), act = op->act;
    cl_int has_res = res != NULL;
    cl_mem src = x, r = res ? res : op->own[0];
    size_t gws[3] = {(size_t)OH * xblocks, (size_t)batch * O, 1};
    bf_status st;
    st = bf_cl_grid_run(c, op, x, scratch, batch, s->stride[0], s->pad[0], s->pad[1], 0.0f,
                        &src);
    if (st)
        return st;
    st = BF_CL_ARGS(c, op->kernel, BF_ARG(op->own[0]), BF_ARG(op->own[1]), BF_ARG(src),
                    BF_ARG(y), BF_ARG(r), BF_ARG(C), BF_ARG(O), BF_ARG(G), BF_ARG(s->kernel[0]),
                    BF_ARG(s->kernel[1]), BF_ARG(s->dilation[0]), BF_ARG(s->dilation[1]),
                    BF_ARG(Hp), BF_ARG(Wp), BF_ARG(OH), BF_ARG(OW), BF_ARG(xblocks), BF_ARG(act),
                    BF_ARG(has_res));
    return st ? st : bf_cl_launch(c, op->kernel, 2, gws, NULL, &op->ev[op->n_ev++]);
}

void bf_cl_grid_plan(bf_cl_op *op, const bf_layer_spec *s, int batch)
{
    int stride = s->stride[0], hp = op->in[1] + s->pad[0] + s->pad_end[0];
    int wp = op->in[2] + s->pad[1] + s->pad_end[1];
    op->Hp = stride == 1 ? hp : (hp + 1) / 2;
    op->Wp = stride == 1 ? wp : (wp + 1) / 2;
    /* x itself is the grid when there is no padding on any side */
    op->col_floats = stride == 1 && hp == op->in[1] && wp == op->in[2]
                         ? 0 : (size_t)batch * op->in[0] * stride * stride * op->Hp * op->Wp;
}

bf_status bf_cl_grid_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem scratch, int batch,
                         int stride, int ph, int pw, float fill, cl_mem *src)
{
    cl_int H = op->in[1], W = op->in[2], Hp = op->Hp, Wp = op->Wp;
    int kid = stride == 1 ? BF_K_PAD : BF_K_PHASE;
    size_t gws[3] = {(size_t)Hp * stride, (size_t)batch * op->in[0], 1};
    bf_status st;
    *src = x;
    if (!op->col_floats)
        return BF_STATUS_OK;
    st = BF_CL_ARGS(c, kid, BF_ARG(x), BF_ARG(scratch), BF_ARG(H), BF_ARG(W), BF_ARG(Hp),
                    BF_ARG(Wp), BF_ARG(ph), BF_ARG(pw), BF_ARG(fill));
    *src = scratch;
    return st ? st : bf_cl_launch(c, kid, 2, gws, NULL, &op->ev[op->n_ev++]);
}

bf_status bf_cl_conv_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem x, cl_mem res,
                         cl_mem y, cl_mem col, int batch)
{
    const bf_layer_spec *s = bf_model_layer(m, op->first);
    switch (op->path) {
    case BF_CONV_DIRECT:
        return run_direct(c, s, op, x, res, y, batch);
    case BF_CONV_DW:
        return run_dw(c, s, op, x, res, y, col, batch);
    case BF_CONV_TILED:
        return run_tiled(c, s, op, x, res, y, col, batch);
    default:
        return run_gemm(c, s, op, x, res, y, col, batch);
    }
}
