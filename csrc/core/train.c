/* Training plans: the backward graph, gradient accumulation, softmax cross-entropy, SGD,
 * and writing the trained weights back into the model.
 *
 * Backward runs the nodes in reverse.  Each value has a gradient buffer in its own layout.
 * The first node (in backward order) that produces a value's gradient writes it in place;
 * later ones write into a scratch buffer that is then added, so values read twice (a
 * residual block's input) get the sum of both paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

void bf_node_bwd_arg(bf_node *n, int which, int arg, dnnl_memory_t mem)
{
    n->bwd_args[which][n->bwd_nargs[which]].arg = arg;
    n->bwd_args[which][n->bwd_nargs[which]].memory = mem;
    n->bwd_nargs[which]++;
}


bf_status bf_plan_add_tparam(bf_plan *p, int layer, int slot, dnnl_memory_t w,
                             const_dnnl_memory_desc_t diff_md, const_dnnl_memory_desc_t plain,
                             int decay, dnnl_memory_t *g_raw_out)
{
    bf_train_param *t;
    const_dnnl_memory_desc_t wmd;
    bf_status st = BF_STATUS_OK;
    if (p->n_tparams == p->cap_tparams) {
        int cap = p->cap_tparams ? 2 * p->cap_tparams : 32;
        bf_train_param *nt = realloc(p->tparams, (size_t)cap * sizeof *nt);
        if (!nt)
            return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        p->tparams = nt;
        p->cap_tparams = cap;
    }
    t = &p->tparams[p->n_tparams++];
    memset(t, 0, sizeof *t);
    t->layer = layer;
    t->slot = slot;
    t->w = w;
    t->decay = decay;
    DNNL_TRY(dnnl_memory_get_memory_desc(w, &wmd));
    t->n = dnnl_memory_desc_get_size(wmd) / sizeof(float);
    DNNL_TRY(dnnl_memory_desc_clone(&t->plain, plain));
    DNNL_TRY(dnnl_memory_create(&t->g, wmd, p->engine, DNNL_MEMORY_ALLOCATE));
    DNNL_TRY(dnnl_memory_create(&t->v, wmd, p->engine, DNNL_MEMORY_ALLOCATE));
    memset(bf_mem_handle(t->g), 0, t->n * sizeof(float));
    memset(bf_mem_handle(t->v), 0, t->n * sizeof(float));
    if (dnnl_memory_desc_equal(wmd, diff_md)) {
        *g_raw_out = t->g;
    } else {
        dnnl_primitive_desc_t pd = NULL;
        DNNL_TRY(dnnl_memory_create(&t->g_raw, diff_md, p->engine, DNNL_MEMORY_ALLOCATE));
        DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, diff_md, p->engine, wmd, p->engine,
                                                    NULL));
        st = dnnl_primitive_create(&t->g_reorder, pd) == dnnl_success
                 ? BF_STATUS_OK
                 : bf_error(BF_STATUS_BACKEND, "cannot reorder a gradient");
        dnnl_primitive_desc_destroy(pd);
        *g_raw_out = t->g_raw;
    }
fail:
    return st;
}

bf_status bf_plan_bind_weight_grads(bf_plan *p, bf_node *n, int64_t n_bias,
                                    const_dnnl_memory_desc_t wplain, dnnl_memory_t src,
                                    dnnl_memory_t diff_dst)
{
    dnnl_memory_desc_t bplain = NULL;
    dnnl_memory_t gw = NULL, gb = NULL;
    bf_status st = BF_STATUS_OK;
    BF_TRY(bf_plan_add_tparam(p, n->layer, 0, n->mem[0],
                              dnnl_primitive_desc_query_md(n->bwd_pd[1],
                                                           dnnl_query_diff_weights_md, 0),
                              wplain, 1, &gw));
    bf_node_bwd_arg(n, 1, DNNL_ARG_SRC, src);
    bf_node_bwd_arg(n, 1, DNNL_ARG_DIFF_DST, diff_dst);
    bf_node_bwd_arg(n, 1, DNNL_ARG_DIFF_WEIGHTS, gw);
    if (n_bias > 0) {
        BF_TRY(bf_md_plain(&bplain, 1, &n_bias, dnnl_f32));
        BF_TRY(bf_plan_add_tparam(p, n->layer, 1, n->mem[1],
                                  dnnl_primitive_desc_query_md(n->bwd_pd[1],
                                                               dnnl_query_diff_weights_md, 1),
                                  bplain, 0, &gb));
        bf_node_bwd_arg(n, 1, DNNL_ARG_DIFF_BIAS, gb);
    }
fail:
    dnnl_memory_desc_destroy(bplain);
    return st;
}

dnnl_memory_t bf_plan_diff_src(bf_plan *p, bf_node *n, int k)
{
    bf_value *v = &p->values[n->src[k]];
    const_dnnl_memory_desc_t md;
    if (!v->diff_ready) {
        v->diff_ready = 1;
        n->acc[k] = 0;
        return v->diff;
    }
    n->acc[k] = 1;
    if (!n->acc_tmp[k]) {
        dnnl_memory_get_memory_desc(v->diff, &md);
        if (dnnl_memory_create(&n->acc_tmp[k], md, p->engine, p->scratch) != dnnl_success)
            return NULL;
    }
    return n->acc_tmp[k];
}

/* Adds (or copies, for a first writer) a float gradient into the source's gradient. */
bf_status bf_plan_grad_copy(bf_plan *p, bf_node *n, int k, dnnl_memory_t from)
{
    bf_value *v = &p->values[n->src[k]];
    const_dnnl_memory_desc_t md;
    float *dst, *src = bf_mem_handle(from);
    size_t count;
    dnnl_memory_get_memory_desc(v->diff, &md);
    count = dnnl_memory_desc_get_size(md) / sizeof(float);
    dst = bf_mem_handle(v->diff);
    if (!n->acc[k]) {
        memcpy(dst, src, count * sizeof(float));
        return BF_STATUS_OK;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < count; i++)
        dst[i] += src[i];
    return BF_STATUS_OK;
}

static bf_status alloc_diffs(bf_plan *p)
{
    size_t biggest = 64;
    bf_status st = BF_STATUS_OK;
    for (int i = 0; i < p->n_values; i++) {
        bf_value *v = &p->values[i];
        dnnl_data_type_t dt;
        dnnl_memory_desc_t md = NULL;
        DNNL_TRY(dnnl_memory_desc_query(v->md, dnnl_query_data_type, &dt));
        if (dt == dnnl_u8) { /* the payload's gradient passes straight through, in float */
            const dnnl_dims_t *d;
            int64_t dims[4];
            DNNL_TRY(dnnl_memory_desc_query(v->md, dnnl_query_dims, &d));
            for (int k = 0; k < 4; k++)
                dims[k] = (*d)[k];
            BF_TRY(bf_md_plain(&md, 4, dims, dnnl_f32));
        } else {
            DNNL_TRY(dnnl_memory_desc_clone(&md, v->md));
        }
        if (dnnl_memory_desc_get_size(md) > biggest)
            biggest = dnnl_memory_desc_get_size(md);
        st = dnnl_memory_create(&v->diff, md, p->engine, DNNL_MEMORY_ALLOCATE) == dnnl_success
                 ? BF_STATUS_OK
                 : bf_error(BF_STATUS_OUT_OF_MEMORY, "cannot allocate gradients");
        dnnl_memory_desc_destroy(md);
        if (st != BF_STATUS_OK)
            return st;
        memset(bf_mem_handle(v->diff), 0, dnnl_memory_desc_get_size(v->md) * (dt == dnnl_u8 ? 4 : 1));
        v->diff_ready = 0;
    }
    p->scratch = aligned_alloc(64, (biggest + 63) & ~(size_t)63);
    p->logits = malloc((size_t)(p->io[1].dims[0] * p->io[1].dims[1] * p->io[1].dims[2] *
                                p->io[1].dims[3]) * sizeof(float));
    p->fwd_src = malloc(dnnl_memory_desc_get_size(p->values[p->src_value].md));
    p->fwd_dst = malloc(dnnl_memory_desc_get_size(p->values[p->dst_value].md));
    if (!p->scratch || !p->logits || !p->fwd_src || !p->fwd_dst)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
fail:
    return st;
}

static bf_status reorder_prim(bf_plan *p, const_dnnl_memory_desc_t from,
                              const_dnnl_memory_desc_t to, dnnl_primitive_t *prim)
{
    dnnl_primitive_desc_t pd = NULL;
    bf_status st = BF_STATUS_OK;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, from, p->engine, to, p->engine, NULL));
    DNNL_TRY(dnnl_primitive_create(prim, pd));
fail:
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static bf_status own_memory(bf_plan *p, bf_node *n, const_dnnl_memory_desc_t md,
                            dnnl_memory_t *out)
{
    if (n->n_bwd_mem == (int)(sizeof n->bwd_mem / sizeof n->bwd_mem[0]))
        return bf_error(BF_STATUS_UNSUPPORTED, "too many layout changes in one backward");
    if (dnnl_memory_create(&n->bwd_mem[n->n_bwd_mem], md, p->engine, DNNL_MEMORY_ALLOCATE) !=
        dnnl_success)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    *out = n->bwd_mem[n->n_bwd_mem++];
    return BF_STATUS_OK;
}

bf_status bf_bwd_input_as(bf_plan *p, bf_node *n, dnnl_memory_t m, const_dnnl_memory_desc_t want,
                          dnnl_memory_t *out)
{
    const_dnnl_memory_desc_t have, other;
    bf_status st = BF_STATUS_OK;
    DNNL_TRY(dnnl_memory_get_memory_desc(m, &have));
    if (dnnl_memory_desc_equal(have, want)) {
        *out = m;
        return BF_STATUS_OK;
    }
    for (int k = 0; k < n->n_pre; k++) { /* the same copy already made for the other pass */
        DNNL_TRY(dnnl_memory_get_memory_desc(n->pre_args[k][1].memory, &other));
        if (n->pre_args[k][0].memory == m && dnnl_memory_desc_equal(other, want)) {
            *out = n->pre_args[k][1].memory;
            return BF_STATUS_OK;
        }
    }
    if (n->n_pre == 4)
        return bf_error(BF_STATUS_UNSUPPORTED, "too many layout changes in one backward");
    BF_TRY(own_memory(p, n, want, out));
    BF_TRY(reorder_prim(p, have, want, &n->pre[n->n_pre]));
    n->pre_args[n->n_pre][0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, m};
    n->pre_args[n->n_pre][1] = (dnnl_exec_arg_t){DNNL_ARG_TO, *out};
    n->n_pre++;
fail:
    return st;
}

bf_status bf_bwd_output_as(bf_plan *p, bf_node *n, dnnl_memory_t target,
                           const_dnnl_memory_desc_t made, dnnl_memory_t *out)
{
    const_dnnl_memory_desc_t want;
    bf_status st = BF_STATUS_OK;
    DNNL_TRY(dnnl_memory_get_memory_desc(target, &want));
    if (dnnl_memory_desc_equal(want, made)) {
        *out = target;
        return BF_STATUS_OK;
    }
    BF_TRY(own_memory(p, n, made, out));
    BF_TRY(reorder_prim(p, made, want, &n->post));
    n->post_args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, *out};
    n->post_args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, target};
fail:
    return st;
}

/* Marks the nodes whose backward nobody needs: a value needs its gradient when a trainable
 * parameter lies on a path from the plan's source to it (or the source's own gradient was
 * asked for); a node with no trainable parameter whose inputs need no gradient is skipped.
 * Training only a butterfly unit behind a frozen head so skips the head's backward. */
static bf_status mark_needed(bf_plan *p)
{
    char *need = calloc((size_t)p->n_values, 1);
    if (need == NULL)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    need[p->src_value] = (char)(p->params.input_grad != 0);
    for (int k = 0; k < p->n_nodes; k++) {
        bf_node *n = &p->nodes[k];
        int trainable = 0, upstream = 0;
        for (int i = 0; i < p->n_tparams && n->layer >= 0; i++)
            trainable |= p->tparams[i].layer == n->layer;
        for (int s = 0; s < n->n_src; s++)
            upstream |= need[n->src[s]];
        if (n->sum_src >= 0)
            upstream |= need[n->sum_src];
        need[n->dst] |= (char)(trainable || upstream);
        n->skip_bwd = !trainable && !upstream;
    }
    free(need);
    return BF_STATUS_OK;
}

bf_status bf_plan_build_backward(bf_plan *p)
{
    bf_status st;
    st = alloc_diffs(p);
    if (st != BF_STATUS_OK)
        return st;
    p->values[p->dst_value].diff_ready = 1;
    for (int k = p->n_nodes - 1; k >= 0; k--) {
        bf_node *n = &p->nodes[k];
        const bf_layer_spec *s = n->layer >= 0 ? bf_model_layer(p->model, n->layer) : NULL;
        if (!s)
            st = bf_op_reorder_bwd(p, n);
        else if (bf_layer_row_of(s->type)->bwd)
            st = bf_layer_row_of(s->type)->bwd(p, n);
        else
            st = bf_error(BF_STATUS_UNSUPPORTED, "no backward for layer %d", n->layer);
        if (st != BF_STATUS_OK)
            return bf_error(st, "backward of layer %d (%s): %s", n->layer,
                            s ? s->name : "reorder", bf_last_error());
    }
    return mark_needed(p);
}

void bf_plan_destroy_training(bf_plan *p)
{
    for (int k = 0; k < p->n_nodes; k++) {
        bf_node *n = &p->nodes[k];
        for (int r = 0; r < n->n_pre; r++)
            dnnl_primitive_destroy(n->pre[r]);
        dnnl_primitive_destroy(n->post);
        for (int m = 0; m < n->n_bwd_mem; m++)
            dnnl_memory_destroy(n->bwd_mem[m]);
        for (int w = 0; w < 2; w++) {
            dnnl_primitive_destroy(n->bwd[w]);
            dnnl_primitive_desc_destroy(n->bwd_pd[w]);
        }
        for (int k = 0; k < BF_MAX_INPUTS; k++)
            dnnl_memory_destroy(n->acc_tmp[k]);
    }
    for (int i = 0; i < p->n_tparams; i++) {
        bf_train_param *t = &p->tparams[i];
        dnnl_memory_destroy(t->g);
        dnnl_memory_destroy(t->g_raw);
        dnnl_memory_destroy(t->v);
        dnnl_memory_destroy(t->v2);
        dnnl_primitive_destroy(t->g_reorder);
        dnnl_memory_desc_destroy(t->plain);
    }
    free(p->tparams);
    free(p->scratch);
    free(p->logits);
    free(p->fwd_src);
    free(p->fwd_dst);
}

/* ---- running it ---------------------------------------------------------------------- */

static bf_status need_training(const bf_plan *p)
{
    if (!p || !p->params.training)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "not a training plan");
    return BF_STATUS_OK;
}

bf_status bf_plan_backward(bf_plan *p, const float *diff_dst)
{
    bf_status st = need_training(p);
    const_dnnl_memory_desc_t md;
    if (st != BF_STATUS_OK)
        return st;
    if (!diff_dst)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_plan_backward: NULL gradient");
    if (!p->fwd_done)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_plan_backward: no forward to "
                        "differentiate yet (run a forward on this plan first)");
    dnnl_memory_get_memory_desc(p->values[p->dst_value].diff, &md);
    memcpy(bf_mem_handle(p->values[p->dst_value].diff), diff_dst, dnnl_memory_desc_get_size(md));
    for (int k = p->n_nodes - 1; k >= 0; k--) {
        bf_node *n = &p->nodes[k];
        if (n->skip_bwd)
            continue;
        if (n->bwd_run) {
            BF_TRY(n->bwd_run(p, n));
            continue;
        }
        for (int r = 0; r < n->n_pre; r++)
            DNNL_TRY(dnnl_primitive_execute(n->pre[r], p->stream, 2, n->pre_args[r]));
        for (int w = 0; w < 2; w++) {
            if (n->bwd[w])
                DNNL_TRY(dnnl_primitive_execute(n->bwd[w], p->stream, n->bwd_nargs[w],
                                                n->bwd_args[w]));
            if (w == 0 && n->bwd[0] && n->post)
                DNNL_TRY(dnnl_primitive_execute(n->post, p->stream, 2, n->post_args));
        }
        DNNL_TRY(dnnl_stream_wait(p->stream));
        for (int s = 0; s < n->n_src; s++)
            if (n->acc[s] && n->bwd[0])
                BF_TRY(bf_plan_grad_copy(p, n, s, n->acc_tmp[s]));
    }
    for (int i = 0; i < p->n_tparams; i++) {
        bf_train_param *t = &p->tparams[i];
        if (t->g_reorder) {
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, t->g_raw}, {DNNL_ARG_TO, t->g}};
            DNNL_TRY(dnnl_primitive_execute(t->g_reorder, p->stream, 2, a));
        }
    }
    DNNL_TRY(dnnl_stream_wait(p->stream));
fail:
    return st;
}

bf_sgd_params bf_sgd_default_params(void)
{
    bf_sgd_params s = {0.1f, 0.9f, 5e-4f, 0};
    return s;
}

float bf_lr_at(const bf_lr_schedule *s, int64_t step)
{
    if (!s || !(s->lr >= 0) || s->total_steps < 1 || s->warmup_steps < 0 || step < 0 ||
        s->n_milestones < 0 || s->n_milestones > BF_LR_MAX_MILESTONES)
        return -1.0f;
    if (step < s->warmup_steps)
        return s->lr * (float)(step + 1) / (float)s->warmup_steps;
    if (s->kind == BF_LR_COSINE) {
        int64_t span = s->total_steps - s->warmup_steps;
        double t = (double)(step - s->warmup_steps) / (double)(span > 0 ? span : 1);
        return (float)(0.5 * s->lr * (1.0 + cos(M_PI * (t < 1.0 ? t : 1.0))));
    }
    if (s->kind == BF_LR_STEP) {
        float lr = s->lr;
        for (int i = 0; i < s->n_milestones; i++)
            if (step >= s->milestones[i])
                lr *= s->gamma;
        return lr;
    }
    return s->kind == BF_LR_CONSTANT ? s->lr : -1.0f;
}

bf_status bf_plan_sgd_step(bf_plan *p, const bf_sgd_params *sgd)
{
    bf_status st = need_training(p);
    if (st != BF_STATUS_OK)
        return st;
    if (!sgd || !isfinite(sgd->lr) || sgd->lr < 0 || !(sgd->momentum >= 0 && sgd->momentum < 1) ||
        !(sgd->weight_decay >= 0))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "SGD needs lr >= 0, momentum in [0, 1), "
                                                    "weight_decay >= 0");
    for (int i = 0; i < p->n_tparams; i++) {
        bf_train_param *t = &p->tparams[i];
        float *w = bf_mem_handle(t->w), *g = bf_mem_handle(t->g), *v = bf_mem_handle(t->v);
        float lr = sgd->lr, mom = sgd->momentum, wd = t->decay ? sgd->weight_decay : 0.0f;
        int nesterov = sgd->nesterov;
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < t->n; j++) {
            float gj = g[j] + wd * w[j];
            v[j] = mom * v[j] + gj;
            w[j] -= lr * (nesterov ? gj + mom * v[j] : v[j]);
        }
    }
    p->steps++;
    return BF_STATUS_OK;
}

bf_adam_params bf_adam_default_params(void)
{
    bf_adam_params a = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
    return a;
}

/* Adam's second moment of t, made (zeros) at its first use. */
static bf_status second_moment(bf_plan *p, bf_train_param *t, float **out)
{
    bf_status st = BF_STATUS_OK;
    if (!t->v2) {
        const_dnnl_memory_desc_t md;
        DNNL_TRY(dnnl_memory_get_memory_desc(t->v, &md));
        DNNL_TRY(dnnl_memory_create(&t->v2, md, p->engine, DNNL_MEMORY_ALLOCATE));
        memset(bf_mem_handle(t->v2), 0, t->n * sizeof(float));
    }
    *out = bf_mem_handle(t->v2);
fail:
    return st;
}

bf_status bf_plan_adam_step(bf_plan *p, const bf_adam_params *adam, int64_t step)
{
    bf_status st = need_training(p);
    if (st != BF_STATUS_OK)
        return st;
    if (!adam || !isfinite(adam->lr) || adam->lr < 0 || !(adam->beta1 >= 0 && adam->beta1 < 1) ||
        !(adam->beta2 >= 0 && adam->beta2 < 1) || !(adam->eps > 0 && isfinite(adam->eps)) ||
        !(adam->weight_decay >= 0 && isfinite(adam->weight_decay)) || step < 1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "Adam needs lr >= 0, beta1 and beta2 in "
                                                    "[0, 1), eps > 0, weight_decay >= 0 and a "
                                                    "step >= 1");
    {
        /* bias corrections, folded into the step size and eps as PyTorch does */
        double c1 = 1.0 - pow(adam->beta1, (double)step), c2 = 1.0 - pow(adam->beta2, (double)step);
        float b1 = adam->beta1, b2 = adam->beta2, lr = adam->lr;
        float step_size = (float)(adam->lr / c1), root_c2 = (float)sqrt(c2), eps = adam->eps;
        for (int i = 0; i < p->n_tparams; i++) {
            bf_train_param *t = &p->tparams[i];
            float *w = bf_mem_handle(t->w), *g = bf_mem_handle(t->g), *m = bf_mem_handle(t->v);
            float *v, decay = t->decay ? 1.0f - lr * adam->weight_decay : 1.0f;
            BF_TRY(second_moment(p, t, &v));
#pragma omp parallel for schedule(static)
            for (size_t j = 0; j < t->n; j++) {
                float gj = g[j];
                m[j] = b1 * m[j] + (1.0f - b1) * gj;
                v[j] = b2 * v[j] + (1.0f - b2) * gj * gj;
                w[j] = w[j] * decay - step_size * m[j] / (sqrtf(v[j]) / root_c2 + eps);
            }
        }
    }
    p->steps++;
fail:
    return st;
}

bf_status bf_plan_train_step(bf_plan *p, const float *src, const int32_t *labels,
                             const bf_sgd_params *sgd, float *loss, int *correct)
{
    bf_status st = need_training(p);
    int n, k;
    float *diff;
    if (st != BF_STATUS_OK)
        return st;
    if (p->io[1].quantized || p->io[1].dims[2] != 1 || p->io[1].dims[3] != 1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "train_step needs a plan ending in logits");
    n = (int)p->io[1].dims[0];
    k = (int)p->io[1].dims[1];
    diff = p->scratch; /* free between forward and backward */
    BF_TRY(bf_plan_forward(p, src, NULL, p->logits, NULL));
    BF_TRY(bf_softmax_xent(p->logits, labels, n, k, loss, correct, diff));
    BF_TRY(bf_plan_backward(p, diff));
    if (sgd)
        BF_TRY(bf_plan_sgd_step(p, sgd));
fail:
    return st;
}

bf_status bf_plan_sync(bf_plan *p)
{
    bf_status st = need_training(p);
    if (st != BF_STATUS_OK)
        return st;
    for (int i = 0; i < p->n_tparams; i++) {
        bf_train_param *t = &p->tparams[i];
        bf_param_view v;
        BF_TRY(bf_model_param(p->model, t->layer, t->slot, &v));
        BF_TRY(bf_mem_to_host(p, t->w, t->plain, v.data));
    }
    bf_model_touch(p->model);
    p->loaded_version = bf_model_version(p->model); /* the plan already holds these weights */
fail:
    return st;
}

bf_status bf_plan_param_grad(bf_plan *p, int layer, int slot, float *out)
{
    bf_status st = need_training(p);
    if (st != BF_STATUS_OK)
        return st;
    for (int i = 0; i < p->n_tparams; i++)
        if (p->tparams[i].layer == layer && p->tparams[i].slot == slot)
            return bf_mem_to_host(p, p->tparams[i].g, p->tparams[i].plain, out);
    return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %d parameter %d is not trained by this plan",
                    layer, slot);
}

bf_status bf_plan_src_grad(bf_plan *p, float *out)
{
    bf_status st = need_training(p);
    const_dnnl_memory_desc_t md;
    if (st != BF_STATUS_OK)
        return st;
    if (!p->params.input_grad)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "the plan was made without input_grad");
    dnnl_memory_get_memory_desc(p->values[p->src_value].diff, &md);
    memcpy(out, bf_mem_handle(p->values[p->src_value].diff), dnnl_memory_desc_get_size(md));
    return BF_STATUS_OK;
}

/* The optimizer buffer `which` (0: momentum / first moment, 1: second moment) of a trained
 * parameter, copied out (set = 0) or in (set = 1) in the model's layout. */
static bf_status optimizer_buffer(bf_plan *p, int layer, int slot, int which, float *buf,
                                  int set)
{
    bf_status st = need_training(p);
    dnnl_memory_t host = NULL, mem;
    if (st != BF_STATUS_OK)
        return st;
    for (int i = 0; i < p->n_tparams; i++) {
        bf_train_param *t = &p->tparams[i];
        float *unused;
        if (t->layer != layer || t->slot != slot)
            continue;
        if (which == 1)
            BF_TRY(second_moment(p, t, &unused));
        mem = which == 1 ? t->v2 : t->v;
        if (!set)
            return bf_mem_to_host(p, mem, t->plain, buf);
        DNNL_TRY(dnnl_memory_create(&host, t->plain, p->engine, buf));
        {
            const_dnnl_memory_desc_t vmd;
            dnnl_primitive_desc_t pd = NULL;
            dnnl_primitive_t prim = NULL;
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, host}, {DNNL_ARG_TO, mem}};
            DNNL_TRY(dnnl_memory_get_memory_desc(mem, &vmd));
            DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, t->plain, p->engine, vmd, p->engine,
                                                        NULL));
            if (dnnl_primitive_create(&prim, pd) != dnnl_success ||
                dnnl_primitive_execute(prim, p->stream, 2, a) != dnnl_success ||
                dnnl_stream_wait(p->stream) != dnnl_success)
                st = bf_error(BF_STATUS_BACKEND, "cannot restore an optimizer buffer");
            dnnl_primitive_destroy(prim);
            dnnl_primitive_desc_destroy(pd);
        }
        dnnl_memory_destroy(host);
        return st;
    }
    return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %d parameter %d is not trained by this plan",
                    layer, slot);
fail:
    dnnl_memory_destroy(host);
    return st;
}

bf_status bf_plan_momentum(bf_plan *p, int layer, int slot, float *buf, int set)
{
    return optimizer_buffer(p, layer, slot, 0, buf, set);
}

bf_status bf_plan_second_moment(bf_plan *p, int layer, int slot, float *buf, int set)
{
    return optimizer_buffer(p, layer, slot, 1, buf, set);
}

int bf_plan_num_trained(const bf_plan *p, int *layers, int *slots, int max)
{
    for (int i = 0; p && i < p->n_tparams && i < max; i++) {
        layers[i] = p->tparams[i].layer;
        slots[i] = p->tparams[i].slot;
    }
    return p ? p->n_tparams : 0;
}
