/* Softmax over channels. */
#include "core/plan.h"

bf_status bf_op_softmax_fwd(bf_plan *p, const bf_node *proto)
{
    const_dnnl_memory_desc_t md = p->values[proto->src[0]].md;
    dnnl_primitive_desc_t pd = NULL;
    bf_status st = BF_STATUS_OK;

    DNNL_TRY(dnnl_softmax_forward_primitive_desc_create(
        &pd, p->engine, p->params.training ? dnnl_forward_training : dnnl_forward_inference,
        dnnl_softmax_accurate, md, md, 1, NULL));
    bf_plan_push_primitive(p, proto, &pd, &st);
fail:
    dnnl_primitive_desc_destroy(pd);
    return st;
}
