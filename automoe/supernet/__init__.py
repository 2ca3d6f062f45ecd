"""The weight-sharing SuperNet, its building blocks and decoding."""

from automoe.supernet.model import (
    EncoderOutput,
    ModelConfig,
    ModelOutput,
    Transformer,
    extract,
    load_checkpoint_file,
)
from automoe.supernet.moe import ROUTERS, MoEFeedForward, RoutingContext, RoutingStats

__all__ = [
    "ROUTERS",
    "EncoderOutput",
    "MoEFeedForward",
    "ModelConfig",
    "ModelOutput",
    "RoutingContext",
    "RoutingStats",
    "Transformer",
    "extract",
    "load_checkpoint_file",
]
