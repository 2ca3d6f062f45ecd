"""Training: a weight-sharing SuperNet (one sampled sub-network per update) or one fixed
architecture, checkpointed and resumable; `python -m automoe.train` is the command."""

from automoe.train.trainer import Trainer, TrainSettings

__all__ = ["TrainSettings", "Trainer"]
