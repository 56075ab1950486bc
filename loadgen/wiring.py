"""A run's settings turned into what its stages take: the HTTP client (transport) and the
workload's spec (workloads). The parent process and every worker build them here, the same way;
config.py, the bottom layer, cannot import those stages."""

from __future__ import annotations

from .config import RunConfig
from .transport import HttpClient
from .workloads import BuildOptions, WorkloadSpec

__all__ = ["http_client", "workload_spec"]


def http_client(config: RunConfig, url: str) -> HttpClient:
    """The HTTP client the settings describe (one per process)."""
    return HttpClient(url, api_key=config.api_key, timeout_s=config.timeout_s,
                      connect_timeout_s=config.connect_timeout_s, first_token_timeout_s=config.first_token_timeout_s,
                      idle_timeout_s=config.idle_timeout_s, verify_tls=config.verify_tls)


def workload_spec(config: RunConfig) -> WorkloadSpec:
    """What the workload registry needs of the settings."""
    return WorkloadSpec(config.workload, config.workload_path, config.tokenizer,
                        BuildOptions(config.chat_template, config.system_prompt, config.isl, config.sends_text),
                        config.input_len, config.seed)
