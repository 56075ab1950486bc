"""One run of the load generator, and its report made again afterwards.

    lifecycle.py  the run itself, in order: folder, server, load, phases, report
    handshake.py  discovery, the preflight request, waiting for a server still starting
    discovery.py  what a server serves (/v1/models), for the handshake and `loadgen probe`
    shares.py     the run's plans and the share that sends them (LoadShare: local, processes, Ray)
    polling.py    the server's own metrics over the measured phase
    tally.py      each finished request: journaled, kept, counted (--max-error-rate), shown
    telemetry.py  live Prometheus metrics, and the push to a Pushgateway at the end
    signals.py    Ctrl-C and SIGTERM during a run, and the caller's handlers restored after
    outputs.py    the run's folder (claimed for one run), run.json and the report files
    probe.py      `loadgen probe URL`: what the server offers, what it means for the figures
    rebuild.py    `loadgen report DIR`: drawn again, or rebuilt from the journal
"""

from .lifecycle import emulator_args, run
from .outputs import prepare_output_dir
from .probe import probe
from .rebuild import rebuild_report, rerender_report

__all__ = ["run", "emulator_args", "prepare_output_dir", "probe", "rebuild_report", "rerender_report"]
