"""Where everything loadgen writes lies on disk: the one place that names a run's, a sweep's, a
comparison's and a matrix's files, so the writers, the readers (`loadgen report`, `compare`, a
resumed sweep or matrix) and the folder rule of `loadgen run` cannot disagree.

    run/      run.json, requests.jsonl, report.json, requests.csv, report.html, *.png   (RunFolder)
    sweep/    sweep.json, points.csv, sweep.html, pareto.png; c16/, r2.5/: one run each  (SweepFolder)
              (a temperature sweep: t0/, t0.5/ ..., and temperature.png for pareto.png)
    compare/  compare.json, compare.csv, compare.html, speedup.png                       (CompareFolder)
              (sweeps over temperature: temperature.png for speedup.png)
    matrix/   matrix.json, matrix.csv, matrix.html, pareto-<workload>.png;
              <recipe>/server.log, server.json, <workload>/ (a sweep); compare/<workload>/;
              tune/<label>/<workload>/ (a plan's draft_lengths, tuned: tune.json ...)  (MatrixFolder)
    tune/     tune.json, tune.csv, tune.html, heatmap.png, speedup.png; k0/, k3/: one sweep
              per draft length                                                           (TuneFolder)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunFolder", "SweepFolder", "CompareFolder", "MatrixFolder", "TuneFolder", "point_name"]


@dataclass(frozen=True)
class RunFolder:
    """One run's folder. Its files are the run's own: a run refuses a folder holding any of them
    (another run's), and replacing a run deletes exactly these, never anything else there."""

    path: Path

    @property
    def run_info(self) -> Path:
        """The run's settings, written before the first request: what rebuilds a killed run's report."""
        return self.path / "run.json"

    @property
    def journal(self) -> Path:
        """One line per finished request, appended as it finishes (the raw per-chunk times)."""
        return self.path / "requests.jsonl"

    @property
    def report(self) -> Path:
        return self.path / "report.json"

    @property
    def requests_csv(self) -> Path:
        return self.path / "requests.csv"

    @property
    def html(self) -> Path:
        return self.path / "report.html"

    @property
    def acceptance_plot(self) -> Path:
        return self.path / "acceptance.png"

    @property
    def al_by_category_plot(self) -> Path:
        return self.path / "al_by_category.png"

    @property
    def time_series_plot(self) -> Path:
        return self.path / "time_series.png"

    @property
    def overlap_plot(self) -> Path:
        return self.path / "al_by_overlap.png"

    @property
    def al_by_position_plot(self) -> Path:
        return self.path / "al_by_position.png"

    @property
    def al_spread_plot(self) -> Path:
        return self.path / "al_spread.png"

    @property
    def al_by_length_plot(self) -> Path:
        return self.path / "al_by_length.png"

    def files(self) -> tuple[Path, ...]:
        """Every file a run may write here."""
        return (self.run_info, self.journal, self.report, self.requests_csv, self.html, self.acceptance_plot,
                self.al_by_category_plot, self.time_series_plot, self.overlap_plot, self.al_by_position_plot,
                self.al_spread_plot, self.al_by_length_plot)

    def existing(self) -> list[Path]:
        """The run files already here: empty for a fresh folder (or one holding only other files)."""
        return [f for f in self.files() if f.exists()]

    def clear(self) -> None:
        """Delete the run's files, and only those."""
        for f in self.files():
            f.unlink(missing_ok=True)


def point_name(kind: str, value: float) -> str:
    """A sweep point's folder name: c16 (concurrency 16), r2.5 (2.5 requests/s), t0.5 (temperature 0.5)."""
    return {"concurrency": "c", "temperature": "t"}.get(kind, "r") + f"{value:g}"


@dataclass(frozen=True)
class SweepFolder:
    path: Path

    @property
    def summary(self) -> Path:
        return self.path / "sweep.json"

    @property
    def points_csv(self) -> Path:
        return self.path / "points.csv"

    @property
    def html(self) -> Path:
        return self.path / "sweep.html"

    @property
    def pareto_plot(self) -> Path:
        return self.path / "pareto.png"

    @property
    def temperature_plot(self) -> Path:
        """A temperature sweep's figures against the temperature."""
        return self.path / "temperature.png"

    def point(self, kind: str, value: float) -> RunFolder:
        """Where one point's run goes."""
        return RunFolder(self.path / point_name(kind, value))


@dataclass(frozen=True)
class CompareFolder:
    path: Path

    @property
    def result(self) -> Path:
        return self.path / "compare.json"

    @property
    def csv(self) -> Path:
        return self.path / "compare.csv"

    @property
    def html(self) -> Path:
        return self.path / "compare.html"

    @property
    def speedup_plot(self) -> Path:
        return self.path / "speedup.png"

    @property
    def temperature_plot(self) -> Path:
        """Sweeps over temperature: speedup and AL against the temperature."""
        return self.path / "temperature.png"

    @property
    def prompt_speedups_plot(self) -> Path:
        return self.path / "prompt_speedups.png"

    @property
    def al_boxes_plot(self) -> Path:
        return self.path / "al_boxes.png"


@dataclass(frozen=True)
class MatrixFolder:
    path: Path

    @property
    def summary(self) -> Path:
        return self.path / "matrix.json"

    @property
    def csv(self) -> Path:
        return self.path / "matrix.csv"

    @property
    def html(self) -> Path:
        return self.path / "matrix.html"

    def pareto_plot(self, workload: str) -> Path:
        """Every recipe's curve for one workload."""
        return self.path / f"pareto-{workload}.png"

    def recipe(self, label: str) -> Path:
        return self.path / label

    def server_log(self, label: str) -> Path:
        return self.recipe(label) / "server.log"

    def server_info(self, label: str) -> Path:
        """The recipe's server: command, model, start-up time."""
        return self.recipe(label) / "server.json"

    def cell(self, label: str, workload: str) -> SweepFolder:
        """One recipe's sweep over one workload."""
        return SweepFolder(self.recipe(label) / workload)

    def compare(self, workload: str) -> CompareFolder:
        """Every recipe against the baseline, for one workload."""
        return CompareFolder(self.path / "compare" / workload)

    def tune(self, label: str, workload: str) -> TuneFolder:
        """A recipe entry's draft lengths (its LABEL-kK recipes) tuned, for one workload: tune.json, ..."""
        return TuneFolder(self.path / "tune" / label / workload)


@dataclass(frozen=True)
class TuneFolder:
    """A draft-length study: one sweep per draft length K (k0/ without speculation)."""

    path: Path

    @property
    def summary(self) -> Path:
        return self.path / "tune.json"

    @property
    def csv(self) -> Path:
        return self.path / "tune.csv"

    @property
    def html(self) -> Path:
        return self.path / "tune.html"

    @property
    def heatmap(self) -> Path:
        return self.path / "heatmap.png"

    @property
    def speedup_plot(self) -> Path:
        return self.path / "speedup.png"

    def draft_length(self, k: int) -> Path:
        """The sweep over the concurrencies at draft length K."""
        return self.path / f"k{k}"

    def confirmation(self, k: int) -> Path:
        """The confirmation runs at draft length K (`loadgen tune --confirm`)."""
        return self.path / "confirm" / f"k{k}"

    @staticmethod
    def server_log(sweep: Path) -> Path:
        """With --recipe: the log of the server a sweep (kK/ or confirm/kK/) ran against."""
        return sweep / "server.log"

    @staticmethod
    def server_info(sweep: Path) -> Path:
        """With --recipe: how that server was started (command, model, start-up time)."""
        return sweep / "server.json"
