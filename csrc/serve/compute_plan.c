/* The engine compute backend: the restore + tail parts of a model file on oneDNN.  Plans
 * are built on first use for each batch size a worker actually runs (a plan is compiled for
 * one batch size), so a worker that never batches holds one plan. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

typedef struct plan_ctx {
    bf_model *model;
    bf_plan **plans;  /* [1 .. max_batch] */
    int max_batch;
    size_t elems;     /* C*H*W of one payload */
    uint8_t *stage;   /* for inputs that are not already contiguous */
    float *ranges;    /* (min, max) per sample */
} plan_ctx;

static void plan_destroy(void *vctx)
{
    plan_ctx *c = vctx;
    if (c == NULL)
        return;
    for (int i = 0; c->plans && i <= c->max_batch; i++)
        bf_plan_destroy(c->plans[i]);
    free(c->plans);
    free(c->stage);
    free(c->ranges);
    bf_model_destroy(c->model);
    free(c);
}

static bf_status make_plan(plan_ctx *c, int batch)
{
    bf_plan_params pp = bf_plan_default_params();
    pp.part_begin = BF_PART_RESTORE;
    pp.part_end = BF_PART_TAIL;
    pp.batch = batch;
    pp.training = 0;
    return bf_plan_create(&c->plans[batch], c->model, &pp);
}

static bf_status plan_run(void *vctx, int n, const bf_feature *in, float *logits)
{
    plan_ctx *c = vctx;
    if (n < 1 || n > c->max_batch)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "batch of %d, this backend takes 1..%d",
                        n, c->max_batch);
    if (c->plans[n] == NULL) {
        bf_status st = make_plan(c, n);
        if (st != BF_STATUS_OK)
            return st;
    }
    const uint8_t *src = in[0].data;
    for (int i = 0; i < n; i++) {
        c->ranges[2 * i] = in[i].min;
        c->ranges[2 * i + 1] = in[i].max;
        if (in[i].data != in[0].data + (size_t)i * c->elems)
            src = NULL; /* not laid out as one batch: copy below */
    }
    if (src == NULL) {
        for (int i = 0; i < n; i++)
            memcpy(c->stage + (size_t)i * c->elems, in[i].data, c->elems);
        src = c->stage;
    }
    return bf_plan_forward(c->plans[n], src, c->ranges, logits, NULL);
}

/* Reads the cloud half's input and output from a batch-1 plan. */
static bf_status describe(plan_ctx *c, bf_compute *out, const char *path)
{
    bf_io_desc src, dst;
    bf_status st = bf_plan_io(c->plans[1], 0, &src);
    if (st == BF_STATUS_OK)
        st = bf_plan_io(c->plans[1], 1, &dst);
    if (st != BF_STATUS_OK)
        return st;
    if (src.dtype != BF_U8 || !src.quantized || src.ndims != 4)
        return bf_error(BF_STATUS_BAD_MODEL, "%s: the restore part does not take a quantized "
                        "uint8 feature (is there a butterfly unit?)", path);
    if (dst.dtype != BF_F32 || dst.ndims < 2)
        return bf_error(BF_STATUS_BAD_MODEL, "%s: the tail does not give f32 scores", path);
    int64_t classes = 1;
    for (int i = 1; i < dst.ndims; i++)
        classes *= dst.dims[i];
    if (classes < 1 || classes > BF_WIRE_MAX_LOGITS)
        return bf_error(BF_STATUS_BAD_MODEL, "%s: %lld output classes", path,
                        (long long)classes);
    for (int i = 0; i < 3; i++)
        out->dims[i] = (int)src.dims[i + 1];
    c->elems = (size_t)src.dims[1] * (size_t)src.dims[2] * (size_t)src.dims[3];
    out->num_classes = (int)classes;
    int last = bf_model_num_layers(c->model) - 1;
    const bf_layer_spec *spec = last >= 0 ? bf_model_layer(c->model, last) : NULL;
    out->probs = spec && spec->type == BF_LAYER_SOFTMAX;
    return BF_STATUS_OK;
}

bf_status bf_compute_plan_create(bf_compute *out, const bf_compute_params *params)
{
    plan_ctx *c = NULL;
    bf_status st;
    int first = -1, last = -1;
    if (params->model_path == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "plan compute: no model_path");
    /* oneDNN sizes per-thread scratch when a primitive is created: build with the thread
     * count the worker will run with, without changing the caller's setting */
    int caller_threads = bf_get_num_threads();
    if (params->n_threads > 0)
        bf_set_num_threads(params->n_threads);
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "plan compute");
    c->max_batch = params->max_batch;
    c->plans = calloc((size_t)c->max_batch + 1, sizeof *c->plans);
    c->ranges = malloc(2 * (size_t)c->max_batch * sizeof(float));
    if (c->plans == NULL || c->ranges == NULL) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "plan compute");
        goto fail;
    }
    st = bf_model_load_file(&c->model, params->model_path, BF_LOAD_CLOUD);
    if (st != BF_STATUS_OK)
        goto fail;
    bf_model_part_range(c->model, BF_PART_RESTORE, &first, &last);
    if (first < 0) {
        st = bf_error(BF_STATUS_BAD_MODEL, "%s: no restore part (not a split model)",
                      params->model_path);
        goto fail;
    }
    if ((st = make_plan(c, 1)) != BF_STATUS_OK || (st = describe(c, out, params->model_path)))
        goto fail;
    c->stage = malloc((size_t)c->max_batch * c->elems);
    if (c->stage == NULL) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "plan compute staging buffer");
        goto fail;
    }
    bf_model_hash(c->model, out->model_hash);
    out->split = first;
    out->max_batch = c->max_batch;
    out->ctx = c;
    out->run = plan_run;
    out->destroy = plan_destroy;
    bf_set_num_threads(caller_threads);
    return BF_STATUS_OK;
fail:
    plan_destroy(c);
    memset(out, 0, sizeof *out);
    bf_set_num_threads(caller_threads);
    return st;
}
