"""Static checks of the shipped Grafana dashboards and the Prometheus/Grafana setup around them
(dashboards/): no network, no servers. Whether every query returns data is test_prometheus.py's job."""

from __future__ import annotations

import re
from array import array
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from loadgen.records import ERROR_KINDS, ErrorInfo, RequestRecord
from loadgen.sinks.live import LiveMetrics

from .dashboards import (
    DASHBOARD_DIR,
    DEFAULT_SUBSTITUTIONS,
    ENGINE_METRICS,
    GRAFANA_BUILTINS,
    VARIABLE,
    engine_of,
    expressions,
    load_dashboards,
    metric_names,
    panels,
    variable_names,
)

ROOT = DASHBOARD_DIR.parent
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARDS = load_dashboards()

try:
    import yaml
except ImportError:  # not a loadgen dependency: fall back to a light look at the text
    yaml = None


def _ids(dashboards):
    return [d.get("uid", str(i)) for i, d in enumerate(dashboards)]


def _loadgen_metric_names() -> set[str]:
    """The sample names loadgen's live metrics expose once a run has had a success and an error."""
    metrics = LiveMetrics(run_id="r", engine="vllm", model="m", workload="w", target_concurrency=1,
                          in_flight=lambda: 0, version="0")
    ok = RequestRecord(1, "chat", 0, 10, 8, scheduled_ns=1_000, sent_ns=2_000, first_ns=5_000_000,
                       last_ns=9_000_000, end_ns=9_000_000, chunk_ns=array("q", [5_000_000, 7_000_000, 9_000_000]),
                       chunk_tokens=array("i", [1, 3, 4]), output_tokens=8, finish_reason="length")
    failed = RequestRecord(2, "chat", 0, 10, 8, scheduled_ns=1_000, error=ErrorInfo("timeout", "read timed out"))
    metrics.observe(ok)
    metrics.observe(failed)
    metrics.set_server_acceptance_length(2.5)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


LOADGEN_METRICS = _loadgen_metric_names()
KNOWN_METRICS = LOADGEN_METRICS | set().union(*ENGINE_METRICS.values())


def _yaml(path: Path):
    """The parsed file, or None without PyYAML (after a light check that it is plausible YAML)."""
    text = path.read_text(encoding="utf-8")
    assert "\t" not in text, f"{path}: tabs are not allowed in YAML indentation"
    return yaml.safe_load(text) if yaml is not None else None


# -- the dashboard JSON ----------------------------------------------------------------------------

def test_dashboards_exist_and_have_unique_uids():
    assert DASHBOARDS, f"no dashboard JSON under {DASHBOARD_DIR}"
    uids = [d.get("uid") for d in DASHBOARDS]
    assert all(uids) and len(set(uids)) == len(uids)
    assert "loadgen" in uids
    for dashboard in DASHBOARDS:
        assert dashboard.get("title") and 36 <= dashboard.get("schemaVersion", 0) <= 41


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_panel_ids_are_unique_integers(dashboard):
    ids = [p.get("id") for p in panels(dashboard)]
    assert all(type(i) is int for i in ids), ids
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_panels_fit_the_grid(dashboard):
    for panel in panels(dashboard):
        grid = panel.get("gridPos", {})
        assert {"x", "y", "w", "h"} <= set(grid), panel["title"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_every_query_uses_the_datasource_variable(dashboard):
    templating = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = templating.get("datasource")
    assert source and source["type"] == "datasource" and source["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            assert not panel.get("targets"), panel["title"]
            continue
        assert panel.get("targets"), f"{panel['title']}: no queries"
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    for variable in templating.values():
        if variable["type"] == "query":
            assert variable.get("datasource") == DATASOURCE, variable["name"]


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_every_target_has_an_expression_and_a_unique_ref_id(dashboard):
    for panel in panels(dashboard):
        refs = [t.get("refId") for t in panel.get("targets", [])]
        assert all(refs) and len(set(refs)) == len(refs), f"{panel['title']}: refIds {refs}"
        for target in panel.get("targets", []):
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_every_variable_used_is_defined(dashboard):
    defined = variable_names(dashboard) | GRAFANA_BUILTINS
    texts = [dashboard.get("title", "")]
    for panel in panels(dashboard):
        texts += [panel.get("title", ""), panel.get("description", "")]
        texts += [t.get("expr", "") for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query", "")
        texts += [query.get("query", "") if isinstance(query, dict) else query, variable.get("definition", "")]
    used = {m["braced"] or m["bracketed"] or m["plain"] for text in texts for m in VARIABLE.finditer(text)}
    assert used - defined == set()


def test_the_loadgen_dashboard_variables():
    dashboard = next(d for d in DASHBOARDS if d["uid"] == "loadgen")
    templating = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(templating) == {"datasource", "run_id", "category", "engine_kind"}

    def query(v):
        return v["query"]["query"] if isinstance(v["query"], dict) else v["query"]

    assert query(templating["run_id"]) == "label_values(loadgen_run_info, run_id)"
    assert query(templating["category"]) == 'label_values(loadgen_requests_total{run_id=~"$run_id"}, category)'
    for name in ("run_id", "category"):
        assert templating[name]["type"] == "query" and templating[name]["includeAll"], name
        assert templating[name]["allValue"] == ".*" and templating[name]["multi"], name
    kind = templating["engine_kind"]
    assert kind["type"] == "custom" and kind["query"].split(",") == ["vllm", "sglang", "trtllm", "llamacpp"]
    assert {o["value"] for o in kind["options"]} >= {"vllm", "sglang", "trtllm", "llamacpp"}
    # every variable is matched with =~ wherever a query uses it, so ".*" (All) matches everything
    for _, expr in expressions(dashboard, {name: f"@{name}@" for name in templating}):
        for name in templating:
            for use in re.finditer(f"(=~|!~|=|!=)\\s*\"@{name}@\"", expr):
                assert use[1] == "=~", expr


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_every_metric_is_one_loadgen_or_an_engine_exports(dashboard):
    unknown = {}
    for title, expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        for name in names - KNOWN_METRICS:
            unknown.setdefault(name, title)
    assert not unknown, f"unknown metric names (name: panel): {unknown}"


def test_the_names_loadgen_exports_are_the_ones_expected():
    """The dashboards' loadgen names, checked against the live module rather than copied from it."""
    histograms = ("ttft_seconds", "ttft_answer_seconds", "tpot_seconds", "inter_chunk_seconds", "e2e_seconds",
                  "tokens_per_step")
    expected = {f"loadgen_{h}_{suffix}" for h in histograms for suffix in ("bucket", "sum", "count")}
    expected |= {"loadgen_run_info", "loadgen_run_start_time_seconds", "loadgen_inflight_requests",
                 "loadgen_target_concurrency", "loadgen_server_acceptance_length", "loadgen_requests_total",
                 "loadgen_errors_total", "loadgen_input_tokens_total", "loadgen_output_tokens_total",
                 "loadgen_reasoning_tokens_total", "loadgen_acceptance_length"}
    assert LOADGEN_METRICS == expected


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_expressions_are_well_formed(dashboard):
    """What a lexer can tell without Prometheus: balanced brackets and quotes, no variable left,
    windows from Grafana's interval variables, quantiles over buckets by le."""
    for title, raw in expressions(dashboard, {name: f"@{name}@" for name in DEFAULT_SUBSTITUTIONS}):
        stack = []
        text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', raw)
        assert '"' not in text.replace('""', ""), f"{title}: unbalanced quote in {raw}"
        for ch in text:
            if ch in "([{":
                stack.append(ch)
            elif ch in ")]}":
                assert stack and "([{"[")]}".index(ch)] == stack.pop(), f"{title}: unbalanced {ch} in {raw}"
        assert not stack, f"{title}: unclosed {stack} in {raw}"
        assert "$" not in raw and "[[" not in raw, f"{title}: variable left in {raw}"
        for window in re.findall(r"\[([^\]]*)\]", text):
            assert window in ("@__rate_interval@", "@__range@"), f"{title}: window [{window}] in {raw}"
        for call in re.finditer(r"\b(rate|increase|irate)\(", text):
            assert text[call.end():].lstrip().startswith(("loadgen_", "vllm:", "sglang:", "trtllm_", "llamacpp:")), raw
        if "histogram_quantile" in raw:
            assert "_bucket{" in raw and re.search(r"by \([^)]*\ble\b[^)]*\)", raw), f"{title}: {raw}"
        engine_of(raw)  # raises when one expression mixes two engines' metrics


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_rates_use_the_rate_interval(dashboard):
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            for window in re.findall(r"\[([^\]]*)\]", re.sub(r'"(?:[^"\\]|\\.)*"', '""', target["expr"])):
                assert window in ("$__rate_interval", "$__range"), f"{panel['title']}: [{window}]"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=_ids(DASHBOARDS))
def test_engine_queries_select_the_engine_job(dashboard):
    """Every selector of an engine's metric is narrowed by $engine_kind, the engine's scrape job."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            for name, matchers in re.findall(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", target["expr"]):
                if any(name in known for known in ENGINE_METRICS.values()):
                    assert 'job=~"$engine_kind"' in matchers, f"{panel['title']}: {name}{{{matchers}}}"
                elif name.startswith("loadgen_"):
                    assert 'run_id=~"$run_id"' in matchers, f"{panel['title']}: {name}{{{matchers}}}"


def test_the_loadgen_dashboard_covers_the_rows_and_engines():
    dashboard = next(d for d in DASHBOARDS if d["uid"] == "loadgen")
    rows = [p["title"] for p in panels(dashboard) if p["type"] == "row"]
    for title in ("Throughput", "Latency", "Speculative decoding", "Load", "Errors"):
        assert title in rows
    exprs = [expr for _, expr in expressions(dashboard)]
    used = set().union(*(metric_names(e) for e in exprs))
    for histogram in ("ttft_seconds", "tpot_seconds", "inter_chunk_seconds", "e2e_seconds", "tokens_per_step"):
        assert f"loadgen_{histogram}_bucket" in used, histogram
    assert {"loadgen_tokens_per_step_sum", "loadgen_tokens_per_step_count", "loadgen_server_acceptance_length",
            "loadgen_inflight_requests", "loadgen_target_concurrency", "loadgen_errors_total"} <= used
    engines = {engine_of(e) for e in exprs} - {None}
    assert engines == set(ENGINE_METRICS)
    # each engine's own acceptance figure is charted
    for name in ("vllm:spec_decode_num_drafts_total", "sglang:spec_accept_length",
                 "trtllm_spec_decode_acceptance_length", "llamacpp:spec_decode_num_drafts_total"):
        assert name in used, name


def test_error_panels_answer_before_any_error():
    """loadgen_errors_total and the non-ok outcomes exist only once a request failed: the panels
    that read them fall back to a zero vector, so they show 0 rather than "No data"."""
    for dashboard in DASHBOARDS:
        for title, expr in expressions(dashboard):
            if "loadgen_errors_total" in expr or 'outcome!="ok"' in expr:
                assert re.search(r"\bor on\(\)\s*(label_replace\()?vector\(0\)", expr), f"{title}: {expr}"


# -- the helpers themselves ------------------------------------------------------------------------

def test_expressions_replace_every_variable_form():
    dashboard = {"templating": {"list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
                 "panels": [{"title": "row", "type": "row", "panels": [
                     {"title": "p", "targets": [{"refId": "A", "expr": 'x{a=~"$a", b=~"${b}", c=~"${c:regex}"}'
                                                                       '[$__rate_interval] + [[a]] + $__range'}]}]}]}
    assert expressions(dashboard, {"a": "A", "__rate_interval": "7s"}) == [
        ("p", 'x{a=~"A", b=~".*", c=~".*"}[7s] + A + 5m')]
    assert expressions(dashboard) == [("p", 'x{a=~".*", b=~".*", c=~".*"}[1m] + .* + 5m')]


def test_metric_names_skips_functions_labels_and_keywords():
    expr = ('histogram_quantile(0.99, sum by (run_id, le) (rate(loadgen_ttft_seconds_bucket{run_id=~".*"}[1m])))\n'
            'or on() label_replace(vector(0), "kind", "none", "", "") / on() group_left() '
            'sum(vllm:spec_decode_num_drafts_total offset 5m) + 1e3 * time()')
    assert metric_names(expr) == {"loadgen_ttft_seconds_bucket", "vllm:spec_decode_num_drafts_total"}
    assert engine_of(expr) == "vllm"
    assert engine_of("sum(loadgen_requests_total)") is None
    with pytest.raises(ValueError):
        engine_of("vllm:num_requests_running + sglang:num_running_reqs")


def test_error_kinds_match_the_dashboard_description():
    dashboard = next(d for d in DASHBOARDS if d["uid"] == "loadgen")
    errors = next(p for p in panels(dashboard) if p["title"] == "Errors/s by kind")
    assert all(kind in errors["description"] for kind in ERROR_KINDS)


# -- Prometheus, Grafana provisioning, docker compose ----------------------------------------------

def test_prometheus_scrape_config():
    path = ROOT / "prometheus.yml"
    config = _yaml(path)
    text = path.read_text(encoding="utf-8")
    jobs = {"loadgen": "/metrics", "vllm": "/metrics", "sglang": "/metrics", "trtllm": "/prometheus/metrics",
            "llamacpp": "/metrics"}
    if config is None:
        assert re.search(r"^\s*scrape_interval:\s*5s\s*(#.*)?$", text, re.M)
        for job in jobs:
            assert re.search(rf"^\s*-\s*job_name:\s*['\"]?{job}['\"]?\s*(#.*)?$", text, re.M), job
        assert "/prometheus/metrics" in text and ":9464" in text
        return
    assert config["global"]["scrape_interval"] == "5s"
    scrape = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(scrape) == set(jobs)
    for name, metrics_path in jobs.items():
        assert scrape[name].get("metrics_path", "/metrics") == metrics_path, name
        targets = [t for group in scrape[name]["static_configs"] for t in group["targets"]]
        assert targets and all(re.fullmatch(r"[\w.-]+:\d+", t) for t in targets), (name, targets)
    assert any(t.endswith(":9464") for g in scrape["loadgen"]["static_configs"] for t in g["targets"])


def test_grafana_provisioning():
    datasources = ROOT / "provisioning" / "datasources" / "prometheus.yml"
    providers = ROOT / "provisioning" / "dashboards" / "loadgen.yml"
    parsed = _yaml(datasources), _yaml(providers)
    dashboard = next(d for d in DASHBOARDS if d["uid"] == "loadgen")
    default = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")["current"]["value"]
    if parsed[0] is None:
        text = datasources.read_text() + providers.read_text()
        assert "apiVersion: 1" in text and "type: prometheus" in text and f"uid: {default}" in text
        assert "/var/lib/grafana/dashboards" in text
        return
    sources, provider = parsed
    assert sources["apiVersion"] == 1 and provider["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == default and source["url"].startswith("http")
    assert source["jsonData"]["timeInterval"] == "5s"  # $__rate_interval needs the scrape interval
    (prov,) = provider["providers"]
    assert prov["type"] == "file" and prov["options"]["path"] == "/var/lib/grafana/dashboards"


def test_docker_compose_mounts_files_that_exist():
    path = ROOT / "docker-compose.yml"
    compose = _yaml(path)
    text = path.read_text(encoding="utf-8")
    mounts = re.findall(r"^\s*-\s*['\"]?(\./[^:'\"\s]+):([^:'\"\s]+)", text, re.M)
    assert mounts, "no bind mounts found"
    for host, _ in mounts:
        assert (ROOT / host).exists(), f"{host} is mounted but does not exist"
    targets = {container for _, container in mounts}
    assert {"/etc/prometheus/prometheus.yml", "/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= targets
    assert {"./prometheus.yml", "./provisioning", "./grafana"} <= {host for host, _ in mounts}
    assert text.count("host.docker.internal:host-gateway") >= 1
    if compose is not None:
        services = compose["services"]
        assert {"prometheus", "grafana"} <= set(services)
        assert "host.docker.internal:host-gateway" in services["prometheus"]["extra_hosts"]
