/* Convolution and transposed convolution: forward (with BN folding, sum and eltwise
 * post-ops in inference).  Weights live in the model as (O, I/g, kh, kw); the plan keeps
 * them in the layout the primitive chose. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

enum { W_MEM = 0, B_MEM = 1 };

typedef struct conv_priv {
    int in_c;
    int has_bias; /* the primitive has a bias (own bias or a folded BN) */
} conv_priv;

static int64_t numel4(const int64_t *d, int n)
{
    int64_t k = 1;
    for (int i = 0; i < n; i++)
        k *= d[i];
    return k;
}

/* Copies the layer's weights/bias, folding the BN that follows it (if any), then reorders
 * them into the primitive's layouts. */
static bf_status conv_load(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    conv_priv *cp = n->priv;
    bf_param_view wv;
    dnnl_memory_desc_t wplain = NULL, bplain = NULL;
    float *w = NULL, *b = NULL;
    const float *src_b = NULL;
    int64_t o = s->out_channels, per_o, bdim = o;
    bf_status st = BF_STATUS_OK;

    BF_TRY(bf_model_param(p->model, n->layer, 0, &wv));
    if (!wv.data)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %s: weights not loaded", s->name);
    per_o = numel4(wv.dims, 4) / o;
    w = malloc((size_t)(o * per_o) * sizeof *w);
    b = calloc((size_t)o, sizeof *b);
    if (!w || !b) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    memcpy(w, wv.data, (size_t)(o * per_o) * sizeof *w);
    if (s->has_bias)
        src_b = bf_plan_param(p, n->layer, 1);
    for (int64_t c = 0; c < o; c++)
        b[c] = src_b ? src_b[c] : 0.0f;
    if (n->bn_layer >= 0) {
        const bf_layer_spec *bn = bf_model_layer(p->model, n->bn_layer);
        const float *g = bf_plan_param(p, n->bn_layer, 0), *be = bf_plan_param(p, n->bn_layer, 1);
        const float *mu = bf_plan_param(p, n->bn_layer, 2), *var = bf_plan_param(p, n->bn_layer, 3);
        for (int64_t c = 0; c < o; c++) {
            float k = g[c] / sqrtf(var[c] + bn->eps);
            for (int64_t j = 0; j < per_o; j++)
                w[c * per_o + j] *= k;
            b[c] = (b[c] - mu[c]) * k + be[c];
        }
    }
    bf_node_affine_bound(n, w, b, o, per_o);
    BF_TRY(bf_md_conv_weights_plain(&wplain, s, cp->in_c));
    BF_TRY(bf_mem_from_host(p, &n->mem[W_MEM], dnnl_primitive_desc_query_md(n->pd,
                            dnnl_query_weights_md, 0), wplain, w));
    if (cp->has_bias) {
        BF_TRY(bf_md_plain(&bplain, 1, &bdim, dnnl_f32));
        BF_TRY(bf_mem_from_host(p, &n->mem[B_MEM], dnnl_primitive_desc_query_md(n->pd,
                                dnnl_query_weights_md, 1), bplain, b));
    }
fail:
    dnnl_memory_desc_destroy(wplain);
    dnnl_memory_desc_destroy(bplain);
    free(w);
    free(b);
    return st;
}

/* Padding `pad` at the top / left and `pad_end` at the bottom / right: oneDNN's size check
 * divides with floor, as the shape inference does. */
static void conv_geometry(const bf_layer_spec *s, dnnl_dims_t strides, dnnl_dims_t dil,
                          dnnl_dims_t pad, dnnl_dims_t pad_end)
{
    for (int d = 0; d < 2; d++) {
        strides[d] = s->stride[d];
        dil[d] = s->dilation[d] - 1;
        pad[d] = s->pad[d];
        pad_end[d] = s->pad_end[d];
    }
}

/* The layout inference asks a conv's activations in: oneDNN's channel-blocked nChw16c on
 * AVX-512 (nChw8c on AVX2), where its direct and depthwise kernels run.  Left to choose
 * (format_tag_any), oneDNN takes nhwc and its brgemm kernels, which measured 1.2-2x slower
 * per layer than the blocked ones on MobileNetV2's thin 1x1 and depthwise convs at batch 32
 * (AMD EPYC, AVX-512; docs/PERFORMANCE.md).  A tensor of fewer than 8 channels (an image,
 * a butterfly unit's feature) is left to oneDNN: blocking it would mostly copy padding. */
static dnnl_format_tag_t conv_blocked_tag(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core)
        return dnnl_nChw16c;
    return (isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2 ? dnnl_nChw8c : dnnl_format_tag_any;
}

static dnnl_format_tag_t conv_act_tag(int blocked, int channels)
{
    return blocked && channels >= 8 ? conv_blocked_tag() : dnnl_format_tag_any;
}

/* Inference runs a fused swish with butterfly's own kernel after the primitive (ops/swish.c):
 * oneDNN's swish post-op cost more than the conv itself on EfficientNet-B0's expand convs. */
static int conv_own_swish(const bf_plan *p, const bf_node *proto)
{
    return !p->params.training && proto->act_layer >= 0 &&
           bf_layer_row_of(bf_model_layer(p->model, proto->act_layer)->type)->act ==
               BF_ACT_SWISH;
}

static bf_status conv_try_pd(bf_plan *p, const bf_node *proto, const bf_layer_spec *s,
                             int in_c, int has_bias, int blocked, dnnl_primitive_desc_t *pd)
{
    bf_layer_info info;
    dnnl_memory_desc_t src = NULL, wei = NULL, bias = NULL, dst = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_dims_t sd, dd, wd, bd = {s->out_channels}, strides, dil, pad, pad_end;
    int deconv = s->type == BF_LAYER_DECONV, g = s->groups, wnd;
    dnnl_prop_kind_t prop = p->params.training ? dnnl_forward_training : dnnl_forward_inference;
    bf_status st = BF_STATUS_OK;

    conv_geometry(s, strides, dil, pad, pad_end);
    bf_model_layer_info(p->model, proto->layer, &info);
    sd[0] = dd[0] = p->params.batch;
    for (int d = 0; d < 3; d++) {
        sd[d + 1] = info.in_dims[d];
        dd[d + 1] = info.out_dims[d];
    }
    if (g == 1) {
        wnd = 4;
        wd[0] = s->out_channels, wd[1] = in_c, wd[2] = s->kernel[0], wd[3] = s->kernel[1];
    } else {
        wnd = 5;
        wd[0] = g, wd[1] = s->out_channels / g, wd[2] = in_c / g;
        wd[3] = s->kernel[0], wd[4] = s->kernel[1];
    }
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&src, 4, sd, dnnl_f32,
                                              conv_act_tag(blocked, in_c)));
    DNNL_TRY(dnnl_memory_desc_create_with_tag(&wei, wnd, wd, dnnl_f32, dnnl_format_tag_any));
    if (has_bias)
        DNNL_TRY(dnnl_memory_desc_create_with_tag(&bias, 1, bd, dnnl_f32, dnnl_a));
    if (proto->sum_src >= 0)
        DNNL_TRY(dnnl_memory_desc_clone(&dst, p->values[proto->sum_src].md));
    else
        DNNL_TRY(dnnl_memory_desc_create_with_tag(&dst, 4, dd, dnnl_f32,
                                                  conv_act_tag(blocked, s->out_channels)));
    BF_TRY(bf_attr_post_ops(p, &attr, proto->sum_src >= 0,
                            conv_own_swish(p, proto) ? -1 : proto->act_layer));
    if (deconv)
        DNNL_TRY(dnnl_deconvolution_forward_primitive_desc_create(
            pd, p->engine, prop, dnnl_deconvolution_direct, src, wei, bias, dst, strides, dil,
            pad, pad_end, attr));
    else
        DNNL_TRY(dnnl_convolution_forward_primitive_desc_create(
            pd, p->engine, prop, dnnl_convolution_direct, src, wei, bias, dst, strides, dil, pad,
            pad_end, attr));
fail:
    dnnl_memory_desc_destroy(src);
    dnnl_memory_desc_destroy(wei);
    dnnl_memory_desc_destroy(bias);
    dnnl_memory_desc_destroy(dst);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

/* The forward primitive: in inference first in the blocked layout, kept unless oneDNN has
 * only a reference kernel for it there (a grouped conv whose groups are not a multiple of
 * the block), then in the layouts oneDNN prefers.  Training keeps oneDNN's choice, and so
 * does a transposed conv: in the blocked layout oneDNN runs it as a conv's backward-data
 * with its bias and post-ops in a reference loop ("conv:any+jit"), 39 ms for a restoration
 * unit's 96 -> 96 3x3 stride-2 deconv to 112x112 with a ReLU at batch 1, against 3.1 ms for
 * its own kernel on nhwc ("brgconv_strided"; AMD EPYC, AVX-512). */
static bf_status conv_make_pd(bf_plan *p, const bf_node *proto, const bf_layer_spec *s,
                              int in_c, int has_bias, dnnl_primitive_desc_t *pd)
{
    if (!p->params.training && s->type != BF_LAYER_DECONV &&
        conv_blocked_tag() != dnnl_format_tag_any) {
        bf_status st = conv_try_pd(p, proto, s, in_c, has_bias, 1, pd);
        if (st == BF_STATUS_OK && !bf_pd_is_ref(*pd))
            return BF_STATUS_OK;
        if (st == BF_STATUS_OK)
            dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
    }
    return conv_try_pd(p, proto, s, in_c, has_bias, 0, pd);
}

bf_status bf_op_conv_fwd(bf_plan *p, const bf_node *proto)
{
    const bf_layer_spec *s = bf_model_layer(p->model, proto->layer);
    bf_layer_info info;
    dnnl_primitive_desc_t pd = NULL;
    conv_priv *cp = NULL;
    bf_node *n;
    int src, has_bias = s->has_bias || proto->bn_layer >= 0;
    bf_status st = BF_STATUS_OK;

    bf_model_layer_info(p->model, proto->layer, &info);
    BF_TRY(conv_make_pd(p, proto, s, info.in_dims[0], has_bias, &pd));
    src = bf_plan_value_as(p, proto->src[0], dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0));
    cp = calloc(1, sizeof *cp);
    if (src < 0 || !cp) {
        st = src < 0 ? BF_STATUS_OUT_OF_MEMORY : bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    cp->in_c = info.in_dims[0];
    cp->has_bias = has_bias;
    n = bf_plan_push_node(p, proto);
    if (!n) {
        st = BF_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    n->pd = pd;
    n->priv = cp;
    pd = NULL;
    cp = NULL;
    n->src[0] = src;
    n->after = conv_own_swish(p, proto) ? bf_node_post_swish : NULL;
    n->load = conv_load;
    DNNL_TRY(dnnl_primitive_create(&n->prim, n->pd));
    DNNL_TRY(dnnl_memory_create(&n->mem[W_MEM], dnnl_primitive_desc_query_md(n->pd,
                                dnnl_query_weights_md, 0), p->engine, DNNL_MEMORY_ALLOCATE));
    if (has_bias)
        DNNL_TRY(dnnl_memory_create(&n->mem[B_MEM], dnnl_primitive_desc_query_md(n->pd,
                                    dnnl_query_weights_md, 1), p->engine, DNNL_MEMORY_ALLOCATE));
    n->dst = bf_plan_add_value(p, dnnl_primitive_desc_query_md(n->pd, dnnl_query_dst_md, 0));
    if (n->dst < 0)
        return BF_STATUS_OUT_OF_MEMORY;
    p->values[n->dst].alias = n->sum_src;
    bf_node_arg(n, DNNL_ARG_SRC, p->values[src].mem);
    bf_node_arg(n, DNNL_ARG_WEIGHTS, n->mem[W_MEM]);
    if (has_bias)
        bf_node_arg(n, DNNL_ARG_BIAS, n->mem[B_MEM]);
    bf_node_arg(n, DNNL_ARG_DST, p->values[n->dst].mem);
    return BF_STATUS_OK;
fail:
    dnnl_primitive_desc_destroy(pd);
    free(cp);
    return st;
}

/* ---- backward ------------------------------------------------------------------------ */

/* The backward kernels choose their own layouts (the forward's can leave only reference
 * kernels, e.g. for channel counts that are not a multiple of the vector width); reorders
 * around them adapt the values. */
static bf_status conv_bwd_data(bf_plan *p, bf_node *n, const bf_layer_spec *s)
{
    dnnl_dims_t strides, dil, pad, pad_end;
    dnnl_memory_desc_t wany = NULL, sany = NULL, dany = NULL;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0), w = NULL, ddst = NULL, out = NULL;
    bf_status st = BF_STATUS_OK;
    conv_geometry(s, strides, dil, pad, pad_end);
    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    BF_TRY(bf_md_like(&wany, dnnl_primitive_desc_query_md(n->pd, dnnl_query_weights_md, 0),
                      dnnl_format_tag_any));
    BF_TRY(bf_md_like(&sany, p->values[n->src[0]].md, dnnl_format_tag_any));
    BF_TRY(bf_md_like(&dany, p->values[n->dst].md, dnnl_format_tag_any));
    if (s->type == BF_LAYER_DECONV)
        DNNL_TRY(dnnl_deconvolution_backward_data_primitive_desc_create(
            &n->bwd_pd[0], p->engine, dnnl_deconvolution_direct, sany, wany, dany, strides, dil,
            pad, pad_end, n->pd, NULL));
    else
        DNNL_TRY(dnnl_convolution_backward_data_primitive_desc_create(
            &n->bwd_pd[0], p->engine, dnnl_convolution_direct, sany, wany, dany, strides, dil,
            pad, pad_end, n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    BF_TRY(bf_bwd_input_as(p, n, n->mem[W_MEM], dnnl_primitive_desc_query_md(
                               n->bwd_pd[0], dnnl_query_weights_md, 0), &w));
    BF_TRY(bf_bwd_input_as(p, n, p->values[n->dst].diff, dnnl_primitive_desc_query_md(
                               n->bwd_pd[0], dnnl_query_diff_dst_md, 0), &ddst));
    BF_TRY(bf_bwd_output_as(p, n, dsrc, dnnl_primitive_desc_query_md(
                                n->bwd_pd[0], dnnl_query_diff_src_md, 0), &out));
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, ddst);
    bf_node_bwd_arg(n, 0, DNNL_ARG_WEIGHTS, w);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, out);
fail:
    dnnl_memory_desc_destroy(wany);
    dnnl_memory_desc_destroy(sany);
    dnnl_memory_desc_destroy(dany);
    return st;
}

/* Weights-backward with every layout left to oneDNN. */
static bf_status conv_bwd_weights_pd(bf_plan *p, bf_node *n, const bf_layer_spec *s,
                                     const_dnnl_memory_desc_t dw, const_dnnl_memory_desc_t db)
{
    dnnl_dims_t strides, dil, pad, pad_end;
    dnnl_memory_desc_t src = NULL, dst = NULL;
    bf_status st = BF_STATUS_OK;
    conv_geometry(s, strides, dil, pad, pad_end);
    BF_TRY(bf_md_like(&src, p->values[n->src[0]].md, dnnl_format_tag_any));
    BF_TRY(bf_md_like(&dst, p->values[n->dst].md, dnnl_format_tag_any));
    if (s->type == BF_LAYER_DECONV)
        DNNL_TRY(dnnl_deconvolution_backward_weights_primitive_desc_create(
            &n->bwd_pd[1], p->engine, dnnl_deconvolution_direct, src, dw, db, dst, strides, dil,
            pad, pad_end, n->pd, NULL));
    else
        DNNL_TRY(dnnl_convolution_backward_weights_primitive_desc_create(
            &n->bwd_pd[1], p->engine, dnnl_convolution_direct, src, dw, db, dst, strides, dil,
            pad, pad_end, n->pd, NULL));
fail:
    dnnl_memory_desc_destroy(src);
    dnnl_memory_desc_destroy(dst);
    return st;
}

bf_status bf_op_conv_bwd(bf_plan *p, bf_node *n)
{
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    conv_priv *cp = n->priv;
    const_dnnl_memory_desc_t wmd = dnnl_primitive_desc_query_md(n->pd, dnnl_query_weights_md, 0);
    const_dnnl_memory_desc_t bmd = dnnl_primitive_desc_query_md(n->pd, dnnl_query_weights_md, 1);
    dnnl_memory_desc_t any = NULL, wplain = NULL;
    dnnl_memory_t bsrc = NULL, bddst = NULL;
    int64_t o = s->out_channels;
    /* the image's own gradient is rarely wanted (and a slow kernel for 1-3 channels) */
    int src_is_image = p->values[n->src[0]].producer < 0 ||
                       (p->nodes[p->values[n->src[0]].producer].layer < 0 &&
                        p->nodes[p->values[n->src[0]].producer].src[0] == p->src_value);
    bf_status st = (src_is_image && !p->params.input_grad) ? BF_STATUS_OK
                                                            : conv_bwd_data(p, n, s);
    if (st != BF_STATUS_OK || s->frozen)
        return st;
    BF_TRY(bf_md_like(&any, wmd, dnnl_format_tag_any));
    BF_TRY(conv_bwd_weights_pd(p, n, s, any, cp->has_bias ? bmd : NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[1], n->bwd_pd[1]));
    BF_TRY(bf_bwd_input_as(p, n, p->values[n->src[0]].mem, dnnl_primitive_desc_query_md(
                               n->bwd_pd[1], dnnl_query_src_md, 0), &bsrc));
    BF_TRY(bf_bwd_input_as(p, n, p->values[n->dst].diff, dnnl_primitive_desc_query_md(
                               n->bwd_pd[1], dnnl_query_diff_dst_md, 0), &bddst));
    BF_TRY(bf_md_conv_weights_plain(&wplain, s, cp->in_c));
    BF_TRY(bf_plan_bind_weight_grads(p, n, cp->has_bias ? o : 0, wplain, bsrc, bddst));
fail:
    dnnl_memory_desc_destroy(any);
    dnnl_memory_desc_destroy(wplain);
    return st;
}

/* ---- shapes ---------------------------------------------------------------------------- */

bf_status bf_conv_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                        bf_layer_info *o)
{
    const int *x = in[0]->out_dims;
    int *y = o->out_dims;
    int deconv = s->type == BF_LAYER_DECONV;
    if (x[0] % s->groups || s->out_channels % s->groups)
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): groups %d must divide channels "
                        "%d -> %d", index, s->name, s->groups, x[0], s->out_channels);
    y[0] = s->out_channels;
    for (int d = 0; d < 2; d++) {
        if (!deconv) {
            y[1 + d] = bf_conv_out_size(x[1 + d], s->kernel[d], s->stride[d], s->pad[d],
                                        s->pad_end[d], s->dilation[d]);
            continue;
        }
        if (s->output_pad[d] >= s->stride[d] && s->output_pad[d] >= s->dilation[d])
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): output_pad must be smaller "
                            "than stride or dilation", index, s->name);
        if (s->pad_end[d] != s->pad[d])
            return bf_error(BF_STATUS_UNSUPPORTED, "layer %d (%s): a transposed conv takes "
                            "one padding on both sides (pad_end %d != pad %d)", index, s->name,
                            s->pad_end[d], s->pad[d]);
        y[1 + d] = (x[1 + d] - 1) * s->stride[d] - 2 * s->pad[d] +
                   s->dilation[d] * (s->kernel[d] - 1) + 1 + s->output_pad[d];
    }
    /* a transposed conv does its multiply-adds per input pixel */
    int64_t hw = deconv ? (int64_t)x[1] * x[2] : (int64_t)y[1] * y[2];
    int64_t per_o = (int64_t)(x[0] / s->groups) * s->kernel[0] * s->kernel[1];
    o->macs = hw * s->out_channels * per_o;
    o->n_params = s->out_channels * per_o + (s->has_bias ? s->out_channels : 0);
    return BF_STATUS_OK;
}

int bf_conv_params(const bf_layer_spec *s, const bf_layer_info *info,
                   bf_param out[BF_MAX_PARAMS])
{
    out[0] = bf_param_shape("weight", 4, s->out_channels, info->in_dims[0] / s->groups,
                            s->kernel[0], s->kernel[1]);
    if (!s->has_bias)
        return 1;
    out[1] = bf_param_shape("bias", 1, s->out_channels, 0, 0, 0);
    return 2;
}
