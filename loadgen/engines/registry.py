"""The one list of engines. Everything else that enumerates engines is derived from it: the CLI's
--engine choices and help, --engine auto, `loadgen serve`'s default ports and recipe engines, the
launchers, and the emulator's personalities (loadgen.emulator.server.PERSONALITIES).

An engine is one module under engines/ that declares an EngineSpec named SPEC; adding one means
adding its SPEC below (tests/unit/engines/test_contract.py then holds it to the contract)."""

from __future__ import annotations

from . import llamacpp, openai, sglang, trtllm, vllm
from .base import EngineAdapter, EngineSpec

__all__ = ["ENGINES", "FALLBACK_ENGINE", "SERVABLE_ENGINES", "EMULATED_ENGINES", "DEFAULT_PORTS", "get_adapter",
           "detect_engine"]

#: name -> spec, in the order the CLI and error messages list them
ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in
                                  (vllm.SPEC, sglang.SPEC, trtllm.SPEC, llamacpp.SPEC, openai.SPEC)}
#: what --engine auto settles on when /v1/models names no engine we know
FALLBACK_ENGINE = openai.SPEC.name
#: engines loadgen can start from a recipe (`loadgen serve`, `loadgen matrix`)
SERVABLE_ENGINES: tuple[str, ...] = tuple(name for name, spec in ENGINES.items() if spec.launch is not None)
#: engines the built-in emulator can speak (`loadgen emulate --engine`)
EMULATED_ENGINES: tuple[str, ...] = tuple(name for name, spec in ENGINES.items() if spec.personality is not None)
#: each servable engine's own port, used when `--port` is not given (the engines with a port are
#: the servable ones: tests/unit/engines/test_contract.py holds every launchable engine to one)
DEFAULT_PORTS: dict[str, int] = {spec.name: spec.default_port for spec in ENGINES.values()
                                 if spec.default_port is not None}
#: /v1/models' owned_by -> engine
_OWNERS: dict[str, str] = {owner: spec.name for spec in ENGINES.values() for owner in spec.owned_by}


def get_adapter(name: str) -> EngineAdapter:
    return ENGINES[name].adapter()


def detect_engine(models_body: dict) -> str:
    """The engine, from /v1/models' owned_by (each spec's owned_by); else plain OpenAI."""
    for model in models_body.get("data", []):
        if isinstance(model, dict):
            engine = _OWNERS.get(str(model.get("owned_by", "")).lower())
            if engine:
                return engine
    return FALLBACK_ENGINE
