"""automoe: search efficient Mixture-of-Experts Transformers for translation under a budget."""

from automoe.arch import ArchConfig
from automoe.errors import AutomoeError

__all__ = ["ArchConfig", "AutomoeError"]
__version__ = "0.1.0"
