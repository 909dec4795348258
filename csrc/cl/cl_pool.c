/* Pooling (max, average, global average) and nearest upsampling on OpenCL. */
#include <math.h>

#include "cl/cl_ops.h"

/* Largest power of two <= min(limit, n) (>= 1): the tree reductions need a power of two. */
static size_t pow2_at_most(size_t limit, size_t n)
{
    size_t l = 1;
    while (l * 2 <= limit && l * 2 <= n)
        l *= 2;
    return l;
}

static bf_status run_global(bf_cl_ctx *c, bf_cl_op *op, cl_mem x, cl_mem y, int batch)
{
    cl_int HW = op->in[1] * op->in[2];
    size_t cap = c->kernel_wg[BF_K_GAP] < 256 ? c->kernel_wg[BF_K_GAP] : 256;
    size_t L = pow2_at_most(cap, (size_t)HW), lws[3] = {L, 1, 1}, gws[3];
    bf_status st;
    while (L > 1 && L * sizeof(float) > c->local_mem)
        L /= 2;
    lws[0] = L;
    gws[0] = (size_t)batch * op->in[0] * L;
    st = BF_CL_ARGS(c, BF_K_GAP, BF_ARG(x), BF_ARG(y), BF_ARG(HW), BF_LOCAL(L * sizeof(float)));
    return st ? st : bf_cl_launch(c, BF_K_GAP, 1, gws, lws, &op->ev[op->n_ev++]);
}

/* Max-pooling with strides 1 / 2 runs as row tiles over a -inf-filled input grid. */
void bf_cl_pool_plan(const bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, int batch)
{
    const bf_layer_spec *s = bf_model_layer(m, op->first);
    (void)c;
    op->path = s->type == BF_LAYER_MAXPOOL && s->stride[0] == s->stride[1] && s->stride[0] <= 2;
    op->col_floats = 0;
    op->kernel = s->type == BF_LAYER_MAXPOOL   ? BF_K_MAXPOOL
                 : s->type == BF_LAYER_AVGPOOL ? BF_K_AVGPOOL
                                               : BF_K_GAP;
    if (!op->path)
        return;
    bf_cl_grid_plan(op, s, batch);
    op->kernel = s->stride[0] == 1 ? BF_K_MAXPOOL_S1 : BF_K_MAXPOOL_S2;
}

static bf_status run_max_tiled(bf_cl_ctx *c, const bf_layer_spec *s, bf_cl_op *op, cl_mem x,
                               cl_mem y, cl_mem scratch, int batch)
{
    cl_int Hp = op->Hp, Wp = op->Wp, OH = op->out[1], OW = op->out[2];
    cl_int xblocks = (OW + c->tn - 1) / c->tn;
    size_t gws[3] = {(size_t)OH * xblocks, (size_t)batch * op->in[0], 1};
    cl_mem src;
    bf_status st = bf_cl_grid_run(c, op, x, scratch, batch, s->stride[0], s->pad[0], s->pad[1],
                                  -INFINITY, &src);
    if (st)
        return st;
    st = BF_CL_ARGS(c, op->kernel, BF_ARG(src), BF_ARG(y), BF_ARG(s->kernel[0]),
                    BF_ARG(s->kernel[1]), BF_ARG(Hp), BF_ARG(Wp), BF_ARG(OH), BF_ARG(OW),
                    BF_ARG(xblocks));
    return st ? st : bf_cl_launch(c, op->kernel, 2, gws, NULL, &op->ev[op->n_ev++]);
}

bf_status bf_cl_pool_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem x, cl_mem y,
                         cl_mem scratch, int batch)
{
    const bf_layer_spec *s = bf_model_layer(m, op->first);
    cl_int H = op->in[1], W = op->in[2], OH = op->out[1], OW = op->out[2];
    size_t gws[3] = {(size_t)((OW + c->rw - 1) / c->rw), (size_t)OH, (size_t)batch * op->in[0]};
    int kid = s->type == BF_LAYER_MAXPOOL ? BF_K_MAXPOOL : BF_K_AVGPOOL;
    bf_status st;
    if (s->type == BF_LAYER_GLOBAL_AVGPOOL)
        return run_global(c, op, x, y, batch);
    if (op->path)
        return run_max_tiled(c, s, op, x, y, scratch, batch);
    st = BF_CL_ARGS(c, kid, BF_ARG(x), BF_ARG(y), BF_ARG(H), BF_ARG(W), BF_ARG(OH), BF_ARG(OW),
                    BF_ARG(s->kernel[0]), BF_ARG(s->kernel[1]), BF_ARG(s->stride[0]),
                    BF_ARG(s->stride[1]), BF_ARG(s->pad[0]), BF_ARG(s->pad[1]));
    return st ? st : bf_cl_launch(c, kid, 3, gws, NULL, &op->ev[op->n_ev++]);
}

bf_status bf_cl_upsample_run(bf_cl_ctx *c, const bf_model *m, bf_cl_op *op, cl_mem x,
                             cl_mem y, int batch)
{
    cl_int H = op->in[1], W = op->in[2], sc = bf_model_layer(m, op->first)->scale;
    size_t gws[3] = {(size_t)op->out[2], (size_t)op->out[1], (size_t)batch * op->in[0]};
    bf_status st = BF_CL_ARGS(c, BF_K_UPSAMPLE, BF_ARG(x), BF_ARG(y), BF_ARG(H), BF_ARG(W),
                              BF_ARG(sc));
    return st ? st : bf_cl_launch(c, BF_K_UPSAMPLE, 3, gws, NULL, &op->ev[op->n_ev++]);
}
