/* Fully connected layer (oneDNN inner product).  It reads its input as N x (C*H*W); the
 * model's weight (O, C*H*W) is the plain oihw layout of (O, C, H, W). */
#include <stdlib.h>

#include "core/plan.h"

enum { W_MEM = 0, B_MEM = 1 };

static bf_status linear_load(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    const_dnnl_memory_desc_t wmd = dnnl_primitive_desc_query_md(n->pd, dnnl_query_weights_md, 0);
    dnnl_memory_desc_t wplain = NULL, bplain = NULL;
    const float *w = bf_plan_param(p, n->layer, 0), *b = s->has_bias ? bf_plan_param(p, n->layer, 1) : NULL;
    const dnnl_dims_t *wd;
    int nd;
    int64_t dims[4], o = s->out_channels, per_o = 1;
    bf_status st = BF_STATUS_OK;

    if (!w || (s->has_bias && !b))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %s: weights not loaded", s->name);
    DNNL_TRY(dnnl_memory_desc_query(wmd, dnnl_query_ndims_s32, &nd));
    DNNL_TRY(dnnl_memory_desc_query(wmd, dnnl_query_dims, &wd));
    for (int d = 0; d < nd; d++)
        dims[d] = (*wd)[d];
    for (int d = 1; d < nd; d++)
        per_o *= dims[d];
    bf_node_affine_bound(n, w, b, o, per_o);
    BF_TRY(bf_md_plain(&wplain, nd, dims, dnnl_f32));
    BF_TRY(bf_mem_from_host(p, &n->mem[W_MEM], wmd, wplain, w));
    if (b) {
        BF_TRY(bf_md_plain(&bplain, 1, &o, dnnl_f32));
        BF_TRY(bf_mem_from_host(p, &n->mem[B_MEM],
                                dnnl_primitive_desc_query_md(n->pd, dnnl_query_weights_md, 1),
                                bplain, b));
    }
fail:
    dnnl_memory_desc_destroy(wplain);
    dnnl_memory_desc_destroy(bplain);
    return st;
}

bf_status bf_op_linear_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    const_dnnl_memory_desc_t src = p->values[proto->src[0]].md;
    dnnl_memory_desc_t wei = NULL, bias = NULL, dst = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const dnnl_dims_t *sd;
    dnnl_dims_t wd, bd = {s->out_channels}, dd = {p->params.batch, s->out_channels};
    int nd;
    bf_node *n;
    bf_status st = BF_STATUS_OK;

    DNNL_TRY(dnnl_memory_desc_query(src, dnnl_query_ndims_s32, &nd));
    DNNL_TRY(dnnl_memory_desc_query(src, dnnl_query_dims, &sd));
    wd[0] = s->out_channels;
    for (int d = 1; d < nd; d++)
        wd[d] = (*sd)[d];
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&wei, nd, wd, dnnl_f32, dnnl_format_tag_any));
    if (s->has_bias)
        DNNL_TRY(dnnl_memory_desc_create_with_tag(&bias, 1, bd, dnnl_f32, dnnl_a));
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst, 2, dd, dnnl_f32, dnnl_nc));
    DNNL_TRY(dnnl_inner_product_forward_primitive_desc_create(
        &pd, p->engine, p->params.training ? dnnl_forward_training : dnnl_forward_inference, src,
        wei, bias, dst, NULL));
    n = bf_plan_push_primitive(p, proto, &pd, &st);
    if (!n)
        goto fail;
    n->load = linear_load;
    DNNL_TRY(dnnl_memory_create(&n->mem[W_MEM], dnnl_primitive_desc_query_md(n->pd,
                                dnnl_query_weights_md, 0), p->engine, DNNL_MEMORY_ALLOCATE));
    bf_node_arg(n, DNNL_ARG_WEIGHTS, n->mem[W_MEM]);
    if (s->has_bias) {
        DNNL_TRY(dnnl_memory_create(&n->mem[B_MEM], dnnl_primitive_desc_query_md(n->pd,
                                    dnnl_query_weights_md, 1), p->engine, DNNL_MEMORY_ALLOCATE));
        bf_node_arg(n, DNNL_ARG_BIAS, n->mem[B_MEM]);
    }
fail:
    dnnl_memory_desc_destroy(wei);
    dnnl_memory_desc_destroy(bias);
    dnnl_memory_desc_destroy(dst);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

bf_status bf_op_linear_bwd(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    const_dnnl_memory_desc_t wmd = dnnl_primitive_desc_query_md(n->pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t bmd = dnnl_primitive_desc_query_md(n->pd, dnnl_query_weights_md, 1);
    const_dnnl_memory_desc_t src = p->values[n->src[0]].md, dst = p->values[n->dst].md;
    dnnl_memory_desc_t wplain = NULL;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0);
    const dnnl_dims_t *wd;
    int64_t dims[4], o = s->out_channels;
    int nd;
    bf_status st = BF_STATUS_OK;

    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    DNNL_TRY(dnnl_inner_product_backward_data_primitive_desc_create(&n->bwd_pd[0], p->engine, src,
                                                                    wmd, dst, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_WEIGHTS, n->mem[W_MEM]);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, dsrc);
    if (s->frozen)
        return BF_STATUS_OK;
    DNNL_TRY(dnnl_inner_product_backward_weights_primitive_desc_create(
        &n->bwd_pd[1], p->engine, src, wmd, s->has_bias ? bmd : NULL, dst, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[1], n->bwd_pd[1]));
    DNNL_TRY(dnnl_memory_desc_query(wmd, dnnl_query_ndims_s32, &nd));
    DNNL_TRY(dnnl_memory_desc_query(wmd, dnnl_query_dims, &wd));
    for (int d = 0; d < nd; d++)
        dims[d] = (*wd)[d];
    BF_TRY(bf_md_plain(&wplain, nd, dims, dnnl_f32));
    BF_TRY(bf_plan_bind_weight_grads(p, n, s->has_bias ? o : 0, wplain,
                                     p->values[n->src[0]].mem, p->values[n->dst].diff));
fail:
    dnnl_memory_desc_destroy(wplain);
    return st;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_linear_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                          bf_layer_info *o)
{
    const int *x = in[0]->out_dims;
    (void)index;
    o->out_dims[0] = s->out_channels;
    o->out_dims[1] = o->out_dims[2] = 1;
    o->macs = (int64_t)x[0] * x[1] * x[2] * s->out_channels;
    o->n_params = o->macs + (s->has_bias ? s->out_channels : 0);
    return BF_STATUS_OK;
}

int bf_linear_params(const bf_layer_spec *s, const bf_layer_info *info,
                     bf_param out[BF_MAX_PARAMS])
{
    const int *x = info->in_dims;
    out[0] = bf_param_shape("weight", 2, s->out_channels, (int64_t)x[0] * x[1] * x[2], 0, 0);
    if (!s->has_bias)
        return 1;
    out[1] = bf_param_shape("bias", 1, s->out_channels, 0, 0, 0);
    return 2;
}
