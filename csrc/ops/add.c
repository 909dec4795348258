/* Residual add that was not fused into a conv as a sum post-op. */
#include <string.h>

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

/* The gradient of a sum reaches both addends unchanged. */
static bf_status add_bwd_run(bf_plan *p, bf_node *n)
{
    for (int k = 0; k < 2; k++) {
        bf_status st = bf_plan_grad_copy(p, n, k, p->values[n->dst].diff);
        if (st != BF_STATUS_OK)
            return st;
    }
    return BF_STATUS_OK;
}

bf_status bf_op_add_bwd(bf_plan *p, bf_node *n)
{
    for (int k = 0; k < 2; k++)
        if (!bf_plan_diff_src(p, n, k))
            return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    n->bwd_run = add_bwd_run;
    return BF_STATUS_OK;
}

/* A layout change: its gradient changes layout back. */
bf_status bf_op_reorder_bwd(bf_plan *p, bf_node *n)
{
    const_dnnl_memory_desc_t from, to;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0);
    bf_status st = BF_STATUS_OK;
    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    DNNL_TRY(dnnl_memory_get_memory_desc(p->values[n->dst].diff, &from));
    DNNL_TRY(dnnl_memory_get_memory_desc(dsrc, &to));
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&n->bwd_pd[0], from, p->engine, to, p->engine,
                                                NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    bf_node_bwd_arg(n, 0, DNNL_ARG_FROM, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_TO, dsrc);
fail:
    return st;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_add_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                       bf_layer_info *o)
{
    (void)o;
    if (memcmp(in[0]->out_dims, in[1]->out_dims, sizeof in[0]->out_dims))
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): add of different shapes", index,
                        s->name);
    return BF_STATUS_OK;
}
