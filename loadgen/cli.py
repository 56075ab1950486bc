"""Command line: flags -> config -> runner. No logic beyond parsing and error reporting."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console

from . import __version__
from .config import DEFAULT_NUM_REQUESTS, ENDPOINT_PATHS, PROMPT_FORMATS, RunConfig, default_of, parse_floats
from .emulator.profile import DEFAULT_TEMPERATURE_SLOPE
from .engines import EMULATED_ENGINES, ENGINES, SERVABLE_ENGINES
from .errors import LoadgenError, RunOptionError, UsageError

__all__ = ["cli", "main"]

PROXY_HELP = ("HTTP proxy to the server, http://[USER:PASS@]HOST:PORT (CONNECT tunnel for https); '' for none. "
              "[default: HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, NO_PROXY honoured]")


def _floats(value: str) -> tuple[float, ...]:
    try:
        return parse_floats(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="loadgen")
def cli() -> None:
    """Load generator for OpenAI-compatible LLM servers, built to measure speculative decoding."""


@cli.command()
@click.option("--url", help="Server root, e.g. http://gpu-host:8000. Without it, the built-in emulator is started.")
@click.option("--engine", default="auto", show_default=True,
              help=f"auto (from /v1/models), or one of {', '.join(ENGINES)}.")
@click.option("--model", help="Model to request [default: the first of /v1/models].")
@click.option("--workload", default=default_of("workload"), show_default=True,
              help="sample (offline, 11 categories), random, speed:qualitative, speed:throughput_1k..32k, specbench, "
                   "mtbench, sharegpt, sharegpt:conversations, jsonl, or a .jsonl file.")
@click.option("--workload-path", type=click.Path(path_type=Path), help="The dataset file or folder to read.")
@click.option("--tokenizer",
              help="The target model's tokenizer: a folder or Hugging Face id [default: built-in Phi-3].")
@click.option("--chat-template/--no-chat-template", default=default_of("chat_template"), show_default=True,
              help="Apply the tokenizer's chat template (off: send raw text as a completion).")
@click.option("--system-prompt", help="A system message put before every conversation.")
@click.option("--isl", type=int, help="Exact input tokens per prompt: text is cut, or padded with natural text.")
@click.option("--endpoint", default=default_of("endpoint"), show_default=True, type=click.Choice(list(ENDPOINT_PATHS)),
              help="completions: /v1/completions; chat: /v1/chat/completions with the workload's messages, the "
                   "server applying its own chat template.")
@click.option("--prompt-format", default=default_of("prompt_format"), show_default=True,
              type=click.Choice(list(PROMPT_FORMATS)),
              help="/v1/completions prompts as token ids, or as the rendered text (servers that refuse ids).")
@click.option("--input-len", default=default_of("input_len"), show_default=True,
              help="Prompt tokens of the random workload.")
@click.option("--concurrency", "-c", default=default_of("concurrency"), show_default=True,
              help="Requests kept in flight (closed loop).")
@click.option("--request-rate", type=float,
              help="Open loop: requests per second, sent on schedule whatever the server does (instead of -c).")
@click.option("--arrival", default=default_of("arrival"), show_default=True,
              type=click.Choice(["poisson", "gamma", "constant"]),
              help="Open loop: the gaps between arrivals.")
@click.option("--burstiness", default=default_of("burstiness"), show_default=True,
              help="Open loop, gamma arrivals: the shape (1 = poisson; below 1 burstier, above more regular).")
@click.option("--ramp-up", default=default_of("ramp_up"), show_default=True,
              help="Open loop: seconds over which the rate rises from 0.")
@click.option("--trace", type=click.Path(path_type=Path),
              help="Replay this trace open loop: its arrival times, input and output lengths (mooncake-style .jsonl "
                   "or .csv timestamp,input_tokens,output_tokens), prompts from --workload's text (instead of -c, "
                   "--request-rate, --isl, --max-tokens).")
@click.option("--trace-speed", default=default_of("trace_speed"), show_default=True,
              help="Divide the trace's timestamps by this (2 replays it twice as fast).")
@click.option("--num-requests", "-n", type=int,
              help=f"Measured requests, drawn stratified by category, none twice before every prompt was sent "
                   f"[default: a dataset's every prompt once; random: {DEFAULT_NUM_REQUESTS}; none with --duration; "
                   "with --trace its first rows].")
@click.option("--duration", type=float, help="Seconds to keep sending; in-flight requests then finish.")
@click.option("--concurrency-levels", metavar="C1,C2,...",
              help="Closed loop stepping through these concurrencies in order (up or down), each for "
                   "--level-duration seconds, with figures per level (replaces -c, -n, --duration, --request-rate).")
@click.option("--level-duration", type=float, help="Seconds each of --concurrency-levels runs.")
@click.option("--warmup", default=default_of("warmup"), show_default=True,
              help="Requests sent first and left out of the figures.")
@click.option("--max-tokens", default=default_of("max_tokens"), show_default=True,
              help="Output tokens per request (a row may override).")
@click.option("--ignore-eos/--no-ignore-eos", default=default_of("ignore_eos"), show_default=True,
              help="Generate exactly max tokens, so output length does not depend on the model.")
@click.option("--temperature", default=default_of("temperature"), show_default=True)
@click.option("--output-dir", type=click.Path(path_type=Path),
              help="Where report.json and requests.jsonl go [default: results/run-TIMESTAMP].")
@click.option("--replace", is_flag=True,
              help="--output-dir holds another run: delete that run's files first (else the run refuses the folder).")
@click.option("--api-key", envvar=["LOADGEN_API_KEY", "OPENAI_API_KEY"],
              help="Bearer token (or LOADGEN_API_KEY, else OPENAI_API_KEY); never written out.")
@click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate (self-signed staging).")
@click.option("--proxy", metavar="URL", help=PROXY_HELP)
@click.option("--timeout", default=default_of("timeout"), show_default=True,
              help="Seconds one request may take in all.")
@click.option("--connect-timeout", default=default_of("connect_timeout"), show_default=True,
              help="Seconds to open a connection.")
@click.option("--first-token-timeout", default=default_of("first_token_timeout"), show_default=True,
              help="Seconds from sending to the first streamed event (queueing and prefill).")
@click.option("--idle-timeout", default=default_of("idle_timeout"), show_default=True,
              help="Seconds without a byte between two chunks before a stream counts as stuck.")
@click.option("--retries", default=default_of("retries"), show_default=True,
              help="Retry a request that failed before its first token this many times (backoff 0.5 s doubling).")
@click.option("--slo", help="Objectives, e.g. ttft_p95=0.5,tpot_p95=0.05,e2e_p99=30 (seconds): each checked, and "
                              "goodput (requests meeting every limit) reported.")
@click.option("--max-error-rate", type=float,
              help="Stop the run early once more than this share (0-1) of requests failed (judged after 20).")
@click.option("--startup-wait", default=default_of("startup_wait"), show_default=True,
              help="Seconds to keep retrying while the server answers but is not ready (429, 5xx).")
@click.option("--repeats", default=default_of("repeats"), show_default=True,
              help="Run the whole benchmark this many times (OUTPUT_DIR/repeat-1, ...; the same --seed, so the same "
                   "prompts) and print the spread between repeats (repeats.json).")
@click.option("--seed", default=default_of("seed"), show_default=True,
              help="Seed for workload sampling and the emulator.")
@click.option("--emulator-ttft-ms", default=default_of("emulator_ttft_ms"), show_default=True,
              help="Built-in emulator: time to first token.")
@click.option("--emulator-step-ms", default=default_of("emulator_step_ms"), show_default=True,
              help="Built-in emulator: time per decode step.")
@click.option("--emulator-accept", default=default_of("emulator_accept"), show_default=True,
              help="Built-in emulator: conditional acceptance per draft position ('' for no speculation).")
@click.option("--emulator-cost", default=default_of("emulator_cost"),
              help="Built-in emulator: a step cost model in place of --emulator-step-ms, e.g. "
                   "base=8,token=0.02,knee=256,compute=0.1,draft=1.5 (see loadgen emulate --cost).")
@click.option("--emulator-prefix-cache", is_flag=True,
              help="Built-in emulator: emulate a prefix cache whose hits shorten the prefill (loadgen emulate "
                   "--prefix-cache).")
@click.option("--cache-isolation", is_flag=True,
              help="Keep every request out of the server's prefix cache with the engine's own field (vLLM, SGLang: "
                   "a cache_salt per request; llama.cpp: cache_prompt false). Other engines: use --unique-prefix.")
@click.option("--unique-prefix", is_flag=True,
              help="Start every conversation's prompt (after any BOS) with a short text of its own, so no two "
                   "share a cached prefix: for engines without --cache-isolation.")
@click.option("--output-ids", is_flag=True,
              help="Ask the engine for every chunk's output token ids (vLLM, SGLang: return_token_ids; llama.cpp: "
                   "verbose; TRT-LLM: detokenize false, completions only) and journal them: the report's "
                   "prompt-output n-gram overlap and its relation to AL.")
@click.option("--emulator-reasoning-tokens", default=default_of("emulator_reasoning_tokens"), show_default=True,
              help="Built-in emulator: the first N output tokens of each chat reply stream as reasoning.")
@click.option("--emulator-accept-profile", metavar="FILE", default=default_of("emulator_accept_profile"),
              help="Built-in emulator: per-category acceptance (loadgen emulate --accept-profile): lists, or objects "
                   "whose acceptance moves with output position, request, overlap and temperature.")
@click.option("--workers", type=int, help="Load-generating processes sharing the concurrency "
                                         "[default: one per 512 streams, at most one per core].")
@click.option("--ray", metavar="ADDRESS",
              help="Run the load workers as Ray actors spread over a cluster: auto (the cluster `ray start` made "
                   "here), local (a one-machine cluster), or HOST:PORT. Needs pip install 'loadgen[ray]'.")
@click.option("--on-worker-loss", default=default_of("on_worker_loss"), show_default=True,
              type=click.Choice(["stop", "continue"]),
              help="A worker process or node lost mid-run: stop the run (partial report), or continue without it; "
                   "either way its requests in flight count as failed (worker_lost).")
@click.option("--metrics-addr", default=default_of("metrics_addr"), show_default=True,
              help="Serve live Prometheus metrics at HOST:PORT during the run (port 0: any free one).")
@click.option("--no-metrics", is_flag=True, help="Do not serve live metrics.")
@click.option("--pushgateway", help="Push the final metrics to this Prometheus Pushgateway URL after the run.")
@click.option("--no-plots", is_flag=True, help="No PNG plots and report.html (report.json and CSV only).")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs and CI).")
def run(**options) -> None:
    """Run one benchmark at a fixed concurrency (or request rate) and write its report."""
    from .run import run as run_benchmark

    console = Console(stderr=False)
    config = _run_config(console, options)
    if config.repeats > 1:
        from .studies.repeats import run_repeats
        from .studies.sweep import finished_report

        if run_repeats(config, console, run_benchmark, finished_report) is None:
            sys.exit(130)
        return
    report = run_benchmark(config, console)
    if report.partial:
        sys.exit(130)  # interrupted: the partial report is written, the exit status still says so


def _run_config(console: Console, options: dict) -> RunConfig:
    """`loadgen run`'s options by long name -> RunConfig (also a sweep's and a plan's); no progress
    bar where the console is no terminal."""
    return RunConfig.from_options({**options, "no_progress": options.get("no_progress") or not console.is_terminal})


@cli.command()
@click.option("--concurrency", "-c", "concurrencies", help="Comma-separated concurrencies: one run each.")
@click.option("--request-rate", "rates", help="Comma-separated request rates (open loop): one run each.")
@click.option("--temperatures", metavar="T1,T2,...",
              help="Sweep the sampling temperature instead of the load, e.g. 0,0.5,1,1.5: one run each, all at one "
                   "--concurrency (or --request-rate).")
@click.option("--find-max", is_flag=True,
              help="With --slo: search the highest concurrency (or rate) that still meets every objective.")
@click.option("--output-dir", type=click.Path(path_type=Path),
              help="Where the sweep goes [default: results/sweep-TIMESTAMP]; a rerun resumes it.")
def sweep(concurrencies, rates, temperatures, find_max, output_dir, **options) -> None:
    """One run per concurrency (or request rate), or per temperature at one load, against one
    server; every other `loadgen run` option applies to each point, e.g. loadgen sweep -c 1,4,16,64
    --url URL -n 200 --slo ttft_p95=0.5, or loadgen sweep --temperatures 0,0.5,1,1.5 -c 8 --url URL."""
    from .studies import run_sweep

    if temperatures is not None:
        kind, values, held = _temperature_axis(temperatures, concurrencies, rates)
        options = {**options, **held}
    else:
        if (concurrencies is None) == (rates is None):
            raise click.UsageError("give --concurrency or --request-rate, a comma-separated list (or --temperatures)")
        kind, text = ("concurrency", concurrencies) if concurrencies else ("request_rate", rates)
        try:
            values = sorted({(int if kind == "concurrency" else float)(v) for v in text.split(",") if v.strip()})
        except ValueError:
            raise click.UsageError(f"--{kind.replace('_', '-')} takes comma-separated numbers, got {text!r}") from None
    console = Console()
    out = output_dir or Path("results") / datetime.now().strftime("sweep-%Y%m%d-%H%M%S")
    base = _run_config(console, {**options, "output_dir": out})  # each point has its own folder under it
    result = run_sweep(base, kind, values, out, console, find_max=find_max)
    if result["interrupted"]:
        sys.exit(130)


def _temperature_axis(temperatures: str, concurrencies: str | None,
                      rates: str | None) -> tuple[str, list[float], dict]:
    """`sweep --temperatures`: the axis, its temperatures, and the one load every point runs at
    ({"concurrency": 8}, {"request_rate": 2.5}, or {} for run's default concurrency)."""
    from click.core import ParameterSource

    from .studies.sweep import temperature_values

    if click.get_current_context().get_parameter_source("temperature") is ParameterSource.COMMANDLINE:
        raise UsageError("--temperatures sweeps the temperature: leave --temperature out")
    if concurrencies is not None and rates is not None:
        raise UsageError("a temperature sweep runs at one load: give --concurrency or --request-rate, not both")
    try:
        values = temperature_values([float(v) for v in temperatures.split(",") if v.strip()], "--temperatures")
    except ValueError:
        raise UsageError(f"--temperatures takes comma-separated numbers, got {temperatures!r}") from None
    held: dict = {}
    for name, text, flag in (("concurrency", concurrencies, "--concurrency"), ("request_rate", rates,
                                                                                "--request-rate")):
        if text is None:
            continue
        parts = [v for v in text.split(",") if v.strip()]
        if len(parts) != 1:
            raise UsageError(f"a temperature sweep runs at one load: give {flag} one value, got {text!r} (sweep the "
                             "load and the temperature separately)")
        try:
            held[name] = (int if name == "concurrency" else float)(parts[0])
        except ValueError:
            raise UsageError(f"{flag} takes a number, got {text!r}") from None
    return "temperature", list(values), held


# Every other option of `loadgen run` is the sweep's too; its own --concurrency, --request-rate
# (lists) and --output-dir (the sweep's folder) stand in for run's. A trace sets its own load.
sweep.params.extend(p for p in run.params if p.name not in ("concurrency", "request_rate", "output_dir",
                                                          "concurrency_levels", "level_duration", "trace",
                                                          "trace_speed"))


@cli.command()
@click.option("--draft-lengths", "-k", default="0,1,2,3", show_default=True,
              help="Comma-separated draft lengths K to measure; 0 (no speculation) is the baseline.")
@click.option("--concurrency", "-c", "concurrencies", default="1,4,16", show_default=True,
              help="Comma-separated concurrencies: one run per draft length each.")
@click.option("--output-dir", type=click.Path(path_type=Path),
              help="Where the study goes [default: results/tune-TIMESTAMP]; a rerun resumes it.")
@click.option("--analyse", "analyse_dir", type=click.Path(path_type=Path),
              help="Only analyse the runs already in this tune folder (kK/cC/); run nothing.")
@click.option("--deploy-load", help="The concurrencies the deployment will see, LOW-HIGH (or LOW- open-ended): an "
                                    "engine that runs one draft length is given the K tune recommends for it.")
@click.option("--confirm", is_flag=True,
              help="Then run the model's best K (and the baseline) at concurrencies not measured, and "
                   "recommend what was measured there.")
@click.option("--confirm-concurrency", "confirm_concurrencies",
              help="The concurrencies --confirm runs [default: those the predictions cover between the measured "
                   "ones]; implies --confirm.")
@click.option("--recipe", help="Serve this recipe (a file, or a name `loadgen serve --list` prints) at each draft "
                               "length instead of the emulator: K as its engine's flag, K = 0 speculation off.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="With --recipe: override a recipe field, e.g. --set model=/models/t.gguf (repeatable).")
@click.option("--port", type=int, help="With --recipe: port to serve on [default: the engine's own; 0 a free one].")
@click.option("--startup-timeout", type=float,
              help="With --recipe: seconds to wait until each server serves [default: the recipe's].")
@click.option("--url", hidden=True)  # refused: tune cannot set the draft length of a server it did not start
def tune(draft_lengths, concurrencies, output_dir, analyse_dir, deploy_load, confirm, confirm_concurrencies, recipe,
         overrides, port, startup_timeout, url, **options) -> None:
    """Which draft length to serve at which load: one sweep over the concurrencies per draft length
    (the built-in emulator, its --emulator-accept cut to K positions; or --recipe served at each K),
    the speedup of each K with a 95 % interval, the best K, where speculation stops paying, and a
    step model fitted to the runs that predicts the points not run. Every other `loadgen run` option
    applies to each run."""
    from .analysis.step_model import StepModel
    from .studies import analyse, run_tune
    from .studies.serving import ServeSettings
    from .studies.tune import TuneRecipe

    console = Console()
    load = _load_range(deploy_load) if deploy_load else None
    if analyse_dir is not None:
        analyse(analyse_dir, console, plots=not options.get("no_plots"), deploy_load=load)
        return
    if url is not None:
        raise UsageError("tune cannot set the draft length of a server it did not start: give --recipe (served at "
                         "each K) instead of --url, or neither (the built-in emulator)")
    if recipe is None and (overrides or port is not None or startup_timeout is not None):
        raise UsageError("--set, --port and --startup-timeout apply to the server of --recipe: give --recipe")
    lengths = _whole_numbers("--draft-lengths", draft_lengths)
    loads = _whole_numbers("--concurrency", concurrencies)
    if not loads or min(loads) < 1:
        raise UsageError("--concurrency takes comma-separated whole numbers >= 1")
    if 0 not in lengths or len(lengths) < 2:
        raise UsageError("--draft-lengths needs 0 (the baseline, no speculation) and at least one K > 0")
    if options.get("emulator_cost"):
        try:
            StepModel.parse(options["emulator_cost"])
        except ValueError as exc:
            raise UsageError(f"--emulator-cost: {exc}") from None
    out = output_dir or Path("results") / datetime.now().strftime("tune-%Y%m%d-%H%M%S")
    base = _run_config(console, {**options, "output_dir": out})
    checks = _whole_numbers("--confirm-concurrency", confirm_concurrencies) if confirm_concurrencies else []
    if any(c < 1 for c in checks):
        raise UsageError("--confirm-concurrency takes comma-separated whole numbers >= 1")
    served = None
    if recipe is not None:
        served = TuneRecipe(recipe, tuple(overrides), ServeSettings(port=port, startup_timeout_s=startup_timeout))
        _interrupt_on_sigterm()
    confirming = checks if confirm or confirm_concurrencies else None
    if run_tune(base, lengths, loads, out, console, served, confirm=confirming, deploy_load=load).get("interrupted"):
        sys.exit(130)


def _load_range(text: str) -> tuple[int, int | None]:
    """--deploy-load LOW-HIGH, or LOW- for open-ended."""
    low, sep, high = text.partition("-")
    try:
        load = (int(low), int(high) if high.strip() else None)
    except ValueError:
        load = (0, None)
    if not sep or load[0] < 1 or (load[1] is not None and load[1] < load[0]):
        raise UsageError(f"--deploy-load takes LOW-HIGH concurrencies (or LOW- for no upper bound), "
                         f"1 <= LOW <= HIGH, got {text!r}")
    return load


def _whole_numbers(flag: str, text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise UsageError(f"{flag} takes whole numbers >= 0, got {text!r}")
    return values


# Every other option of `loadgen run` applies to each of tune's runs, as to a sweep's.
tune.params.extend(p for p in run.params if p.name not in ("concurrency", "request_rate", "output_dir", "url",
                                                         "repeats", "concurrency_levels", "level_duration", "trace",
                                                         "trace_speed"))


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--baseline", required=True, type=click.Path(path_type=Path),
              help="The run or sweep folder to compare against (e.g. the same server without speculation).")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Also write compare.json and compare.csv there.")
def compare(runs, baseline, output_dir) -> None:
    """Speedups of RUNS (run or sweep folders) over a baseline, per load and category; where
    speculative decoding stops paying off; how much random inputs overstate it."""
    from .studies import compare as compare_runs

    compare_runs(list(runs), baseline, output_dir, Console())


@cli.group()
def workloads() -> None:
    """Prepare, list and inspect tokenized workloads (cached on disk)."""


def _workload_options(f):
    for option in reversed([
        click.argument("workload"),
        click.option("--workload-path", type=click.Path(path_type=Path), help="The dataset file or folder."),
        click.option("--tokenizer", help="Folder or Hugging Face id [default: built-in Phi-3]."),
        click.option("--chat-template/--no-chat-template", default=True, show_default=True),
        click.option("--system-prompt"),
        click.option("--isl", type=int, help="Exact input tokens per prompt."),
        click.option("--config", "speed_config", help="With WORKLOAD=speed: the SPEED-Bench config to resolve."),
    ]):
        f = option(f)
    return f


@workloads.command("prepare")
@_workload_options
def workloads_prepare(workload, workload_path, tokenizer, chat_template, system_prompt, isl, speed_config) -> None:
    """Tokenize WORKLOAD into the cache; `prepare speed --config NAME` resolves SPEED-Bench's placeholders."""
    from .workloads import BuildOptions, WorkloadSpec, load_workload, prepare_speed

    if workload == "speed":
        if not speed_config:
            raise LoadgenError("prepare speed needs --config (qualitative, throughput_1k ... throughput_32k)")
        click.echo(f"resolved SPEED-Bench {speed_config}: {prepare_speed(speed_config)}")
        return
    loaded = load_workload(WorkloadSpec(workload, workload_path, tokenizer,
                                        BuildOptions(chat_template, system_prompt, isl)))
    _describe(loaded)


@workloads.command("show")
@_workload_options
def workloads_show(workload, workload_path, tokenizer, chat_template, system_prompt, isl, speed_config) -> None:
    """Summarize WORKLOAD as it would be sent (preparing it first if needed), with its first prompt decoded."""
    from .workloads import BuildOptions, WorkloadSpec, load_tokenizer, load_workload

    loaded = load_workload(WorkloadSpec(workload, workload_path, tokenizer,
                                        BuildOptions(chat_template, system_prompt, isl)))
    _describe(loaded)
    first = loaded.prompts[0]
    if loaded.name != "random":
        text = load_tokenizer(tokenizer).decode(first.token_ids[:200].tolist())
        click.echo(f"first prompt ({first.prompt_id}, {first.token_ids.size} tokens), first 200 tokens:\n{text}")


@workloads.command("list")
def workloads_list() -> None:
    """The prepared workloads in the cache."""
    from .workloads.cache import cache_root, list_cached

    rows = list_cached()
    if not rows:
        click.echo(f"no prepared workloads in {cache_root()}")
    for info in rows:
        click.echo(f"{info['name']:28s} {info['prompts']:6d} prompts {info['tokens']:11d} tokens "
                   f"{info['bytes'] / 2**20:8.1f} MiB  tokenizer {info.get('tokenizer')}  {info['path']}")


def _describe(loaded) -> None:
    import numpy as np

    lengths = np.array([p.token_ids.size for p in loaded.prompts])
    categories = sorted({p.category for p in loaded.prompts})
    origin = "from the cache" if loaded.info.get("cached") else f"prepared in {loaded.info.get('prepare_s', 0):.2f} s"
    click.echo(f"{loaded.name}: {len(loaded.prompts)} prompts ({origin}), {lengths.sum()} tokens, ISL min/median/max "
               f"{lengths.min()}/{int(np.median(lengths))}/{lengths.max()}, "
               f"{sum(1 for p in loaded.prompts if p.followups)} multi-turn; categories: {', '.join(categories)}")


@cli.command()
@click.option("--engine", default="vllm", show_default=True,
              help=f"Wire format to speak: one of {', '.join(EMULATED_ENGINES)}.")
@click.option("--engine-version", metavar="VERSION",
              help="The engine version whose wire format to speak [default: the version loadgen's recipes pin]; "
                   "trtllm: 1.2.1 (five unprefixed Prometheus metrics, none speculative) or 1.3.0rc (trtllm_* "
                   "names with the spec-decode counters).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, help="0 picks a free port.")
@click.option("--model", default="emulator", show_default=True, help="Served model name.")
@click.option("--ttft-ms", default=50.0, show_default=True, help="Arrival to first chunk.")
@click.option("--step-ms", default=20.0, show_default=True,
              help="Time per decode step (one chunk per step); ignored with --cost.")
@click.option("--load-step-ms", default=0.0, show_default=True,
              help="Added to every step for each other request running (a batch slows as it grows).")
@click.option("--cost", metavar="MODEL",
              help="Step time from a cost model (loadgen/analysis/step_model.py), e.g. "
                   "base=8,token=0.02,knee=256,compute=0.1,draft=1.5 (only base required): every step takes "
                   "base + token*min(V,knee) + compute*max(0,V-knee) + draft*K ms, V = requests running x (K+1), "
                   "K the draft length. Replaces --step-ms (then ignored) and --load-step-ms.")
@click.option("--accept", default="0.8,0.6,0.4", show_default=True,
              help="CONDITIONAL acceptance per draft position; '' disables speculation.")
@click.option("--draft-schedule", metavar="RANGES",
              help="Draft length by the requests running, as vLLM's num_speculative_tokens_per_batch_size: "
                   "FIRST-LAST:K ranges (inclusive, the first from 1, LAST left out for no end; K 0 drafts "
                   "nothing; K at most --accept's positions), e.g. 1-7:3,8-:0. Each step drafts the K of the "
                   "requests running in its process then; --cost prices that K.")
@click.option("--accept-profile", type=click.Path(dir_okay=False),
              help="JSON {category: [conditional acceptance, ...], \"default\": [...]} chosen per request by "
                   "the X-Loadgen-Category header; categories it lacks use \"default\", else --accept. An entry "
                   "may be an object {\"accept\": [...], \"position_slope\", \"request_spread\", \"copy\", "
                   "\"copy_gain\", \"temperature_slope\"}: acceptance that moves with the output position, per "
                   "request, with prompt-output overlap and temperature (README: emulator ground truth).")
@click.option("--accept-temperature-slope", default=DEFAULT_TEMPERATURE_SLOPE, show_default=True, type=float,
              help="Acceptance scales by max(0, 1 - SLOPE * T) at a request's temperature T (the seeds' vLLM study: "
                   "0.81 at T 0 to 0.38 at 1.5); a profile entry's temperature_slope overrides it.")
@click.option("--stream-interval", default=1, show_default=True,
              help="Decode steps merged into one chunk (the prefill chunk stays alone; llamacpp ignores it).")
@click.option("--undrafted-start", default=0, show_default=True,
              help="First decode steps of each request that draft nothing, as n-gram drafting has nothing to "
                   "match yet (vLLM's n-gram: about 4).")
@click.option("--per-request-spec-decode-metrics", type=click.Choice(["none", "summary", "detailed"]),
              default="none", show_default=True,
              help="vllm: as vLLM's server flag, put each request's metrics.speculative_decoding on its final "
                   "usage chunk (summary: counts and histogram; detailed: also the per-step arrays).")
@click.option("--reasoning-tokens", default=0, show_default=True,
              help="On /v1/chat/completions, the first N output tokens of each request stream as reasoning "
                   "deltas in the engine's own field (vllm: reasoning; sglang, trtllm, llamacpp: "
                   "reasoning_content), the rest as content; usage counts both.")
@click.option("--endpoints", default="completions,chat", show_default=True,
              help="Generation routes served: completions (/v1/completions), chat (/v1/chat/completions); "
                   "a missing one answers 404 in the engine's error format (a gateway that routes only chat).")
@click.option("--text-prompts-only", is_flag=True,
              help="/v1/completions refuses token-id prompts with HTTP 400 (a server or gateway that tokenizes "
                   "itself), to test text prompts.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Processes sharing the port (SO_REUSEPORT).")
@click.option("--prefix-cache", is_flag=True,
              help="Emulate a prefix cache (an LRU of prompt blocks per worker): hits shorten the time to first "
                   "token by the prompt's cached share and are reported as the engine reports them.")
@click.option("--send-timestamps", is_flag=True,
              help="Add the send time (CLOCK_MONOTONIC ns) to each chunk, to measure client receive lag.")
@click.option("--api-key", envvar="LOADGEN_EMULATOR_API_KEY", help="Require this Bearer token on /v1/*.")
@click.option("--fail-status", multiple=True, metavar="STATUS=RATE",
              help="Fault: answer this share of requests with this HTTP status (repeatable), e.g. 503=0.05.")
@click.option("--fail-stream-error", default=0.0, help="Fault: share of streams cut by the engine's error event.")
@click.option("--fail-reset", default=0.0, help="Fault: share of streams whose connection is reset mid-stream.")
@click.option("--fail-stall", default=0.0, help="Fault: share of streams that stall --stall-s mid-stream.")
@click.option("--stall-s", default=5.0, show_default=True, help="How long a stall lasts.")
@click.option("--fail-malformed", default=0.0, help="Fault: share of streams with one malformed JSON event.")
@click.option("--slow-start-s", default=0.0, help="Fault: answer 503 to everything for this long after start.")
@click.option("--restart-after-s", type=float, help="Fault: drop every connection and the port once, after this long.")
@click.option("--restart-down-s", default=1.0, show_default=True, help="How long the port stays closed then.")
@click.option("--replay", multiple=True, metavar="PATH=FILE",
              help="Answer GET PATH with FILE's bytes, recorded from a real engine (repeatable), e.g. "
                   "/metrics=sglang-0.4.4-metrics.txt: what loadgen reads of an engine version in a probe or run.")
def emulate(engine, engine_version, host, port, model, ttft_ms, step_ms, load_step_ms, cost, accept, draft_schedule,
            accept_profile, accept_temperature_slope, stream_interval, undrafted_start, per_request_spec_decode_metrics,
            reasoning_tokens, endpoints, text_prompts_only, seed, workers, prefix_cache, send_timestamps,
            api_key, fail_status, fail_stream_error, fail_reset, fail_stall, stall_s, fail_malformed,
            slow_start_s, restart_after_s, restart_down_s, replay) -> None:
    """Serve an emulated engine with configured step time and per-position acceptance, and
    optionally seeded faults (see loadgen/emulator/faults.py)."""
    from .emulator import EmulatorConfig, load_accept_profile, serve
    from .emulator.faults import Faults, parse_fault_flag
    from .emulator.launch import READY_PREFIX
    from .emulator.schedule import parse_draft_schedule

    step_model = None
    if cost is not None:
        from .analysis.step_model import StepModel
        try:
            step_model = StepModel.parse(cost)
        except ValueError as exc:
            raise LoadgenError(f"--cost {cost!r}: {exc}") from None
    try:
        probs = _floats(accept)
        profile = load_accept_profile(accept_profile, fallback=probs) if accept_profile else {}
        positions = len(next(iter(profile.values())).accept) if profile else len(probs)
        schedule = parse_draft_schedule(draft_schedule, positions) if draft_schedule is not None else ()
        faults = Faults(status_rates=tuple(parse_fault_flag(f) for f in fail_status), stream_error=fail_stream_error,
                        reset=fail_reset, stall=fail_stall, stall_s=stall_s, malformed=fail_malformed,
                        slow_start_s=slow_start_s, restart_after_s=restart_after_s, restart_down_s=restart_down_s)
        config = EmulatorConfig(engine=engine, engine_version=engine_version, host=host, port=port, model=model,
                                ttft_ms=ttft_ms, step_ms=step_ms,
                                load_step_ms=load_step_ms, cost=step_model, accept=probs, draft_schedule=schedule,
                                accept_profile=tuple(profile.items()),
                                stream_interval=stream_interval, undrafted_start=undrafted_start, seed=seed,
                                workers=workers,
                                send_timestamps=send_timestamps, api_key=api_key,
                                faults=faults, reasoning_tokens=reasoning_tokens,
                                endpoints=tuple(e.strip() for e in endpoints.split(",") if e.strip()),
                                text_prompts_only=text_prompts_only, prefix_cache=prefix_cache,
                                accept_temperature_slope=accept_temperature_slope,
                                per_request_spec_decode_metrics=per_request_spec_decode_metrics,
                                replay=_replays(replay))
    except ValueError as exc:
        raise LoadgenError(str(exc)) from None
    try:
        serve(config, on_ready=lambda p: print(f"{READY_PREFIX} http://{host}:{p} ({engine}, model {model})",
                                               flush=True))
    except OSError as exc:
        raise LoadgenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _replays(flags: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """--replay PATH=FILE flags -> (path, the file's bytes)."""
    replays = []
    for flag in flags:
        path, sep, file = flag.partition("=")
        if not sep or not path.startswith("/") or not file:
            raise ValueError(f"--replay {flag!r}: give PATH=FILE, e.g. /metrics=recorded-metrics.txt")
        try:
            replays.append((path, Path(file).read_bytes()))
        except OSError as exc:
            raise ValueError(f"--replay {flag!r}: cannot read {file}: {exc.strerror}") from None
    return tuple(replays)


def _interrupt_on_sigterm() -> None:
    """SIGTERM stops a serve or matrix as Ctrl-C does: the server is taken down, never orphaned."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@cli.command()
@click.argument("recipe", required=False)
@click.option("--list", "list_recipes", is_flag=True, help="List the shipped recipes (name, description) and exit.")
@click.option("--dry-run", is_flag=True, help="Print the command and any config file it would write; start nothing.")
@click.option("--port", type=int, help="Port to serve on [default: the engine's own; 0 picks a free one].")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the server listens on (0.0.0.0 to take load from other machines).")
@click.option("--gpus", help="GPUs to use, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES) [default: all visible].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field, e.g. --set speculative.num_speculative_tokens=5 (repeatable).")
@click.option("--engine", type=click.Choice(SERVABLE_ENGINES),
              help="Look RECIPE up among this engine's recipes, and refuse a recipe for another engine.")
@click.option("--startup-timeout", type=float, help="Seconds to wait until it serves [default: the recipe's].")
@click.option("--grace", default=30.0, show_default=True, help="Seconds from SIGTERM to SIGKILL when stopping it.")
@click.option("--log", "log_path", type=click.Path(path_type=Path),
              help="The server's log file [default: results/servers/NAME-TIMESTAMP.log].")
def serve(recipe, list_recipes, dry_run, port, host, gpus, overrides, engine, startup_timeout, grace,
          log_path) -> None:
    """Start the engine a RECIPE (a recipe file, or a shipped recipe's name such as
    vllm/llama3.1-8b-eagle3: see --list) describes, wait until it answers a one-token request, and
    keep it up until Ctrl-C."""
    import shlex
    import tempfile

    from .servers import ServerProcess, load_recipe, render
    from .servers.recipe import DEFAULT_PORTS, shipped_recipes

    if list_recipes:
        names = [n for n in shipped_recipes() if engine is None or n.startswith(engine + "/")]
        _print_shipped(names, lambda name: load_recipe(name).description)
        return
    if recipe is None:
        raise LoadgenError("give a RECIPE (a recipe file, or a name that `loadgen serve --list` prints)")
    loaded = load_recipe(recipe, overrides, engine=engine)
    if engine and loaded.engine != engine:
        raise LoadgenError(f"{loaded.name} is a {loaded.engine} recipe, not {engine}: use --engine {loaded.engine} "
                           f"or leave --engine out")
    console = Console()
    if dry_run:
        workdir = Path(tempfile.gettempdir()) / "loadgen-serve-XXXX"
        launch = render(loaded, host=host, port=DEFAULT_PORTS[loaded.engine] if port is None else port,
                        workdir=workdir, gpus=gpus)
        click.echo(f"# {loaded.name}: {loaded.description or loaded.model} ({loaded.engine} {loaded.engine_version})")
        for key, value in launch.env.items():
            click.echo(f"export {key}={shlex.quote(value)}")
        for path, text in launch.files.items():
            click.echo(f"cat > {path} <<'EOF'\n{text.rstrip()}\nEOF")
        click.echo(shlex.join(launch.argv))
        return
    log_path = log_path or Path("results") / "servers" / (
        loaded.name.replace("/", "-") + datetime.now().strftime("-%Y%m%d-%H%M%S.log"))
    _interrupt_on_sigterm()
    server = ServerProcess(loaded, log_path=log_path, host=host, port=port, gpus=gpus,
                           startup_timeout_s=startup_timeout, grace_s=grace,
                           on_wait=lambda phase: console.print(f"[dim]waiting for {phase}[/]"))
    try:
        launch = server.start()
        console.print(f"[bold]{loaded.name}[/]: {shlex.join(launch.argv)}", soft_wrap=True)
        console.print(f"[dim]log: {log_path} · process group {server.pgid}[/]")
        ready = server.wait_ready()
        console.print(f"[bold green]ready[/]: {ready.url} (model {ready.model}) after {ready.startup_s:.1f} s. "
                      f"Measure it with: loadgen run --url {ready.url} --engine {loaded.engine}. Ctrl-C stops it.",
                      soft_wrap=True)
        server.wait()
    except KeyboardInterrupt:
        console.print("[dim]stopping the server[/]")
    finally:
        server.stop()


def _print_shipped(names: list[str], describe) -> None:
    """One line per shipped recipe or plan: its name (what the commands take) and its description."""
    width = max(map(len, names), default=0)
    for name in names:
        click.echo(f"{name:<{width}}  {describe(name)}")


@cli.command()
@click.argument("plan", required=False)
@click.option("--list", "list_plans", is_flag=True, help="List the shipped plans (name, description) and exit.")
@click.option("--output-dir", type=click.Path(path_type=Path),
              help="Where the matrix goes [default: the plan's output_dir, else results/matrix-PLAN]; a rerun resumes.")
@click.option("--dry-run", is_flag=True,
              help="Check the plan and print each recipe's command and cells; start nothing.")
def matrix(plan, list_plans, output_dir, dry_run) -> None:
    """For each recipe of PLAN (a YAML file, or a shipped plan's name: see --list): start the server,
    run the workloads × concurrencies, stop it; then compare every recipe with the plan's baseline
    (speedup tables, Pareto plots)."""
    from .studies import load_plan, run_matrix, shipped_plans

    if list_plans:
        _print_shipped(shipped_plans(), lambda name: load_plan(name).description)
        return
    if plan is None:
        raise LoadgenError("give a PLAN (a plan file, or a name that `loadgen matrix --list` prints)")
    loaded = load_plan(plan, output_dir)
    console = Console()

    def make_config(options: dict) -> RunConfig:
        try:
            return _run_config(console, {**options, "output_dir": loaded.output_dir})
        except RunOptionError as exc:
            raise LoadgenError(f"plan {loaded.path}: run option: {exc}") from None

    if not dry_run:
        _interrupt_on_sigterm()
    summary = run_matrix(loaded, make_config, console, dry_run=dry_run)
    if summary.get("interrupted"):
        sys.exit(130)
    failed = [label for label, info in summary.get("recipes", {}).items() if info.get("status") == "failed"]
    if failed:
        raise LoadgenError(f"{len(failed)} recipe(s) failed: {', '.join(failed)} (why: above, and in their "
                           "server.log); rerun the plan to retry them, finished cells are kept")


@cli.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--rebuild", is_flag=True, help="Rebuild report.json from the journal even where one exists.")
def report(output_dir: Path, rebuild: bool) -> None:
    """Draw OUTPUT_DIR's plots and report.html again from its report.json, or rebuild the report
    from the run's journal first (a run killed before writing it, or --rebuild)."""
    from .run import rerender_report

    rerender_report(output_dir, Console(), rebuild=rebuild)


@cli.command()
@click.argument("url")
@click.option("--model", help="Model to probe [default: the first of /v1/models].")
@click.option("--api-key", envvar=["LOADGEN_API_KEY", "OPENAI_API_KEY"],
              help="Bearer token (or LOADGEN_API_KEY, else OPENAI_API_KEY); never written out.")
@click.option("--insecure", is_flag=True, help="Do not verify the server's TLS certificate (self-signed staging).")
@click.option("--proxy", metavar="URL", help=PROXY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--record", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Also write what the server sends (version, /v1/models, its metrics bodies before and after "
                   "one streamed completion, the stream) to DIR, with provenance.json: fixtures of its version "
                   "for tests/unit/engines/real/. Nothing naming the server is written.")
def probe(url, model, api_key, insecure, proxy, as_json, record) -> None:
    """Before a run: what the server at URL offers (engine, models, token counts, steps, speculative
    metrics, prefix caching, endpoints) and what each means for the figures. Sends one tiny
    streamed completion and one chat request (and with --record one more completion of 32 tokens)."""
    from .run import probe as probe_server
    from .sinks import print_findings, print_findings_json

    findings, written = probe_server(url, model=model, api_key=api_key, verify_tls=not insecure, proxy=proxy,
                                     record=record)
    if as_json:
        print_findings_json(url, findings)
    else:
        print_findings(Console(), url, findings)
    if written:
        click.echo(f"recorded {len(written)} files in {record}", err=as_json)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except LoadgenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
