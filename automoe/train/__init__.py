"""Training: a weight-sharing SuperNet (one sampled sub-network per update) or one fixed
architecture, checkpointed and resumable, on one process or several (torchrun).

`automoe.train` is both this package and the call that trains: `automoe.train("runs/m30k",
space="multi30k", max_steps=1500)` is `automoe.train.api.train(...)`, the same training as
`python -m automoe.train --run runs/m30k --space multi30k --max-steps 1500`.
"""

import sys
import types
from typing import Any

from automoe.train.api import TrainResult, train
from automoe.train.trainer import Trainer, TrainSettings


class _CallableTrain(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> TrainResult:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableTrain

__all__ = ["TrainResult", "TrainSettings", "Trainer", "train"]
