/* butterfly._C.Model: a thin wrapper of bf_model. */
#include "python/common.h"

#include <math.h>
#include <string.h>

typedef struct ModelObject {
    PyObject_HEAD
    bf_model *model;
} ModelObject;

static const char *const what_names[] = {"all", "mobile", "cloud"};

static int parse_what(bf_py_state *state, const char *s, bf_load_what *out)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, what_names[i])) {
            *out = (bf_load_what)i;
            return 0;
        }
    PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                 "part must be 'all', 'mobile' or 'cloud', not '%s'", s);
    return -1;
}

bf_model *bf_py_model_get(bf_py_state *state, PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, state->model_type)) {
        PyErr_Format(PyExc_TypeError, "expected a butterfly._C.Model, not %.80s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return ((ModelObject *)obj)->model;
}

/* ---- Model -------------------------------------------------------------------------- */

static PyObject *wrap_model(PyTypeObject *type, bf_model *m)
{
    ModelObject *self = (ModelObject *)type->tp_alloc(type, 0);
    if (!self) {
        bf_model_destroy(m);
        return NULL;
    }
    self->model = m;
    return (PyObject *)self;
}

static PyObject *model_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"data", "part", NULL};
    bf_py_state *state = bf_py_type_state(type);
    Py_buffer buf;
    const char *part = "all";
    bf_load_what what;
    bf_model *m = NULL;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|s:Model", kwlist, &buf, &part))
        return bf_py_arg_error(state, "Model");
    if (parse_what(state, part, &what) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = bf_model_load_buffer(&m, buf.buf, (size_t)buf.len, what);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    return wrap_model(type, m);
}

static PyObject *model_load(PyObject *cls, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "part", NULL};
    bf_py_state *state = bf_py_type_state((PyTypeObject *)cls);
    PyObject *path;
    const char *part = "all";
    bf_load_what what;
    bf_model *m = NULL;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|s:load", kwlist, PyUnicode_FSConverter, &path,
                                     &part))
        return bf_py_arg_error(state, "load");
    if (parse_what(state, part, &what) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = bf_model_load_file(&m, PyBytes_AS_STRING(path), what);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    return wrap_model((PyTypeObject *)cls, m);
}

static void model_dealloc(ModelObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    bf_model_destroy(self->model);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *model_save(ModelObject *self, PyObject *arg)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    PyObject *path;
    bf_status st;
    if (!PyUnicode_FSConverter(arg, &path))
        return bf_py_arg_error(state, "save");
    Py_BEGIN_ALLOW_THREADS
    st = bf_model_save_file(self->model, PyBytes_AS_STRING(path));
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *model_to_bytes(ModelObject *self, PyObject *unused)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    void *buf = NULL;
    size_t len = 0;
    PyObject *out;
    bf_status st;
    (void)unused;
    Py_BEGIN_ALLOW_THREADS
    st = bf_model_save_buffer(self->model, &buf, &len);
    Py_END_ALLOW_THREADS
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    out = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    free(buf);
    return out;
}

static int layer_index(ModelObject *self, PyObject *arg, int *out)
{
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred())
        return -1;
    if (i < 0 || i >= bf_model_num_layers(self->model)) {
        PyErr_Format(PyExc_IndexError, "layer %ld out of range [0, %d)", i,
                     bf_model_num_layers(self->model));
        return -1;
    }
    *out = (int)i;
    return 0;
}

static PyObject *pair(const int v[2]) { return Py_BuildValue("(ii)", v[0], v[1]); }

static PyObject *model_layer(ModelObject *self, PyObject *arg)
{
    const bf_layer_spec *s;
    PyObject *inputs;
    int i;
    if (layer_index(self, arg, &i) < 0)
        return NULL;
    s = bf_model_layer(self->model, i);
    inputs = PyList_New(s->n_inputs);
    for (int k = 0; inputs && k < s->n_inputs; k++) {
        PyObject *v = PyLong_FromLong(s->inputs[k]);
        if (!v) {
            Py_CLEAR(inputs);
            break;
        }
        PyList_SET_ITEM(inputs, k, v);
    }
    if (!inputs)
        return NULL;
    return Py_BuildValue(
        "{s:s,s:s,s:s,s:N,s:i,s:N,s:N,s:N,s:N,s:N,s:i,s:N,s:O,s:d,s:d,s:i,s:(iii),s:O,s:d,s:d}",
        "type", bf_layer_type_str(s->type), "name", s->name, "part", bf_part_str(s->part),
        "inputs", inputs, "out_channels", s->out_channels, "kernel", pair(s->kernel), "stride",
        pair(s->stride), "pad", pair(s->pad), "pad_end", pair(s->pad_end), "dilation",
        pair(s->dilation), "groups", s->groups, "output_pad", pair(s->output_pad), "bias",
        s->has_bias ? Py_True : Py_False, "eps", (double)s->eps, "momentum",
        (double)s->momentum, "scale", s->scale, "shape", s->shape[0], s->shape[1], s->shape[2],
        "frozen", s->frozen ? Py_True : Py_False, "alpha", (double)s->alpha, "beta",
        (double)s->beta);
}

/* The canonical msgpack map of layer i: only the keys its type uses (what the hash covers). */
static PyObject *model_spec_bytes(ModelObject *self, PyObject *arg)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    void *buf = NULL;
    size_t len = 0;
    PyObject *out;
    int i;
    if (layer_index(self, arg, &i) < 0)
        return NULL;
    if (bf_layer_spec_serialize(bf_model_layer(self->model, i), &buf, &len) != BF_STATUS_OK)
        return bf_py_raise(state, BF_STATUS_OUT_OF_MEMORY);
    out = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    free(buf);
    return out;
}

static PyObject *model_info(ModelObject *self, PyObject *arg)
{
    bf_layer_info f;
    int i;
    if (layer_index(self, arg, &i) < 0)
        return NULL;
    bf_model_layer_info(self->model, i, &f);
    return Py_BuildValue("{s:(iii),s:(iii),s:L,s:L,s:L}", "in_dims", f.in_dims[0], f.in_dims[1],
                         f.in_dims[2], "out_dims", f.out_dims[0], f.out_dims[1], f.out_dims[2],
                         "params", (long long)f.n_params, "macs", (long long)f.macs, "out_bytes",
                         (long long)f.out_bytes);
}

static PyObject *view_shape(const bf_param_view *v)
{
    PyObject *t = PyTuple_New(v->ndims);
    for (int d = 0; t && d < v->ndims; d++)
        PyTuple_SET_ITEM(t, d, PyLong_FromLongLong((long long)v->dims[d]));
    return t;
}

static PyObject *model_param_names(ModelObject *self, PyObject *arg)
{
    PyObject *out;
    int i;
    if (layer_index(self, arg, &i) < 0)
        return NULL;
    out = PyList_New(0);
    for (int k = 0; out && k < bf_model_num_params(self->model, i); k++) {
        bf_param_view v;
        PyObject *item;
        bf_model_param(self->model, i, k, &v);
        item = Py_BuildValue("(sN)", v.name, view_shape(&v));
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(item);
    }
    return out;
}

static int param_arg(ModelObject *self, PyObject *args, const char *fmt, int *i, int *k,
                     PyObject **arr, bf_param_view *v)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    if (!PyArg_ParseTuple(args, fmt, i, k, arr))
        return -1;
    if (bf_model_param(self->model, *i, *k, v) != BF_STATUS_OK) {
        bf_py_raise(state, BF_STATUS_INVALID_ARGUMENT);
        return -1;
    }
    return 0;
}

static PyObject *model_get_param(ModelObject *self, PyObject *args)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_param_view v;
    npy_intp dims[4];
    PyObject *out;
    int i, k;
    if (param_arg(self, args, "ii:get_param", &i, &k, NULL, &v) < 0)
        return bf_py_arg_error(state, "get_param");
    if (!v.data)
        Py_RETURN_NONE; /* the half that holds it was not loaded */
    for (int d = 0; d < v.ndims; d++)
        dims[d] = (npy_intp)v.dims[d];
    out = PyArray_SimpleNew(v.ndims, dims, NPY_FLOAT32);
    if (out)
        memcpy(PyArray_DATA((PyArrayObject *)out), v.data,
               (size_t)PyArray_NBYTES((PyArrayObject *)out));
    return out;
}

static PyObject *model_set_param(ModelObject *self, PyObject *args)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_param_view v;
    npy_intp dims[4];
    PyObject *obj;
    PyArrayObject *a;
    const float *src;
    npy_intp n;
    int i, k;
    if (param_arg(self, args, "iiO:set_param", &i, &k, &obj, &v) < 0)
        return bf_py_arg_error(state, "set_param");
    if (!v.data)
        return PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                            "layer %d: this half of the model is not loaded", i);
    for (int d = 0; d < v.ndims; d++)
        dims[d] = (npy_intp)v.dims[d];
    a = bf_py_input_array(state, obj, NPY_FLOAT32, v.ndims, dims, v.name);
    if (!a)
        return NULL;
    src = PyArray_DATA(a);
    n = PyArray_SIZE(a);
    for (npy_intp j = 0; j < n; j++)
        if (!isfinite(src[j])) {
            Py_DECREF(a);
            return PyErr_Format(bf_py_exception(state, BF_STATUS_NUMERIC),
                                "layer %d '%s': NaN or Inf in the new value", i, v.name);
        }
    /* one tensor's copy, with the GIL: get_param and set_param never see half of it */
    memcpy(v.data, src, (size_t)n * sizeof(float));
    Py_DECREF(a);
    bf_model_touch(self->model);
    Py_RETURN_NONE;
}

static PyObject *model_part_range(ModelObject *self, PyObject *arg)
{
    long part = PyLong_AsLong(arg);
    int first, last;
    if (part == -1 && PyErr_Occurred())
        return NULL;
    if (part < 0 || part >= BF_PART_COUNT_)
        return PyErr_Format(PyExc_ValueError, "part %ld out of range", part);
    bf_model_part_range(self->model, (bf_part)part, &first, &last);
    return Py_BuildValue("(ii)", first, last);
}

static PyObject *model_set_frozen(ModelObject *self, PyObject *args)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    int i, frozen;
    if (!PyArg_ParseTuple(args, "ip:set_frozen", &i, &frozen))
        return bf_py_arg_error(state, "set_frozen");
    if (bf_py_check(state, bf_model_set_frozen(self->model, i, frozen)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *model_set_meta(ModelObject *self, PyObject *arg)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    Py_buffer buf;
    bf_status st;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    st = bf_model_set_meta(self->model, buf.buf, (size_t)buf.len);
    PyBuffer_Release(&buf);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *model_get_meta(ModelObject *self, void *closure)
{
    size_t len;
    const void *p = bf_model_meta(self->model, &len);
    (void)closure;
    if (!p)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
}

static PyObject *model_get_hash(ModelObject *self, void *closure)
{
    char hex[17];
    (void)closure;
    bf_model_hash(self->model, hex);
    return PyUnicode_FromString(hex);
}

static PyObject *model_get_loaded(ModelObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(what_names[bf_model_loaded(self->model)]);
}

static PyObject *model_get_version(ModelObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromUnsignedLongLong(bf_model_version(self->model));
}

static Py_ssize_t model_len(ModelObject *self) { return bf_model_num_layers(self->model); }

static PyMethodDef model_methods[] = {
    {"load", (PyCFunction)(void (*)(void))model_load, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "load(path, part='all'): read a model file (part: 'all', 'mobile', 'cloud')."},
    {"save", (PyCFunction)model_save, METH_O, "save(path): write the model file."},
    {"to_bytes", (PyCFunction)model_to_bytes, METH_NOARGS, "The model file as bytes."},
    {"layer", (PyCFunction)model_layer, METH_O, "layer(i): the spec of layer i as a dict."},
    {"spec_bytes", (PyCFunction)model_spec_bytes, METH_O,
     "spec_bytes(i): layer i's canonical msgpack map (only the keys its type uses)."},
    {"info", (PyCFunction)model_info, METH_O, "info(i): shapes, params, MACs, bytes of layer i."},
    {"param_names", (PyCFunction)model_param_names, METH_O, "[(name, shape)] of layer i."},
    {"get_param", (PyCFunction)model_get_param, METH_VARARGS,
     "get_param(i, k): a copy of parameter k of layer i (None if its half is not loaded)."},
    {"set_param", (PyCFunction)model_set_param, METH_VARARGS,
     "set_param(i, k, array): overwrite parameter k of layer i (float32, same shape)."},
    {"part_range", (PyCFunction)model_part_range, METH_O,
     "part_range(part): (first, last) layer of a part, (-1, -1) if empty."},
    {"set_meta", (PyCFunction)model_set_meta, METH_O, "set_meta(msgpack bytes)."},
    {"set_frozen", (PyCFunction)model_set_frozen, METH_VARARGS,
     "set_frozen(i, flag): freeze layer i for training plans created afterwards."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef model_getset[] = {
    {"meta", (getter)model_get_meta, NULL, "msgpack bytes of the metadata, or None", NULL},
    {"hash", (getter)model_get_hash, NULL, "16 hex digits identifying layers + weights", NULL},
    {"loaded", (getter)model_get_loaded, NULL, "'all', 'mobile' or 'cloud'", NULL},
    {"version", (getter)model_get_version, NULL, "bumped whenever weights change", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot model_slots[] = {
    {Py_tp_new, model_new},
    {Py_tp_dealloc, model_dealloc},
    {Py_tp_methods, model_methods},
    {Py_tp_getset, model_getset},
    {Py_sq_length, model_len},
    {Py_tp_doc, "Model(data: bytes, part='all'): layer specs + weights, from the msgpack "
                "model description."},
    {0, NULL},
};

static PyType_Spec model_spec = {"butterfly._C.Model", sizeof(ModelObject), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, model_slots};

/* layer_info(spec: bytes, index: int, in_dims: [(C, H, W)]) -> {"out_dims", "macs",
 * "params": n_params, "param_shapes": [(name, shape)]}: the core's shape rules for one layer. */
static PyObject *py_layer_infer(PyObject *module, PyObject *args)
{
    bf_py_state *state = bf_py_module_state(module);
    Py_buffer spec = {0};
    PyObject *dims_obj, *seq = NULL, *shapes = NULL, *out = NULL;
    int in_dims[BF_MAX_INPUTS][3], index, n_params = 0;
    bf_layer_spec s;
    bf_layer_info info;
    bf_param_view params[BF_MAX_PARAMS];
    bf_status st;
    if (!PyArg_ParseTuple(args, "y*iO:layer_info", &spec, &index, &dims_obj))
        return NULL;
    st = bf_layer_spec_parse(&s, spec.buf, (size_t)spec.len, index);
    if (st != BF_STATUS_OK) {
        bf_py_raise(state, st);
        goto done;
    }
    seq = PySequence_Fast(dims_obj, "in_dims must be a list of (C, H, W)");
    if (!seq)
        goto done;
    if (PySequence_Fast_GET_SIZE(seq) != s.n_inputs) {
        PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                     "layer %d (%s) has %d input(s); in_dims gives %zd shapes", index, s.name,
                     s.n_inputs, PySequence_Fast_GET_SIZE(seq));
        goto done;
    }
    for (int k = 0; k < s.n_inputs; k++)
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "iii;in_dims: (C, H, W) ints",
                              &in_dims[k][0], &in_dims[k][1], &in_dims[k][2]))
            goto done;
    st = bf_layer_infer(&s, index, (const int(*)[3])in_dims, &info, params, &n_params);
    if (st != BF_STATUS_OK) {
        bf_py_raise(state, st);
        goto done;
    }
    shapes = PyList_New(n_params);
    for (int k = 0; shapes && k < n_params; k++) {
        PyObject *item = Py_BuildValue("(sN)", params[k].name, view_shape(&params[k]));
        if (!item) {
            Py_CLEAR(shapes);
            break;
        }
        PyList_SET_ITEM(shapes, k, item);
    }
    if (shapes)
        out = Py_BuildValue("{s:(iii),s:L,s:L,s:N}", "out_dims", info.out_dims[0],
                            info.out_dims[1], info.out_dims[2], "macs", (long long)info.macs,
                            "params", (long long)info.n_params, "param_shapes", shapes);
done:
    Py_XDECREF(seq);
    PyBuffer_Release(&spec);
    return out;
}

/* layer_types() -> {name: {"inputs", "activation", "flat_ok", "out_u8"}}: the core's table
 * of layer types, as front ends need it. */
static PyObject *py_layer_types(PyObject *module, PyObject *unused)
{
    PyObject *out = PyDict_New();
    (void)module;
    (void)unused;
    for (int t = 0; out && t < BF_LAYER_TYPE_COUNT_; t++) {
        bf_layer_traits tr;
        PyObject *item;
        if (bf_layer_type_traits((bf_layer_type)t, &tr) != BF_STATUS_OK)
            continue;
        item = Py_BuildValue("{s:i,s:O,s:O,s:O}", "inputs", tr.n_inputs, "activation",
                             tr.activation ? Py_True : Py_False, "flat_ok",
                             tr.flat_ok ? Py_True : Py_False, "out_u8",
                             tr.out_u8 ? Py_True : Py_False);
        if (!item || PyDict_SetItemString(out, bf_layer_type_str((bf_layer_type)t), item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    return out;
}

static PyMethodDef model_functions[] = {
    {"layer_info", py_layer_infer, METH_VARARGS,
     "layer_info(spec: bytes (msgpack map), index, in_dims: [(C, H, W)] per input) -> "
     "{out_dims, macs, params, param_shapes: [(name, shape)]}: shape inference of one layer "
     "by the core's table of layer types."},
    {"layer_types", py_layer_types, METH_NOARGS,
     "layer_types() -> {name: {inputs (-1: 2 or more), activation, flat_ok, out_u8}}: the "
     "core's table of layer types."},
    {NULL, NULL, 0, NULL},
};

int bf_py_model_init(PyObject *m)
{
    bf_py_state *state = bf_py_module_state(m);
    state->model_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &model_spec, NULL);
    if (!state->model_type || PyModule_AddType(m, state->model_type) < 0)
        return -1;
    return PyModule_AddFunctions(m, model_functions);
}
