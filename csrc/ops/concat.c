/* Concatenation over channels (oneDNN concat).  In inference oneDNN picks the output's
 * layout (nhwc throughout where the sources' layouts would leave it a reference kernel);
 * training plans keep sources and output plain, where the backward copies each
 * source's channel slice of the gradient. */
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

typedef struct concat_priv {
    dnnl_memory_t dsrc[BF_MAX_INPUTS]; /* where each source's gradient goes (borrowed) */
} concat_priv;

bf_status bf_op_concat_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    bf_node n0 = *proto, *n;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t dst = NULL, plain[BF_MAX_INPUTS] = {NULL};
    const_dnnl_memory_desc_t srcs[BF_MAX_INPUTS];
    dnnl_dims_t d;
    int train = p->params.training;
    bf_status st = BF_STATUS_OK;

    for (int k = 0; k < s->n_inputs; k++) {
        if (train) {
            BF_TRY(bf_plan_layer_dims(p, s->inputs[k], 1, d));
            BF_TRY(bf_md_plain(&plain[k], 4, d, dnnl_f32));
            n0.src[k] = bf_plan_value_as(p, proto->src[k], plain[k]);
            if (n0.src[k] < 0) {
                st = BF_STATUS_OUT_OF_MEMORY;
                goto fail;
            }
        }
        srcs[k] = p->values[n0.src[k]].md;
    }
    BF_TRY(bf_plan_layer_dims(p, proto->layer, 1, d));
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst, 4, d, dnnl_f32,
                                              train ? dnnl_nchw : dnnl_format_tag_any));
    DNNL_TRY(dnnl_concat_primitive_desc_create(&pd, p->engine, dst, s->n_inputs, 1, srcs,
                                               NULL));
    if (!train && bf_pd_is_ref(pd)) { /* blocked sources whose channels are not a multiple
                                         of the block: all of them nhwc */
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        for (int k = 0; k < s->n_inputs; k++) {
            BF_TRY(bf_md_like(&plain[k], srcs[k], dnnl_nhwc));
            if ((n0.src[k] = bf_plan_value_as(p, proto->src[k], plain[k])) < 0) {
                st = BF_STATUS_OUT_OF_MEMORY;
                goto fail;
            }
            srcs[k] = p->values[n0.src[k]].md;
        }
        dnnl_memory_desc_destroy(dst);
        dst = NULL;
        DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst, 4, d, dnnl_f32, dnnl_nhwc));
        DNNL_TRY(dnnl_concat_primitive_desc_create(&pd, p->engine, dst, s->n_inputs, 1, srcs,
                                                   NULL));
    }
    n = bf_plan_push_primitive(p, &n0, &pd, &st);
    if (n && train && !(n->priv = calloc(1, sizeof(concat_priv))))
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
fail:
    for (int k = 0; k < s->n_inputs; k++)
        dnnl_memory_desc_destroy(plain[k]);
    dnnl_memory_desc_destroy(dst);
    dnnl_primitive_desc_destroy(pd);
    return st;
}


/* Source k's gradient is its channels of the output's (all plain NCHW). */
static bf_status concat_bwd_run(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    concat_priv *cp = n->priv;
    bf_layer_info out, in;
    const float *dy = bf_mem_handle(p->values[n->dst].diff);
    int64_t off = 0;
    bf_model_layer_info(p->model, n->layer, &out);
    for (int k = 0; k < s->n_inputs; k++) {
        int64_t hw = (int64_t)out.out_dims[1] * out.out_dims[2], c_in, c_out = out.out_dims[0];
        float *dx = bf_mem_handle(cp->dsrc[k]);
        bf_status st;
        bf_model_layer_info(p->model, s->inputs[k], &in);
        c_in = in.out_dims[0];
#pragma omp parallel for schedule(static)
        for (int b = 0; b < p->params.batch; b++)
            memcpy(dx + b * c_in * hw, dy + (b * c_out + off) * hw,
                   (size_t)(c_in * hw) * sizeof(float));
        off += c_in;
        if (n->acc[k] && (st = bf_plan_grad_copy(p, n, k, cp->dsrc[k])) != BF_STATUS_OK)
            return st;
    }
    return BF_STATUS_OK;
}

bf_status bf_op_concat_bwd(bf_plan *p, bf_node *n)
{
    concat_priv *cp = n->priv;
    for (int k = 0; k < n->n_src; k++) {
        cp->dsrc[k] = bf_plan_diff_src(p, n, k);
        if (!cp->dsrc[k])
            return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    n->bwd_run = concat_bwd_run;
    return BF_STATUS_OK;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_concat_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                          bf_layer_info *o)
{
    int64_t c = 0;
    for (int k = 0; k < s->n_inputs; k++) {
        const int *d = in[k]->out_dims;
        if (d[1] != o->out_dims[1] || d[2] != o->out_dims[2])
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): concat of %dx%d and %dx%d "
                            "inputs; all must share H and W", index, s->name, o->out_dims[1],
                            o->out_dims[2], d[1], d[2]);
        c += d[0];
    }
    if (c > (1 << 20))
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): concat of %lld channels", index,
                        s->name, (long long)c);
    o->out_dims[0] = (int)c;
    return BF_STATUS_OK;
}
