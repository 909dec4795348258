/* butterfly._C: module definition, the exception hierarchy, shared argument helpers. */
#define BF_PY_MODULE_MAIN
#include "python/common.h"

#include <string.h>

static struct PyModuleDef module_def;

typedef struct exc_def {
    bf_status status;
    const char *name;
    PyObject **builtin;
    const char *doc;
} exc_def;

bf_py_state *bf_py_module_state(PyObject *module)
{
    return (bf_py_state *)PyModule_GetState(module);
}

bf_py_state *bf_py_type_state(PyTypeObject *type)
{
    return bf_py_module_state(PyType_GetModuleByDef(type, &module_def));
}

PyObject *bf_py_exception(bf_py_state *state, bf_status status)
{
    if (status > BF_STATUS_OK && status < BF_STATUS_COUNT_ && state->exc[status])
        return state->exc[status];
    return state->error;
}

PyObject *bf_py_raise(bf_py_state *state, bf_status status)
{
    const char *msg = bf_last_error();
    if (msg == NULL || *msg == '\0')
        msg = bf_status_str(status);
    /* the message may quote bytes that are not UTF-8 (a file name): escaped, not a
     * UnicodeDecodeError in place of the error */
    PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "backslashreplace");
    if (text != NULL) {
        PyErr_SetObject(bf_py_exception(state, status), text);
        Py_DECREF(text);
    }
    return NULL;
}

PyObject *bf_py_arg_error(bf_py_state *state, const char *fname)
{
    PyObject *type, *value, *tb;
    int overflow = PyErr_ExceptionMatches(PyExc_OverflowError);
    if (!PyErr_Occurred() || PyErr_ExceptionMatches(state->error) ||
        !(overflow || PyErr_ExceptionMatches(PyExc_ValueError)))
        return NULL;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT), "%s: %S%s", fname, value,
                 overflow ? " (integer arguments must be below 2**31)"
                          : " (strings must be valid text without NUL characters)");
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return NULL;
}

int bf_py_text_arg(bf_py_state *state, PyObject *o, const char *what, PyObject **out)
{
    *out = NULL;
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.80s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    if (!(*out = PyUnicode_AsUTF8String(o))) {
        bf_py_arg_error(state, what);
        return -1;
    }
    if (strlen(PyBytes_AS_STRING(*out)) != (size_t)PyBytes_GET_SIZE(*out)) {
        Py_CLEAR(*out);
        PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                     "%s contains a NUL character, which would cut it short", what);
        return -1;
    }
    return 0;
}

int bf_py_check(bf_py_state *state, bf_status status)
{
    if (status == BF_STATUS_OK)
        return 0;
    bf_py_raise(state, status);
    return -1;
}

PyArrayObject *bf_py_input_array(bf_py_state *state, PyObject *obj, int type_num, int ndim,
                                 const npy_intp *dims, const char *what)
{
    PyArrayObject *a;
    PyObject *exc = bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT);
    if (!PyArray_Check(obj)) {
        PyErr_Format(exc, "%s must be a numpy array, not %.80s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != type_num) {
        PyArray_Descr *want = PyArray_DescrFromType(type_num);
        PyErr_Format(exc, "%s must have dtype %S, not %S", what, (PyObject *)want,
                     (PyObject *)PyArray_DESCR(a));
        Py_XDECREF(want);
        return NULL;
    }
    if (PyArray_NDIM(a) != ndim) {
        PyErr_Format(exc, "%s must have %d dimensions, not %d", what, ndim, PyArray_NDIM(a));
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (dims && dims[i] >= 0 && PyArray_DIM(a, i) != dims[i]) {
            PyErr_Format(exc, "%s: dimension %d must be %zd, not %zd", what, i,
                         (Py_ssize_t)dims[i], (Py_ssize_t)PyArray_DIM(a, i));
            return NULL;
        }
    /* a strided, misaligned or byte-swapped view is copied: the C core reads dense native
     * memory, and the copy lives only as long as the call */
    return (PyArrayObject *)PyArray_FromArray(a, PyArray_DescrFromType(type_num),
                                              NPY_ARRAY_IN_ARRAY);
}

PyObject *bf_py_io_dict(const bf_io_desc *d)
{
    return Py_BuildValue("{s:s,s:(LLLL),s:O}", "dtype", d->dtype == BF_U8 ? "uint8" : "float32",
                         "shape", (long long)d->dims[0], (long long)d->dims[1],
                         (long long)d->dims[2], (long long)d->dims[3], "quantized",
                         d->quantized ? Py_True : Py_False);
}

int bf_py_new_outputs(const bf_io_desc *d, PyObject **out, PyObject **ranges)
{
    npy_intp dims[4], rdims[2];
    for (int i = 0; i < 4; i++)
        dims[i] = (npy_intp)d->dims[i];
    rdims[0] = dims[0];
    rdims[1] = 2;
    *ranges = NULL;
    *out = PyArray_SimpleNew(4, dims, d->dtype == BF_U8 ? NPY_UINT8 : NPY_FLOAT32);
    if (*out && d->quantized && !(*ranges = PyArray_SimpleNew(2, rdims, NPY_FLOAT32)))
        Py_CLEAR(*out);
    return *out ? 0 : -1;
}

PyObject *bf_py_outputs(PyObject *out, PyObject *ranges)
{
    return ranges ? Py_BuildValue("(NN)", out, ranges) : out;
}

static int add_exceptions(PyObject *m, bf_py_state *state)
{
    static const exc_def defs[] = {
        {BF_STATUS_INVALID_ARGUMENT, "InvalidArgument", &PyExc_ValueError,
         "Bad shape, dtype, value or call order."},
        {BF_STATUS_OUT_OF_MEMORY, "OutOfMemory", &PyExc_MemoryError, "Allocation failed."},
        {BF_STATUS_UNSUPPORTED, "UnsupportedError", &PyExc_NotImplementedError,
         "A valid request this build does not implement (an ONNX op, a layer on a "
         "backend). Also named Unsupported."},
        {BF_STATUS_BAD_MODEL, "ModelError", &PyExc_ValueError,
         "Malformed, truncated or inconsistent model."},
        {BF_STATUS_IO, "FileError", &PyExc_OSError, "File system error."},
        {BF_STATUS_BACKEND, "BackendError", &PyExc_RuntimeError, "oneDNN reported an error."},
        {BF_STATUS_OPENCL, "OpenCLError", &PyExc_RuntimeError,
         "OpenCL is not available or reported an error."},
        {BF_STATUS_NETWORK, "NetworkError", &PyExc_ConnectionError, "ZeroMQ reported an error."},
        {BF_STATUS_PROTOCOL, "ProtocolError", &PyExc_ValueError, "Malformed message."},
        {BF_STATUS_TIMEOUT, "Timeout", &PyExc_TimeoutError, "No answer in time."},
        {BF_STATUS_INTERRUPTED, "Interrupted", &PyExc_InterruptedError,
         "A signal interrupted a blocking call."},
        {BF_STATUS_BUSY, "Busy", &PyExc_RuntimeError, "The server's queue is full."},
        {BF_STATUS_REFUSED, "Refused", &PyExc_PermissionError,
         "The server refused the request."},
        {BF_STATUS_NUMERIC, "NumericError", &PyExc_ValueError, "NaN or Inf input."},
    };
    state->error = PyErr_NewExceptionWithDoc("butterfly.Error",
                                             "Base class of every butterfly error.", NULL, NULL);
    if (!state->error || PyModule_AddObjectRef(m, "Error", state->error) < 0)
        return -1;
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        char qual[96];
        PyObject *bases = PyTuple_Pack(2, state->error, *defs[i].builtin), *e;
        if (!bases)
            return -1;
        snprintf(qual, sizeof qual, "butterfly.%s", defs[i].name);
        e = PyErr_NewExceptionWithDoc(qual, defs[i].doc, bases, NULL);
        Py_DECREF(bases);
        if (!e)
            return -1;
        state->exc[defs[i].status] = e; /* the state's reference; the module adds its own */
        if (PyModule_AddObjectRef(m, defs[i].name, e) < 0)
            return -1;
    }
    /* the earlier name of UnsupportedError, kept: the same class */
    if (PyModule_AddObjectRef(m, "Unsupported", state->exc[BF_STATUS_UNSUPPORTED]) < 0)
        return -1;
    return 0;
}

static PyObject *py_set_num_threads(PyObject *module, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > 1024) {
        PyErr_SetString(bf_py_exception(bf_py_module_state(module), BF_STATUS_INVALID_ARGUMENT),
                        "threads must be in [1, 1024]");
        return NULL;
    }
    bf_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *module, PyObject *unused)
{
    (void)module, (void)unused;
    return PyLong_FromLong(bf_get_num_threads());
}

/* The arrays are checked (and copied when they must be) with the GIL; the loss, its
 * gradient and the count run without it. */
static PyObject *py_softmax_xent(PyObject *module, PyObject *args)
{
    bf_py_state *state = bf_py_module_state(module);
    PyObject *zo, *lo, *diff = NULL;
    PyArrayObject *z = NULL, *l = NULL;
    npy_intp ldim[1];
    float loss = 0;
    int correct = 0;
    bf_status st;
    if (!PyArg_ParseTuple(args, "OO:softmax_xent", &zo, &lo))
        return bf_py_arg_error(state, "softmax_xent");
    if (!(z = bf_py_input_array(state, zo, NPY_FLOAT32, 2, NULL, "logits")))
        return NULL;
    ldim[0] = PyArray_DIM(z, 0);
    if (!(l = bf_py_input_array(state, lo, NPY_INT32, 1, ldim, "labels")))
        goto done;
    if (!(diff = PyArray_SimpleNew(2, PyArray_DIMS(z), NPY_FLOAT32)))
        goto done;
    Py_BEGIN_ALLOW_THREADS
    st = bf_softmax_xent(PyArray_DATA(z), PyArray_DATA(l), (int)PyArray_DIM(z, 0),
                         (int)PyArray_DIM(z, 1), &loss, &correct,
                         PyArray_DATA((PyArrayObject *)diff));
    Py_END_ALLOW_THREADS
    if (st != BF_STATUS_OK) {
        Py_CLEAR(diff);
        bf_py_raise(state, st);
    }
done:
    Py_XDECREF(z);
    Py_XDECREF(l);
    return diff ? Py_BuildValue("(diN)", (double)loss, correct, diff) : NULL;
}

/* swish(x (n,) float32, kernel="best"): bf_swish into a new array, without the GIL. */
static PyObject *py_swish(PyObject *module, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"x", "kernel", NULL};
    static const char *const kernels[] = {"best", "avx512", "avx2", "scalar"};
    bf_py_state *state = bf_py_module_state(module);
    PyObject *xo, *y;
    PyArrayObject *x;
    const char *kernel = "best";
    int k = -1;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|s:swish", kwlist, &xo, &kernel))
        return bf_py_arg_error(state, "swish");
    for (int i = 0; i < 4; i++)
        if (!strcmp(kernel, kernels[i]))
            k = i;
    if (k < 0)
        return PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                            "kernel '%s': best, avx512, avx2 or scalar", kernel);
    if (!(x = bf_py_input_array(state, xo, NPY_FLOAT32, 1, NULL, "x")))
        return NULL;
    if (!(y = PyArray_SimpleNew(1, PyArray_DIMS(x), NPY_FLOAT32))) {
        Py_DECREF(x);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = bf_swish((bf_kernel_isa)k, PyArray_DATA(x), PyArray_DATA((PyArrayObject *)y),
                  (size_t)PyArray_DIM(x, 0));
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    if (st != BF_STATUS_OK) {
        Py_DECREF(y);
        return bf_py_raise(state, st);
    }
    return y;
}

static PyObject *py_lr_at(PyObject *module, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"kind", "lr", "total_steps", "step", "warmup_steps", "milestones",
                             "gamma", NULL};
    static const char *const kinds[] = {"constant", "cosine", "step"};
    bf_py_state *state = bf_py_module_state(module);
    bf_lr_schedule s = {BF_LR_CONSTANT, 0, 1, 0, 0, {0}, 0.1f};
    const char *kind;
    long long total, step, warmup = 0;
    PyObject *ms = NULL, *seq = NULL;
    float lr;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sfLL|LOf:lr_at", kwlist, &kind, &s.lr, &total,
                                     &step, &warmup, &ms, &s.gamma))
        return bf_py_arg_error(state, "lr_at");
    s.kind = (bf_lr_kind)-1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(kind, kinds[i]))
            s.kind = (bf_lr_kind)i;
    s.total_steps = total;
    s.warmup_steps = warmup;
    if (ms && ms != Py_None) {
        if (!(seq = PySequence_Fast(ms, "milestones must be a sequence of ints")))
            return NULL;
        s.n_milestones = (int)PySequence_Fast_GET_SIZE(seq);
        for (int i = 0; i < s.n_milestones && i < BF_LR_MAX_MILESTONES; i++)
            s.milestones[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        Py_DECREF(seq);
        if (PyErr_Occurred())
            return NULL;
    }
    /* a formula: cheaper than letting go of the GIL */
    lr = bf_lr_at(&s, step);
    if (lr < 0)
        return PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                            "bad schedule: kind '%s' (constant, cosine or step), %lld steps, "
                            "%lld warm-up, %d milestones (at most %d), step %lld; lr must be "
                            ">= 0", kind, total, warmup, s.n_milestones, BF_LR_MAX_MILESTONES,
                            step);
    return PyFloat_FromDouble(lr);
}

static PyMethodDef module_methods[] = {
    {"lr_at", (PyCFunction)(void (*)(void))py_lr_at, METH_VARARGS | METH_KEYWORDS,
     "lr_at(kind, lr, total_steps, step, warmup_steps=0, milestones=None, gamma=0.1): the "
     "learning rate of a schedule at a step (bf_lr_at)."},
    {"softmax_xent", py_softmax_xent, METH_VARARGS,
     "softmax_xent(logits (N, K) float32, labels (N,) int32) -> (loss, correct, d_logits)."},
    {"swish", (PyCFunction)(void (*)(void))py_swish, METH_VARARGS | METH_KEYWORDS,
     "swish(x (n,) float32, kernel='best'|'avx512'|'avx2'|'scalar'): x * sigmoid(x) by the "
     "kernel inference plans run (bf_swish); UnsupportedError where this CPU cannot run it."},
    {"set_num_threads", py_set_num_threads, METH_O, "Threads used by the calling thread."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "Threads used by the calling thread."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m)
{
    if (add_exceptions(m, bf_py_module_state(m)) < 0 || bf_py_model_init(m) < 0 ||
        bf_py_plan_init(m) < 0 || bf_py_serve_init(m) < 0 || bf_py_client_init(m) < 0 ||
        bf_py_cl_init(m) < 0 || bf_py_defaults_init(m) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "TOPK_MAX", BF_TOPK_MAX) < 0)
        return -1;
    return PyModule_AddIntConstant(m, "MODEL_FORMAT_VERSION", BF_MODEL_FORMAT_VERSION);
}

static int module_import_numpy(PyObject *m)
{
    (void)m;
    import_array1(-1);
    return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    bf_py_state *state = bf_py_module_state(m);
    Py_VISIT(state->error);
    for (int i = 0; i < BF_STATUS_COUNT_; i++)
        Py_VISIT(state->exc[i]);
    Py_VISIT(state->model_type);
    Py_VISIT(state->plan_type);
    Py_VISIT(state->cl_plan_type);
    Py_VISIT(state->pool_type);
    Py_VISIT(state->client_type);
    return 0;
}

static int module_clear(PyObject *m)
{
    bf_py_state *state = bf_py_module_state(m);
    Py_CLEAR(state->error);
    for (int i = 0; i < BF_STATUS_COUNT_; i++)
        Py_CLEAR(state->exc[i]);
    Py_CLEAR(state->model_type);
    Py_CLEAR(state->plan_type);
    Py_CLEAR(state->cl_plan_type);
    Py_CLEAR(state->pool_type);
    Py_CLEAR(state->client_type);
    return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_import_numpy},
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "butterfly._C",
    .m_doc = "The C core of butterfly (oneDNN engine, OpenCL backend, ZeroMQ pool).",
    .m_size = sizeof(bf_py_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__C(void) { return PyModuleDef_Init(&module_def); }
