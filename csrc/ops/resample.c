/* Nearest-neighbour upsampling by an integer factor. */
#include "core/plan.h"

bf_status bf_op_resample_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    const_dnnl_memory_desc_t src = p->values[proto->src[0]].md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t dst = NULL;
    dnnl_dims_t out;
    float factors[2] = {(float)s->scale, (float)s->scale};
    bf_status st = BF_STATUS_OK;

    BF_TRY(bf_plan_layer_dims(p, proto->layer, 1, out));
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst, 4, out, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(dnnl_resampling_forward_primitive_desc_create(
        &pd, p->engine, p->params.training ? dnnl_forward_training : dnnl_forward_inference,
        dnnl_resampling_nearest, factors, src, dst, NULL));
    bf_plan_push_primitive(p, proto, &pd, &st);
fail:
    dnnl_memory_desc_destroy(dst);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

bf_status bf_op_resample_bwd(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    float factors[2] = {(float)s->scale, (float)s->scale};
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0);
    bf_status st = BF_STATUS_OK;
    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    DNNL_TRY(dnnl_resampling_backward_primitive_desc_create(
        &n->bwd_pd[0], p->engine, dnnl_resampling_nearest, factors, p->values[n->src[0]].md,
        p->values[n->dst].md, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, dsrc);
fail:
    return st;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_resample_infer(const bf_layer_spec *s, int index,
                            const bf_layer_info *const in[], bf_layer_info *o)
{
    (void)index;
    o->out_dims[1] = in[0]->out_dims[1] * s->scale;
    o->out_dims[2] = in[0]->out_dims[2] * s->scale;
    return BF_STATUS_OK;
}
