"""The Task-MoE benchmark (`benchmarks/bench_task_moe.py`): dense, token-, sentence-, task-routed
and mixed models trained with one multilingual budget, deployed per pair, timed interleaved;
and a search that chooses each layer's routing granularity."""
