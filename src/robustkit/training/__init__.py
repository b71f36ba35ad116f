"""Adversarial training: objectives plugged into one generic trainer."""
from .objectives import Objective, available_objectives, create_objective, register_objective
from .run import train
from .trainer import Trainer, TrainResult, read_metrics, tensor_batches

__all__ = ["Objective", "available_objectives", "create_objective", "register_objective", "train", "Trainer",
           "TrainResult", "read_metrics", "tensor_batches"]
