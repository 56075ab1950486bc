"""One run's settings, checked once; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

__all__ = ["EmulatorSettings", "RunConfig", "parse_addr", "DEFAULT_METRICS_ADDR"]

DEFAULT_METRICS_ADDR = "127.0.0.1:9464"


def parse_addr(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT' for 127.0.0.1) -> (host, port); a bad value is a UsageError."""
    host, sep, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 <= number <= 65535:
        raise UsageError(f"--metrics-addr must be HOST:PORT, e.g. {DEFAULT_METRICS_ADDR}; got {text!r}")
    return host.strip("[]") or "127.0.0.1", number


@dataclass(frozen=True)
class EmulatorSettings:
    """The built-in emulator that `run` starts when no --url is given."""

    ttft_ms: float = 50.0
    step_ms: float = 20.0
    accept: tuple[float, ...] = (0.8, 0.6, 0.4)
    workers: int | None = None  # None: chosen from the concurrency


@dataclass(frozen=True)
class RunConfig:
    url: str | None
    output_dir: Path
    engine: str = "auto"
    model: str | None = None
    workload: str = "sample"
    workload_path: Path | None = None
    tokenizer: str | None = None  # None: the built-in (Phi-3) tokenizer
    chat_template: bool = True
    system_prompt: str | None = None
    isl: int | None = None
    input_len: int = 128  # random workload
    concurrency: int = 8
    request_rate: float | None = None  # open loop: requests per second (then concurrency is not used)
    arrival: str = "poisson"  # poisson, gamma or constant gaps between arrivals
    burstiness: float = 1.0  # gamma shape: 1 is poisson, below 1 burstier
    ramp_up_s: float = 0.0  # the rate rises linearly from 0 over this long
    num_requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    max_tokens: int = 128
    ignore_eos: bool = True
    temperature: float = 0.0
    timeout_s: float = 3600.0  # one request in all
    connect_timeout_s: float = 10.0
    first_token_timeout_s: float = 300.0  # a long prompt queued behind others may wait minutes
    idle_timeout_s: float = 60.0  # no byte between two chunks for this long: the stream is stuck
    retries: int = 0  # failures before the first token retried; off by default (it changes what is measured)
    slo: str | None = None  # "ttft_p95=0.5,tpot_p95=0.05": objectives and goodput in the report
    max_error_rate: float | None = None  # stop early above this share of failed requests (after MIN_ERROR_SAMPLE)
    startup_wait_s: float = 60.0  # how long to wait for a server that answers "not ready"
    seed: int = 0
    api_key: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    emulator: EmulatorSettings = field(default_factory=EmulatorSettings)
    progress: bool = True
    plots: bool = True  # PNGs and report.html beside report.json
    workers: int | None = None  # load-generating processes; None: auto_workers(concurrency)
    ray: str | None = None  # run the workers on this Ray cluster: auto, local or HOST:PORT
    on_worker_loss: str = "stop"  # a lost worker: "stop" the run, or "continue" without it
    metrics_addr: str | None = None  # HOST:PORT for live Prometheus metrics; None: none
    pushgateway: str | None = None  # push the final metrics there
    replace: bool = False  # a run's files already in output_dir are deleted first; else the run refuses it

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.num_requests is not None and self.num_requests < 1:
            raise UsageError(f"--num-requests must be at least 1, got {self.num_requests}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration must be positive, got {self.duration_s}")
        if self.num_requests is None and self.duration_s is None:
            raise UsageError("give --num-requests or --duration (or both: whichever comes first ends the run)")
        if self.slo is not None:
            from .analysis.slo import parse_slo
            parse_slo(self.slo)
        if self.request_rate is not None and self.request_rate <= 0:
            raise UsageError(f"--request-rate must be positive, got {self.request_rate}")
        if self.arrival not in ("poisson", "gamma", "constant"):
            raise UsageError(f"--arrival must be poisson, gamma or constant, got {self.arrival!r}")
        if self.burstiness <= 0:
            raise UsageError(f"--burstiness must be positive, got {self.burstiness}")
        if self.ramp_up_s < 0:
            raise UsageError(f"--ramp-up must be >= 0, got {self.ramp_up_s}")
        if self.request_rate is None and (self.arrival != "poisson" or self.burstiness != 1.0 or self.ramp_up_s):
            raise UsageError("--arrival, --burstiness and --ramp-up shape an open loop: give --request-rate too")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        if self.on_worker_loss not in ("stop", "continue"):
            raise UsageError(f"--on-worker-loss must be stop or continue, got {self.on_worker_loss!r}")
        if self.ray is not None and not self.ray:
            raise UsageError("--ray needs an address: auto, local or HOST:PORT")
        if self.metrics_addr is not None:
            parse_addr(self.metrics_addr)
        if self.pushgateway is not None and not self.pushgateway.startswith(("http://", "https://")):
            raise UsageError(f"--pushgateway must start with http:// or https://, got {self.pushgateway!r}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be >= 0, got {self.warmup}")
        if self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.startup_wait_s < 0:
            raise UsageError(f"--startup-wait must be >= 0, got {self.startup_wait_s}")
        for flag, value in (("--timeout", self.timeout_s), ("--connect-timeout", self.connect_timeout_s),
                            ("--first-token-timeout", self.first_token_timeout_s),
                            ("--idle-timeout", self.idle_timeout_s)):
            if value <= 0:
                raise UsageError(f"{flag} must be positive, got {value}")
        if self.retries < 0:
            raise UsageError(f"--retries must be >= 0, got {self.retries}")
        if self.max_error_rate is not None and not 0 <= self.max_error_rate < 1:
            raise UsageError(f"--max-error-rate must be in [0, 1), got {self.max_error_rate}")
        if self.temperature < 0:
            raise UsageError(f"--temperature must be >= 0, got {self.temperature}")
        if self.isl is not None and self.isl < 1:
            raise UsageError(f"--isl must be at least 1, got {self.isl}")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise UsageError(f"--url must start with http:// or https://, got {self.url!r}")

    def client(self, url: str):
        """The HTTP client these settings describe (one per process)."""
        from .transport import HttpClient

        return HttpClient(url, api_key=self.api_key, timeout_s=self.timeout_s, connect_timeout_s=self.connect_timeout_s,
                          first_token_timeout_s=self.first_token_timeout_s, idle_timeout_s=self.idle_timeout_s,
                          verify_tls=self.verify_tls)

    def workload_spec(self):
        """What the workload registry needs of these settings."""
        from .workloads import BuildOptions, WorkloadSpec

        return WorkloadSpec(self.workload, self.workload_path, self.tokenizer,
                            BuildOptions(self.chat_template, self.system_prompt, self.isl), self.input_len, self.seed)

    def public(self) -> dict:
        """The settings as they go into reports: never the API key."""
        return {
            "url": _without_credentials(self.url), "engine": self.engine, "model": self.model,
            "workload": self.workload,
            "workload_path": str(self.workload_path) if self.workload_path else None,
            "tokenizer": self.tokenizer or "builtin:phi3", "chat_template": self.chat_template,
            "system_prompt": self.system_prompt, "isl": self.isl,
            "input_len": self.input_len if self.workload in ("random", "synthetic") else None,
            "concurrency": None if self.request_rate else self.concurrency, "request_rate": self.request_rate,
            "arrival": self.arrival if self.request_rate else None,
            "burstiness": self.burstiness if self.request_rate else None,
            "ramp_up_s": self.ramp_up_s if self.request_rate else None, "num_requests": self.num_requests,
            "duration_s": self.duration_s,
            "warmup": self.warmup, "max_tokens": self.max_tokens, "ignore_eos": self.ignore_eos,
            "temperature": self.temperature, "timeout_s": self.timeout_s, "connect_timeout_s": self.connect_timeout_s,
            "first_token_timeout_s": self.first_token_timeout_s, "idle_timeout_s": self.idle_timeout_s,
            "retries": self.retries, "max_error_rate": self.max_error_rate, "slo": self.slo, "startup_wait_s": self.startup_wait_s,
            "seed": self.seed,
            "api_key": "***" if self.api_key else None, "verify_tls": self.verify_tls,
            "metrics_addr": self.metrics_addr, "pushgateway": self.pushgateway,
        }


def _without_credentials(url: str | None) -> str | None:
    """http://user:secret@host -> http://***@host: reports never carry credentials."""
    if url is None or "@" not in url.split("/", 3)[2 if "//" in url else 0]:
        return url
    scheme, rest = url.split("//", 1)
    return f"{scheme}//***@{rest.split('@', 1)[1]}"
