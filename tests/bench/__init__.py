"""Benchmarks (`make bench`, i.e. `python -m tests.bench`): speed and memory targets, never in unit tests.

Each bench_*.py module runs in its own fresh interpreter, measures its baseline side by side in the same
run, prints plain-text tables and exits 0 (ok), 1 (a stated budget clearly broken) or 2 (could not run).
Files are named bench_*.py so pytest (which collects test_*.py) never picks them up.
"""
