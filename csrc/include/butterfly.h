/*
 * butterfly.h -- the public C API of butterfly, a split-computing engine for CNNs.
 *
 * OVERVIEW
 *
 * A phone runs the first layers of a network (the HEAD) and a small learned REDUCTION unit
 * that shrinks the feature and quantizes it to 8 bits; the payload travels to the cloud,
 * where a RESTORATION unit brings it back to the original shape and the TAIL finishes the
 * network.  Every layer of a model is tagged with one of these four parts, in this order.
 *
 * Objects
 *   bf_model   layer specs + weights + metadata.  Built from a msgpack description
 *              (bf_model_load_buffer) or read from a model file (bf_model_load_file);
 *              written with bf_model_save_file.  Owns its weights.  Shape inference runs
 *              when it is built, so every layer's output shape, parameter count and FLOPs
 *              are known (bf_model_layer_info); bf_layer_infer gives the same for one
 *              layer spec on its own, by the rules of the core's table of layer types.  A model may be loaded as a whole or as one
 *              half (BF_LOAD_MOBILE: head + reduce, BF_LOAD_CLOUD: restore + tail); the
 *              weights of the other half are then not kept.
 *   bf_plan    a compiled, executable range of parts of a model for one batch size, on
 *              oneDNN.  Primitives and all activation memory are created once, by
 *              bf_plan_create, and reused by every bf_plan_forward.  A plan borrows its
 *              model: the model must outlive the plan.  A plan is used by one thread at a
 *              time; different plans may run on different threads at once.
 *
 * Ownership
 *   Everything a *_create / *_load call returns is owned by the caller and released by the
 *   matching *_destroy, which accepts NULL.  Pointers passed into an execute call are
 *   borrowed for the length of that call only.  Views returned by accessors (specs, param
 *   views, strings) stay valid until the owning object is destroyed or modified.
 *
 * Errors
 *   Every fallible call returns a bf_status.  On failure, bf_last_error() returns a
 *   thread-local, human-readable message about the most recent failure on this thread.
 *   No call aborts or exits the process.
 *
 * Tensors
 *   Activations cross the API as dense row-major NCHW float32 arrays.  The quantized
 *   payload (output of the reduce part, input of the restore part) is a dense NCHW uint8
 *   array plus one (min, max) float pair per sample (per-tensor quantization of each image,
 *   so a batch gives the same bytes as its images one at a time):
 *       inv = 255 / (max - min)   (float32; inv = 0 when max == min)
 *       q   = clamp(floor((x - min) * inv + 0.5), 0, 255)
 *       x'  = min + q * ((max - min) / 255)
 *   with min/max the minimum and maximum of the image's values, all in float32.
 *
 * Usage sketch
 *   bf_model *m = NULL; bf_plan *p = NULL;
 *   if (bf_model_load_file(&m, "net.bfly", BF_LOAD_ALL) != BF_STATUS_OK) goto fail;
 *   bf_plan_params pp = bf_plan_default_params();
 *   pp.part_begin = BF_PART_HEAD; pp.part_end = BF_PART_TAIL; pp.batch = 1;
 *   if (bf_plan_create(&p, m, &pp) != BF_STATUS_OK) goto fail;
 *   bf_plan_forward(p, image, NULL, logits, NULL);
 * fail:
 *   fprintf(stderr, "%s\n", bf_last_error());
 *   bf_plan_destroy(p); bf_model_destroy(m);
 */
#ifndef BUTTERFLY_H
#define BUTTERFLY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BF_API __attribute__((visibility("default")))
#else
#define BF_API
#endif

#define BF_VERSION_MAJOR 0
#define BF_VERSION_MINOR 1
#define BF_MODEL_FORMAT_VERSION 1

/* ------------------------------------------------------------------------------------ */
/* Status                                                                               */
/* ------------------------------------------------------------------------------------ */

typedef enum bf_status {
    BF_STATUS_OK = 0,
    BF_STATUS_INVALID_ARGUMENT, /* bad shape, dtype, value or call order */
    BF_STATUS_OUT_OF_MEMORY,
    BF_STATUS_UNSUPPORTED,      /* a valid request this build does not implement */
    BF_STATUS_BAD_MODEL,        /* malformed, truncated or inconsistent model description */
    BF_STATUS_IO,               /* file system error */
    BF_STATUS_BACKEND,          /* oneDNN reported an error */
    BF_STATUS_OPENCL,           /* OpenCL reported an error or is not available */
    BF_STATUS_NETWORK,          /* ZeroMQ reported an error */
    BF_STATUS_PROTOCOL,         /* malformed or incompatible message */
    BF_STATUS_TIMEOUT,
    BF_STATUS_INTERRUPTED,      /* a signal interrupted a blocking call */
    BF_STATUS_BUSY,             /* the server's queue is full */
    BF_STATUS_REFUSED,          /* the server refused the request (model, shape, auth), or
                                   the system a permission (real-time scheduling) */
    BF_STATUS_NUMERIC,          /* NaN or Inf where finite values are required */
    BF_STATUS_COUNT_
} bf_status;

/* Returns a static string naming the status. */
BF_API const char *bf_status_str(bf_status status);
/* Returns the calling thread's message for its most recent failure ("" if none).  The
 * pointer stays valid until the next failing call on this thread. */
BF_API const char *bf_last_error(void);
/* Sets the thread-local error message; returns status (for `return bf_error(...)`). */
BF_API bf_status bf_error(bf_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Number of threads oneDNN and our own loops use on the calling thread (OpenMP). */
BF_API void bf_set_num_threads(int n);
BF_API int bf_get_num_threads(void);

/* ------------------------------------------------------------------------------------ */
/* Layer specs                                                                          */
/* ------------------------------------------------------------------------------------ */

typedef enum bf_part {
    BF_PART_HEAD = 0,    /* mobile */
    BF_PART_REDUCE = 1,  /* mobile: reduction unit, ends with BF_LAYER_QUANTIZE */
    BF_PART_RESTORE = 2, /* cloud: restoration unit, starts with BF_LAYER_DEQUANTIZE */
    BF_PART_TAIL = 3,    /* cloud */
    BF_PART_COUNT_
} bf_part;

typedef enum bf_layer_type {
    BF_LAYER_INPUT = 0,      /* shape (C, H, W); layer 0 and only layer 0 */
    BF_LAYER_CONV,           /* params: weight (O, I/g, kh, kw), bias (O) if has_bias */
    BF_LAYER_DECONV,         /* transposed conv; weight (O, I/g, kh, kw), bias (O) */
    BF_LAYER_BATCHNORM,      /* params: gamma, beta, running_mean, running_var (C each) */
    BF_LAYER_RELU,
    BF_LAYER_RELU6,
    BF_LAYER_MAXPOOL,
    BF_LAYER_AVGPOOL,        /* padding excluded from the average */
    BF_LAYER_GLOBAL_AVGPOOL, /* (C, H, W) -> (C, 1, 1) */
    BF_LAYER_ADD,            /* two inputs of one shape */
    BF_LAYER_LINEAR,         /* flattens its input; params: weight (O, I), bias (O) */
    BF_LAYER_SOFTMAX,        /* over channels */
    BF_LAYER_QUANTIZE,       /* f32 -> uint8 + per-sample (min, max) */
    BF_LAYER_DEQUANTIZE,     /* uint8 + per-sample (min, max) -> f32 */
    BF_LAYER_UPSAMPLE,       /* nearest-neighbour, integer factor `scale` */
    BF_LAYER_SIGMOID,        /* 1 / (1 + exp(-x)) */
    BF_LAYER_SWISH,          /* x * sigmoid(x) (SiLU) */
    BF_LAYER_HARDSWISH,      /* x * clip(x / 6 + 1 / 2, 0, 1) */
    BF_LAYER_HARDSIGMOID,    /* clip(alpha * x + beta, 0, 1) */
    BF_LAYER_CLIP,           /* clip(x, alpha, beta): alpha the min, beta the max */
    BF_LAYER_LEAKY_RELU,     /* x >= 0 ? x : alpha * x */
    BF_LAYER_MUL,            /* two inputs: of one shape, or the second (C, 1, 1) per channel */
    BF_LAYER_CONCAT,         /* 2..BF_MAX_INPUTS inputs of one H, W, joined over channels */
    BF_LAYER_TYPE_COUNT_
} bf_layer_type;

#define BF_NAME_MAX 64
#define BF_MAX_PARAMS 4
#define BF_MAX_INPUTS 32

typedef struct bf_layer_spec {
    bf_layer_type type;
    bf_part part;
    char name[BF_NAME_MAX];
    int n_inputs;      /* 0 for INPUT, 2 for ADD and MUL, 2.. for CONCAT, 1 otherwise */
    int inputs[BF_MAX_INPUTS]; /* indices of earlier layers */
    /* conv / deconv / linear */
    int out_channels;  /* also out_features for LINEAR */
    int kernel[2];     /* kh, kw (conv, deconv, pools) */
    int stride[2];
    int pad[2];        /* padding at the top and left (ph, pw) */
    int pad_end[2];    /* at the bottom and right; equal to pad unless given ("pad_end") */
    int dilation[2];   /* 1 = dense */
    int groups;
    int output_pad[2]; /* deconv only: extra rows/cols at the bottom/right */
    int has_bias;
    /* batch-norm */
    float eps;
    float momentum;    /* running = (1 - momentum) * running + momentum * batch */
    /* upsample */
    int scale;
    /* activations: hardsigmoid's slope and offset, clip's min and max, leaky_relu's slope */
    float alpha, beta;
    /* input */
    int shape[3];      /* C, H, W */
    /* training */
    int frozen;        /* weights not updated by the optimizer */
} bf_layer_spec;

/* What shape inference found for a layer (per image; multiply by the batch). */
typedef struct bf_layer_info {
    int in_dims[3];      /* C, H, W of the first input */
    int out_dims[3];     /* C, H, W of the output */
    int64_t n_params;    /* learnable + running statistics */
    int64_t macs;        /* multiply-accumulates for one image */
    int64_t out_bytes;   /* bytes of the output for one image (uint8 for QUANTIZE) */
} bf_layer_info;

/* A parameter tensor of a layer, owned by the model. */
typedef struct bf_param_view {
    const char *name;    /* "weight", "bias", "gamma", "beta", "running_mean", "running_var" */
    int ndims;
    int64_t dims[4];
    float *data;         /* NULL when the half that holds it was not loaded */
} bf_param_view;

/* Static name of a layer type / part ("conv", "head", ...). */
BF_API const char *bf_layer_type_str(bf_layer_type type);
BF_API const char *bf_part_str(bf_part part);
/* What the core's table of layer types says of a type, for front ends: its number of inputs
 * (-1: 2 to BF_MAX_INPUTS), whether it is an activation, whether it takes a linear layer's
 * flat (N, C) output as its input, whether its output is uint8.  INVALID_ARGUMENT for a
 * value outside the enum. */
typedef struct bf_layer_traits {
    int n_inputs;
    int activation;
    int flat_ok;
    int out_u8;
} bf_layer_traits;
BF_API bf_status bf_layer_type_traits(bf_layer_type type, bf_layer_traits *out);

/* Parses one layer spec -- the msgpack map a model file holds for it -- as layer `index` of
 * a list: its inputs must name earlier layers, and a missing "inputs" means the layer before.
 * Unknown keys are ignored; a key the type does not use keeps its default. */
BF_API bf_status bf_layer_spec_parse(bf_layer_spec *out, const void *buf, size_t len,
                                     int index);
/* The canonical msgpack map of a spec -- only the keys its type uses, the form the model
 * hash covers -- in *buf (caller frees with free()), which bf_layer_spec_parse reads back. */
BF_API bf_status bf_layer_spec_serialize(const bf_layer_spec *spec, void **buf, size_t *len);
/* Shape inference for one layer (layer `index` of its list, for messages), by the core's
 * rules for its type: in_dims[k] is the (C, H, W) output of the spec's input k (n_inputs of
 * them).  Fills *info and
 * params[0..*n_params) with the names and shapes (data NULL) of the parameters the layer
 * must have, in the order a model file lists them.  The checks that need the whole list
 * (parts, the butterfly unit) are made when a model is loaded. */
BF_API bf_status bf_layer_infer(const bf_layer_spec *spec, int index, const int in_dims[][3],
                                bf_layer_info *info, bf_param_view params[BF_MAX_PARAMS],
                                int *n_params);

/* ------------------------------------------------------------------------------------ */
/* Model                                                                                */
/* ------------------------------------------------------------------------------------ */

typedef struct bf_model bf_model;

typedef enum bf_load_what {
    BF_LOAD_ALL = 0,
    BF_LOAD_MOBILE = 1, /* head + reduce weights */
    BF_LOAD_CLOUD = 2,  /* restore + tail weights */
} bf_load_what;

/*
 * Model description (the model file is exactly this, msgpack-encoded):
 *   { "format": "butterfly-model", "version": 1,
 *     "layers": [ {"type": "conv", "name": str, "part": "head", "inputs": [int...],
 *                  "out_channels": int, "kernel": [kh, kw], "stride": [sh, sw],
 *                  "pad": [ph, pw], "dilation": [dh, dw], "groups": int, "bias": bool,
 *                  "output_pad": [oh, ow], "eps": float, "momentum": float, "scale": int,
 *                  "shape": [C, H, W], "frozen": bool}, ... ],      (unused keys omitted)
 *     "params": [ [ {"name": str, "shape": [int...], "data": bin (f32 little-endian)},
 *                   ... ] per layer ],        (a missing "data" leaves zeros, for a half)
 *     "meta": any msgpack object }            (kept verbatim; butterfly config, dataset...)
 * Parsing checks every field, size and index; a bad description gives BF_STATUS_BAD_MODEL.
 */
BF_API bf_status bf_model_load_buffer(bf_model **out, const void *buf, size_t len,
                                      bf_load_what what);
BF_API bf_status bf_model_load_file(bf_model **out, const char *path, bf_load_what what);
/* Serializes the model (all of it that is loaded) into a malloc'd buffer the caller
 * frees with free(). */
BF_API bf_status bf_model_save_buffer(const bf_model *model, void **buf, size_t *len);
BF_API bf_status bf_model_save_file(const bf_model *model, const char *path);
BF_API void bf_model_destroy(bf_model *model);

BF_API int bf_model_num_layers(const bf_model *model);
BF_API const bf_layer_spec *bf_model_layer(const bf_model *model, int layer);
BF_API bf_status bf_model_layer_info(const bf_model *model, int layer, bf_layer_info *info);
BF_API int bf_model_num_params(const bf_model *model, int layer);
BF_API bf_status bf_model_param(const bf_model *model, int layer, int slot, bf_param_view *out);
/* Which parts' weights are present. */
BF_API bf_load_what bf_model_loaded(const bf_model *model);
/* First and last layer index of a part, or -1, -1 if the part has no layers. */
BF_API void bf_model_part_range(const bf_model *model, bf_part part, int *first, int *last);
/* The verbatim msgpack bytes of "meta" (may be NULL, len 0). */
BF_API const void *bf_model_meta(const bf_model *model, size_t *len);
BF_API bf_status bf_model_set_meta(bf_model *model, const void *buf, size_t len);
/* 64-bit FNV-1a over the layer specs and weights as serialized; the same on both halves.
 * Returned as 16 lowercase hex digits + NUL in `hex`. */
BF_API void bf_model_hash(const bf_model *model, char hex[17]);
/* Bumped whenever weights change (so plans know to reload them). */
BF_API uint64_t bf_model_version(const bf_model *model);
BF_API void bf_model_touch(bf_model *model);

/* ------------------------------------------------------------------------------------ */
/* Plan (oneDNN)                                                                        */
/* ------------------------------------------------------------------------------------ */

typedef struct bf_plan bf_plan;

typedef struct bf_plan_params {
    bf_part part_begin; /* first part executed */
    bf_part part_end;   /* last part executed (inclusive) */
    int batch;          /* images per call, >= 1 */
    int training;       /* 0: inference (BN folded, fused post-ops); 1: keeps what backward needs */
    int input_grad;     /* training: also compute the gradient of the source (bf_plan_src_grad) */
} bf_plan_params;

typedef enum bf_dtype { BF_F32 = 0, BF_U8 = 1 } bf_dtype;

typedef struct bf_io_desc {
    bf_dtype dtype;
    int ndims;          /* 4: N, C, H, W */
    int64_t dims[4];
    int quantized;      /* 1: a (min, max) pair per sample goes with the data */
} bf_io_desc;

BF_API bf_plan_params bf_plan_default_params(void);
/*
 * Compiles parts part_begin..part_end for one batch size.  In inference a plan over several
 * parts gives bit for bit what the plans of its parts give run one after the other (each
 * part is compiled as its own plan would be: nothing fused across a part's end), so the
 * whole network, head..reduce + restore..tail and the four parts all agree exactly.  Plans
 * for other batch sizes may run other kernels: their results agree to float rounding.
 */
BF_API bf_status bf_plan_create(bf_plan **out, bf_model *model, const bf_plan_params *params);
BF_API void bf_plan_destroy(bf_plan *plan);
/* which = 0: the plan's source, 1: its destination. */
BF_API bf_status bf_plan_io(const bf_plan *plan, int which, bf_io_desc *out);
/*
 * Runs the plan.  src / dst are dense arrays as bf_plan_io describes; src_range / dst_range
 * are the per-sample (min, max) pairs (2 * batch floats) for a quantized source /
 * destination and are ignored (may be NULL) otherwise.  Weights changed in the model since
 * the last call (bf_model_version) are reloaded first.
 */
BF_API bf_status bf_plan_forward(bf_plan *plan, const void *src, const float *src_range,
                                 void *dst, float *dst_range);
/* How many layer outputs the last inference forward scanned for NaN / Inf.  It scans only
 * those a later layer could hide one in (a ReLU maps NaN to 0) and, of these, only those
 * whose bound -- carried from the input's largest magnitude through each layer's weights --
 * does not already show them finite; a NaN or Inf elsewhere surely reaches a scanned one. */
BF_API int bf_plan_scans(const bf_plan *plan);

/* The kernels of butterfly's own element-wise passes.  BF_KERNEL_BEST is what plans run: the
 * widest this CPU and oneDNN's ISA limit (ONEDNN_MAX_CPU_ISA) allow. */
typedef enum bf_kernel_isa {
    BF_KERNEL_BEST = 0,
    BF_KERNEL_AVX512 = 1,
    BF_KERNEL_AVX2 = 2, /* with FMA */
    BF_KERNEL_SCALAR = 3,
} bf_kernel_isa;
/* dst = src * sigmoid(src) over n floats (dst may be src): the swish of inference plans
 * (training plans run oneDNN's).  Every kernel gives the same bits; UNSUPPORTED for one
 * this CPU cannot run. */
BF_API bf_status bf_swish(bf_kernel_isa kernel, const float *src, float *dst, size_t n);

/* ------------------------------------------------------------------------------------ */
/* Serving: the cloud worker pool, its client and the wire protocol                     */
/* ------------------------------------------------------------------------------------ */
/*
 * The cloud half runs as a POOL: one broker thread (a ZeroMQ ROUTER for clients, one for
 * workers, a least-loaded / least-recently-used list of ready workers, Paranoid Pirate
 * heartbeats) and workers, either threads of the pool or separate processes started with
 * bf_worker_run; both run the same loop.  A worker owns a COMPUTE backend (bf_compute) and
 * may run up to max_batch queued requests that arrive within batch_timeout_us as one batch.
 * A CLIENT sends one quantized feature per request and gets top-k classes back, retrying
 * with a fresh socket on timeout (Lazy Pirate).  docs/PROTOCOL.md is the wire format.
 *
 *   bf_pool_params pp = bf_pool_default_params();
 *   pp.worker.compute.kind = BF_COMPUTE_PLAN; pp.worker.compute.model_path = "net.bfly";
 *   bf_pool *pool = NULL;
 *   if (bf_pool_create(&pool, &pp) || bf_pool_start(pool)) goto fail;
 *   ...                                       (clients: bf_client_classify)
 *   bf_pool_stop(pool); bf_pool_destroy(pool);
 *
 * Every blocking call here is plain C (no Python) and may run without the GIL.  A pool may
 * be stopped from any thread (once); a client or a standalone worker is used by one thread.
 * The pool's threads block all signals, so signals reach the caller's thread; a blocking
 * client or worker call that a signal interrupts returns BF_STATUS_INTERRUPTED.
 *
 * A request names the model (bf_model_hash) and the SPLIT: the index in the model's layer
 * list of the first layer of its restore part (bf_model_part_range(m, BF_PART_RESTORE, ..)).
 * The pool answers every request exactly once: top-k, or an error the client returns as a
 * status -- BF_STATUS_PROTOCOL (malformed), _REFUSED (other model, split or shape; over a
 * size limit), _BUSY (queue full, shutting down), _TIMEOUT (no answer after the retries, or
 * waited past queue_timeout_ms).  Heartbeats: heartbeat_interval_ms * heartbeat_liveness
 * must exceed the longest batch compute, or a busy worker is taken for dead.
 */

#define BF_PROTOCOL_VERSION 1
#define BF_TOPK_MAX 16          /* most classes a reply carries */
#define BF_CURVE_KEY_LEN 40     /* Z85 text of a 32-byte CURVE key (+1 for the NUL) */

typedef enum bf_codec {
    BF_CODEC_RAW = 0,  /* payload bytes as they are */
    BF_CODEC_ZSTD = 1, /* payload compressed with zstd (one frame) */
} bf_codec;

/* Codes a payload the way a client sends it: a malloc'd copy (RAW) or one zstd frame at
 * `level` (ZSTD) in *out (the caller frees it) of *out_len bytes. */
BF_API bf_status bf_payload_encode(bf_codec codec, int level, const uint8_t *src, size_t len,
                                   uint8_t **out, size_t *out_len);

/* One sample's quantized feature (the restore part's input), borrowed. */
typedef struct bf_feature {
    const uint8_t *data; /* dims[0] * dims[1] * dims[2] bytes, CHW */
    int dims[3];         /* C, H, W */
    float min, max;      /* the per-sample quantization range */
} bf_feature;

/*
 * A compute backend: what a worker runs.  A value type (a vtable + its context); the worker
 * that holds it calls run from one thread at a time and destroy once.
 *   run    fills logits[i * num_classes + j] for the n <= max_batch samples in[0..n-1]
 *          (all of shape dims; a worker hands them contiguous, in[i].data ==
 *          in[0].data + i * C*H*W).  Softmax and top-k are the worker's job.
 */
typedef struct bf_compute {
    void *ctx;
    int max_batch;
    int num_classes;
    int dims[3];                /* the payload shape this backend accepts */
    int split;                  /* split id it serves; -1 accepts any */
    char model_hash[17];        /* bf_model_hash of its model; "" accepts any */
    int probs;                  /* 1: run writes probabilities already (model ends in softmax) */
    bf_status (*run)(void *ctx, int n, const bf_feature *in, float *logits);
    void (*destroy)(void *ctx);
} bf_compute;

typedef enum bf_compute_kind {
    BF_COMPUTE_ECHO = 0,   /* test/benchmark backend: class = (sum of payload bytes) % classes */
    BF_COMPUTE_PLAN = 1,   /* the engine: restore + tail of a model file (BF_LOAD_CLOUD) */
    BF_COMPUTE_CUSTOM = 2, /* params.create fills the vtable (C callers) */
} bf_compute_kind;

typedef struct bf_compute_params {
    bf_compute_kind kind;
    int max_batch;            /* largest batch run() will get (>= 1; a pool or bf_worker_run
                                 raises it to the worker's max_batch) */
    /* PLAN */
    const char *model_path;   /* model file; plans for restore..tail built per batch size */
    int n_threads;            /* oneDNN threads its plans are built for (0: the caller's) */
    /* ECHO */
    int dims[3];              /* accepted payload shape (C, H, W) */
    int num_classes;
    int split;
    const char *model_hash;   /* 16 hex digits, or NULL / "" for any */
    int delay_us;             /* busy-wait per batch, to imitate a model */
    /* CUSTOM */
    bf_status (*create)(bf_compute *out, void *arg);
    void *create_arg;
} bf_compute_params;

BF_API bf_compute_params bf_compute_default_params(void);
/* Fills *out (a value the caller owns; release with bf_compute_destroy). */
BF_API bf_status bf_compute_create(bf_compute *out, const bf_compute_params *params);
BF_API void bf_compute_destroy(bf_compute *compute); /* NULL and zeroed values are fine */

/* Result of one classification, client side. */
typedef struct bf_result {
    int k;                        /* classes returned, best first */
    int classes[BF_TOPK_MAX];
    float probs[BF_TOPK_MAX];     /* softmax probabilities */
    float *logits;                /* in: the caller's buffer or NULL (then none are asked) */
    int logits_cap;               /* in: floats that logits can hold */
    int n_logits;                 /* out: floats written */
    uint32_t queue_us;            /* server: waiting in the broker and the worker */
    uint32_t compute_us;          /* server: the batch's compute time */
    int batch;                    /* server: requests in that batch */
    uint32_t total_us;            /* client: send to answer, all attempts */
    int attempts;                 /* 1 + retries used */
} bf_result;

/* ZeroMQ's own heartbeats (ZMTP PING / PONG, answered by the I/O threads whatever the
 * application is doing) on every TCP connection of a pool, a worker and a client, so that a
 * peer that vanished without closing -- a phone that lost its network or its power -- has
 * its connection closed after at most heartbeat_ms + timeout_ms instead of holding a
 * descriptor for ever.  docs/PROTOCOL.md section 1. */
typedef struct bf_conn_params {
    int heartbeat_ms; /* a PING this often (BF_CONN_HEARTBEAT_MS); 0: no heartbeats */
    int timeout_ms;   /* nothing heard this long after a PING: the connection is closed */
    int ttl_ms;       /* asks the peer to close it after this long without a word from
                         here (tenths of a second; 0: the peer's own timeout only) */
} bf_conn_params;

/* Standalone worker (a process of its own connecting to a pool's backend endpoint). */
typedef struct bf_worker_params {
    const char *connect;          /* pool backend endpoint, e.g. "tcp://127.0.0.1:5556" */
    int max_batch;                /* B: requests run as one batch (1: no batching) */
    int batch_timeout_us;         /* T: how long a batch may wait to fill up */
    int prefetch;                 /* requests held beyond the batch, queued in the worker
                                     while it computes (-1: one more batch, the default;
                                     0: strict least-recently-used dispatch) */
    int heartbeat_interval_ms;    /* BF_HEARTBEAT_INTERVAL_MS */
    int heartbeat_liveness;       /* intervals of silence before the broker counts as dead */
    int reconnect_max_ms;         /* back-off cap between reconnects */
    int max_payload;              /* largest decoded payload, bytes */
    int n_threads;                /* oneDNN / OpenMP threads (0: all cores) */
    int stop_fd;                  /* > 0: the worker stops (BF_STATUS_INTERRUPTED) once this
                                     fd is readable, e.g. a signal wakeup pipe, so a signal
                                     that lands while it computes is not missed; 0: none */
    const char *curve_server_key; /* the pool's public key file: CURVE to a backend started
                                     with curve_worker_allow_file; NULL: plain */
    const char *curve_key_file;   /* this worker's key pair (must be on the pool's worker
                                     allow list); required with curve_server_key */
    int rt_priority;              /* bf_worker_run: 1..98 runs the worker's calling thread
                                     and ZeroMQ I/O threads under SCHED_FIFO at that
                                     priority (its heartbeat thread one higher, to beat
                                     while it computes), so that no other process takes
                                     its CPU mid-batch; 0: the normal scheduler.  Needs
                                     root, CAP_SYS_NICE or RLIMIT_RTPRIO (else REFUSED).  A
                                     pool's worker threads take the pool's rt_priority */
    bf_conn_params conn;          /* heartbeats of its connection to the pool */
    bf_compute_params compute;
} bf_worker_params;

BF_API bf_worker_params bf_worker_default_params(void);
/* Serves until a signal interrupts a wait, stop_fd becomes readable (both:
 * BF_STATUS_INTERRUPTED) or an error. */
BF_API bf_status bf_worker_run(const bf_worker_params *params);

/* Pool */
typedef struct bf_pool bf_pool;

typedef struct bf_pool_params {
    const char *frontend;         /* clients connect here; "tcp://127.0.0.1:*" picks a port */
    const char *backend;          /* worker processes connect here; NULL: threads only */
    int n_workers;                /* worker threads in this process */
    int queue_max;                /* requests waiting for a worker; more get a "busy" reply */
    int max_message;              /* largest request body, bytes; larger gets an error
                                     (past 2x, libzmq drops the connection instead) */
    int heartbeat_interval_ms;    /* to and from workers */
    int heartbeat_liveness;       /* silent intervals before a worker is purged */
    int queue_timeout_ms;         /* waited longer: a "timeout" reply (0: wait forever;
                                     default 10 s, past the default client's patience) */
    int drain_timeout_ms;         /* bf_pool_stop waits this long for requests in flight */
    int n_threads;                /* cores shared by the worker threads (0: all online) */
    const char *curve_key_file;   /* server key pair (bf_curve_keygen); NULL: no CURVE */
    const char *curve_allow_file; /* client public keys allowed; NULL: any CURVE client */
    const char *curve_worker_allow_file; /* worker public keys allowed on the backend
                                     endpoint: turns CURVE on there too (same server key;
                                     needs curve_key_file and backend).  NULL: the backend
                                     endpoint is plain (keep it on a trusted network) */
    int rt_priority;              /* 1..98: the broker, the worker threads and the ZeroMQ
                                     I/O threads run under SCHED_FIFO at that priority, the
                                     workers' heartbeat threads one higher (see
                                     bf_worker_params); a pool that keeps every core busy
                                     then leaves other processes 5 % of the CPU (the
                                     kernel's real-time throttling); 0: the normal scheduler */
    bf_conn_params conn;          /* heartbeats of every TCP connection, clients' and
                                     worker processes' */
    bf_worker_params worker;      /* batching + compute of the worker threads, one compute
                                     each (connect, heartbeats, n_threads, rt_priority come
                                     from the pool: each thread gets max(1, cores /
                                     n_workers)) */
} bf_pool_params;

#define BF_STATS_BUCKETS 32     /* latency bucket b >= 1 holds [2^(b-1), 2^b) us; 0: < 1 us */
#define BF_STATS_BATCH_MAX 64   /* batch histogram; larger batches count in the last slot */

typedef struct bf_serve_stats {
    uint64_t requests;            /* messages received from clients */
    uint64_t replies_ok;
    uint64_t errors;              /* error replies of every kind but busy */
    uint64_t malformed;           /* of errors: undecodable messages */
    uint64_t busy;                /* busy replies (queue full, shutting down) */
    uint64_t requeued;            /* requests re-sent after their worker died */
    uint64_t late_replies;        /* replies of purged workers, dropped */
    uint64_t workers_purged;
    uint64_t batches;
    int workers;                  /* live workers now */
    int queued;                   /* requests waiting now */
    int in_flight;                /* requests at workers now */
    int drain_queued[2];          /* queued when bf_pool_stop's drain began [0] and when it
                                     ended [1] (what was still there got "busy") */
    int drain_in_flight[2];       /* the same for requests at workers: a request still in
                                     flight at the end is one its worker never answered */
    uint64_t batch_hist[BF_STATS_BATCH_MAX + 1]; /* batches by size */
    uint64_t queue_us[BF_STATS_BUCKETS];         /* per request: broker + worker wait */
    uint64_t compute_us[BF_STATS_BUCKETS];       /* per request: its batch's compute */
    uint64_t total_us[BF_STATS_BUCKETS];         /* per request: broker in to broker out */
} bf_serve_stats;

BF_API bf_pool_params bf_pool_default_params(void);
/* Checks and copies the params; nothing runs yet. */
BF_API bf_status bf_pool_create(bf_pool **out, const bf_pool_params *params);
/* Builds the computes, binds the endpoints and starts the broker and worker threads.
 * Raises the process's soft limit of open descriptors to its hard limit (each client
 * connection holds one; connection heartbeats close a vanished client's).  At the limit
 * the pool keeps serving the connections it has, says so on stderr (at most every 10 s),
 * and new connections wait until one closes. */
BF_API bf_status bf_pool_start(bf_pool *pool);
/* From any thread: refuses new requests, waits up to drain_timeout_ms for those queued or in
 * flight (the rest get an error reply), stops the workers, joins the threads.  Returns the
 * broker's exit status. */
BF_API bf_status bf_pool_stop(bf_pool *pool);
BF_API void bf_pool_destroy(bf_pool *pool); /* stops a running pool first */
/* The endpoint actually bound (which = 0: frontend, 1: backend), e.g. the port "*" chose. */
BF_API bf_status bf_pool_endpoint(const bf_pool *pool, int which, char *buf, size_t len);
BF_API bf_status bf_pool_stats(const bf_pool *pool, bf_serve_stats *out);
/* Fault injection: worker thread `index` stops dead (no reply, no goodbye), as if crashed. */
BF_API bf_status bf_pool_kill_worker(bf_pool *pool, int index);
/* Upper bound (us) of the q-quantile (0..1) of a latency histogram; 0 when it is empty. */
BF_API double bf_stats_quantile(const uint64_t hist[BF_STATS_BUCKETS], double q);

/* Client (Lazy Pirate) */
typedef struct bf_client bf_client;

typedef struct bf_client_params {
    const char *endpoint;         /* the pool's frontend */
    int timeout_ms;               /* per attempt */
    int retries;                  /* resends (each on a fresh socket) after a timeout */
    const char *model_hash;       /* bf_model_hash of the model; the pool refuses others */
    int split;                    /* split id (first layer index of the restore part) */
    bf_codec codec;
    int zstd_level;
    const char *curve_server_key; /* key file holding the server's public key; NULL: plain */
    const char *curve_key_file;   /* this client's key pair; NULL: a fresh pair per client */
    bf_conn_params conn;          /* heartbeats of its connection */
} bf_client_params;

BF_API bf_client_params bf_client_default_params(void);
BF_API bf_status bf_client_create(bf_client **out, const bf_client_params *params);
/* Sends one feature and waits for its answer: BF_STATUS_OK and *out filled, the server's
 * error (BF_STATUS_BUSY, _REFUSED, _PROTOCOL, ...) or BF_STATUS_TIMEOUT after every retry.
 * k is clamped to the model's classes and BF_TOPK_MAX. */
BF_API bf_status bf_client_classify(bf_client *client, const uint8_t *payload,
                                    const int dims[3], float min, float max, int k,
                                    bf_result *out);
BF_API void bf_client_destroy(bf_client *client);

/* Load generator (benchmarks, capacity tests): n_clients clients (each its own bf_client,
 * its own connection) driven by one thread (the caller's) for `seconds`; no retries: an
 * answer not back within the client's timeout_ms counts as a BF_STATUS_TIMEOUT error.
 * Closed loop (rate 0): each client sends its next request as soon as its last one is
 * answered; latency = send to answer.  Open loop (rate > 0): requests are due at a
 * constant total rate, request j at start + j / rate on client j % n_clients, and each is
 * sent at its due time however many are still unanswered; latency counts from the due
 * time, so a server that falls behind is charged for the wait it causes.  Payload i
 * (row-major dims, ranges[2i], ranges[2i + 1]) is used by request j with
 * i = j % n_payloads (closed loop: request m of client t is j = t + m * n_clients).  Each
 * connection makes one round trip, not counted, before the clock starts. */
typedef struct bf_load_params {
    bf_client_params client;      /* shared by every thread */
    int n_clients;                /* 1..1024 connections */
    double rate;                  /* requests/s in total; 0: closed loop */
    double seconds;               /* sending window, (0, 86400] */
    int n_payloads;
    const uint8_t *payloads;      /* n_payloads * dims[0] * dims[1] * dims[2] bytes */
    const float *ranges;          /* n_payloads * 2 */
    int dims[3];
    int k;                        /* top-k asked for */
    size_t max_records;           /* per-request records kept (the arrays' length) */
    uint32_t *latency_us;         /* out, may be NULL: per answered request */
    uint32_t *queue_us;           /* out, may be NULL: its wait in the broker and worker */
    uint32_t *compute_us;         /* out, may be NULL: server compute of its batch */
    uint16_t *batch;              /* out, may be NULL: its batch size */
    uint32_t *start_us;           /* out, may be NULL: when its latency began (sent, or due
                                     in the open loop), us after the start */
    int rt_priority;              /* 1..98: the calling thread (for the run) and the
                                     clients' ZeroMQ I/O thread under SCHED_FIFO, so that
                                     the generator's own delays do not count as the pool's;
                                     0: the normal scheduler */
} bf_load_params;

typedef struct bf_load_result {
    uint64_t sent;                /* requests sent */
    uint64_t ok;                  /* answered without error */
    uint64_t errors;              /* error replies or timeouts */
    bf_status last_error;         /* of the last failed request (BF_STATUS_OK: none) */
    size_t n_records;             /* records written (<= max_records) */
    double seconds;               /* from the start to the last answer */
} bf_load_result;

BF_API bf_load_params bf_load_default_params(void);
/* Runs the load; BF_STATUS_OK unless the parameters are bad, a client cannot be created or
 * not one warm-up round trip is answered within the timeout (BF_STATUS_TIMEOUT: nothing
 * serves there), and then nothing was counted.  Failed requests are counted, not fatal. */
BF_API bf_status bf_load_run(const bf_load_params *params, bf_load_result *out);

/* CURVE keys.  A key file is text: "public = <40 Z85 chars>" and, for a key pair,
 * "secret = <40 Z85 chars>" lines; a line starting with '#' is a comment.  An allow file
 * lists client public keys, one "public = ..." (or a bare key) per line. */
/* Writes a new pair to `path` (mode 0600) and its public half to `path`.pub. */
BF_API bf_status bf_curve_keygen(const char *path, char public_key[BF_CURVE_KEY_LEN + 1]);
/* Reads a key file; secret_key may be NULL, and is "" when the file has none. */
BF_API bf_status bf_curve_key_read(const char *path, char public_key[BF_CURVE_KEY_LEN + 1],
                                   char secret_key[BF_CURVE_KEY_LEN + 1]);

/* ------------------------------------------------------------------------------------ */
/* OpenCL (mobile half: head + reduce, inference)                                       */
/* ------------------------------------------------------------------------------------ */
/*
 * A bf_cl_plan runs a range of parts of a model on an OpenCL 1.2 device (a phone GPU; PoCL
 * on the CPU for tests) with the same semantics as bf_plan: same part range, same dense
 * NCHW float32 source, same destination (float32, or for a plan ending with the reduce part
 * the uint8 payload + per-sample (min, max), with the quantizer formula above computed
 * bit-exactly in float32).  Batch-norm is folded into the preceding convolution, and
 * ReLU / ReLU6 and residual adds run in the convolution's epilogue.  Linear and softmax
 * run too (a plain network's whole forward: the mobile-only baseline); the restore part's
 * layers (dequantize, deconv) and training plans give BF_STATUS_UNSUPPORTED.
 *
 * libOpenCL.so.1 is loaded on first use (override with the BF_OPENCL_LIBRARY environment
 * variable); without it these calls fail with BF_STATUS_OPENCL and nothing else changes.
 * A plan owns its context, queue, kernels and device buffers (activations share buffers
 * when their lifetimes do not overlap), and borrows its model like bf_plan does; weights
 * changed in the model (bf_model_version) are re-uploaded before the next forward.  One
 * thread at a time per plan.  Tuning knobs, read when a plan is created:
 * BF_OPENCL_GPU_LAYOUT=1 uses the GPU work-item layout on any device, BF_OPENCL_TM=16 the
 * taller GEMM tile, BF_OPENCL_BUILD_OPTIONS is appended to the kernel build options.
 */

typedef enum bf_cl_device_type {
    BF_CL_DEVICE_OTHER = 0,
    BF_CL_DEVICE_CPU = 1,
    BF_CL_DEVICE_GPU = 2,
    BF_CL_DEVICE_ACCELERATOR = 3,
} bf_cl_device_type;

typedef struct bf_cl_device_info {
    char platform[64];
    char name[96];
    char version[64];        /* CL_DEVICE_VERSION */
    bf_cl_device_type type;
    int compute_units;
    int64_t global_mem;      /* bytes */
    int64_t local_mem;       /* bytes */
    int64_t max_work_group;  /* work-items */
} bf_cl_device_info;

/* Lists the devices of every platform in a fixed order (the index bf_cl_plan_create takes).
 * Fills up to `max` entries of `out` (may be NULL when max is 0) and sets *n to the total
 * count.  No platform is not an error (*n = 0); no OpenCL loader is (BF_STATUS_OPENCL). */
BF_API bf_status bf_cl_devices(bf_cl_device_info *out, int max, int *n);

typedef struct bf_cl_plan bf_cl_plan;

/* Compiles `params`' part range of `model` for device `device_index` (-1: the first GPU,
 * else the first device).  Kernels are built here; a failed build's message holds the
 * compiler log. */
BF_API bf_status bf_cl_plan_create(bf_cl_plan **out, bf_model *model,
                                   const bf_plan_params *params, int device_index);
BF_API void bf_cl_plan_destroy(bf_cl_plan *plan);
/* As bf_plan_io: which = 0 the source, 1 the destination. */
BF_API bf_status bf_cl_plan_io(const bf_cl_plan *plan, int which, bf_io_desc *out);
/* As bf_plan_forward; blocks until the results are in `dst` / `dst_range`. */
BF_API bf_status bf_cl_plan_forward(bf_cl_plan *plan, const void *src, const float *src_range,
                                    void *dst, float *dst_range);
/* Writes the plan's device ("device N 'name' (platform)") into buf. */
BF_API void bf_cl_plan_device(const bf_cl_plan *plan, char *buf, size_t size);

/* One executed op of the last forward: fused model layers first_layer..last_layer (e.g.
 * conv + batchnorm + add + relu) and the device time of its kernels (CL event profiling,
 * summed over the op's kernels, e.g. im2col + gemm). */
typedef struct bf_cl_op_time {
    int first_layer;
    int last_layer;
    const char *kernel; /* main kernel's name, static */
    double ms;
} bf_cl_op_time;

/* Fills up to `max` entries in execution order and sets *n to the number of ops.  Before
 * the first forward every ms is 0. */
BF_API bf_status bf_cl_plan_profile(const bf_cl_plan *plan, bf_cl_op_time *out, int max,
                                    int *n);

/* ------------------------------------------------------------------------------------ */
/* Training                                                                             */
/* ------------------------------------------------------------------------------------ */
/*
 * A plan created with training = 1 keeps every activation, uses batch statistics in its
 * batch-norms (updating the model's running statistics on each forward; a layer marked
 * frozen keeps its running statistics and its weights), and runs the 8-bit quantizer in the
 * forward pass with an identity gradient (straight-through).  Its weights live in the plan
 * while it trains: bf_plan_sync writes them back into the model.
 */
typedef struct bf_sgd_params {
    float lr;
    float momentum;     /* 0 = plain SGD */
    float weight_decay; /* applied to conv / linear weights, not to biases or BN */
    int nesterov;
} bf_sgd_params;

BF_API bf_sgd_params bf_sgd_default_params(void);

/* Adam with decoupled weight decay (AdamW; PyTorch's formula). */
typedef struct bf_adam_params {
    float lr;
    float beta1;        /* the first moment's decay */
    float beta2;        /* the second moment's decay */
    float eps;
    float weight_decay; /* decoupled: w -= lr * wd * w, on conv / linear weights only */
} bf_adam_params;

BF_API bf_adam_params bf_adam_default_params(void);

/* Learning rate per step: linear warm-up over warmup_steps (lr * (step + 1) / warmup), then
 * cosine decay to 0 at total_steps, or step decay (times gamma at each milestone), or
 * constant. */
typedef enum bf_lr_kind { BF_LR_CONSTANT = 0, BF_LR_COSINE = 1, BF_LR_STEP = 2 } bf_lr_kind;
#define BF_LR_MAX_MILESTONES 16
typedef struct bf_lr_schedule {
    bf_lr_kind kind;
    float lr;
    int64_t total_steps;
    int64_t warmup_steps;
    int n_milestones;
    int64_t milestones[BF_LR_MAX_MILESTONES];
    float gamma;
} bf_lr_schedule;

/* The rate at `step` (0-based), or a negative value for an invalid schedule. */
BF_API float bf_lr_at(const bf_lr_schedule *schedule, int64_t step);
/* Mean softmax cross-entropy of n x k logits against labels in [0, k); optional outputs:
 * the loss, the count of correct argmax predictions, d(loss)/d(logits) (n x k). */
BF_API bf_status bf_softmax_xent(const float *logits, const int32_t *labels, int n, int k,
                                 float *loss, int *correct, float *diff);
/* Backward of the plan's last forward, from the gradient of the loss with respect to the
 * plan's destination.  Overwrites the gradients of all trained parameters and the source.
 * A training plan's forward keeps its own copy of the source and destination, so the
 * caller's buffers may change or go in between; BF_STATUS_INVALID_ARGUMENT before any
 * forward (or after one that failed). */
BF_API bf_status bf_plan_backward(bf_plan *plan, const float *diff_dst);
/* One SGD update of every trained parameter from its gradient (PyTorch's formula:
 * g += wd * w; v = momentum * v + g; w -= lr * (nesterov ? g + momentum * v : v)). */
BF_API bf_status bf_plan_sgd_step(bf_plan *plan, const bf_sgd_params *params);
/* One Adam update of every trained parameter; step is the update's 1-based number (bias
 * correction): w -= lr * wd * w; m = b1 * m + (1 - b1) * g; v = b2 * v + (1 - b2) * g^2;
 * w -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps).  m is the buffer that
 * bf_plan_momentum reads and writes, v the one of bf_plan_second_moment. */
BF_API bf_status bf_plan_adam_step(bf_plan *plan, const bf_adam_params *params, int64_t step);
/* forward + softmax cross-entropy against labels + backward + (if sgd) an SGD step. */
BF_API bf_status bf_plan_train_step(bf_plan *plan, const float *src, const int32_t *labels,
                                    const bf_sgd_params *sgd, float *loss, int *correct);
/* Writes the plan's weights back into the model (bumping its version). */
BF_API bf_status bf_plan_sync(bf_plan *plan);
/* The gradient of one parameter (plain layout, as bf_model_param) / of the source. */
BF_API bf_status bf_plan_param_grad(bf_plan *plan, int layer, int slot, float *out);
BF_API bf_status bf_plan_src_grad(bf_plan *plan, float *out);
/* The momentum buffer of a trained parameter, in the model's layout: copied out (set = 0)
 * or in (set = 1), for checkpoints. */
BF_API bf_status bf_plan_momentum(bf_plan *plan, int layer, int slot, float *buf, int set);
/* Adam's second-moment buffer, likewise (zeros before the first Adam step). */
BF_API bf_status bf_plan_second_moment(bf_plan *plan, int layer, int slot, float *buf, int set);
/* How many parameters the plan trains; fills up to max (layer, slot) pairs. */
BF_API int bf_plan_num_trained(const bf_plan *plan, int *layers, int *slots, int max);
/* Marks a layer frozen (or not) for plans created afterwards. */
BF_API bf_status bf_model_set_frozen(bf_model *model, int layer, int frozen);

/* ------------------------------------------------------------------------------------ */
/* Profiling                                                                            */
/* ------------------------------------------------------------------------------------ */

/* One layer of a profiled plan.  ms_median is the median over the repeats of the time
 * charged to the layer (wall clock, monotonic, the whole batch).  Charging rules: a fused
 * node (conv + folded BN + sum + ReLU) is charged to its first layer, so the absorbed
 * layers report 0; a reorder is charged to the layer of the next computing node (the one
 * that needed it); the destination reorder at the end of the plan to the plan's last
 * layer.  macs and out_bytes are per image, as bf_model_layer_info. */
#define BF_KERNEL_NAME_MAX 64
typedef struct bf_layer_time {
    int layer;               /* index in the model */
    char name[BF_NAME_MAX];
    double ms_median;
    int64_t macs;
    int64_t out_bytes;
    /* what computes the layer: oneDNN's implementation of its node (e.g.
     * "jit_1x1:avx512_core"), with "+swish" where butterfly's swish runs after it;
     * "butterfly" for the core's own (quantize, dequantize, swish alone); "" for a layer
     * fused into another layer's node */
    char kernel[BF_KERNEL_NAME_MAX];
} bf_layer_time;

/*
 * Runs the plan once as bf_plan_forward (checking src / src_range as it does; the output
 * goes to a scratch buffer), then `repeats` times node by node with a clock around each
 * node (each one waits for its stream), and fills out[0..*n) with one row per layer of the
 * plan's range, in order.  *n is always set to the number of rows the plan has; out = NULL
 * asks only for that count, and max < *n is an error.  Inference plans only.  repeats in
 * [1, 100000].  The per-node waits make the sum of the rows slightly larger than one
 * bf_plan_forward.
 */
BF_API bf_status bf_plan_profile(bf_plan *plan, const void *src, const float *src_range,
                                 int repeats, bf_layer_time *out, int max, int *n);

#ifdef __cplusplus
}
#endif
#endif /* BUTTERFLY_H */
