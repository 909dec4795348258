"""Every default of the pool, its workers, the client and the load generator, read from the C
core's ``*_default_params()`` (butterfly.h): one source, used by the Python API and the CLI
alike."""

from __future__ import annotations

from .. import _C

_D = _C.defaults()
POOL = _D["pool"]
WORKER = _D["worker"]
CLIENT = _D["client"]
LOAD = _D["load"]
CONN = _D["conn"]  # ZeroMQ's heartbeats on every TCP connection (docs/PROTOCOL.md section 1)

DEFAULT_BIND = POOL["frontend"]
DEFAULT_BACKEND_CONNECT = WORKER["connect"]
CONN_HEARTBEAT_MS = CONN["heartbeat_ms"]
CONN_TIMEOUT_MS = CONN["timeout_ms"]
CONN_TTL_MS = CONN["ttl_ms"]
WORKERS = 2  # worker threads `serve` starts when not told (the C pool alone takes 1)
