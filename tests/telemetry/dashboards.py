"""The shipped Grafana dashboards as data: their panels, and every query with Grafana's variables
replaced, ready to send to Prometheus.

Shared by the static checks (test_dashboards.py) and the test that evaluates each query against
a real Prometheus scraping loadgen and the emulator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["DASHBOARD_DIR", "DEFAULT_SUBSTITUTIONS", "ENGINE_METRICS", "GRAFANA_BUILTINS", "VARIABLE",
           "load_dashboards", "panels", "expressions", "variable_names", "metric_names", "engine_of"]

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"

#: what `expressions` puts for Grafana's built-in variables and the dashboard's own variables unless
#: told otherwise; a dashboard variable missing here becomes ".*" (its "All": every variable used in a
#: label matcher is matched with =~)
DEFAULT_SUBSTITUTIONS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__interval_ms": "15000",
    "run_id": ".*",
    "category": ".*",
    "engine_kind": ".*",
}

#: Grafana's global variables (its docs: dashboards/variables/add-template-variables, "Global variables")
GRAFANA_BUILTINS = frozenset((
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms", "__from", "__to",
    "__dashboard", "__org", "__user", "__name", "__all", "timeFilter", "__timeFilter",
))

#: $var, ${var}, ${var:format}, [[var]], [[var:format]]
VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\[\[(?P<bracketed>\w+)(?::[^\]]*)?\]\]|\$(?P<plain>\w+)")

#: every metric each engine's emulator exports (the real engines export these names and more);
#: emulator_send_lag_* is the emulator's own and not an engine's. trtllm: at --engine-version 1.3.0rc,
#: whose trtllm_* names the dashboards read (1.2.1, the recipes' pin, exports five unprefixed metrics)
ENGINE_METRICS: dict[str, frozenset[str]] = {
    "vllm": frozenset((
        "vllm:generation_tokens_total", "vllm:num_requests_running", "vllm:num_requests_waiting",
        "vllm:prompt_tokens_total", "vllm:request_success_total", "vllm:spec_decode_num_accepted_tokens_per_pos_total",
        "vllm:spec_decode_num_accepted_tokens_total", "vllm:spec_decode_num_draft_tokens_total",
        "vllm:spec_decode_num_drafts_total")),
    "sglang": frozenset((
        "sglang:cache_hit_rate", "sglang:gen_throughput", "sglang:generation_tokens_total", "sglang:num_queue_reqs",
        "sglang:num_requests_total", "sglang:num_running_reqs", "sglang:prompt_tokens_total",
        "sglang:spec_accept_length", "sglang:spec_accept_rate", "sglang:token_usage")),
    "trtllm": frozenset((
        "trtllm_generation_tokens_total", "trtllm_num_requests_running", "trtllm_num_requests_waiting",
        "trtllm_prompt_tokens_total", "trtllm_request_success_total", "trtllm_spec_decode_acceptance_length",
        "trtllm_spec_decode_accepted_tokens_total", "trtllm_spec_decode_draft_overhead",
        "trtllm_spec_decode_drafted_tokens_total", "trtllm_spec_decode_num_accepted_tokens_total",
        "trtllm_spec_decode_num_draft_tokens_total")),
    "llamacpp": frozenset((
        "llamacpp:n_busy_slots_per_decode", "llamacpp:n_decode_total", "llamacpp:n_tokens_max",
        "llamacpp:predicted_tokens_seconds", "llamacpp:prompt_seconds_total", "llamacpp:prompt_tokens_cached_total",
        "llamacpp:prompt_tokens_seconds", "llamacpp:prompt_tokens_total", "llamacpp:requests_deferred",
        "llamacpp:requests_processing", "llamacpp:spec_decode_num_accepted_tokens_per_pos_total",
        "llamacpp:spec_decode_num_accepted_tokens_total", "llamacpp:spec_decode_num_draft_tokens_total",
        "llamacpp:spec_decode_num_drafts_total", "llamacpp:tokens_predicted_seconds_total",
        "llamacpp:tokens_predicted_total")),
}

# PromQL words that look like metric names: operators, modifiers, aggregations' keywords, literals
_KEYWORDS = frozenset((
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "atan2", "inf", "nan", "start", "end",
))
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?")


def load_dashboards(directory: Path = DASHBOARD_DIR) -> list[dict]:
    """Every dashboard JSON under dashboards/grafana/, sorted by file name."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("**/*.json"))]


def panels(dashboard: dict) -> list[dict]:
    """All panels, rows included, with the panels of collapsed rows (nested in the row) flattened in."""

    def walk(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from walk(panel.get("panels", []))

    return list(walk(dashboard.get("panels", [])))


def variable_names(dashboard: dict) -> set[str]:
    """The dashboard's own template variables."""
    return {v["name"] for v in dashboard.get("templating", {}).get("list", [])}


def expressions(dashboard: dict, substitutions: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, with Grafana variables replaced.

    `substitutions` maps variable names (without `$`) to the text to put in their place, over
    DEFAULT_SUBSTITUTIONS; a dashboard variable named in neither becomes ".*". A variable that is
    neither the dashboard's nor known here is left as it is (Prometheus will reject the query).
    """
    values = {**DEFAULT_SUBSTITUTIONS, **(substitutions or {})}
    own = variable_names(dashboard)

    def replace(match: re.Match) -> str:
        name = match["braced"] or match["bracketed"] or match["plain"]
        if name in values:
            return values[name]
        return ".*" if name in own else match[0]

    out = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append((panel.get("title", ""), VARIABLE.sub(replace, target["expr"])))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a light lexer, not a parser: enough for the queries
    the dashboards use, which name metrics directly, never through {__name__=~...})."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        word, call = match[1], match[2]
        if call or word in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(word)
    return names


def engine_of(expr: str) -> str | None:
    """The engine whose metrics an expression reads (a key of ENGINE_METRICS), or None when it reads
    only loadgen's; an expression reading two engines' metrics is an error."""
    engines = {engine for name in metric_names(expr) for engine, known in ENGINE_METRICS.items() if name in known}
    if len(engines) > 1:
        raise ValueError(f"reads several engines' metrics ({', '.join(sorted(engines))}): {expr}")
    return engines.pop() if engines else None
