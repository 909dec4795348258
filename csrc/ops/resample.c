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
