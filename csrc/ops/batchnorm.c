/* Batch normalization that could not be folded into a conv: forward with the running
 * statistics (inference) or the batch statistics (training). */
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

/* gamma, beta (and in inference the running mean / variance) into the node's memories. */
static bf_status bn_load(bf_plan *p, bf_node *n)
{
    size_t bytes = sizeof(float) * (size_t)bn_channels(p, n->layer);
    bf_status st = BF_STATUS_OK;
    for (int k = 0; k < 4; k++) {
        const float *src = bf_plan_param(p, n->layer, k);
        void *dst = NULL;
        if (!n->mem[k] || (p->params.training && k >= MEAN))
            continue; /* in training, mean / variance are outputs */
        if (!src)
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "batch-norm weights not loaded");
        DNNL_TRY(dnnl_memory_get_data_handle(n->mem[k], &dst));
        memcpy(dst, src, bytes);
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
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    int train = p->params.training;
    bf_node *n;
    bf_status st = BF_STATUS_OK;
    static const int args[4] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};

    if (!train)
        flags |= dnnl_use_global_stats;
    if (proto->post_eltwise == BF_ELT_RELU)
        flags |= dnnl_fuse_norm_relu;
    DNNL_TRY(dnnl_batch_normalization_forward_primitive_desc_create(
        &pd, p->engine, train ? dnnl_forward_training : dnnl_forward_inference, src_md, src_md,
        s->eps, flags, NULL));
    n = bf_plan_push_primitive(p, proto, &pd, &st);
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
fail:
    dnnl_memory_desc_destroy(cmd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}
