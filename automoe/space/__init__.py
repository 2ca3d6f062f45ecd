"""The search space: which architectures exist (`SearchSpace`, read from YAML) and what one of
them is (`ArchConfig`)."""

from automoe.space.arch import ROUTING_MODES, ArchConfig, ArchError
from automoe.space.definition import SpaceError
from automoe.space.search_space import SearchSpace

__all__ = ["ROUTING_MODES", "ArchConfig", "ArchError", "SearchSpace", "SpaceError"]
