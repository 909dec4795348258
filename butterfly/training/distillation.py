"""Distillation: train a butterfly unit against the network it was inserted into, no labels.

    teacher = bf.import_onnx("model.onnx")
    student = bf.insert_butterfly(teacher, at="features.6", channels=4, stride=2)
    bf.distill(student, teacher, images, epochs=3)             # feature reconstruction
    bf.distill(student, teacher, images, epochs=1, loss="kl")  # then the logits, if wanted
    bf.train(student, labelled, epochs=1, lr=0.01)             # optional, with labels

Only the unit trains: the head and the tail keep the teacher's weights.  The head runs in
inference (its output is the teacher's feature at the cut), and a training plan covers the
unit (and the frozen tail for "kl").  loss="feature": the squared error between the restored
feature and the teacher's, per image, relative to the feature's mean square (so one learning
rate suits features of any size and scale): the restoration unit learns to give the tail
what it expects.  The loss reported is the relative squared error (0: exact).
loss="kl": KL divergence between the teacher's and the student's class distributions at
`temperature` (scaled by T^2), the gradient through the frozen tail.  The quantizer runs in
the forward pass and is straight-through in the backward pass, as in training.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import _C
from ..checks import int_arg
from ..data.datasets import image_folder
from ..network import REDUCE, RESTORE, TAIL, Network
from ..network.split import insert_butterfly
from .trainer import SGD, History, Schedule, set_frozen

LOSSES = ("feature", "kl")
OPTIMIZERS = {"adam": _C.defaults()["adam"]["lr"], "sgd": 0.002}  # each one's default lr


def _images(images) -> np.ndarray:
    x = getattr(images, "images", images)
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.ndim != 4:
        raise _C.InvalidArgument(f"images must be a float array (N, C, H, W) or a Dataset, not "
                                 f"{x.dtype} {x.shape}")
    if len(x) == 0:
        raise _C.InvalidArgument("images is empty")
    return x


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_pair(student: Network, teacher: Network) -> int:
    """The cut's layer index in the teacher; checks that the student's head and tail are the
    teacher's layers."""
    if not student.butterfly or "layer" not in student.butterfly:
        raise _C.InvalidArgument("the student needs a butterfly unit inserted with "
                                 "bf.insert_butterfly (its metadata names the cut)")
    if teacher.butterfly:
        raise _C.InvalidArgument("the teacher must be the plain network (no unit)")
    if student.input_shape != teacher.input_shape:
        raise _C.InvalidArgument(f"student input {student.input_shape} != teacher input "
                                 f"{teacher.input_shape}")
    j = int(student.butterfly["layer"])
    n_unit = len(student.model) - len(teacher.model)
    t_names = [teacher.model.layer(i)["name"] for i in range(len(teacher.model))]
    s_names = [student.model.layer(i)["name"] for i in range(len(student.model))]
    if s_names[:j + 1] != t_names[:j + 1] or s_names[j + 1 + n_unit:] != t_names[j + 1:]:
        raise _C.InvalidArgument("the student is not this teacher with a unit inserted "
                                 "(its layers differ)")
    return j


def _state_path(checkpoint) -> str | None:
    return None if checkpoint is None else os.fspath(checkpoint)


def distill(student: Network, teacher: Network, images, epochs: int = 1,
            batch_size: int = 32, lr: float | None = None, optimizer: str = "sgd",
            momentum: float = SGD["momentum"], weight_decay: float = 0.0,
            loss: str = "feature", temperature: float = 4.0, seed: int = 0,
            progress: bool = True, checkpoint=None, resume: bool = False) -> History:
    """Trains the unit of `student` in place against `teacher` on unlabelled `images`
    (float32 (N, C, H, W) prepared as the teacher expects, or a Dataset).  Returns the
    History (loss per epoch).  optimizer "sgd" (with `momentum`; lr default 0.002) or "adam"
    (AdamW in the core; lr default 1e-3), cosine learning rate; the last partial batch of
    an epoch is dropped.  The best rate depends on the cut (see docs/ONNX.md): a loss that
    stays near 1 (the restored feature no better than none) asks for a lower one.  With `checkpoint`, the student is saved after each epoch (its metadata
    holds the step and the optimizer's buffers) and `resume=True` continues from it."""
    if loss not in LOSSES:
        raise _C.InvalidArgument(f"loss must be one of {LOSSES}, not {loss!r}")
    if optimizer not in OPTIMIZERS:
        raise _C.InvalidArgument(f"optimizer must be one of {tuple(OPTIMIZERS)}, not "
                                 f"{optimizer!r}")
    lr = OPTIMIZERS[optimizer] if lr is None else lr
    epochs = int_arg("epochs", epochs)
    batch_size = int_arg("batch_size", batch_size)
    if not (np.isfinite(temperature) and temperature > 0):
        raise _C.InvalidArgument(f"temperature must be > 0, not {temperature}")
    _check_pair(student, teacher)
    x_all = _images(images)
    if tuple(x_all.shape[1:]) != student.input_shape:
        raise _C.InvalidArgument(f"images are {x_all.shape[1:]}; the network takes "
                                 f"{student.input_shape}")
    n = len(x_all)
    if n < batch_size:
        raise _C.InvalidArgument(f"{n} images are fewer than one batch of {batch_size}")
    steps = n // batch_size
    sched = Schedule(lr, steps * epochs, "cosine")
    history = History()
    step, start = 0, 0
    path = _state_path(checkpoint)
    saved = None
    if resume and path and os.path.exists(path):
        saved = _resume(student, path)
        step, start = saved["step"], saved["epoch"]
        history.epochs = list(saved["history"])
    student.detach_trainer()  # a Trainer's steps reach the model first
    was_frozen = [i for i in range(len(student.model)) if student.model.layer(i)["frozen"]]
    set_frozen(student, parts=("head", "tail"))
    end = RESTORE if loss == "feature" else TAIL
    plan = _C.Plan(student.model, REDUCE, end, batch_size, True)
    if saved:
        if saved.get("optimizer", "sgd") != optimizer:
            raise _C.InvalidArgument(f"{path} was distilled with {saved.get('optimizer', 'sgd')}"
                                     f"; resume it with the same optimizer, not {optimizer}")
        buffers = {"momentum": plan.momentum, "second_moment": plan.second_moment}
        for key, setter in buffers.items():
            for layer, slot, blob in saved.get(key, ()):
                shape = dict(student.model.param_names(layer))[
                    student.model.param_names(layer)[slot][0]]
                setter(layer, slot, np.frombuffer(blob, np.float32).reshape(shape).copy())
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            order = np.random.default_rng([seed, epoch]).permutation(n)  # resumable
            total = 0.0
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=steps, desc=f"distill {epoch + 1}/{epochs}", leave=False)
            for s in range(steps):
                xb = np.ascontiguousarray(x_all[order[s * batch_size:(s + 1) * batch_size]],
                                          np.float32)
                feature = student.head(xb)
                out = plan.forward(feature)
                if loss == "feature":
                    # reported: the relative squared error; stepped: its gradient per image,
                    # summed over the feature (as a cross-entropy's is per image), so one lr
                    # suits features of any size and scale
                    diff = out - feature
                    scale = max(float(np.mean(feature * feature)), 1e-12)
                    value = float(np.mean(diff * diff)) / scale
                    grad = (2.0 / (len(xb) * scale)) * diff
                else:
                    t = temperature
                    p_t = _softmax(teacher.forward(xb) / t)
                    z = out.reshape(len(xb), -1) / t
                    p_s = _softmax(z)
                    value = float(t * t * np.mean(np.sum(
                        p_t * (np.log(np.maximum(p_t, 1e-30)) - np.log(np.maximum(p_s, 1e-30))),
                        axis=1)))
                    grad = (t * (p_s - p_t) / len(xb)).reshape(out.shape)
                if not np.isfinite(value):
                    raise _C.NumericError(f"distillation diverged (loss {value}) at epoch "
                                          f"{epoch + 1}, step {s + 1}: lower lr")
                plan.backward(np.ascontiguousarray(grad, np.float32))
                if optimizer == "adam":
                    plan.adam_step(step + 1, lr=sched(step), weight_decay=weight_decay)
                else:
                    plan.sgd_step(lr=sched(step), momentum=momentum, weight_decay=weight_decay,
                                  nesterov=False)
                step += 1
                total += value
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4g}")
            if bar is not None:
                bar.close()
            plan.sync()
            dt = time.perf_counter() - t0
            history.epochs.append({"epoch": epoch + 1, "loss": total / steps, "seconds": dt,
                                   "images_per_s": steps * batch_size / dt if dt else 0.0})
            if path:
                _save(student, plan, path, epoch + 1, step, history, optimizer)
    finally:
        plan.sync()
        set_frozen(student, parts=("head", "tail"), frozen=False)
        set_frozen(student, layers=was_frozen)
    student.meta["distillation"] = {"loss": loss, "epochs": epochs, "batch_size": batch_size,
                                    "optimizer": optimizer, "lr": lr,
                                    "temperature": temperature,
                                    "history": history.epochs}
    return history


def _save(student: Network, plan, path: str, epoch: int, step: int, history: History,
          optimizer: str) -> None:
    state = {"epoch": epoch, "step": step, "optimizer": optimizer, "history": history.epochs,
             "momentum": [[layer, slot, plan.momentum(layer, slot).tobytes()]
                          for layer, slot in plan.trained()]}
    if optimizer == "adam":
        state["second_moment"] = [[layer, slot, plan.second_moment(layer, slot).tobytes()]
                                  for layer, slot in plan.trained()]
    student.meta["distill_state"] = state
    try:
        student.save(path)
    finally:
        del student.meta["distill_state"]


def _resume(student: Network, path: str) -> dict:
    ck = Network.load(path)
    state = ck.meta.get("distill_state")
    if not state:
        raise _C.ModelError(f"{path} is a model file without distillation state")
    if ck.hash and len(ck.model) != len(student.model):
        raise _C.ModelError(f"checkpoint {path} holds a different architecture")
    for i in range(len(student.model)):
        if ck.model.layer(i)["name"] != student.model.layer(i)["name"]:
            raise _C.ModelError(f"checkpoint {path} holds a different architecture")
        for k in range(len(student.model.param_names(i))):
            student.model.set_param(i, k, ck.model.get_param(i, k))
    return state


# --- command line -----------------------------------------------------------------------

def _cli_distill(args) -> int:

    teacher = Network.load(args.model)
    c, h, w = teacher.input_shape
    if h != w:
        raise _C.InvalidArgument(f"--images reads square pictures; the model takes {h}x{w}")
    data = image_folder(args.images, size=h, channels=c, mean=args.mean or (0.0,) * c,
                        std=args.std or (1.0,) * c, limit=args.limit)
    student = insert_butterfly(teacher, at=args.at, channels=args.channels, stride=args.stride)
    hist = distill(student, teacher, data, epochs=args.epochs, batch_size=args.batch_size,
                   lr=args.lr, optimizer=args.optimizer, loss=args.loss,
                   temperature=args.temperature,
                   checkpoint=args.output if args.resume else None, resume=args.resume)
    student.save(args.output)
    pay = student.upload_bytes
    print(f"unit at {args.at}: {pay} bytes per image uploaded; distilled on {len(data)} "
          f"images, loss {hist.last['loss']:.4g} -> {args.output}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("distill", help="insert a butterfly unit into a model and train it "
                                       "against the model on unlabelled images")
    p.add_argument("model", help="the plain .bfly model (e.g. from `butterfly import`)")
    p.add_argument("--at", required=True, help="the split point (a name from `butterfly "
                                               "splits`, or RB<k> for a ResNet block)")
    p.add_argument("--channels", type=int, default=1, help="c', the channels uploaded")
    p.add_argument("--stride", type=int, default=1, help="s, the spatial reduction")
    p.add_argument("--images", required=True, help="a folder of JPEG / PNG pictures (or "
                                                   ".npy batches)")
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean of the "
                                                          "model's normalization")
    p.add_argument("--std", type=float, nargs="+", help="per-channel std")
    p.add_argument("--limit", type=int, help="use at most this many images")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd")
    p.add_argument("--lr", type=float, default=None,
                   help="default: " + ", ".join(f"{k} {v:g}" for k, v in OPTIMIZERS.items()))
    p.add_argument("--loss", choices=LOSSES, default="feature")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--resume", action="store_true", help="continue from the output file's "
                                                        "checkpoint (saved each epoch)")
    p.add_argument("-o", "--output", required=True, help="the .bfly file to write")
    p.set_defaults(func=_cli_distill)
