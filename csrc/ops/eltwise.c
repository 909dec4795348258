/* ReLU and ReLU6 on their own (in inference they are usually fused into a conv). */
#include "core/plan.h"

bf_status bf_op_eltwise_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    const_dnnl_memory_desc_t md = p->values[proto->src[0]].md;
    dnnl_primitive_desc_t pd = NULL;
    int relu6 = s->type == BF_LAYER_RELU6;
    bf_status st = BF_STATUS_OK;

    DNNL_TRY(dnnl_eltwise_forward_primitive_desc_create(
        &pd, p->engine, p->params.training ? dnnl_forward_training : dnnl_forward_inference,
        relu6 ? dnnl_eltwise_clip : dnnl_eltwise_relu, md, md, 0.0f, relu6 ? 6.0f : 0.0f,
        NULL));
    bf_plan_push_primitive(p, proto, &pd, &st);
fail:
    dnnl_primitive_desc_destroy(pd);
    return st;
}
