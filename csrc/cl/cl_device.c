/* OpenCL devices, the per-plan context (context, profiling queue, program, kernels) and the
 * launch helpers.  Every OpenCL failure becomes BF_STATUS_OPENCL naming the call and device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl/cl_internal.h"
#include "cl_kernels.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

const char *const bf_cl_kernel_names[] = {
    "conv_gemm",      "conv_tiled_s1", "conv_tiled_s2", "pad_input",   "phase_split",
    "subsample",      "conv_direct",   "conv_dw_s1",    "conv_dw_s2",  "im2col",
    "maxpool",        "maxpool_s1",    "maxpool_s2",    "avgpool",     "global_avgpool",
    "add_act",        "affine_act",    "upsample_nearest", "softmax_channels", "quant_minmax",
    "quant_final",    "quantize",      "mul_bcast",        "concat_copy",
};
/* one name per kernel id, or clCreateKernel gets NULL */
_Static_assert(sizeof bf_cl_kernel_names / sizeof *bf_cl_kernel_names == BF_K_COUNT_,
               "bf_cl_kernel_names out of step with the BF_K_ enum");

bf_status bf_cl_fail(const bf_cl_ctx *c, cl_int err, const char *call)
{
    return bf_error(BF_STATUS_OPENCL, "OpenCL %s failed on %s: %s (%d)", call,
                    c ? c->name : "?", bf_cl_strerror(err), (int)err);
}

/* All devices of all platforms, in a fixed order (platform order, then device order). */
static bf_status enumerate(const bf_cl_fns *f, cl_platform_id plat[MAX_DEVICES],
                           cl_device_id dev[MAX_DEVICES], int *n)
{
    cl_platform_id ps[MAX_PLATFORMS];
    cl_uint np = 0, nd;
    cl_int err = f->clGetPlatformIDs(MAX_PLATFORMS, ps, &np);
    *n = 0;
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR: a loader without drivers */)
        return BF_STATUS_OK;
    if (err != CL_SUCCESS)
        return bf_cl_fail(NULL, err, "clGetPlatformIDs");
    for (cl_uint p = 0; p < np && p < MAX_PLATFORMS; p++) {
        cl_device_id ds[MAX_DEVICES];
        err = f->clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, ds, &nd);
        if (err == CL_DEVICE_NOT_FOUND)
            continue;
        if (err != CL_SUCCESS)
            return bf_cl_fail(NULL, err, "clGetDeviceIDs");
        for (cl_uint d = 0; d < nd && *n < MAX_DEVICES; d++) {
            plat[*n] = ps[p];
            dev[*n] = ds[d];
            (*n)++;
        }
    }
    return BF_STATUS_OK;
}

/* Truncating copy (device strings can be longer than our fields). */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void info_of(const bf_cl_fns *f, cl_platform_id p, cl_device_id d, bf_cl_device_info *o)
{
    cl_device_type t = 0;
    cl_uint cu = 0;
    cl_ulong gm = 0, lm = 0;
    size_t wg = 0;
    char buf[1024];
    memset(o, 0, sizeof *o);
    /* info queries on a listed device do not fail in practice; zeros are a fine fallback.
     * Strings go through a large buffer: a too-small size makes the call fail outright. */
    if (f->clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof buf - 1, memset(buf, 0, sizeof buf),
                             NULL) == CL_SUCCESS)
        copy_str(o->platform, sizeof o->platform, buf);
    if (f->clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof buf - 1, memset(buf, 0, sizeof buf),
                           NULL) == CL_SUCCESS)
        copy_str(o->name, sizeof o->name, buf);
    if (f->clGetDeviceInfo(d, CL_DEVICE_VERSION, sizeof buf - 1, memset(buf, 0, sizeof buf),
                           NULL) == CL_SUCCESS)
        copy_str(o->version, sizeof o->version, buf);
    f->clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    f->clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    f->clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gm, &gm, NULL);
    f->clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lm, &lm, NULL);
    f->clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    o->type = (t & CL_DEVICE_TYPE_GPU)           ? BF_CL_DEVICE_GPU
              : (t & CL_DEVICE_TYPE_CPU)         ? BF_CL_DEVICE_CPU
              : (t & CL_DEVICE_TYPE_ACCELERATOR) ? BF_CL_DEVICE_ACCELERATOR
                                                 : BF_CL_DEVICE_OTHER;
    o->compute_units = (int)cu;
    o->global_mem = (int64_t)gm;
    o->local_mem = (int64_t)lm;
    o->max_work_group = (int64_t)wg;
}

bf_status bf_cl_devices(bf_cl_device_info *out, int max, int *n)
{
    cl_platform_id plat[MAX_DEVICES];
    cl_device_id dev[MAX_DEVICES];
    const bf_cl_fns *f;
    bf_status st;
    if (!n || (max > 0 && !out))
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "bf_cl_devices: NULL argument");
    *n = 0;
    if (!(f = bf_cl_load()))
        return BF_STATUS_OPENCL;
    st = enumerate(f, plat, dev, n);
    for (int i = 0; st == BF_STATUS_OK && i < *n && i < max; i++)
        info_of(f, plat[i], dev[i], &out[i]);
    return st;
}

/* Picks the device: index >= 0 exactly; -1 the first GPU, else the first device. */
static bf_status pick_device(bf_cl_ctx *c, int index)
{
    cl_platform_id plat[MAX_DEVICES];
    cl_device_id dev[MAX_DEVICES];
    bf_cl_device_info info;
    int n = 0, pick = -1;
    bf_status st = enumerate(c->f, plat, dev, &n);
    if (st != BF_STATUS_OK)
        return st;
    if (n == 0)
        return bf_error(BF_STATUS_OPENCL, "no OpenCL device found (no platform installed?)");
    if (index >= n || index < -1)
        return bf_error(BF_STATUS_INVALID_ARGUMENT, "OpenCL device index %d out of range "
                        "(%d device(s); -1 picks the first GPU)", index, n);
    for (int i = 0; index < 0 && i < n && pick < 0; i++) {
        info_of(c->f, plat[i], dev[i], &info);
        if (info.type == BF_CL_DEVICE_GPU)
            pick = i;
    }
    if (pick < 0)
        pick = index < 0 ? 0 : index;
    info_of(c->f, plat[pick], dev[pick], &info);
    c->platform = plat[pick];
    c->device = dev[pick];
    c->is_cpu = info.type == BF_CL_DEVICE_CPU;
    snprintf(c->name, sizeof c->name, "device %d '%s' (%s)", pick, info.name, info.platform);
    return BF_STATUS_OK;
}

static bf_status query_limits(bf_cl_ctx *c)
{
    cl_device_fp_config fp = 0;
    cl_int err = c->f->clGetDeviceInfo(c->device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                                       sizeof c->max_wg, &c->max_wg, NULL);
    if (err == CL_SUCCESS)
        err = c->f->clGetDeviceInfo(c->device, CL_DEVICE_MAX_WORK_ITEM_SIZES,
                                    sizeof c->max_item, c->max_item, NULL);
    if (err == CL_SUCCESS)
        err = c->f->clGetDeviceInfo(c->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof c->local_mem,
                                    &c->local_mem, NULL);
    if (err == CL_SUCCESS)
        err = c->f->clGetDeviceInfo(c->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                                    sizeof c->max_alloc, &c->max_alloc, NULL);
    if (err == CL_SUCCESS)
        err = c->f->clGetDeviceInfo(c->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp,
                                    NULL);
    if (err != CL_SUCCESS)
        return bf_cl_fail(c, err, "clGetDeviceInfo");
    c->exact_div = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    /* GEMM tile width: 16 floats fill an AVX-512 register on CPUs; GPUs keep registers for
     * occupancy with 4 (a work-item holds 8 x tn accumulators).  Gather kernels: CPUs pay
     * per work-item (index arithmetic, PoCL's work-item loops), so a work-item takes 16
     * outputs of a row; GPUs want one per work-item for coalescing.
     * BF_OPENCL_GPU_LAYOUT=1 forces the GPU choices on any device (tests them on PoCL). */
    {
        const char *env = getenv("BF_OPENCL_GPU_LAYOUT");
        c->gpu_layout = !c->is_cpu || (env && env[0] == '1');
    }
    c->tn = c->gpu_layout ? 4 : 16;
    c->tm = 8;
    if (getenv("BF_OPENCL_TM") && atoi(getenv("BF_OPENCL_TM")) == 16)
        c->tm = 16;
    c->rw = c->gpu_layout ? 1 : 16;
    return BF_STATUS_OK;
}

/* Builds all kernel files into one program; on failure the message carries the log. */
static bf_status build_program(bf_cl_ctx *c)
{
    const char *srcs[BF_CL_NUM_SOURCES];
    char opts[768], *log = NULL;
    const char *extra = getenv("BF_OPENCL_BUILD_OPTIONS");
    size_t log_len = 0;
    cl_int err;
    bf_status st;
    for (int i = 0; i < BF_CL_NUM_SOURCES; i++)
        srcs[i] = bf_cl_sources[i].text;
    c->program = c->f->clCreateProgramWithSource(c->context, BF_CL_NUM_SOURCES, srcs, NULL,
                                                 &err);
    if (err != CL_SUCCESS)
        return bf_cl_fail(c, err, "clCreateProgramWithSource");
    /* no -cl-fast-relaxed-math / -cl-mad-enable: the quantizer must be bit-exact */
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 -DBF_TN=%d -DBF_TM=%d -DBF_RW=%d -DBF_P_FAST=%d%s",
             c->tn, c->tm, c->rw, c->gpu_layout,
             c->exact_div ? " -cl-fp32-correctly-rounded-divide-sqrt" : "");
    /* extra options (appended, so they win): for experiments and the failure test */
    if (extra && strlen(opts) + strlen(extra) + 2 < sizeof opts)
        strcat(strcat(opts, " "), extra);
    err = c->f->clBuildProgram(c->program, 1, &c->device, opts, NULL, NULL);
    if (err == CL_SUCCESS)
        return BF_STATUS_OK;
    c->f->clGetProgramBuildInfo(c->program, c->device, CL_PROGRAM_BUILD_LOG, 0, NULL,
                                &log_len);
    log = calloc(1, log_len + 1);
    if (log)
        c->f->clGetProgramBuildInfo(c->program, c->device, CL_PROGRAM_BUILD_LOG, log_len, log,
                                    NULL);
    st = bf_error(BF_STATUS_OPENCL, "OpenCL clBuildProgram failed on %s: %s (%d); options "
                  "'%s'; build log:\n%s", c->name, bf_cl_strerror(err), (int)err, opts,
                  log ? log : "(out of memory for the log)");
    free(log);
    return st;
}

static bf_status create_kernels(bf_cl_ctx *c)
{
    cl_int err;
    for (int k = 0; k < BF_K_COUNT_; k++) {
        c->kernels[k] = c->f->clCreateKernel(c->program, bf_cl_kernel_names[k], &err);
        if (err != CL_SUCCESS)
            return bf_error(BF_STATUS_OPENCL, "OpenCL clCreateKernel(%s) failed on %s: %s (%d)",
                            bf_cl_kernel_names[k], c->name, bf_cl_strerror(err), (int)err);
        err = c->f->clGetKernelWorkGroupInfo(c->kernels[k], c->device, CL_KERNEL_WORK_GROUP_SIZE,
                                             sizeof c->kernel_wg[k], &c->kernel_wg[k], NULL);
        if (err != CL_SUCCESS)
            return bf_cl_fail(c, err, "clGetKernelWorkGroupInfo");
        if (c->kernel_wg[k] == 0)
            c->kernel_wg[k] = 1;
    }
    return BF_STATUS_OK;
}

bf_status bf_cl_ctx_create(bf_cl_ctx **out, int index)
{
    bf_cl_ctx *c = NULL;
    cl_context_properties props[3];
    cl_int err;
    bf_status st;
    *out = NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "out of memory");
    snprintf(c->name, sizeof c->name, "(no device yet)");
    if (!(c->f = bf_cl_load())) {
        st = BF_STATUS_OPENCL;
        goto fail;
    }
    if ((st = pick_device(c, index)) != BF_STATUS_OK || (st = query_limits(c)) != BF_STATUS_OK)
        goto fail;
    props[0] = CL_CONTEXT_PLATFORM;
    props[1] = (cl_context_properties)c->platform;
    props[2] = 0;
    c->context = c->f->clCreateContext(props, 1, &c->device, NULL, NULL, &err);
    if ((st = BF_CL_CHECK(c, err, "clCreateContext")) != BF_STATUS_OK)
        goto fail;
    c->queue = c->f->clCreateCommandQueue(c->context, c->device, CL_QUEUE_PROFILING_ENABLE,
                                          &err);
    if ((st = BF_CL_CHECK(c, err, "clCreateCommandQueue")) != BF_STATUS_OK)
        goto fail;
    if ((st = build_program(c)) != BF_STATUS_OK || (st = create_kernels(c)) != BF_STATUS_OK)
        goto fail;
    *out = c;
    return BF_STATUS_OK;
fail:
    bf_cl_ctx_destroy(c);
    return st;
}

void bf_cl_ctx_destroy(bf_cl_ctx *c)
{
    if (!c)
        return;
    if (c->queue)
        c->f->clFinish(c->queue);
    for (int k = 0; k < BF_K_COUNT_; k++)
        if (c->kernels[k])
            c->f->clReleaseKernel(c->kernels[k]);
    if (c->program)
        c->f->clReleaseProgram(c->program);
    if (c->queue)
        c->f->clReleaseCommandQueue(c->queue);
    if (c->context)
        c->f->clReleaseContext(c->context);
    free(c);
}

bf_status bf_cl_set_args(bf_cl_ctx *c, int kid, const bf_cl_arg *args, int n)
{
    for (int i = 0; i < n; i++) {
        cl_int err = c->f->clSetKernelArg(c->kernels[kid], (cl_uint)i, args[i].size,
                                          args[i].ptr);
        if (err != CL_SUCCESS)
            return bf_error(BF_STATUS_OPENCL, "OpenCL clSetKernelArg(%s, %d) failed on %s: "
                            "%s (%d)", bf_cl_kernel_names[kid], i, c->name,
                            bf_cl_strerror(err), (int)err);
    }
    return BF_STATUS_OK;
}

/* Default local size: up to 64 work-items (a wavefront / two warps on GPUs; on CPUs PoCL
 * runs a work-group as one loop), filled along dim 0 then dim 1, never more than the
 * kernel and device allow nor than the work needs (small devices, tiny tensors).  Only
 * dim 0 may be rounded up (every kernel guards its dim 0): in dim 1 the local size
 * divides the global size. */
static void default_local(const bf_cl_ctx *c, int kid, int dims, const size_t gws[3],
                          size_t lws[3])
{
    size_t budget = c->kernel_wg[kid] < 64 ? c->kernel_wg[kid] : 64, l = 1;
    lws[0] = lws[1] = lws[2] = 1;
    while (l * 2 <= budget && l * 2 <= c->max_item[0] && l < gws[0])
        l *= 2;
    lws[0] = l;
    budget /= l;
    for (l = 1; dims > 1 && l * 2 <= budget && l * 2 <= c->max_item[1] && gws[1] % (l * 2) == 0;)
        l *= 2;
    lws[1] = l;
}

bf_status bf_cl_launch(bf_cl_ctx *c, int kid, int dims, const size_t gws[3],
                       const size_t *lws, cl_event *ev)
{
    size_t l[3] = {1, 1, 1}, g[3] = {1, 1, 1};
    cl_int err;
    if (lws)
        memcpy(l, lws, (size_t)dims * sizeof *l);
    else
        default_local(c, kid, dims, gws, l);
    for (int d = 0; d < dims; d++)
        g[d] = (gws[d] + l[d] - 1) / l[d] * l[d];
    err = c->f->clEnqueueNDRangeKernel(c->queue, c->kernels[kid], (cl_uint)dims, NULL, g, l, 0,
                                       NULL, ev);
    if (err != CL_SUCCESS)
        return bf_error(BF_STATUS_OPENCL, "OpenCL clEnqueueNDRangeKernel(%s, global %zux%zux%zu,"
                        " local %zux%zux%zu) failed on %s: %s (%d)", bf_cl_kernel_names[kid],
                        g[0], g[1], g[2], l[0], l[1], l[2], c->name, bf_cl_strerror(err),
                        (int)err);
    return BF_STATUS_OK;
}

bf_status bf_cl_buffer(bf_cl_ctx *c, size_t bytes, cl_mem *out)
{
    cl_int err;
    bytes += BF_CL_SLACK * sizeof(float);
    if (bytes > c->max_alloc)
        return bf_error(BF_STATUS_OUT_OF_MEMORY, "OpenCL buffer of %zu bytes exceeds %s's "
                        "CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu)", bytes, c->name,
                        (unsigned long long)c->max_alloc);
    *out = c->f->clCreateBuffer(c->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return bf_error(BF_STATUS_OPENCL, "OpenCL clCreateBuffer(%zu bytes) failed on %s: %s "
                        "(%d)", bytes, c->name, bf_cl_strerror(err), (int)err);
    }
    return BF_STATUS_OK;
}

bf_status bf_cl_write(bf_cl_ctx *c, cl_mem buf, size_t bytes, const void *src)
{
    cl_int err = c->f->clEnqueueWriteBuffer(c->queue, buf, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
    return BF_CL_CHECK(c, err, "clEnqueueWriteBuffer");
}
