"""butterfly: split computing for CNNs.

A phone runs the head of a network and a learned reduction unit and uploads an 8-bit
feature; a worker pool in the cloud restores it and runs the rest.  See README.md.
"""

from . import _C, datasets, opencl
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
)
from .distill import distill
from .models import Butterfly, resnet, resnet18, resnet34, resnet50
from .network import Network, Payload, load
from .onnx_export import export_onnx
from .onnx_import import import_onnx
from .serving import Client, LoadReport, serve
from .split import insert_butterfly
from .training import Trainer, evaluate, set_frozen, train

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Threads oneDNN and the core's loops use on the calling thread."""
    _C.set_num_threads(n)


__all__ = [
    "Butterfly", "Client", "Error", "LoadReport", "Network", "Payload", "Trainer", "datasets",
    "distill", "evaluate", "export_onnx", "import_onnx", "insert_butterfly", "load", "opencl", "resnet", "resnet18", "resnet34", "resnet50", "serve",
    "set_frozen", "set_num_threads", "train",
]
