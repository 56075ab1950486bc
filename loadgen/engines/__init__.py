"""One adapter per engine: everything that differs between engines lives there."""

from .base import ChunkFields, EngineAdapter, SpecCounters
from .llamacpp import LlamacppAdapter
from .openai import OpenAIAdapter
from .server_metrics import ServerAcceptance, ServerCollector
from .sglang import SglangAdapter
from .trtllm import TrtllmAdapter
from .vllm import VllmAdapter

__all__ = ["ChunkFields", "EngineAdapter", "SpecCounters", "ServerAcceptance", "ServerCollector", "ENGINES",
           "get_adapter", "detect_engine", "launchers"]

ENGINES: dict[str, type[EngineAdapter]] = {"vllm": VllmAdapter, "sglang": SglangAdapter, "trtllm": TrtllmAdapter,
                                           "llamacpp": LlamacppAdapter, "openai": OpenAIAdapter}

#: /v1/models' owned_by -> engine
_OWNERS = {"vllm": "vllm", "sglang": "sglang", "tensorrt_llm": "trtllm", "llamacpp": "llamacpp"}


def get_adapter(name: str) -> EngineAdapter:
    return ENGINES[name]()


def detect_engine(models_body: dict) -> str:
    """The engine, from /v1/models' owned_by (vllm, sglang, tensorrt_llm, llamacpp); else plain OpenAI."""
    for model in models_body.get("data", []):
        if isinstance(model, dict):
            engine = _OWNERS.get(str(model.get("owned_by", "")).lower())
            if engine:
                return engine
    return "openai"


def launchers() -> dict:
    """engine -> launch(recipe, host=, port=, workdir=) -> servers.recipe.Launch: how each engine is started."""
    from . import llamacpp, sglang, trtllm, vllm

    return {"vllm": vllm.launch, "sglang": sglang.launch, "trtllm": trtllm.launch, "llamacpp": llamacpp.launch}
