"""Small torch.nn definitions of well-known CNN families, for the ONNX import tests: the
layer patterns of ResNet-18, MobileNetV2, MobileNetV3-small (hardswish, squeeze-and-
excitation with hardsigmoid), EfficientNet-B0 (SiLU, squeeze-and-excitation with sigmoid),
VGG-11 with batch-norm, a DenseNet block (concat) and squeeze-and-excitation made of linear
layers (as timm's and many hand-written models do it).  Widths and depths are parameters so
that tests stay fast; random weights, batch-norm statistics randomized, eval mode."""

from __future__ import annotations

import torch
from torch import nn


def _bn_random(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.2
            m.running_mean.data = torch.randn(c, generator=g) * 0.2
            m.running_var.data = torch.rand(c, generator=g) + 0.5
    return model.eval()


def conv_bn(ci, co, k=3, s=1, g=1, act=nn.ReLU):
    layers = [nn.Conv2d(ci, co, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(co)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, ci, co, s):
        super().__init__()
        self.a = conv_bn(ci, co, 3, s)
        self.b = conv_bn(co, co, 3, 1, act=None)
        self.down = conv_bn(ci, co, 1, s, act=None) if s != 1 or ci != co else nn.Identity()

    def forward(self, x):
        return torch.relu(self.b(self.a(x)) + self.down(x))


def resnet18(width=64, classes=10):
    w = [width, width * 2, width * 4, width * 8]
    layers = [nn.Conv2d(3, w[0], 7, 2, 3, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    ci = w[0]
    for i, co in enumerate(w):
        for b in range(2):
            layers.append(BasicBlock(ci, co, 2 if i and not b else 1))
            ci = co
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ci, classes)]
    return _bn_random(nn.Sequential(*layers))


class InvertedResidual(nn.Module):
    def __init__(self, ci, co, s, expand, k=3, act=nn.ReLU6, se=None):
        super().__init__()
        hid = ci * expand
        layers = [conv_bn(ci, hid, 1, act=act)] if expand != 1 else []
        layers.append(conv_bn(hid, hid, k, s, g=hid, act=act))
        if se is not None:
            layers.append(se(hid))
        layers.append(conv_bn(hid, co, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.res = s == 1 and ci == co

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


def mobilenet_v2(width=0.5, classes=10):
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]
    c = int(32 * width)
    layers = [conv_bn(3, c, 3, 2, act=nn.ReLU6)]
    for t, co, n, s in cfg:
        co = max(8, int(co * width))
        for i in range(n):
            layers.append(InvertedResidual(c, co, s if i == 0 else 1, t))
            c = co
    layers += [conv_bn(c, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(1280, classes)]
    return _bn_random(nn.Sequential(*layers))


class SqueezeExcite(nn.Module):
    def __init__(self, c, reduce=4, act=nn.ReLU, gate=nn.Hardsigmoid):
        super().__init__()
        r = max(8, c // reduce)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(r, c, 1)
        self.gate = gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


def mobilenet_v3_small(classes=10):
    hs, re = nn.Hardswish, nn.ReLU
    cfg = [(3, 16, 16, True, re, 2), (3, 72, 24, False, re, 2), (3, 88, 24, False, re, 1),
           (5, 96, 40, True, hs, 2), (5, 240, 40, True, hs, 1), (5, 120, 48, True, hs, 1),
           (5, 288, 96, True, hs, 2), (5, 576, 96, True, hs, 1)]
    layers = [conv_bn(3, 16, 3, 2, act=hs)]
    c = 16
    for k, hid, co, se, act, s in cfg:
        layers.append(InvertedResidual(c, co, s, hid // c if hid % c == 0 else 1, k, act,
                                       SqueezeExcite if se else None)
                      if hid % c == 0 else _MBConvExp(c, hid, co, k, s, act, se))
        c = co
    layers += [conv_bn(c, 576, 1, act=hs), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(576, 256), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(256, classes)]
    return _bn_random(nn.Sequential(*layers))


class _MBConvExp(nn.Module):
    """An inverted residual whose expansion is not a multiple of its input channels."""

    def __init__(self, ci, hid, co, k, s, act, se, gate=nn.Hardsigmoid):
        super().__init__()
        layers = [conv_bn(ci, hid, 1, act=act), conv_bn(hid, hid, k, s, g=hid, act=act)]
        if se:
            layers.append(SqueezeExcite(hid, gate=gate, act=nn.ReLU if gate is nn.Hardsigmoid
                                        else nn.SiLU))
        layers.append(conv_bn(hid, co, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.res = s == 1 and ci == co

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


def efficientnet_b0(width=0.5, classes=10):
    cfg = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 5, 40, 2, 2), (6, 3, 80, 2, 3),
           (6, 5, 112, 1, 3), (6, 5, 192, 2, 4), (6, 3, 320, 1, 1)]
    c = int(32 * width)
    layers = [conv_bn(3, c, 3, 2, act=nn.SiLU)]
    for t, k, co, s, n in cfg:
        co = max(8, int(co * width))
        for i in range(n):
            layers.append(_MBConvExp(c, c * t, co, k, s if i == 0 else 1, nn.SiLU, True,
                                     gate=nn.Sigmoid))
            c = co
    layers += [conv_bn(c, 1280, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(1280, classes)]
    return _bn_random(nn.Sequential(*layers))


def vgg11_bn(width=16, classes=10, size=64):
    cfg = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v * width, 3, 1, 1), nn.BatchNorm2d(v * width), nn.ReLU()]
            c = v * width
    s = size // 32
    layers += [nn.Flatten(), nn.Linear(c * s * s, 64), nn.ReLU(), nn.Dropout(),
               nn.Linear(64, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, classes)]
    return _bn_random(nn.Sequential(*layers))


class LinearSqueezeExcite(nn.Module):
    """Squeeze-and-excitation with nn.Linear: pool -> flatten -> fc -> act -> fc -> gate ->
    back to (N, C, 1, 1) -> scale.  style 0: adaptive pool, flatten, ReLU, sigmoid, view;
    style 1: mean over H, W, SiLU, hardsigmoid, unsqueeze twice and expand_as."""

    def __init__(self, c, reduce=4, style=0):
        super().__init__()
        r = max(8, c // reduce)
        self.fc1 = nn.Linear(c, r)
        self.fc2 = nn.Linear(r, c)
        self.style = style

    def forward(self, x):
        b, c = x.shape[:2]
        if self.style == 0:
            y = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            y = torch.sigmoid(self.fc2(torch.relu(self.fc1(y))))
            return x * y.view(b, c, 1, 1)
        y = x.mean((2, 3))
        y = nn.functional.hardsigmoid(self.fc2(nn.functional.silu(self.fc1(y))))
        return x * y.unsqueeze(-1).unsqueeze(-1).expand_as(x)


def se_linear(width=16, classes=10):
    """Inverted residuals whose squeeze-and-excitation is made of linear layers, both
    styles of LinearSqueezeExcite, hardswish and ReLU."""
    hs = nn.Hardswish
    c = width
    layers = [conv_bn(3, c, 3, 2, act=hs)]
    for i, (co, s, act) in enumerate([(c, 1, nn.ReLU), (2 * c, 2, hs), (2 * c, 1, hs),
                                      (3 * c, 2, hs)]):
        style = i % 2

        def se(ch, style=style):
            return LinearSqueezeExcite(ch, style=style)

        layers.append(InvertedResidual(c, co, s, 4, 3, act, se))
        c = co
    layers += [conv_bn(c, 4 * c, 1, act=hs), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(4 * c, classes)]
    return _bn_random(nn.Sequential(*layers))


class DenseBlock(nn.Module):
    def __init__(self, c, growth, n):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(),
                          nn.Conv2d(c + i * growth, 2 * growth, 1, bias=False),
                          nn.BatchNorm2d(2 * growth), nn.ReLU(),
                          nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False))
            for i in range(n))

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


def densenet_block(c=16, growth=8, n=4, classes=10):
    model = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                          nn.MaxPool2d(3, 2, 1), DenseBlock(c, growth, n),
                          nn.BatchNorm2d(c + n * growth), nn.ReLU(), nn.AvgPool2d(2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(c + n * growth, classes))
    return _bn_random(model)


def export(model: nn.Module, path, size: int = 224, dynamic_batch: bool = True) -> None:
    """torch.onnx.export with the TorchScript exporter (offline), opset 17."""
    x = torch.randn(1, 3, size, size)
    torch.onnx.export(model, (x,), str(path), opset_version=17, input_names=["image"],
                      output_names=["logits"], dynamo=False,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}
                      if dynamic_batch else None)
