"""Training: end-to-end, compression-aware (the 8-bit quantizer runs in the forward pass and is
straight-through in the backward pass), on the C core's backward primitives and SGD.

    train, test = bf.datasets.fashion_mnist()
    net = bf.resnet18(small=True, num_classes=10, in_channels=1,
                      butterfly=bf.Butterfly(at=2, channels=1, stride=2))
    hist = bf.train(net, train, epochs=5, batch_size=128, lr=0.1, test=test)
    print(bf.evaluate(net, test))

The loop (shuffling, augmentation, the learning-rate schedule, checkpoints) lives here; each
step (forward, loss, backward, update) is one call into C with the GIL released.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import _C
from ..checks import int_arg
from ..data import datasets
from ..network import HEAD, PARTS, TAIL, Butterfly, Network, resnet

SGD = _C.defaults()["sgd"]  # lr, momentum, weight decay, Nesterov: the C core's


def _labels(labels, num_classes: int) -> np.ndarray:
    """labels as int32 after checking they are integers in [0, num_classes): a cast alone
    would truncate 1.9 to 1 and wrap 2**32 + 1 to 1."""
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise _C.InvalidArgument(f"labels must be an integer array, not {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)].flat[0]
        raise _C.InvalidArgument(f"label {bad} is not a class: labels must be in "
                                 f"[0, {num_classes})")
    return np.ascontiguousarray(y, np.int32)


def _dataset(data, what: str = "data"):
    """data (a Dataset: .images and .labels), refused when of another kind or empty."""
    if not (hasattr(data, "images") and hasattr(data, "labels")):
        raise TypeError(f"{what} must be a butterfly.datasets.Dataset (.images and .labels), "
                        f"not {type(data).__name__}; wrap arrays with "
                        f"bf.datasets.Dataset(images, labels, classes)")
    if len(data.labels) == 0:
        raise _C.InvalidArgument(f"{what} is empty: no samples")
    return data


@dataclass
class Schedule:
    """Learning rate per step: linear warm-up, then cosine to 0 or step decay."""

    lr: float
    total_steps: int
    kind: str = "cosine"  # "cosine" | "step" | "constant"
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()  # steps at which "step" multiplies by gamma
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "step", "constant"):
            raise ValueError("schedule must be 'cosine', 'step' or 'constant'")
        if not (math.isfinite(self.lr) and self.lr >= 0) or self.total_steps < 1:
            raise ValueError(f"lr must be finite and >= 0 (not {self.lr!r}), total_steps >= 1")

    def __call__(self, step: int) -> float:
        """The rate at `step`, computed by the core (bf_lr_at)."""
        return _C.lr_at(self.kind, self.lr, self.total_steps, step, self.warmup_steps,
                        list(self.milestones), self.gamma)


def augment(x: np.ndarray, rng: np.random.Generator, pad: int = 2, flip: bool = True):
    """Random crop after zero padding by `pad`, and random horizontal flips (per image)."""
    n, _, h, w = x.shape
    out = np.empty_like(x)
    if pad:
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        dy = rng.integers(0, 2 * pad + 1, n)
        dx = rng.integers(0, 2 * pad + 1, n)
        for i in range(n):
            out[i] = xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    else:
        out[:] = x
    if flip:
        f = rng.random(n) < 0.5
        out[f] = out[f, :, :, ::-1]
    return out


def set_frozen(net: Network, parts=(), layers=(), frozen: bool = True) -> None:
    """Freezes (or unfreezes) whole parts ('head', 'reduce', ...) and/or layer indices, for
    training plans made afterwards: their weights and BN statistics stay as they are.
    parts and layers: one name / index, or several."""
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise _C.InvalidArgument(f"unknown part(s) {unknown}; the parts are "
                                 f"{', '.join(PARTS)}")
    n = len(net.model)
    layers = (layers,) if isinstance(layers, (int, np.integer)) else tuple(layers)
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, (int, np.integer))
           or not 0 <= i < n]
    if bad:
        raise _C.InvalidArgument(f"layer index(es) {bad} not in [0, {n})")
    for i in range(n):
        if i in layers or net.model.layer(i)["part"] in parts:
            net.model.set_frozen(i, frozen)
    net.clear_plans()


class Trainer:
    """SGD on a training plan of fixed batch size.  `step` trains on one batch; `sync` writes
    the weights into the model (done automatically before the network runs inference).
    `close` syncs and frees the plan: a closed Trainer can no longer step.  A network has
    one Trainer at a time: making another closes the one before (its steps kept)."""

    def __init__(self, net: Network, batch_size: int, schedule: Schedule,
                 momentum: float = SGD["momentum"], weight_decay: float = SGD["weight_decay"],
                 nesterov: bool = SGD["nesterov"]):
        batch_size = int_arg("batch_size", batch_size)
        begin, end = net.span(HEAD, TAIL)
        self.net = net
        self.num_classes = net.num_classes
        self.batch_size = batch_size
        self.schedule = schedule
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self._plan: _C.Plan | None = _C.Plan(net.model, begin, end, batch_size, True)
        self.step_count = 0
        self._dirty = False
        net.attach_trainer(self)  # one per network: the one before is closed, steps kept

    @property
    def closed(self) -> bool:
        return self._plan is None

    @property
    def plan(self) -> _C.Plan:
        """The training plan; raises once the Trainer is closed."""
        if self._plan is None:
            raise _C.InvalidArgument("this Trainer is closed: its weights are in the model; "
                                     "make a new Trainer to train further")
        return self._plan

    def step(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        plan = self.plan
        labels = _labels(labels, self.num_classes)
        lr = self.schedule(self.step_count)
        loss, correct = plan.train_step(
            np.ascontiguousarray(x, np.float32), labels,
            lr=lr, momentum=self.momentum, weight_decay=self.weight_decay,
            nesterov=self.nesterov)
        self.step_count += 1
        self._dirty = True
        return loss, correct

    def sync(self) -> None:
        if self._dirty:
            self.plan.sync()
            self._dirty = False

    def close(self) -> None:
        """Writes the weights into the model and frees the plan; closing twice is fine."""
        if self._plan is None:
            return
        self.sync()
        self._plan = None
        self.net.detach_trainer(self)

    def state(self) -> dict[str, Any]:
        """Optimizer state for a checkpoint: step count and momentum buffers."""
        mom = [[layer, slot, self.plan.momentum(layer, slot).tobytes()]
               for layer, slot in self.plan.trained()]
        return {"step": self.step_count, "momentum": mom}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        for layer, slot, blob in state["momentum"]:
            shape = dict(self.net.model.param_names(layer))  # name -> shape
            names = [n for n, _ in self.net.model.param_names(layer)]
            buf = np.frombuffer(blob, np.float32).reshape(shape[names[slot]])
            self.plan.momentum(layer, slot, np.ascontiguousarray(buf))


@dataclass
class History:
    """Per-epoch metrics of a run."""

    epochs: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, i):
        return self.epochs[i]

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def last(self) -> dict[str, Any]:
        return self.epochs[-1]


def evaluate(net: Network, data, batch_size: int = 256) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy through the real quantized path (inference
    plans, folded BN, running statistics), and the payload bytes per image."""
    data = _dataset(data)
    batch_size = int_arg("batch_size", batch_size)
    labels = _labels(data.labels, net.num_classes)
    n = len(labels)
    correct = 0
    loss = 0.0
    for i in range(0, n, batch_size):
        x = data.images[i:i + batch_size]
        y = labels[i:i + batch_size]
        logits = np.ascontiguousarray(net.forward(x), np.float32)
        batch_loss, c, _ = _C.softmax_xent(logits, y)
        loss += batch_loss * len(y)
        correct += c
    return {"top1": correct / n, "loss": loss / n, "n": n, "payload_bytes": net.upload_bytes}


def _rng_state(rng: np.random.Generator) -> dict:
    # msgpack holds 64-bit integers only: the PCG64 state words travel as strings
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"],
            "state": {k: str(v) for k, v in st["state"].items()},
            "has_uint32": st["has_uint32"], "uinteger": st["uinteger"]}


def _set_rng_state(rng: np.random.Generator, st: dict) -> None:
    rng.bit_generator.state = {"bit_generator": st["bit_generator"],
                               "state": {k: int(v) for k, v in st["state"].items()},
                               "has_uint32": st["has_uint32"], "uinteger": st["uinteger"]}


def _save_checkpoint(path, net: Network, trainer: Trainer, epoch: int, rng, history, config):
    trainer.sync()
    meta = dict(net.meta)
    meta["train_state"] = {"epoch": epoch, "optimizer": trainer.state(), "rng": _rng_state(rng),
                           "history": history.epochs, "config": config}
    net.meta = meta
    net.save(path)
    del net.meta["train_state"]


def _load_checkpoint(path, net: Network) -> dict:
    ck = Network.load(path)
    if len(ck.model) != len(net.model) or any(
            ck.model.layer(i) | {"frozen": False} != net.model.layer(i) | {"frozen": False}
            for i in range(len(net.model))):
        raise _C.ModelError(f"checkpoint {path} holds a different architecture")
    state = ck.meta.get("train_state")
    if not state:
        raise _C.ModelError(f"{path} is a model file without training state")
    for i in range(len(net.model)):
        for k in range(len(net.model.param_names(i))):
            net.model.set_param(i, k, ck.model.get_param(i, k))
    return state


def train(net: Network, data, epochs: int = 1, batch_size: int = 128, lr: float = SGD["lr"],
          momentum: float = SGD["momentum"], weight_decay: float = SGD["weight_decay"],
          nesterov: bool = SGD["nesterov"],
          schedule: str = "cosine", warmup_epochs: float = 0.0, milestones=(),
          gamma: float = 0.1, augment_pad: int = 2, flip: bool = True, seed: int = 0,
          test=None, progress: bool = True, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, max_steps: int | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> History:
    """Trains `net` in place on `data` (a Dataset with .images (N,C,H,W) float32 and .labels).

    Every epoch shuffles with `seed`, augments (random crop after `augment_pad` zero padding,
    horizontal flips), steps SGD with the chosen schedule (per step; milestones in epochs),
    then records train loss/accuracy and, if `test` is given, test metrics through the real
    quantized inference path.  With `checkpoint`, the model and the optimizer state are
    saved after each epoch; with `resume=True` a run continues from that file if it exists.
    The last partial batch of an epoch is dropped (one plan, one batch size).
    """
    data = _dataset(data)
    if test is not None:
        _labels(_dataset(test, "test").labels, net.num_classes)
    epochs = int_arg("epochs", epochs)
    batch_size = int_arg("batch_size", batch_size)
    _labels(data.labels, net.num_classes)  # before any step changes the weights
    n = len(data.labels)
    if n < batch_size:
        raise _C.InvalidArgument(f"{n} samples are fewer than one batch of {batch_size}")
    steps_per_epoch = n // batch_size
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps,
                                                                    steps_per_epoch * epochs)
    sched = Schedule(lr, total, schedule, int(warmup_epochs * steps_per_epoch),
                     tuple(int(m * steps_per_epoch) for m in milestones), gamma)
    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum,
              "weight_decay": weight_decay, "nesterov": nesterov, "schedule": schedule,
              "warmup_epochs": warmup_epochs, "seed": seed}
    rng = np.random.default_rng(seed)
    history = History()
    start_epoch = 0
    state = None
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        state = _load_checkpoint(checkpoint, net)
    trainer = Trainer(net, batch_size, sched, momentum, weight_decay, nesterov)
    if state is not None:
        trainer.load_state(state["optimizer"])
        _set_rng_state(rng, state["rng"])
        history.epochs = list(state["history"])
        start_epoch = int(state["epoch"])
    try:
        for epoch in range(start_epoch, epochs):
            if trainer.step_count >= total:
                break
            row = _run_epoch(trainer, data, rng, epoch, epochs, augment_pad, flip, total,
                             progress)
            if test is not None:
                ev = evaluate(net, test)
                row.update(test_top1=ev["top1"], test_loss=ev["loss"])
            history.epochs.append(row)
            if checkpoint is not None:
                _save_checkpoint(checkpoint, net, trainer, epoch + 1, rng, history, config)
            if on_epoch:
                on_epoch(row)
    finally:
        trainer.close()
    net.meta["training"] = {**config, "history": history.epochs}
    return history


def _run_epoch(trainer: Trainer, data, rng, epoch, epochs, pad, flip, total, progress):
    n = len(data.labels)
    bs = trainer.batch_size
    order = rng.permutation(n)
    steps = n // bs
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
    t0 = time.perf_counter()
    loss_sum = 0.0
    right = 0
    seen = 0
    for s in range(steps):
        if trainer.step_count >= total:
            break
        idx = order[s * bs:(s + 1) * bs]
        x = data.images[idx]
        if pad or flip:
            x = augment(x, rng, pad, flip)
        loss, correct = trainer.step(x, data.labels[idx])
        loss_sum += loss * bs
        right += correct
        seen += bs
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{right / seen:.3f}")
    if bar is not None:
        bar.close()
    trainer.sync()
    dt = time.perf_counter() - t0
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
            "train_top1": right / max(seen, 1), "seconds": dt,
            "images_per_s": seen / dt if dt > 0 else 0.0,
            "lr_end": trainer.schedule(max(trainer.step_count - 1, 0))}


# --- command line -----------------------------------------------------------------------

def _build_from_args(args) -> Network:
    bfly = None
    if args.at is not None:
        at = int(args.at) if args.at.isdigit() else args.at
        bfly = Butterfly(at=at, channels=args.channels, stride=args.stride)
    return resnet(args.arch, num_classes=10, in_channels=1, small=True, width=args.width,
                  butterfly=bfly, seed=args.seed)


def _cli_train(args) -> int:
    train_set, test_set = datasets.fashion_mnist(subset=args.subset)
    net = _build_from_args(args)
    net.meta["dataset"] = "fashion-mnist"
    net.meta["classes"] = list(datasets.FASHION_MNIST_CLASSES)
    hist = train(net, train_set, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                 momentum=args.momentum, weight_decay=args.weight_decay,
                 nesterov=args.nesterov, schedule=args.schedule,
                 warmup_epochs=args.warmup_epochs, seed=args.seed, test=test_set,
                 checkpoint=args.checkpoint, resume=args.resume,
                 on_epoch=lambda r: print(
                     f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} "
                     f"top1 {r['train_top1']:.4f}, test top1 {r.get('test_top1', 0):.4f} "
                     f"({r['seconds']:.0f} s)", flush=True))
    ev = evaluate(net, test_set)
    net.meta["accuracy"] = ev["top1"]
    net.save(args.output)
    print(f"saved {args.output}: test top-1 {ev['top1']:.4f}, payload "
          f"{ev['payload_bytes']} bytes/image, {len(hist)} epochs")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("train", help="train a small-image ResNet on Fashion-MNIST")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    p.add_argument("--width", type=int, default=32, help="channels of the first stage")
    p.add_argument("--at", default=None, metavar="RB<k>",
                   help="the split point: the residual block after which the butterfly unit "
                        "goes (2 or RB2; default: no unit)")
    p.add_argument("--channels", type=int, default=1, help="c', channels of the payload")
    p.add_argument("--stride", type=int, default=2, help="s, spatial reduction")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=SGD["lr"])
    p.add_argument("--momentum", type=float, default=SGD["momentum"])
    p.add_argument("--weight-decay", type=float, default=SGD["weight_decay"])
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "step", "constant"])
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--subset", type=int, default=None, help="first N images of each split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="save after each epoch here")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("-o", "--output", default="model.bfly")
    p.set_defaults(func=_cli_train)


__all__ = ["History", "Schedule", "Trainer", "augment", "evaluate", "set_frozen", "train"]
