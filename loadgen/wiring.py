"""A run's settings turned into what its stages take: the HTTP client (transport) and the
workload's spec (workloads). The parent process and every worker build them here, the same way;
config.py, the bottom layer, cannot import those stages."""

from __future__ import annotations

from .config import RunConfig
from .errors import UsageError
from .transport import HttpClient, ProxyError
from .workloads import BuildOptions, WorkloadSpec, read_trace

__all__ = ["http_client", "workload_spec"]


def http_client(config: RunConfig, url: str) -> HttpClient:
    """The HTTP client the settings describe (one per process); UsageError for a proxy URL, from
    --proxy or the environment, that cannot be used."""
    try:
        return HttpClient(url, api_key=config.api_key, timeout_s=config.timeout_s,
                          connect_timeout_s=config.connect_timeout_s,
                          first_token_timeout_s=config.first_token_timeout_s, idle_timeout_s=config.idle_timeout_s,
                          verify_tls=config.verify_tls, proxy=config.proxy)
    except ProxyError as exc:
        raise UsageError(str(exc)) from None


def workload_spec(config: RunConfig) -> WorkloadSpec:
    """What the workload registry needs of the settings; with --trace, the rows the run replays."""
    window = None if config.trace is None else read_trace(config.trace).window(
        warmup=config.warmup, count=config.num_requests, duration_s=config.duration_s, speed=config.trace_speed)
    return WorkloadSpec(config.workload, config.workload_path, config.tokenizer,
                        BuildOptions(config.chat_template, config.system_prompt, config.isl, config.sends_text),
                        config.input_len, config.seed, window)
