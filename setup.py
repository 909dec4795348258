"""Build of butterfly._C: the C core (csrc/) and its CPython extension.

oneDNN comes from PyPI's onednn-cpu-gomp / onednn-devel-cpu-gomp wheels, which put
libdnnl.so.3 under <prefix>/lib and the headers under <prefix>/include.  We find them through
the installed distributions (this works in a venv, the system prefix and pip's isolated build
environment) and set an rpath so the installed extension finds libdnnl at run time.
"""

import glob
import os
import subprocess
import sys
from importlib import metadata

import numpy
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _find_in_dist(dist_name, filename):
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == filename:
            return os.path.dirname(os.path.abspath(str(dist.locate_file(f))))
    return None


def _dnnl_dirs():
    root = os.environ.get("BF_DNNL_ROOT")
    if root:
        return os.path.join(root, "include"), os.path.join(root, "lib")
    inc = _find_in_dist("onednn-devel-cpu-gomp", "dnnl.h")
    lib = _find_in_dist("onednn-cpu-gomp", "libdnnl.so.3")
    for prefix in (sys.prefix, sys.base_prefix):
        if inc is None and os.path.exists(os.path.join(prefix, "include/oneapi/dnnl/dnnl.h")):
            inc = os.path.join(prefix, "include")
        if lib is None and os.path.exists(os.path.join(prefix, "lib/libdnnl.so.3")):
            lib = os.path.join(prefix, "lib")
    if inc is None or lib is None:
        sys.exit("butterfly: oneDNN v3 not found; pip install onednn-cpu-gomp==2023.2.0 "
                 "onednn-devel-cpu-gomp==2023.2.0 (or set BF_DNNL_ROOT)")
    # the devel wheel's include dir holds a oneapi/ subfolder next to the compat headers
    if os.path.basename(inc) == "dnnl" and os.path.basename(os.path.dirname(inc)) == "oneapi":
        inc = os.path.dirname(os.path.dirname(inc))
    return inc, lib


# Each folder under csrc/ that makes up the extension (a folder joins when its tests pass).
SOURCE_DIRS = ["core", "ops", "wire", "serve", "cl", "python"]


def _sources():
    out = []
    for d in SOURCE_DIRS:
        out += sorted(glob.glob(os.path.join("csrc", d, "*.c")))
    return out


# The OpenCL kernels (csrc/cl/kernels/*.cl) are embedded as strings into a generated header.
subprocess.check_call([sys.executable, os.path.join(HERE, "tools", "embed_cl.py")], cwd=HERE)

dnnl_inc, dnnl_lib = _dnnl_dirs()
debug = os.environ.get("BF_DEBUG") == "1"

ext = Extension(
    "butterfly._C",
    sources=_sources(),
    include_dirs=["csrc/include", "csrc", "csrc/cl/generated", numpy.get_include(), dnnl_inc],
    library_dirs=[dnnl_lib],
    libraries=["dnnl", "zmq", "msgpackc", "zstd", "dl", "m"],
    runtime_library_dirs=[dnnl_lib],
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fopenmp",
                        "-fvisibility=hidden", "-Wno-missing-field-initializers"]
    + (["-O0", "-g"] if debug else ["-O3"]),
    extra_link_args=["-fopenmp", "-Wl,-rpath,$ORIGIN/../../.."],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(ext_modules=[ext])
