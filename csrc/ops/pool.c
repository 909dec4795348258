/* Max-pool, average-pool (padding excluded) and global average-pool. */
#include "core/plan.h"

bf_status bf_op_pool_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    const_dnnl_memory_desc_t src = p->values[proto->src[0]].md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t dst = NULL;
    dnnl_dims_t in, out, k, str = {s->stride[0], s->stride[1]}, dil = {0, 0};
    dnnl_dims_t pad = {s->pad[0], s->pad[1]};
    int train = p->params.training, max = s->type == BF_LAYER_MAXPOOL;
    bf_node *n;
    bf_status st = BF_STATUS_OK;

    BF_TRY(bf_plan_layer_dims(p, proto->layer, 0, in));
    BF_TRY(bf_plan_layer_dims(p, proto->layer, 1, out));
    if (s->type == BF_LAYER_GLOBAL_AVGPOOL) {
        k[0] = in[2], k[1] = in[3];
        str[0] = str[1] = 1;
        pad[0] = pad[1] = 0;
    } else {
        k[0] = s->kernel[0], k[1] = s->kernel[1];
    }
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst, 4, out, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(dnnl_pooling_forward_primitive_desc_create(
        &pd, p->engine, train ? dnnl_forward_training : dnnl_forward_inference,
        max ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding, src, dst, str, k, dil, pad,
        pad, NULL));
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
