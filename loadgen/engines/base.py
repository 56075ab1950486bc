"""What every engine provides: an adapter (request bodies, chunk decoding, server SD metrics) and
the EngineSpec that declares it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from .launch import Launch

if TYPE_CHECKING:  # pragma: no cover
    from .prefix_cache import PrefixCacheReading
    from .server_metrics import Getter, SpecReading

__all__ = ["ChunkFields", "SpecCounters", "Finding", "EngineAdapter", "ScheduleSupport", "EngineSpec",
           "output_ids_request_fields"]


class ChunkFields(NamedTuple):
    """What one SSE event says, as far as measurement needs it.

    completion_tokens: cumulative output tokens so far (continuous usage), or None.
    tokens: tokens carried by this chunk when the engine says so directly (token_ids), or None.
    has_choice: the event carries a choice (a token-carrying chunk unless it holds 0 tokens).
    """

    completion_tokens: int | None
    tokens: int | None
    has_choice: bool
    finish_reason: str | None
    error: str | None
    sent_ns: int | None  # the emulator's send stamp, when asked for (benchmarks)
    text: str | None = None  # kept only for multi-turn workloads (the reply becomes the next context)
    #: the engine's own per-request draft figures on the final chunk (llama.cpp timings), if any
    draft_tokens: int | None = None
    accepted_tokens: int | None = None
    #: the server's usage.prompt_tokens, where the chunk carries usage (tokenization parity)
    prompt_tokens: int | None = None
    #: a chat chunk's reasoning delta (reasoning_content / reasoning); `text` is then the answer's
    #: delta (content), and a chunk may carry both (the step in which reasoning ended)
    reasoning_text: str | None = None
    #: cumulative reasoning tokens where the engine counts them in usage (vLLM's
    #: completion_tokens_details.reasoning_tokens, SGLang's usage.reasoning_tokens), or None
    reasoning_tokens: int | None = None
    #: the prompt tokens the server's prefix cache held (usage.prompt_tokens_details.cached_tokens), if it says
    cached_tokens: int | None = None
    #: the chunk's output token ids, where the engine sends them (--output-ids: vLLM's and SGLang's
    #: token_ids, TRT-LLM's with detokenize false, llama.cpp's __verbose.tokens); the list the chunk's
    #: own parse made, so keeping it costs no second parse
    output_ids: list[int] | None = None
    #: the engine's own count of the request's decode steps on its closing chunk, where it gives one
    #: (vLLM's metrics.speculative_decoding.num_spec_steps, TRT-LLM's avg_decoded_tokens_per_iter)
    server_steps: int | None = None


@dataclass(frozen=True)
class SpecCounters:
    """Cumulative server-side speculative-decoding counters at one scrape."""

    drafts: float
    draft_tokens: float
    accepted_tokens: float
    accepted_per_position: tuple[float, ...]

    def to_json(self) -> dict:
        return {"drafts": self.drafts, "draft_tokens": self.draft_tokens, "accepted_tokens": self.accepted_tokens,
                "accepted_per_position": list(self.accepted_per_position)}

    def minus(self, earlier: SpecCounters) -> SpecCounters:
        k = max(len(self.accepted_per_position), len(earlier.accepted_per_position))
        now = self.accepted_per_position + (0.0,) * (k - len(self.accepted_per_position))
        then = earlier.accepted_per_position + (0.0,) * (k - len(earlier.accepted_per_position))
        return SpecCounters(self.drafts - earlier.drafts, self.draft_tokens - earlier.draft_tokens,
                            self.accepted_tokens - earlier.accepted_tokens,
                            tuple(a - b for a, b in zip(now, then)))


@dataclass(frozen=True)
class Finding:
    """One thing `loadgen probe` found on a server, and what it means for the figures a run reports.

    affects_figures: `loadgen run` repeats it as a warning at its start (a figure will be assumed,
    cumulative or missing), rather than only describing the server."""

    check: str
    finding: str
    consequence: str
    affects_figures: bool = False

    def to_json(self) -> dict:
        return {"check": self.check, "finding": self.finding, "consequence": self.consequence,
                "affects_figures": self.affects_figures}


class EngineAdapter(Protocol):
    """What the rest of loadgen needs from an engine; openai.OpenAIAdapter is the common base."""

    name: str
    #: how per-chunk token counts are obtained: "usage" (cumulative usage on every chunk, exact),
    #: "one_per_token" (the engine streams one chunk per token), "one_per_chunk" (an assumption)
    token_counts: str
    #: one chunk per token: the chunks are grouped into steps when the request ends (records.steps),
    #: by gaps longer than this many ns where the engine gave no per-request counts; None where
    #: every chunk is one step
    step_gap_ns: int | None
    #: which acceptance length to trust for this engine, and why (shown in the report)
    authoritative: tuple[str, str]
    #: the server's drafts counter counts decode steps that drafted, once per request and step, so
    #: the client's decode steps less the drafts are the undrafted ones (the report's draft coverage)
    drafts_are_decode_steps: bool

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float,
                     ignore_eos: bool) -> dict: ...

    def decode(self, data: bytes) -> ChunkFields:
        """Decode one SSE data payload; raises ValueError when it is not a chunk."""
        ...

    #: token_counts on /v1/chat/completions: "usage" (cumulative counts on every chunk, exact) or
    #: "estimated" (none offered: the streamed text is tokenized with the run's tokenizer at request end)
    chat_token_counts: str

    def chat_body(self, *, model: str, messages: list[dict], max_tokens: int, temperature: float,
                  ignore_eos: bool) -> dict:
        """The /v1/chat/completions body: the server applies its own chat template to `messages`."""
        ...

    def decode_chat(self, data: bytes) -> ChunkFields:
        """Decode one `data:` payload of a chat stream; ValueError when it is not a chunk."""
        ...

    def collectors(self) -> list:
        """Server-side acceptance collectors (engines.server_metrics), best source first."""
        ...

    #: `loadgen probe`: where the engine tells its version, as (GET path, JSON key); None where it does not
    version_endpoint: tuple[str, str] | None
    #: `loadgen probe`: the engine's own GET endpoints worth listing beside the OpenAI ones (none that
    #: start a generation or drain statistics a run needs)
    own_endpoints: tuple[str, ...]
    #: `loadgen probe`: the engine's Prometheus text endpoint; None where none is known
    metrics_path: str | None
    #: `loadgen probe`: metrics (on the Prometheus endpoint) whose presence means a prefix cache
    prefix_cache_metrics: tuple[str, ...]
    #: --cache-isolation: the request field that keeps one request out of the prefix cache, and whether
    #: its value is a salt of the request's own (True) or false (an opt-out); None where the engine has none
    cache_isolation_field: tuple[str, bool] | None
    #: usage leaves prompt_tokens_details out where nothing was cached (SGLang), rather than saying 0
    cached_tokens_zero_omitted: bool
    #: --output-ids: the request fields that make the engine stream each chunk's output token ids
    #: (merged into every request body); None where it has no way (the report's overlap section
    #: then says so)
    output_ids_fields: dict | None
    #: the same on /v1/chat/completions; None where the engine's chat route has no way (or none verified)
    chat_output_ids_fields: dict | None
    #: --output-ids: how the engine gives the ids and at what cost, with the source it was read from
    output_ids_note: str
    #: --output-ids: the text goes empty where the ids come (the server skips detokenizing), so a
    #: multi-turn conversation would carry empty replies into its next turns
    output_ids_drop_text: bool
    #: what the engine, at the version its recipes pin, tells per request of its drafting on the
    #: stream (True, and which fields, how to ask, the source), or False and why it gives none
    per_request_figures: tuple[bool, str]

    def prefix_cache_reading(self, metrics_text: str) -> PrefixCacheReading | None:
        """The engine's prefix-cache figures in one scrape of metrics_path (engines.prefix_cache);
        None where it has none."""
        ...

    def context_length(self, model: dict) -> int | None:
        """The longest prompt + output a /v1/models entry allows, where the engine says so."""
        ...

    #: the endpoints whose bodies speculative_reading reads, best source first
    speculative_paths: tuple[str, ...]

    def speculative_reading(self, path: str, body: str | None) -> SpecReading:
        """What loadgen reads of acceptance in one body of PATH (None: it did not answer), in the
        compatibility table's terms (server_metrics.ACCEPTANCE_READINGS): a shape of a version it
        does not know is "not read", with the names it found, never zero."""
        ...

    async def speculative_metrics(self, get: Getter) -> Finding:
        """Which speculative-decoding figures the server exposes, and whether the server AL a run
        reports from them will be exact over its window, a gauge, cumulative, missing or not read."""
        ...


def output_ids_request_fields(adapter: EngineAdapter, endpoint: str) -> dict | None:
    """--output-ids: the request fields that make the engine stream output ids on `endpoint`
    (chat: its chat route's, else its completions route's); None where it has no way there."""
    return adapter.chat_output_ids_fields if endpoint == "chat" else adapter.output_ids_fields


@dataclass(frozen=True)
class ScheduleSupport:
    """What the engine, at the version its recipes pin, accepts for a draft length that follows the
    load, as found at its source (`source`; servers/SOURCES.md §7): `loadgen tune`'s schedule
    (tune.json "schedule": concurrency ranges -> K, 0 off) in the engine's own terms
    (engines/deploy.py).

    accepts: "per_batch_size" (a draft length per range of batch sizes, 0 off), "off_above" (one
    draft length, speculation off above a batch size) or "none" (one draft length at every load).
    snippet: tune's schedule -> the text to deploy it in the engine's own format, or None where
    speculation never pays; None (no function) where the engine accepts nothing.
    note: what the key does, exactly, and how the snippet reaches a recipe.
    """

    accepts: Literal["per_batch_size", "off_above", "none"]
    source: str
    note: str
    snippet: Callable[[dict], str | None] | None = None


@dataclass(frozen=True)
class EngineSpec:
    """Everything loadgen knows about one engine, declared once in the engine's own module.

    engines/registry.py lists these; every table of engines elsewhere (the CLI's --engine choices,
    --engine auto, default ports, recipe engines, launchers, the emulator's personalities) is
    derived from that list, so adding an engine touches no shared code.
    """

    name: str
    adapter: type[EngineAdapter]
    #: /v1/models' owned_by values (lower case) that identify this engine for --engine auto
    owned_by: tuple[str, ...] = ()
    #: where the engine listens when not told otherwise (`loadgen serve` without --port)
    default_port: int | None = None
    #: launch(recipe, host=, port=, workdir=) -> engines.launch.Launch: the engine's command for a
    #: recipe; None where loadgen does not start the engine (no recipes for it)
    launch: Callable[..., Launch] | None = None
    #: the emulator's personality, "module:Class". A name, not a class: engines/ must not import the
    #: emulator, which stays an independent check on the parsing done here; the emulator resolves it
    personality: str | None = None
    #: the recipe's model names a Hugging Face tokenizer, so a matrix plan may take token ids from
    #: it; False for llama.cpp, whose GGUF models are not, so its plans must name a tokenizer
    model_is_hf_tokenizer: bool = True
    #: what the engine accepts for a load-dependent draft length (tune's schedule, deployed); None
    #: where loadgen knows no pinned version of the engine (plain OpenAI)
    schedule_support: ScheduleSupport | None = None
