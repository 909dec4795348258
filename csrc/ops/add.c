/* Residual add that was not fused into a conv as a sum post-op. */
#include "core/plan.h"

bf_status bf_op_add_fwd(bf_plan *p, const bf_node *proto)
{
    bf_node n0 = *proto;
    dnnl_primitive_desc_t pd = NULL;
    bf_status st = BF_STATUS_OK;
    const_dnnl_memory_desc_t md = p->values[proto->src[0]].md;

    n0.src[1] = bf_plan_value_as(p, proto->src[1], md);
    if (n0.src[1] < 0)
        return BF_STATUS_OUT_OF_MEMORY;
    DNNL_TRY(dnnl_binary_primitive_desc_create(&pd, p->engine, dnnl_binary_add, md, md, md, NULL));
    bf_plan_push_primitive(p, &n0, &pd, &st);
fail:
    dnnl_primitive_desc_destroy(pd);
    return st;
}
