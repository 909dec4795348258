"""A NumPy reference for every layer type, in float64, written from the definitions.

`run(layers, params, x)` executes a layer-spec list the way the C core must.
"""

from __future__ import annotations

import numpy as np


def conv2d(x, w, b, stride, pad, dilation, groups, pad_end=None):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = stride
    ph, pw = pad
    eh, ew = pad if pad_end is None else pad_end
    dh, dw = dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, eh), (pw, ew)))
    oh = (h + ph + eh - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pw + ew - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def deconv2d(x, w, b, stride, pad, dilation, groups, output_pad):
    """Transposed conv; w is (O, I/g, kh, kw) (this project's layout)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = stride
    ph, pw = pad
    dh, dw = dilation
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + 1 + output_pad[0]
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + 1 + output_pad[1]
    full = np.zeros((n, o, (h - 1) * sh + dh * (kh - 1) + 1 + output_pad[0],
                     (wd - 1) * sw + dw * (kw - 1) + 1 + output_pad[1]))
    og = o // groups
    for g in range(groups):
        xs = x[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                full[:, g * og:(g + 1) * og, i * dh:i * dh + sh * (h - 1) + 1:sh,
                     j * dw:j * dw + sw * (wd - 1) + 1:sw] += np.einsum(
                         "nchw,oc->nohw", xs, ws[:, :, i, j])
    out = full[:, :, ph:ph + oh, pw:pw + ow]
    if b is not None:
        out = out + b[None, :, None, None]
    return out


def pool2d(x, kind, k, stride, pad, pad_end=None):
    n, c, h, w = x.shape
    kh, kw = k
    sh, sw = stride
    ph, pw = pad
    eh, ew = pad if pad_end is None else pad_end
    oh = (h + ph + eh - kh) // sh + 1
    ow = (w + pw + ew - kw) // sw + 1
    fill = -np.inf if kind == "maxpool" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, eh), (pw, ew)), constant_values=fill)
    ones = np.pad(np.ones((h, w)), ((ph, eh), (pw, ew)))
    out = np.full((n, c, oh, ow), fill)
    count = np.zeros((oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            if kind == "maxpool":
                out = np.maximum(out, patch)
            else:
                out = out + patch
                count += ones[i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    return out if kind == "maxpool" else out / count


def quantize(x):
    """Per-sample min/max uint8 quantization, the formula of butterfly.h in float32."""
    x = x.astype(np.float32)
    flat = x.reshape(len(x), -1)
    lo = flat.min(axis=1)
    hi = flat.max(axis=1)
    diff = (hi - lo).astype(np.float32)
    inv = np.where(hi > lo, np.float32(255.0) / np.where(diff > 0, diff, 1), 0).astype(np.float32)
    v = np.floor((flat - lo[:, None]) * inv[:, None] + np.float32(0.5))
    q = np.clip(v, 0, 255).astype(np.uint8)
    return q.reshape(x.shape), np.stack([lo, hi], axis=1).astype(np.float32)


def dequantize(q, ranges):
    lo = ranges[:, 0].astype(np.float32)
    step = ((ranges[:, 1] - ranges[:, 0]) / np.float32(255.0)).astype(np.float32)
    flat = q.reshape(len(q), -1).astype(np.float32)
    return (lo[:, None] + flat * step[:, None]).reshape(q.shape)


def layer(spec, params, inputs):
    t = spec["type"]
    x = inputs[0]
    if t in ("conv", "deconv"):
        w = params[0].astype(np.float64)
        b = params[1].astype(np.float64) if len(params) > 1 else None
        args = (tuple(spec["stride"]), tuple(spec["pad"]), tuple(spec.get("dilation", (1, 1))),
                spec.get("groups", 1))
        if t == "conv":
            return conv2d(x, w, b, *args, spec.get("pad_end"))
        return deconv2d(x, w, b, *args, tuple(spec.get("output_pad", (0, 0))))
    if t == "batchnorm":
        g, be, mu, var = (p.astype(np.float64)[None, :, None, None] for p in params)
        return (x - mu) / np.sqrt(var + spec.get("eps", 1e-5)) * g + be
    if t == "relu":
        return np.maximum(x, 0)
    if t == "relu6":
        return np.clip(x, 0, 6)
    if t == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if t == "swish":
        return x / (1 + np.exp(-x))
    if t == "hardswish":
        return x * np.clip(x / 6 + 0.5, 0, 1)
    if t == "hardsigmoid":
        return np.clip(spec["alpha"] * x + spec["beta"], 0, 1)
    if t == "clip":
        return np.clip(x, spec["alpha"], spec["beta"])
    if t == "leaky_relu":
        return np.where(x >= 0, x, spec["alpha"] * x)
    if t == "mul":
        return x * inputs[1]
    if t == "concat":
        return np.concatenate(inputs, axis=1)
    if t in ("maxpool", "avgpool"):
        return pool2d(x, t, spec["kernel"], spec["stride"], spec["pad"], spec.get("pad_end"))
    if t == "global_avgpool":
        return x.mean(axis=(2, 3), keepdims=True)
    if t == "add":
        return x + inputs[1]
    if t == "linear":
        y = x.reshape(len(x), -1) @ params[0].astype(np.float64).T + params[1]
        return y[:, :, None, None]
    if t == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if t == "upsample":
        s = spec["scale"]
        return x.repeat(s, axis=2).repeat(s, axis=3)
    if t == "quantize":
        return quantize(x)
    if t == "dequantize":
        return dequantize(*x).astype(np.float64)
    raise NotImplementedError(t)


def run(layers, params, x, upto=None):
    """Runs layers [1, upto] on x (float64); returns the last output."""
    vals = {0: x.astype(np.float64)}
    upto = len(layers) - 1 if upto is None else upto
    for i in range(1, upto + 1):
        spec = layers[i]
        ins = [vals[j] for j in spec.get("inputs", [i - 1])]
        vals[i] = layer(spec, params[i], ins)
    return vals[upto]
