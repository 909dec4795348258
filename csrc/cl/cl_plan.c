/* bf_cl_plan: compiles a part range of a model into fused OpenCL ops (conv + batch-norm +
 * add + activation in one kernel where the graph allows), owns their device buffers, runs
 * them, and reports per-op device times from the queue's profiling events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/cl_ops.h"
#include "core/spec.h"

struct bf_cl_plan {
    bf_model *model; /* borrowed */
    bf_plan_params params;
    uint64_t version; /* model version whose weights are on the device */
    bf_cl_ctx *ctx;
    int n_layers, src_layer, out_layer;
    cl_mem *mem; /* per model layer: its output tensor (a pool buffer), or NULL (fused / not in
                  * the plan); tensors whose lives do not overlap share a buffer */
    cl_mem *pool;      /* the activation buffers, owned */
    size_t *pool_size;
    int n_pool;
    cl_mem col;  /* scratch shared by all ops: im2col columns or a padded input */
    int n_ops;
    bf_cl_op *ops;
    bf_io_desc io[2];
};

/* ---- compiling ------------------------------------------------------------------------ */

/* Extends an op over a following activation (of code <= max_act) that only it feeds. */
static void fuse_act(const bf_model *m, const int *uses, int end, int max_act, bf_cl_op *op)
{
    const bf_layer_spec *n = bf_model_layer(m, op->last + 1);
    int act;
    if (op->last + 1 > end || uses[op->last] != 1 || n->inputs[0] != op->last)
        return;
    act = bf_layer_row_of(n->type)->act;
    if (act == BF_ACT_NONE || act > max_act)
        return;
    op->act = act;
    op->alpha = n->alpha;
    op->beta = n->beta;
    op->last++;
}

/* conv [+ batchnorm] [+ add (the conv's branch + a shortcut computed earlier)] [+ act] */
static void fuse_conv(const bf_model *m, const int *uses, int end, bf_cl_op *op)
{
    const bf_layer_spec *n;
    op->kind = BF_CL_CONV;
    n = bf_model_layer(m, op->last + 1);
    if (op->last + 1 <= end && uses[op->last] == 1 && n->type == BF_LAYER_BATCHNORM &&
        n->inputs[0] == op->last)
        op->bn = ++op->last;
    n = bf_model_layer(m, op->last + 1);
    if (op->last + 1 <= end && uses[op->last] == 1 && n->type == BF_LAYER_ADD &&
        n->inputs[0] != n->inputs[1] &&
        (n->inputs[0] == op->last || n->inputs[1] == op->last)) {
        op->src2 = n->inputs[0] == op->last ? n->inputs[1] : n->inputs[0];
        op->last++;
    }
    /* the conv kernels' epilogue (BF_ACT in conv.cl) takes the activations without
     * parameters; hardsigmoid, clip and leaky ReLU after a conv run as an affine op */
    fuse_act(m, uses, end, BF_ACT_HARDSWISH, op);
}

/* The main kernel of each op kind, for the profile. */
static const int kind_kernel[] = {
    [BF_CL_NONE] = -1,           [BF_CL_CONV] = BF_K_CONV_GEMM, [BF_CL_POOL] = BF_K_AVGPOOL,
    [BF_CL_UPSAMPLE] = BF_K_UPSAMPLE, [BF_CL_ADD] = BF_K_ADD,   [BF_CL_AFFINE] = BF_K_AFFINE,
    [BF_CL_QUANT] = BF_K_QUANTIZE, [BF_CL_SOFTMAX] = BF_K_SOFTMAX, [BF_CL_MUL] = BF_K_MUL,
    [BF_CL_CONCAT] = BF_K_CONCAT,
};

/* Fills op starting at layer i; returns UNSUPPORTED for cloud-side layers. */
static bf_status make_op(const bf_model *m, const int *uses, int i, int end, bf_cl_op *op)
{
    const bf_layer_spec *s = bf_model_layer(m, i);
    memset(op, 0, sizeof *op);
    op->first = op->last = i;
    op->src = s->inputs[0];
    op->src2 = -1;
    op->bn = -1;
    op->kind = bf_layer_row_of(s->type)->cl;
    switch (op->kind) {
    case BF_CL_CONV:
        fuse_conv(m, uses, end, op);
        break;
    case BF_CL_AFFINE:
        op->act = bf_layer_row_of(s->type)->act;
        op->alpha = s->alpha;
        op->beta = s->beta;
        if (op->act == BF_ACT_NONE) /* a batch-norm: the kernel applies any activation */
            fuse_act(m, uses, end, BF_ACT_LEAKY_RELU, op);
        break;
    case BF_CL_ADD:
        op->src2 = s->inputs[1];
        fuse_act(m, uses, end, BF_ACT_LEAKY_RELU, op);
        break;
    case BF_CL_MUL:
        op->src2 = s->inputs[1];
        break;
    case BF_CL_CONCAT:
        op->n_src = s->n_inputs;
        memcpy(op->srcs, s->inputs, (size_t)s->n_inputs * sizeof *op->srcs);
        break;
    case BF_CL_NONE:
        return bf_error(BF_STATUS_UNSUPPORTED, "OpenCL backend: layer %d (%s) is a %s layer, "
                        "a cloud-side op (restore part) the OpenCL backend does not run; it "
                        "runs head, reduce and plain networks", i, s->name,
                        bf_layer_type_str(s->type));
    default:
        break;
    }
    if (op->kind != BF_CL_CONCAT) {
        op->srcs[op->n_src++] = op->src;
        if (op->src2 >= 0)
            op->srcs[op->n_src++] = op->src2;
    }
    op->kernel = kind_kernel[op->kind]; /* conv, pool and quant choose theirs when planned */
    return BF_STATUS_OK;
}

/* The plan's layer range and source tensor: the source is the input layer for a plan that
 * starts at the head, else the last layer of the part before part_begin. */
static bf_status find_range(bf_cl_plan *p, int *begin, int *end)
{
    int f, l;
    *begin = *end = -1;
    p->src_layer = 0;
    for (int part = 0; part <= (int)p->params.part_end; part++) {
        bf_model_part_range(p->model, (bf_part)part, &f, &l);
        if (f < 0)
            continue;
        if (part < (int)p->params.part_begin) {
            p->src_layer = l;
            continue;
        }
        if (*begin < 0)
            *begin = f;
        *end = l;
    }
    if (*begin < 0)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "the model has no layers in parts %s..%s",
                        bf_part_str(p->params.part_begin), bf_part_str(p->params.part_end));
    return BF_STATUS_OK;
}

static bf_status compile(bf_cl_plan *p)
{
    int begin, end, *uses = NULL;
    bf_status st = find_range(p, &begin, &end);
    if (st)
        return st;
    uses = calloc((size_t)p->n_layers, sizeof *uses);
    p->ops = calloc((size_t)(end - begin + 1), sizeof *p->ops);
    if (!uses || !p->ops) {
        free(uses);
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    /* each part compiles as a plan of that part alone would: readers counted within it and
     * no op fused across its end, so head..reduce gives bit for bit reduce(head(x)) */
    for (int part = p->params.part_begin; part <= (int)p->params.part_end; part++) {
        int f, l;
        bf_model_part_range(p->model, (bf_part)part, &f, &l);
        if (f < 0)
            continue;
        memset(uses, 0, (size_t)p->n_layers * sizeof *uses);
        for (int i = f; i <= l; i++) {
            const bf_layer_spec *s = bf_model_layer(p->model, i);
            for (int k = 0; k < s->n_inputs; k++)
                uses[s->inputs[k]]++;
        }
        uses[l]++; /* the part's output */
        for (int i = f; i <= l && st == BF_STATUS_OK; i = p->ops[p->n_ops - 1].last + 1) {
            bf_cl_op *op = &p->ops[p->n_ops];
            bf_layer_info a, b;
            st = make_op(p->model, uses, i, l, op);
            if (st)
                break;
            bf_model_layer_info(p->model, op->first, &a);
            bf_model_layer_info(p->model, op->last, &b);
            memcpy(op->in, a.in_dims, sizeof op->in);
            memcpy(op->out, b.out_dims, sizeof op->out);
            p->n_ops++;
        }
    }
    p->out_layer = end;
    free(uses);
    return st;
}

/* ---- device memory ---------------------------------------------------------------------- */

static size_t tensor_bytes(const bf_cl_plan *p, int layer)
{
    bf_layer_info info;
    bf_model_layer_info(p->model, layer, &info);
    return (size_t)p->params.batch * (size_t)info.out_bytes;
}

static void set_io(bf_io_desc *d, const bf_cl_plan *p, int layer, int quantized)
{
    bf_layer_info info;
    bf_model_layer_info(p->model, layer, &info);
    d->dtype = quantized ? BF_U8 : BF_F32;
    d->ndims = 4;
    d->dims[0] = p->params.batch;
    for (int i = 0; i < 3; i++)
        d->dims[1 + i] = info.out_dims[i];
    d->quantized = quantized;
}

/* Best-fitting free pool buffer of >= bytes, or a new one; returns its index or -1. */
static int acquire(bf_cl_plan *p, char *busy, size_t bytes, bf_status *st)
{
    int best = -1;
    for (int i = 0; i < p->n_pool; i++)
        if (!busy[i] && p->pool_size[i] >= bytes &&
            (best < 0 || p->pool_size[i] < p->pool_size[best]))
            best = i;
    if (best < 0) {
        best = p->n_pool;
        if ((*st = bf_cl_buffer(p->ctx, bytes, &p->pool[best])) != BF_STATUS_OK)
            return -1;
        p->pool_size[best] = bytes;
        p->n_pool++;
    }
    busy[best] = 1;
    return best;
}

/* Device memory: tensors get buffers by liveness (a tensor's buffer is free again after
 * the last op reading it: the queue is in order), plus one scratch for all ops. */
static bf_status allocate(bf_cl_plan *p)
{
    size_t col = 0;
    int *last_use = calloc((size_t)p->n_layers, sizeof *last_use);
    int *buf_of = calloc((size_t)p->n_layers, sizeof *buf_of);
    char *busy = calloc((size_t)p->n_ops + 1, 1);
    bf_status st = BF_STATUS_OK;
    p->pool = calloc((size_t)p->n_ops + 1, sizeof *p->pool);
    p->pool_size = calloc((size_t)p->n_ops + 1, sizeof *p->pool_size);
    if (!last_use || !buf_of || !busy || !p->pool || !p->pool_size) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    for (int i = 0; i < p->n_ops; i++)
        for (int k = 0; k < p->ops[i].n_src; k++)
            last_use[p->ops[i].srcs[k]] = i;
    if ((buf_of[p->src_layer] = acquire(p, busy, tensor_bytes(p, p->src_layer), &st)) < 0)
        goto done;
    p->mem[p->src_layer] = p->pool[buf_of[p->src_layer]];
    for (int i = 0; i < p->n_ops; i++) {
        bf_cl_op *op = &p->ops[i];
        /* the output first, so it never shares a buffer with its own inputs */
        if ((buf_of[op->last] = acquire(p, busy, tensor_bytes(p, op->last), &st)) < 0)
            goto done;
        p->mem[op->last] = p->pool[buf_of[op->last]];
        for (int k = 0; k < op->n_src; k++)
            if (last_use[op->srcs[k]] == i && op->srcs[k] != p->out_layer)
                busy[buf_of[op->srcs[k]]] = 0;
        if (op->kind == BF_CL_CONV)
            bf_cl_conv_plan(p->ctx, p->model, op, p->params.batch);
        if (op->kind == BF_CL_POOL)
            bf_cl_pool_plan(p->ctx, p->model, op, p->params.batch);
        if (op->kind == BF_CL_QUANT && (st = bf_cl_quant_plan(p->ctx, op, p->params.batch)))
            goto done;
        col = op->col_floats > col ? op->col_floats : col;
    }
    if (col)
        st = bf_cl_buffer(p->ctx, col * sizeof(float), &p->col);
done:
    free(last_use);
    free(buf_of);
    free(busy);
    return st;
}

static bf_status load_weights(bf_cl_plan *p)
{
    bf_status st = BF_STATUS_OK;
    for (int i = 0; st == BF_STATUS_OK && i < p->n_ops; i++) {
        if (p->ops[i].kind == BF_CL_CONV)
            st = bf_cl_conv_load(p->ctx, p->model, &p->ops[i]);
        else if (p->ops[i].kind == BF_CL_AFFINE)
            st = bf_cl_affine_load(p->ctx, p->model, &p->ops[i]);
    }
    if (st == BF_STATUS_OK)
        p->version = bf_model_version(p->model);
    return st;
}

/* ---- public ------------------------------------------------------------------------------ */

bf_status bf_cl_plan_create(bf_cl_plan **out, bf_model *model, const bf_plan_params *params,
                            int device_index)
{
    bf_cl_plan *p = NULL;
    bf_status st;
    if (!out || !model || !params)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_cl_plan_create: NULL argument");
    *out = NULL;
    if (params->batch < 1 || params->part_begin < 0 || params->part_end >= BF_PART_COUNT_ ||
        params->part_begin > params->part_end)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_cl_plan_create: bad batch or part range");
    if (params->training)
        return bf_error(BF_STATUS_UNSUPPORTED, "the OpenCL backend runs inference only");
    if (!(p = calloc(1, sizeof *p)))
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    p->model = model;
    p->params = *params;
    p->n_layers = bf_model_num_layers(model);
    if (!(p->mem = calloc((size_t)p->n_layers, sizeof *p->mem))) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    /* compile first: an unsupported layer should not cost a device context */
    if ((st = compile(p)) || (st = bf_cl_ctx_create(&p->ctx, device_index)) ||
        (st = allocate(p)) || (st = load_weights(p)))
        goto fail;
    set_io(&p->io[0], p, p->src_layer, 0);
    set_io(&p->io[1], p, p->out_layer,
           bf_model_layer(model, p->out_layer)->type == BF_LAYER_QUANTIZE);
    *out = p;
    return BF_STATUS_OK;
fail:
    bf_cl_plan_destroy(p);
    return st;
}

static void release_events(bf_cl_plan *p)
{
    for (int i = 0; i < p->n_ops; i++) {
        for (int e = 0; e < p->ops[i].n_ev; e++)
            if (p->ops[i].ev[e])
                p->ctx->f->clReleaseEvent(p->ops[i].ev[e]);
        memset(p->ops[i].ev, 0, sizeof p->ops[i].ev);
        p->ops[i].n_ev = 0;
    }
}

void bf_cl_plan_destroy(bf_cl_plan *p)
{
    if (!p)
        return;
    if (p->ctx) {
        p->ctx->f->clFinish(p->ctx->queue);
        release_events(p);
        for (int i = 0; i < p->n_ops; i++)
            for (int k = 0; k < BF_OP_MAX_OWN; k++)
                if (p->ops[i].own[k])
                    p->ctx->f->clReleaseMemObject(p->ops[i].own[k]);
        for (int i = 0; i < p->n_pool; i++)
            p->ctx->f->clReleaseMemObject(p->pool[i]);
        if (p->col)
            p->ctx->f->clReleaseMemObject(p->col);
    }
    bf_cl_ctx_destroy(p->ctx);
    free(p->ops);
    free(p->mem);
    free(p->pool);
    free(p->pool_size);
    free(p);
}

bf_status bf_cl_plan_io(const bf_cl_plan *p, int which, bf_io_desc *out)
{
    if (!p || !out || which < 0 || which > 1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_cl_plan_io: bad argument");
    *out = p->io[which];
    return BF_STATUS_OK;
}

void bf_cl_plan_device(const bf_cl_plan *p, char *buf, size_t size)
{
    if (buf && size)
        snprintf(buf, size, "%s", p && p->ctx ? p->ctx->name : "");
}

/* ---- running ------------------------------------------------------------------------------ */

static bf_status run_op(bf_cl_plan *p, bf_cl_op *op)
{
    bf_cl_ctx *c = p->ctx;
    cl_mem x = p->mem[op->src], y = p->mem[op->last];
    cl_mem x2 = op->src2 >= 0 ? p->mem[op->src2] : NULL;
    int n = p->params.batch;
    switch (op->kind) {
    case BF_CL_CONV:
        return bf_cl_conv_run(c, p->model, op, x, x2, y, p->col, n);
    case BF_CL_POOL:
        return bf_cl_pool_run(c, p->model, op, x, y, p->col, n);
    case BF_CL_UPSAMPLE:
        return bf_cl_upsample_run(c, p->model, op, x, y, n);
    case BF_CL_ADD:
        return bf_cl_add_run(c, op, x, x2, y, n);
    case BF_CL_AFFINE:
        return bf_cl_affine_run(c, op, x, y, n);
    case BF_CL_QUANT:
        return bf_cl_quant_run(c, op, x, y, n);
    case BF_CL_SOFTMAX:
        return bf_cl_softmax_run(c, op, x, y, n);
    case BF_CL_MUL:
        return bf_cl_mul_run(c, p->model, op, x, x2, y, n);
    case BF_CL_CONCAT: {
        cl_mem xs[BF_MAX_INPUTS];
        for (int k = 0; k < op->n_src; k++)
            xs[k] = p->mem[op->srcs[k]];
        return bf_cl_concat_run(c, p->model, op, xs, y, n);
    }
    }
    return bf_error(BF_STATUS_INVALID_ARGUMENT, "bad op kind %d", (int)op->kind);
}

/* Device time of each op's kernels; events are released once read. */
static void collect_profile(bf_cl_plan *p)
{
    for (int i = 0; i < p->n_ops; i++) {
        bf_cl_op *op = &p->ops[i];
        op->ms = 0.0;
        for (int e = 0; e < op->n_ev; e++) {
            cl_ulong t0 = 0, t1 = 0;
            if (p->ctx->f->clGetEventProfilingInfo(op->ev[e], CL_PROFILING_COMMAND_START,
                                                   sizeof t0, &t0, NULL) == CL_SUCCESS &&
                p->ctx->f->clGetEventProfilingInfo(op->ev[e], CL_PROFILING_COMMAND_END,
                                                   sizeof t1, &t1, NULL) == CL_SUCCESS &&
                t1 >= t0)
                op->ms += (double)(t1 - t0) * 1e-6;
        }
    }
    release_events(p);
}

bf_status bf_cl_plan_forward(bf_cl_plan *p, const void *src, const float *src_range, void *dst,
                             float *dst_range)
{
    const bf_cl_fns *f;
    bf_cl_op *q = NULL;
    cl_int err;
    bf_status st = BF_STATUS_OK;
    (void)src_range; /* the OpenCL plan never starts at the (quantized) restore part */
    if (!p || !src || !dst || (p->io[1].quantized && !dst_range))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_cl_plan_forward: NULL argument");
    f = p->ctx->f;
    if (!bf_all_finite(src, tensor_bytes(p, p->src_layer) / sizeof(float)))
        return bf_error(BF_STATUS_NUMERIC, "the input holds NaN or Inf");
    if (bf_model_version(p->model) != p->version && (st = load_weights(p)) != BF_STATUS_OK)
        return st;
    release_events(p);
    err = f->clEnqueueWriteBuffer(p->ctx->queue, p->mem[p->src_layer], CL_FALSE, 0,
                                  tensor_bytes(p, p->src_layer), src, 0, NULL, NULL);
    st = BF_CL_CHECK(p->ctx, err, "clEnqueueWriteBuffer");
    for (int i = 0; st == BF_STATUS_OK && i < p->n_ops; i++) {
        st = run_op(p, &p->ops[i]);
        if (p->ops[i].kind == BF_CL_QUANT)
            q = &p->ops[i];
    }
    if (st == BF_STATUS_OK) {
        err = f->clEnqueueReadBuffer(p->ctx->queue, p->mem[p->out_layer], CL_FALSE, 0,
                                     tensor_bytes(p, p->out_layer), dst, 0, NULL, NULL);
        st = BF_CL_CHECK(p->ctx, err, "clEnqueueReadBuffer");
    }
    if (st == BF_STATUS_OK && p->io[1].quantized && q) {
        err = f->clEnqueueReadBuffer(p->ctx->queue, q->own[1], CL_FALSE, 0,
                                     (size_t)p->params.batch * 2 * sizeof(float), dst_range, 0,
                                     NULL, NULL);
        st = BF_CL_CHECK(p->ctx, err, "clEnqueueReadBuffer");
    }
    /* always drain: src / dst are borrowed only for the length of this call */
    err = f->clFinish(p->ctx->queue);
    if (st == BF_STATUS_OK)
        st = BF_CL_CHECK(p->ctx, err, "clFinish");
    for (int b = 0; st == BF_STATUS_OK && p->io[1].quantized && q && b < p->params.batch; b++)
        if (!bf_range_ok(dst_range[2 * b], dst_range[2 * b + 1])) /* as oneDNN's quantizer */
            st = bf_error(BF_STATUS_NUMERIC, "sample %d: the feature to quantize holds NaN/Inf "
                          "or spans more than a float32", b);
    if (st == BF_STATUS_OK)
        collect_profile(p);
    else
        release_events(p);
    return st;
}

bf_status bf_cl_plan_profile(const bf_cl_plan *p, bf_cl_op_time *out, int max, int *n)
{
    if (!p || !n || (max > 0 && !out))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_cl_plan_profile: NULL argument");
    *n = p->n_ops;
    for (int i = 0; i < p->n_ops && i < max; i++) {
        out[i].first_layer = p->ops[i].first;
        out[i].last_layer = p->ops[i].last;
        out[i].kernel = bf_cl_kernel_names[p->ops[i].kernel];
        out[i].ms = p->ops[i].ms;
    }
    return BF_STATUS_OK;
}
