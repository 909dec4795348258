/* Max-pool, average-pool (padding excluded) and global average-pool. */
#include "core/plan.h"

/* Kernel, strides and padding (top / left, bottom / right); a global pool is a pool with
 * the input's size. */
static bf_status pool_geometry(bf_plan *p, int layer, dnnl_dims_t k, dnnl_dims_t str,
                               dnnl_dims_t pad, dnnl_dims_t pad_end)
{
    const bf_layer_spec *s = bf_model_layer(p->model, layer);
    dnnl_dims_t in;
    bf_status st = bf_plan_layer_dims(p, layer, 0, in);
    for (int d = 0; d < 2; d++) {
        int global = s->type == BF_LAYER_GLOBAL_AVGPOOL;
        k[d] = global ? in[2 + d] : s->kernel[d];
        str[d] = global ? 1 : s->stride[d];
        pad[d] = global ? 0 : s->pad[d];
        pad_end[d] = global ? 0 : s->pad_end[d];
    }
    return st;
}

static dnnl_alg_kind_t pool_alg(const bf_layer_spec *s)
{
    return s->type == BF_LAYER_MAXPOOL ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding;
}

bf_status bf_op_pool_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    const_dnnl_memory_desc_t src = p->values[proto->src[0]].md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t dst = NULL;
    dnnl_dims_t out, k, str, dil = {0, 0}, pad, pad_end;
    int train = p->params.training, max = s->type == BF_LAYER_MAXPOOL;
    bf_node *n;
    bf_status st = BF_STATUS_OK;

    BF_TRY(pool_geometry(p, proto->layer, k, str, pad, pad_end));
    BF_TRY(bf_plan_layer_dims(p, proto->layer, 1, out));
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst, 4, out, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(dnnl_pooling_forward_primitive_desc_create(
        &pd, p->engine, train ? dnnl_forward_training : dnnl_forward_inference,
        pool_alg(s), src, dst, str, k, dil, pad, pad_end, NULL));
    n = bf_plan_push_primitive(p, proto, &pd, &st);
    if (n && train && max) {
        DNNL_TRY(dnnl_memory_create(&n->mem[0], dnnl_primitive_desc_query_md(
                                        n->pd, dnnl_query_workspace_md, 0),
                                    p->engine, DNNL_MEMORY_ALLOCATE));
        bf_node_arg(n, DNNL_ARG_WORKSPACE, n->mem[0]);
    }
fail:
    dnnl_memory_desc_destroy(dst);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

bf_status bf_op_pool_bwd(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    dnnl_dims_t k, str, dil = {0, 0}, pad, pad_end;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0);
    bf_status st = BF_STATUS_OK;
    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    BF_TRY(pool_geometry(p, n->layer, k, str, pad, pad_end));
    DNNL_TRY(dnnl_pooling_backward_primitive_desc_create(
        &n->bwd_pd[0], p->engine, pool_alg(s), p->values[n->src[0]].md, p->values[n->dst].md,
        str, k, dil, pad, pad_end, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, dsrc);
    if (n->mem[0])
        bf_node_bwd_arg(n, 0, DNNL_ARG_WORKSPACE, n->mem[0]);
fail:
    return st;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_pool_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                        bf_layer_info *o)
{
    if (s->type == BF_LAYER_GLOBAL_AVGPOOL) {
        o->out_dims[1] = o->out_dims[2] = 1;
        return BF_STATUS_OK;
    }
    for (int d = 0; d < 2; d++) {
        /* every window must hold an input pixel: oneDNN refuses padding of a kernel or more */
        if (2 * s->pad[d] > s->kernel[d] || 2 * s->pad_end[d] > s->kernel[d])
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): pool padding must be at most "
                            "half the kernel", index, s->name);
        o->out_dims[1 + d] = bf_conv_out_size(in[0]->out_dims[1 + d], s->kernel[d],
                                              s->stride[d], s->pad[d], s->pad_end[d], 1);
    }
    return BF_STATUS_OK;
}
