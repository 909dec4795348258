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

bf_status bf_op_eltwise_bwd(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    const_dnnl_memory_desc_t md = p->values[n->src[0]].md;
    int relu6 = s->type == BF_LAYER_RELU6;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0);
    bf_status st = BF_STATUS_OK;
    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    DNNL_TRY(dnnl_eltwise_backward_primitive_desc_create(
        &n->bwd_pd[0], p->engine, relu6 ? dnnl_eltwise_clip : dnnl_eltwise_relu, md, md, md,
        0.0f, relu6 ? 6.0f : 0.0f, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    bf_node_bwd_arg(n, 0, DNNL_ARG_SRC, p->values[n->src[0]].mem);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, dsrc);
fail:
    return st;
}
