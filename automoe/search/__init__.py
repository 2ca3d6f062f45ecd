"""The search run, where the stages meet: strategies ask, sub-networks are scored with
inherited SuperNet weights and costed, results and figures are written.

`automoe.search` is both this package and the call that runs a search: `automoe.search(
"evolution", supernet=..., constraints=[...])` is `automoe.search.api.search(...)`, so the word a
notebook user writes and the command `python -m automoe.search` are the same.
"""

import sys
import types
from typing import Any

from automoe.search.api import search
from automoe.search.request import SearchRequest
from automoe.search.results import SearchResult


class _CallableSearch(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableSearch

__all__ = ["SearchRequest", "SearchResult", "search"]
