/* Shared by the files of the butterfly._C extension (never by csrc/ itself). */
#ifndef BF_PY_COMMON_H
#define BF_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#define PY_ARRAY_UNIQUE_SYMBOL bf_ARRAY_API
#ifndef BF_PY_MODULE_MAIN
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "butterfly.h"

/*
 * The module's state: its exception classes and types, created by its exec slots and owned
 * by the module object (so that every module object, in every interpreter, has its own).
 * Functions reach it through their module (bf_py_module_state), methods and constructors
 * through their type (bf_py_type_state).
 */
typedef struct bf_py_state {
    PyObject *error;                 /* butterfly.Error, the base of all below */
    PyObject *exc[BF_STATUS_COUNT_]; /* the subclass raised for each status (NULL for OK) */
    PyTypeObject *model_type;
    PyTypeObject *plan_type;
    PyTypeObject *cl_plan_type;
    PyTypeObject *pool_type;
    PyTypeObject *client_type;
} bf_py_state;

bf_py_state *bf_py_module_state(PyObject *module);
/* The state of the module that defined `type` (or its base); never NULL for our types. */
bf_py_state *bf_py_type_state(PyTypeObject *type);

/* Sets the Python exception that matches `status` (a subclass of butterfly.Error) with
 * bf_last_error() as its message; returns NULL so callers can `return bf_py_raise(...);`. */
PyObject *bf_py_raise(bf_py_state *state, bf_status status);
/* Returns 0 for BF_STATUS_OK, else sets the exception and returns -1. */
int bf_py_check(bf_py_state *state, bf_status status);
/* The exception class for a status (borrowed reference). */
PyObject *bf_py_exception(bf_py_state *state, bf_status status);
/* After an argument conversion failed (PyArg_Parse*, a converter): an int beyond what C
 * takes (OverflowError) and a string with a NUL or that is not valid text (ValueError)
 * become InvalidArgument naming fname; TypeError (a wrong type) stays.  Returns NULL. */
PyObject *bf_py_arg_error(bf_py_state *state, const char *fname);
/* A str -> a new UTF-8 bytes reference in *out, refusing NUL characters (InvalidArgument,
 * naming `what`) instead of letting C cut the string there; -1 on error. */
int bf_py_text_arg(bf_py_state *state, PyObject *o, const char *what, PyObject **out);

/*
 * Runs `call`, an expression giving a bf_status, into `st` without the GIL and holding
 * `lock`: one thread at a time uses an object's C state (a plan's buffers, a client's
 * socket), and other Python threads run meanwhile.  The GIL is let go before the lock is
 * taken, so a thread waiting for the lock never blocks the interpreter.
 */
#define BF_PY_LOCKED_CALL(lock, st, call)                                                  \
    do {                                                                                   \
        Py_BEGIN_ALLOW_THREADS                                                             \
        PyThread_acquire_lock((lock), WAIT_LOCK);                                          \
        (st) = (call);                                                                     \
        PyThread_release_lock((lock));                                                     \
        Py_END_ALLOW_THREADS                                                               \
    } while (0)

/*
 * Input arrays: returns a new reference to a C-contiguous, aligned array of `type_num`
 * with exactly `ndim` dims (dims[i] < 0 means any), or NULL with butterfly.Error set
 * (InvalidArgument) naming `what`.  Refuses other dtypes instead of casting silently.
 */
PyArrayObject *bf_py_input_array(bf_py_state *state, PyObject *obj, int type_num, int ndim,
                                 const npy_intp *dims, const char *what);

/* {"dtype", "shape", "quantized"} of a plan's source or destination. */
PyObject *bf_py_io_dict(const bf_io_desc *d);
/* New arrays for a plan's destination: *out, and *ranges (N, 2) when it is quantized (else
 * NULL).  Returns 0, or -1 with an exception set and nothing allocated. */
int bf_py_new_outputs(const bf_io_desc *d, PyObject **out, PyObject **ranges);
/* out, or (out, ranges) when ranges is not NULL; steals both references. */
PyObject *bf_py_outputs(PyObject *out, PyObject *ranges);

/* Serving helpers (serve_py.c).  A path-like or None -> a new bytes reference in *out (NULL
 * for None); -1 on error. */
int bf_py_fs_opt(bf_py_state *state, PyObject *o, PyObject **out);
/* The bytes' buffer, or NULL for NULL. */
const char *bf_py_cstr(PyObject *bytes);
/* bf_py_raise, except that after BF_STATUS_INTERRUPTED the exception a Python signal
 * handler raised (KeyboardInterrupt for Ctrl-C) wins. */
PyObject *bf_py_raise_interrupted(bf_py_state *state, bf_status st);
/* "raw" / "zstd" -> *out; -1 with InvalidArgument set otherwise (client_py.c). */
int bf_py_parse_codec(bf_py_state *state, const char *s, bf_codec *out);

/* The bf_model of a butterfly._C.Model, or NULL with TypeError set. */
bf_model *bf_py_model_get(bf_py_state *state, PyObject *obj);

/* Each file that adds types or functions to the module exposes one of these; module.c
 * calls them from its exec slot, after the exceptions are made. */
int bf_py_model_init(PyObject *module);
int bf_py_plan_init(PyObject *module);
int bf_py_serve_init(PyObject *module);
int bf_py_client_init(PyObject *module);
int bf_py_cl_init(PyObject *module);
int bf_py_defaults_init(PyObject *module);

#endif
