/* butterfly._C.Plan: a thin wrapper of bf_plan (inference and training). */
#include "python/common.h"

typedef struct PlanObject {
    PyObject_HEAD
    bf_plan *plan;
    PyObject *model_obj; /* keeps the model alive */
    PyThread_type_lock lock;
} PlanObject;

static PyObject *plan_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"model", "begin", "end", "batch", "training", "input_grad", NULL};
    bf_py_state *state = bf_py_type_state(type);
    PyObject *mobj;
    int begin, end, batch, training = 0, input_grad = 0;
    bf_plan_params pp = bf_plan_default_params();
    bf_model *m;
    bf_plan *plan = NULL;
    PlanObject *self;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oiii|pp:Plan", kwlist, &mobj, &begin, &end,
                                     &batch, &training, &input_grad))
        return bf_py_arg_error(state, "Plan");
    if (!(m = bf_py_model_get(state, mobj)))
        return NULL;
    pp.part_begin = (bf_part)begin;
    pp.part_end = (bf_part)end;
    pp.batch = batch;
    pp.training = training;
    pp.input_grad = input_grad;
    Py_BEGIN_ALLOW_THREADS
    st = bf_plan_create(&plan, m, &pp);
    Py_END_ALLOW_THREADS
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    self = (PlanObject *)type->tp_alloc(type, 0);
    if (!self || !(self->lock = PyThread_allocate_lock())) {
        bf_plan_destroy(plan);
        Py_XDECREF(self);
        return self ? PyErr_NoMemory() : NULL;
    }
    self->plan = plan;
    Py_INCREF(mobj);
    self->model_obj = mobj;
    return (PyObject *)self;
}

static void plan_dealloc(PlanObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    bf_plan_destroy(self->plan);
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_XDECREF(self->model_obj);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *plan_get_io(PlanObject *self, void *closure)
{
    bf_io_desc a, b;
    (void)closure;
    bf_plan_io(self->plan, 0, &a);
    bf_plan_io(self->plan, 1, &b);
    return Py_BuildValue("(NN)", bf_py_io_dict(&a), bf_py_io_dict(&b));
}

static PyObject *plan_get_scans(PlanObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(bf_plan_scans(self->plan));
}

static PyObject *plan_forward(PlanObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"src", "ranges", NULL};
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    PyObject *xo, *ro = Py_None, *out = NULL, *orange = NULL;
    PyArrayObject *x = NULL, *r = NULL;
    bf_io_desc in, od;
    npy_intp dims[4], rdims[2];
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:forward", kwlist, &xo, &ro))
        return bf_py_arg_error(state, "forward");
    bf_plan_io(self->plan, 0, &in);
    bf_plan_io(self->plan, 1, &od);
    for (int d = 0; d < 4; d++)
        dims[d] = (npy_intp)in.dims[d];
    rdims[0] = dims[0];
    rdims[1] = 2;
    x = bf_py_input_array(state, xo, in.dtype == BF_U8 ? NPY_UINT8 : NPY_FLOAT32, 4, dims,
                          "src");
    if (!x)
        return NULL;
    if ((in.quantized &&
         !(r = bf_py_input_array(state, ro, NPY_FLOAT32, 2, rdims, "ranges"))) ||
        bf_py_new_outputs(&od, &out, &orange) < 0)
        goto done;
    BF_PY_LOCKED_CALL(self->lock, st,
                      bf_plan_forward(self->plan, PyArray_DATA(x), r ? PyArray_DATA(r) : NULL,
                                      PyArray_DATA((PyArrayObject *)out),
                                      orange ? PyArray_DATA((PyArrayObject *)orange) : NULL));
    if (st != BF_STATUS_OK) {
        bf_py_raise(state, st);
        Py_CLEAR(out);
        Py_CLEAR(orange);
    }
done:
    Py_XDECREF(x);
    Py_XDECREF(r);
    return out ? bf_py_outputs(out, orange) : NULL;
}

/* ---- training ------------------------------------------------------------------------ */

static PyObject *plan_train_step(PlanObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"src", "labels", "lr", "momentum", "weight_decay", "nesterov",
                             "update", NULL};
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    PyObject *xo, *lo;
    PyArrayObject *x = NULL, *l = NULL;
    bf_sgd_params sgd = bf_sgd_default_params();
    bf_io_desc in;
    npy_intp dims[4];
    int update = 1, correct = 0;
    float loss = 0;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|fffpp:train_step", kwlist, &xo, &lo, &sgd.lr,
                                     &sgd.momentum, &sgd.weight_decay, &sgd.nesterov, &update))
        return bf_py_arg_error(state, "train_step");
    bf_plan_io(self->plan, 0, &in);
    for (int d = 0; d < 4; d++)
        dims[d] = (npy_intp)in.dims[d];
    if (!(x = bf_py_input_array(state, xo, NPY_FLOAT32, 4, dims, "src")) ||
        !(l = bf_py_input_array(state, lo, NPY_INT32, 1, dims, "labels"))) {
        Py_XDECREF(x);
        return NULL;
    }
    BF_PY_LOCKED_CALL(self->lock, st,
                      bf_plan_train_step(self->plan, PyArray_DATA(x), PyArray_DATA(l),
                                         update ? &sgd : NULL, &loss, &correct));
    Py_DECREF(x);
    Py_DECREF(l);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    return Py_BuildValue("(di)", (double)loss, correct);
}

static PyObject *plan_backward(PlanObject *self, PyObject *arg)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_io_desc od;
    npy_intp dims[4];
    PyArrayObject *g;
    bf_status st;
    bf_plan_io(self->plan, 1, &od);
    for (int d = 0; d < 4; d++)
        dims[d] = (npy_intp)od.dims[d];
    if (!(g = bf_py_input_array(state, arg, NPY_FLOAT32, 4, dims, "diff_dst")))
        return NULL;
    BF_PY_LOCKED_CALL(self->lock, st, bf_plan_backward(self->plan, PyArray_DATA(g)));
    Py_DECREF(g);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *plan_sgd_step(PlanObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"lr", "momentum", "weight_decay", "nesterov", NULL};
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_sgd_params sgd = bf_sgd_default_params();
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|fffp:sgd_step", kwlist, &sgd.lr, &sgd.momentum,
                                     &sgd.weight_decay, &sgd.nesterov))
        return NULL;
    BF_PY_LOCKED_CALL(self->lock, st, bf_plan_sgd_step(self->plan, &sgd));
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *plan_adam_step(PlanObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"step", "lr", "beta1", "beta2", "eps", "weight_decay", NULL};
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_adam_params adam = bf_adam_default_params();
    long long step;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "L|fffff:adam_step", kwlist, &step, &adam.lr,
                                     &adam.beta1, &adam.beta2, &adam.eps, &adam.weight_decay))
        return NULL;
    BF_PY_LOCKED_CALL(self->lock, st, bf_plan_adam_step(self->plan, &adam, (int64_t)step));
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *plan_sync(PlanObject *self, PyObject *unused)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_status st;
    (void)unused;
    BF_PY_LOCKED_CALL(self->lock, st, bf_plan_sync(self->plan));
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *plan_param_grad(PlanObject *self, PyObject *args)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    int layer, slot;
    bf_param_view v;
    npy_intp dims[4];
    PyObject *out;
    bf_status st;
    bf_model *m = bf_py_model_get(state, self->model_obj);
    if (!m || !PyArg_ParseTuple(args, "ii:param_grad", &layer, &slot))
        return bf_py_arg_error(state, "param_grad");
    if (bf_py_check(state, bf_model_param(m, layer, slot, &v)) < 0)
        return NULL;
    for (int d = 0; d < v.ndims; d++)
        dims[d] = (npy_intp)v.dims[d];
    if (!(out = PyArray_SimpleNew(v.ndims, dims, NPY_FLOAT32)))
        return NULL;
    BF_PY_LOCKED_CALL(self->lock, st,
                      bf_plan_param_grad(self->plan, layer, slot,
                                         PyArray_DATA((PyArrayObject *)out)));
    if (st != BF_STATUS_OK) {
        Py_DECREF(out);
        return bf_py_raise(state, st);
    }
    return out;
}

static PyObject *plan_src_grad(PlanObject *self, PyObject *unused)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_io_desc in;
    npy_intp dims[4];
    PyObject *out;
    bf_status st;
    (void)unused;
    bf_plan_io(self->plan, 0, &in);
    for (int d = 0; d < 4; d++)
        dims[d] = (npy_intp)in.dims[d];
    if (in.dtype != BF_F32)
        return PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                            "a quantized source has no gradient");
    if (!(out = PyArray_SimpleNew(4, dims, NPY_FLOAT32)))
        return NULL;
    BF_PY_LOCKED_CALL(self->lock, st,
                      bf_plan_src_grad(self->plan, PyArray_DATA((PyArrayObject *)out)));
    if (st != BF_STATUS_OK) {
        Py_DECREF(out);
        return bf_py_raise(state, st);
    }
    return out;
}

static PyObject *plan_trained(PlanObject *self, PyObject *unused)
{
    int n = bf_plan_num_trained(self->plan, NULL, NULL, 0), *buf;
    PyObject *out;
    (void)unused;
    buf = PyMem_Malloc(sizeof(int) * 2 * (size_t)(n + 1));
    if (!buf)
        return PyErr_NoMemory();
    bf_plan_num_trained(self->plan, buf, buf + n, n);
    out = PyList_New(n);
    for (int i = 0; out && i < n; i++) {
        PyObject *t = Py_BuildValue("(ii)", buf[i], buf[n + i]);
        if (!t) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, t);
    }
    PyMem_Free(buf);
    return out;
}

typedef bf_status (*buffer_fn)(bf_plan *, int, int, float *, int);

/* An optimizer buffer of one trained parameter: returned, or set from `value`. */
static PyObject *plan_buffer(PlanObject *self, PyObject *args, buffer_fn fn, const char *what)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    int layer, slot;
    PyObject *value = NULL, *out = NULL;
    PyArrayObject *a = NULL;
    bf_param_view v;
    npy_intp dims[4];
    bf_status st;
    bf_model *m = bf_py_model_get(state, self->model_obj);
    if (!m || !PyArg_ParseTuple(args, "ii|O", &layer, &slot, &value))
        return bf_py_arg_error(state, what);
    if (bf_py_check(state, bf_model_param(m, layer, slot, &v)) < 0)
        return NULL;
    for (int d = 0; d < v.ndims; d++)
        dims[d] = (npy_intp)v.dims[d];
    if (value && value != Py_None) {
        if (!(a = bf_py_input_array(state, value, NPY_FLOAT32, v.ndims, dims, what)))
            return NULL;
        BF_PY_LOCKED_CALL(self->lock, st, fn(self->plan, layer, slot, PyArray_DATA(a), 1));
        Py_DECREF(a);
        if (st != BF_STATUS_OK)
            return bf_py_raise(state, st);
        Py_RETURN_NONE;
    }
    if (!(out = PyArray_SimpleNew(v.ndims, dims, NPY_FLOAT32)))
        return NULL;
    BF_PY_LOCKED_CALL(self->lock, st,
                      fn(self->plan, layer, slot, PyArray_DATA((PyArrayObject *)out), 0));
    if (st != BF_STATUS_OK) {
        Py_DECREF(out);
        return bf_py_raise(state, st);
    }
    return out;
}

static PyObject *plan_momentum(PlanObject *self, PyObject *args)
{
    return plan_buffer(self, args, bf_plan_momentum, "momentum");
}

static PyObject *plan_second_moment(PlanObject *self, PyObject *args)
{
    return plan_buffer(self, args, bf_plan_second_moment, "second_moment");
}

/* profile(src, ranges=None, repeats=20): [{"layer", "name", "ms", "macs", "out_bytes",
 * "kernel"}], one per layer of the plan (bf_plan_profile's charging rules). */
static PyObject *plan_profile(PlanObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"src", "ranges", "repeats", NULL};
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    PyObject *xo, *ro = Py_None, *list = NULL;
    PyArrayObject *x = NULL, *r = NULL;
    bf_layer_time *rows = NULL;
    bf_io_desc in;
    npy_intp dims[4], rdims[2];
    int repeats = 20, n = 0;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Oi:profile", kwlist, &xo, &ro, &repeats))
        return bf_py_arg_error(state, "profile");
    bf_plan_io(self->plan, 0, &in);
    for (int d = 0; d < 4; d++)
        dims[d] = (npy_intp)in.dims[d];
    rdims[0] = dims[0];
    rdims[1] = 2;
    if (!(x = bf_py_input_array(state, xo, in.dtype == BF_U8 ? NPY_UINT8 : NPY_FLOAT32, 4, dims,
                                "src")))
        return NULL;
    if (in.quantized &&
        !(r = bf_py_input_array(state, ro, NPY_FLOAT32, 2, rdims, "ranges")))
        goto done;
    /* the row count only: no run, the GIL kept */
    bf_plan_profile(self->plan, PyArray_DATA(x), NULL, repeats, NULL, 0, &n);
    if (!(rows = PyMem_Calloc((size_t)n + 1, sizeof *rows))) {
        PyErr_NoMemory();
        goto done;
    }
    BF_PY_LOCKED_CALL(self->lock, st,
                      bf_plan_profile(self->plan, PyArray_DATA(x), r ? PyArray_DATA(r) : NULL,
                                      repeats, rows, n, &n));
    if (st != BF_STATUS_OK) {
        bf_py_raise(state, st);
        goto done;
    }
    if (!(list = PyList_New(n)))
        goto done;
    for (int i = 0; i < n; i++) {
        PyObject *d = Py_BuildValue("{s:i,s:s,s:d,s:L,s:L,s:s}", "layer", rows[i].layer,
                                    "name", rows[i].name, "ms", rows[i].ms_median, "macs",
                                    (long long)rows[i].macs, "out_bytes",
                                    (long long)rows[i].out_bytes, "kernel", rows[i].kernel);
        if (!d) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, d);
    }
done:
    PyMem_Free(rows);
    Py_XDECREF(x);
    Py_XDECREF(r);
    return list;
}

static PyMethodDef plan_methods[] = {
    {"forward", (PyCFunction)(void (*)(void))plan_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(src, ranges=None): run the plan; a quantized destination comes back as "
     "(uint8 payload, float32 ranges (N, 2))."},
    {"train_step", (PyCFunction)(void (*)(void))plan_train_step, METH_VARARGS | METH_KEYWORDS,
     "train_step(src, labels int32, lr, momentum, weight_decay, nesterov, update=True): "
     "forward + softmax cross-entropy + backward (+ SGD); returns (loss, correct)."},
    {"backward", (PyCFunction)plan_backward, METH_O,
     "backward(diff_dst): gradients of the last forward from d(loss)/d(destination)."},
    {"sgd_step", (PyCFunction)(void (*)(void))plan_sgd_step, METH_VARARGS | METH_KEYWORDS,
     "sgd_step(lr, momentum, weight_decay, nesterov): one update from the gradients."},
    {"adam_step", (PyCFunction)(void (*)(void))plan_adam_step, METH_VARARGS | METH_KEYWORDS,
     "adam_step(step, lr, beta1, beta2, eps, weight_decay): one Adam (AdamW) update from the "
     "gradients; step is its 1-based number (bias correction)."},
    {"sync", (PyCFunction)plan_sync, METH_NOARGS, "Write the trained weights into the model."},
    {"param_grad", (PyCFunction)plan_param_grad, METH_VARARGS,
     "param_grad(layer, slot): the gradient of a parameter in the model's layout."},
    {"src_grad", (PyCFunction)plan_src_grad, METH_NOARGS, "The gradient of the source."},
    {"trained", (PyCFunction)plan_trained, METH_NOARGS, "[(layer, slot)] the plan trains."},
    {"momentum", (PyCFunction)plan_momentum, METH_VARARGS,
     "momentum(layer, slot[, value]): get (or set) a momentum buffer (Adam's first "
     "moment), model layout."},
    {"second_moment", (PyCFunction)plan_second_moment, METH_VARARGS,
     "second_moment(layer, slot[, value]): get (or set) Adam's second-moment buffer."},
    {"profile", (PyCFunction)(void (*)(void))plan_profile, METH_VARARGS | METH_KEYWORDS,
     "profile(src, ranges=None, repeats=20): per-layer median times (ms, whole batch), MACs "
     "and output bytes (per image) from `repeats` node-by-node runs, and the kernel that "
     "computes each layer ('' where fused into another's); see bf_plan_profile."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef plan_getset[] = {
    {"io", (getter)plan_get_io, NULL, "(source, destination) descriptions", NULL},
    {"scans", (getter)plan_get_scans, NULL,
     "layer outputs the last inference forward scanned for NaN / Inf (bf_plan_scans)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot plan_slots[] = {
    {Py_tp_new, plan_new},
    {Py_tp_dealloc, plan_dealloc},
    {Py_tp_methods, plan_methods},
    {Py_tp_getset, plan_getset},
    {Py_tp_doc, "Plan(model, begin, end, batch, training=False): parts begin..end of a model "
                "compiled for one batch size."},
    {0, NULL},
};

static PyType_Spec plan_spec = {"butterfly._C.Plan", sizeof(PlanObject), 0,
                                Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, plan_slots};

int bf_py_plan_init(PyObject *m)
{
    bf_py_state *state = bf_py_module_state(m);
    state->plan_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &plan_spec, NULL);
    if (!state->plan_type)
        return -1;
    return PyModule_AddType(m, state->plan_type);
}
