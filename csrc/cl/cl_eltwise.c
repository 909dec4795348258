/* Element-wise ops left after fusion: add [+ activation], the per-channel affine (a
 * batch-norm without a conv before it, or a lone activation as scale 1, shift 0) [+
 * activation] and the channel softmax. */
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

