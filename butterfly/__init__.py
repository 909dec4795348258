"""butterfly: split computing for CNNs.

A phone runs the head of a network and a learned reduction unit and uploads an 8-bit
feature; a worker pool in the cloud restores it and runs the rest.  See README.md.

The package, from the bottom up (a module imports only what is below it): ``_C`` (the C
core), ``checks``, ``network`` (the model, its parts and halves, the plan factories per
backend, builders, ONNX import / export), ``data``, ``training``, ``serving``, ``netem``
(emulated links), ``experiments`` (profiling, candidates, cost model, planner, the demo),
``cli``.
"""

import os as _os

# libgomp's threads spin for a long while between parallel regions by default: when other
# processes load the cores, a spinning thread holds a core that a thread with work (ours or
# another process's) needs, and a forward pass takes several times as long (3 to 7x on 2
# busy cores).  Threads that sleep at once cost a wake-up per primitive instead, and on a
# virtual machine whose idle cores halt, a wake-up is slow: a forward that comes after a
# pause (a server between requests) took 2-3x as long with a spin of 3,000.  10,000 spins
# cover the gaps between one forward's primitives and let the threads sleep between
# forwards (docs/PERFORMANCE.md has the measurements).  libgomp reads this once, when the
# extension loads it: a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from . import _C
from ._C import (  # noqa: F401  (the exception hierarchy)
    BackendError,
    Busy,
    Error,
    FileError,
    Interrupted,
    InvalidArgument,
    ModelError,
    NetworkError,
    NumericError,
    OpenCLError,
    OutOfMemory,
    ProtocolError,
    Refused,
    Timeout,
    Unsupported,
    UnsupportedError,
)
from .data import datasets, jpeg
from .network import (
    Butterfly,
    MobileHalf,
    Network,
    Payload,
    load,
    opencl,
    resnet,
    resnet18,
    resnet34,
    resnet50,
)
from .network.onnx_export import export_onnx
from .network.onnx_import import import_onnx
from .network.split import insert_butterfly
from .serving import Client, LoadReport, serve
from .training import Trainer, distill, evaluate, set_frozen, train
from .version import __version__


def set_num_threads(n: int) -> None:
    """Threads oneDNN and the core's loops use on the calling thread."""
    _C.set_num_threads(n)


__all__ = [
    "Butterfly", "Client", "Error", "LoadReport", "MobileHalf", "Network", "Payload", "Trainer",
    "UnsupportedError",
    "datasets", "distill", "evaluate", "export_onnx", "import_onnx", "insert_butterfly",
    "jpeg", "load", "opencl", "resnet", "resnet18", "resnet34", "resnet50", "serve",
    "set_frozen", "set_num_threads", "train", "__version__",
]
