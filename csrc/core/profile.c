/* bf_plan_profile: per-layer times of a plan, measured node by node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/plan.h"

enum { BF_PROFILE_MAX_REPEATS = 100000 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The layer a node's time is charged to: its own, or for a reorder (layer -1) the next
 * computing node's (reorders are pushed just before the node that needs them), or the
 * plan's last layer for the destination reorder at the end. */
static int charged_layer(const bf_plan *p, int k)
{
    for (int j = k; j < p->n_nodes; j++)
        if (p->nodes[j].layer >= 0)
            return p->nodes[j].layer;
    return p->last_layer;
}

/* Runs node k exactly as bf_plan_forward does, waiting for it to finish. */
static bf_status run_node(bf_plan *p, int k)
{
    bf_status st = BF_STATUS_OK;
    BF_TRY(bf_node_exec(p, &p->nodes[k]));
    DNNL_TRY(dnnl_stream_wait(p->stream));
fail:
    return st;
}

/* bf_layer_time.kernel of `layer`: its computing node's implementation, "" if it has none
 * (fused into another node). */
static void layer_kernel(const bf_plan *p, int layer, char *out, size_t size)
{
    out[0] = '\0';
    for (int k = 0; k < p->n_nodes; k++) {
        const bf_node *n = &p->nodes[k];
        const char *impl = NULL;
        if (n->layer != layer)
            continue;
        if (n->run || !n->pd ||
            dnnl_primitive_desc_query(n->pd, dnnl_query_impl_info_str, 0, &impl) !=
                dnnl_success ||
            !impl)
            impl = "butterfly";
        snprintf(out, size, "%s%s", impl, n->after ? "+swish" : "");
        return;
    }
}

bf_status bf_plan_profile(bf_plan *p, const void *src, const float *src_range, int repeats,
                          bf_layer_time *out, int max, int *n)
{
    bf_status st = BF_STATUS_OK;
    void *dst = NULL;
    float *dst_range = NULL;
    double *t = NULL; /* repeats x layers: per-repeat time charged to each layer */
    double *col = NULL; /* one layer's times, sorted for the median */
    int *charge = NULL;
    int rows;
    size_t dst_bytes = 1;

    if (!p || !src || !n)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_plan_profile: NULL argument");
    rows = p->last_layer - p->first_layer + 1;
    *n = rows;
    if (!out)
        return BF_STATUS_OK; /* a query of the row count */
    if (max < rows)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_plan_profile: %d rows needed, %d given",
                        rows, max);
    if (repeats < 1 || repeats > BF_PROFILE_MAX_REPEATS)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "repeats %d out of range [1, %d]", repeats,
                        BF_PROFILE_MAX_REPEATS);
    if (p->params.training)
        return bf_error(BF_STATUS_UNSUPPORTED, "profiling needs an inference plan");

    for (int d = 0; d < 4; d++)
        dst_bytes *= (size_t)p->io[1].dims[d];
    dst_bytes *= p->io[1].dtype == BF_U8 ? 1 : sizeof(float);

    dst = malloc(dst_bytes);
    dst_range = calloc(2 * (size_t)p->params.batch, sizeof(float));
    t = calloc((size_t)repeats * (size_t)rows, sizeof(double));
    col = malloc((size_t)repeats * sizeof(double));
    charge = malloc((size_t)(p->n_nodes + 1) * sizeof(int));
    if (!dst || !dst_range || !t || !col || !charge) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    /* One whole forward checks the input, loads the weights, binds src and dst (and their
     * ranges) to the plan's values and warms the caches; the nodes then run on those. */
    BF_TRY(bf_plan_forward(p, src, src_range, dst, dst_range));
    for (int k = 0; k < p->n_nodes; k++)
        charge[k] = charged_layer(p, k) - p->first_layer;
    for (int r = 0; r < repeats; r++) {
        double *row = t + (size_t)r * (size_t)rows;
        for (int k = 0; k < p->n_nodes; k++) {
            double t0 = now_ms();
            BF_TRY(run_node(p, k));
            if (charge[k] >= 0 && charge[k] < rows)
                row[charge[k]] += now_ms() - t0;
        }
    }
    for (int i = 0; i < rows; i++) {
        const bf_layer_spec *spec = bf_model_layer(p->model, p->first_layer + i);
        bf_layer_info info;
        BF_TRY(bf_model_layer_info(p->model, p->first_layer + i, &info));
        memset(&out[i], 0, sizeof out[i]);
        out[i].layer = p->first_layer + i;
        if (spec)
            snprintf(out[i].name, sizeof out[i].name, "%s", spec->name);
        out[i].macs = info.macs;
        out[i].out_bytes = info.out_bytes;
        layer_kernel(p, out[i].layer, out[i].kernel, sizeof out[i].kernel);
        for (int r = 0; r < repeats; r++)
            col[r] = t[(size_t)r * (size_t)rows + (size_t)i];
        out[i].ms_median = median(col, repeats);
    }
fail:
    /* the caller's buffers were borrowed for this call only */
    p->user_src_range = NULL;
    p->user_dst_range = NULL;
    free(charge);
    free(col);
    free(t);
    free(dst_range);
    free(dst);
    return st;
}
