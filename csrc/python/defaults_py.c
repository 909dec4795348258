/* butterfly._C.defaults(): the C defaults (bf_*_default_params) as Python dicts, so that
 * Python takes every default from the one place that defines it. */
#include "python/common.h"

#include <stddef.h>

typedef enum field_kind {
    FIELD_INT,
    FIELD_BOOL,    /* an int used as a flag */
    FIELD_FLOAT,
    FIELD_DOUBLE,
    FIELD_SIZE,    /* size_t */
    FIELD_STR,     /* const char *: str, or None for NULL */
    FIELD_DIMS,    /* int[3] -> (C, H, W) */
    FIELD_PART,    /* bf_part -> its int, as Plan takes it */
    FIELD_CODEC,   /* bf_codec -> 'raw' / 'zstd', as Client takes it */
    FIELD_COMPUTE, /* bf_compute_kind -> 'echo' / 'plan' / 'custom' */
    FIELD_STRUCT,  /* a nested params struct -> a dict of its own */
} field_kind;

/* One field of a params struct: its C name, how to read it, where it is.  Pointers the
 * caller fills (callbacks, arrays) have no row. */
typedef struct field {
    const char *name;
    field_kind kind;
    size_t offset;
    const struct field *sub; /* FIELD_STRUCT: the nested struct's rows */
} field;

#define ROW(type, name, kind) {#name, kind, offsetof(type, name), NULL}
#define SUB(type, name, rows) {#name, FIELD_STRUCT, offsetof(type, name), rows}
#define END {NULL, FIELD_INT, 0, NULL}

static const field plan_fields[] = {
    ROW(bf_plan_params, part_begin, FIELD_PART),
    ROW(bf_plan_params, part_end, FIELD_PART),
    ROW(bf_plan_params, batch, FIELD_INT),
    ROW(bf_plan_params, training, FIELD_BOOL),
    ROW(bf_plan_params, input_grad, FIELD_BOOL),
    END,
};

static const field sgd_fields[] = {
    ROW(bf_sgd_params, lr, FIELD_FLOAT),
    ROW(bf_sgd_params, momentum, FIELD_FLOAT),
    ROW(bf_sgd_params, weight_decay, FIELD_FLOAT),
    ROW(bf_sgd_params, nesterov, FIELD_BOOL),
    END,
};

static const field adam_fields[] = {
    ROW(bf_adam_params, lr, FIELD_FLOAT),
    ROW(bf_adam_params, beta1, FIELD_FLOAT),
    ROW(bf_adam_params, beta2, FIELD_FLOAT),
    ROW(bf_adam_params, eps, FIELD_FLOAT),
    ROW(bf_adam_params, weight_decay, FIELD_FLOAT),
    END,
};

static const field conn_fields[] = {
    ROW(bf_conn_params, heartbeat_ms, FIELD_INT),
    ROW(bf_conn_params, timeout_ms, FIELD_INT),
    ROW(bf_conn_params, ttl_ms, FIELD_INT),
    END,
};

/* create and create_arg (CUSTOM, C callers only) are left out */
static const field compute_fields[] = {
    ROW(bf_compute_params, kind, FIELD_COMPUTE),
    ROW(bf_compute_params, max_batch, FIELD_INT),
    ROW(bf_compute_params, model_path, FIELD_STR),
    ROW(bf_compute_params, n_threads, FIELD_INT),
    ROW(bf_compute_params, dims, FIELD_DIMS),
    ROW(bf_compute_params, num_classes, FIELD_INT),
    ROW(bf_compute_params, split, FIELD_INT),
    ROW(bf_compute_params, model_hash, FIELD_STR),
    ROW(bf_compute_params, delay_us, FIELD_INT),
    END,
};

static const field worker_fields[] = {
    ROW(bf_worker_params, connect, FIELD_STR),
    ROW(bf_worker_params, max_batch, FIELD_INT),
    ROW(bf_worker_params, batch_timeout_us, FIELD_INT),
    ROW(bf_worker_params, prefetch, FIELD_INT),
    ROW(bf_worker_params, heartbeat_interval_ms, FIELD_INT),
    ROW(bf_worker_params, heartbeat_liveness, FIELD_INT),
    ROW(bf_worker_params, reconnect_max_ms, FIELD_INT),
    ROW(bf_worker_params, max_payload, FIELD_INT),
    ROW(bf_worker_params, n_threads, FIELD_INT),
    ROW(bf_worker_params, stop_fd, FIELD_INT),
    ROW(bf_worker_params, curve_server_key, FIELD_STR),
    ROW(bf_worker_params, curve_key_file, FIELD_STR),
    ROW(bf_worker_params, rt_priority, FIELD_INT),
    SUB(bf_worker_params, conn, conn_fields),
    SUB(bf_worker_params, compute, compute_fields),
    END,
};

static const field pool_fields[] = {
    ROW(bf_pool_params, frontend, FIELD_STR),
    ROW(bf_pool_params, backend, FIELD_STR),
    ROW(bf_pool_params, n_workers, FIELD_INT),
    ROW(bf_pool_params, queue_max, FIELD_INT),
    ROW(bf_pool_params, max_message, FIELD_INT),
    ROW(bf_pool_params, heartbeat_interval_ms, FIELD_INT),
    ROW(bf_pool_params, heartbeat_liveness, FIELD_INT),
    ROW(bf_pool_params, queue_timeout_ms, FIELD_INT),
    ROW(bf_pool_params, drain_timeout_ms, FIELD_INT),
    ROW(bf_pool_params, n_threads, FIELD_INT),
    ROW(bf_pool_params, curve_key_file, FIELD_STR),
    ROW(bf_pool_params, curve_allow_file, FIELD_STR),
    ROW(bf_pool_params, curve_worker_allow_file, FIELD_STR),
    ROW(bf_pool_params, rt_priority, FIELD_INT),
    SUB(bf_pool_params, conn, conn_fields),
    SUB(bf_pool_params, worker, worker_fields),
    END,
};

static const field client_fields[] = {
    ROW(bf_client_params, endpoint, FIELD_STR),
    ROW(bf_client_params, timeout_ms, FIELD_INT),
    ROW(bf_client_params, retries, FIELD_INT),
    ROW(bf_client_params, model_hash, FIELD_STR),
    ROW(bf_client_params, split, FIELD_INT),
    ROW(bf_client_params, codec, FIELD_CODEC),
    ROW(bf_client_params, zstd_level, FIELD_INT),
    ROW(bf_client_params, curve_server_key, FIELD_STR),
    ROW(bf_client_params, curve_key_file, FIELD_STR),
    SUB(bf_client_params, conn, conn_fields),
    END,
};

/* the payloads, their ranges and the record arrays come from the caller's arrays */
static const field load_fields[] = {
    SUB(bf_load_params, client, client_fields),
    ROW(bf_load_params, n_clients, FIELD_INT),
    ROW(bf_load_params, rate, FIELD_DOUBLE),
    ROW(bf_load_params, seconds, FIELD_DOUBLE),
    ROW(bf_load_params, n_payloads, FIELD_INT),
    ROW(bf_load_params, dims, FIELD_DIMS),
    ROW(bf_load_params, k, FIELD_INT),
    ROW(bf_load_params, max_records, FIELD_SIZE),
    ROW(bf_load_params, rt_priority, FIELD_INT),
    END,
};

static PyObject *fields_dict(const void *params, const field *rows);

/* The shortest decimal that reads back as the same float: 0.1 as the C source wrote it, not
 * the 0.10000000149 a float widened to double shows. */
static PyObject *float_value(float f)
{
    for (int precision = 1; precision < 9; precision++) {
        char *s = PyOS_double_to_string((double)f, 'g', precision, 0, NULL);
        double d;
        if (s == NULL)
            return NULL;
        d = PyOS_string_to_double(s, NULL, NULL);
        PyMem_Free(s);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        if ((float)d == f)
            return PyFloat_FromDouble(d);
    }
    return PyFloat_FromDouble((double)f);
}

/* A new reference to the Python value of one field. */
static PyObject *field_value(const char *base, const field *f)
{
    const void *p = base + f->offset;
    switch (f->kind) {
    case FIELD_INT:
        return PyLong_FromLong(*(const int *)p);
    case FIELD_BOOL:
        return PyBool_FromLong(*(const int *)p);
    case FIELD_FLOAT:
        return float_value(*(const float *)p);
    case FIELD_DOUBLE:
        return PyFloat_FromDouble(*(const double *)p);
    case FIELD_SIZE:
        return PyLong_FromSize_t(*(const size_t *)p);
    case FIELD_STR: {
        const char *s = *(const char *const *)p;
        if (s == NULL)
            Py_RETURN_NONE;
        return PyUnicode_FromString(s);
    }
    case FIELD_DIMS: {
        const int *d = p;
        return Py_BuildValue("(iii)", d[0], d[1], d[2]);
    }
    case FIELD_PART:
        return PyLong_FromLong((long)*(const bf_part *)p);
    case FIELD_CODEC:
        return PyUnicode_FromString(*(const bf_codec *)p == BF_CODEC_ZSTD ? "zstd" : "raw");
    case FIELD_COMPUTE: {
        bf_compute_kind k = *(const bf_compute_kind *)p;
        return PyUnicode_FromString(k == BF_COMPUTE_PLAN ? "plan"
                                    : k == BF_COMPUTE_CUSTOM ? "custom" : "echo");
    }
    case FIELD_STRUCT:
        return fields_dict(p, f->sub);
    }
    return PyErr_Format(PyExc_SystemError, "defaults: field %s has no Python form", f->name);
}

/* A new dict {field name: value} of the params at `params`, or NULL with an exception. */
static PyObject *fields_dict(const void *params, const field *rows)
{
    PyObject *d = PyDict_New();
    for (const field *f = rows; d && f->name; f++) {
        PyObject *v = field_value(params, f);
        if (!v || PyDict_SetItemString(d, f->name, v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

/* Adds defaults[key] = the dict of `params`; -1 on error. */
static int add_group(PyObject *defaults, const char *key, const void *params, const field *rows)
{
    PyObject *d = fields_dict(params, rows);
    int rc = d ? PyDict_SetItemString(defaults, key, d) : -1;
    Py_XDECREF(d);
    return rc;
}

static PyObject *py_defaults(PyObject *module, PyObject *unused)
{
    bf_plan_params plan = bf_plan_default_params();
    bf_compute_params compute = bf_compute_default_params();
    bf_worker_params worker = bf_worker_default_params();
    bf_pool_params pool = bf_pool_default_params();
    bf_client_params client = bf_client_default_params();
    bf_load_params load = bf_load_default_params();
    bf_sgd_params sgd = bf_sgd_default_params();
    bf_adam_params adam = bf_adam_default_params();
    PyObject *out = PyDict_New();
    (void)module, (void)unused;
    /* a new dict each call: a caller may change its copy */
    if (!out || add_group(out, "plan", &plan, plan_fields) < 0 ||
        add_group(out, "compute", &compute, compute_fields) < 0 ||
        add_group(out, "worker", &worker, worker_fields) < 0 ||
        add_group(out, "pool", &pool, pool_fields) < 0 ||
        add_group(out, "client", &client, client_fields) < 0 ||
        add_group(out, "load", &load, load_fields) < 0 ||
        add_group(out, "sgd", &sgd, sgd_fields) < 0 ||
        add_group(out, "adam", &adam, adam_fields) < 0 ||
        add_group(out, "conn", &pool.conn, conn_fields) < 0)
        Py_CLEAR(out);
    return out;
}

static PyMethodDef defaults_functions[] = {
    {"defaults", py_defaults, METH_NOARGS,
     "defaults() -> {group: {field: value}}: the C library's defaults, one dict per params "
     "struct of butterfly.h, read from its bf_*_default_params():\n"
     "  'plan' bf_plan_params, 'compute' bf_compute_params, 'worker' bf_worker_params,\n"
     "  'pool' bf_pool_params, 'client' bf_client_params, 'load' bf_load_params,\n"
     "  'sgd' bf_sgd_params, 'adam' bf_adam_params, 'conn' bf_conn_params (the pool's; worker and client share it).\n"
     "Keys are the C field names; a nested struct is a nested dict (pool['worker'], "
     "pool['conn'], worker['compute'], load['client'], ...).  ints, floats and flags (bool) "
     "as Python values; strings as str, or None for NULL; dims as (C, H, W); part_begin / "
     "part_end as the part's int; codec as 'raw' / 'zstd'; compute kind as 'echo' / 'plan' "
     "/ 'custom'.  Pointers that only C callers fill (compute.create, create_arg; load's "
     "payloads, ranges and record arrays) are left out.  A new dict each call."},
    {NULL, NULL, 0, NULL},
};

int bf_py_defaults_init(PyObject *module)
{
    return PyModule_AddFunctions(module, defaults_functions);
}
