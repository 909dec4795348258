/* bf_plan: compiles a range of a model's parts into oneDNN primitives and runs them.
 *
 * Compilation walks the layers in order and makes one node per layer, except that in
 * inference a conv absorbs the batch-norm that follows it (folded into its weights), a
 * residual add (as a sum post-op writing into the shortcut's buffer) and a ReLU (eltwise
 * post-op).  Convolutions choose their own layouts; a reorder node is added only where a
 * consumer wants a layout its producer did not make, and at the plan's two boundaries.
 * In inference a plan over several parts compiles each part as the plan of that part alone
 * would (a plain-layout cut between parts, no fusion across it), so it computes bit for bit
 * the composition of the part plans: forward == tail(restore(reduce(head(x)))).
 * Activations live in one arena; in inference, buffers are reused once their last reader
 * has run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

/* ---- graph building ----------------------------------------------------------------- */

int bf_plan_add_value(bf_plan *p, const_dnnl_memory_desc_t md)
{
    bf_value *v;
    bf_status st = BF_STATUS_OK;
    if (p->n_values == p->cap_values) {
        int cap = p->cap_values ? 2 * p->cap_values : 64;
        bf_value *nv = realloc(p->values, (size_t)cap * sizeof *nv);
        if (!nv) {
            bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
            return -1;
        }
        p->values = nv;
        p->cap_values = cap;
    }
    v = &p->values[p->n_values];
    memset(v, 0, sizeof *v);
    v->producer = p->n_nodes - 1;
    v->alias = -1;
    v->copy_of = -1;
    DNNL_TRY(dnnl_memory_desc_clone(&v->md, md));
    v->size = dnnl_memory_desc_get_size(md);
    DNNL_TRY(dnnl_memory_create(&v->mem, md, p->engine, DNNL_MEMORY_NONE));
    return p->n_values++;
fail:
    (void)st;
    dnnl_memory_desc_destroy(v->md);
    return -1;
}

void bf_node_init(bf_node *n, int layer)
{
    memset(n, 0, sizeof *n);
    n->layer = layer;
    n->bn_layer = -1;
    n->sum_src = -1;
    n->act_layer = -1;
    n->dst = -1;
    n->gain = INFINITY;
}

bf_node *bf_plan_push_node(bf_plan *p, const bf_node *proto)
{
    if (p->n_nodes == p->cap_nodes) {
        int cap = p->cap_nodes ? 2 * p->cap_nodes : 64;
        bf_node *nn = realloc(p->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
            return NULL;
        }
        p->nodes = nn;
        p->cap_nodes = cap;
    }
    p->nodes[p->n_nodes] = *proto;
    return &p->nodes[p->n_nodes++];
}

/* Appends a reorder node from value v to a new value of layout md; returns its id. */
static int add_reorder(bf_plan *p, int v, const_dnnl_memory_desc_t md)
{
    bf_node proto, *n;
    dnnl_primitive_desc_t pd = NULL;
    int out;
    bf_status st = BF_STATUS_OK;
    bf_node_init(&proto, -1);
    proto.n_src = 1;
    proto.src[0] = v;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, p->values[v].md, p->engine, md, p->engine,
                                                NULL));
    n = bf_plan_push_node(p, &proto);
    if (!n) {
        dnnl_primitive_desc_destroy(pd);
        return -1;
    }
    n->pd = pd;
    DNNL_TRY(dnnl_primitive_create(&n->prim, n->pd));
    out = bf_plan_add_value(p, md);
    if (out < 0)
        return -1;
    n->dst = out;
    bf_node_arg(n, DNNL_ARG_FROM, p->values[v].mem);
    bf_node_arg(n, DNNL_ARG_TO, p->values[out].mem);
    return out;
fail:
    (void)st;
    return -1;
}

int bf_plan_value_as(bf_plan *p, int v, const_dnnl_memory_desc_t md)
{
    if (dnnl_memory_desc_equal(p->values[v].md, md))
        return v;
    if (p->values[v].copy_of >= 0) /* the same numbers, one exact reorder fewer */
        return bf_plan_value_as(p, p->values[v].copy_of, md);
    for (int k = 0; k < p->n_nodes; k++) { /* another reader already asked for this layout */
        const bf_node *n = &p->nodes[k];
        if (n->layer < 0 && n->src[0] == v && n->dst >= 0 &&
            dnnl_memory_desc_equal(p->values[n->dst].md, md) && !p->values[n->dst].external)
            return n->dst;
    }
    return add_reorder(p, v, md);
}

/* Per layer of the segment being compiled: how many readers it has and the last one. */
typedef struct use_info {
    int n;
    int last;
} use_info;

static void count_uses(bf_plan *p, use_info *use)
{
    for (int i = 0; i < bf_model_num_layers(p->model); i++)
        use[i].n = 0, use[i].last = -1;
    for (int i = p->seg_first; i <= p->seg_last; i++) {
        const bf_layer_spec *s = bf_model_layer(p->model, i);
        for (int k = 0; k < s->n_inputs; k++) {
            use[s->inputs[k]].n++;
            use[s->inputs[k]].last = i;
        }
    }
    use[p->seg_last].n++; /* the segment's output: the plan's, or a cut */
    use[p->seg_last].last = p->seg_last + 1;
}

/* The single reader of layer i, or -1. */
static int single_reader(bf_plan *p, const use_info *use, int i)
{
    if (use[i].n != 1 || use[i].last > p->seg_last)
        return -1;
    return use[i].last;
}

/* Whether every reader of layer v other than layer `except` comes before layer i (so v's
 * buffer may be overwritten in place by layer i). */
static int read_before(bf_plan *p, int v, int i, int except)
{
    for (int r = v + 1; r <= p->seg_last; r++) {
        const bf_layer_spec *s = bf_model_layer(p->model, r);
        if (r == except)
            continue;
        for (int k = 0; k < s->n_inputs; k++)
            if (s->inputs[k] == v && r >= i)
                return 0;
    }
    return 1;
}

/* Inference fusion for a conv at layer i: fills n->bn_layer, n->sum_src, n->act_layer;
 * returns the last layer the node absorbs. */
static int fuse_conv(bf_plan *p, const use_info *use, bf_node *n, int i)
{
    const bf_layer_spec *r;
    int last = i, j;
    if (p->params.training)
        return i;
    j = single_reader(p, use, last);
    r = j >= 0 ? bf_model_layer(p->model, j) : NULL;
    if (r && r->type == BF_LAYER_BATCHNORM) {
        n->bn_layer = j;
        last = j;
        j = single_reader(p, use, last);
        r = j >= 0 ? bf_model_layer(p->model, j) : NULL;
    }
    if (r && r->type == BF_LAYER_ADD) {
        int other = r->inputs[0] == last ? r->inputs[1] : r->inputs[0];
        int ov = p->layer_value[other];
        if (other < i && ov >= 0 && use[other].last == j && !p->values[ov].external &&
            !p->values[ov].cut && read_before(p, other, i, j)) {
            n->sum_src = ov;
            last = j;
            j = single_reader(p, use, last);
            r = j >= 0 ? bf_model_layer(p->model, j) : NULL;
        }
    }
    if (r && bf_layer_row_of(r->type)->act != BF_ACT_NONE) {
        n->act_layer = j;
        last = j;
    }
    return last;
}

/* Inference fusion of the layers that follow layer i into its node (a conv absorbs a
 * batch-norm, a residual add and an activation; a batch-norm a ReLU, the one activation
 * oneDNN fuses into it); returns the last layer the node absorbs. */
static int fuse(bf_plan *p, const use_info *use, bf_node *n, int i)
{
    const bf_layer_spec *s = bf_model_layer(p->model, i), *r;
    int j;
    if (s->type == BF_LAYER_CONV || s->type == BF_LAYER_DECONV)
        return fuse_conv(p, use, n, i);
    if (s->type != BF_LAYER_BATCHNORM || p->params.training)
        return i;
    j = single_reader(p, use, i);
    r = j >= 0 ? bf_model_layer(p->model, j) : NULL;
    if (!r || r->type != BF_LAYER_RELU)
        return i;
    n->act_layer = j;
    return j;
}

static bf_status build_node(bf_plan *p, const use_info *use, int i, int *absorbed_to)
{
    const bf_layer_spec *s = bf_model_layer(p->model, i);
    const bf_layer_row *row = bf_layer_row_of(s->type);
    bf_node proto, *n = &proto;
    bf_status st = BF_STATUS_OK;
    int last;
    bf_node_init(n, i);
    n->n_src = s->n_inputs;
    for (int k = 0; k < s->n_inputs; k++) {
        n->src[k] = p->layer_value[s->inputs[k]];
        if (n->src[k] < 0)
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): input not computed", i,
                            s->name);
    }
    if (!row->fwd)
        return bf_error(BF_STATUS_UNSUPPORTED, "layer %d: type %s cannot be planned", i,
                        bf_layer_type_str(s->type));
    for (int k = 0; k < s->n_inputs && !row->flat_ok; k++) {
        int nd = 0;
        dnnl_memory_desc_query(p->values[n->src[k]].md, dnnl_query_ndims_s32, &nd);
        if (nd != 4)
            return bf_error(BF_STATUS_UNSUPPORTED, "layer %d (%s): a %s reading the (N, C) "
                            "output of a linear layer is not supported (only activations, "
                            "add, softmax, linear and the quantizer are)", i, s->name,
                            row->name);
    }
    last = fuse(p, use, n, i);
    st = row->fwd(p, n);
    if (st != BF_STATUS_OK)
        return bf_error(st, "layer %d (%s): %s", i, s->name, bf_last_error());
    /* the op pushed its node last, after any reorders of its sources */
    p->layer_value[last] = p->nodes[p->n_nodes - 1].dst;
    *absorbed_to = last;
    return BF_STATUS_OK;
}

/* ---- memory planning ------------------------------------------------------------------ */

typedef struct block {
    size_t offset, size;
    int live; /* values using it that are still alive */
} block;

#define ALIGN(x) (((x) + 63) & ~(size_t)63)

/* Assigns arena offsets: in inference a buffer is reused after its last reader ran. */
static bf_status plan_memory(bf_plan *p)
{
    int nv = p->n_values, nb = 0;
    block *blocks = calloc((size_t)nv + 1, sizeof *blocks);
    int *vblock = calloc((size_t)nv + 1, sizeof *vblock);
    bf_status st = BF_STATUS_OK;
    if (!blocks || !vblock) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    for (int v = 0; v < nv; v++)
        p->values[v].last_use = p->values[v].producer;
    for (int k = 0; k < p->n_nodes; k++) {
        bf_node *n = &p->nodes[k];
        for (int s = 0; s < n->n_src; s++)
            p->values[n->src[s]].last_use = k;
        if (n->sum_src >= 0)
            p->values[n->sum_src].last_use = k;
    }
    p->arena_size = 0;
    for (int k = -1; k < p->n_nodes; k++) {
        for (int v = 0; v < nv; v++) {
            bf_value *val = &p->values[v];
            int b = -1;
            if (val->producer != k || val->external)
                continue;
            if (val->alias >= 0) {
                b = vblock[val->alias];
            } else if (!p->params.training) {
                for (int c = 0; c < nb; c++)
                    if (!blocks[c].live && blocks[c].size >= val->size &&
                        (b < 0 || blocks[c].size < blocks[b].size))
                        b = c;
            }
            if (b < 0) {
                b = nb++;
                blocks[b].offset = p->arena_size;
                blocks[b].size = ALIGN(val->size);
                p->arena_size += blocks[b].size;
            }
            blocks[b].live++;
            vblock[v] = b;
        }
        for (int v = 0; v < nv; v++) /* free after this node's readers */
            if (!p->values[v].external && p->values[v].last_use == k &&
                v != p->dst_value && p->values[v].producer <= k)
                blocks[vblock[v]].live--;
    }
    p->arena = aligned_alloc(64, p->arena_size ? p->arena_size : 64);
    if (!p->arena) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of activations",
                      p->arena_size);
        goto done;
    }
    for (int v = 0; v < nv; v++) {
        if (p->values[v].external)
            continue;
        p->values[v].offset = blocks[vblock[v]].offset;
        DNNL_TRY(dnnl_memory_set_data_handle(p->values[v].mem,
                                             (char *)p->arena + p->values[v].offset));
    }
fail:
done:
    free(blocks);
    free(vblock);
    return st;
}

/* ---- which outputs are scanned for NaN / Inf ------------------------------------------ */

/* Whether the windows of a layer (dilation 1) cover every pixel of its input. */
static int windows_cover(bf_plan *p, int layer)
{
    const bf_layer_spec *s = bf_model_layer(p->model, layer);
    int dilated = bf_layer_row_of(s->type)->keys & BF_KEY_DILATION;
    bf_layer_info info;
    if (bf_model_layer_info(p->model, layer, &info) != BF_STATUS_OK)
        return 0;
    for (int d = 0; d < 2; d++) {
        int in = info.in_dims[1 + d], out = info.out_dims[1 + d];
        /* consecutive windows overlap or touch, from -pad to the last window's end */
        if ((dilated && s->dilation[d] != 1) || s->stride[d] > s->kernel[d] ||
            (out - 1) * s->stride[d] - s->pad[d] + s->kernel[d] < in)
            return 0;
    }
    return 1;
}

/* Whether a NaN or Inf in any source of computing node n surely leaves one in its output:
 * its layer carries it, and so do the layers fused into it (a batch-norm and a sum do, the
 * activation as its row says). */
static int node_carries(bf_plan *p, const bf_node *n)
{
    int c = bf_layer_row_of(bf_model_layer(p->model, n->layer)->type)->carries;
    if (n->act_layer >= 0 &&
        bf_layer_row_of(bf_model_layer(p->model, n->act_layer)->type)->carries != BF_CARRY_ALL)
        return 0;
    return c == BF_CARRY_ALL || (c == BF_CARRY_WINDOW && windows_cover(p, n->layer));
}

/* Whether a NaN or Inf in value v surely reaches a value that is scanned: v has readers and
 * each carries it on, into an output that is scanned or carried on in turn (a reorder
 * copies it).  The plan's destination has no reader, so its producer is scanned. */
static int carried_on(bf_plan *p, int v)
{
    int readers = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        const bf_node *n = &p->nodes[k];
        int reads = n->sum_src == v;
        for (int s = 0; s < n->n_src; s++)
            reads |= n->src[s] == v;
        if (!reads)
            continue;
        readers++;
        if (n->layer < 0 ? !carried_on(p, n->dst) : !node_carries(p, n))
            return 0;
    }
    return readers > 0;
}

/* Inference refuses a NaN or Inf that any layer writes (check_finite), but scanning every
 * output costs a pass over all the activations: only the outputs where a later node could
 * hide one are scanned. */
static void plan_checks(bf_plan *p)
{
    for (int k = 0; k < p->n_nodes; k++) {
        bf_node *n = &p->nodes[k];
        n->check = n->layer >= 0 && !carried_on(p, n->dst);
    }
}

/* ---- bounds: outputs that cannot hold a NaN or Inf -------------------------------------- */

/* A bound at or below this shows an output finite: a sum of terms whose magnitudes add up
 * to at most it stays far below FLT_MAX (3.4e38), whatever the order and rounding of its
 * additions. */
#define BOUND_LIMIT 1e36

void bf_node_affine_bound(bf_node *n, const float *w, const float *b, int64_t rows,
                          int64_t per_row)
{
    double gain = 0, offset = 0;
    for (int64_t r = 0; r < rows; r++) {
        double sum = 0;
        for (int64_t j = 0; j < per_row; j++)
            sum += fabs((double)w[r * per_row + j]);
        gain = bf_bound_max(gain, sum);
        if (b)
            offset = bf_bound_max(offset, fabs((double)b[r]));
    }
    n->gain = gain;
    n->offset = offset;
}

/* A bound on |output| of `layer` (computed by node n) from bounds b[0..nb) on its inputs, by
 * its row's rule; INFINITY where nothing is known or the bound, or a sum on the way to it,
 * passes BOUND_LIMIT. */
static double layer_bound(bf_plan *p, const bf_node *n, int layer, const double *b, int nb)
{
    const bf_layer_spec *s = bf_model_layer(p->model, layer);
    double max = 0, sum = 0, prod = 1, out, inner;
    bf_layer_info info;
    for (int k = 0; k < nb; k++) {
        if (!(b[k] <= BOUND_LIMIT))
            return INFINITY;
        max = b[k] > max ? b[k] : max;
        sum += b[k];
        prod *= b[k];
    }
    inner = max;
    switch (bf_layer_row_of(s->type)->bound) {
    case BF_BOUND_AFFINE: /* the node's own layer: its load set gain and offset */
        out = inner = layer == n->layer ? n->gain * max + n->offset : INFINITY;
        break;
    case BF_BOUND_SAME:
        out = max;
        break;
    case BF_BOUND_MEAN: /* a window holds at most the input's H * W values */
        if (bf_model_layer_info(p->model, layer, &info) != BF_STATUS_OK)
            return INFINITY;
        out = max;
        inner = max * info.in_dims[1] * info.in_dims[2];
        break;
    case BF_BOUND_SUM:
        out = inner = sum;
        break;
    case BF_BOUND_PRODUCT:
        out = inner = prod;
        break;
    case BF_BOUND_ONE:
        out = 1;
        break;
    case BF_BOUND_RELU6:
        out = max < 6 ? max : 6;
        break;
    case BF_BOUND_CLIP:
        out = fmax(fabs(s->alpha), fabs(s->beta));
        out = max < out ? max : out;
        break;
    case BF_BOUND_SCALED:
        out = inner = max * fmax(1.0, fabs(s->alpha));
        break;
    default:
        return INFINITY;
    }
    return out <= BOUND_LIMIT && inner <= BOUND_LIMIT ? out : INFINITY;
}

/* A bound on |output| of node n from the bounds of its sources: its layer, then the sum
 * post-op, then the activation (a folded batch-norm is in a conv's gain). */
static double node_bound(bf_plan *p, const bf_node *n)
{
    double b[BF_MAX_INPUTS], out;
    if (n->layer < 0) /* a reorder copies */
        return p->bounds[n->src[0]];
    for (int k = 0; k < n->n_src; k++)
        b[k] = p->bounds[n->src[k]];
    out = layer_bound(p, n, n->layer, b, n->n_src);
    if (n->sum_src >= 0)
        out += p->bounds[n->sum_src];
    if (n->act_layer >= 0)
        out = layer_bound(p, n, n->act_layer, &out, 1);
    return out <= BOUND_LIMIT ? out : INFINITY;
}

/* ---- create / destroy --------------------------------------------------------------- */

bf_plan_params bf_plan_default_params(void)
{
    bf_plan_params pp = {BF_PART_HEAD, BF_PART_TAIL, 1, 0, 0};
    return pp;
}

static bf_status plan_range(bf_plan *p)
{
    const bf_plan_params *pp = &p->params;
    int first = -1, last = -1, f, l;
    for (int part = pp->part_begin; part <= (int)pp->part_end; part++) {
        bf_model_part_range(p->model, (bf_part)part, &f, &l);
        if (f < 0)
            continue;
        if (first < 0)
            first = f;
        last = l;
    }
    if (first < 0)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "parts %s..%s have no layers",
                        bf_part_str(pp->part_begin), bf_part_str(pp->part_end));
    for (int part = pp->part_begin; part <= (int)pp->part_end; part++) {
        bf_load_what w = bf_model_loaded(p->model);
        if ((w == BF_LOAD_MOBILE && part > BF_PART_REDUCE) ||
            (w == BF_LOAD_CLOUD && part < BF_PART_RESTORE))
            return bf_error(BF_STATUS_INVALID_ARGUMENT,
                            "the %s part's weights are not loaded (the model was loaded as "
                            "the %s half)", bf_part_str((bf_part)part),
                            w == BF_LOAD_MOBILE ? "mobile" : "cloud");
    }
    p->first_layer = first;
    p->last_layer = last;
    return BF_STATUS_OK;
}

/* The output of `layer` as a plan that starts after it takes it: plain (N, C, H, W) at the
 * plan's batch, uint8 after a quantizer, else f32.  The caller destroys *md. */
static bf_status source_md(bf_plan *p, int layer, dnnl_memory_desc_t *md, int64_t dims[4])
{
    bf_layer_info info;
    const bf_layer_spec *s = bf_model_layer(p->model, layer);
    bf_model_layer_info(p->model, layer, &info);
    dims[0] = p->params.batch;
    for (int d = 0; d < 3; d++)
        dims[d + 1] = info.out_dims[d];
    return bf_md_plain(md, 4, dims, s->type == BF_LAYER_QUANTIZE ? dnnl_u8 : dnnl_f32);
}

/* Adds the external source value (the caller's array) and the io descriptors. */
static bf_status plan_source(bf_plan *p)
{
    const bf_layer_spec *s = bf_model_layer(p->model, p->first_layer - 1);
    dnnl_memory_desc_t md = NULL;
    int64_t dims[4];
    bf_status st;
    st = source_md(p, p->first_layer - 1, &md, dims);
    if (st != BF_STATUS_OK)
        return st;
    p->io[0].dtype = s->type == BF_LAYER_QUANTIZE ? BF_U8 : BF_F32;
    p->io[0].quantized = p->io[0].dtype == BF_U8;
    p->io[0].ndims = 4;
    memcpy(p->io[0].dims, dims, sizeof dims);
    p->src_value = bf_plan_add_value(p, md);
    dnnl_memory_desc_destroy(md);
    if (p->src_value < 0)
        return BF_STATUS_OUT_OF_MEMORY;
    p->values[p->src_value].external = 1;
    p->values[p->src_value].producer = -1;
    p->layer_value[p->first_layer - 1] = p->src_value;
    return BF_STATUS_OK;
}

/* Ends a part inside the plan at `layer`: its output becomes, in the layout of a plan
 * source (an exact reorder if it is not already plain), the value the next part reads, and
 * no later node fuses into it.  The next part so compiles to the primitives of a plan that
 * starts there: a fused plan would pick other kernels past the cut (a sum post-op makes a
 * conv write in its shortcut's layout), which sum in another order. */
static bf_status plan_cut(bf_plan *p, int layer)
{
    dnnl_memory_desc_t md = NULL, flat = NULL;
    const dnnl_dims_t *vd;
    dnnl_data_type_t dt;
    int64_t dims[4], fdims[DNNL_MAX_NDIMS];
    int v = p->layer_value[layer], nd, c;
    bf_status st = BF_STATUS_OK;
    BF_TRY(source_md(p, layer, &md, dims));
    DNNL_TRY(dnnl_memory_desc_query(p->values[v].md, dnnl_query_ndims_s32, &nd));
    if (nd == 4) {
        c = bf_plan_value_as(p, v, md);
    } else { /* (N, C) after a linear layer: plain, the same bytes as (N, C, 1, 1) */
        DNNL_TRY(dnnl_memory_desc_query(p->values[v].md, dnnl_query_dims, &vd));
        DNNL_TRY(dnnl_memory_desc_query(p->values[v].md, dnnl_query_data_type, &dt));
        for (int d = 0; d < nd; d++)
            fdims[d] = (*vd)[d];
        BF_TRY(bf_md_plain(&flat, nd, fdims, dt));
        v = bf_plan_value_as(p, v, flat);
        c = v < 0 ? -1 : bf_plan_add_value(p, md);
        if (c >= 0)
            p->values[c].alias = v;
        v = c; /* no layout conversions through the flat value: it has other dims */
    }
    if (c < 0) {
        st = BF_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    p->values[c].cut = 1;
    if (c != v)
        p->values[c].copy_of = v;
    p->layer_value[layer] = c;
fail:
    dnnl_memory_desc_destroy(md);
    dnnl_memory_desc_destroy(flat);
    return st;
}

/* Removes the plain copies made at cuts that no node reads (every reader of the next part
 * wanted another layout and converted the value before the cut): nothing else refers to
 * them, as they are made last in their part. */
static void drop_unread_cuts(bf_plan *p)
{
    for (int k = p->n_nodes - 1; k >= 0; k--) {
        bf_node *n = &p->nodes[k];
        int c = n->dst, read = c == p->dst_value;
        if (n->layer >= 0 || c < 0 || p->values[c].copy_of < 0)
            continue;
        for (int j = k + 1; j < p->n_nodes && !read; j++)
            for (int s = 0; s < p->nodes[j].n_src; s++)
                read |= p->nodes[j].src[s] == c || p->nodes[j].sum_src == c;
        if (read)
            continue;
        dnnl_primitive_destroy(n->prim);
        dnnl_primitive_desc_destroy(n->pd);
        memmove(n, n + 1, (size_t)(p->n_nodes - k - 1) * sizeof *n);
        p->n_nodes--;
        for (int v = 0; v < p->n_values; v++)
            if (p->values[v].producer > k)
                p->values[v].producer--;
        p->values[c].external = 1; /* produced by nothing: it gets no memory */
        p->values[c].producer = -1;
    }
}

/* Compiles layers [first, last] into nodes: fusion and reader counts stay inside them. */
static bf_status plan_segment(bf_plan *p, use_info *use, int first, int last)
{
    bf_status st = BF_STATUS_OK;
    p->seg_first = first;
    p->seg_last = last;
    count_uses(p, use);
    for (int i = first; i <= last; i++) {
        int end = i;
        BF_TRY(build_node(p, use, i, &end));
        i = end > i ? end : i; /* layers absorbed up to end have no value of their own */
    }
    if (last < p->last_layer)
        BF_TRY(plan_cut(p, last));
fail:
    return st;
}

/* Adds the final copy into the caller's destination array. */
static bf_status plan_dest(bf_plan *p)
{
    int v = p->layer_value[p->last_layer], nd;
    const bf_value *val = &p->values[v];
    dnnl_memory_desc_t md = NULL;
    dnnl_data_type_t dt;
    int64_t dims[4] = {1, 1, 1, 1};
    const dnnl_dims_t *vd;
    bf_status st = BF_STATUS_OK;
    DNNL_TRY(dnnl_memory_desc_query(val->md, dnnl_query_ndims_s32, &nd));
    DNNL_TRY(dnnl_memory_desc_query(val->md, dnnl_query_data_type, &dt));
    DNNL_TRY(dnnl_memory_desc_query(val->md, dnnl_query_dims, &vd));
    for (int d = 0; d < nd; d++)
        dims[d] = (*vd)[d];
    BF_TRY(bf_md_plain(&md, nd, dims, dt));
    p->dst_value = bf_plan_value_as(p, v, md);
    if (p->dst_value == v) /* already plain: copy anyway so the caller's buffer is written */
        p->dst_value = add_reorder(p, v, md);
    if (p->dst_value < 0)
        goto oom;
    p->values[p->dst_value].external = 1;
    p->io[1].dtype = dt == dnnl_u8 ? BF_U8 : BF_F32;
    p->io[1].quantized = p->io[1].dtype == BF_U8;
    p->io[1].ndims = 4;
    memcpy(p->io[1].dims, dims, sizeof dims);
    dnnl_memory_desc_destroy(md);
    return BF_STATUS_OK;
oom:
    st = BF_STATUS_OUT_OF_MEMORY;
fail:
    dnnl_memory_desc_destroy(md);
    return st;
}

static bf_status load_params(bf_plan *p)
{
    for (int k = 0; k < p->n_nodes; k++) {
        bf_node *n = &p->nodes[k];
        if (n->load) {
            bf_status st = n->load(p, n);
            if (st != BF_STATUS_OK)
                return st;
        }
    }
    p->loaded_version = bf_model_version(p->model);
    return BF_STATUS_OK;
}

bf_status bf_plan_create(bf_plan **out, bf_model *model, const bf_plan_params *params)
{
    bf_plan *p = NULL;
    use_info *use = NULL;
    bf_status st = BF_STATUS_OK;
    int nl;

    if (!out || !model || !params)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_plan_create: NULL argument");
    *out = NULL;
    if (params->batch < 1 || params->batch > (1 << 16))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "batch %d out of range [1, 65536]",
                        params->batch);
    if (params->part_begin < 0 || params->part_end >= BF_PART_COUNT_ ||
        params->part_begin > params->part_end)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bad part range %d..%d",
                        (int)params->part_begin, (int)params->part_end);
    nl = bf_model_num_layers(model);
    p = calloc(1, sizeof *p);
    use = calloc((size_t)nl, sizeof *use);
    if (!p || !use) {
        free(use);
        free(p);
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    p->model = model;
    p->params = *params;
    p->layer_value = malloc((size_t)nl * sizeof *p->layer_value);
    p->qrange = calloc(2 * (size_t)params->batch, sizeof(float));
    if (!p->layer_value || !p->qrange) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    for (int i = 0; i < nl; i++)
        p->layer_value[i] = -1;
    BF_TRY(bf_dnnl_engine(&p->engine));
    DNNL_TRY(dnnl_stream_create(&p->stream, p->engine, dnnl_stream_default_flags));
    BF_TRY(plan_range(p));
    BF_TRY(plan_source(p));
    if (params->training) { /* no fusion to keep within a part */
        BF_TRY(plan_segment(p, use, p->first_layer, p->last_layer));
    } else {
        for (int part = params->part_begin; part <= (int)params->part_end; part++) {
            int f, l;
            bf_model_part_range(model, (bf_part)part, &f, &l);
            if (f >= 0)
                BF_TRY(plan_segment(p, use, f, l));
        }
    }
    BF_TRY(plan_dest(p));
    drop_unread_cuts(p);
    if (!params->training) {
        plan_checks(p);
        if (!(p->bounds = malloc((size_t)p->n_values * sizeof *p->bounds))) {
            st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
            goto fail;
        }
    }
    BF_TRY(plan_memory(p));
    BF_TRY(load_params(p));
    if (params->training)
        BF_TRY(bf_plan_build_backward(p));
    free(use);
    *out = p;
    return BF_STATUS_OK;
fail:
    free(use);
    bf_plan_destroy(p);
    return st;
}

void bf_plan_destroy(bf_plan *p)
{
    if (!p)
        return;
    bf_plan_destroy_training(p);
    for (int k = 0; k < p->n_nodes; k++) {
        bf_node *n = &p->nodes[k];
        dnnl_primitive_destroy(n->prim);
        dnnl_primitive_desc_destroy(n->pd);
        for (int m = 0; m < BF_NODE_MEMS; m++)
            dnnl_memory_destroy(n->mem[m]);
        free(n->priv);
    }
    for (int v = 0; v < p->n_values; v++) {
        dnnl_memory_destroy(p->values[v].mem);
        dnnl_memory_destroy(p->values[v].diff);
        dnnl_memory_desc_destroy(p->values[v].md);
    }
    if (p->stream)
        dnnl_stream_destroy(p->stream);
    free(p->nodes);
    free(p->values);
    free(p->layer_value);
    free(p->qrange);
    free(p->bounds);
    free(p->arena);
    free(p);
}

bf_status bf_plan_io(const bf_plan *p, int which, bf_io_desc *out)
{
    if (!p || !out || which < 0 || which > 1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_plan_io: bad argument");
    *out = p->io[which];
    return BF_STATUS_OK;
}

/* ---- execution ------------------------------------------------------------------------ */

static bf_status check_ranges(const float *r, int n)
{
    for (int i = 0; i < n; i++)
        if (!bf_range_ok(r[2 * i], r[2 * i + 1]))
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "sample %d: quantization range (%g, %g) "
                            "must be finite, min <= max, max - min finite", i, r[2 * i],
                            r[2 * i + 1]);
    return BF_STATUS_OK;
}

/* Inference refuses what it cannot compute: every value a layer writes must be finite.
 * Checked after each node, before the arena reuses its buffer: a later ReLU maps NaN to 0,
 * max-pooling drops -Inf, so an overflow inside the network can end in finite but
 * meaningless logits.  (Values inside one fused primitive are not seen.)  Reorders only
 * copy, the quantizer checks its own input, and training checks its loss instead.  Only the
 * nodes marked by plan_checks are scanned: a NaN or Inf in the others' outputs surely
 * reaches one of theirs (the error then names that later layer); and of these only those
 * whose bound (node_bound) does not show them finite. */
static bf_status check_finite(bf_plan *p, const bf_node *n)
{
    const bf_value *v = &p->values[n->dst];
    double max;
    dnnl_data_type_t dt;
    void *h = NULL;
    if (!n->check || p->bounds[n->dst] <= BOUND_LIMIT ||
        dnnl_memory_desc_query(v->md, dnnl_query_data_type, &dt) != dnnl_success ||
        dt != dnnl_f32 || dnnl_memory_get_data_handle(v->mem, &h) != dnnl_success || h == NULL)
        return BF_STATUS_OK;
    p->scans++;
    /* the scan measures the largest magnitude: the bounds after it start from that */
    max = bf_max_abs(h, dnnl_memory_desc_get_size(v->md) / sizeof(float));
    if (!isinf(max)) {
        p->bounds[n->dst] = max <= BOUND_LIMIT ? max : INFINITY;
        return BF_STATUS_OK;
    }
    const bf_layer_spec *s = bf_model_layer(p->model, n->layer);
    return bf_error(BF_STATUS_NUMERIC, "layer %d (%s) computed NaN or Inf: the input%s is "
                    "outside what this network can compute in float32", n->layer, s->name,
                    p->io[0].quantized ? " or its quantization range" : "");
}

bf_status bf_node_exec(bf_plan *p, bf_node *n)
{
    bf_status st = BF_STATUS_OK;
    if (n->run)
        BF_TRY(n->run(p, n));
    else
        DNNL_TRY(dnnl_primitive_execute(n->prim, p->stream, n->nargs, n->args));
    if (n->after)
        BF_TRY(n->after(p, n));
fail:
    return st;
}

int bf_plan_scans(const bf_plan *p) { return p ? p->scans : 0; }

bf_status bf_plan_forward(bf_plan *p, const void *src, const float *src_range, void *dst,
                          float *dst_range)
{
    bf_status st = BF_STATUS_OK;
    double src_bound;
    if (!p || !src || !dst)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_plan_forward: NULL argument");
    p->fwd_done = 0; /* until this forward succeeds: nothing for backward */
    if (p->io[0].quantized) {
        if (!src_range)
            return bf_error(BF_STATUS_INVALID_ARGUMENT, "a quantized source needs its ranges");
        BF_TRY(check_ranges(src_range, p->params.batch));
    }
    src_bound = p->io[0].quantized
                    ? bf_max_abs(src_range, 2 * (size_t)p->params.batch)
                    : bf_max_abs(src, (size_t)(p->io[0].dims[0] * p->io[0].dims[1] *
                                               p->io[0].dims[2] * p->io[0].dims[3]));
    if (!p->io[0].quantized && isinf(src_bound))
        return bf_error(BF_STATUS_NUMERIC, "the input holds NaN or Inf");
    if (p->io[1].quantized && !dst_range)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "a quantized destination needs ranges");
    if (p->loaded_version != bf_model_version(p->model))
        BF_TRY(load_params(p));
    p->user_src_range = src_range;
    p->user_dst_range = dst_range;
    void *run_src = (void *)src, *run_dst = dst;
    if (p->params.training) { /* backward reads both: they must outlive the caller's */
        memcpy(p->fwd_src, src, dnnl_memory_desc_get_size(p->values[p->src_value].md));
        run_src = p->fwd_src, run_dst = p->fwd_dst;
    }
    DNNL_TRY(dnnl_memory_set_data_handle(p->values[p->src_value].mem, run_src));
    DNNL_TRY(dnnl_memory_set_data_handle(p->values[p->dst_value].mem, run_dst));
    for (int v = 0; !p->params.training && v < p->n_values; v++)
        p->bounds[v] = v == p->src_value ? src_bound : INFINITY;
    p->scans = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        bf_node *n = &p->nodes[k];
        BF_TRY(bf_node_exec(p, n));
        if (!p->params.training) { /* training checks its loss instead */
            p->bounds[n->dst] = node_bound(p, n);
            BF_TRY(check_finite(p, n));
        }
    }
    DNNL_TRY(dnnl_stream_wait(p->stream));
    if (run_dst != dst)
        memcpy(dst, run_dst, dnnl_memory_desc_get_size(p->values[p->dst_value].md));
    if (p->io[1].quantized)
        memcpy(dst_range, p->qrange, 2 * (size_t)p->params.batch * sizeof(float));
    p->fwd_done = 1;
fail:
    return st;
}
