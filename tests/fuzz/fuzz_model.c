/* libFuzzer harness for the model file reader: any bytes into bf_model_load_buffer, as a
 * whole and as each half.  Must never crash, leak or read out of bounds; a model that
 * loads must answer every accessor within its own bounds, hold metadata that is one
 * msgpack object, and save to bytes that load again with the same hash. */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "butterfly.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bf_model *m)
{
    int n = bf_model_num_layers(m);
    if (n < 1)
        abort(); /* a model loaded without layers */
    volatile float sink = 0.0f;
    for (int i = 0; i < n; i++) {
        bf_layer_info info;
        if (bf_model_layer_info(m, i, &info) != BF_STATUS_OK)
            abort();
        for (int k = 0; k < bf_model_num_params(m, i); k++) {
            bf_param_view v;
            if (bf_model_param(m, i, k, &v) != BF_STATUS_OK || v.ndims < 1 || v.ndims > 4)
                abort();
            int64_t elems = 1;
            for (int d = 0; d < v.ndims; d++)
                elems *= v.dims[d];
            if (v.data && elems > 0) /* touch the first and the last weight */
                sink += v.data[0] + v.data[elems - 1];
        }
    }
    (void)sink;
    /* the metadata, kept as the user's, is one whole msgpack object (what set_meta takes) */
    size_t meta_len = 0;
    const void *meta = bf_model_meta(m, &meta_len);
    if (meta != NULL) {
        msgpack_unpacked up;
        size_t off = 0;
        msgpack_unpacked_init(&up);
        if (msgpack_unpack_next(&up, meta, meta_len, &off) != MSGPACK_UNPACK_SUCCESS ||
            off != meta_len)
            abort();
        msgpack_unpacked_destroy(&up);
    }
    void *buf = NULL;
    size_t len = 0;
    bf_model *again = NULL;
    char h1[17], h2[17];
    if (bf_model_save_buffer(m, &buf, &len) != BF_STATUS_OK)
        abort();
    if (bf_model_load_buffer(&again, buf, len, bf_model_loaded(m)) != BF_STATUS_OK)
        abort(); /* what we wrote must read back */
    bf_model_hash(m, h1);
    bf_model_hash(again, h2);
    if (strcmp(h1, h2) != 0 || bf_model_num_layers(again) != n)
        abort();
    bf_model_destroy(again);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const bf_load_what whats[3] = {BF_LOAD_ALL, BF_LOAD_MOBILE, BF_LOAD_CLOUD};
    for (int w = 0; w < 3; w++) {
        bf_model *m = NULL;
        if (bf_model_load_buffer(&m, data, size, whats[w]) == BF_STATUS_OK)
            check(m);
        else if (m != NULL)
            abort(); /* a failed load hands nothing back */
        bf_model_destroy(m);
    }
    return 0;
}
