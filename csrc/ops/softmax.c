/* Softmax over channels. */
#include <math.h>

#include "core/plan.h"

bf_status bf_op_softmax_fwd(bf_plan *p, const bf_node *proto)
{
    const_dnnl_memory_desc_t md = p->values[proto->src[0]].md;
    dnnl_primitive_desc_t pd = NULL;
    bf_status st = BF_STATUS_OK;

    DNNL_TRY(dnnl_softmax_forward_primitive_desc_create(
        &pd, p->engine, p->params.training ? dnnl_forward_training : dnnl_forward_inference,
        dnnl_softmax_accurate, md, md, 1, NULL));
    bf_plan_push_primitive(p, proto, &pd, &st);
fail:
    dnnl_primitive_desc_destroy(pd);
    return st;
}

bf_status bf_op_softmax_bwd(bf_plan *p, bf_node *n)
{
    const_dnnl_memory_desc_t md = p->values[n->src[0]].md;
    dnnl_memory_t dsrc = bf_plan_diff_src(p, n, 0);
    bf_status st = BF_STATUS_OK;
    if (!dsrc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    DNNL_TRY(dnnl_softmax_backward_primitive_desc_create(&n->bwd_pd[0], p->engine,
                                                         dnnl_softmax_accurate, md, md, md, 1,
                                                         n->pd, NULL));
    DNNL_TRY(dnnl_primitive_create(&n->bwd[0], n->bwd_pd[0]));
    bf_node_bwd_arg(n, 0, DNNL_ARG_DST, p->values[n->dst].mem);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_DST, p->values[n->dst].diff);
    bf_node_bwd_arg(n, 0, DNNL_ARG_DIFF_SRC, dsrc);
fail:
    return st;
}

/* Mean softmax cross-entropy over n rows of k logits; diff = (softmax - onehot) / n. */
bf_status bf_softmax_xent(const float *logits, const int32_t *labels, int n, int k, float *loss,
                          int *correct, float *diff)
{
    double total = 0.0;
    int right = 0;
    if (!logits || !labels || n < 1 || k < 1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_softmax_xent: bad arguments");
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k)
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "label %d of sample %d not in [0, %d)",
                            labels[i], i, k);
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float m = z[0];
        double sum = 0.0;
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > m)
                m = z[j], arg = j;
        for (int j = 0; j < k; j++)
            sum += exp((double)(z[j] - m));
        total += log(sum) - (double)(z[labels[i]] - m);
        right += arg == labels[i];
        if (diff)
            for (int j = 0; j < k; j++)
                diff[(size_t)i * k + j] =
                    (float)((exp((double)(z[j] - m)) / sum - (j == labels[i])) / n);
    }
    if (!isfinite(total))
        return bf_error(BF_STATUS_NUMERIC, "the loss is not finite (diverged?)");
    if (loss)
        *loss = (float)(total / n);
    if (correct)
        *correct = right;
    return BF_STATUS_OK;
}
