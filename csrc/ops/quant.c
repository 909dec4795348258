/* The 8-bit quantizer of the butterfly unit: per-sample min/max, then uint8 (butterfly.h
 * gives the exact formula).  Plain C loops on plain NCHW tensors; in training the pair is
 * straight-through (identity gradient). */
#include <math.h>
#include <string.h>

#include "core/plan.h"


static size_t sample_size(bf_plan *p, const bf_node *n)
{
    return p->values[n->dst].size / (size_t)p->params.batch /
           (bf_model_layer(p->model, n->layer)->type == BF_LAYER_QUANTIZE ? 1 : sizeof(float));
}

static bf_status quantize_run(bf_plan *p, bf_node *n)
{
    const float *x = bf_mem_handle(p->values[n->src[0]].mem);
    uint8_t *q = bf_mem_handle(p->values[n->dst].mem);
    size_t per = sample_size(p, n);
    int nb = p->params.batch;

    for (int b = 0; b < nb; b++) {
        const float *xs = x + (size_t)b * per;
        float lo = xs[0], hi = xs[0];
        int nan = isnan(xs[0]); /* the comparisons below skip a NaN */
        for (size_t i = 1; i < per; i++) {
            lo = xs[i] < lo ? xs[i] : lo;
            hi = xs[i] > hi ? xs[i] : hi;
            nan |= xs[i] != xs[i];
        }
        if (nan || !bf_range_ok(lo, hi))
            return bf_error(BF_STATUS_NUMERIC, "sample %d: the feature to quantize holds NaN/Inf "
                            "or spans more than a float32", b);
        p->qrange[2 * b] = lo;
        p->qrange[2 * b + 1] = hi;
    }
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        const float *xs = x + (size_t)b * per;
        uint8_t *qs = q + (size_t)b * per;
        float lo = p->qrange[2 * b], hi = p->qrange[2 * b + 1];
        float inv = hi > lo ? 255.0f / (hi - lo) : 0.0f;
        for (size_t i = 0; i < per; i++) {
            float v = floorf((xs[i] - lo) * inv + 0.5f);
            qs[i] = (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
        }
    }
    return BF_STATUS_OK;
}

static bf_status dequantize_run(bf_plan *p, bf_node *n)
{
    const uint8_t *q = bf_mem_handle(p->values[n->src[0]].mem);
    float *x = bf_mem_handle(p->values[n->dst].mem);
    const float *range = n->src[0] == p->src_value ? p->user_src_range : p->qrange;
    size_t per = sample_size(p, n);
    int nb = p->params.batch;

#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        float lo = range[2 * b], step = (range[2 * b + 1] - range[2 * b]) / 255.0f;
        for (size_t i = 0; i < per; i++)
            x[(size_t)b * per + i] = lo + (float)q[(size_t)b * per + i] * step;
    }
    return BF_STATUS_OK;
}

bf_status bf_op_quant_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    int quant = s->type == BF_LAYER_QUANTIZE;
    dnnl_memory_desc_t in = NULL, out = NULL;
    dnnl_dims_t d;
    int64_t dims[4];
    bf_node n0 = *proto, *n;
    bf_status st = BF_STATUS_OK;

    BF_TRY(bf_plan_layer_dims(p, proto->layer, 1, d));
    for (int i = 0; i < 4; i++)
        dims[i] = d[i];
    BF_TRY(bf_md_plain(&in, 4, dims, quant ? dnnl_f32 : dnnl_u8));
    BF_TRY(bf_md_plain(&out, 4, dims, quant ? dnnl_u8 : dnnl_f32));
    n0.src[0] = bf_plan_value_as(p, proto->src[0], in);
    if (n0.src[0] < 0 || !(n = bf_plan_push_node(p, &n0))) {
        st = BF_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    n->run = quant ? quantize_run : dequantize_run;
    n->dst = bf_plan_add_value(p, out);
    if (n->dst < 0)
        st = BF_STATUS_OUT_OF_MEMORY;
fail:
    dnnl_memory_desc_destroy(in);
    dnnl_memory_desc_destroy(out);
    return st;
}

/* Straight-through: in training the quantizer's gradient is the identity. */
static bf_status quant_bwd_run(bf_plan *p, bf_node *n)
{
    return bf_plan_grad_copy(p, n, 0, p->values[n->dst].diff);
}

bf_status bf_op_quant_bwd(bf_plan *p, bf_node *n)
{
    if (!bf_plan_diff_src(p, n, 0))
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    n->bwd_run = quant_bwd_run;
    return BF_STATUS_OK;
}
