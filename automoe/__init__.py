"""automoe: search efficient Mixture-of-Experts Transformers for translation under a budget."""

from automoe.errors import AutomoeError
from automoe.space import ArchConfig

__all__ = ["ArchConfig", "AutomoeError"]
__version__ = "0.1.0"
