/* Private to the OpenCL backend (csrc/cl): the lazily loaded OpenCL entry points, the
 * device context and the helpers every op family uses.  Never included by the Python glue. */
#ifndef BF_CL_INTERNAL_H
#define BF_CL_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "butterfly.h"

/* Every OpenCL function the backend calls.  The Khronos header is used for its types only:
 * we take each prototype with __typeof__ so the table can never disagree with it, and we
 * never link against libOpenCL (the package must import where no ICD loader exists). */
#define BF_CL_FUNCS(X)                                                                     \
    X(clGetPlatformIDs) X(clGetPlatformInfo) X(clGetDeviceIDs) X(clGetDeviceInfo)          \
    X(clCreateContext) X(clReleaseContext) X(clCreateCommandQueue)                         \
    X(clReleaseCommandQueue) X(clCreateBuffer) X(clReleaseMemObject)                       \
    X(clCreateProgramWithSource) X(clBuildProgram) X(clGetProgramBuildInfo)                \
    X(clReleaseProgram) X(clCreateKernel) X(clReleaseKernel) X(clSetKernelArg)             \
    X(clGetKernelWorkGroupInfo) X(clEnqueueNDRangeKernel) X(clEnqueueReadBuffer)           \
    X(clEnqueueWriteBuffer) X(clFinish) X(clGetEventProfilingInfo) X(clReleaseEvent)

typedef struct bf_cl_fns {
#define BF_CL_MEMBER(f) __typeof__(f) *f;
    BF_CL_FUNCS(BF_CL_MEMBER)
#undef BF_CL_MEMBER
} bf_cl_fns;

/* Loads libOpenCL.so.1 once (thread-safe); returns the table, or NULL with BF_STATUS_OPENCL
 * set.  BF_OPENCL_LIBRARY overrides the library path. */
const bf_cl_fns *bf_cl_load(void);
/* Name of an OpenCL error code ("CL_OUT_OF_RESOURCES"), static. */
const char *bf_cl_strerror(cl_int err);

/* ---- context: one device, one in-order profiling queue, the backend's program ---------- */

enum {
    BF_K_CONV_GEMM, BF_K_CONV_TILED_S1, BF_K_CONV_TILED_S2, BF_K_PAD, BF_K_PHASE,
    BF_K_SUBSAMPLE, BF_K_CONV_DIRECT, BF_K_CONV_DW_S1, BF_K_CONV_DW_S2, BF_K_IM2COL,
    BF_K_MAXPOOL, BF_K_MAXPOOL_S1, BF_K_MAXPOOL_S2, BF_K_AVGPOOL, BF_K_GAP,
    BF_K_ADD, BF_K_AFFINE, BF_K_UPSAMPLE, BF_K_SOFTMAX, BF_K_QMINMAX,
    BF_K_QFINAL, BF_K_QUANTIZE, BF_K_MUL, BF_K_CONCAT, BF_K_COUNT_
};

typedef struct bf_cl_ctx {
    const bf_cl_fns *f;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernels[BF_K_COUNT_];
    size_t kernel_wg[BF_K_COUNT_];    /* CL_KERNEL_WORK_GROUP_SIZE */
    char name[200];                  /* "device N 'name' (platform)", for messages */
    int is_cpu;
    int exact_div;                   /* correctly rounded float division available */
    int tn;                          /* GEMM tile width (pixels), a build option */
    int tm;                          /* GEMM tile height (output channels), 8 or 16 */
    int rw;                          /* row outputs per work-item of gather kernels */
    int gpu_layout;                  /* work-item mapping for GPUs (see query_limits) */
    size_t max_wg;                   /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    size_t max_item[3];              /* CL_DEVICE_MAX_WORK_ITEM_SIZES */
    cl_ulong local_mem;
    cl_ulong max_alloc;
} bf_cl_ctx;

extern const char *const bf_cl_kernel_names[];

/* Opens device `index` (-1: first GPU, else first device) and builds the kernels. */
bf_status bf_cl_ctx_create(bf_cl_ctx **out, int index);
void bf_cl_ctx_destroy(bf_cl_ctx *c);

/* Turns an OpenCL error into BF_STATUS_OPENCL naming the call and the device. */
bf_status bf_cl_fail(const bf_cl_ctx *c, cl_int err, const char *call);
#define BF_CL_CHECK(c, err, call)                                                          \
    ((err) == CL_SUCCESS ? BF_STATUS_OK : bf_cl_fail((c), (err), (call)))

/* Kernel arguments: BF_CL_ARGS(ctx, kernel_id, BF_ARG(x), BF_ARG(y), BF_LOCAL(bytes)) */
typedef struct bf_cl_arg {
    size_t size;
    const void *ptr; /* NULL: a __local buffer of `size` bytes */
} bf_cl_arg;
#define BF_ARG(v) ((bf_cl_arg){sizeof(v), &(v)})
#define BF_LOCAL(bytes) ((bf_cl_arg){(bytes), NULL})
bf_status bf_cl_set_args(bf_cl_ctx *c, int kid, const bf_cl_arg *args, int n);
#define BF_CL_ARGS(c, kid, ...)                                                            \
    bf_cl_set_args((c), (kid), (const bf_cl_arg[]){__VA_ARGS__},                           \
                   (int)(sizeof((const bf_cl_arg[]){__VA_ARGS__}) / sizeof(bf_cl_arg)))

/* Enqueues kernel `kid` over `gws` (rounded up to a multiple of the local size, which the
 * kernels guard against); `lws` NULL lets the helper choose one from the device limits.
 * `ev` (may be NULL) receives the profiling event. */
bf_status bf_cl_launch(bf_cl_ctx *c, int kid, int dims, const size_t gws[3],
                       const size_t *lws, cl_event *ev);
/* A device buffer of `bytes` (+ slack for the kernels' vector over-reads). */
bf_status bf_cl_buffer(bf_cl_ctx *c, size_t bytes, cl_mem *out);
bf_status bf_cl_write(bf_cl_ctx *c, cl_mem buf, size_t bytes, const void *src);

/* Slack (floats) after every activation buffer: GEMM tiles load whole vectors. */
#define BF_CL_SLACK 64

#endif
