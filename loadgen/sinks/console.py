"""The console: a progress bar during the run and a summary after it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadgen.analysis.chat import UNREAD_COUNTS
from loadgen.analysis.report_types import (
    AcceptanceViews,
    ChatFigures,
    HeldLoad,
    HeldRate,
    LoadLevels,
    OverlapFigures,
    PerRequestCheck,
    PrefixCacheFigures,
    Report,
    WorkersInfo,
)
from loadgen.analysis.sampling import sampling_line

from .tables import cell

__all__ = ["RunProgress", "collapse_line", "print_chat", "print_levels", "print_summary", "print_trace",
           "print_workers"]


class RunProgress:
    """A progress bar over requests (or seconds, for a duration-bound run); redrawn 4x a second."""

    def __init__(self, console: Console, total: float | None, unit: str) -> None:
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                  console=console, refresh_per_second=4, transient=True)
        self._task = self._progress.add_task(unit, total=total, status="")

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, completed: float, status: str) -> None:
        self._progress.update(self._task, completed=completed, status=status)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.2f}"


def print_summary(console: Console, report: Report) -> None:
    cfg, summary, lat = report.config, report.summary, report.latency
    spec = report.speculative
    client = spec.client
    trace = cfg.workload_info.get("trace")
    load_label = (f"{cfg.request_rate:g} req/s ({cfg.arrival})" if cfg.request_rate else
                  f"trace {Path(trace['file']).name} x{trace['speed']:g}" if trace else
                  f"concurrency levels {','.join(map(str, cfg.concurrency_levels))} x {cfg.level_duration_s:g} s"
                  if cfg.concurrency_levels else f"concurrency {cfg.concurrency}")
    title = f"loadgen · {cfg.engine} · {cfg.model} · {cfg.workload} · {load_label}"
    if report.partial:
        title += " · PARTIAL"
    console.rule(title)

    head = Table(show_header=False, box=None)
    requests = f"{summary.requests_completed} ok / {summary.requests_failed} failed"
    if summary.requests_cancelled:
        requests += f" / {summary.requests_cancelled} cancelled"
    if summary.retries:
        requests += f" ({summary.retries} retries)"
    head.add_row("requests", requests)
    head.add_row("output TPS", cell(summary.output_tps, "{:.1f}"))
    head.add_row("request throughput", cell(summary.request_throughput, "{:.2f} req/s"))
    head.add_row("duration", cell(summary.duration_s, "{:.2f} s"))
    head.add_row("tokens in / out", f"{summary.input_tokens} / {summary.output_tokens}")
    load = report.load
    if isinstance(load, HeldRate) and load.achieved_rate is not None:
        head.add_row("request rate", f"{load.achieved_rate:.2f}/s sent of {load.scheduled_rate:.2f}/s scheduled "
                                     f"(target {load.target_rate:g}/s); late p99 {_ms(load.late_p99_s)} ms")
    elif isinstance(load, HeldLoad) and load.achieved_ratio is not None:
        low = "-" if load.min_in_flight is None else f"{load.min_in_flight:.1f}"
        head.add_row("in flight", f"mean {load.mean_in_flight:.1f}, lowest 0.1 s {low} "
                                  f"of {load.target_concurrency} ({load.achieved_ratio:.1%})")
    console.print(head)
    slo = report.slo
    if slo:
        verdicts = ", ".join(f"{name} {_ms(c.value_s)} ms {'≤' if c.met else '>'} {c.limit_s * 1e3:g} ms"
                             for name, c in slo.objectives.items())
        colour = "green" if slo.all_met else "red"
        console.print(f"[{colour}]SLO {'met' if slo.all_met else 'missed'}: {verdicts}[/]; goodput "
                      f"{cell(slo.goodput_rps)} req/s, {cell(slo.goodput_tps, '{:.1f}')} tok/s "
                      f"({cell(slo.good_fraction, '{:.1%}')} of requests met every limit)")
    if report.stop_reason:
        console.print(f"[bold red]Stopped early: {report.stop_reason}[/]")
    if report.error_details:
        console.print("errors: " + ", ".join(f"{k} {n}" for k, n in sorted(report.error_details.items())))
    bursts = report.summary.requests_in_one_burst
    if bursts:
        console.print(f"[bold yellow]{bursts} of {report.summary.requests_completed} requests delivered every token at "
                      "one instant: their TPOT and user TPS are undefined and left out (the server buffered the "
                      "stream, or this client read it late: see the read lag)[/]")
    if load and not load.held:
        what = ("schedule: requests left late or too few were sent" if isinstance(load, HeldRate) else
                f"load: {load.achieved_ratio:.1%} of the target concurrency on average")
        console.print(f"[bold red]The client did not hold the {what}. These figures describe a lower load than "
                      "asked for.[/]")

    table = Table(title="Latency", title_justify="left")
    table.add_column("metric")
    for col in ("mean", "p50", "p90", "p99", "max"):
        table.add_column(col, justify="right")
    for key, label, scale in (("ttft_s", "TTFT (ms)", _ms), ("tpot_s", "TPOT (ms)", _ms),
                              ("icl_s", "step / ICL (ms)", _ms), ("e2e_s", "E2E (ms)", _ms),
                              ("queue_s", "client queueing (ms)", _ms), ("user_tps", "user TPS", cell),
                              ("output_tokens_per_request", "output tokens", cell)):
        d = getattr(lat, key)
        table.add_row(label, *(scale(getattr(d, c)) for c in ("mean", "p50", "p90", "p99", "max")))
    console.print(table)

    hist = client.histogram
    if hist:
        steps = client.steps
        al = Table(title=f"Acceptance length (client, token-weighted): {cell(client.acceptance_length, '{:.3f}')} "
                         f"tokens/step over {steps} steps", title_justify="left")
        al.add_column("tokens/step", justify="right")
        al.add_column("steps", justify="right")
        al.add_column("share", justify="right")
        al.add_column("", min_width=20)
        al.add_column("cond. acceptance", justify="right")
        cond = client.conditional_acceptance
        top = max(hist.values())
        for k, n in hist.items():
            al.add_row(k, str(n), f"{n / steps:.1%}", "█" * max(1, round(20 * n / top)), cell(cond.get(k), "{:.3f}"))
        console.print(al)
        if client.token_counts == UNREAD_COUNTS:
            console.print("[bold yellow]per-chunk token counts NOT READ: chunks came without the usage counts this "
                          "engine's adapter reads on every chunk (a version without continuous usage stats? see the "
                          "README's compatibility table): acceptance figures from chunks are not measured[/]")
        elif client.token_counts == "estimated":
            console.print("[yellow]tokens per chunk were ESTIMATED by tokenizing the streamed text with the run's "
                          "tokenizer (the server gave no counts on chat): acceptance figures are estimates[/]")
        elif client.token_counts != "usage":
            console.print("[yellow]tokens per chunk were assumed (the server gave no per-chunk counts): "
                          "acceptance figures are not measured[/]")
    if report.acceptance is not None:
        print_acceptance_definitions(console, report.acceptance)
    server = spec.server
    if server and server.acceptance_length is not None:
        per_pos = ", ".join(f"{p:.3f}" for p in server.per_position or [])
        drafts = f" over {server.drafts:.0f} drafts" if server.drafts else ""
        console.print(f"Server ({server.source}): acceptance length {server.acceptance_length:.3f}, "
                      f"acceptance rate {cell(server.acceptance_rate, '{:.3f}')}"
                      + (f", per position [{per_pos}]" if per_pos else "") + drafts)
    coverage = spec.coverage
    if coverage and server:
        discarded = coverage.discarded_accepted_tokens
        console.print(f"Draft coverage {coverage.coverage:.1%}: {coverage.drafted_steps} of {coverage.decode_steps} "
                      f"decode steps drafted, {coverage.undrafted_steps} undrafted; client AL "
                      f"{cell(client.acceptance_length, '{:.3f}')}, server AL (drafted steps) "
                      f"{cell(server.acceptance_length, '{:.3f}')}, predicted from the coverage "
                      f"{coverage.predicted_client_acceptance_length:.3f}"
                      + (f"; {discarded} accepted tokens counted but not streamed (cut by max_tokens, or of "
                                  "failed requests)" if discarded else ""))
    unread = sorted({name for source in spec.server_sources for name in source.not_read})
    if unread:
        console.print(f"[bold yellow]Server speculative figures NOT READ (names loadgen does not know, never taken "
                      f"as zero): {', '.join(unread)}[/]", soft_wrap=True)
    if spec.server_note:
        console.print(f"[dim]Server note: {spec.server_note}[/]")
    check = spec.cross_check
    if check.flagged:
        console.print(f"[bold yellow]Client and server acceptance length disagree by "
                      f"{check.relative_difference:+.1%}[/] (client {check.client_acceptance_length:.3f}, "
                      f"server {check.server_acceptance_length:.3f}); likely: {'; '.join(check.likely_causes)}. "
                      f"Authoritative here: {check.authoritative}.")
    if spec.per_request_check is not None:
        console.print(per_request_check_line(spec.per_request_check))

    if report.chat is not None:
        print_chat(console, report.chat, emulated=report.config.emulator is not None)

    cats = report.categories
    if cats:
        ct = Table(title="By category", title_justify="left",
                   caption="AL per request: each request's mean and std over requests (SPEED-Bench's table); "
                           "pooled: token-weighted, steps pooled; specdec: Model-Optimizer specdec_bench's figure",
                   caption_justify="left")
        ct.add_column("category", no_wrap=True)
        views = report.acceptance.by_category if report.acceptance is not None else {}
        for col in ("requests", "AL per request", "std", "AL pooled", "AL specdec",
                    "TTFT p50 (ms)", "TPOT p50 (ms)", "user TPS p50"):
            ct.add_column(col, justify="right")
        for name, row in cats.items():
            al_row = row.acceptance_length
            defs = views[name].definitions if name in views else None
            ct.add_row(name, str(row.requests), cell(None if al_row is None else al_row.mean, "{:.3f}"),
                       cell(None if al_row is None else al_row.std, "{:.3f}"),
                       cell(defs.token_weighted if defs else None, "{:.3f}"),
                       cell(defs.specdec_bench if defs else None, "{:.3f}"), _ms(row.ttft_p50_s),
                       _ms(row.tpot_p50_s), cell(row.user_tps_p50, "{:.1f}"))
        console.print(ct)
    if report.levels is not None:
        print_levels(console, report.levels)
    if report.prefix_cache is not None:
        print_prefix_cache(console, report.prefix_cache)
    if report.overlap is not None and report.config.output_ids:
        print_overlap(console, report.overlap)
    if report.sampling is not None:
        console.print(f"[dim]{sampling_line(report.sampling)}[/]")
    if report.errors:
        et = Table(title="Errors", title_justify="left")
        et.add_column("kind")
        et.add_column("count", justify="right")
        et.add_column("example")
        for kind, count in report.errors.items():
            example = (report.error_examples.get(kind) or [""])[0]
            et.add_row(kind, str(count), example[:80])
        console.print(et)


def print_acceptance_definitions(console: Console, views: AcceptanceViews) -> None:
    """The run's AL under each definition on one line, then AL by output position on another (at
    most eight buckets) and the spread of per-request AL."""
    d, spread = views.run.definitions, views.run.per_request
    console.print(f"AL definitions: token-weighted (steps pooled) {cell(d.token_weighted, '{:.3f}')} · per-request "
                  f"mean {cell(d.per_request_mean, '{:.3f}')} · specdec_bench {cell(d.specdec_bench, '{:.3f}')} "
                  f"({d.requests} requests, {d.steps} steps)")
    if spread.count:
        console.print(f"Per-request AL: min {cell(spread.min, '{:.2f}')} · p25 {cell(spread.p25, '{:.2f}')} · "
                      f"median {cell(spread.p50, '{:.2f}')} · p75 {cell(spread.p75, '{:.2f}')} · max "
                      f"{cell(spread.max, '{:.2f}')} (std {cell(spread.std, '{:.2f}')})")
    if views.run.by_position:
        console.print("AL by output position (tokens): " + " · ".join(
            f"{b.start_tokens}-{b.end_tokens} {b.acceptance_length:.2f}" for b in views.run.by_position))


def per_request_check_line(check: PerRequestCheck) -> str:
    """One line: each request's steps against the engine's per-request count, or that it gives none."""
    if not check.given:
        return f"[dim]Per-request engine figures: {check.source}[/]"
    if not check.requests_checked:
        return f"[dim]Per-request engine figures: none received ({check.source})[/]"
    line = (f"Per-request check ({check.source.split(':')[0]}): {check.requests_agreeing} of "
            f"{check.requests_checked} requests' decode steps agree with the engine's")
    if check.largest_disagreements:
        worst = check.largest_disagreements[0]
        line = (f"[bold yellow]{line}[/]; largest: request {worst.request_id} {worst.client_decode_steps} on the "
                f"stream against {worst.engine_decode_steps}; likely: {'; '.join(check.likely_causes)}")
    return line


def print_prefix_cache(console: Console, figures: PrefixCacheFigures) -> None:
    """One line of the server's prefix-cache hit rate against the expected one, then its warnings."""
    measured = "not reported" if figures.hit_rate is None else f"{figures.hit_rate:.1%} ({figures.source})"
    expected = ("" if figures.expected_hit_rate is None
                else f"; expected from shared prefixes {figures.expected_hit_rate:.1%}")
    isolation = f"; isolation: {figures.isolation}" if figures.isolation else ""
    console.print(f"Prefix cache: hit rate {measured}{expected}{isolation}")
    for warning in figures.warnings:
        console.print(f"[bold yellow]{warning}[/]")


def print_overlap(console: Console, figures: OverlapFigures) -> None:
    """--output-ids: per category the prompt-output overlap, its relation to AL and the n-gram
    verdict's first words; or the line that says why nothing was scored."""
    if not figures.available:
        console.print(f"Prompt-output overlap: none ({figures.reason})")
        return
    table = Table(title="Prompt-output overlap (token ids, BLEU-4 style)", title_justify="left")
    for col in ("category", "requests", "overlap", "4-gram share", "r(overlap, AL)", "n-gram drafting"):
        table.add_column(col, justify="left" if col in ("category", "n-gram drafting") else "right")
    for name, c in figures.categories.items():
        table.add_row(name, str(c.requests), f"{c.mean_overlap:.3f}", f"{c.ngram_share:.1%}",
                      cell(c.al_correlation, "{:.2f}"), c.verdict.split(" (")[0].removeprefix("n-gram drafting "))
    console.print(table)


def print_chat(console: Console, chat: ChatFigures, emulated: bool = False) -> None:
    """How a text run's tokens were counted, reasoning against answer, and the parity warning (which
    against the built-in emulator says why: it has no tokenizer and counts a text prompt's words)."""
    sent = "chat messages" if chat.endpoint == "chat" else f"{chat.prompt_format} prompts"
    line = f"{sent}; token counts: {chat.token_counts}"
    if chat.reasoning_tokens:
        line += (f"; reasoning {chat.reasoning_tokens} / answer {chat.answer_tokens} output tokens; first answer "
                 f"token p50 {_ms(chat.ttft_answer_s.p50)} ms (TTFT counts reasoning)")
    console.print(line)
    parity = chat.parity
    if parity is not None and parity.flagged:
        console.print(f"[bold yellow]Tokenization parity: {parity.example}[/] ({parity.mismatched} of "
                      f"{parity.requests} requests differ; {parity.server_prompt_tokens} server against "
                      f"{parity.local_prompt_tokens} local prompt tokens in all)")
        if emulated:
            console.print("[dim](expected here: the built-in emulator has no tokenizer and counts a text prompt's "
                          "words)[/]")


def print_levels(console: Console, levels: LoadLevels) -> None:
    """The "Per load level" table of a --concurrency-levels run, and the collapse line under it."""
    table = Table(title=f"Per load level ({levels.level_duration_s:g} s each)", title_justify="left")
    for col in ("concurrency", "window (s)", "requests", "ok", "output TPS", "TTFT p50 (ms)", "TPOT p50 (ms)",
                "TPOT p99 (ms)", "user TPS p50", "client AL"):
        table.add_column(col, justify="right")
    for row in levels.levels:
        table.add_row(str(row.concurrency), f"{row.start_s:g}-{row.end_s:g}", str(row.requests), str(row.completed),
                      f"{row.output_tps:.1f}", _ms(row.ttft_p50_s), _ms(row.tpot_p50_s), _ms(row.tpot_p99_s),
                      cell(row.user_tps_p50, "{:.1f}"), cell(row.acceptance_length, "{:.3f}"))
    console.print(table)
    console.print(collapse_line(levels))


def collapse_line(levels: LoadLevels) -> str:
    """'collapse at concurrency 8: client AL 2.466 -> 1.000 (-59.4%, beyond ±10%) against concurrency 4',
    or the line saying no level crossed the threshold."""
    c = levels.collapse
    if c is None:
        return "no collapse: client AL (or TPOT where there is none) stays within its threshold level to level"
    name, fmt = (("client AL", "{:.3f}") if c.metric == "acceptance_length" else ("TPOT p50 (ms)", "{:.2f}"))
    scale = 1.0 if c.metric == "acceptance_length" else 1e3
    return (f"collapse at concurrency {c.concurrency}: {name} {fmt.format(c.previous * scale)} -> "
            f"{fmt.format(c.value * scale)} ({c.change:+.1%}, beyond ±{c.threshold:.0%}) against concurrency "
            f"{c.previous_concurrency}")


def print_trace(console: Console, info: dict) -> None:
    """Before a trace replay: what is replayed, and how fast (`info`: the trace workload's info, its
    "trace" TraceWindow.info()); a warning where the workload's text is too short to stay unshared."""
    trace = info["trace"]
    rate = f"{trace['scheduled_rate']:.2f} req/s" if trace["scheduled_rate"] else "all at once"
    warmup = f" after {trace['warmup_rows']} warm-up rows" if trace["warmup_rows"] else ""
    console.print(f"[dim]trace {trace['file']} ({trace['format']}): {trace['measured_rows']} of "
                  f"{trace['rows_in_file']} rows{warmup}, {trace['trace_span_s']:.1f} s of trace at speed "
                  f"{trace['speed']:g} -> {trace['replay_span_s']:.1f} s ({rate}); {trace['input_tokens']} input "
                  f"tokens ({trace['shared_prefix_tokens']} in shared prefixes), {trace['output_tokens']} output[/]")
    if info["text_reread"]:
        console.print(f"[bold yellow]the trace needs {info['text_needed']} tokens of text, --workload "
                      f"{info['workload']} holds {info['text_tokens']}: its text is reused, so a prefix cache may "
                      "find shared prefixes the trace does not have; choose a larger workload[/]")


def print_workers(console: Console, workers: WorkersInfo) -> None:
    """Where a run's workers ran (Ray: nodes and clock offsets) and every worker it lost."""
    bounds = [c.error_bound_ns for c in workers.clocks if c.error_bound_ns is not None]
    if workers.ray:
        nodes = {c.node for c in workers.clocks}
        offsets = ", ".join(f"{c.offset_ns / 1e3:+.0f}" for c in workers.clocks)
        console.print(f"[dim]Ray ({workers.ray}): {workers.count} workers on {len(nodes)} node(s); clock "
                      f"offsets {offsets} µs, each within ±{max(bounds, default=0) / 1e3:.0f} µs[/]")
    for lost in workers.lost:
        console.print(f"[bold yellow]worker {lost.worker} ({lost.where}) was lost {lost.at_s:.1f} s into "
                      f"the run: its {lost.in_flight_failed} request(s) in flight failed (worker_lost)"
                      + ("; the run went on without it" if workers.on_loss == "continue" else "") + "[/]")
