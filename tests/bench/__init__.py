"""Benchmarks (`make bench`, i.e. `python -m tests.bench`): speed, memory and cost targets, never in unit tests.

Each module (bench_*.py, and fixed_costs.py) runs in its own fresh interpreter, measures its baseline side
by side in the same run, prints plain-text tables, hands its summary rows (figure, floor, value, ratio,
target) to `__main__`, which prints them all as one table at the end, and exits 0 (ok), 1 (a stated
budget clearly broken) or 2 (could not run). Files are named bench_*.py so pytest (which collects
test_*.py) never picks them up.
"""
