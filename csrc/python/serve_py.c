/* butterfly._C serving: Pool, run_worker, curve_keygen, payload_encode.  Thin wrappers of
 * bf_pool, bf_worker_run, bf_curve_keygen and bf_payload_encode (butterfly.h, "Serving");
 * the Client is in client_py.c, butterfly/serving.py is the Python face.  Every blocking
 * call runs without the GIL. */
#include "python/common.h"

/* ---- argument helpers ----------------------------------------------------------------- */

/* A path-like or None -> a new bytes reference in *out (NULL for None); -1 on error. */
int bf_py_fs_opt(bf_py_state *state, PyObject *o, PyObject **out)
{
    *out = NULL;
    if (o == NULL || o == Py_None)
        return 0;
    if (PyUnicode_FSConverter(o, out))
        return 0;
    bf_py_arg_error(state, "path"); /* a NUL in it: InvalidArgument */
    return -1;
}

const char *bf_py_cstr(PyObject *bytes) { return bytes ? PyBytes_AS_STRING(bytes) : NULL; }

static int dict_int(bf_py_state *state, PyObject *d, const char *key, int *out)
{
    PyObject *v = PyDict_GetItemString(d, key); /* borrowed */
    if (v == NULL)
        return 0;
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < INT32_MIN || x > INT32_MAX) {
        PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT), "echo %s out of range",
                     key);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/*
 * Fills the compute part of worker params: the engine on a model file, or (echo, a dict with
 * dims (C, H, W), classes, delay_us, split, model_hash) the echo backend of tests and
 * benchmarks.  *keep receives new bytes references the params point into (release them
 * after the C call).
 */
static int parse_compute(bf_py_state *state, PyObject *model_path, PyObject *echo,
                         bf_compute_params *cp, PyObject *keep[2])
{
    PyObject *exc = bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT);
    keep[0] = keep[1] = NULL;
    if ((model_path == NULL || model_path == Py_None) == (echo == NULL || echo == Py_None)) {
        PyErr_SetString(exc, "give either a model path or echo={...}, not both or neither");
        return -1;
    }
    if (echo == NULL || echo == Py_None) {
        cp->kind = BF_COMPUTE_PLAN;
        if (bf_py_fs_opt(state, model_path, &keep[0]) < 0)
            return -1;
        cp->model_path = bf_py_cstr(keep[0]);
        return 0;
    }
    if (!PyDict_Check(echo)) {
        PyErr_SetString(exc, "echo must be a dict (dims, classes, delay_us, split, model_hash)");
        return -1;
    }
    cp->kind = BF_COMPUTE_ECHO;
    PyObject *dims = PyDict_GetItemString(echo, "dims"), *hash;
    if (dims) {
        PyObject *t = PyTuple_Check(dims) || PyList_Check(dims) ? PySequence_Tuple(dims) : NULL;
        int ok = t && PyArg_ParseTuple(t, "iii;echo dims must be (C, H, W)", &cp->dims[0],
                                       &cp->dims[1], &cp->dims[2]);
        Py_XDECREF(t);
        if (!ok) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "echo dims must be (C, H, W), three ints");
            return -1;
        }
    }
    if (dict_int(state, echo, "classes", &cp->num_classes) < 0 ||
        dict_int(state, echo, "delay_us", &cp->delay_us) < 0 ||
        dict_int(state, echo, "split", &cp->split) < 0)
        return -1;
    hash = PyDict_GetItemString(echo, "model_hash");
    if (hash && hash != Py_None) {
        if (bf_py_text_arg(state, hash, "model_hash", &keep[1]) < 0)
            return -1;
        cp->model_hash = bf_py_cstr(keep[1]);
    }
    return 0;
}

/* After a blocking call came back BF_STATUS_INTERRUPTED: the exception a Python signal
 * handler raised (KeyboardInterrupt for Ctrl-C), else butterfly.Interrupted. */
PyObject *bf_py_raise_interrupted(bf_py_state *state, bf_status st)
{
    if (st == BF_STATUS_INTERRUPTED && PyErr_CheckSignals() < 0)
        return NULL;
    return bf_py_raise(state, st);
}

/* ---- Pool ------------------------------------------------------------------------------ */

typedef struct PoolObject {
    PyObject_HEAD
    bf_pool *pool;
    PyThread_type_lock lock; /* start / stop / kill_worker, one at a time */
    int running;
    int n_workers;
} PoolObject;

static bf_status pool_start_locked(PoolObject *self)
{
    bf_status st = self->running ? BF_STATUS_OK : bf_pool_start(self->pool);
    self->running |= st == BF_STATUS_OK;
    return st;
}

static bf_status pool_stop_locked(PoolObject *self)
{
    bf_status st = self->running ? bf_pool_stop(self->pool) : BF_STATUS_OK;
    self->running = 0;
    return st;
}

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"model_path", "workers", "frontend", "backend", "batch",
                             "batch_timeout_us", "queue_max", "max_message", "max_payload",
                             "threads", "heartbeat_interval_ms", "heartbeat_liveness",
                             "queue_timeout_ms", "drain_timeout_ms", "curve_key", "curve_allow",
                             "echo", "start", "prefetch", "curve_worker_allow", "rt_priority",
                             "conn_heartbeat_ms", "conn_timeout_ms", "conn_ttl_ms", NULL};
    bf_py_state *state = bf_py_type_state(type);
    bf_pool_params pp = bf_pool_default_params();
    PyObject *model_path = Py_None, *curve_key = Py_None, *curve_allow = Py_None;
    PyObject *echo = Py_None, *worker_allow = Py_None;
    PyObject *keep[5] = {NULL, NULL, NULL, NULL, NULL};
    int threads = 0, start = 1;
    PoolObject *self = NULL;
    bf_pool *pool = NULL;
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(
            args, kw, "|O$isziiiiiiiiiiOOOpiOiiii:Pool", kwlist, &model_path, &pp.n_workers,
            &pp.frontend, &pp.backend, &pp.worker.max_batch, &pp.worker.batch_timeout_us,
            &pp.queue_max, &pp.max_message, &pp.worker.max_payload, &threads,
            &pp.heartbeat_interval_ms, &pp.heartbeat_liveness, &pp.queue_timeout_ms,
            &pp.drain_timeout_ms, &curve_key, &curve_allow, &echo, &start,
            &pp.worker.prefetch, &worker_allow, &pp.rt_priority, &pp.conn.heartbeat_ms,
            &pp.conn.timeout_ms, &pp.conn.ttl_ms))
        return bf_py_arg_error(state, "Pool");
    if (threads < 0 || threads > 1024) {
        PyErr_SetString(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                        "threads (per worker) must be in [0, 1024]");
        return NULL;
    }
    pp.n_threads = threads * pp.n_workers; /* the pool gives each thread cores / workers */
    if (parse_compute(state, model_path, echo, &pp.worker.compute, keep) < 0 ||
        bf_py_fs_opt(state, curve_key, &keep[2]) < 0 ||
        bf_py_fs_opt(state, curve_allow, &keep[3]) < 0 ||
        bf_py_fs_opt(state, worker_allow, &keep[4]) < 0)
        goto done;
    pp.curve_key_file = bf_py_cstr(keep[2]);
    pp.curve_allow_file = bf_py_cstr(keep[3]);
    pp.curve_worker_allow_file = bf_py_cstr(keep[4]);
    /* bf_pool_create copies every string it keeps */
    if (bf_py_check(state, bf_pool_create(&pool, &pp)) < 0)
        goto done;
    self = (PoolObject *)type->tp_alloc(type, 0);
    if (self == NULL || !(self->lock = PyThread_allocate_lock())) {
        if (self)
            PyErr_NoMemory();
        Py_CLEAR(self);
        bf_pool_destroy(pool);
        goto done;
    }
    self->pool = pool;
    self->n_workers = pp.n_workers;
    if (start) {
        BF_PY_LOCKED_CALL(self->lock, st, pool_start_locked(self));
        if (st != BF_STATUS_OK) {
            bf_py_raise_interrupted(state, st);
            Py_CLEAR(self);
        }
    }
done:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(keep[i]);
    return (PyObject *)self;
}

static void pool_dealloc(PoolObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->pool) {
        bf_pool *pool = self->pool;
        Py_BEGIN_ALLOW_THREADS
        bf_pool_destroy(pool); /* stops (drains) a running pool */
        Py_END_ALLOW_THREADS
    }
    if (self->lock)
        PyThread_free_lock(self->lock);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *pool_start(PoolObject *self, PyObject *unused)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_status st;
    (void)unused;
    BF_PY_LOCKED_CALL(self->lock, st, pool_start_locked(self));
    if (st != BF_STATUS_OK)
        return bf_py_raise_interrupted(state, st);
    Py_RETURN_NONE;
}

static PyObject *pool_stop(PoolObject *self, PyObject *unused)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_status st;
    (void)unused;
    BF_PY_LOCKED_CALL(self->lock, st, pool_stop_locked(self));
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *pool_kill_worker(PoolObject *self, PyObject *arg)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    long i = PyLong_AsLong(arg);
    bf_status st;
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || i >= self->n_workers) {
        PyErr_Format(bf_py_exception(state, BF_STATUS_INVALID_ARGUMENT),
                     "no worker thread %ld (the pool has %d)", i, self->n_workers);
        return NULL;
    }
    BF_PY_LOCKED_CALL(self->lock, st, bf_pool_kill_worker(self->pool, (int)i));
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    Py_RETURN_NONE;
}

static PyObject *pool_enter(PoolObject *self, PyObject *unused)
{
    (void)unused;
    if (!pool_start(self, NULL))
        return NULL;
    Py_DECREF(Py_None);
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *pool_exit(PoolObject *self, PyObject *args)
{
    (void)args;
    if (!pool_stop(self, NULL))
        return NULL;
    Py_DECREF(Py_None);
    Py_RETURN_FALSE;
}

static PyObject *hist_summary(const uint64_t h[BF_STATS_BUCKETS])
{
    uint64_t n = 0;
    PyObject *buckets = PyList_New(BF_STATS_BUCKETS);
    if (buckets == NULL)
        return NULL;
    for (int b = 0; b < BF_STATS_BUCKETS; b++) {
        PyObject *v = PyLong_FromUnsignedLongLong(h[b]);
        if (v == NULL) {
            Py_DECREF(buckets);
            return NULL;
        }
        PyList_SET_ITEM(buckets, b, v);
        n += h[b];
    }
    return Py_BuildValue("{s:K,s:d,s:d,s:d,s:d,s:N}", "count", (unsigned long long)n, "p50",
                         bf_stats_quantile(h, 0.5), "p90", bf_stats_quantile(h, 0.9), "p99",
                         bf_stats_quantile(h, 0.99), "max", bf_stats_quantile(h, 1.0),
                         "buckets", buckets);
}

static PyObject *pool_stats(PoolObject *self, PyObject *unused)
{
    bf_py_state *state = bf_py_type_state(Py_TYPE(self));
    bf_serve_stats s;
    PyObject *out, *batches;
    (void)unused;
    if (bf_py_check(state, bf_pool_stats(self->pool, &s)) < 0)
        return NULL;
    if (!(batches = PyDict_New()))
        return NULL;
    for (int b = 0; b <= BF_STATS_BATCH_MAX; b++) {
        PyObject *k, *v;
        if (s.batch_hist[b] == 0)
            continue;
        k = PyLong_FromLong(b);
        v = PyLong_FromUnsignedLongLong(s.batch_hist[b]);
        if (!k || !v || PyDict_SetItem(batches, k, v) < 0) {
            Py_XDECREF(k), Py_XDECREF(v), Py_DECREF(batches);
            return NULL;
        }
        Py_DECREF(k), Py_DECREF(v);
    }
    out = Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:i,s:i,s:i,s:N,s:N,s:N,s:N,"
        "s:{s:i,s:i,s:i,s:i}}", "requests",
        (unsigned long long)s.requests, "replies_ok", (unsigned long long)s.replies_ok,
        "errors", (unsigned long long)s.errors, "malformed", (unsigned long long)s.malformed,
        "busy", (unsigned long long)s.busy, "requeued", (unsigned long long)s.requeued,
        "late_replies", (unsigned long long)s.late_replies, "workers_purged",
        (unsigned long long)s.workers_purged, "batches", (unsigned long long)s.batches,
        "workers", s.workers, "queued", s.queued, "in_flight", s.in_flight, "batch_sizes",
        batches, "queue_us", hist_summary(s.queue_us), "compute_us",
        hist_summary(s.compute_us), "total_us", hist_summary(s.total_us),
        /* what a drain began and ended with: a request in flight at its end is stuck */
        "drain", "queued_start", s.drain_queued[0], "in_flight_start", s.drain_in_flight[0],
        "queued_end", s.drain_queued[1], "in_flight_end", s.drain_in_flight[1]);
    return out;
}

static PyObject *pool_endpoint_which(PoolObject *self, int which)
{
    char buf[256];
    if (bf_pool_endpoint(self->pool, which, buf, sizeof buf) != BF_STATUS_OK)
        Py_RETURN_NONE; /* not bound (stopped, or no backend) */
    return PyUnicode_FromString(buf);
}

static PyObject *pool_get_endpoint(PoolObject *self, void *closure)
{
    (void)closure;
    return pool_endpoint_which(self, 0);
}

static PyObject *pool_get_backend(PoolObject *self, void *closure)
{
    (void)closure;
    return pool_endpoint_which(self, 1);
}

static PyObject *pool_get_running(PoolObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->running);
}

static PyMethodDef pool_methods[] = {
    {"start", (PyCFunction)pool_start, METH_NOARGS,
     "Build the computes, bind the endpoints, start the threads (no-op when running)."},
    {"stop", (PyCFunction)pool_stop, METH_NOARGS,
     "Refuse new requests, answer those queued or in flight (up to drain_timeout_ms), join "
     "the threads.  Harmless when stopped."},
    {"stats", (PyCFunction)pool_stats, METH_NOARGS,
     "Counters, live workers / queued / in flight, batch sizes and per-stage latency "
     "quantiles (upper bounds of power-of-two buckets, us)."},
    {"kill_worker", (PyCFunction)pool_kill_worker, METH_O,
     "kill_worker(i): worker thread i stops dead, as if crashed (fault injection)."},
    {"__enter__", (PyCFunction)pool_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)pool_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pool_getset[] = {
    {"endpoint", (getter)pool_get_endpoint, NULL, "the frontend as bound, or None", NULL},
    {"backend", (getter)pool_get_backend, NULL,
     "the backend for worker processes as bound, or None", NULL},
    {"running", (getter)pool_get_running, NULL, "whether the pool is started", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_new, pool_new},
    {Py_tp_dealloc, pool_dealloc},
    {Py_tp_methods, pool_methods},
    {Py_tp_getset, pool_getset},
    {Py_tp_doc,
     "Pool(model_path=None, *, workers=1, frontend='tcp://127.0.0.1:5555', backend=None, "
     "batch=1, batch_timeout_us=1000, queue_max=1024, max_message=8 MiB, max_payload=8 MiB, "
     "threads=0, heartbeat_interval_ms=1000, heartbeat_liveness=3, queue_timeout_ms=10000, "
     "drain_timeout_ms=5000, curve_key=None, curve_allow=None, echo=None, start=True, "
     "prefetch=-1, curve_worker_allow=None, rt_priority=0, conn_heartbeat_ms=5000, "
     "conn_timeout_ms=10000, conn_ttl_ms=15000): the cloud worker pool (bf_pool) "
     "serving restore + tail of a model file, "
     "or the echo backend (echo={'dims': (C, H, W), 'classes', 'delay_us', 'split', "
     "'model_hash'}).  threads: oneDNN threads per worker thread (0: the cores shared out); "
     "prefetch: requests a worker holds beyond its batch (-1: one batch more); "
     "curve_worker_allow: a file of worker public keys, CURVE on the backend endpoint too; "
     "rt_priority: 1..98 runs the broker, workers and I/O threads under SCHED_FIFO, the "
     "heartbeat threads one higher (needs root or CAP_SYS_NICE, else Refused); conn_*: "
     "ZeroMQ's heartbeats on every TCP connection, which close a vanished peer's within "
     "conn_heartbeat_ms + conn_timeout_ms (0: off)."},
    {0, NULL},
};

static PyType_Spec pool_spec = {"butterfly._C.Pool", sizeof(PoolObject), 0,
                                Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, pool_slots};

/* ---- functions --------------------------------------------------------------------------- */

static PyObject *py_run_worker(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"model_path", "connect", "batch", "batch_timeout_us", "threads",
                             "heartbeat_interval_ms", "heartbeat_liveness", "reconnect_max_ms",
                             "max_payload", "echo", "stop_fd", "prefetch", "curve_server_key",
                             "curve_key", "rt_priority", "conn_heartbeat_ms",
                             "conn_timeout_ms", "conn_ttl_ms", NULL};
    bf_py_state *state = bf_py_module_state(mod);
    bf_worker_params wp = bf_worker_default_params();
    PyObject *model_path = Py_None, *echo = Py_None, *ep = NULL, *conn = NULL;
    PyObject *server_key = Py_None, *key = Py_None, *keep[4] = {NULL, NULL, NULL, NULL};
    bf_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OU|$iiiiiiiOiiOOiiii:run_worker", kwlist,
                                     &model_path, &ep, &wp.max_batch, &wp.batch_timeout_us,
                                     &wp.n_threads, &wp.heartbeat_interval_ms,
                                     &wp.heartbeat_liveness, &wp.reconnect_max_ms,
                                     &wp.max_payload, &echo, &wp.stop_fd, &wp.prefetch,
                                     &server_key, &key, &wp.rt_priority,
                                     &wp.conn.heartbeat_ms, &wp.conn.timeout_ms,
                                     &wp.conn.ttl_ms))
        return bf_py_arg_error(state, "run_worker");
    if (parse_compute(state, model_path, echo, &wp.compute, keep) < 0 ||
        bf_py_fs_opt(state, server_key, &keep[2]) < 0 || bf_py_fs_opt(state, key, &keep[3]) < 0)
        goto fail;
    wp.curve_server_key = bf_py_cstr(keep[2]);
    wp.curve_key_file = bf_py_cstr(keep[3]);
    /* the worker reads these strings for as long as it runs: the references live till then */
    if (bf_py_text_arg(state, ep, "connect", &conn) < 0)
        goto fail;
    wp.connect = bf_py_cstr(conn);
    Py_BEGIN_ALLOW_THREADS
    st = bf_worker_run(&wp);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 4; i++)
        Py_XDECREF(keep[i]);
    Py_DECREF(conn);
    if (st != BF_STATUS_OK)
        return bf_py_raise_interrupted(state, st);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(conn);
    for (int i = 0; i < 4; i++)
        Py_XDECREF(keep[i]);
    return NULL;
}

static PyObject *py_curve_keygen(PyObject *mod, PyObject *arg)
{
    bf_py_state *state = bf_py_module_state(mod);
    PyObject *path;
    char pub[BF_CURVE_KEY_LEN + 1];
    bf_status st;
    if (!PyUnicode_FSConverter(arg, &path))
        return bf_py_arg_error(state, "curve_keygen");
    Py_BEGIN_ALLOW_THREADS
    st = bf_curve_keygen(PyBytes_AS_STRING(path), pub);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    return PyUnicode_FromString(pub);
}

static PyObject *py_payload_encode(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"data", "codec", "level", NULL};
    bf_py_state *state = bf_py_module_state(mod);
    Py_buffer buf;
    const char *codec = "zstd";
    int level = 3;
    uint8_t *out = NULL;
    size_t len = 0;
    bf_codec c;
    bf_status st;
    PyObject *res;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|si:payload_encode", kwlist, &buf, &codec,
                                     &level))
        return bf_py_arg_error(state, "payload_encode");
    if (bf_py_parse_codec(state, codec, &c) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = bf_payload_encode(c, level, buf.buf, (size_t)buf.len, &out, &len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (st != BF_STATUS_OK)
        return bf_py_raise(state, st);
    res = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)len);
    free(out);
    return res;
}

static PyMethodDef serve_functions[] = {
    {"payload_encode", (PyCFunction)(void (*)(void))py_payload_encode,
     METH_VARARGS | METH_KEYWORDS,
     "payload_encode(data, codec='zstd', level=3) -> bytes: a payload coded as the client "
     "sends it."},
    {"run_worker", (PyCFunction)(void (*)(void))py_run_worker, METH_VARARGS | METH_KEYWORDS,
     "run_worker(model_path, connect, *, batch=1, batch_timeout_us=1000, threads=0, "
     "heartbeat_interval_ms=1000, heartbeat_liveness=3, reconnect_max_ms=8000, "
     "max_payload=8 MiB, echo=None, stop_fd=0, prefetch=-1, curve_server_key=None, "
     "curve_key=None, rt_priority=0, conn_heartbeat_ms=5000, conn_timeout_ms=10000, "
     "conn_ttl_ms=15000): a standalone worker connected "
     "to a pool's backend (stop_fd > 0: it stops once that fd is readable, e.g. "
     "signal.set_wakeup_fd's); "
     "blocks (without the GIL) until a signal: then raises what the signal's Python handler "
     "raised (KeyboardInterrupt for Ctrl-C), else butterfly.Interrupted.  model_path may be "
     "None with echo={...} (see Pool)."},
    {"curve_keygen", (PyCFunction)py_curve_keygen, METH_O,
     "curve_keygen(path) -> public key: writes a CURVE key pair to path (mode 0600) and its "
     "public half to path + '.pub'."},
    {NULL, NULL, 0, NULL},
};

int bf_py_serve_init(PyObject *m)
{
    bf_py_state *state = bf_py_module_state(m);
    state->pool_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &pool_spec, NULL);
    if (!state->pool_type || PyModule_AddType(m, state->pool_type) < 0)
        return -1;
    if (PyModule_AddFunctions(m, serve_functions) < 0)
        return -1;
    /* the connection heartbeats' defaults, for the Python signatures */
    bf_conn_params conn = bf_pool_default_params().conn;
    if (PyModule_AddIntConstant(m, "CONN_HEARTBEAT_MS", conn.heartbeat_ms) < 0 ||
        PyModule_AddIntConstant(m, "CONN_TIMEOUT_MS", conn.timeout_ms) < 0 ||
        PyModule_AddIntConstant(m, "CONN_TTL_MS", conn.ttl_ms) < 0)
        return -1;
    return PyModule_AddIntConstant(m, "PROTOCOL_VERSION", BF_PROTOCOL_VERSION);
}
