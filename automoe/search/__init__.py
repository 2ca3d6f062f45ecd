"""The search run, where the stages meet: strategies ask, sub-networks are scored with
inherited SuperNet weights and costed, results and figures are written; `python -m
automoe.search` is the command."""
