"""Studies: questions answered by several runs rather than one. A study is built on runs: it plans
them, runs each through `loadgen.run` (its own folder, resumable), reads their typed reports, and
hands its rows to `loadgen.sinks` for the console table, the CSV and the page.

    sweep.py    one server, one run per load point: the Pareto front, the highest load meeting SLOs
    compare.py  runs or sweeps against a baseline: speedups, where speculation stops paying off
    matrix.py   plans of recipes x workloads x loads: serve each recipe, sweep it, compare

Draft-length tuning (the number of speculative tokens to serve with) lands here next.
"""

from .compare import compare, load_points
from .matrix import find_plan, load_plan, run_matrix, shipped_plans
from .sweep import run_sweep

__all__ = ["compare", "find_plan", "load_plan", "load_points", "run_matrix", "run_sweep", "shipped_plans"]
