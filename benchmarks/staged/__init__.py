"""What the staged benchmarks (bench_multi30k.py, bench_task_moe.py) share: stages and the
scheduler that runs them resumably under a time limit, resumable trainings, the settings a
work folder is fixed to, and architecture helpers."""
