"""The Multi30k headline benchmark (`benchmarks/bench_multi30k.py`), one module per concern.

`settings` (sizes, folders), `stages` (the Stage abstraction and the scheduler that runs
them), `plan` (every stage of the comparison, in priority order), `baselines` (the dense and
Switch architectures, the HAT space), `timing` (interleaved latency and throughput),
`results` (figures read back from the stages' outputs), `report` (markdown, JSON, figures).
"""
