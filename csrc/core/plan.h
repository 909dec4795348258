/* Internals of bf_plan shared by the plan compiler (core/plan.c) and the op families
 * (the files in ops/).  Never included by the Python glue. */
#ifndef BF_CORE_PLAN_H
#define BF_CORE_PLAN_H

#include <float.h>
#include <math.h>

#include <oneapi/dnnl/dnnl.h>

#include "butterfly.h"
#include "core/layers.h"
#include "core/spec.h"

/* Maps a oneDNN status to ours, with the failing call in the message. */
#define DNNL_TRY(call)                                                                     \
    do {                                                                                   \
        dnnl_status_t s_ = (call);                                                         \
        if (s_ != dnnl_success) {                                                          \
            st = bf_dnnl_error(s_, #call, __FILE__, __LINE__);                             \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)

#define BF_TRY(call)                                                                       \
    do {                                                                                   \
        st = (call);                                                                       \
        if (st != BF_STATUS_OK)                                                            \
            goto fail;                                                                     \
    } while (0)

bf_status bf_dnnl_error(dnnl_status_t s, const char *call, const char *file, int line);
/* The process-wide CPU engine (created once, thread-safe). */
bf_status bf_dnnl_engine(dnnl_engine_t *out);

/* A tensor flowing between nodes. */
typedef struct bf_value {
    dnnl_memory_desc_t md; /* owned */
    dnnl_memory_t mem;     /* owned */
    size_t size;
    int producer;          /* node index; -1 for the plan's source */
    int last_use;          /* last node reading it */
    int alias;             /* value whose buffer this one shares (sum post-op), or -1 */
    int external;          /* bound to a caller's buffer at each call */
    int cut;               /* the output of a part that a later part of this plan reads: it
                              is treated as that part's plan source (plain, never fused into) */
    int copy_of;           /* a cut that copies another value into the plain layout: that
                              value (readers wanting another layout convert it instead), or -1 */
    size_t offset;         /* in the plan's arena */
    /* training */
    dnnl_memory_t diff;    /* gradient, same md; NULL in inference */
    int diff_ready;        /* set once a consumer has written the gradient this step */
} bf_value;

enum { BF_NODE_MEMS = 8, BF_NODE_ARGS = BF_MAX_INPUTS + 8 };

typedef struct bf_node {
    int layer;              /* the layer this node computes; -1 for a reorder */
    int bn_layer;           /* BN folded into this conv (inference), or -1 */
    int sum_src;            /* value added into dst by a sum post-op, or -1 */
    int act_layer;          /* activation layer applied last (a post-op), or -1 */
    int check;              /* inference: its output is scanned for NaN / Inf after it runs
                               (not where every reader surely carries one on) */
    double gain, offset;    /* inference, a layer whose row's bound is BF_BOUND_AFFINE:
                               |output| <= gain * |input| + offset, set by its load
                               (bf_node_affine_bound); INFINITY until then */
    int n_src;
    int src[BF_MAX_INPUTS]; /* value ids */
    int dst;                /* value id */
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t mem[BF_NODE_MEMS]; /* owned: weights, bias, stats, workspace... */
    int nargs;
    dnnl_exec_arg_t args[BF_NODE_ARGS];
    /* non-oneDNN ops (quantize, dequantize) run this instead of prim */
    bf_status (*run)(bf_plan *p, bf_node *n);
    /* inference: a pass of butterfly's own over dst right after prim, or NULL (a conv's
     * fused swish: bf_node_post_swish) */
    bf_status (*after)(bf_plan *p, const bf_node *n);
    /* (re)loads the node's parameters from the model */
    bf_status (*load)(bf_plan *p, bf_node *n);
    void *priv;             /* op-private, freed with free() */
    /* training: backward primitives (data, weights) or a custom backward */
    dnnl_primitive_desc_t bwd_pd[2];
    dnnl_primitive_t bwd[2];
    int bwd_nargs[2];
    dnnl_exec_arg_t bwd_args[2][BF_NODE_ARGS];
    bf_status (*bwd_run)(bf_plan *p, bf_node *n);
    /* reorders before the backward primitives (inputs into the layouts they chose) and
     * after the data-backward (its gradient into the source's layout) */
    int n_pre;
    dnnl_primitive_t pre[4];
    dnnl_exec_arg_t pre_args[4][2];
    dnnl_primitive_t post;
    dnnl_exec_arg_t post_args[2];
    dnnl_memory_t bwd_mem[6]; /* owned: the reordered copies */
    int n_bwd_mem;
    int skip_bwd;           /* training: no gradient is needed from this node (nothing
                               trainable at or before it, no source gradient asked for) */
    int acc[BF_MAX_INPUTS]; /* src k's gradient is added to what later readers wrote */
    dnnl_memory_t acc_tmp[BF_MAX_INPUTS]; /* where it is written before the add (all share
                                             the plan's scratch: add each before the next) */
} bf_node;

/* A trainable tensor of a training plan. */
typedef struct bf_train_param {
    int layer, slot;
    dnnl_memory_t w;        /* the value (owned by its node) */
    dnnl_memory_t g;        /* gradient in w's layout (owned here) */
    dnnl_memory_t g_raw;    /* gradient as the primitive writes it, if its layout differs */
    dnnl_primitive_t g_reorder; /* g_raw -> g */
    dnnl_memory_t v;        /* momentum, Adam's first moment (owned here) */
    dnnl_memory_t v2;       /* Adam's second moment (owned here; made by its first use) */
    dnnl_memory_desc_t plain; /* the model's layout, for syncing (owned) */
    size_t n;               /* floats in w's buffer (padding included) */
    int decay;              /* weight decay applies (conv / linear weights) */
} bf_train_param;

struct bf_plan {
    bf_model *model;
    bf_plan_params params;
    int first_layer, last_layer; /* layers [first, last] run; the source is layer first-1's
                                    output, or the image when first == 1 */
    int seg_first, seg_last; /* the layers being compiled: one part in inference (fusion and
                                reader counts stop at its end), the whole range in training */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int n_nodes, cap_nodes;
    bf_node *nodes;
    int n_values, cap_values;
    bf_value *values;
    int *layer_value;       /* layer index -> value id holding its output, -1 if none */
    int src_value, dst_value;
    void *arena;
    size_t arena_size;
    float *qrange;          /* per-sample (min, max) of the quantizer, 2 * batch */
    const float *user_src_range;
    float *user_dst_range;
    uint64_t loaded_version;
    double *bounds;         /* inference: per value, a bound on |x| in the running forward
                               (INFINITY: none known; core/plan.c) */
    int scans;              /* outputs the last forward scanned for NaN / Inf */
    bf_io_desc io[2];
    /* training */
    int n_tparams, cap_tparams;
    bf_train_param *tparams;
    void *scratch;          /* target of non-first gradient writers (largest value) */
    float *logits;          /* train_step's forward output */
    /* the last forward's source and destination: backward reads them, so a training plan
     * runs on these copies rather than on the caller's buffers */
    void *fwd_src, *fwd_dst;
    int fwd_done;           /* a forward has run: there is something to differentiate */
    int steps;
};

/* Adds a value with a copy of md; returns its id or -1 (error set). */
int bf_plan_add_value(bf_plan *p, const_dnnl_memory_desc_t md);
/* Clears a node prototype for `layer` (-1 for a reorder). */
void bf_node_init(bf_node *n, int layer);
/* Appends a copy of proto; returns a pointer valid until the next push, or NULL.  An op
 * pushes its node after adding any reorders its sources need, so nodes stay in run order. */
bf_node *bf_plan_push_node(bf_plan *p, const bf_node *proto);
/* The larger of a bound m and x, where a NaN x (from NaN weights) gives INFINITY, which
 * stays: the bound is then unknown. */
static inline double bf_bound_max(double m, double x)
{
    return x <= m ? m : x <= DBL_MAX ? x : INFINITY;
}
/* Sets n->gain and n->offset from weights of `rows` rows of `per_row` each (one output
 * each: conv (O, I/g, kh, kw), linear (O, I)) and `rows` biases (NULL: none):
 * gain = max over rows of sum |w|, offset = max |b|. */
void bf_node_affine_bound(bf_node *n, const float *w, const float *b, int64_t rows,
                          int64_t per_row);
/* Returns a value with the contents of v in layout md, adding a reorder node if needed. */
int bf_plan_value_as(bf_plan *p, int v, const_dnnl_memory_desc_t md);
/* Plain (nchw / nc) descriptor of the given dims and type; caller destroys. */
bf_status bf_md_plain(dnnl_memory_desc_t *md, int ndims, const int64_t *dims, dnnl_data_type_t dt);
/* Creates memory `md` on the plan's engine filled from a host array in plain layout
 * `plain` (a reorder); stores it in *mem (created if NULL). */
bf_status bf_mem_from_host(bf_plan *p, dnnl_memory_t *mem, const_dnnl_memory_desc_t md,
                           const_dnnl_memory_desc_t plain, const float *host);
/* The buffer of a memory (NULL if it has none). */
void *bf_mem_handle(dnnl_memory_t mem);
/* Copies memory `mem` (layout md) into a host array of plain layout `plain`. */
bf_status bf_mem_to_host(bf_plan *p, dnnl_memory_t mem, const_dnnl_memory_desc_t plain,
                         float *host);
/* Whether oneDNN gave pd one of its reference kernels ("ref..."): slow; a layer whose
 * channel count is not a multiple of the block gets them in the blocked layout. */
int bf_pd_is_ref(const_dnnl_primitive_desc_t pd);
/* md's dims, f32, in layout `tag` (dnnl_format_tag_any: the primitive chooses; dnnl_nhwc:
 * where oneDNN has optimized kernels at any channel count).  Caller destroys. */
bf_status bf_md_like(dnnl_memory_desc_t *out, const_dnnl_memory_desc_t md, dnnl_format_tag_t tag);
/* Binds an argument to the node. */
void bf_node_arg(bf_node *n, int arg, dnnl_memory_t mem);
/* The weights descriptor for a conv/deconv in plain goihw/oihw layout. */
bf_status bf_md_conv_weights_plain(dnnl_memory_desc_t *md, const bf_layer_spec *s, int in_c);
/* Post-ops attr: optional sum then the optional activation layer act_layer (-1: none);
 * *attr NULL when neither. */
bf_status bf_attr_post_ops(bf_plan *p, dnnl_primitive_attr_t *attr, int sum, int act_layer);
/* The oneDNN eltwise algorithm and its alpha, beta for an activation layer. */
bf_status bf_eltwise_alg(const bf_layer_spec *s, dnnl_alg_kind_t *alg, float *alpha,
                         float *beta);
/* Pushes proto owning *pd (taken, set to NULL), creates its primitive and a destination
 * value with the primitive's dst layout, binds SRC (DNNL_ARG_SRC_0 == DNNL_ARG_SRC), SRC_1
 * and DST.  Returns the node, or NULL with *status set. */
bf_node *bf_plan_push_primitive(bf_plan *p, const bf_node *proto, dnnl_primitive_desc_t *pd,
                                bf_status *status);
/* N, C, H, W of a layer's input (out = 0) or output (out = 1) at the plan's batch. */
/* Runs one node's forward (its primitive, or its custom run) without waiting for it. */
bf_status bf_node_exec(bf_plan *p, bf_node *n);
bf_status bf_plan_layer_dims(bf_plan *p, int layer, int out, dnnl_dims_t dims);
/* Parameter of the model (data may be NULL when that half was not loaded). */
const float *bf_plan_param(bf_plan *p, int layer, int slot);

/* Training: registers a trainable tensor whose gradient the node's weights-backward
 * writes into *g_raw_out (created here in layout `diff_md`; reordered to w's layout if it
 * differs).  Returns BF_STATUS_OK. */
bf_status bf_plan_add_tparam(bf_plan *p, int layer, int slot, dnnl_memory_t w,
                             const_dnnl_memory_desc_t diff_md, const_dnnl_memory_desc_t plain,
                             int decay, dnnl_memory_t *g_raw_out);
/* Training: registers the weights (node->mem[0]) and, if n_bias > 0, the bias (mem[1]) of
 * a node whose weights-backward is bwd_pd[1] / bwd[1] as trained parameters, and binds that
 * primitive's arguments (src and diff_dst in the layouts it chose). */
bf_status bf_plan_bind_weight_grads(bf_plan *p, bf_node *n, int64_t n_bias,
                                    const_dnnl_memory_desc_t wplain, dnnl_memory_t src,
                                    dnnl_memory_t diff_dst);
/* Training: the memory a node writes the gradient of its source k into, and notes whether
 * it must be added to what is there (set up in reverse order by the backward builder). */
dnnl_memory_t bf_plan_diff_src(bf_plan *p, bf_node *n, int k);
void bf_node_bwd_arg(bf_node *n, int which, int arg, dnnl_memory_t mem);
/* Training: memory m in the layout `want` for a backward primitive; when it differs, a
 * reorder into node-owned memory runs before the node's backward (shared by both). */
bf_status bf_bwd_input_as(bf_plan *p, bf_node *n, dnnl_memory_t m, const_dnnl_memory_desc_t want,
                          dnnl_memory_t *out);
/* Training: where a data-backward producing layout `made` writes a gradient meant for
 * `target`; when they differ, a reorder into target runs after it. */
bf_status bf_bwd_output_as(bf_plan *p, bf_node *n, dnnl_memory_t target,
                           const_dnnl_memory_desc_t made, dnnl_memory_t *out);
bf_status bf_plan_build_backward(bf_plan *p);
void bf_plan_destroy_training(bf_plan *p);

/* Op families: each gets a prototype node (layer, sources, fusion fields), adds reorders
 * its sources need, pushes the node and creates its primitive and destination value. */
bf_status bf_op_conv_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_batchnorm_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_eltwise_fwd(bf_plan *p, const bf_node *proto);
/* Inference: a standalone swish layer (bf_swish), and a conv's fused swish on its dst (its
 * node's after). */
bf_status bf_op_swish_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_node_post_swish(bf_plan *p, const bf_node *n);
bf_status bf_op_pool_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_add_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_linear_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_softmax_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_quant_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_resample_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_mul_fwd(bf_plan *p, const bf_node *proto);
bf_status bf_op_concat_fwd(bf_plan *p, const bf_node *proto);
/* ... and, for training plans, the backward of a pushed node. */
bf_status bf_op_conv_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_batchnorm_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_eltwise_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_pool_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_add_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_linear_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_softmax_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_quant_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_resample_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_mul_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_concat_bwd(bf_plan *p, bf_node *n);
bf_status bf_op_reorder_bwd(bf_plan *p, bf_node *n);
/* Copies (first writer) or adds the float gradient `from` into `to` (same layout). */
bf_status bf_plan_grad_copy(bf_plan *p, bf_node *n, int k, dnnl_memory_t from);

#endif
