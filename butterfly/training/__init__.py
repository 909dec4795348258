"""Training: SGD end to end on the core's training plans, and distillation of a unit onto a
trained network without labels."""

from .distillation import distill
from .trainer import History, Schedule, Trainer, evaluate, set_frozen, train

__all__ = ["History", "Schedule", "Trainer", "distill", "evaluate", "set_frozen", "train"]
