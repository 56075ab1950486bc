"""One module per engine: everything that differs between engines lives there, declared by its
EngineSpec; registry.py lists them."""

from .base import ChunkFields, EngineAdapter, EngineSpec, SpecCounters, output_ids_request_fields
from .registry import (
    DEFAULT_PORTS,
    EMULATED_ENGINES,
    ENGINES,
    FALLBACK_ENGINE,
    SERVABLE_ENGINES,
    detect_engine,
    get_adapter,
)
from .server_metrics import ServerAcceptance, ServerCollector

__all__ = ["ChunkFields", "EngineAdapter", "EngineSpec", "SpecCounters", "ServerAcceptance", "ServerCollector",
           "ENGINES", "FALLBACK_ENGINE", "SERVABLE_ENGINES", "EMULATED_ENGINES", "DEFAULT_PORTS", "get_adapter",
           "detect_engine", "output_ids_request_fields"]
