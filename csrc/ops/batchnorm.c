/* Batch normalization that could not be folded into a conv: forward with the running
 * statistics (inference) or the batch statistics (training). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

enum { SCALE = 0, SHIFT = 1, MEAN = 2, VAR = 3 };

static int bn_channels(bf_plan *p, int layer)
{
    bf_layer_info info;
    bf_model_layer_info(p->model, layer, &info);
    return info.in_dims[0];
}

/* Inference's bound on |output| (core/plan.c): gamma * (x - mean) / sqrt(var + eps) + beta,
 * per channel c with k_c = gamma_c / sqrt(var_c + eps), is at most max |k| * |x| +
 * max (|k_c mean_c| + |beta_c|); a mean too large to subtract safely leaves none. */
static void bn_bound(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    const float *g = bf_plan_param(p, n->layer, SCALE), *be = bf_plan_param(p, n->layer, SHIFT);
    const float *mu = bf_plan_param(p, n->layer, MEAN), *var = bf_plan_param(p, n->layer, VAR);
    double gain = 0, offset = 0;
    for (int c = 0; c < bn_channels(p, n->layer); c++) {
        double k = fabs(g[c] / sqrt((double)var[c] + s->eps));
        gain = bf_bound_max(gain, k);
        offset = bf_bound_max(offset, k * fabs(mu[c]) + fabs(be[c]));
        if (!(fabs(mu[c]) <= 1e30))
            gain = INFINITY;
    }
    n->gain = gain;
    n->offset = offset;
}

/* gamma, beta (and in inference the running mean / variance) into the node's memories. */
static bf_status bn_load(bf_plan *p, bf_node *n)
{
    size_t bytes = sizeof(float) * (size_t)bn_channels(p, n->layer);
    bf_status st = BF_STATUS_OK;
    for (int k = 0; k < 4; k++) {
        const float *src = bf_plan_param(p, n->layer, k);
        void *dst = NULL;
        if (!n->mem[k] ||
            (p->params.training && k >= MEAN && !bf_model_layer(p->model, n->layer)->frozen))
            continue; /* in training, mean / variance are outputs */
        if (!src)
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "batch-norm weights not loaded");
        DNNL_TRY(dnnl_memory_get_data_handle(n->mem[k], &dst));
        memcpy(dst, src, bytes);
    }
    if (!p->params.training)
        bn_bound(p, n);
fail:
    return st;
}


/* Training forward: batch statistics, then the running statistics follow them (the
 * variance unbiased, as PyTorch does).  A frozen BN uses and keeps its running stats. */
static bf_status bn_train_run(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    bf_param_view rm, rv;
    const float *mean = bf_mem_handle(n->mem[MEAN]), *var = bf_mem_handle(n->mem[VAR]);
    bf_layer_info info;
    double count;
    bf_status st = BF_STATUS_OK;
    DNNL_TRY(dnnl_primitive_execute(n->prim, p->stream, n->nargs, n->args));
    DNNL_TRY(dnnl_stream_wait(p->stream));
    if (s->frozen)
        return BF_STATUS_OK;
    bf_model_layer_info(p->model, n->layer, &info);
    count = (double)p->params.batch * info.in_dims[1] * info.in_dims[2];
    bf_model_param(p->model, n->layer, 2, &rm);
    bf_model_param(p->model, n->layer, 3, &rv);
    for (int c = 0; c < info.in_dims[0]; c++) {
        float unbiased = count > 1 ? (float)(var[c] * count / (count - 1)) : var[c];
        rm.data[c] = (1 - s->momentum) * rm.data[c] + s->momentum * mean[c];
        rv.data[c] = (1 - s->momentum) * rv.data[c] + s->momentum * unbiased;
    }
fail:
    return st;
}

bf_status bf_op_batchnorm_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t cmd = NULL;
    dnnl_dims_t cd = {bn_channels(p, proto->layer)};
    const_dnnl_memory_desc_t src_md = p->values[proto->src[0]].md;
    dnnl_memory_desc_t nhwc = NULL;
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    int train = p->params.training;
    bf_node n0 = *proto, *n;
    bf_status st = BF_STATUS_OK;
    static const int args[4] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};

    if (!train || s->frozen)
        flags |= dnnl_use_global_stats;
    if (proto->act_layer >= 0) /* fuse() gives a batch-norm a ReLU alone */
        flags |= dnnl_fuse_norm_relu;
    DNNL_TRY(dnnl_batch_normalization_forward_primitive_desc_create(
        &pd, p->engine, train ? dnnl_forward_training : dnnl_forward_inference, src_md, src_md,
        s->eps, flags, NULL));
    if (!train && bf_pd_is_ref(pd)) { /* blocked, channels not a multiple of the block */
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        BF_TRY(bf_md_like(&nhwc, src_md, dnnl_nhwc));
        if ((n0.src[0] = bf_plan_value_as(p, proto->src[0], nhwc)) < 0) {
            st = BF_STATUS_OUT_OF_MEMORY;
            goto fail;
        }
        DNNL_TRY(dnnl_batch_normalization_forward_primitive_desc_create(
            &pd, p->engine, dnnl_forward_inference, nhwc, nhwc, s->eps, flags, NULL));
    }
    n = bf_plan_push_primitive(p, &n0, &pd, &st);
    if (!n)
        goto fail;
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&cmd, 1, cd, dnnl_f32, dnnl_a));
    for (int k = 0; k < 4; k++) {
        DNNL_TRY(dnnl_memory_create(&n->mem[k], cmd, p->engine, DNNL_MEMORY_ALLOCATE));
        bf_node_arg(n, args[k], n->mem[k]);
    }
    if (train && (flags & dnnl_fuse_norm_relu)) {
        DNNL_TRY(dnnl_memory_create(&n->mem[4], dnnl_primitive_desc_query_md(
                                        n->pd, dnnl_query_workspace_md, 0),
                                    p->engine, DNNL_MEMORY_ALLOCATE));
        bf_node_arg(n, DNNL_ARG_WORKSPACE, n->mem[4]);
    }
    n->load = bn_load;
    if (train)
        n->run = bn_train_run;
fail:
    dnnl_memory_desc_destroy(nhwc);
    dnnl_memory_desc_destroy(cmd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

bf_status bf_op_batchnorm_bwd(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    const_dnnl_memory_desc_t md = p->values[n->src[0]].md;
    dnnl_memory_desc_t plain = NULL;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0), gs = NULL, gb = NULL;
    int64_t c = bn_channels(p, n->layer);
    unsigned flags = dnnl_use_scale | dnnl_use_shift | (s->frozen ? dnnl_use_global_stats : 0);
    const_dnnl_memory_desc_t cmd;
    bf_status st = BF_STATUS_OK;

    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    DNNL_TRY(dnnl_batch_normalization_backward_primitive_desc_create(
        &n->bwd_pd[0], p->engine, dnnl_backward, md, md, md, s->eps, flags, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    DNNL_TRY(dnnl_memory_get_memory_desc(n->mem[SCALE], &cmd));
    BF_TRY(bf_md_plain(&plain, 1, &c, dnnl_f32));
    if (s->frozen) { /* gradients computed into scratch memories, never applied */
        DNNL_TRY(dnnl_memory_create(&n->mem[5], cmd, p->engine, DNNL_MEMORY_ALLOCATE));
        DNNL_TRY(dnnl_memory_create(&n->mem[6], cmd, p->engine, DNNL_MEMORY_ALLOCATE));
        gs = n->mem[5];
        gb = n->mem[6];
    } else {
        BF_TRY(bf_plan_add_tparam(p, n->layer, 0, n->mem[SCALE], cmd, plain, 0, &gs));
        BF_TRY(bf_plan_add_tparam(p, n->layer, 1, n->mem[SHIFT], cmd, plain, 0, &gb));
    }
    bf_node_bwd_arg(n, 0, DNNL_ARG_SRC, p->values[n->src[0]].mem);
    bf_node_bwd_arg(n, 0, DNNL_ARG_MEAN, n->mem[MEAN]);
    bf_node_bwd_arg(n, 0, DNNL_ARG_VARIANCE, n->mem[VAR]);
    bf_node_bwd_arg(n, 0, DNNL_ARG_SCALE, n->mem[SCALE]);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, dsrc);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SCALE, gs);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SHIFT, gb);
fail:
    dnnl_memory_desc_destroy(plain);
    return st;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_batchnorm_infer(const bf_layer_spec *s, int index,
                             const bf_layer_info *const in[], bf_layer_info *o)
{
    (void)s;
    (void)index;
    o->n_params = 4 * (int64_t)in[0]->out_dims[0];
    return BF_STATUS_OK;
}

int bf_batchnorm_params(const bf_layer_spec *s, const bf_layer_info *info,
                        bf_param out[BF_MAX_PARAMS])
{
    static const char *const names[4] = {"gamma", "beta", "running_mean", "running_var"};
    (void)s;
    for (int k = 0; k < 4; k++)
        out[k] = bf_param_shape(names[k], 1, info->in_dims[0], 0, 0, 0);
    return 4;
}
