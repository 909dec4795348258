/* Lazy loading of the OpenCL ICD loader with dlopen, so butterfly builds and imports on
 * machines without OpenCL; only asking for the OpenCL backend needs it. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cl/cl_internal.h"

static bf_cl_fns g_fns;
static int g_ok;
static char g_why[512];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void load_once(void)
{
    const char *env = getenv("BF_OPENCL_LIBRARY");
    const char *names[] = {env, "libOpenCL.so.1", "libOpenCL.so"};
    void *h = NULL;
    const char *err = "not found";
    for (int i = env ? 0 : 1; i < 3 && !h; i++) {
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h)
            err = dlerror();
        if (env)
            break; /* an explicit choice is not second-guessed */
    }
    if (!h) {
        snprintf(g_why, sizeof g_why,
                 "OpenCL is not available: cannot load the ICD loader (%s); install "
                 "ocl-icd-libopencl1 and a driver (e.g. pocl-opencl-icd)", err ? err : "?");
        return;
    }
#define BF_CL_SYM(f)                                                                       \
    *(void **)(&g_fns.f) = dlsym(h, #f);                                                   \
    if (!g_fns.f) {                                                                        \
        snprintf(g_why, sizeof g_why, "OpenCL loader lacks %s (OpenCL 1.2 needed)", #f);   \
        return; /* the handle stays open: harmless, and dlclose could race other users */  \
    }
    BF_CL_FUNCS(BF_CL_SYM)
#undef BF_CL_SYM
    g_ok = 1;
}

const bf_cl_fns *bf_cl_load(void)
{
    pthread_once(&g_once, load_once);
    if (!g_ok) {
        bf_error(BF_STATUS_OPENCL, "%s", g_why);
        return NULL;
    }
    return &g_fns;
}

const char *bf_cl_strerror(cl_int err)
{
    switch (err) {
#define E(x) case x: return #x;
        E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
        E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES)
        E(CL_OUT_OF_HOST_MEMORY) E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_BUILD_PROGRAM_FAILURE)
        E(CL_MAP_FAILURE) E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM)
        E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT) E(CL_INVALID_QUEUE_PROPERTIES)
        E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR) E(CL_INVALID_MEM_OBJECT)
        E(CL_INVALID_BUFFER_SIZE) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS)
        E(CL_INVALID_PROGRAM) E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME)
        E(CL_INVALID_KERNEL_DEFINITION) E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX)
        E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE) E(CL_INVALID_KERNEL_ARGS)
        E(CL_INVALID_WORK_DIMENSION) E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
        E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST) E(CL_INVALID_EVENT)
        E(CL_INVALID_OPERATION) E(CL_INVALID_GLOBAL_WORK_SIZE) E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
#undef E
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
        return "unknown OpenCL error";
    }
}
