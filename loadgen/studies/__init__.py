"""Studies: questions answered by several runs rather than one. A study is built on runs: it plans
them, runs each through `loadgen.run` (its own folder, resumable), reads their typed reports, and
hands its rows to `loadgen.sinks` for the console table, the CSV and the page.

    sweep.py    one server, one run per load point: the Pareto front, the highest load meeting SLOs
    compare.py  runs or sweeps against a baseline: speedups, where speculation stops paying off
    matrix.py   plans of recipes x workloads x loads: serve each recipe, sweep it, compare; a
                recipe over draft lengths (LABEL-kK) analysed as tune.py does, per workload

    tune.py     one sweep per draft length (the emulator, or a recipe served at each K): the best
                K per load, where speculation stops paying, a step model fitted to the runs, and
                the oracle's headroom
    serving.py  a recipe served for a study (matrix, tune): its log, server.json, stopped after
"""

from .compare import compare, load_points
from .matrix import find_plan, load_plan, run_matrix, shipped_plans
from .sweep import run_sweep
from .tune import analyse, run_tune

__all__ = ["analyse", "compare", "find_plan", "load_plan", "load_points", "run_matrix", "run_sweep", "run_tune",
           "shipped_plans"]
