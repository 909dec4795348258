"""Serving: the cloud half as a ZeroMQ worker pool, and the phone half as its client.

The pool, its workers and the client are C (csrc/serve, docs/PROTOCOL.md); this package
starts and stops them, runs the mobile half locally and measures each stage.

    >>> pool = serve("net.bfly", workers=2, bind="tcp://127.0.0.1:5555")
    >>> client = Client("net.bfly", pool.endpoint)
    >>> client.classify(images, k=5)[0].topk      # [(class, probability), ...]
    >>> pool.stop()                               # drains: every request is answered

Command line: ``butterfly serve``, ``butterfly worker``, ``butterfly loadtest``,
``butterfly infer``.
"""

from .client import TOPK_MAX, Client, LoadReport, Result
from .commands import load_images
from .pool import (
                   CONN_HEARTBEAT_MS,
                   CONN_TIMEOUT_MS,
                   CONN_TTL_MS,
                   DEFAULT_BIND,
                   Pool,
                   ServerProcess,
                   child_env,
                   curve_keygen,
                   serve,
                   worker,
)

__all__ = ["CONN_HEARTBEAT_MS", "CONN_TIMEOUT_MS", "CONN_TTL_MS", "DEFAULT_BIND", "TOPK_MAX",
           "Client", "LoadReport", "Pool", "Result", "ServerProcess", "child_env",
           "curve_keygen", "load_images", "serve", "worker"]
