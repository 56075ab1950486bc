"""One adapter per engine: everything that differs between engines lives there."""

from .base import ChunkFields, EngineAdapter, SpecCounters
from .openai import OpenAIAdapter
from .vllm import VllmAdapter

__all__ = ["ChunkFields", "EngineAdapter", "SpecCounters", "ENGINES", "get_adapter", "detect_engine"]

ENGINES: dict[str, type[EngineAdapter]] = {"vllm": VllmAdapter, "openai": OpenAIAdapter}


def get_adapter(name: str) -> EngineAdapter:
    return ENGINES[name]()


def detect_engine(models_body: dict) -> str:
    """Guess the engine from /v1/models' owned_by field (vLLM says "vllm")."""
    owners = {str(m.get("owned_by", "")).lower() for m in models_body.get("data", []) if isinstance(m, dict)}
    for name in ENGINES:
        if name in owners:
            return name
    return "openai"
