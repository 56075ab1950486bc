"""One run's settings, checked once; no I/O here.

`loadgen run`'s flags, every point of a sweep and a plan's run options all become a RunConfig
through RunConfig.from_options, and the command line takes its defaults from here (default_of):
each default is written once, on its field. The bottom layer: it imports nothing else from loadgen
but its errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import RunOptionError, UsageError

__all__ = ["EmulatorSettings", "RunConfig", "ENDPOINT_PATHS", "PROMPT_FORMATS", "RUN_OPTIONS",
           "default_of", "parse_addr", "parse_floats", "parse_levels",
           "parse_slo",
           "DEFAULT_METRICS_ADDR", "DEFAULT_NUM_REQUESTS", "SLO_METRIC_NAMES"]

DEFAULT_METRICS_ADDR = "127.0.0.1:9464"
#: measured requests of a random workload when neither --num-requests nor --duration is given (a
#: dataset's run then sends every prompt once)
DEFAULT_NUM_REQUESTS = 200
#: the workloads of random ids (no dataset: -n defaults to DEFAULT_NUM_REQUESTS)
RANDOM_WORKLOADS = ("random", "synthetic")
#: the metrics an SLO may limit; analysis.slo.SLO_METRICS defines each of them per request
SLO_METRIC_NAMES = ("ttft", "tpot", "e2e")


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


def parse_floats(text: str) -> tuple[float, ...]:
    """'0.8,0.6,0.4' -> (0.8, 0.6, 0.4); '' -> (). A bad number is a ValueError naming the text."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def parse_levels(text: str) -> tuple[int, ...]:
    """'1,4,16,64' -> (1, 4, 16, 64): --concurrency-levels, in the order given; a bad one is a UsageError."""
    try:
        levels = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        levels = ()
    if not levels or min(levels) < 1:
        raise UsageError(f"--concurrency-levels takes comma-separated whole numbers >= 1, e.g. 1,4,16,64; got {text!r}")
    return levels


def parse_slo(text: str) -> tuple[tuple[str, float, float], ...]:
    """'ttft_p95=0.5,tpot_p95=0.05' -> (("ttft", 95.0, 0.5), ("tpot", 95.0, 0.05))."""
    objectives = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, limit = item.partition("=")
        metric, _, pct = name.partition("_p")
        try:
            objective = (metric, float(pct), float(limit))
        except ValueError:
            objective = None
        if objective is None or metric not in SLO_METRIC_NAMES or not 0 < objective[1] <= 100 or objective[2] <= 0:
            raise UsageError(f"--slo takes METRIC_pPCT=SECONDS items (metrics: {', '.join(SLO_METRIC_NAMES)}), "
                             f"e.g. ttft_p95=0.5,tpot_p95=0.05; got {item!r}")
        objectives.append(objective)
    if not objectives:
        raise UsageError("--slo is empty; e.g. --slo ttft_p95=0.5,tpot_p95=0.05")
    return tuple(objectives)


@dataclass(frozen=True)
class EmulatorSettings:
    """The built-in emulator that `run` starts when no --url is given."""

    ttft_ms: float = 50.0
    step_ms: float = 20.0
    accept: tuple[float, ...] = (0.8, 0.6, 0.4)
    #: a step cost model ("base=8,token=0.02,knee=256,compute=0.1,draft=1.5", analysis/step_model.py)
    #: in place of step_ms: what `loadgen tune` finds the best draft length against
    cost: str | None = None
    workers: int | None = None  # None: chosen from the concurrency
    prefix_cache: bool = False  # `loadgen emulate --prefix-cache`: an LRU of prompt blocks whose hits count
    #: the first N output tokens of each chat request stream as reasoning deltas (`emulate --reasoning-tokens`)
    reasoning_tokens: int = 0
    #: a JSON accept profile file (`emulate --accept-profile`): per-category acceptance, the emulator's ground truth
    accept_profile: str | None = None


#: --endpoint -> the OpenAI route it sends to
ENDPOINT_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
#: --prompt-format: token ids (SPEED-Bench's method: identical ids on every engine) or the rendered text
PROMPT_FORMATS = ("ids", "text")


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
    #: closed loop stepping through these concurrencies ("1,4,16,64"), each for level_duration_s;
    #: concurrency is then the highest of them (what workers and the emulator are sized for)
    concurrency_levels: str | None = None
    level_duration_s: float | None = None
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
    #: replay this trace's arrivals and lengths (workloads/trace.py: mooncake-style JSONL or CSV), open loop
    trace: Path | None = None
    trace_speed: float = 1.0  # the trace's time divided by this: 2 replays it twice as fast
    #: HTTP proxy to the server (http://[USER:PASS@]HOST:PORT); None: the proxy environment variables
    #: (NO_PROXY honoured), "": none at all. Never in reports as given: it may hold credentials
    proxy: str | None = field(default=None, repr=False)
    #: every request kept out of the server's prefix cache by the engine's own field (vLLM and SGLang
    #: a cache_salt per request, llama.cpp cache_prompt false); refused where the engine has none
    cache_isolation: bool = False
    #: every conversation's prompt starts with a short text of its own (after any BOS), so no two share a
    #: prefix the server could have cached: for engines without --cache-isolation
    unique_prefix: bool = False
    #: /v1/completions (prompt_format decides ids or text) or /v1/chat/completions (`messages`, the
    #: server applying its own chat template)
    endpoint: str = "completions"
    prompt_format: str = "ids"
    #: ask the engine for each chunk's output token ids (its own field: EngineAdapter.output_ids_fields)
    #: and journal them, for the report's prompt-output overlap. Off by default: it changes the request
    #: the server sees (TRT-LLM stops detokenizing, llama.cpp adds its debug fields) and the bytes per chunk
    output_ids: bool = False
    #: the whole run this many times, each in output_dir/repeat-K with the same seed (the same prompts
    #: in the same order, which pairing wants), and the spread between them (studies/repeats.py)
    repeats: int = 1

    def __post_init__(self) -> None:
        self._check_trace()
        if self.concurrency_levels is not None:
            self._check_levels()
        elif self.level_duration_s is not None:
            raise UsageError("--level-duration is the time per level of --concurrency-levels: give both")
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.num_requests is not None and self.num_requests < 1:
            raise UsageError(f"--num-requests must be at least 1, got {self.num_requests}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration must be positive, got {self.duration_s}")
        if self.num_requests is None and self.duration_s is None and self.concurrency_levels is None \
                and self.trace is None and self.random_workload:
            raise UsageError("give --num-requests or --duration (or both: whichever comes first ends the run)")
        if self.slo is not None:
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
        if self.repeats < 1:
            raise UsageError(f"--repeats must be at least 1, got {self.repeats}")
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
        if self.endpoint not in ENDPOINT_PATHS:
            raise UsageError(f"--endpoint must be {' or '.join(ENDPOINT_PATHS)}, got {self.endpoint!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise UsageError(f"--prompt-format must be {' or '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}")
        if self.endpoint == "chat" and self.prompt_format != "ids":
            raise UsageError("--prompt-format chooses what /v1/completions gets; --endpoint chat always sends "
                             "messages: leave --prompt-format out")
        if self.emulator.reasoning_tokens < 0:
            raise UsageError(f"--emulator-reasoning-tokens must be >= 0, got {self.emulator.reasoning_tokens}")

    @property
    def sends_text(self) -> bool:
        """Requests carry text (chat messages, or a text prompt) rather than token ids: the workload
        keeps each prompt's messages, and the server tokenizes them itself."""
        return self.endpoint == "chat" or self.prompt_format == "text"

    @property
    def path(self) -> str:
        """The route requests go to."""
        return ENDPOINT_PATHS[self.endpoint]

    def _check_trace(self) -> None:
        """--trace sets the arrivals and every prompt's input and output length itself."""
        if self.trace is None:
            if self.trace_speed != 1.0:
                raise UsageError("--trace-speed scales the timestamps of --trace: give --trace too")
            return
        if self.request_rate is not None or self.concurrency_levels is not None:
            raise UsageError("--trace replays the trace's own arrivals: leave out --request-rate and "
                             "--concurrency-levels")
        if self.isl is not None:
            raise UsageError("--trace gives every prompt its input length: leave out --isl")
        if not self.trace_speed > 0:
            raise UsageError(f"--trace-speed must be positive (2 replays twice as fast), got {self.trace_speed}")

    def _check_levels(self) -> None:
        """--concurrency-levels: whole numbers, with --level-duration and without the other ends of a
        run; concurrency becomes the highest level."""
        levels = parse_levels(self.concurrency_levels or "")
        if self.request_rate is not None or self.num_requests is not None or self.duration_s is not None:
            raise UsageError("--concurrency-levels runs each level for --level-duration seconds: it excludes "
                             "--request-rate, --num-requests and --duration")
        if self.level_duration_s is None or not self.level_duration_s > 0:
            raise UsageError("--concurrency-levels needs --level-duration, the seconds each level runs (> 0)")
        object.__setattr__(self, "concurrency", max(levels))  # frozen: set once, here

    @property
    def levels(self) -> tuple[int, ...]:
        """--concurrency-levels in order; () for a run at one load."""
        return parse_levels(self.concurrency_levels) if self.concurrency_levels is not None else ()

    @property
    def random_workload(self) -> bool:
        """Random ids, which have no end; every other workload is a dataset, sent once without -n."""
        return self.workload in RANDOM_WORKLOADS

    @property
    def measured_s(self) -> float | None:
        """How long the measured phase sends: --duration, or every level's time; None: until -n are sent."""
        if self.level_duration_s is not None and self.concurrency_levels is not None:
            return self.level_duration_s * len(self.levels)
        return self.duration_s

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> RunConfig:
        """`loadgen run`'s options by their long names, as its flags and a plan's `run:` mapping give
        them ({"num_requests": 200, "ignore_eos": False, "emulator_accept": [0.8, 0.6]}), -> RunConfig.

        An option left out, or None, takes `loadgen run`'s default; a value is read as the flag
        would read it ("64" or 64 for an integer). An unknown option or a value the flag would refuse
        is a RunOptionError; a bad setting is the UsageError `loadgen run` gives.
        """
        values = {option: default_of(option) for option in RUN_OPTIONS}
        for key, value in options.items():
            option = str(key).replace("-", "_")
            if option not in values:
                raise _unknown_option(option)
            if value is not None:
                values[option] = value
        values = {option: None if value is None else _read_option(option, value) for option, value in values.items()}
        # Any: _read_option has read each value as its field's type (_OPTION_KINDS), which mypy cannot follow
        settings: dict[str, typing.Any] = {name: values[option] for option, name in _FIELD_OPTIONS.items()}
        for option, (name, off) in _OFF_SWITCHES.items():
            if values[option]:
                settings[name] = off
        if all(settings[name] is None for name in ("num_requests", "duration_s", "concurrency_levels", "trace")) \
                and settings["workload"] in RANDOM_WORKLOADS:  # a dataset: one pass, every prompt once
            settings["num_requests"] = DEFAULT_NUM_REQUESTS
        if settings["output_dir"] is None:
            settings["output_dir"] = Path("results") / datetime.now().strftime("run-%Y%m%d-%H%M%S")
        emulator_settings: dict[str, typing.Any] = {name: values[option] for option, name in _EMULATOR_OPTIONS.items()}
        emulator = EmulatorSettings(**emulator_settings)
        return cls(**settings, emulator=emulator)

    def public(self) -> dict:
        """The settings as they go into reports: never the API key."""
        return {
            "url": _without_credentials(self.url), "engine": self.engine, "model": self.model,
            "workload": self.workload,
            "workload_path": str(self.workload_path) if self.workload_path else None,
            "tokenizer": self.tokenizer or "builtin:phi3", "chat_template": self.chat_template,
            "system_prompt": self.system_prompt, "isl": self.isl,
            "input_len": self.input_len if self.random_workload else None,
            "concurrency": None if self.request_rate or self.trace else self.concurrency,
            "request_rate": self.request_rate,
            "arrival": self.arrival if self.request_rate else None,
            "burstiness": self.burstiness if self.request_rate else None,
            "ramp_up_s": self.ramp_up_s if self.request_rate else None, "num_requests": self.num_requests,
            "duration_s": self.duration_s, "concurrency_levels": list(self.levels) or None,
            "level_duration_s": self.level_duration_s,
            "warmup": self.warmup, "max_tokens": self.max_tokens, "ignore_eos": self.ignore_eos,
            "temperature": self.temperature, "timeout_s": self.timeout_s, "connect_timeout_s": self.connect_timeout_s,
            "first_token_timeout_s": self.first_token_timeout_s, "idle_timeout_s": self.idle_timeout_s,
            "retries": self.retries, "max_error_rate": self.max_error_rate, "slo": self.slo,
            "startup_wait_s": self.startup_wait_s, "seed": self.seed,
            "api_key": "***" if self.api_key else None, "verify_tls": self.verify_tls,
            "metrics_addr": self.metrics_addr, "pushgateway": self.pushgateway,
            "endpoint": self.endpoint, "prompt_format": self.prompt_format, "output_ids": self.output_ids,
        }


#: the flags that turn a setting off: option -> (RunConfig field, its value then)
_OFF_SWITCHES = {"insecure": ("verify_tls", False), "no_plots": ("plots", False), "no_progress": ("progress", False),
                 "no_metrics": ("metrics_addr", None)}
#: the built-in emulator's options -> EmulatorSettings fields
_EMULATOR_OPTIONS = {"emulator_ttft_ms": "ttft_ms", "emulator_step_ms": "step_ms", "emulator_accept": "accept",
                     "emulator_cost": "cost", "emulator_prefix_cache": "prefix_cache",
                     "emulator_reasoning_tokens": "reasoning_tokens", "emulator_accept_profile": "accept_profile"}
#: the options that set a RunConfig field of their own -> that field: an option drops the field's unit
#: (--timeout sets timeout_s). Every other field is set through the switches or the emulator's
#: options, so a field added here is a `loadgen run` flag too (tests/unit/test_config.py holds them equal)
_FIELD_OPTIONS = {f.name.removesuffix("_s"): f.name for f in dataclasses.fields(RunConfig)
                  if f.name not in ("verify_tls", "plots", "progress", "emulator")}
#: every option of `loadgen run`, by long name: the names its flags have and plans use
RUN_OPTIONS = (*_FIELD_OPTIONS, *_OFF_SWITCHES, *_EMULATOR_OPTIONS)
#: options whose default on the command line is not their field's: a RunConfig made in code serves
#: no live metrics (tests run side by side), `loadgen run` serves them unless --no-metrics
_COMMAND_LINE_DEFAULTS = {"metrics_addr": DEFAULT_METRICS_ADDR}


def own_server_proxy(setting: str | None) -> str:
    """--proxy for a server loadgen started on this machine (the built-in emulator, the engines of
    tune and matrix): the one given, else none. The proxy environment variables are for the servers
    a user names; with them set, loadgen's own loopback servers would otherwise be reached through
    that proxy."""
    return "" if setting is None else setting


def default_of(option: str) -> object:
    """`loadgen run`'s default for OPTION (a long name), as its flag takes it: the click options'
    default= and RunConfig.from_options both read it, so it is the field's default, written once.
    A tuple is written as the flag takes it: (0.8, 0.6, 0.4) -> '0.8,0.6,0.4'."""
    if option in _COMMAND_LINE_DEFAULTS:
        return _COMMAND_LINE_DEFAULTS[option]
    if option in _OFF_SWITCHES:
        return False
    owner, name = (EmulatorSettings, _EMULATOR_OPTIONS[option]) if option in _EMULATOR_OPTIONS else \
        (RunConfig, _FIELD_OPTIONS[option])
    default = next(f.default for f in dataclasses.fields(owner) if f.name == name)
    if default is dataclasses.MISSING:  # url and output_dir: None stands for the emulator, and results/run-TIMESTAMP
        return None
    return ",".join(map(str, default)) if isinstance(default, tuple) else default


def _kinds(owner: type, names: Mapping[str, str]) -> dict[str, type]:
    """option -> the type of the field it sets, without None: int | None -> int, tuple[float, ...] -> tuple."""
    hints = typing.get_type_hints(owner)
    kinds = {}
    for option, name in names.items():
        hint = hints[name]
        if isinstance(hint, types.UnionType):
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        kinds[option] = typing.get_origin(hint) or hint
    return kinds


#: option -> the type its value is read as
_OPTION_KINDS = {**_kinds(RunConfig, _FIELD_OPTIONS), **dict.fromkeys(_OFF_SWITCHES, bool),
                 **_kinds(EmulatorSettings, _EMULATOR_OPTIONS)}
#: how each kind of option reads the text of its value, and what it is called when it cannot
_READERS: dict[type, Callable[[str], object]] = {str: str, Path: Path, int: int, float: float, tuple: parse_floats}
_KIND_WORDS = {int: "an integer", float: "a number", tuple: "comma-separated numbers"}


def _read_option(option: str, value: object) -> object:
    """A value as `loadgen run`'s flag would read it: a plan's 64 or "64" for an integer, [0.8, 0.6]
    or "0.8,0.6" for --emulator-accept; what the flag would refuse is a RunOptionError."""
    kind, flag = _OPTION_KINDS[option], "--" + option.replace("_", "-")
    if kind is bool:
        if not isinstance(value, bool):
            raise RunOptionError(f"{flag} is a switch: true or false, got {value!r}")
        return value
    if isinstance(value, bool):
        raise RunOptionError(f"{flag} takes a value, not {value!r}")
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    try:
        return _READERS[kind](text)
    except ValueError:
        raise RunOptionError(f"{flag} takes {_KIND_WORDS[kind]}, got {value!r}") from None


def _unknown_option(option: str) -> RunOptionError:
    """The line for an option `loadgen run` does not have, with the nearest one it does."""
    close = difflib.get_close_matches(option, RUN_OPTIONS, n=1)
    hint = f"; did you mean {close[0]}?" if close else "; the options are loadgen run's (see loadgen run --help)"
    return RunOptionError(f"no such option: --{option.replace('_', '-')} ({option}){hint}")


def _without_credentials(url: str | None) -> str | None:
    """http://user:secret@host -> http://***@host: reports never carry credentials."""
    if url is None or "@" not in url.split("/", 3)[2 if "//" in url else 0]:
        return url
    scheme, rest = url.split("//", 1)
    return f"{scheme}//***@{rest.split('@', 1)[1]}"
