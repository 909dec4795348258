/* The table of layer types (see core/layers.h) and the shape rules the op families share. */
#include <string.h>

#include "core/layers.h"
#include "core/plan.h"

#define W BF_KEY_WINDOW
#define OC BF_KEY_OUT_CHANNELS

/* clang-format off */
static const bf_layer_row rows[BF_LAYER_TYPE_COUNT_] = {
    [BF_LAYER_INPUT] = {"input", 0, BF_KEY_SHAPE},
    [BF_LAYER_CONV] = {"conv", 1, OC | W | BF_KEY_DILATION, BF_ACT_NONE, bf_conv_infer,
                       bf_conv_params, bf_op_conv_fwd, bf_op_conv_bwd, BF_CL_CONV,
                       .carries = BF_CARRY_WINDOW, .bound = BF_BOUND_AFFINE},
    [BF_LAYER_DECONV] = {"deconv", 1, OC | W | BF_KEY_DILATION | BF_KEY_OUTPUT_PAD,
                         BF_ACT_NONE, bf_conv_infer, bf_conv_params, bf_op_conv_fwd,
                         bf_op_conv_bwd, BF_CL_NONE, .bound = BF_BOUND_AFFINE},
    [BF_LAYER_BATCHNORM] = {"batchnorm", 1, BF_KEY_NORM, BF_ACT_NONE, bf_batchnorm_infer,
                            bf_batchnorm_params, bf_op_batchnorm_fwd, bf_op_batchnorm_bwd,
                            BF_CL_AFFINE, .carries = BF_CARRY_ALL, .bound = BF_BOUND_AFFINE},
    [BF_LAYER_RELU] = {"relu", 1, 0, BF_ACT_RELU, NULL, NULL, bf_op_eltwise_fwd,
                       bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1, .bound = BF_BOUND_SAME},
    [BF_LAYER_RELU6] = {"relu6", 1, 0, BF_ACT_RELU6, NULL, NULL, bf_op_eltwise_fwd,
                        bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1, .bound = BF_BOUND_RELU6},
    [BF_LAYER_MAXPOOL] = {"maxpool", 1, W, BF_ACT_NONE, bf_pool_infer, NULL, bf_op_pool_fwd,
                          bf_op_pool_bwd, BF_CL_POOL, .bound = BF_BOUND_SAME},
    [BF_LAYER_AVGPOOL] = {"avgpool", 1, W, BF_ACT_NONE, bf_pool_infer, NULL, bf_op_pool_fwd,
                          bf_op_pool_bwd, BF_CL_POOL, .carries = BF_CARRY_WINDOW,
                          .bound = BF_BOUND_MEAN},
    [BF_LAYER_GLOBAL_AVGPOOL] = {"global_avgpool", 1, 0, BF_ACT_NONE, bf_pool_infer, NULL,
                                 bf_op_pool_fwd, bf_op_pool_bwd, BF_CL_POOL,
                                 .carries = BF_CARRY_ALL, .bound = BF_BOUND_MEAN},
    [BF_LAYER_ADD] = {"add", 2, 0, BF_ACT_NONE, bf_add_infer, NULL, bf_op_add_fwd,
                      bf_op_add_bwd, BF_CL_ADD, 0, 1, .carries = BF_CARRY_ALL,
                      .bound = BF_BOUND_SUM},
    [BF_LAYER_LINEAR] = {"linear", 1, OC, BF_ACT_NONE, bf_linear_infer, bf_linear_params,
                         bf_op_linear_fwd, bf_op_linear_bwd, BF_CL_CONV, 0, 1,
                         .carries = BF_CARRY_ALL, .bound = BF_BOUND_AFFINE},
    [BF_LAYER_SOFTMAX] = {"softmax", 1, 0, BF_ACT_NONE, NULL, NULL, bf_op_softmax_fwd,
                          bf_op_softmax_bwd, BF_CL_SOFTMAX, 0, 1, .bound = BF_BOUND_ONE},
    [BF_LAYER_QUANTIZE] = {"quantize", 1, 0, BF_ACT_NONE, NULL, NULL, bf_op_quant_fwd,
                           bf_op_quant_bwd, BF_CL_QUANT, 1, 1, .bound = BF_BOUND_SAME},
    [BF_LAYER_DEQUANTIZE] = {"dequantize", 1, 0, BF_ACT_NONE, NULL, NULL, bf_op_quant_fwd,
                             bf_op_quant_bwd, BF_CL_NONE, 0, 1, .bound = BF_BOUND_SAME},
    [BF_LAYER_UPSAMPLE] = {"upsample", 1, BF_KEY_SCALE, BF_ACT_NONE, bf_resample_infer, NULL,
                           bf_op_resample_fwd, bf_op_resample_bwd, BF_CL_UPSAMPLE,
                           .carries = BF_CARRY_ALL, .bound = BF_BOUND_SAME},
    [BF_LAYER_SIGMOID] = {"sigmoid", 1, 0, BF_ACT_SIGMOID, NULL, NULL, bf_op_eltwise_fwd,
                          bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1, .bound = BF_BOUND_ONE},
    [BF_LAYER_SWISH] = {"swish", 1, 0, BF_ACT_SWISH, NULL, NULL, bf_op_eltwise_fwd,
                        bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1, .carries = BF_CARRY_ALL,
                        .bound = BF_BOUND_SAME},
    [BF_LAYER_HARDSWISH] = {"hardswish", 1, 0, BF_ACT_HARDSWISH, NULL, NULL, bf_op_eltwise_fwd,
                            bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1, .bound = BF_BOUND_SAME},
    [BF_LAYER_HARDSIGMOID] = {"hardsigmoid", 1, BF_KEY_ALPHA | BF_KEY_BETA, BF_ACT_HARDSIGMOID,
                              NULL, NULL, bf_op_eltwise_fwd, bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1,
                              .bound = BF_BOUND_ONE},
    [BF_LAYER_CLIP] = {"clip", 1, BF_KEY_ALPHA | BF_KEY_BETA, BF_ACT_CLIP, bf_clip_infer, NULL,
                       bf_op_eltwise_fwd, bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1,
                       .bound = BF_BOUND_CLIP},
    [BF_LAYER_LEAKY_RELU] = {"leaky_relu", 1, BF_KEY_ALPHA, BF_ACT_LEAKY_RELU, NULL, NULL,
                             bf_op_eltwise_fwd, bf_op_eltwise_bwd, BF_CL_AFFINE, 0, 1,
                             .bound = BF_BOUND_SCALED},
    [BF_LAYER_MUL] = {"mul", 2, 0, BF_ACT_NONE, bf_mul_infer, NULL, bf_op_mul_fwd,
                      bf_op_mul_bwd, BF_CL_MUL, .carries = BF_CARRY_ALL,
                      .bound = BF_BOUND_PRODUCT},
    [BF_LAYER_CONCAT] = {"concat", BF_INPUTS_MANY, 0, BF_ACT_NONE, bf_concat_infer, NULL,
                         bf_op_concat_fwd, bf_op_concat_bwd, BF_CL_CONCAT,
                         .carries = BF_CARRY_ALL, .bound = BF_BOUND_SAME},
};
/* clang-format on */

const bf_layer_row *bf_layer_row_of(bf_layer_type t)
{
    return (t >= 0 && t < BF_LAYER_TYPE_COUNT_) ? &rows[t] : NULL;
}

int bf_layer_inputs_ok(const bf_layer_spec *s)
{
    int want = bf_layer_row_of(s->type)->n_inputs;
    if (want == BF_INPUTS_MANY)
        return s->n_inputs >= 2 && s->n_inputs <= BF_MAX_INPUTS;
    return s->n_inputs == want;
}

int bf_conv_out_size(int in, int k, int stride, int pad, int pad_end, int dilation)
{
    int span = dilation * (k - 1) + 1, room = in + pad + pad_end - span;
    return room < 0 ? 0 : room / stride + 1;
}

bf_param bf_param_shape(const char *name, int ndims, int64_t d0, int64_t d1, int64_t d2,
                        int64_t d3)
{
    bf_param p;
    memset(&p, 0, sizeof p);
    p.name = name;
    p.ndims = ndims;
    p.dims[0] = d0;
    p.dims[1] = d1;
    p.dims[2] = d2;
    p.dims[3] = d3;
    return p;
}
