/* Layer specs: names, defaults, validation, shape inference, canonical serialization. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/spec.h"

static const char *const type_names[BF_LAYER_TYPE_COUNT_] = {
    "input", "conv",   "deconv", "batchnorm", "relu",     "relu6",      "maxpool", "avgpool",
    "global_avgpool", "add", "linear", "softmax", "quantize", "dequantize", "upsample",
};
static const char *const part_names[BF_PART_COUNT_] = {"head", "reduce", "restore", "tail"};

const char *bf_layer_type_str(bf_layer_type t)
{
    return (t >= 0 && t < BF_LAYER_TYPE_COUNT_) ? type_names[t] : "?";
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
    int i = match(type_names, BF_LAYER_TYPE_COUNT_, s, n);
    if (i < 0)
        return -1;
    *out = (bf_layer_type)i;
    return 0;
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

static void set_param(bf_param *p, const char *name, int ndims, int64_t d0, int64_t d1,
                      int64_t d2, int64_t d3)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndims = ndims;
    p->dims[0] = d0;
    p->dims[1] = d1;
    p->dims[2] = d2;
    p->dims[3] = d3;
}

int bf_spec_expected_params(const bf_layer_spec *s, const bf_layer_info *info,
                            bf_param out[BF_MAX_PARAMS])
{
    int c = info->in_dims[0];
    switch (s->type) {
    case BF_LAYER_CONV:
    case BF_LAYER_DECONV:
        set_param(&out[0], "weight", 4, s->out_channels, c / s->groups, s->kernel[0],
                  s->kernel[1]);
        if (!s->has_bias)
            return 1;
        set_param(&out[1], "bias", 1, s->out_channels, 0, 0, 0);
        return 2;
    case BF_LAYER_BATCHNORM:
        set_param(&out[0], "gamma", 1, c, 0, 0, 0);
        set_param(&out[1], "beta", 1, c, 0, 0, 0);
        set_param(&out[2], "running_mean", 1, c, 0, 0, 0);
        set_param(&out[3], "running_var", 1, c, 0, 0, 0);
        return 4;
    case BF_LAYER_LINEAR:
        set_param(&out[0], "weight", 2, s->out_channels,
                  (int64_t)info->in_dims[0] * info->in_dims[1] * info->in_dims[2], 0, 0);
        if (!s->has_bias)
            return 1;
        set_param(&out[1], "bias", 1, s->out_channels, 0, 0, 0);
        return 2;
    default:
        return 0;
    }
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

static int conv_out(int in, int k, int s, int p, int d)
{
    int span = d * (k - 1) + 1;
    return (in + 2 * p - span) < 0 ? 0 : (in + 2 * p - span) / s + 1;
}

static bf_status infer_one(const bf_layer_spec *L, int i, bf_layer_info *info)
{
    const bf_layer_spec *s = &L[i];
    bf_layer_info *o = &info[i];
    int *in = o->in_dims, *out = o->out_dims;
    int64_t hw;
    if (s->type == BF_LAYER_INPUT) {
        memcpy(in, s->shape, sizeof s->shape);
        memcpy(out, s->shape, sizeof s->shape);
        o->out_bytes = (int64_t)out[0] * out[1] * out[2] * 4;
        return BF_STATUS_OK;
    }
    if (s->n_inputs != (s->type == BF_LAYER_ADD ? 2 : 1))
        BAD("layer %d (%s): %s takes %d input(s)", i, s->name, bf_layer_type_str(s->type),
            s->type == BF_LAYER_ADD ? 2 : 1);
    memcpy(in, info[s->inputs[0]].out_dims, sizeof o->in_dims);
    memcpy(out, in, sizeof o->out_dims);
    switch (s->type) {
    case BF_LAYER_CONV:
    case BF_LAYER_DECONV:
        if (in[0] % s->groups || s->out_channels % s->groups)
            BAD("layer %d (%s): groups %d must divide channels %d -> %d", i, s->name, s->groups,
                in[0], s->out_channels);
        out[0] = s->out_channels;
        for (int d = 0; d < 2; d++) {
            if (s->type == BF_LAYER_CONV) {
                out[1 + d] = conv_out(in[1 + d], s->kernel[d], s->stride[d], s->pad[d],
                                      s->dilation[d]);
            } else {
                if (s->output_pad[d] >= s->stride[d] && s->output_pad[d] >= s->dilation[d])
                    BAD("layer %d (%s): output_pad must be smaller than stride or dilation", i,
                        s->name);
                out[1 + d] = (in[1 + d] - 1) * s->stride[d] - 2 * s->pad[d] +
                             s->dilation[d] * (s->kernel[d] - 1) + 1 + s->output_pad[d];
            }
        }
        hw = (int64_t)(s->type == BF_LAYER_CONV ? out[1] * out[2] : in[1] * in[2]);
        o->macs = hw * s->out_channels * (in[0] / s->groups) * s->kernel[0] * s->kernel[1];
        o->n_params = (int64_t)s->out_channels * (in[0] / s->groups) * s->kernel[0] *
                          s->kernel[1] + (s->has_bias ? s->out_channels : 0);
        break;
    case BF_LAYER_BATCHNORM:
        o->n_params = 4 * (int64_t)in[0];
        break;
    case BF_LAYER_MAXPOOL:
    case BF_LAYER_AVGPOOL:
        for (int d = 0; d < 2; d++) {
            if (2 * s->pad[d] > s->kernel[d])
                BAD("layer %d (%s): pool padding must be at most half the kernel", i, s->name);
            out[1 + d] = conv_out(in[1 + d], s->kernel[d], s->stride[d], s->pad[d], 1);
        }
        break;
    case BF_LAYER_GLOBAL_AVGPOOL:
        out[1] = out[2] = 1;
        break;
    case BF_LAYER_ADD:
        if (memcmp(info[s->inputs[1]].out_dims, in, sizeof o->in_dims))
            BAD("layer %d (%s): add of different shapes", i, s->name);
        break;
    case BF_LAYER_LINEAR:
        out[0] = s->out_channels;
        out[1] = out[2] = 1;
        o->macs = (int64_t)in[0] * in[1] * in[2] * s->out_channels;
        o->n_params = o->macs + (s->has_bias ? s->out_channels : 0);
        break;
    case BF_LAYER_UPSAMPLE:
        out[1] = in[1] * s->scale;
        out[2] = in[2] * s->scale;
        break;
    default:
        break;
    }
    if (out[0] < 1 || out[1] < 1 || out[2] < 1)
        BAD("layer %d (%s): output shape %dx%dx%d is empty (input %dx%dx%d)", i, s->name,
            out[0], out[1], out[2], in[0], in[1], in[2]);
    if ((int64_t)out[0] * out[1] * out[2] > ((int64_t)1 << 31) / 4)
        BAD("layer %d (%s): output too large", i, s->name);
    o->out_bytes = (int64_t)out[0] * out[1] * out[2] * (s->type == BF_LAYER_QUANTIZE ? 1 : 4);
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

void bf_spec_pack(msgpack_packer *pk, const bf_layer_spec *s)
{
    int conv = s->type == BF_LAYER_CONV || s->type == BF_LAYER_DECONV;
    int pool = s->type == BF_LAYER_MAXPOOL || s->type == BF_LAYER_AVGPOOL;
    int n = 5 + (s->type == BF_LAYER_INPUT) + conv * 7 + (s->type == BF_LAYER_DECONV) +
            pool * 3 + (s->type == BF_LAYER_BATCHNORM) * 2 + (s->type == BF_LAYER_LINEAR) * 2 +
            (s->type == BF_LAYER_UPSAMPLE);
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
    if (s->frozen)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (s->type == BF_LAYER_INPUT) {
        pack_key(pk, "shape");
        msgpack_pack_array(pk, 3);
        for (int k = 0; k < 3; k++)
            msgpack_pack_int(pk, s->shape[k]);
    }
    if (conv || s->type == BF_LAYER_LINEAR) {
        pack_key(pk, "out_channels");
        msgpack_pack_int(pk, s->out_channels);
        pack_key(pk, "bias");
        if (s->has_bias)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
    }
    if (conv || pool) {
        pack_pair(pk, "kernel", s->kernel);
        pack_pair(pk, "stride", s->stride);
        pack_pair(pk, "pad", s->pad);
    }
    if (conv) {
        pack_pair(pk, "dilation", s->dilation);
        pack_key(pk, "groups");
        msgpack_pack_int(pk, s->groups);
    }
    if (s->type == BF_LAYER_DECONV)
        pack_pair(pk, "output_pad", s->output_pad);
    if (s->type == BF_LAYER_BATCHNORM) {
        pack_key(pk, "eps");
        msgpack_pack_float(pk, s->eps);
        pack_key(pk, "momentum");
        msgpack_pack_float(pk, s->momentum);
    }
    if (s->type == BF_LAYER_UPSAMPLE) {
        pack_key(pk, "scale");
        msgpack_pack_int(pk, s->scale);
    }
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

int bf_all_finite(const float *x, size_t n)
{
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
    for (size_t i = 0; i < n; i++)
        bad |= !isfinite(x[i]);
    return !bad;
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
