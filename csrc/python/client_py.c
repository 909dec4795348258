/* butterfly._C.Client: the phone's side of the pool (bf_client), one request at a time or
 * as a load (bf_load_run).  Every blocking call runs without the GIL; butterfly/serving.py
 * is the Python face. */
#include "python/common.h"

#define LOGITS_CAP (1 << 20) /* scores one reply may carry (the wire codec's limit) */

/* ---- Client ---------------------------------------------------------------------------- */

typedef struct ClientObject {
    PyObject_HEAD
    bf_client *c[2];          /* by codec; the one not chosen at creation made on first use */
    bf_client_params p;       /* strings point into the bytes below */
    PyObject *keep[4];        /* endpoint, model hash, server key path, client key path */
    PyThread_type_lock lock;  /* one request at a time per client */
} ClientObject;

int bf_py_parse_codec(bf_py_state *state, const char *s, bf_codec *out)
{
    if (strcmp(s, "raw") == 0)
        *out = BF_CODEC_RAW;
    else if (strcmp(s, "zstd") == 0)
        *out = BF_CODEC_ZSTD;
    else {
        PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                     "codec must be 'raw' or 'zstd', not '%s'", s);
        return -1;
    }
    return 0;
}

/* The C client for a codec, created on first use; called without the GIL, lock held. */
static bf_status client_for(ClientObject *self, bf_codec codec, bf_client **out)
{
    if (self->c[codec] == NULL) {
        bf_client_params p = self->p;
        p.codec = codec;
        bf_status st = bf_client_create(&self->c[codec], &p);
        if (st != BF_STATUS_OK)
            return st;
    }
    *out = self->c[codec];
    return BF_STATUS_OK;
}

static PyObject *client_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"endpoint", "model_hash", "split", "timeout_ms", "retries",
                             "codec", "zstd_level", "curve_server_key", "curve_key",
                             "conn_heartbeat_ms", "conn_timeout_ms", "conn_ttl_ms", NULL};
    bf_py_state *state = bf_py_type_state(type);
    ClientObject *self;
    PyObject *endpoint, *hash = Py_None, *server_key = Py_None, *key = Py_None;
    const char *codec = "raw";
    bf_client_params p = bf_client_default_params();
    bf_client *c = NULL;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|Oi$iisiOOiii:Client", kwlist, &endpoint,
                                     &hash, &p.split, &p.timeout_ms, &p.retries, &codec,
                                     &p.zstd_level, &server_key, &key, &p.conn.heartbeat_ms,
                                     &p.conn.timeout_ms, &p.conn.ttl_ms))
        return bf_py_arg_error(state, "Client");
    if (bf_py_parse_codec(state, codec, &p.codec) < 0)
        return NULL;
    if (!(self = (ClientObject *)type->tp_alloc(type, 0)))
        return NULL;
    if (!(self->lock = PyThread_allocate_lock())) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    if (bf_py_text_arg(state, endpoint, "endpoint", &self->keep[0]) < 0 ||
        (hash != Py_None && bf_py_text_arg(state, hash, "model_hash", &self->keep[1]) < 0) ||
        bf_py_fs_opt(state, server_key, &self->keep[2]) < 0 ||
        bf_py_fs_opt(state, key, &self->keep[3]) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    p.endpoint = bf_py_cstr(self->keep[0]);
    p.model_hash = bf_py_cstr(self->keep[1]);
    p.curve_server_key = bf_py_cstr(self->keep[2]);
    p.curve_key_file = bf_py_cstr(self->keep[3]);
    self->p = p;
    /* make the first client now, so that bad parameters or keys fail here */
    Py_BEGIN_ALLOW_THREADS
    st = client_for(self, p.codec, &c);
    Py_END_ALLOW_THREADS
    if (st != BF_STATUS_OK) {
        Py_DECREF(self);
        return bf_py_raise(state, st);
    }
    return (PyObject *)self;
}

static void client_dealloc(ClientObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    bf_client *c0 = self->c[0], *c1 = self->c[1];
    Py_BEGIN_ALLOW_THREADS /* ending a client's ZeroMQ context joins its I/O thread */
    bf_client_destroy(c0);
    bf_client_destroy(c1);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 4; i++)
        Py_XDECREF(self->keep[i]);
    if (self->lock)
        PyThread_free_lock(self->lock);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* One reply as a dict: topk [(class, prob)], server timings, the client's round trip. */
static PyObject *result_dict(const bf_result *r)
{
    PyObject *topk = PyList_New(r->k);
    if (topk == NULL)
        return NULL;
    for (int j = 0; j < r->k; j++) {
        PyObject *t = Py_BuildValue("(id)", r->classes[j], (double)r->probs[j]);
        if (t == NULL) {
            Py_DECREF(topk);
            return NULL;
        }
        PyList_SET_ITEM(topk, j, t);
    }
    return Py_BuildValue("{s:N,s:k,s:k,s:i,s:k,s:i}", "topk", topk, "queue_us",
                         (unsigned long)r->queue_us, "compute_us", (unsigned long)r->compute_us,
                         "batch", r->batch, "total_us", (unsigned long)r->total_us, "attempts",
                         r->attempts);
}

/* One request on the client for `codec`; called without the GIL, lock held. */
static bf_status classify_one(ClientObject *self, bf_codec codec, const uint8_t *payload,
                              const int dims[3], const float range[2], int k, bf_result *r)
{
    bf_client *c = NULL;
    bf_status st = client_for(self, codec, &c);
    if (st != BF_STATUS_OK)
        return st;
    return bf_client_classify(c, payload, dims, range[0], range[1], k, r);
}

static PyObject *client_classify(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"payload", "ranges", "k", "codec", "logits", NULL};
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    PyObject *po, *ro, *out = NULL;
    PyArrayObject *pa = NULL, *ra = NULL;
    const char *codec_s = NULL;
    int k = 5, want_logits = 0, nd;
    bf_codec codec = self->p.codec;
    float *logits = NULL;
    npy_intp n, rdims[2];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|izp:classify", kwlist, &po, &ro, &k,
                                     &codec_s, &want_logits))
        return bf_py_arg_error(state, "classify");
    if (codec_s && bf_py_parse_codec(state, codec_s, &codec) < 0)
        return NULL;
    nd = PyArray_Check(po) && PyArray_NDIM((PyArrayObject *)po) == 3 ? 3 : 4;
    if (!(pa = bf_py_input_array(state, po, NPY_UINT8, nd, NULL, "payload")))
        return NULL;
    n = nd == 3 ? 1 : PyArray_DIM(pa, 0);
    rdims[0] = n, rdims[1] = 2;
    if (nd == 3)
        ra = bf_py_input_array(state, ro, NPY_FLOAT32, 1, rdims + 1, "ranges");
    else
        ra = bf_py_input_array(state, ro, NPY_FLOAT32, 2, rdims, "ranges");
    if (ra == NULL)
        goto done;
    if (want_logits && !(logits = PyMem_RawMalloc(LOGITS_CAP * sizeof(float)))) {
        PyErr_NoMemory();
        goto done;
    }
    int dims[3];
    for (int d = 0; d < 3; d++) {
        npy_intp v = PyArray_DIM(pa, nd - 3 + d);
        dims[d] = v > INT32_MAX ? INT32_MAX : (int)v;
    }
    size_t elems = (size_t)dims[0] * dims[1] * dims[2];
    const uint8_t *data = PyArray_DATA(pa);
    const float *rng = PyArray_DATA(ra);
    if (!(out = PyList_New(n)))
        goto done;
    for (npy_intp i = 0; i < n; i++) {
        bf_result r;
        bf_status st;
        PyObject *item;
        memset(&r, 0, sizeof r);
        r.logits = logits;
        r.logits_cap = logits ? LOGITS_CAP : 0;
        BF_PY_LOCKED_CALL(self->lock, st,
                          classify_one(self, codec, data + (size_t)i * elems, dims, rng + 2 * i,
                                       k, &r));
        if (st != BF_STATUS_OK) {
            bf_py_raise_interrupted(state, st);
            Py_CLEAR(out);
            goto done;
        }
        if (!(item = result_dict(&r))) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, item);
        if (logits) {
            npy_intp ld[1] = {r.n_logits};
            PyObject *a = PyArray_SimpleNew(1, ld, NPY_FLOAT32);
            if (a)
                memcpy(PyArray_DATA((PyArrayObject *)a), logits, (size_t)r.n_logits * 4);
            if (!a || PyDict_SetItemString(item, "logits", a) < 0) {
                Py_XDECREF(a);
                Py_CLEAR(out);
                goto done;
            }
            Py_DECREF(a);
        }
    }
done:
    PyMem_RawFree(logits);
    Py_XDECREF(pa);
    Py_XDECREF(ra);
    return out;
}

/* A new 1-D array of the first n of `len` items of `a` (a copy; the whole when n == len). */
static PyObject *head_of(PyObject *a, size_t n)
{
    PyObject *sl = PySequence_GetSlice(a, 0, (Py_ssize_t)n);
    PyObject *out = sl ? PyArray_NewCopy((PyArrayObject *)sl, NPY_CORDER) : NULL;
    Py_XDECREF(sl);
    return out;
}

static PyObject *client_load_test(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"payload", "ranges", "clients", "seconds", "rate", "k",
                             "max_records", "codec", "rt_priority", NULL};
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    PyObject *po, *ro, *out = NULL, *rec[5] = {NULL, NULL, NULL, NULL, NULL};
    PyArrayObject *pa = NULL, *ra = NULL;
    const char *codec_s = NULL;
    Py_ssize_t max_records = 1 << 20;
    bf_load_params lp = bf_load_default_params();
    bf_load_result res;
    bf_status st;
    lp.client = self->p;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$iddinzi:load_test", kwlist, &po, &ro,
                                     &lp.n_clients, &lp.seconds, &lp.rate, &lp.k, &max_records,
                                     &codec_s, &lp.rt_priority))
        return bf_py_arg_error(state, "load_test");
    if (codec_s && bf_py_parse_codec(state, codec_s, &lp.client.codec) < 0)
        return NULL;
    if (max_records < 0 || max_records > (Py_ssize_t)1 << 28) {
        PyErr_SetString(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                        "max_records must be in [0, 2^28]");
        return NULL;
    }
    if (!(pa = bf_py_input_array(state, po, NPY_UINT8, 4, NULL, "payload")))
        return NULL;
    npy_intp rdims[2] = {PyArray_DIM(pa, 0), 2};
    if (rdims[0] < 1 || rdims[0] > INT32_MAX) {
        PyErr_SetString(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                        "payload: at least one feature (N >= 1)");
        goto done;
    }
    if (!(ra = bf_py_input_array(state, ro, NPY_FLOAT32, 2, rdims, "ranges")))
        goto done;
    for (int d = 0; d < 3; d++) {
        npy_intp v = PyArray_DIM(pa, d + 1);
        lp.dims[d] = v > INT32_MAX ? INT32_MAX : (int)v;
    }
    npy_intp rn[1] = {max_records};
    if (!(rec[0] = PyArray_SimpleNew(1, rn, NPY_UINT32)) ||
        !(rec[1] = PyArray_SimpleNew(1, rn, NPY_UINT32)) ||
        !(rec[2] = PyArray_SimpleNew(1, rn, NPY_UINT16)) ||
        !(rec[3] = PyArray_SimpleNew(1, rn, NPY_UINT32)) ||
        !(rec[4] = PyArray_SimpleNew(1, rn, NPY_UINT32)))
        goto done;
    lp.n_payloads = (int)rdims[0];
    lp.payloads = PyArray_DATA(pa);
    lp.ranges = PyArray_DATA(ra);
    lp.max_records = (size_t)max_records;
    lp.latency_us = PyArray_DATA((PyArrayObject *)rec[0]);
    lp.compute_us = PyArray_DATA((PyArrayObject *)rec[1]);
    lp.batch = PyArray_DATA((PyArrayObject *)rec[2]);
    lp.queue_us = PyArray_DATA((PyArrayObject *)rec[3]);
    lp.start_us = PyArray_DATA((PyArrayObject *)rec[4]);
    Py_BEGIN_ALLOW_THREADS
    st = bf_load_run(&lp, &res);
    Py_END_ALLOW_THREADS
    if (PyErr_CheckSignals() < 0)
        goto done; /* Ctrl-C while it ran: its handler's exception */
    if (st != BF_STATUS_OK) {
        bf_py_raise_interrupted(state, st);
        goto done;
    }
    PyObject *heads[5] = {NULL, NULL, NULL, NULL, NULL};
    int got = 0;
    while (got < 5 && (heads[got] = head_of(rec[got], res.n_records)) != NULL)
        got++;
    if (got == 5)
        out = Py_BuildValue("{s:K,s:K,s:K,s:s,s:d,s:O,s:O,s:O,s:O,s:O}", "sent",
                            (unsigned long long)res.sent, "ok", (unsigned long long)res.ok,
                            "errors", (unsigned long long)res.errors, "last_error",
                            res.errors ? bf_status_str(res.last_error) : "", "seconds",
                            res.seconds, "latency_us", heads[0], "queue_us", heads[3],
                            "compute_us", heads[1], "batch", heads[2], "start_us", heads[4]);
    for (int i = 0; i < 5; i++)
        Py_XDECREF(heads[i]);
done:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(rec[i]);
    Py_XDECREF(pa);
    Py_XDECREF(ra);
    return out;
}

static PyObject *client_get_endpoint(ClientObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(self->p.endpoint);
}

static PyMethodDef client_methods[] = {
    {"classify", (PyCFunction)(void (*)(void))client_classify, METH_VARARGS | METH_KEYWORDS,
     "classify(payload uint8 (N, C, H, W) or (C, H, W), ranges float32 (N, 2) or (2,), k=5, "
     "codec=None, logits=False) -> per image a dict: topk [(class, prob)] best first, "
     "queue_us, compute_us, batch (server), total_us, attempts (client), logits (if asked).  "
     "One request per image, in order; raises Timeout, Busy, Refused, ProtocolError, ..."},
    {"load_test", (PyCFunction)(void (*)(void))client_load_test, METH_VARARGS | METH_KEYWORDS,
     "load_test(payload uint8 (N, C, H, W), ranges float32 (N, 2), *, clients=1, "
     "seconds=1.0, rate=0.0, k=1, max_records=2**20, codec=None, rt_priority=0) -> dict: "
     "sent, ok, errors, "
     "last_error, seconds, and per answered request latency_us, queue_us, compute_us, batch, "
     "start_us (when its latency began, after the start) (numpy).  "
     "`clients` connections with this client's settings, driven by one C thread "
     "(bf_load_run, no GIL, no retries: no answer within the timeout is an error).  "
     "rate 0: closed loop, each client sending again as soon as it is answered; else open "
     "loop: `rate` requests/s in total, each sent at its due time however many are "
     "unanswered, latency counted from the due time.  rt_priority: 1..98 runs the generator "
     "under SCHED_FIFO (see Pool)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef client_getset[] = {
    {"endpoint", (getter)client_get_endpoint, NULL, "the pool's frontend", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot client_slots[] = {
    {Py_tp_new, client_new},
    {Py_tp_dealloc, client_dealloc},
    {Py_tp_methods, client_methods},
    {Py_tp_getset, client_getset},
    {Py_tp_doc,
     "Client(endpoint, model_hash=None, split=-1, *, timeout_ms=3000, retries=2, "
     "codec='raw', zstd_level=3, curve_server_key=None, curve_key=None, "
     "conn_heartbeat_ms=5000, conn_timeout_ms=10000, conn_ttl_ms=15000): a Lazy Pirate "
     "client of a pool's frontend (bf_client).  curve_server_key: a key file holding the "
     "server's public key (CURVE on); curve_key: this client's key pair (else a fresh one); "
     "conn_*: ZeroMQ's heartbeats on its connection (the TTL asks the pool to close it "
     "after that long without a word from this client; 0: off)."},
    {0, NULL},
};

static PyType_Spec client_spec = {"butterfly._C.Client", sizeof(ClientObject), 0,
                                  Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, client_slots};

int bf_py_client_init(PyObject *m)
{
    bf_py_state *state = bf_py_module_state(m);
    state->client_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &client_spec, NULL);
    if (!state->client_type)
        return -1;
    return PyModule_AddType(m, state->client_type);
}
