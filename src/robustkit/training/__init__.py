"""Adversarial training: objectives plugged into one generic trainer."""
from .callbacks import Callback, CatastrophicOverfittingGuard
from .objectives import Objective, available_objectives, create_objective, get_objective_class, register_objective
from .run import train
from .trainer import Trainer, TrainResult, read_metrics, tensor_batches

__all__ = ["Callback", "CatastrophicOverfittingGuard", "Objective", "available_objectives", "create_objective",
           "get_objective_class", "register_objective", "train", "Trainer", "TrainResult", "read_metrics",
           "tensor_batches"]
