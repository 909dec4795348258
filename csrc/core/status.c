/* Status codes, the thread-local error message, thread count. */
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "butterfly.h"

static _Thread_local char bf_errbuf[1024];

const char *bf_status_str(bf_status status)
{
    switch (status) {
    case BF_STATUS_OK: return "ok";
    case BF_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case BF_STATUS_OUT_OF_MEMORY: return "out of memory";
    case BF_STATUS_UNSUPPORTED: return "unsupported";
    case BF_STATUS_BAD_MODEL: return "bad model";
    case BF_STATUS_IO: return "i/o error";
    case BF_STATUS_BACKEND: return "oneDNN error";
    case BF_STATUS_OPENCL: return "OpenCL error";
    case BF_STATUS_NETWORK: return "network error";
    case BF_STATUS_PROTOCOL: return "protocol error";
    case BF_STATUS_TIMEOUT: return "timeout";
    case BF_STATUS_INTERRUPTED: return "interrupted";
    case BF_STATUS_BUSY: return "busy";
    case BF_STATUS_REFUSED: return "refused";
    case BF_STATUS_NUMERIC: return "non-finite value";
    default: return "unknown status";
    }
}

const char *bf_last_error(void) { return bf_errbuf; }

bf_status bf_error(bf_status status, const char *fmt, ...)
{
    /* formatted aside first: a caller may wrap the last message (an argument pointing into
     * bf_errbuf), which vsnprintf into bf_errbuf itself would garble */
    char msg[sizeof bf_errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(bf_errbuf, msg, sizeof msg);
    return status;
}

void bf_set_num_threads(int n)
{
    if (n > 0)
        omp_set_num_threads(n);
}

int bf_get_num_threads(void) { return omp_get_max_threads(); }
