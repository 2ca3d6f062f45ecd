"""`python -m automoe.train`: see `automoe.train.api` (the options, and `train()` in Python)."""

from __future__ import annotations

from automoe.errors import run_cli
from automoe.train.api import build_parser, run_training

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    run_training(vars(build_parser().parse_args(argv)), "python -m automoe.train")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
