/* The reduction unit's 8-bit quantizer on OpenCL: per-sample min / max (work-group
 * partials, then one work-item per sample), then q = clamp(floor((x - min) * inv + 0.5)).
 * Bit-exact to butterfly.h's float32 formula: see kernels/quant.cl. */
#include <stdlib.h>

#include "cl/cl_ops.h"

bf_status bf_cl_quant_plan(bf_cl_ctx *c, bf_cl_op *op, int batch)
{
    size_t len = (size_t)op->in[0] * op->in[1] * op->in[2], cap, L = 1;
    size_t sizes[3];
    bf_status st = BF_STATUS_OK;
    cap = c->kernel_wg[BF_K_QMINMAX] < 256 ? c->kernel_wg[BF_K_QMINMAX] : 256;
    while (L * 2 <= cap && L * 2 <= len && L * 2 * 2 * sizeof(float) <= c->local_mem)
        L *= 2;
    op->local = L;
    /* enough chunks to fill the device, each a few work-group passes long */
    op->chunks = (int)((len + L * 8 - 1) / (L * 8));
    if (op->chunks > 256)
        op->chunks = 256;
    op->chunk_len = (int)((len + (size_t)op->chunks - 1) / (size_t)op->chunks);
    sizes[0] = (size_t)batch * op->chunks * 2;
    sizes[1] = (size_t)batch * 2;
    sizes[2] = (size_t)batch;
    for (int i = 0; i < 3 && st == BF_STATUS_OK; i++)
        st = bf_cl_buffer(c, sizes[i] * sizeof(float), &op->own[i]);
    op->kernel = BF_K_QUANTIZE;
    return st;
}

/* Without correctly rounded division on the device, inv is computed here, in float32. */
static bf_status host_inv(bf_cl_ctx *c, bf_cl_op *op, int batch)
{
    float *r = malloc((size_t)batch * 3 * sizeof(float)), *inv = r ? r + 2 * batch : NULL;
    cl_int err;
    bf_status st;
    if (!r)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    err = c->f->clEnqueueReadBuffer(c->queue, op->own[1], CL_TRUE, 0,
                                    (size_t)batch * 2 * sizeof(float), r, 0, NULL, NULL);
    st = BF_CL_CHECK(c, err, "clEnqueueReadBuffer");
    for (int n = 0; st == BF_STATUS_OK && n < batch; n++) {
        volatile float d = r[2 * n + 1] - r[2 * n];
        inv[n] = d == 0.0f ? 0.0f : 255.0f / d;
    }
    if (st == BF_STATUS_OK)
        st = bf_cl_write(c, op->own[2], (size_t)batch * sizeof(float), inv);
    free(r);
    return st;
}

bf_status bf_cl_quant_run(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem q, int batch)
{
    cl_int len = op->in[0] * op->in[1] * op->in[2], chunk_len = op->chunk_len;
    cl_int chunks = op->chunks, N = batch, want_inv = c->exact_div;
    size_t L = op->local, lws[3] = {L, 1, 1}, g1[3] = {(size_t)chunks * L, (size_t)batch, 1};
    size_t g2[3] = {(size_t)batch, 1, 1}, g3[3] = {(size_t)len, (size_t)batch, 1};
    bf_status st;
    st = BF_CL_ARGS(c, BF_K_QMINMAX, BF_ARG(x), BF_ARG(len), BF_ARG(chunk_len),
                    BF_ARG(op->own[0]), BF_LOCAL(L * sizeof(float)), BF_LOCAL(L * sizeof(float)));
    if (st || (st = bf_cl_launch(c, BF_K_QMINMAX, 2, g1, lws, &op->ev[op->n_ev++])))
        return st;
    st = BF_CL_ARGS(c, BF_K_QFINAL, BF_ARG(op->own[0]), BF_ARG(chunks), BF_ARG(op->own[1]),
                    BF_ARG(op->own[2]), BF_ARG(N), BF_ARG(want_inv));
    if (st || (st = bf_cl_launch(c, BF_K_QFINAL, 1, g2, NULL, &op->ev[op->n_ev++])))
        return st;
    if (!want_inv && (st = host_inv(c, op, batch)) != BF_STATUS_OK)
        return st;
    st = BF_CL_ARGS(c, BF_K_QUANTIZE, BF_ARG(x), BF_ARG(q), BF_ARG(op->own[1]),
                    BF_ARG(op->own[2]), BF_ARG(len));
    return st ? st : bf_cl_launch(c, BF_K_QUANTIZE, 2, g3, NULL, &op->ev[op->n_ev++]);
}
