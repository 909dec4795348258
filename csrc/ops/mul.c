/* Element-wise multiply of two tensors of one shape, or of a tensor by a per-channel
 * (C, 1, 1) second input (squeeze-and-excitation): oneDNN's binary mul, broadcasting the
 * second source.  Training plans run it on plain layouts, where the backward is two loops. */
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

typedef struct mul_priv {
    int bcast;                  /* the second input is (C, 1, 1) */
    dnnl_memory_t dsrc[2];      /* where each source's gradient goes (borrowed) */
} mul_priv;

static int is_bcast(bf_plan *p, const bf_node *n)
{
    bf_layer_info info;
    bf_model_layer_info(p->model, bf_model_layer(p->model, n->layer)->inputs[1], &info);
    return info.out_dims[1] == 1 && info.out_dims[2] == 1;
}

static bf_status plain_md(bf_plan *p, int layer, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d;
    bf_status st = bf_plan_layer_dims(p, layer, 1, d);
    return st ? st : bf_md_plain(md, 4, d, dnnl_f32);
}

/* The (N, C, 1, 1) scale in the layout family of the tensor it scales: oneDNN's jit binary
 * broadcasts a blocked (nChw16c) tensor's scale only from a blocked scale, and falls back
 * to its reference kernel otherwise.  Plain when src0's layout is none of those tried. */
static bf_status scale_md(bf_plan *p, int layer, const_dnnl_memory_desc_t src0,
                          dnnl_memory_desc_t *md)
{
    static const dnnl_format_tag_t tags[] = {dnnl_nchw, dnnl_nhwc, dnnl_nChw16c, dnnl_nChw8c};
    const dnnl_dims_t *d0;
    dnnl_dims_t d;
    bf_status st = BF_STATUS_OK;
    BF_TRY(bf_plan_layer_dims(p, layer, 1, d));
    DNNL_TRY(dnnl_memory_desc_query(src0, dnnl_query_dims, &d0));
    for (size_t t = 0; t < sizeof tags / sizeof *tags; t++) {
        dnnl_memory_desc_t like = NULL;
        int same;
        DNNL_TRY(dnnl_memory_desc_create_with_tag(&like, 4, *d0, dnnl_f32, tags[t]));
        same = dnnl_memory_desc_equal(like, src0);
        dnnl_memory_desc_destroy(like);
        if (same) {
            DNNL_TRY(dnnl_memory_desc_create_with_tag(md, 4, d, dnnl_f32, tags[t]));
            return BF_STATUS_OK;
        }
    }
    return bf_md_plain(md, 4, d, dnnl_f32);
fail:
    return st;
}

bf_status bf_op_mul_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    bf_node n0 = *proto, *n;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t md0 = NULL, md1 = NULL;
    mul_priv *mp = calloc(1, sizeof *mp);
    bf_status st = BF_STATUS_OK;
    if (!mp)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    mp->bcast = is_bcast(p, proto);
    if (p->params.training)
        BF_TRY(plain_md(p, s->inputs[0], &md0));
    else
        DNNL_TRY(dnnl_memory_desc_clone(&md0, p->values[proto->src[0]].md));
    if (p->params.training)
        BF_TRY(plain_md(p, s->inputs[1], &md1));
    else if (mp->bcast)
        BF_TRY(scale_md(p, s->inputs[1], md0, &md1));
    else
        DNNL_TRY(dnnl_memory_desc_clone(&md1, md0));
    n0.src[0] = bf_plan_value_as(p, proto->src[0], md0);
    n0.src[1] = n0.src[0] < 0 ? -1 : bf_plan_value_as(p, proto->src[1], md1);
    if (n0.src[1] < 0) {
        st = BF_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    DNNL_TRY(dnnl_binary_primitive_desc_create(&pd, p->engine, dnnl_binary_mul, md0, md1, md0,
                                               NULL));
    n = bf_plan_push_primitive(p, &n0, &pd, &st);
    if (n) {
        n->priv = mp;
        mp = NULL;
    }
fail:
    dnnl_memory_desc_destroy(md0);
    dnnl_memory_desc_destroy(md1);
    dnnl_primitive_desc_destroy(pd);
    free(mp);
    return st;
}


/* d src0 = d dst * src1; d src1 = d dst * src0, summed over H, W when it was broadcast.
 * Each is finished (and added, when a later reader wrote first) before the next: the two
 * may share the plan's scratch. */
static bf_status mul_bwd_run(bf_plan *p, bf_node *n)
{
    mul_priv *mp = n->priv;
    bf_layer_info info;
    const float *dy = bf_mem_handle(p->values[n->dst].diff);
    const float *x0 = bf_mem_handle(p->values[n->src[0]].mem), *x1 = bf_mem_handle(p->values[n->src[1]].mem);
    int64_t nc, hw;
    bf_model_layer_info(p->model, n->layer, &info);
    nc = (int64_t)p->params.batch * info.out_dims[0];
    hw = (int64_t)info.out_dims[1] * info.out_dims[2];
    for (int k = 1; k >= 0; k--) {
        const float *other = k == 0 ? x1 : x0;
        float *out = bf_mem_handle(mp->dsrc[k]);
        bf_status st;
        if (!out)
            continue;
        if (k == 1 && mp->bcast) {
#pragma omp parallel for schedule(static)
            for (int64_t c = 0; c < nc; c++) {
                double acc = 0.0;
                for (int64_t i = 0; i < hw; i++)
                    acc += (double)dy[c * hw + i] * other[c * hw + i];
                out[c] = (float)acc;
            }
        } else {
            int64_t step = (k == 0 && mp->bcast) ? 0 : 1;
#pragma omp parallel for schedule(static)
            for (int64_t c = 0; c < nc; c++)
                for (int64_t i = 0; i < hw; i++)
                    out[c * hw + i] = dy[c * hw + i] * other[step ? c * hw + i : c];
        }
        if (n->acc[k] && (st = bf_plan_grad_copy(p, n, k, mp->dsrc[k])) != BF_STATUS_OK)
            return st;
    }
    return BF_STATUS_OK;
}

bf_status bf_op_mul_bwd(bf_plan *p, bf_node *n)
{
    mul_priv *mp = n->priv;
    for (int k = 0; k < 2; k++) {
        mp->dsrc[k] = bf_plan_diff_src(p, n, k);
        if (!mp->dsrc[k])
            return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    n->bwd_run = mul_bwd_run;
    return BF_STATUS_OK;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_mul_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                       bf_layer_info *o)
{
    const int *a = in[0]->out_dims, *b = in[1]->out_dims;
    (void)o;
    if (!memcmp(a, b, sizeof in[0]->out_dims) || (b[0] == a[0] && b[1] == 1 && b[2] == 1))
        return BF_STATUS_OK;
    return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): mul of %dx%dx%d by %dx%dx%d; the second "
                    "input must have the first's shape or be (C, 1, 1) with its channels",
                    index, s->name, a[0], a[1], a[2], b[0], b[1], b[2]);
}
