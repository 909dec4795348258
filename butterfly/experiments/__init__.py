"""Experiments: per-layer profiling, split candidates and their costs, the cost model, the
planner and the adaptive client, the paper's setting, the cost model against emulated
links, and the demo.

    >>> prof = profile(net, part="all", repeats=20)     # per-layer medians on this machine
    >>> cands, nets = split_candidates(net)             # one costmodel.Candidate per split
    >>> phone = machine_profile(net, nets)              # a costmodel.DeviceProfile (measured)

Command line: ``butterfly profile``, ``butterfly plan``, ``butterfly demo``.
"""

from ..network import candidate_network, coded_sizes, plain_network, zstd_size
from . import costmodel, planner
from .adaptive import AdaptiveClient
from .candidates import (
                         ASSUMED_POWER_W,
                         PAPER_CHANNELS,
                         PAPER_STRIDE,
                         candidate,
                         cost_tables,
                         cut_candidate,
                         format_tables,
                         load_results,
                         machine_profile,
                         payload_bytes,
                         split_candidates,
                         split_name,
)
from .demo import DEMO_CONFIG, demo, demo_model, demo_network
from .emulated import compare
from .paper import paper_setting
from .profiling import layer_records, profile, profile_parts

__all__ = ["ASSUMED_POWER_W", "DEMO_CONFIG", "PAPER_CHANNELS", "PAPER_STRIDE", "AdaptiveClient",
           "candidate_network", "coded_sizes", "plain_network", "zstd_size",
           "candidate", "compare", "cost_tables", "costmodel", "cut_candidate", "demo",
           "demo_model",
           "demo_network", "format_tables", "layer_records", "load_results", "machine_profile",
           "paper_setting", "payload_bytes", "planner", "profile", "profile_parts",
           "split_candidates", "split_name"]
