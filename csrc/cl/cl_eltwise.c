/* Element-wise ops left after fusion: add [+ activation], the per-channel affine (a
 * batch-norm without a conv before it, or a lone activation as scale 1, shift 0) [+
 * activation], mul (same shape or per channel), concat over channels and the channel
 * softmax. */
#include <math.h>
#include <stdlib.h>

#include "cl/cl_ops.h"

bf_status bf_cl_add_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem a, cl_mem b, cl_mem y, int batch)
{
    cl_int n = batch * op->out[0] * op->out[1] * op->out[2], act = op->act;
    size_t gws[3] = {(size_t)n, 1, 1};
    bf_status st = BF_CL_ARGS(c, BF_K_ADD, BF_ARG(a), BF_ARG(b), BF_ARG(y), BF_ARG(n),
                              BF_ARG(act), BF_ARG(op->alpha), BF_ARG(op->beta));
    return st ? st : bf_cl_launch(c, BF_K_ADD, 1, gws, NULL, &op->ev[op->n_ev++]);
}

bf_status bf_cl_softmax_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem y, int batch)
{
    cl_int C = op->in[0], HW = op->in[1] * op->in[2];
    size_t gws[3] = {(size_t)HW, (size_t)batch, 1};
    bf_status st = BF_CL_ARGS(c, BF_K_SOFTMAX, BF_ARG(x), BF_ARG(y), BF_ARG(C), BF_ARG(HW));
    return st ? st : bf_cl_launch(c, BF_K_SOFTMAX, 2, gws, NULL, &op->ev[op->n_ev++]);
}

/* scale = gamma / sqrt(var + eps), shift = beta - mean * scale (double, then float). */
bf_status bf_cl_affine_load(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op)
{
    const bf_layer_spec *s = bf_model_layer(m, op->first);
    int C = op->in[0];
    float *sc = malloc((size_t)C * 2 * sizeof(float)), *sh = sc ? sc + C : NULL;
    bf_param_view g, be, mu, var;
    bf_status st = BF_STATUS_OK;
    if (!sc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < C; i++) {
        sc[i] = 1.0f;
        sh[i] = 0.0f;
    }
    if (s->type == BF_LAYER_BATCHNORM) {
        if (bf_model_param(m, op->first, 0, &g) || bf_model_param(m, op->first, 1, &be) ||
            bf_model_param(m, op->first, 2, &mu) || bf_model_param(m, op->first, 3, &var) ||
            !g.data || !be.data || !mu.data || !var.data) {
            free(sc);
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %d (%s): weights not loaded",
                            op->first, s->name);
        }
        for (int i = 0; i < C; i++) {
            double k = g.data[i] / sqrt((double)var.data[i] + s->eps);
            sc[i] = (float)k;
            sh[i] = (float)(be.data[i] - mu.data[i] * k);
        }
    }
    for (int i = 0; i < 2 && st == BF_STATUS_OK; i++) {
        if (!op->own[i])
            st = bf_cl_buffer(c, (size_t)C * sizeof(float), &op->own[i]);
        if (st == BF_STATUS_OK)
            st = bf_cl_write(c, op->own[i], (size_t)C * sizeof(float), i ? sh : sc);
    }
    free(sc);
    return st;
}

bf_status bf_cl_affine_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem y, int batch)
{
    cl_int HW = op->in[1] * op->in[2], C = op->in[0], act = op->act;
    size_t gws[3] = {(size_t)HW, (size_t)batch * C, 1};
    bf_status st = BF_CL_ARGS(c, BF_K_AFFINE, BF_ARG(x), BF_ARG(y), BF_ARG(op->own[0]),
                              BF_ARG(op->own[1]), BF_ARG(HW), BF_ARG(C), BF_ARG(act),
                              BF_ARG(op->alpha), BF_ARG(op->beta));
    return st ? st : bf_cl_launch(c, BF_K_AFFINE, 2, gws, NULL, &op->ev[op->n_ev++]);
}

bf_status bf_cl_mul_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem a, cl_mem b,
                        cl_mem y, int batch)
{
    bf_layer_info bi;
    cl_int HW = op->in[1] * op->in[2], bcast;
    size_t gws[3] = {(size_t)HW, (size_t)batch * op->in[0], 1};
    bf_status st;
    bf_model_layer_info(m, op->src2, &bi);
    bcast = bi.out_dims[1] * bi.out_dims[2] != HW; /* (C, 1, 1) against a larger plane */
    st = BF_CL_ARGS(c, BF_K_MUL, BF_ARG(a), BF_ARG(b), BF_ARG(y), BF_ARG(HW), BF_ARG(bcast));
    return st ? st : bf_cl_launch(c, BF_K_MUL, 2, gws, NULL, &op->ev[op->n_ev++]);
}

/* One copy per source into its channel slice; the queue is in order, so the copies
 * finish before any later op reads y. */
bf_status bf_cl_concat_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, const cl_mem *xs,
                           cl_mem y, int batch)
{
    cl_int HW = op->out[1] * op->out[2], ylen = op->out[0] * HW, offset = 0;
    bf_status st = BF_STATUS_OK;
    for (int k = 0; k < op->n_src && st == BF_STATUS_OK; k++) {
        bf_layer_info info;
        bf_model_layer_info(m, op->srcs[k], &info);
        cl_int len = info.out_dims[0] * HW;
        size_t gws[3] = {(size_t)len, (size_t)batch, 1};
        st = BF_CL_ARGS(c, BF_K_CONCAT, BF_ARG(xs[k]), BF_ARG(y), BF_ARG(len), BF_ARG(ylen),
                        BF_ARG(offset));
        if (st == BF_STATUS_OK)
            st = bf_cl_launch(c, BF_K_CONCAT, 2, gws, NULL, &op->ev[op->n_ev++]);
        offset += len;
    }
    return st;
}
