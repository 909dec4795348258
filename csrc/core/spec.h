/* Layer-spec helpers shared by the model, the plan compilers (oneDNN, OpenCL) and tests;
 * and the small checks the core, the wire and the serving code share. */
#ifndef BF_CORE_SPEC_H
#define BF_CORE_SPEC_H

#include <math.h>
#include <msgpack.h>
#include <stdio.h>

#include "butterfly.h"

typedef struct bf_param {
    const char *name; /* static: the op family's name for it */
    int ndims;
    int64_t dims[4];
    float *data; /* owned by the model; NULL if its half was not loaded */
} bf_param;

void bf_spec_defaults(bf_layer_spec *s);
int bf_spec_type_from_str(const char *s, size_t n, bf_layer_type *out);
int bf_spec_part_from_str(const char *s, size_t n, bf_part *out);
/* Fills the names and shapes (data = NULL) of the params a layer must have; returns how
 * many.  Needs the layer's inferred info (for input channels). */
int bf_spec_expected_params(const bf_layer_spec *s, const bf_layer_info *info,
                            bf_param out[BF_MAX_PARAMS]);
/* Validates the whole list (inputs, parts, butterfly structure) and infers every layer's
 * shapes, parameter counts and MACs. */
bf_status bf_spec_infer(const bf_layer_spec *layers, int n, bf_layer_info *info);
/* Shape inference of one layer from its inputs' info (in[k] for each of its inputs); the
 * rules of its row in the table of layer types, and the checks every layer shares. */
bf_status bf_layer_infer_one(const bf_layer_spec *s, int index, const bf_layer_info *const in[],
                             bf_layer_info *out);
/* Writes the canonical msgpack map of a layer (only the keys its type uses). */
void bf_spec_pack(msgpack_packer *pk, const bf_layer_spec *s);
/* FNV-1a 64 of the canonical serialization of the list. */
uint64_t bf_spec_hash(const bf_layer_spec *layers, int n);
uint64_t bf_fnv1a(uint64_t h, const void *data, size_t len);
#define BF_FNV_OFFSET 0xcbf29ce484222325ULL
/* s[0..n) is a model hash as bf_model_hash writes it: 16 lowercase hex digits. */
static inline int bf_is_model_hash(const char *s, size_t n)
{
    if (n != 16)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* (min, max) is a usable quantization range: finite, min <= max, and max - min finite too
 * (dequantizing computes min + q * (max - min) / 255). */
static inline int bf_range_ok(float min, float max)
{
    return isfinite(min) && isfinite(max) && min <= max && isfinite(max - min);
}

/* 1 when x[0..n) holds no NaN or Inf (in parallel: inputs can be large). */
int bf_all_finite(const float *x, size_t n);
/* The largest |x[i]| of x[0..n) (0 when n is 0), INFINITY when one is NaN or Inf; one pass,
 * as bf_all_finite. */
double bf_max_abs(const float *x, size_t n);

/* Opens path for reading ("rb") without blocking on a FIFO that has no writer: a
 * directory, with regular_only anything else that is not a regular file (a device, a pipe),
 * and a pipe that stays empty and open for BF_PIPE_WAIT_MS give NULL and BF_STATUS_IO with
 * the reason.  A model file is read whole, by its size: regular only; a key may come
 * through a pipe (another program's output). */
#define BF_PIPE_WAIT_MS 5000
FILE *bf_fopen_read(const char *path, int regular_only);

#endif
