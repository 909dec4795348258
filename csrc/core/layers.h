/* The table of layer types.  One row per bf_layer_type holds everything the core knows about
 * the type: its name, how many inputs it takes, which spec keys it uses, its shape inference
 * and parameters, and how each backend runs it (the oneDNN forward and backward, the OpenCL
 * op).  Adding a layer type is one enum value in butterfly.h, one row in core/layers.c and
 * its op files; nothing else switches on the type.  Private to csrc/. */
#ifndef BF_CORE_LAYERS_H
#define BF_CORE_LAYERS_H

#include "core/spec.h"

typedef struct bf_plan bf_plan;
typedef struct bf_node bf_node;

/* Activation layer types by their row's `act` (oneDNN eltwise algorithm, OpenCL act code).
 * On oneDNN a conv absorbs any of them (a post-op), a batch-norm ReLU alone (oneDNN's fused
 * flag); on OpenCL a batch-norm or an add absorbs any, a conv those without parameters
 * (ReLU, ReLU6, sigmoid, swish, hardswish), and the others run as an affine op. */
enum {
    BF_ACT_NONE = 0, BF_ACT_RELU, BF_ACT_RELU6, BF_ACT_SIGMOID, BF_ACT_SWISH, BF_ACT_HARDSWISH,
    BF_ACT_HARDSIGMOID, BF_ACT_CLIP, BF_ACT_LEAKY_RELU
};

/* Spec keys a layer type uses: what its canonical serialization (and so the model hash)
 * holds besides type, name, part, inputs and frozen, in this order. */
enum {
    BF_KEY_SHAPE = 1 << 0,        /* input */
    BF_KEY_OUT_CHANNELS = 1 << 1, /* with "bias" */
    BF_KEY_WINDOW = 1 << 2,       /* kernel, stride, pad */
    BF_KEY_DILATION = 1 << 3,     /* with "groups" */
    BF_KEY_OUTPUT_PAD = 1 << 4,
    BF_KEY_NORM = 1 << 5,         /* eps, momentum */
    BF_KEY_SCALE = 1 << 6,
    BF_KEY_ALPHA = 1 << 7,        /* required when used */
    BF_KEY_BETA = 1 << 8,         /* required when used */
};
/* (pad_end is written after pad, for a window type, only where it differs from pad.) */

/* What the OpenCL backend runs a layer as: the kind of its op (cl/cl_ops.h); BF_CL_NONE for
 * a cloud-side layer the backend does not run. */
enum {
    BF_CL_NONE = 0,
    BF_CL_CONV,     /* conv or linear [+ batchnorm] [+ add] [+ act] */
    BF_CL_POOL,     /* maxpool / avgpool / global_avgpool (the layer type says which) */
    BF_CL_UPSAMPLE,
    BF_CL_ADD,      /* add [+ act] */
    BF_CL_AFFINE,   /* batchnorm or a lone activation [+ act] */
    BF_CL_QUANT,
    BF_CL_SOFTMAX,
    BF_CL_MUL,      /* same shape, or a per-channel (C, 1, 1) second input */
    BF_CL_CONCAT,
};

/* Shape inference of one layer: `in[k]` is the info of its input k (as many as the spec's
 * n_inputs); fills out->out_dims, macs and n_params (in_dims and out_bytes are set by the
 * caller).  Errors name the layer through `index` and spec->name. */
typedef bf_status (*bf_layer_infer_fn)(const bf_layer_spec *s, int index,
                                       const bf_layer_info *const in[], bf_layer_info *out);
/* Fills the names and shapes (data NULL) of the params the layer must have; returns how
 * many (0..BF_MAX_PARAMS). */
typedef int (*bf_layer_params_fn)(const bf_layer_spec *s, const bf_layer_info *info,
                                  bf_param out[BF_MAX_PARAMS]);

#define BF_INPUTS_MANY (-1)

typedef struct bf_layer_row {
    const char *name;
    int n_inputs;                 /* exactly this many (0 for the input layer), or
                                     BF_INPUTS_MANY: 2..BF_MAX_INPUTS */
    unsigned keys;                /* BF_KEY_* */
    int act;                      /* BF_ACT_* this layer is, when it is an activation */
    bf_layer_infer_fn infer;      /* NULL: the output has the first input's shape */
    bf_layer_params_fn params;    /* NULL: no parameters */
    /* oneDNN: pushes the forward node (NULL: the type is not planned, the input layer) and
     * builds the backward of a pushed node */
    bf_status (*fwd)(bf_plan *p, const bf_node *proto);
    bf_status (*bwd)(bf_plan *p, bf_node *n);
    int cl;                       /* BF_CL_* */
    int out_u8;                   /* the output is uint8 (the quantized feature) */
    int flat_ok;                  /* takes a linear layer's (N, C) output as its input */
    int carries;                  /* BF_CARRY_*: whether a NaN or Inf in an input surely
                                     leaves one in the output (inference then need not scan
                                     that input for them, core/plan.c) */
    int bound;                    /* BF_BOUND_*: a bound on |output| from bounds on |inputs|
                                     (inference need not scan an output its bound shows
                                     finite, core/plan.c) */
} bf_layer_row;

/* A row's `carries`.  NONE, the default, is the safe answer: the layer may hide a NaN or Inf
 * (a ReLU maps NaN to 0, a sigmoid Inf to 1, max-pooling drops -Inf, a stride longer than
 * the kernel skips pixels).  ALL: every input element reaches an output element through
 * arithmetic that keeps it non-finite (Inf * 0 is NaN, Inf - Inf is NaN).  WINDOW: so when
 * the layer's windows (dilation 1) cover every input pixel. */
enum { BF_CARRY_NONE = 0, BF_CARRY_ALL, BF_CARRY_WINDOW };

/* A row's `bound`: how a bound B on the magnitude of a layer's inputs (every one finite)
 * bounds its output.  NONE, the default, is the safe answer: nothing is known.  AFFINE:
 * gain * B + offset, the node's gain and offset set by its load from the weights (a conv's
 * largest sum of |weights| over one output, a folded batch-norm included).  SAME: B (max
 * over the inputs).  MEAN: B, through sums of up to H * W inputs.  SUM / PRODUCT: of the
 * inputs' bounds.  ONE: 1.  RELU6: min(B, 6).  CLIP: min(B, max(|alpha|, |beta|)).  SCALED:
 * B * max(1, |alpha|). */
enum {
    BF_BOUND_NONE = 0, BF_BOUND_AFFINE, BF_BOUND_SAME, BF_BOUND_MEAN, BF_BOUND_SUM,
    BF_BOUND_PRODUCT, BF_BOUND_ONE, BF_BOUND_RELU6, BF_BOUND_CLIP, BF_BOUND_SCALED
};

/* The row of a type; NULL for a value outside the enum. */
const bf_layer_row *bf_layer_row_of(bf_layer_type t);
/* 1 when a spec's number of inputs fits its type. */
int bf_layer_inputs_ok(const bf_layer_spec *s);

/* Shape rules the op families share (core/layers.c). */
int bf_conv_out_size(int in, int k, int stride, int pad, int pad_end, int dilation);
/* A parameter's name (a static string) and shape. */
bf_param bf_param_shape(const char *name, int ndims, int64_t d0, int64_t d1, int64_t d2,
                        int64_t d3);

/* Each op family's shape inference and parameters (in its file under ops/). */
bf_status bf_conv_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                        bf_layer_info *out);
int bf_conv_params(const bf_layer_spec *s, const bf_layer_info *info,
                   bf_param out[BF_MAX_PARAMS]);
int bf_batchnorm_params(const bf_layer_spec *s, const bf_layer_info *info,
                        bf_param out[BF_MAX_PARAMS]);
bf_status bf_batchnorm_infer(const bf_layer_spec *s, int index,
                             const bf_layer_info *const in[], bf_layer_info *out);
bf_status bf_pool_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                        bf_layer_info *out);
bf_status bf_add_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                       bf_layer_info *out);
bf_status bf_linear_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                          bf_layer_info *out);
int bf_linear_params(const bf_layer_spec *s, const bf_layer_info *info,
                     bf_param out[BF_MAX_PARAMS]);
bf_status bf_clip_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                        bf_layer_info *out);
bf_status bf_mul_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                       bf_layer_info *out);
bf_status bf_concat_infer(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                          bf_layer_info *out);
bf_status bf_resample_infer(const bf_layer_spec *s, int index,
                            const bf_layer_info *const in[], bf_layer_info *out);

#endif
