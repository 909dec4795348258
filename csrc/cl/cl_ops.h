/* Private to csrc/cl: the ops a bf_cl_plan executes (fused model layers) and the host code
 * of each op family (cl_conv.c, cl_pool.c, cl_eltwise.c, cl_quant.c). */
#ifndef BF_CL_OPS_H
#define BF_CL_OPS_H

#include "cl/cl_internal.h"
#include "core/layers.h"

/* An op's kind is the BF_CL_* of its first layer's row (core/layers.h). */

/* How a conv runs: the GEMM on x itself (1x1, stride 1, no padding) or on x subsampled
 * (1x1, larger stride, no padding), the implicit GEMM on the (padded) input (strides 1,
 * 2), the GEMM on im2col columns (other strides), or the direct kernels (depthwise and
 * other thin groups with short sums). */
enum {
    BF_CONV_GEMM_X, BF_CONV_GEMM_SUB, BF_CONV_TILED, BF_CONV_IM2COL, BF_CONV_DIRECT, BF_CONV_DW
};

/* a concat enqueues one copy per source; the other ops at most 3 kernels */
#define BF_OP_MAX_EVENTS BF_MAX_INPUTS
#define BF_OP_MAX_OWN 3

typedef struct bf_cl_op {
    int kind;              /* BF_CL_* */
    int first, last;       /* model layers covered; the op writes layer `last`'s tensor */
    int src, src2;         /* tensors read (model layer indices); src2 = -1 if none (the
                            * residual of a conv, the second input of add and mul) */
    int n_src;             /* every tensor the op reads, src and src2 included: what the */
    int srcs[BF_MAX_INPUTS]; /* buffer lifetimes follow; a concat's sources, in order */
    int bn;                /* CONV: folded batch-norm layer, or -1 */
    int act;               /* BF_ACT_* (applied last); convs take those without parameters */
    float alpha, beta;     /* the activation's parameters (hardsigmoid, clip, leaky ReLU) */
    int kernel;            /* main kernel id (for the profile) */
    int in[3], out[3];     /* C, H, W of src and of the output */
    /* CONV */
    int path;              /* BF_CONV_* */
    int K, P, Ppad;        /* GEMM sizes per (sample, group) */
    int Hp, Wp;            /* input grid of the row-tile kernels (see bf_cl_grid_plan) */
    size_t col_floats;     /* scratch needed (im2col columns or input grid), whole batch */
    /* QUANT */
    int chunks, chunk_len;
    size_t local;          /* local size of the reduction kernels */
    cl_mem own[BF_OP_MAX_OWN]; /* weights, bias / scale, shift / partials, range, inv */
    cl_event ev[BF_OP_MAX_EVENTS];
    int n_ev;
    double ms;
} bf_cl_op;

/* Uploads the op's parameters (folded conv weights + bias, affine scale + shift); called at
 * plan creation and again whenever the model's weights change. */
bf_status bf_cl_conv_load(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op);
bf_status bf_cl_affine_load(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op);
/* Plans sizes (GEMM tiles, scratch) from the specs; no device work. */
void bf_cl_conv_plan(const bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, int batch);
bf_status bf_cl_quant_plan(bf_cl_ctx *c, bf_cl_op *op, int batch);
void bf_cl_pool_plan(const bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, int batch);
/* The input grid the row-tile kernels read (stride 1: x zero/-inf padded; stride 2: its
 * four phases): grid_plan sets op->Hp, Wp and the scratch it needs (none for an unpadded
 * stride 1) from the layer's padding, pad at the top / left and pad_end at the bottom /
 * right; grid_run writes it into `scratch` and returns in *src what to read. */
void bf_cl_grid_plan(bf_cl_op *op, const bf_layer_spec *s, int batch);
bf_status bf_cl_grid_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem scratch, int batch,
                         int stride, int ph, int pw, float fill, cl_mem *src);

/* Enqueue one op for `batch` samples; events go to op->ev. */
bf_status bf_cl_conv_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem x, cl_mem res,
                         cl_mem y, cl_mem col, int batch);
bf_status bf_cl_pool_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem x, cl_mem y,
                         cl_mem scratch, int batch);
bf_status bf_cl_upsample_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem x,
                             cl_mem y, int batch);
bf_status bf_cl_softmax_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem y, int batch);
bf_status bf_cl_add_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem a, cl_mem b, cl_mem y, int batch);
bf_status bf_cl_affine_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem y, int batch);
/* b has a's shape, or is (N, C, 1, 1) when op->in differs from b's dims (per channel) */
bf_status bf_cl_mul_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem a, cl_mem b,
                        cl_mem y, int batch);
/* xs[k]: the tensor of op->srcs[k] */
bf_status bf_cl_concat_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, const cl_mem *xs,
                           cl_mem y, int batch);
/* Writes the payload to q and leaves the per-sample (min, max) in op->own[1]. */
bf_status bf_cl_quant_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem q, int batch);

#endif
