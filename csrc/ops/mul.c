/* Element-wise multiply of two tensors of one shape, or of a tensor by a per-channel
 * (C, 1, 1) second input (squeeze-and-excitation): oneDNN's binary mul, broadcasting the
 * second source, except the per-channel one in inference (a loop, mul_bcast_run).  Training
 * plans run it on plain layouts, where the backward is two loops. */
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

typedef struct mul_priv {
    int bcast;                  /* the second input is (C, 1, 1) */
    int64_t cb, blk, hw;        /* inference loop: src0's channel blocking, pixels */
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

/* In inference, src0 * a per-channel scale runs as a loop of its own where src0 is laid out
 * as bf_md_channel_blocks describes, the scale in the same layout: oneDNN's binary
 * broadcasts an (N, C, 1, 1) scale with a slow kernel (a reference one for a blocked src0,
 * and in nhwc at batch 32 about 6x ONNX Runtime's time for the same multiplies). */
static bf_status mul_bcast_run(bf_plan *p, bf_node *n)
{
    const mul_priv *mp = n->priv;
    const float *x = bf_mem_handle(p->values[n->src[0]].mem);
    const float *sc = bf_mem_handle(p->values[n->src[1]].mem);
    float *y = bf_mem_handle(p->values[n->dst].mem);
    int64_t rows = (int64_t)p->params.batch * mp->cb, hw = mp->hw, blk = mp->blk;
    /* tasks of about 16k floats: (sample, channel block, a run of pixels) */
    int64_t per = blk >= 16384 ? 1 : 16384 / blk, chunks = (hw + per - 1) / per;
#pragma omp parallel for schedule(static) if (rows * hw * blk > BF_PARALLEL_MIN)
    for (int64_t t = 0; t < rows * chunks; t++) {
        int64_t r = t / chunks, i0 = t % chunks * per, i1 = i0 + per < hw ? i0 + per : hw;
        const float *s = sc + r * blk;
        for (int64_t i = i0; i < i1; i++) {
            const float *xi = x + (r * hw + i) * blk;
            float *yi = y + (r * hw + i) * blk;
            for (int64_t b = 0; b < blk; b++)
                yi[b] = xi[b] * s[b];
        }
    }
    return BF_STATUS_OK;
}

/* Pushes the inference node of src0 * scale when src0's layout is one mul_bcast_run
 * handles; *done 0 (nothing pushed) otherwise. */
static bf_status mul_bcast_push(bf_plan *p, bf_node *n0, mul_priv **mp, int *done)
{
    const_dnnl_memory_desc_t md0 = p->values[n0->src[0]].md;
    dnnl_memory_desc_t md1 = NULL;
    dnnl_format_tag_t tag;
    dnnl_dims_t d;
    bf_node *n;
    bf_status st = BF_STATUS_OK;
    *done = 0;
    if (!bf_md_channel_blocks(md0, &tag, &(*mp)->cb, &(*mp)->blk))
        return BF_STATUS_OK;
    BF_TRY(bf_plan_layer_dims(p, bf_model_layer(p->model, n0->layer)->inputs[1], 1, d));
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&md1, 4, d, dnnl_f32, tag));
    BF_TRY(bf_plan_layer_dims(p, n0->layer, 1, d));
    (*mp)->hw = d[2] * d[3];
    n0->src[1] = bf_plan_value_as(p, n0->src[1], md1);
    if (n0->src[1] < 0 || !(n = bf_plan_push_node(p, n0)) ||
        (n->dst = bf_plan_add_value(p, md0)) < 0) {
        st = BF_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    n->run = mul_bcast_run;
    n->priv = *mp;
    *mp = NULL;
    *done = 1;
fail:
    dnnl_memory_desc_destroy(md1);
    return st;
}

bf_status bf_op_mul_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    bf_node n0 = *proto, *n;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t md0 = NULL, md1 = NULL;
    mul_priv *mp = calloc(1, sizeof *mp);
    int done = 0;
    bf_status st = BF_STATUS_OK;
    if (!mp)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    mp->bcast = is_bcast(p, proto);
    if (mp->bcast && !p->params.training) {
        BF_TRY(mul_bcast_push(p, &n0, &mp, &done));
        if (done)
            goto fail;
    }
    if (p->params.training)
        BF_TRY(plain_md(p, s->inputs[0], &md0));
    else
        DNNL_TRY(dnnl_memory_desc_clone(&md0, p->values[proto->src[0]].md));
    if (mp->bcast || p->params.training)
        BF_TRY(plain_md(p, s->inputs[1], &md1));
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
