/* oneDNN glue shared by the plan compiler and the op families: the engine, status mapping,
 * descriptors, one-shot reorders between host arrays and plan memory, post-op attributes,
 * and the common "one primitive, one destination" node. */
#include <pthread.h>
#include <string.h>

#include "core/plan.h"

bf_status bf_dnnl_error(dnnl_status_t s, const char *call, const char *file, int line)
{
    const char *what = s == dnnl_out_of_memory ? "out of memory"
                       : s == dnnl_unimplemented ? "no implementation for these shapes"
                       : s == dnnl_invalid_arguments ? "invalid arguments"
                                                     : "failure";
    return bf_error(s == dnnl_out_of_memory ? BF_STATUS_OUT_OF_MEMORY : BF_STATUS_BACKEND,
                    "oneDNN %s (status %d) in %s at %s:%d", what, (int)s, call, file, line);
}

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine_global;
static dnnl_status_t engine_status;

static void engine_init(void) { engine_status = dnnl_engine_create(&engine_global, dnnl_cpu, 0); }

bf_status bf_dnnl_engine(dnnl_engine_t *out)
{
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return bf_dnnl_error(engine_status, "dnnl_engine_create", __FILE__, __LINE__);
    *out = engine_global;
    return BF_STATUS_OK;
}

bf_status bf_md_plain(dnnl_memory_desc_t *md, int ndims, const int64_t *dims, dnnl_data_type_t dt)
{
    dnnl_dims_t d;
    bf_status st = BF_STATUS_OK;
    for (int i = 0; i < ndims; i++)
        d[i] = dims[i];
    DNNL_TRY(dnnl_memory_desc_create_with_tag(md, ndims, d, dt,
                                              ndims == 4   ? dnnl_nchw
                                              : ndims == 2 ? dnnl_nc
                                              : ndims == 5 ? dnnl_goihw
                                                           : dnnl_a));
fail:
    return st;
}

int bf_pd_is_ref(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
           impl && strncmp(impl, "ref", 3) == 0;
}

bf_status bf_md_like(dnnl_memory_desc_t *out, const_dnnl_memory_desc_t md, dnnl_format_tag_t tag)
{
    const dnnl_dims_t *d;
    int nd;
    bf_status st = BF_STATUS_OK;
    DNNL_TRY(dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &nd));
    DNNL_TRY(dnnl_memory_desc_query(md, dnnl_query_dims, &d));
    DNNL_TRY(dnnl_memory_desc_create_with_tag(out, nd, *d, dnnl_f32, tag));
fail:
    return st;
}

void bf_node_arg(bf_node *n, int arg, dnnl_memory_t mem)
{
    n->args[n->nargs].arg = arg;
    n->args[n->nargs].memory = mem;
    n->nargs++;
}

bf_status bf_md_conv_weights_plain(dnnl_memory_desc_t *md, const bf_layer_spec *s, int in_c)
{
    int64_t g = s->groups, o = s->out_channels, i = in_c / s->groups;
    if (g == 1) {
        int64_t d[4] = {o, i, s->kernel[0], s->kernel[1]};
        return bf_md_plain(md, 4, d, dnnl_f32);
    }
    int64_t d[5] = {g, o / g, i, s->kernel[0], s->kernel[1]};
    return bf_md_plain(md, 5, d, dnnl_f32);
}

bf_status bf_attr_post_ops(bf_plan *p, dnnl_primitive_attr_t *attr, int sum, int act_layer)
{
    dnnl_post_ops_t po = NULL;
    dnnl_alg_kind_t alg;
    float alpha, beta;
    bf_status st = BF_STATUS_OK;
    *attr = NULL;
    if (!sum && act_layer < 0)
        return BF_STATUS_OK;
    DNNL_TRY(dnnl_primitive_attr_create(attr));
    DNNL_TRY(dnnl_post_ops_create(&po));
    if (sum)
        DNNL_TRY(dnnl_post_ops_append_sum(po, 1.0f, 0, dnnl_data_type_undef));
    if (act_layer >= 0) {
        BF_TRY(bf_eltwise_alg(bf_model_layer(p->model, act_layer), &alg, &alpha, &beta));
        DNNL_TRY(dnnl_post_ops_append_eltwise(po, alg, alpha, beta));
    }
    DNNL_TRY(dnnl_primitive_attr_set_post_ops(*attr, po));
    dnnl_post_ops_destroy(po);
    return BF_STATUS_OK;
fail:
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(*attr);
    *attr = NULL;
    return st;
}

/* A one-shot reorder between two memories. */
static bf_status reorder_now(bf_plan *p, dnnl_memory_t src, dnnl_memory_t dst)
{
    const_dnnl_memory_desc_t smd, dmd;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    bf_status st = BF_STATUS_OK;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    DNNL_TRY(dnnl_memory_get_memory_desc(src, &smd));
    DNNL_TRY(dnnl_memory_get_memory_desc(dst, &dmd));
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, smd, p->engine, dmd, p->engine, NULL));
    DNNL_TRY(dnnl_primitive_create(&prim, pd));
    DNNL_TRY(dnnl_primitive_execute(prim, p->stream, 2, args));
    DNNL_TRY(dnnl_stream_wait(p->stream));
fail:
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

bf_status bf_mem_from_host(bf_plan *p, dnnl_memory_t *mem, const_dnnl_memory_desc_t md,
                           const_dnnl_memory_desc_t plain, const float *host)
{
    dnnl_memory_t src = NULL;
    bf_status st = BF_STATUS_OK;
    if (!*mem)
        DNNL_TRY(dnnl_memory_create(mem, md, p->engine, DNNL_MEMORY_ALLOCATE));
    DNNL_TRY(dnnl_memory_create(&src, plain, p->engine, (void *)host));
    st = reorder_now(p, src, *mem);
fail:
    dnnl_memory_destroy(src);
    return st;
}

void *bf_mem_handle(dnnl_memory_t mem)
{
    void *h = NULL;
    dnnl_memory_get_data_handle(mem, &h);
    return h;
}

bf_status bf_mem_to_host(bf_plan *p, dnnl_memory_t mem, const_dnnl_memory_desc_t plain,
                         float *host)
{
    dnnl_memory_t dst = NULL;
    bf_status st = BF_STATUS_OK;
    DNNL_TRY(dnnl_memory_create(&dst, plain, p->engine, host));
    st = reorder_now(p, mem, dst);
fail:
    dnnl_memory_destroy(dst);
    return st;
}

const float *bf_plan_param(bf_plan *p, int layer, int slot)
{
    bf_param_view v;
    if (bf_model_param(p->model, layer, slot, &v) != BF_STATUS_OK)
        return NULL;
    return v.data;
}

bf_node *bf_plan_push_primitive(bf_plan *p, const bf_node *proto, dnnl_primitive_desc_t *pd,
                                bf_status *status)
{
    bf_node *n = bf_plan_push_node(p, proto);
    dnnl_primitive_kind_t kind;
    bf_status st = BF_STATUS_OK;
    if (!n) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
        *status = BF_STATUS_OUT_OF_MEMORY;
        return NULL;
    }
    n->pd = *pd;
    *pd = NULL;
    DNNL_TRY(dnnl_primitive_create(&n->prim, n->pd));
    n->dst = bf_plan_add_value(p, dnnl_primitive_desc_query_md(n->pd, dnnl_query_dst_md, 0));
    if (n->dst < 0) {
        *status = BF_STATUS_OUT_OF_MEMORY;
        return NULL;
    }
    DNNL_TRY(dnnl_primitive_desc_query(n->pd, dnnl_query_primitive_kind, 0, &kind));
    for (int k = 0; k < n->n_src; k++)
        bf_node_arg(n, kind == dnnl_concat ? DNNL_ARG_MULTIPLE_SRC + k
                       : k == 0            ? DNNL_ARG_SRC_0
                                           : DNNL_ARG_SRC_1,
                    p->values[n->src[k]].mem);
    bf_node_arg(n, DNNL_ARG_DST, p->values[n->dst].mem);
    *status = BF_STATUS_OK;
    return n;
fail:
    *status = st;
    return NULL;
}

bf_status bf_plan_layer_dims(bf_plan *p, int layer, int out, dnnl_dims_t dims)
{
    bf_layer_info info;
    bf_status st = bf_model_layer_info(p->model, layer, &info);
    dims[0] = p->params.batch;
    for (int d = 0; d < 3; d++)
        dims[d + 1] = out ? info.out_dims[d] : info.in_dims[d];
    return st;
}
