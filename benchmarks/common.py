"""Shared helpers for the benchmarks: timing (medians), JSON output, and plain torch.nn
ResNets that mirror butterfly's builders layer for layer, with our weights copied in.

torch (and onnx / onnxruntime) are optional peers: this module imports them lazily, so a
benchmark can still report our own figures without them.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np

# Run from anywhere: make the repository root importable (butterfly is built in place).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


# --- timing -------------------------------------------------------------------------------

def time_ms(fn, reps: int, warmup: int = 1, min_time_s: float = 0.0) -> list[float]:
    """Runs fn warmup times, then reps times (or longer, until min_time_s has passed);
    returns the per-call times in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return times


def interleaved_ms(fns: dict, reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Times several callables in rounds (a, b, c, a, b, c, ...) so that noise from other
    processes on a shared machine hits them alike; returns name -> list of ms."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append((time.perf_counter() - t) * 1e3)
    return out


def median(xs) -> float:
    return float(statistics.median(xs))


def stats(xs) -> dict:
    """median / min / relative spread (IQR / median) of a list of times."""
    xs = sorted(xs)
    med = statistics.median(xs)
    q = statistics.quantiles(xs, n=4) if len(xs) >= 4 else [xs[0], med, xs[-1]]
    return {"median": round(med, 3), "min": round(xs[0], 3), "n": len(xs),
            "iqr_rel": round((q[2] - q[0]) / med, 3) if med else None}


def r(x, nd: int = 3):
    return None if x is None else round(float(x), nd)


def ratio(a, b):
    return None if a is None or b is None or not b else round(a / b, 3)


def emit(obj: dict) -> None:
    """The one final JSON line every benchmark prints."""
    print(json.dumps(obj), flush=True)


def log(*a) -> None:
    """Progress goes to stderr so stdout carries only the JSON line."""
    print(*a, file=sys.stderr, flush=True)


def optional_import(name: str):
    try:
        return __import__(name)
    except Exception:  # noqa: BLE001  (missing or broken peer)
        return None


# --- torch ResNets mirroring butterfly.models ---------------------------------------------

def torch_resnet(depth: int, num_classes: int = 1000, in_channels: int = 3,
                 small: bool = False, width: int = 64):
    """A plain torch.nn ResNet (18/34/50, no torchvision) laid out like butterfly.models.resnet:
    module names follow our layer names (stem.conv, rb3.2.bn, rb5.down.conv, fc, ...)."""
    import torch
    from torch import nn

    kinds = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
             50: ("bottleneck", (3, 4, 6, 3))}
    kind, blocks = kinds[depth]

    class ConvBN(nn.Module):
        def __init__(self, cin, cout, k, stride, pad):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

        def forward(self, x):
            return self.bn(self.conv(x))

    class Block(nn.Module):
        def __init__(self, cin, width_, stride):
            super().__init__()
            if kind == "basic":
                cout = width_
                self.c1 = ConvBN(cin, width_, 3, stride, 1)
                self.c2 = ConvBN(width_, width_, 3, 1, 1)
                self.c3 = None
            else:
                cout = width_ * 4
                self.c1 = ConvBN(cin, width_, 1, 1, 0)
                self.c2 = ConvBN(width_, width_, 3, stride, 1)
                self.c3 = ConvBN(width_, cout, 1, 1, 0)
            self.down = ConvBN(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else None
            self.cout = cout

        def forward(self, x):
            y = torch.relu(self.c1(x))
            y = self.c2(y)
            if self.c3 is not None:
                y = self.c3(torch.relu(y))
            sc = x if self.down is None else self.down(x)
            return torch.relu(y + sc)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            if small:
                self.stem = ConvBN(in_channels, width, 3, 1, 1)
                self.pool = nn.Identity()
            else:
                self.stem = ConvBN(in_channels, width, 7, 2, 3)
                self.pool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], width
            for stage, count in enumerate(blocks):
                for b in range(count):
                    stride = 2 if stage > 0 and b == 0 else 1
                    blk = Block(cin, width * 2**stage, stride)
                    layers.append(blk)
                    cin = blk.cout
            self.blocks = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.pool(torch.relu(self.stem(x)))
            x = self.blocks(x)
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return self.fc(x)

        def module_for(self, name: str):
            """Our layer name ('rb3.2.conv', 'stem.bn', 'fc') -> the torch module."""
            if name == "fc":
                return self.fc
            parts = name.split(".")
            if parts[0] == "stem":
                return getattr(self.stem, parts[1])
            blk = self.blocks[int(parts[0][2:]) - 1]
            sub = blk.down if parts[1] == "down" else getattr(blk, "c" + parts[1])
            return getattr(sub, parts[2])

    return ResNet()


def randomize_bn(net, seed: int = 1) -> None:
    """Gives every batch-norm of our network non-trivial statistics (the builders start at
    gamma=1, beta=0, mean=0, var=1), so the weight check covers BN folding too; the values
    keep activations bounded through ResNet-50's depth."""
    rng = np.random.default_rng(seed)
    m = net.model
    for i in range(len(m)):
        if m.layer(i)["type"] != "batchnorm":
            continue
        c = m.get_param(i, 0).shape[0]
        m.set_param(i, 0, rng.uniform(0.3, 0.7, c).astype(np.float32))
        m.set_param(i, 1, rng.normal(0.0, 0.1, c).astype(np.float32))
        m.set_param(i, 2, rng.normal(0.0, 0.1, c).astype(np.float32))
        m.set_param(i, 3, rng.uniform(0.5, 1.5, c).astype(np.float32))
    net.clear_plans()  # plans fold BN into conv weights when built: rebuild after a change


def copy_weights_to_torch(net, tmodel) -> int:
    """Copies our parameters (conv (O, I/g, kh, kw), BN gamma/beta/mean/var, linear (O, I) +
    bias) into the mirroring torch model; returns the number of tensors copied."""
    import torch

    m = net.model
    n = 0
    with torch.no_grad():
        for i in range(len(m)):
            spec = m.layer(i)
            t = spec["type"]
            if t not in ("conv", "batchnorm", "linear"):
                continue
            mod = tmodel.module_for(spec["name"])
            params = [torch.from_numpy(np.ascontiguousarray(m.get_param(i, k)))
                      for k in range(len(m.param_names(i)))]
            if t == "batchnorm":
                mod.weight.copy_(params[0])
                mod.bias.copy_(params[1])
                mod.running_mean.copy_(params[2])
                mod.running_var.copy_(params[3])
                if abs(mod.eps - spec["eps"]) > 1e-9:
                    mod.eps = float(spec["eps"])
            else:
                w = params[0].reshape(mod.weight.shape)
                mod.weight.copy_(w)
                if len(params) > 1:
                    mod.bias.copy_(params[1])
            n += len(params)
    return n


def gflops(net, batch: int, ms: float) -> float | None:
    """2 * MACs per second, in GFLOP/s."""
    macs = sum(net.model.info(i)["macs"] for i in range(len(net.model)))
    return None if not ms else 2.0 * macs * batch / (ms * 1e-3) / 1e9


def total_macs(net) -> int:
    return int(sum(net.model.info(i)["macs"] for i in range(len(net.model))))
