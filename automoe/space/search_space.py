"""`SearchSpace`: the choices an architecture search may make, read from a YAML file.

A space is a small set of per-dimension choice lists (embed widths, depths, heads, experts,
FFN widths, top-k, encoder-decoder attention span). It samples, mutates and crosses over
`ArchConfig`s so that every result stays inside the space, encodes them as fixed-length integer
vectors for predictors, counts them exactly, and gives the SuperNet shape that holds them all.
Two presets ship with the package: `wmt` (the AutoMoE paper's space) and `multi30k` (a scaled
down one that trains on a laptop).
"""

from __future__ import annotations

from automoe.space.encoding import Encoding
from automoe.space.evolution import Evolution


class SearchSpace(Evolution, Encoding):
    """The choices of one architecture search, with the operators that stay inside them.

    Build one with `load` (preset name or YAML file) or `from_dict` and treat it as read-only;
    spaces compare equal by value. Its capabilities come from small modules, one job each:
    `definition` (YAML, membership, size, extremes), `sampling`, `evolution` (mutate,
    crossover) and `encoding` (integer vectors).
    """
