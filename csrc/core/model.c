/* bf_model: parsing and writing the msgpack model description, shape inference, hashing. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "butterfly.h"
#include "core/mpobj.h"
#include "core/layers.h"
#include "core/spec.h"

#define MODEL_FORMAT "butterfly-model"
#define MAX_LAYERS 100000
#define MAX_DIM (1 << 20)
#define MAX_PARAM_ELEMS ((int64_t)1 << 31)

typedef bf_param param;

struct bf_model {
    int n_layers;
    bf_layer_spec *layers;
    bf_layer_info *info;
    int *n_params;
    param (*params)[BF_MAX_PARAMS];
    void *meta;
    size_t meta_len;
    bf_load_what loaded;
    uint64_t version;
    char hash[17];
    int hash_dirty; /* weights changed since the hash was computed */
};

static void refresh_hash(bf_model *m);

#define BF_MODEL_MAX_DEPTH 32 /* msgpack nesting in a model file (its meta is the user's) */

/* ---- small msgpack readers ---------------------------------------------------------- */

static int obj_float(const msgpack_object *o, float *out)
{
    double v;
    if (!bf_mp_number(o, &v))
        return 0;
    *out = (float)v;
    return isfinite(*out);
}

/* Reads an optional int field in [lo, hi]; absent keeps *out. */
static bf_status get_int(const msgpack_object *map, const char *key, int lo, int hi, int *out,
                         int layer)
{
    const msgpack_object *o = bf_mp_map_get(map, key);
    int64_t v;
    if (!o)
        return BF_STATUS_OK;
    if (o->type == MSGPACK_OBJECT_BOOLEAN)
        v = o->via.boolean;
    else if (!bf_mp_int(o, &v))
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d: '%s' must be an integer", layer, key);
    if (v < lo || v > hi)
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d: '%s' = %lld out of range [%d, %d]",
                        layer, key, (long long)v, lo, hi);
    *out = (int)v;
    return BF_STATUS_OK;
}

/* Reads an optional [a, b] pair (or a single int meaning [a, a]). */
static bf_status get_pair(const msgpack_object *map, const char *key, int lo, int hi, int out[2],
                          int layer)
{
    const msgpack_object *o = bf_mp_map_get(map, key);
    int64_t v[2];
    if (!o)
        return BF_STATUS_OK;
    if (bf_mp_int(o, &v[0])) {
        v[1] = v[0];
    } else if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 2 &&
               bf_mp_int(&o->via.array.ptr[0], &v[0]) && bf_mp_int(&o->via.array.ptr[1], &v[1])) {
    } else {
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d: '%s' must be an int or [int, int]",
                        layer, key);
    }
    for (int i = 0; i < 2; i++) {
        if (v[i] < lo || v[i] > hi)
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d: '%s' out of range [%d, %d]", layer,
                            key, lo, hi);
        out[i] = (int)v[i];
    }
    return BF_STATUS_OK;
}

static bf_status get_float(const msgpack_object *map, const char *key, float lo, float hi,
                           float *out, int layer)
{
    const msgpack_object *o = bf_mp_map_get(map, key);
    float v;
    if (!o)
        return BF_STATUS_OK;
    if (!obj_float(o, &v) || v < lo || v > hi)
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d: '%s' must be a number in [%g, %g]",
                        layer, key, lo, hi);
    *out = v;
    return BF_STATUS_OK;
}

/* ---- layer specs ------------------------------------------------------------------- */

#define TRY(expr)                                                                          \
    do {                                                                                   \
        bf_status st_ = (expr);                                                            \
        if (st_ != BF_STATUS_OK)                                                           \
            return st_;                                                                    \
    } while (0)

static bf_status parse_layer(const msgpack_object *o, int index, bf_layer_spec *s)
{
    const msgpack_object *t, *name, *part, *inputs;
    if (o->type != MSGPACK_OBJECT_MAP)
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d is not a map", index);
    bf_spec_defaults(s);
    t = bf_mp_map_get(o, "type");
    if (!t || t->type != MSGPACK_OBJECT_STR ||
        bf_spec_type_from_str(t->via.str.ptr, t->via.str.size, &s->type) != 0)
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d: missing or unknown 'type'", index);
    name = bf_mp_map_get(o, "name");
    if (name) {
        if (name->type != MSGPACK_OBJECT_STR || name->via.str.size >= BF_NAME_MAX)
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d: 'name' must be a string of < %d bytes",
                            index, BF_NAME_MAX);
        memcpy(s->name, name->via.str.ptr, name->via.str.size);
        s->name[name->via.str.size] = 0;
    } else {
        snprintf(s->name, BF_NAME_MAX, "%s%d", bf_layer_type_str(s->type), index);
    }
    part = bf_mp_map_get(o, "part");
    if (part && (part->type != MSGPACK_OBJECT_STR ||
                 bf_spec_part_from_str(part->via.str.ptr, part->via.str.size, &s->part) != 0))
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d: 'part' must be head/reduce/restore/tail",
                        index);
    inputs = bf_mp_map_get(o, "inputs");
    if (inputs) {
        if (inputs->type != MSGPACK_OBJECT_ARRAY || inputs->via.array.size > BF_MAX_INPUTS)
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d: 'inputs' must be a list of <= %d "
                            "ints", index, BF_MAX_INPUTS);
        s->n_inputs = (int)inputs->via.array.size;
        for (int i = 0; i < s->n_inputs; i++) {
            int64_t v;
            if (!bf_mp_int(&inputs->via.array.ptr[i], &v) || v < 0 || v >= index)
                return bf_error(BF_STATUS_BAD_MODEL,
                                "layer %d: input %d must index an earlier layer", index, i);
            s->inputs[i] = (int)v;
        }
    } else if (index > 0) {
        s->n_inputs = 1;
        s->inputs[0] = index - 1;
    }
    TRY(get_int(o, "out_channels", 1, MAX_DIM, &s->out_channels, index));
    TRY(get_pair(o, "kernel", 1, 1024, s->kernel, index));
    TRY(get_pair(o, "stride", 1, 1024, s->stride, index));
    TRY(get_pair(o, "pad", 0, 1024, s->pad, index));
    memcpy(s->pad_end, s->pad, sizeof s->pad);
    TRY(get_pair(o, "pad_end", 0, 1024, s->pad_end, index));
    TRY(get_pair(o, "dilation", 1, 1024, s->dilation, index));
    TRY(get_pair(o, "output_pad", 0, 1024, s->output_pad, index));
    TRY(get_int(o, "groups", 1, MAX_DIM, &s->groups, index));
    TRY(get_int(o, "bias", 0, 1, &s->has_bias, index));
    TRY(get_int(o, "scale", 1, 64, &s->scale, index));
    TRY(get_int(o, "frozen", 0, 1, &s->frozen, index));
    TRY(get_float(o, "eps", 1e-12f, 1.0f, &s->eps, index));
    TRY(get_float(o, "momentum", 0.0f, 1.0f, &s->momentum, index));
    if (bf_layer_row_of(s->type)->keys & BF_KEY_ALPHA) {
        if (!bf_mp_map_get(o, "alpha"))
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d: %s needs 'alpha'", index,
                            bf_layer_type_str(s->type));
        TRY(get_float(o, "alpha", -FLT_MAX, FLT_MAX, &s->alpha, index));
    }
    if (bf_layer_row_of(s->type)->keys & BF_KEY_BETA) {
        if (!bf_mp_map_get(o, "beta"))
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d: %s needs 'beta'", index,
                            bf_layer_type_str(s->type));
        TRY(get_float(o, "beta", -FLT_MAX, FLT_MAX, &s->beta, index));
    }
    if (s->type == BF_LAYER_INPUT) {
        const msgpack_object *sh = bf_mp_map_get(o, "shape");
        int64_t v;
        if (!sh || sh->type != MSGPACK_OBJECT_ARRAY || sh->via.array.size != 3)
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d: input needs 'shape': [C, H, W]",
                            index);
        for (int i = 0; i < 3; i++) {
            if (!bf_mp_int(&sh->via.array.ptr[i], &v) || v < 1 || v > MAX_DIM)
                return bf_error(BF_STATUS_BAD_MODEL, "layer %d: bad input shape", index);
            s->shape[i] = (int)v;
        }
    }
    return BF_STATUS_OK;
}

bf_status bf_layer_spec_parse(bf_layer_spec *out, const void *buf, size_t len, int index)
{
    msgpack_unpacked msg;
    size_t off = 0;
    bf_status st;
    if (!out || (!buf && len) || index < 0 || index >= MAX_LAYERS)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_layer_spec_parse: NULL argument or "
                        "index outside [0, %d)", MAX_LAYERS);
    if (bf_mp_scan(buf, len, BF_MODEL_MAX_DEPTH, 0, &off) < 0 || off != len)
        return bf_error(BF_STATUS_BAD_MODEL, "layer spec is not one valid msgpack object");
    off = 0;
    msgpack_unpacked_init(&msg);
    if (msgpack_unpack_next(&msg, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        st = bf_error(BF_STATUS_BAD_MODEL, "layer spec is not valid msgpack");
    else
        st = parse_layer(&msg.data, index, out);
    msgpack_unpacked_destroy(&msg);
    return st;
}

/* ---- params ------------------------------------------------------------------------ */

static int64_t numel(const param *p)
{
    int64_t n = 1;
    for (int i = 0; i < p->ndims; i++)
        n *= p->dims[i];
    return n;
}

/* Reads layer `li`'s param list; copies data if `keep`.  Accumulates the hash of the data
 * bytes into *h (FNV-1a), and reports whether every param had data. */
static bf_status parse_params(bf_model *m, int li, const msgpack_object *list, int keep,
                              uint64_t *h, int *all_data)
{
    param expect[BF_MAX_PARAMS];
    int n = bf_spec_expected_params(&m->layers[li], &m->info[li], expect);
    if (list->type != MSGPACK_OBJECT_ARRAY || (int)list->via.array.size != n)
        return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): expected %d parameter tensors", li,
                        m->layers[li].name, n);
    m->n_params[li] = n;
    for (int k = 0; k < n; k++) {
        const msgpack_object *po = &list->via.array.ptr[k], *nm, *shape, *data;
        param *p = &m->params[li][k];
        *p = expect[k];
        nm = bf_mp_map_get(po, "name");
        shape = bf_mp_map_get(po, "shape");
        data = bf_mp_map_get(po, "data");
        if (!nm || !bf_mp_key_is(nm, p->name))
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): parameter %d must be '%s'", li,
                            m->layers[li].name, k, p->name);
        if (!shape || shape->type != MSGPACK_OBJECT_ARRAY ||
            (int)shape->via.array.size != p->ndims)
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): '%s' has the wrong rank", li,
                            m->layers[li].name, p->name);
        for (int d = 0; d < p->ndims; d++) {
            int64_t v;
            if (!bf_mp_int(&shape->via.array.ptr[d], &v) || v != p->dims[d])
                return bf_error(BF_STATUS_BAD_MODEL,
                                "layer %d (%s): '%s' dim %d is not %lld", li, m->layers[li].name,
                                p->name, d, (long long)p->dims[d]);
        }
        if (!data) {
            *all_data = 0;
            if (keep)
                return bf_error(BF_STATUS_BAD_MODEL,
                                "layer %d (%s): the file holds no weights for '%s' (it is a "
                                "half model; load the other half)", li, m->layers[li].name,
                                p->name);
            continue;
        }
        if (data->type != MSGPACK_OBJECT_BIN ||
            (int64_t)data->via.bin.size != numel(p) * (int64_t)sizeof(float))
            return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): '%s' data must be %lld bytes",
                            li, m->layers[li].name, p->name,
                            (long long)(numel(p) * (int64_t)sizeof(float)));
        *h = bf_fnv1a(*h, data->via.bin.ptr, data->via.bin.size);
        if (keep) {
            p->data = malloc((size_t)numel(p) * sizeof(float) + 1);
            if (!p->data)
                return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory for layer %d weights",
                                li);
            memcpy(p->data, data->via.bin.ptr, data->via.bin.size);
            if (!bf_all_finite(p->data, (size_t)numel(p)))
                return bf_error(BF_STATUS_BAD_MODEL, "layer %d (%s): '%s' holds a NaN or Inf",
                                li, m->layers[li].name, p->name);
        }
    }
    return BF_STATUS_OK;
}

static int keep_part(bf_load_what what, bf_part part)
{
    if (what == BF_LOAD_MOBILE)
        return part <= BF_PART_REDUCE;
    if (what == BF_LOAD_CLOUD)
        return part >= BF_PART_RESTORE;
    return 1;
}

/* ---- load --------------------------------------------------------------------------- */

static bf_status parse_model(bf_model *m, const msgpack_object *root, bf_load_what what)
{
    const msgpack_object *fmt, *ver, *layers, *params, *meta, *hash;
    int64_t v;
    uint64_t h;
    int all_data = 1;
    bf_status st;

    if (root->type != MSGPACK_OBJECT_MAP)
        return bf_error(BF_STATUS_BAD_MODEL, "model description is not a msgpack map");
    fmt = bf_mp_map_get(root, "format");
    if (!fmt || !bf_mp_key_is(fmt, MODEL_FORMAT))
        return bf_error(BF_STATUS_BAD_MODEL, "not a butterfly model (no format '%s')",
                        MODEL_FORMAT);
    ver = bf_mp_map_get(root, "version");
    if (!ver || !bf_mp_int(ver, &v) || v != BF_MODEL_FORMAT_VERSION)
        return bf_error(BF_STATUS_BAD_MODEL, "unsupported model format version (want %d)",
                        BF_MODEL_FORMAT_VERSION);
    layers = bf_mp_map_get(root, "layers");
    params = bf_mp_map_get(root, "params");
    if (!layers || layers->type != MSGPACK_OBJECT_ARRAY || layers->via.array.size == 0 ||
        layers->via.array.size > MAX_LAYERS)
        return bf_error(BF_STATUS_BAD_MODEL, "'layers' must be a non-empty list");
    if (!params || params->type != MSGPACK_OBJECT_ARRAY ||
        params->via.array.size != layers->via.array.size)
        return bf_error(BF_STATUS_BAD_MODEL, "'params' must have one list per layer");
    m->n_layers = (int)layers->via.array.size;
    m->layers = calloc((size_t)m->n_layers, sizeof *m->layers);
    m->info = calloc((size_t)m->n_layers, sizeof *m->info);
    m->n_params = calloc((size_t)m->n_layers, sizeof *m->n_params);
    m->params = calloc((size_t)m->n_layers, sizeof *m->params);
    if (!m->layers || !m->info || !m->n_params || !m->params)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory for %d layers", m->n_layers);
    for (int i = 0; i < m->n_layers; i++)
        TRY(parse_layer(&layers->via.array.ptr[i], i, &m->layers[i]));
    TRY(bf_spec_infer(m->layers, m->n_layers, m->info));
    m->loaded = what;
    h = bf_spec_hash(m->layers, m->n_layers);
    for (int i = 0; i < m->n_layers; i++) {
        st = parse_params(m, i, &params->via.array.ptr[i], keep_part(what, m->layers[i].part),
                          &h, &all_data);
        if (st != BF_STATUS_OK)
            return st;
    }
    hash = bf_mp_map_get(root, "hash");
    if (all_data) {
        snprintf(m->hash, sizeof m->hash, "%016llx", (unsigned long long)h);
    } else if (hash && hash->type == MSGPACK_OBJECT_STR && hash->via.str.size == 16) {
        if (!bf_is_model_hash(hash->via.str.ptr, 16))
            return bf_error(BF_STATUS_BAD_MODEL, "'hash' must be 16 lowercase hex digits");
        memcpy(m->hash, hash->via.str.ptr, 16);
        m->hash[16] = 0;
    } else {
        return bf_error(BF_STATUS_BAD_MODEL, "half model file without its 'hash'");
    }
    meta = bf_mp_map_get(root, "meta");
    if (meta) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (msgpack_pack_object(&pk, *meta) != 0) {
            msgpack_sbuffer_destroy(&sb);
            return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory copying meta");
        }
        m->meta = sb.data; /* ownership moves to the model */
        m->meta_len = sb.size;
    }
    return BF_STATUS_OK;
}

bf_status bf_model_load_buffer(bf_model **out, const void *buf, size_t len, bf_load_what what)
{
    msgpack_unpacked msg;
    size_t off = 0;
    bf_model *m = NULL;
    bf_status st;
    msgpack_unpack_return ret;

    if (!out || (!buf && len))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_model_load_buffer: NULL argument");
    *out = NULL;
    if (what != BF_LOAD_ALL && what != BF_LOAD_MOBILE && what != BF_LOAD_CLOUD)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bad load selector %d", (int)what);
    /* a few hostile bytes can declare containers of billions of elements, which msgpack-c
     * would allocate before reading them: the bounds pre-check first */
    if (bf_mp_scan(buf, len, BF_MODEL_MAX_DEPTH, 0, &off) < 0)
        return bf_error(BF_STATUS_BAD_MODEL, "model is not valid msgpack (empty, truncated, "
                        "nested over %d deep, or a container larger than the file)",
                        BF_MODEL_MAX_DEPTH);
    if (off != len)
        return bf_error(BF_STATUS_BAD_MODEL, "%zu trailing bytes after the model", len - off);
    off = 0;
    msgpack_unpacked_init(&msg);
    ret = msgpack_unpack_next(&msg, buf, len, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&msg);
        return bf_error(BF_STATUS_BAD_MODEL, "model is not valid msgpack (%s)",
                        ret == MSGPACK_UNPACK_CONTINUE ? "truncated" : "corrupt");
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    st = parse_model(m, &msg.data, what);
    if (st != BF_STATUS_OK)
        goto fail;
    if (off != len) {
        st = bf_error(BF_STATUS_BAD_MODEL, "%zu trailing bytes after the model", len - off);
        goto fail;
    }
    msgpack_unpacked_destroy(&msg);
    m->version = 1;
    *out = m;
    return BF_STATUS_OK;
fail:
    msgpack_unpacked_destroy(&msg);
    bf_model_destroy(m);
    return st;
}

bf_status bf_model_load_file(bf_model **out, const char *path, bf_load_what what)
{
    FILE *f = NULL;
    char *buf = NULL;
    long size;
    bf_status st;

    if (!out || !path)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_model_load_file: NULL argument");
    *out = NULL;
    f = bf_fopen_read(path, 1);
    if (!f)
        return BF_STATUS_IO;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = bf_error(BF_STATUS_IO, "cannot read '%s': %s", path, strerror(errno));
        goto done;
    }
    buf = malloc((size_t)size + 1);
    if (!buf) {
        st = bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory reading '%s'", path);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        st = bf_error(BF_STATUS_IO, "short read on '%s'", path);
        goto done;
    }
    st = bf_model_load_buffer(out, buf, (size_t)size, what);
    if (st != BF_STATUS_OK)
        bf_error(st, "'%s': %s", path, bf_last_error());
done:
    free(buf);
    fclose(f);
    return st;
}

void bf_model_destroy(bf_model *m)
{
    if (!m)
        return;
    for (int i = 0; m->params && i < m->n_layers; i++)
        for (int k = 0; k < BF_MAX_PARAMS; k++)
            free(m->params[i][k].data);
    free(m->params);
    free(m->n_params);
    free(m->info);
    free(m->layers);
    free(m->meta);
    free(m);
}

/* ---- save --------------------------------------------------------------------------- */

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

bf_status bf_model_save_buffer(const bf_model *m, void **buf, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    if (!m || !buf || !len)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_model_save_buffer: NULL argument");
    /* the reader refuses such a file: refuse to write it (training that diverged) */
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->n_params[i]; k++)
            if (m->params[i][k].data &&
                !bf_all_finite(m->params[i][k].data, (size_t)numel(&m->params[i][k])))
                return bf_error(BF_STATUS_NUMERIC, "layer %d (%s): '%s' holds a NaN or Inf, "
                                "not saved (did training diverge?)", i, m->layers[i].name,
                                m->params[i][k].name);
    refresh_hash((bf_model *)m); /* the hash is a cache: refreshing it is not a change */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, m->meta ? 6 : 5);
    pack_cstr(&pk, "format");
    pack_cstr(&pk, MODEL_FORMAT);
    pack_cstr(&pk, "version");
    msgpack_pack_int(&pk, BF_MODEL_FORMAT_VERSION);
    pack_cstr(&pk, "hash");
    pack_cstr(&pk, m->hash);
    pack_cstr(&pk, "layers");
    msgpack_pack_array(&pk, (size_t)m->n_layers);
    for (int i = 0; i < m->n_layers; i++)
        bf_spec_pack(&pk, &m->layers[i]);
    pack_cstr(&pk, "params");
    msgpack_pack_array(&pk, (size_t)m->n_layers);
    for (int i = 0; i < m->n_layers; i++) {
        msgpack_pack_array(&pk, (size_t)m->n_params[i]);
        for (int k = 0; k < m->n_params[i]; k++) {
            const param *p = &m->params[i][k];
            msgpack_pack_map(&pk, p->data ? 3 : 2);
            pack_cstr(&pk, "name");
            pack_cstr(&pk, p->name);
            pack_cstr(&pk, "shape");
            msgpack_pack_array(&pk, (size_t)p->ndims);
            for (int d = 0; d < p->ndims; d++)
                msgpack_pack_int64(&pk, p->dims[d]);
            if (p->data) {
                pack_cstr(&pk, "data");
                msgpack_pack_bin_with_body(&pk, p->data, (size_t)numel(p) * sizeof(float));
            }
        }
    }
    if (m->meta) {
        pack_cstr(&pk, "meta");
        msgpack_sbuffer_write(&sb, m->meta, m->meta_len);
    }
    if (!sb.data) {
        msgpack_sbuffer_destroy(&sb);
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory serializing the model");
    }
    *buf = sb.data;
    *len = sb.size;
    return BF_STATUS_OK;
}

bf_status bf_model_save_file(const bf_model *m, const char *path)
{
    void *buf = NULL;
    size_t len = 0;
    FILE *f;
    char tmp[4096];
    bf_status st;

    if (!path)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_model_save_file: NULL path");
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "path too long");
    st = bf_model_save_buffer(m, &buf, &len);
    if (st != BF_STATUS_OK)
        return st;
    /* write then rename, so a crash never leaves a half-written model under `path` */
    f = fopen(tmp, "wb");
    if (!f) {
        free(buf);
        return bf_error(BF_STATUS_IO, "cannot write '%s': %s", tmp, strerror(errno));
    }
    if (fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        free(buf);
        remove(tmp);
        return bf_error(BF_STATUS_IO, "cannot write '%s': %s", tmp, strerror(errno));
    }
    free(buf);
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return bf_error(BF_STATUS_IO, "cannot rename '%s': %s", tmp, strerror(errno));
    }
    return BF_STATUS_OK;
}

/* ---- accessors ---------------------------------------------------------------------- */

int bf_model_num_layers(const bf_model *m) { return m ? m->n_layers : 0; }

const bf_layer_spec *bf_model_layer(const bf_model *m, int i)
{
    return (m && i >= 0 && i < m->n_layers) ? &m->layers[i] : NULL;
}

bf_status bf_model_layer_info(const bf_model *m, int i, bf_layer_info *info)
{
    if (!m || !info || i < 0 || i >= m->n_layers)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer index %d out of range", i);
    *info = m->info[i];
    return BF_STATUS_OK;
}

int bf_model_num_params(const bf_model *m, int i)
{
    return (m && i >= 0 && i < m->n_layers) ? m->n_params[i] : 0;
}

bf_status bf_model_param(const bf_model *m, int i, int k, bf_param_view *out)
{
    const param *p;
    if (!m || !out || i < 0 || i >= m->n_layers || k < 0 || k >= m->n_params[i])
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "parameter (%d, %d) out of range", i, k);
    p = &m->params[i][k];
    out->name = p->name;
    out->ndims = p->ndims;
    memcpy(out->dims, p->dims, sizeof out->dims);
    out->data = p->data;
    return BF_STATUS_OK;
}

bf_load_what bf_model_loaded(const bf_model *m) { return m->loaded; }

void bf_model_part_range(const bf_model *m, bf_part part, int *first, int *last)
{
    *first = *last = -1;
    for (int i = 0; i < m->n_layers; i++) {
        if (m->layers[i].part != part || m->layers[i].type == BF_LAYER_INPUT)
            continue;
        if (*first < 0)
            *first = i;
        *last = i;
    }
}

const void *bf_model_meta(const bf_model *m, size_t *len)
{
    *len = m->meta_len;
    return m->meta;
}

bf_status bf_model_set_meta(bf_model *m, const void *buf, size_t len)
{
    size_t used = 0;
    void *copy;
    if (!m || (!buf && len))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_model_set_meta: NULL argument");
    /* the check a model file's reader makes, so that what is saved loads again */
    if (len && (bf_mp_scan(buf, len, BF_MODEL_MAX_DEPTH - 1, 0, &used) < 0 || used != len))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "meta must be exactly one msgpack object "
                        "nested at most %d deep", BF_MODEL_MAX_DEPTH - 1);
    copy = len ? malloc(len) : NULL;
    if (len && !copy)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    if (len)
        memcpy(copy, buf, len);
    free(m->meta);
    m->meta = copy;
    m->meta_len = len;
    return BF_STATUS_OK;
}

void bf_model_hash(const bf_model *m, char hex[17])
{
    refresh_hash((bf_model *)m);
    memcpy(hex, m->hash, 17);
}

uint64_t bf_model_version(const bf_model *m) { return m->version; }

void bf_model_touch(bf_model *m)
{
    m->version++;
    /* a half cannot rehash: it keeps the hash of the file it came from */
    m->hash_dirty = m->loaded == BF_LOAD_ALL;
}

static void refresh_hash(bf_model *m)
{
    uint64_t h;
    if (!m->hash_dirty)
        return;
    h = bf_spec_hash(m->layers, m->n_layers);
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->n_params[i]; k++)
            h = bf_fnv1a(h, m->params[i][k].data,
                         (size_t)numel(&m->params[i][k]) * sizeof(float));
    snprintf(m->hash, sizeof m->hash, "%016llx", (unsigned long long)h);
    m->hash_dirty = 0;
}

bf_status bf_model_set_frozen(bf_model *m, int layer, int frozen)
{
    if (!m || layer < 0 || layer >= m->n_layers)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %d out of range", layer);
    m->layers[layer].frozen = frozen != 0;
    m->hash_dirty = m->loaded == BF_LOAD_ALL;
    return BF_STATUS_OK;
}
