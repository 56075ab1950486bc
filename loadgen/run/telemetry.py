"""The run's live Prometheus metrics: served while it runs (--metrics-addr) and pushed to a
Pushgateway once it is over (--pushgateway)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from .. import __version__
from ..config import RunConfig
from ..errors import ServerError
from ..sinks import LiveMetrics

__all__ = ["start_live_metrics", "push_metrics"]


def start_live_metrics(config: RunConfig, public: dict, in_flight: Callable[[], int],
                       console: Console, token_counts: str = "usage") -> LiveMetrics | None:
    """The run's metrics, served at --metrics-addr if given; None when neither serving nor pushing.
    token_counts: how per-chunk counts are obtained (analysis.chat.token_counts_of), a label of
    loadgen_run_info so that a dashboard can mark estimated figures."""
    if config.metrics_addr is None and config.pushgateway is None:
        return None
    open_loop = config.request_rate or config.trace
    metrics = LiveMetrics(run_id=public["run_id"], engine=public["engine"], model=public["model"],
                          workload=config.workload, target_concurrency=0 if open_loop else config.concurrency,
                          in_flight=in_flight, version=__version__, endpoint=config.endpoint, token_counts=token_counts)
    if config.metrics_addr is not None:
        console.print(f"[dim]live metrics: {metrics.serve(config.metrics_addr)}[/]")
    return metrics


def push_metrics(metrics: LiveMetrics, pushgateway: str, run_id: str, console: Console) -> None:
    try:
        metrics.push(pushgateway)
    except OSError as exc:
        raise ServerError(f"cannot push to the Pushgateway at {pushgateway}: {exc}; the report is written") from None
    console.print(f"[dim]pushed the final metrics to {pushgateway} (job loadgen, run_id {run_id})[/]")
