/* Layer specs: names, defaults, validation, shape inference, canonical serialization. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/layers.h"
#include "core/spec.h"

static const char *const part_names[BF_PART_COUNT_] = {"head", "reduce", "restore", "tail"};

const char *bf_layer_type_str(bf_layer_type t)
{
    const bf_layer_row *row = bf_layer_row_of(t);
    return row ? row->name : "?";
}

bf_status bf_layer_type_traits(bf_layer_type t, bf_layer_traits *out)
{
    const bf_layer_row *row = bf_layer_row_of(t);
    if (!row || !out)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "no layer type %d", (int)t);
    out->n_inputs = row->n_inputs;
    out->activation = row->act != BF_ACT_NONE;
    out->flat_ok = row->flat_ok;
    out->out_u8 = row->out_u8;
    return BF_STATUS_OK;
}

const char *bf_part_str(bf_part p) { return (p >= 0 && p < BF_PART_COUNT_) ? part_names[p] : "?"; }

static int match(const char *const *names, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], s, len))
            return i;
    return -1;
}

int bf_spec_type_from_str(const char *s, size_t n, bf_layer_type *out)
{
    for (int t = 0; t < BF_LAYER_TYPE_COUNT_; t++) {
        const char *name = bf_layer_row_of((bf_layer_type)t)->name;
        if (strlen(name) == n && !memcmp(name, s, n)) {
            *out = (bf_layer_type)t;
            return 0;
        }
    }
    return -1;
}

int bf_spec_part_from_str(const char *s, size_t n, bf_part *out)
{
    int i = match(part_names, BF_PART_COUNT_, s, n);
    if (i < 0)
        return -1;
    *out = (bf_part)i;
    return 0;
}

void bf_spec_defaults(bf_layer_spec *s)
{
    memset(s, 0, sizeof *s);
    s->part = BF_PART_HEAD;
    s->kernel[0] = s->kernel[1] = 1;
    s->stride[0] = s->stride[1] = 1;
    s->dilation[0] = s->dilation[1] = 1;
    s->groups = 1;
    s->eps = 1e-5f;
    s->momentum = 0.1f;
    s->scale = 1;
}

int bf_spec_expected_params(const bf_layer_spec *s, const bf_layer_info *info,
                            bf_param out[BF_MAX_PARAMS])
{
    const bf_layer_row *row = bf_layer_row_of(s->type);
    return row && row->params ? row->params(s, info, out) : 0;
}

#define BAD(...) return bf_error(BF_STATUS_BAD_MODEL, __VA_ARGS__)

static bf_status check_parts(const bf_layer_spec *L, int n)
{
    int last_of_part[BF_PART_COUNT_];
    int quant = -1, dequant = -1;
    for (int p = 0; p < BF_PART_COUNT_; p++)
        last_of_part[p] = -1;
    for (int i = 0; i < n; i++) {
        const bf_layer_spec *s = &L[i];
        if ((s->type == BF_LAYER_INPUT) != (i == 0))
            BAD("layer %d (%s): exactly the first layer must be the input", i, s->name);
        if (i > 0 && s->part < L[i - 1].part)
            BAD("layer %d (%s): parts must come in the order head, reduce, restore, tail", i,
                s->name);
        for (int k = 0; k < s->n_inputs; k++) {
            int j = s->inputs[k], boundary = -1;
            if (L[j].part == s->part)
                continue;
            for (int p = 0; p < (int)s->part; p++)
                if (last_of_part[p] > boundary)
                    boundary = last_of_part[p];
            if (j != boundary)
                BAD("layer %d (%s): its input %d (%s) is inside an earlier part; only the last "
                    "layer of the previous part may cross a split", i, s->name, j, L[j].name);
        }
        if (s->type == BF_LAYER_QUANTIZE) {
            if (s->part != BF_PART_REDUCE || quant >= 0)
                BAD("layer %d: one quantize layer, at the end of the reduce part", i);
            quant = i;
        }
        if (s->type == BF_LAYER_DEQUANTIZE) {
            if (s->part != BF_PART_RESTORE || dequant >= 0 || s->inputs[0] != quant)
                BAD("layer %d: one dequantize layer, first in restore, fed by the quantize", i);
            dequant = i;
        }
        last_of_part[s->part] = i;
    }
    if ((last_of_part[BF_PART_REDUCE] >= 0) != (last_of_part[BF_PART_RESTORE] >= 0))
        BAD("a reduce part needs a restore part and vice versa");
    if (last_of_part[BF_PART_REDUCE] >= 0 && quant != last_of_part[BF_PART_REDUCE])
        BAD("the reduce part must end with a quantize layer");
    if (last_of_part[BF_PART_RESTORE] >= 0 &&
        (dequant < 0 || L[dequant - 1].part != BF_PART_REDUCE))
        BAD("the restore part must start with a dequantize layer");
    return BF_STATUS_OK;
}

static bf_status inputs_error(const bf_layer_spec *s, int i)
{
    int want = bf_layer_row_of(s->type)->n_inputs;
    if (want == BF_INPUTS_MANY)
        BAD("layer %d (%s): %s takes 2 to %d inputs, not %d", i, s->name,
            bf_layer_type_str(s->type), BF_MAX_INPUTS, s->n_inputs);
    BAD("layer %d (%s): %s takes %d input(s), not %d", i, s->name, bf_layer_type_str(s->type),
        want, s->n_inputs);
}

static bf_status infer_one(const bf_layer_spec *L, int i, bf_layer_info *info)
{
    const bf_layer_spec *s = &L[i];
    const bf_layer_info *in[BF_MAX_INPUTS] = {NULL};
    if (!bf_layer_inputs_ok(s))
        return inputs_error(s, i);
    for (int k = 0; k < s->n_inputs; k++)
        in[k] = &info[s->inputs[k]];
    return bf_layer_infer_one(s, i, in, &info[i]);
}

bf_status bf_layer_infer_one(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                             bf_layer_info *o)
{
    const bf_layer_row *row = bf_layer_row_of(s->type);
    int *out = o->out_dims;
    bf_status st;
    memset(o, 0, sizeof *o);
    if (s->type == BF_LAYER_INPUT) {
        memcpy(o->in_dims, s->shape, sizeof s->shape);
        memcpy(out, s->shape, sizeof s->shape);
        o->out_bytes = (int64_t)out[0] * out[1] * out[2] * 4;
        return BF_STATUS_OK;
    }
    memcpy(o->in_dims, in[0]->out_dims, sizeof o->in_dims);
    memcpy(out, o->in_dims, sizeof o->out_dims);
    if (row->infer && (st = row->infer(s, index, in, o)) != BF_STATUS_OK)
        return st;
    if (out[0] < 1 || out[1] < 1 || out[2] < 1)
        BAD("layer %d (%s): output shape %dx%dx%d is empty (input %dx%dx%d)", index, s->name,
            out[0], out[1], out[2], o->in_dims[0], o->in_dims[1], o->in_dims[2]);
    if ((int64_t)out[0] * out[1] * out[2] > ((int64_t)1 << 31) / 4)
        BAD("layer %d (%s): output too large", index, s->name);
    o->out_bytes = (int64_t)out[0] * out[1] * out[2] * (row->out_u8 ? 1 : 4);
    return BF_STATUS_OK;
}

bf_status bf_layer_infer(const bf_layer_spec *s, int index, const int in_dims[][3],
                         bf_layer_info *info, bf_param_view params[BF_MAX_PARAMS],
                         int *n_params)
{
    bf_layer_info in_info[BF_MAX_INPUTS];
    const bf_layer_info *in[BF_MAX_INPUTS] = {NULL};
    const bf_layer_row *row = s ? bf_layer_row_of(s->type) : NULL;
    bf_param expect[BF_MAX_PARAMS];
    bf_status st;
    if (!row || !info || !params || !n_params || (s->n_inputs && !in_dims))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_layer_infer: NULL argument or bad "
                        "layer type");
    if (!bf_layer_inputs_ok(s))
        return inputs_error(s, index);
    for (int k = 0; k < s->n_inputs; k++) {
        memset(&in_info[k], 0, sizeof in_info[k]);
        for (int d = 0; d < 3; d++) {
            if (in_dims[k][d] < 1)
                return bf_error(BF_STATUS_INVALID_ARGUMENT, "layer %d (%s): input %d has an "
                                "empty shape", index, s->name, k);
            in_info[k].out_dims[d] = in_dims[k][d];
        }
        in[k] = &in_info[k];
    }
    st = bf_layer_infer_one(s, index, in, info);
    if (st != BF_STATUS_OK)
        return st;
    *n_params = bf_spec_expected_params(s, info, expect);
    for (int k = 0; k < *n_params; k++) {
        params[k].name = expect[k].name;
        params[k].ndims = expect[k].ndims;
        memcpy(params[k].dims, expect[k].dims, sizeof params[k].dims);
        params[k].data = NULL;
    }
    return BF_STATUS_OK;
}

bf_status bf_spec_infer(const bf_layer_spec *L, int n, bf_layer_info *info)
{
    bf_status st = check_parts(L, n);
    for (int i = 0; st == BF_STATUS_OK && i < n; i++)
        st = infer_one(L, i, info);
    return st;
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

static void pack_pair(msgpack_packer *pk, const char *k, const int v[2])
{
    pack_key(pk, k);
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, v[0]);
    msgpack_pack_int(pk, v[1]);
}

static void pack_bool(msgpack_packer *pk, int v)
{
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void bf_spec_pack(msgpack_packer *pk, const bf_layer_spec *s)
{
    unsigned keys = bf_layer_row_of(s->type)->keys;
    int pad_end = (keys & BF_KEY_WINDOW) && memcmp(s->pad_end, s->pad, sizeof s->pad);
    int n = 5 + !!(keys & BF_KEY_SHAPE) + 2 * !!(keys & BF_KEY_OUT_CHANNELS) +
            3 * !!(keys & BF_KEY_WINDOW) + pad_end + 2 * !!(keys & BF_KEY_DILATION) +
            !!(keys & BF_KEY_OUTPUT_PAD) + 2 * !!(keys & BF_KEY_NORM) +
            !!(keys & BF_KEY_SCALE) + !!(keys & BF_KEY_ALPHA) + !!(keys & BF_KEY_BETA);
    msgpack_pack_map(pk, (size_t)n);
    pack_key(pk, "type");
    pack_key(pk, bf_layer_type_str(s->type));
    pack_key(pk, "name");
    pack_key(pk, s->name);
    pack_key(pk, "part");
    pack_key(pk, bf_part_str(s->part));
    pack_key(pk, "inputs");
    msgpack_pack_array(pk, (size_t)s->n_inputs);
    for (int k = 0; k < s->n_inputs; k++)
        msgpack_pack_int(pk, s->inputs[k]);
    pack_key(pk, "frozen");
    pack_bool(pk, s->frozen);
    if (keys & BF_KEY_SHAPE) {
        pack_key(pk, "shape");
        msgpack_pack_array(pk, 3);
        for (int k = 0; k < 3; k++)
            msgpack_pack_int(pk, s->shape[k]);
    }
    if (keys & BF_KEY_OUT_CHANNELS) {
        pack_key(pk, "out_channels");
        msgpack_pack_int(pk, s->out_channels);
        pack_key(pk, "bias");
        pack_bool(pk, s->has_bias);
    }
    if (keys & BF_KEY_WINDOW) {
        pack_pair(pk, "kernel", s->kernel);
        pack_pair(pk, "stride", s->stride);
        pack_pair(pk, "pad", s->pad);
    }
    if (pad_end)
        pack_pair(pk, "pad_end", s->pad_end);
    if (keys & BF_KEY_DILATION) {
        pack_pair(pk, "dilation", s->dilation);
        pack_key(pk, "groups");
        msgpack_pack_int(pk, s->groups);
    }
    if (keys & BF_KEY_OUTPUT_PAD)
        pack_pair(pk, "output_pad", s->output_pad);
    if (keys & BF_KEY_NORM) {
        pack_key(pk, "eps");
        msgpack_pack_float(pk, s->eps);
        pack_key(pk, "momentum");
        msgpack_pack_float(pk, s->momentum);
    }
    if (keys & BF_KEY_SCALE) {
        pack_key(pk, "scale");
        msgpack_pack_int(pk, s->scale);
    }
    if (keys & BF_KEY_ALPHA) {
        pack_key(pk, "alpha");
        msgpack_pack_float(pk, s->alpha);
    }
    if (keys & BF_KEY_BETA) {
        pack_key(pk, "beta");
        msgpack_pack_float(pk, s->beta);
    }
}

bf_status bf_layer_spec_serialize(const bf_layer_spec *s, void **buf, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    if (!s || !buf || !len || !bf_layer_row_of(s->type))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_layer_spec_serialize: bad argument");
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bf_spec_pack(&pk, s);
    if (!sb.data) {
        msgpack_sbuffer_destroy(&sb);
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    *buf = sb.data; /* the sbuffer's malloc'ed block moves to the caller */
    *len = sb.size;
    return BF_STATUS_OK;
}

uint64_t bf_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t bf_spec_hash(const bf_layer_spec *L, int n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint64_t h = BF_FNV_OFFSET;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int i = 0; i < n; i++)
        bf_spec_pack(&pk, &L[i]);
    h = bf_fnv1a(h, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return h;
}

/* The largest |x[i]|'s bits: |x| as an unsigned integer orders as |x| does, and a NaN or
 * Inf (all exponent bits set) lies above every finite float (0x7f7fffff).  Integers, which
 * the compiler vectorizes (isfinite() and fabsf() on floats it does not). */
static uint32_t max_abs_bits(const float *x, size_t n)
{
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        u &= 0x7fffffffu;
        m = u > m ? u : m;
    }
    return m;
}

static uint32_t max_abs_bits_parallel(const float *x, size_t n)
{
    /* threads only where the scan is long enough to pay for waking them */
    enum { CHUNK = 1 << 16 };
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    uint32_t m = 0;
    if (nchunks <= 4)
        return max_abs_bits(x, n);
#pragma omp parallel for reduction(max : m) schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t lo = c * CHUNK;
        uint32_t mc = max_abs_bits(x + lo, n - lo < CHUNK ? n - lo : CHUNK);
        m = mc > m ? mc : m;
    }
    return m;
}

int bf_all_finite(const float *x, size_t n) { return max_abs_bits_parallel(x, n) <= 0x7f7fffffu; }

double bf_max_abs(const float *x, size_t n)
{
    uint32_t m = max_abs_bits_parallel(x, n);
    float f;
    if (m > 0x7f7fffffu)
        return INFINITY;
    memcpy(&f, &m, sizeof f);
    return f;
}

/* Waits until a pipe has data or its writer has closed it, up to BF_PIPE_WAIT_MS; 0 when
 * it may be read without blocking for ever. */
static int pipe_ready(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int rc;
    do
        rc = poll(&pfd, 1, BF_PIPE_WAIT_MS);
    while (rc < 0 && errno == EINTR);
    return rc > 0 ? 0 : -1;
}

FILE *bf_fopen_read(const char *path, int regular_only)
{
    struct stat sb;
    FILE *f = NULL;
    /* non-blocking: opening a FIFO for reading otherwise blocks until a writer appears,
     * before any check could run */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), flags;
    if (fd < 0) {
        bf_error(BF_STATUS_IO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &sb) != 0)
        bf_error(BF_STATUS_IO, "cannot stat '%s': %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        bf_error(BF_STATUS_IO, "'%s' is a directory", path);
    else if (regular_only && !S_ISREG(sb.st_mode))
        bf_error(BF_STATUS_IO, "'%s' is not a regular file", path);
    else if (S_ISFIFO(sb.st_mode) && pipe_ready(fd) < 0)
        bf_error(BF_STATUS_IO, "'%s' is a pipe that nothing wrote to within %d s (is its "
                 "writer running?)", path, BF_PIPE_WAIT_MS / 1000);
    else if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
             (f = fdopen(fd, "rb")) == NULL)
        bf_error(BF_STATUS_IO, "cannot open '%s': %s", path, strerror(errno));
    else
        return f;
    close(fd);
    return NULL;
}
