"""_C.defaults(): the C library's bf_*_default_params() as dicts, one per params struct of
butterfly.h, with every field a Python caller can set -- checked against the header itself,
so that a field added in C without a row in csrc/python/defaults_py.c fails here."""

import os
import re

import pytest

from butterfly import _C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "csrc", "include", "butterfly.h")
PROTOCOL = os.path.join(ROOT, "csrc", "serve", "protocol.h")

GROUPS = {
    "plan": "bf_plan_params",
    "compute": "bf_compute_params",
    "worker": "bf_worker_params",
    "pool": "bf_pool_params",
    "client": "bf_client_params",
    "load": "bf_load_params",
    "sgd": "bf_sgd_params",
    "adam": "bf_adam_params",
    "conn": "bf_conn_params",
}


def _structs():
    """{struct name: [(type, field name, is_pointer)]} of butterfly.h's typedef structs."""
    text = re.sub(r"/\*.*?\*/", "", open(HEADER).read(), flags=re.S)
    out = {}
    for name, body, alias in re.findall(r"typedef struct (\w+) \{(.*?)\} (\w+);", text, re.S):
        assert name == alias
        fields = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            fn = re.search(r"\(\*(\w+)\)", decl)  # a function pointer
            if fn:
                fields.append(("fn", fn.group(1), True))
                continue
            m = re.match(r"(.*?)(\w+)(\[[^\]]*\])*$", decl)
            ctype = m.group(1).strip()
            fields.append((ctype.replace("*", "").strip(), m.group(2), "*" in ctype))
        out[name] = fields
    return out


STRUCTS = _structs()


def _expected_keys(struct):
    """Field names Python sees: all but pointers, except strings (const char *)."""
    return [name for ctype, name, ptr in STRUCTS[struct]
            if not ptr or ctype == "const char"]


def _check_struct(d, struct, where):
    assert list(d) == _expected_keys(struct), f"{where}: fields of {struct}"
    for ctype, name, ptr in STRUCTS[struct]:
        if ctype in STRUCTS and not ptr:
            assert isinstance(d[name], dict), f"{where}.{name}"
            _check_struct(d[name], ctype, f"{where}.{name}")


def test_header_parsed():
    # the parser itself: pointer fields are seen as such
    assert ("const char", "model_path", True) in STRUCTS["bf_compute_params"]
    assert ("fn", "create", True) in STRUCTS["bf_compute_params"]
    assert ("uint32_t", "latency_us", True) in STRUCTS["bf_load_params"]
    assert ("bf_worker_params", "worker", False) in STRUCTS["bf_pool_params"]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_field_present(group):
    d = _C.defaults()
    assert set(d) == set(GROUPS)
    _check_struct(d[group], GROUPS[group], group)


def test_values_python_types():
    d = _C.defaults()
    assert d["plan"]["training"] is False and d["sgd"]["nesterov"] is False
    assert d["client"]["codec"] == "raw"
    assert d["compute"]["kind"] == "echo" and d["compute"]["dims"] == (1, 28, 28)
    assert d["pool"]["backend"] is None and d["client"]["model_hash"] is None
    # floats as the C source wrote them, not widened from float32
    assert (d["sgd"]["lr"], d["sgd"]["momentum"], d["sgd"]["weight_decay"]) == (0.1, 0.9, 5e-4)


def test_values_match_documented_defaults():
    consts = {k: v for k, v in re.findall(r"#define (BF_\w+) (\d+)\b", open(PROTOCOL).read())}
    d = _C.defaults()
    pool, worker, client = d["pool"], d["worker"], d["client"]
    assert pool["queue_max"] == int(consts["BF_QUEUE_MAX"]) == 1024
    assert pool["drain_timeout_ms"] == int(consts["BF_DRAIN_TIMEOUT_MS"]) == 5000
    assert pool["queue_timeout_ms"] == 10000  # butterfly.h: "default 10 s"
    assert pool["heartbeat_interval_ms"] == int(consts["BF_HEARTBEAT_INTERVAL_MS"]) == 1000
    assert pool["heartbeat_liveness"] == worker["heartbeat_liveness"] == 3
    assert pool["max_message"] == worker["max_payload"] == 8 << 20
    assert worker["reconnect_max_ms"] == int(consts["BF_RECONNECT_MAX_MS"]) == 8000
    assert worker["batch_timeout_us"] == pool["worker"]["batch_timeout_us"] == 1000
    assert worker["prefetch"] == -1  # butterfly.h: "-1: one more batch, the default"
    assert client["timeout_ms"] == int(consts["BF_CLIENT_TIMEOUT_MS"]) == 3000
    assert client["retries"] == int(consts["BF_CLIENT_RETRIES"]) == 2
    assert d["plan"]["part_begin"] == 0 and d["plan"]["part_end"] == 3  # HEAD..TAIL
    # the connection heartbeats: one struct, the same defaults everywhere, and the constants
    conn = d["conn"]
    assert conn == pool["conn"] == worker["conn"] == client["conn"] == d["load"]["client"]["conn"]
    assert (conn["heartbeat_ms"], conn["timeout_ms"], conn["ttl_ms"]) == (
        _C.CONN_HEARTBEAT_MS, _C.CONN_TIMEOUT_MS, _C.CONN_TTL_MS) == (5000, 10000, 15000)


def test_fresh_copy():
    d = _C.defaults()
    d["pool"]["queue_max"] = 1
    d["pool"]["conn"]["ttl_ms"] = 1
    assert _C.defaults()["pool"]["queue_max"] == 1024
    assert _C.defaults()["pool"]["conn"]["ttl_ms"] == 15000
