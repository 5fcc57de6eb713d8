"""`python -m harness.bench`: the burst bench, or with `--sustained` the sustained one
(harness/bench/benchmark.py); `--help` lists the options."""

from harness.bench.benchmark import bench_command
from harness.cli import run

run(bench_command)
