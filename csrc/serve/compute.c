/* Compute backends: the dispatch by kind, and the echo backend (a stand-in for a model in
 * tests and in the overhead benchmark).  The engine backend lives in compute_plan.c. */
#include <stdlib.h>
#include <string.h>

#include "core/spec.h"
#include "serve/serve.h"

/* Weak, so that the serving code links (and its tests run) without the engine; the whole
 * library defines it in compute_plan.c. */
bf_status bf_compute_plan_create(bf_compute *out, const bf_compute_params *params)
    __attribute__((weak));

bf_compute_params bf_compute_default_params(void)
{
    bf_compute_params p = {0};
    p.kind = BF_COMPUTE_ECHO;
    p.max_batch = 1;
    p.dims[0] = 1, p.dims[1] = 28, p.dims[2] = 28;
    p.num_classes = 10;
    p.split = -1;
    return p;
}

typedef struct echo_ctx {
    int delay_us;
    int classes;
} echo_ctx;

static bf_status echo_run(void *vctx, int n, const bf_feature *in, float *logits)
{
    echo_ctx *e = vctx;
    uint64_t until = bf_now_us() + (uint64_t)e->delay_us;
    for (int i = 0; i < n; i++) {
        size_t len = (size_t)in[i].dims[0] * in[i].dims[1] * in[i].dims[2];
        uint64_t sum = 0;
        for (size_t j = 0; j < len; j++)
            sum += in[i].data[j];
        int cls = (int)(sum % (uint64_t)e->classes);
        for (int c = 0; c < e->classes; c++)
            logits[(size_t)i * e->classes + c] = c == cls ? 8.0f : (float)c / e->classes;
    }
    /* a busy wait, like a model keeping its core busy (a sleep would free the core) */
    while (e->delay_us > 0 && bf_now_us() < until)
        ;
    return BF_STATUS_OK;
}

static bf_status echo_create(bf_compute *out, const bf_compute_params *p)
{
    if (p->num_classes < 1 || p->num_classes > BF_WIRE_MAX_LOGITS || p->delay_us < 0 ||
        p->delay_us > 10000000)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "echo compute: num_classes in [1, %d], "
                        "delay_us in [0, 10 s]", BF_WIRE_MAX_LOGITS);
    uint64_t elems = 1;
    for (int i = 0; i < 3; i++) {
        if (p->dims[i] < 1 || p->dims[i] > BF_WIRE_MAX_DIM)
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "echo compute: dims in [1, %d]",
                            BF_WIRE_MAX_DIM);
        elems *= (uint64_t)p->dims[i];
    }
    if (elems > BF_WIRE_MAX_ELEMS) /* what no request may carry */
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "echo compute: C*H*W over %u",
                        BF_WIRE_MAX_ELEMS);
    if (p->model_hash && p->model_hash[0] &&
        !bf_is_model_hash(p->model_hash, strlen(p->model_hash)))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "model_hash must be 16 lowercase hex digits");
    echo_ctx *e = calloc(1, sizeof *e);
    if (e == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "echo compute");
    e->delay_us = p->delay_us;
    e->classes = p->num_classes;
    out->ctx = e;
    out->max_batch = p->max_batch;
    out->num_classes = p->num_classes;
    memcpy(out->dims, p->dims, sizeof out->dims);
    out->split = p->split;
    if (p->model_hash)
        memcpy(out->model_hash, p->model_hash, strlen(p->model_hash) + 1);
    out->run = echo_run;
    out->destroy = free;
    return BF_STATUS_OK;
}

bf_status bf_compute_create(bf_compute *out, const bf_compute_params *params)
{
    if (out == NULL || params == NULL)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_compute_create: NULL argument");
    memset(out, 0, sizeof *out);
    if (params->max_batch < 1 || params->max_batch > BF_BATCH_MAX)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "compute max_batch %d out of range",
                        params->max_batch);
    bf_status st;
    switch (params->kind) {
    case BF_COMPUTE_ECHO:
        st = echo_create(out, params);
        break;
    case BF_COMPUTE_PLAN:
        if (bf_compute_plan_create == NULL)
            return bf_error(BF_STATUS_UNSUPPORTED, "this build has no engine backend");
        st = bf_compute_plan_create(out, params);
        break;
    case BF_COMPUTE_CUSTOM:
        if (params->create == NULL)
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "custom compute without create");
        st = params->create(out, params->create_arg);
        break;
    default:
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "unknown compute kind %d",
                        (int)params->kind);
    }
    if (st != BF_STATUS_OK)
        return st;
    if (out->run == NULL || out->num_classes < 1 || out->max_batch < 1 || out->dims[0] < 1 ||
        out->dims[1] < 1 || out->dims[2] < 1) {
        bf_compute_destroy(out);
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "compute backend left its vtable "
                        "incomplete (run, num_classes, max_batch, dims)");
    }
    return BF_STATUS_OK;
}

void bf_compute_destroy(bf_compute *compute)
{
    if (compute == NULL)
        return;
    if (compute->destroy && compute->ctx)
        compute->destroy(compute->ctx);
    memset(compute, 0, sizeof *compute);
}
