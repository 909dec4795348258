/* butterfly._C.cl_devices() and butterfly._C.ClPlan: thin wrappers of the OpenCL backend
 * (bf_cl_devices, bf_cl_plan).  The GIL is released around every call that reaches the
 * OpenCL runtime (device listing, kernel builds, runs). */
#include "python/common.h"

#define MAX_DEVICES 64

typedef struct ClPlanObject {
    PyObject_HEAD
    bf_cl_plan *plan;
    PyObject *model_obj; /* keeps the borrowed bf_model alive */
    PyThread_type_lock lock;
} ClPlanObject;

static const char *type_name(bf_cl_device_type t)
{
    return t == BF_CL_DEVICE_GPU ? "gpu" : t == BF_CL_DEVICE_CPU ? "cpu"
           : t == BF_CL_DEVICE_ACCELERATOR ? "accelerator" : "other";
}

static PyObject *py_cl_devices(PyObject *mod, PyObject *unused)
{
    bf_py_state *state = bf_py_module_state(mod);
    bf_cl_device_info *info = PyMem_Calloc(MAX_DEVICES, sizeof *info);
    PyObject *list = NULL;
    int n = 0;
    bf_status st;
    (void)unused;
    if (!info)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    st = bf_cl_devices(info, MAX_DEVICES, &n);
    Py_END_ALLOW_THREADS
    if (st != BF_STATUS_OK) {
        PyMem_Free(info);
        return bf_py_raise(state, st);
    }
    if (n > MAX_DEVICES)
        n = MAX_DEVICES;
    if (!(list = PyList_New(n)))
        goto done;
    for (int i = 0; i < n; i++) {
        PyObject *d = Py_BuildValue(
            "{s:i,s:s,s:s,s:s,s:s,s:i,s:L,s:L,s:L}", "index", i, "platform", info[i].platform,
            "name", info[i].name, "version", info[i].version, "type", type_name(info[i].type),
            "compute_units", info[i].compute_units, "global_mem", (long long)info[i].global_mem,
            "local_mem", (long long)info[i].local_mem, "max_work_group",
            (long long)info[i].max_work_group);
        if (!d) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, d);
    }
done:
    PyMem_Free(info);
    return list;
}

static PyObject *clplan_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"model", "begin", "end", "batch", "device", NULL};
    bf_py_state *state = bf_py_type_state(type);
    PyObject *mobj;
    int begin, end, batch, device = -1;
    bf_plan_params pp = bf_plan_default_params();
    bf_model *m;
    bf_cl_plan *plan = NULL;
    ClPlanObject *self;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oiii|i:ClPlan", kwlist, &mobj, &begin, &end,
                                     &batch, &device))
        return bf_py_arg_error(state, "ClPlan");
    if (!(m = bf_py_model_get(state, mobj)))
        return NULL;
    pp.part_begin = (bf_part)begin;
    pp.part_end = (bf_part)end;
    pp.batch = batch;
    Py_BEGIN_ALLOW_THREADS
    st = bf_cl_plan_create(&plan, m, &pp, device);
    Py_END_ALLOW_THREADS
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    self = (ClPlanObject *)type->tp_alloc(type, 0);
    if (!self || !(self->lock = PyThread_allocate_lock())) {
        bf_cl_plan_destroy(plan);
        Py_XDECREF(self);
        return self ? PyErr_NoMemory() : NULL;
    }
    self->plan = plan;
    Py_INCREF(mobj);
    self->model_obj = mobj;
    return (PyObject *)self;
}

static void clplan_dealloc(ClPlanObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    bf_cl_plan *plan = self->plan;
    Py_BEGIN_ALLOW_THREADS /* finishing the queue may wait on the device */
    bf_cl_plan_destroy(plan);
    Py_END_ALLOW_THREADS
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_XDECREF(self->model_obj);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *clplan_get_io(ClPlanObject *self, void *closure)
{
    bf_io_desc a, b;
    (void)closure;
    bf_cl_plan_io(self->plan, 0, &a);
    bf_cl_plan_io(self->plan, 1, &b);
    return Py_BuildValue("(NN)", bf_py_io_dict(&a), bf_py_io_dict(&b));
}

static PyObject *clplan_get_device(ClPlanObject *self, void *closure)
{
    char buf[256];
    (void)closure;
    bf_cl_plan_device(self->plan, buf, sizeof buf);
    return PyUnicode_FromString(buf);
}

/* forward(src): float32 NCHW in; float32 out, or (uint8 payload, float32 ranges (N, 2)). */
static PyObject *clplan_forward(ClPlanObject *self, PyObject *xo)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    PyObject *out = NULL, *orange = NULL;
    PyArrayObject *x;
    bf_io_desc in, od;
    npy_intp dims[4];
    bf_status st;
    bf_cl_plan_io(self->plan, 0, &in);
    bf_cl_plan_io(self->plan, 1, &od);
    for (int d = 0; d < 4; d++)
        dims[d] = (npy_intp)in.dims[d];
    if (!(x = bf_py_input_array(state, xo, NPY_FLOAT32, 4, dims, "src")))
        return NULL;
    if (bf_py_new_outputs(&od, &out, &orange) < 0) {
        Py_DECREF(x);
        return NULL;
    }
    BF_PY_LOCKED_CALL(self->lock, st,
                      bf_cl_plan_forward(self->plan, PyArray_DATA(x), NULL,
                                         PyArray_DATA((PyArrayObject *)out),
                                         orange ? PyArray_DATA((PyArrayObject *)orange) : NULL));
    Py_DECREF(x);
    if (st != BF_STATUS_OK) {
        Py_DECREF(out);
        Py_XDECREF(orange);
        return bf_py_raise(state, st);
    }
    return bf_py_outputs(out, orange);
}

/* profile(): [{"first", "last", "layers": [names], "kernel", "ms"}] of the last forward. */
static PyObject *clplan_profile(ClPlanObject *self, PyObject *unused)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_model *m = bf_py_model_get(state, self->model_obj);
    bf_cl_op_time *t = NULL;
    PyObject *list = NULL;
    int n = 0;
    bf_status st;
    (void)unused;
    if (!m || bf_py_check(state, bf_cl_plan_profile(self->plan, NULL, 0, &n)) < 0)
        return NULL;
    if (n && !(t = PyMem_Calloc((size_t)n, sizeof *t)))
        return PyErr_NoMemory();
    /* a copy, but under the plan's lock: a forward in another thread rewrites the times */
    BF_PY_LOCKED_CALL(self->lock, st, bf_cl_plan_profile(self->plan, t, n, &n));
    if (bf_py_check(state, st) < 0 || !(list = PyList_New(n)))
        goto done;
    for (int i = 0; i < n; i++) {
        PyObject *names = PyList_New(0), *d = NULL;
        for (int l = t[i].first_layer; names && l <= t[i].last_layer; l++) {
            PyObject *s = PyUnicode_FromString(bf_model_layer(m, l)->name);
            if (!s || PyList_Append(names, s) < 0)
                Py_CLEAR(names);
            Py_XDECREF(s);
        }
        if (names)
            d = Py_BuildValue("{s:i,s:i,s:N,s:s,s:d}", "first", t[i].first_layer, "last",
                              t[i].last_layer, "layers", names, "kernel", t[i].kernel, "ms",
                              t[i].ms);
        if (!d) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, d);
    }
done:
    PyMem_Free(t);
    return list;
}

static PyMethodDef clplan_methods[] = {
    {"forward", (PyCFunction)clplan_forward, METH_O,
     "forward(src): run the plan on float32 NCHW src; a quantized destination comes back "
     "as (uint8 payload, float32 ranges (N, 2))."},
    {"profile", (PyCFunction)clplan_profile, METH_NOARGS,
     "profile(): per-op device times (ms) of the last forward, from OpenCL event profiling; "
     "fused layers share one entry."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef clplan_getset[] = {
    {"io", (getter)clplan_get_io, NULL, "(source, destination) descriptions", NULL},
    {"device", (getter)clplan_get_device, NULL, "the device the plan runs on", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot clplan_slots[] = {
    {Py_tp_new, clplan_new},
    {Py_tp_dealloc, clplan_dealloc},
    {Py_tp_methods, clplan_methods},
    {Py_tp_getset, clplan_getset},
    {Py_tp_doc, "ClPlan(model, begin, end, batch, device=-1): parts begin..end (head, reduce)"
                " of a model compiled for OpenCL device `device` (-1: first GPU, else first "
                "device)."},
    {0, NULL},
};

static PyType_Spec clplan_spec = {"butterfly._C.ClPlan", sizeof(ClPlanObject), 0,
                                  Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, clplan_slots};

static PyMethodDef cl_functions[] = {
    {"cl_devices", py_cl_devices, METH_NOARGS,
     "cl_devices(): the OpenCL devices, a list of dicts (index, platform, name, type, ...)."},
    {NULL, NULL, 0, NULL},
};

int bf_py_cl_init(PyObject *module)
{
    bf_py_state *state = bf_py_module_state(module);
    state->cl_plan_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &clplan_spec, NULL);
    if (!state->cl_plan_type || PyModule_AddType(module, state->cl_plan_type) < 0)
        return -1;
    return PyModule_AddFunctions(module, cl_functions);
}
