/* Activations on their own (in inference a conv usually absorbs them as a post-op): ReLU,
 * ReLU6, sigmoid, swish, hardswish, hardsigmoid, clip and leaky ReLU, each one oneDNN
 * eltwise algorithm -- except swish in inference, which runs butterfly's own kernel
 * (ops/swish.c). */
#include "core/plan.h"

bf_status bf_eltwise_alg(const bf_layer_spec *s, dnnl_alg_kind_t *alg, float *alpha,
                         float *beta)
{
    *alpha = *beta = 0.0f;
    *alg = dnnl_alg_kind_undef;
    switch (bf_layer_row_of(s->type)->act) {
    case BF_ACT_RELU: *alg = dnnl_eltwise_relu; break;
    case BF_ACT_RELU6: *alg = dnnl_eltwise_clip, *beta = 6.0f; break;
    case BF_ACT_SIGMOID: *alg = dnnl_eltwise_logistic; break;
    case BF_ACT_SWISH: *alg = dnnl_eltwise_swish, *alpha = 1.0f; break;
    case BF_ACT_HARDSWISH: *alg = dnnl_eltwise_hardswish, *alpha = 1.0f / 6.0f, *beta = 0.5f; break;
    case BF_ACT_HARDSIGMOID: *alg = dnnl_eltwise_hardsigmoid, *alpha = s->alpha, *beta = s->beta; break;
    case BF_ACT_CLIP: *alg = dnnl_eltwise_clip, *alpha = s->alpha, *beta = s->beta; break;
    case BF_ACT_LEAKY_RELU: *alg = dnnl_eltwise_relu, *alpha = s->alpha; break;
    default:
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %s (%s) is not an activation", s->name,
                        bf_layer_type_str(s->type));
    }
    return BF_STATUS_OK;
}

bf_status bf_op_eltwise_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    const_dnnl_memory_desc_t md = p->values[proto->src[0]].md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_alg_kind_t alg;
    float alpha, beta;
    bf_status st = BF_STATUS_OK;

    if (!p->params.training && bf_layer_row_of(s->type)->act == BF_ACT_SWISH)
        return bf_op_swish_fwd(p, proto);
    BF_TRY(bf_eltwise_alg(s, &alg, &alpha, &beta));
    DNNL_TRY(dnnl_eltwise_forward_primitive_desc_create(
        &pd, p->engine, p->params.training ? dnnl_forward_training : dnnl_forward_inference,
        alg, md, md, alpha, beta, NULL));
    bf_plan_push_primitive(p, proto, &pd, &st);
fail:
    dnnl_primitive_desc_destroy(pd);
    return st;
}

bf_status bf_op_eltwise_bwd(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    const_dnnl_memory_desc_t md = p->values[n->src[0]].md;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0);
    dnnl_alg_kind_t alg;
    float alpha, beta;
    bf_status st = BF_STATUS_OK;
    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    BF_TRY(bf_eltwise_alg(s, &alg, &alpha, &beta));
    DNNL_TRY(dnnl_eltwise_backward_primitive_desc_create(&n->bwd_pd[0], p->engine, alg, md, md,
                                                         md, alpha, beta, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    bf_node_bwd_arg(n, 0, DNNL_ARG_SRC, p->values[n->src[0]].mem);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, dsrc);
fail:
    return st;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_clip_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                        bf_layer_info *o)
{
    (void)in;
    (void)o;
    if (!(s->alpha <= s->beta))
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): clip's min (alpha %g) is above "
                        "its max (beta %g)", index, s->name, (double)s->alpha, (double)s->beta);
    return BF_STATUS_OK;
}
