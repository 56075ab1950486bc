"""llama.cpp (llama-server): one SSE chunk per token even with speculation, so tokens per chunk
say nothing about acceptance; a step's tokens arrive as one burst. When a request ends the client
groups its chunks into steps (records.steps): how many from the request's own `timings`, where
they begin from the gaps between chunks. The server's counters are the authoritative figure."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .base import ChunkFields, EngineSpec, ScheduleSupport
from .launch import Launch, Recipe, option_flags, sizing_flags
from .openai import OpenAIAdapter, decode_chat_object, decode_openai_object, load_chunk
from .prefix_cache import PrefixCacheReading
from .prometheus_text import Scrape, SpecMetricNames

__all__ = ["LlamacppAdapter", "launch", "SCHEDULE", "SPEC"]

NAMES = SpecMetricNames(drafts="llamacpp:spec_decode_num_drafts_total",
                        draft_tokens="llamacpp:spec_decode_num_draft_tokens_total",
                        accepted="llamacpp:spec_decode_num_accepted_tokens_total",
                        accepted_per_position="llamacpp:spec_decode_num_accepted_tokens_per_pos_total",
                        position_label="position", shape="llama.cpp")


PROMPT_CACHED, PROMPT_PROCESSED = "llamacpp:prompt_tokens_cached_total", "llamacpp:prompt_tokens_total"


class LlamacppAdapter(OpenAIAdapter):
    name = "llamacpp"
    token_counts = "one_per_token"
    #: only for a request without `timings` (cut off, or an older server): chunks closer than this
    #: to the previous one join its step. Measured against llama-server on 2 CPU cores: gaps inside
    #: a step's burst were < 0.8 ms for 96% of chunks, gaps between steps ~20 ms.
    step_gap_ns: int | None = 2_000_000
    authoritative = ("server", "llama-server streams one chunk per token: the client takes each request's step "
                               "count from its timings (draft_n_accepted) and places the steps at the largest "
                               "gaps between chunks, so its counters (--metrics) are the authoritative figure")
    #: spec_decode_num_drafts counts each slot's step that drafted; near max_tokens llama-server
    #: shortens the draft, and drafts nothing once one token is left
    drafts_are_decode_steps = True

    def request_body(self, *, model: str, prompt, max_tokens: int, temperature: float, ignore_eos: bool) -> dict:
        return {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "ignore_eos": ignore_eos, "stream": True, "stream_options": {"include_usage": True}}

    def decode(self, data: bytes) -> ChunkFields:
        """The OpenAI fields, plus the request's own draft statistics from the final chunk's
        `timings` (llama-server leaves draft_n out when the request drafted nothing) and, with
        --output-ids, the chunk's token id from `__verbose`."""
        obj = load_chunk(data)
        fields = decode_openai_object(obj)
        verbose = obj.get("__verbose")
        if verbose is not None:  # --output-ids: the token's id is in llama-server's native form
            fields = fields._replace(output_ids=verbose.get("tokens"))
        timings = obj.get("timings")
        if timings and fields.error is None:
            return fields._replace(draft_tokens=timings.get("draft_n", 0),
                                   accepted_tokens=timings.get("draft_n_accepted", 0))
        return fields

    #: on chat, one partial result per token becomes zero or more delta chunks (a role chunk first; a
    #: token that ends no text, none; one that ends reasoning and starts the answer, two), so a chunk
    #: is not a token there. With timings_per_token every result's last chunk carries `timings`,
    #: whose predicted_n is the tokens generated so far (tools/server/server-context.cpp
    #: send_partial_response, server-task.cpp server_task_result_cmpl_partial::to_json_oaicompat_chat,
    #: server-common.cpp server_slot_stats::to_json): the exact cumulative count
    chat_token_counts = "usage"

    def chat_body(self, *, model: str, messages: list[dict], max_tokens: int, temperature: float,
                  ignore_eos: bool) -> dict:
        body = super().chat_body(model=model, messages=messages, max_tokens=max_tokens, temperature=temperature,
                                 ignore_eos=ignore_eos)
        return {**body, "timings_per_token": True}

    def decode_chat(self, data: bytes) -> ChunkFields:
        """The chat delta, counted by its timings' predicted_n (the final usage chunk's usage agrees);
        a delta without timings (one of several in a result, or a server that ignores
        timings_per_token) counts as one token, which the next cumulative count corrects. The
        request's draft statistics as on /v1/completions (the last timings win)."""
        obj = load_chunk(data)
        timings = obj.get("timings")
        fields = decode_chat_object(obj, timings.get("predicted_n") if timings else None)
        if fields.completion_tokens is None and (fields.text or fields.reasoning_text):
            fields = fields._replace(tokens=1)
        if timings and fields.error is None and ("draft_n" in timings or "usage" in obj):
            return fields._replace(draft_tokens=timings.get("draft_n", 0),
                                   accepted_tokens=timings.get("draft_n_accepted", 0))
        return fields

    #: the final chunk's `timings` (draft_n, draft_n_accepted), always sent
    per_request_figures = (True, "llama.cpp timings.draft_n / draft_n_accepted on the final chunk (always sent)")
    #: llama-server's build (e.g. "b6765-1c2d3e4f") is its version
    version_endpoint: tuple[str, str] | None = ("/props", "build_info")
    own_endpoints: tuple[str, ...] = ("/props", "/slots", "/models")
    metrics_path: str | None = "/metrics"
    #: each slot keeps its last prompt's KV cache (cache_prompt, on by default); this counter counts its reuse
    prefix_cache_metrics: tuple[str, ...] = ("llamacpp:prompt_tokens_cached_total",)
    #: cache_prompt false: the slot reuses nothing of its last prompt (tools/server/server-schema.cpp,
    #: field_bool("cache_prompt"); server-context.cpp reuses the common prefix only if cache_prompt)
    cache_isolation_field: tuple[str, bool] | None = ("cache_prompt", False)
    #: /v1/completions partial chunks carry the token's id only inside `__verbose` (its native form,
    #: {"content", "tokens": [id], ...}), added where the request says verbose (tools/server/
    #: server-task.cpp server_task_result_cmpl_partial::to_json_oaicompat; server-context.cpp
    #: send_partial_response, `res->tokens.assign(1, tkn.tok)`). return_tokens does not reach a
    #: stream (send_final_response empties the final chunk's tokens when streaming). The final chunk's
    #: __verbose adds the generation settings and the prompt as text: a few KB once per request. A token
    #: whose text ends inside a UTF-8 character sends no chunk (server-context.cpp process_token,
    #: `incomplete`): its text comes with the next token's chunk, its id never (seen: 15 ids of 16 tokens)
    output_ids_fields: dict | None = {"verbose": True}
    output_ids_note = ("llama.cpp: verbose true, __verbose.tokens (one id) on every /v1/completions chunk "
                       "(tools/server/server-task.cpp to_json_oaicompat; its final chunk also echoes the prompt "
                       "as text); a token ending inside a UTF-8 character is streamed without its id "
                       "(server-context.cpp process_token); chat: not read")

    speculative_paths: tuple[str, ...] = ("/metrics",)
    counter_shapes = (NAMES,)
    metrics_hint = "start llama-server with --metrics"

    def collectors(self) -> list:
        return [self.counter_collector("llama.cpp /metrics counters")]

    def prefix_cache_reading(self, metrics_text: str) -> PrefixCacheReading | None:
        """llamacpp:prompt_tokens_cached_total counts prompt tokens reused from a slot's cache and
        llamacpp:prompt_tokens_total those processed, "excluding cached tokens" (tools/server/
        server-task.cpp, server_task_result_metrics::to_json metrics list), so queries are their sum.
        A slot reuses its last prompt's common prefix token by token (server-context.cpp,
        get_common_prefix): a block of 1."""
        sums = Scrape(metrics_text).sums({PROMPT_CACHED, PROMPT_PROCESSED})
        if PROMPT_CACHED not in sums or PROMPT_PROCESSED not in sums:
            return None
        cached = sums[PROMPT_CACHED][""]
        return PrefixCacheReading(queries=cached + sums[PROMPT_PROCESSED][""], hits=cached, block_size=1)

    def context_length(self, model: dict) -> int | None:
        """/v1/models' meta.n_ctx where given: the context the server was started with (-c, shared by
        its slots). n_ctx_train is only what the model was trained for, so it is not used."""
        meta = model.get("meta")
        length = meta.get("n_ctx") if isinstance(meta, dict) else None
        return length if isinstance(length, int) else None


#: recipe method -> --spec-type
SPEC_TYPES = {"draft_model": "draft-simple", "eagle3": "draft-eagle3", "mtp": "draft-mtp", "ngram": "ngram-simple"}


def _model_flags(model: str, local: str, hub: str) -> list[str]:
    """A .gguf path is loaded from disk; anything else is a Hugging Face GGUF repo (user/repo[:QUANT])."""
    return [local, model] if model.endswith(".gguf") or Path(model).exists() else [hub, model]


def launch(recipe: Recipe, *, host: str, port: int, workdir: Path) -> Launch:
    """`llama-server` with every layer offloaded (-ngl 999; a CPU build ignores it) and /metrics on.
    max_model_len is the context shared by all slots (-c); max_num_seqs the slots (-np)."""
    spec = recipe.speculative
    if spec.method == "eagle":
        raise UsageError(f"recipe {recipe.name}: llama-server has no EAGLE-1 drafts (its --spec-type offers "
                         "draft-eagle3); use method eagle3")
    argv = [recipe.executable or "llama-server", *_model_flags(recipe.model, "-m", "-hf"), "--host", host,
            "--port", str(port), "-ngl", "999", "--metrics"]
    argv += sizing_flags(recipe, max_model_len="-c", max_num_seqs="-np")
    if spec.method != "none":
        argv += ["--spec-type", SPEC_TYPES[spec.method], "--spec-draft-n-max", str(spec.num_speculative_tokens)]
        if spec.draft_model:
            argv += _model_flags(spec.draft_model, "-md", "-hfd")
        argv += option_flags(_synth_rates_for(recipe))
    return Launch(tuple(argv), {}, {})


def _synth_rates_for(recipe: Recipe) -> dict:
    """The speculative options with --spec-synth-rates cut to the draft length. The rates are
    UNCONDITIONAL per-position acceptance (llama-server accepts position i with probability
    r_i / r_(i-1), stopping at the first rejection: common/speculative.cpp, common_speculative_init,
    synth_probs; tools/server/server-context.cpp, server_sample_and_accept_synth), so the first K
    rates are exactly a K-token draft's; and llama-server refuses a list that is not exactly as long
    as the draft ("synthetic acceptance rates must contain %d values", common_speculative_synth_rates_resolve).
    A recipe can so keep one list and be served at any draft length up to its length."""
    options = dict(recipe.speculative.options)
    k = recipe.speculative.num_speculative_tokens
    for key in [key for key in options if key.lstrip("-").replace("-", "_") == "spec_synth_rates"]:
        value = options[key]
        if value is None or value is False or not isinstance(k, int):
            continue
        rates = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
        if len(rates) < k:
            raise UsageError(f"recipe {recipe.name}: speculative.options.{key} gives {len(rates)} rate(s) but "
                             f"num_speculative_tokens is {k}: llama-server takes one acceptance rate per draft "
                             "position")
        options[key] = rates[:k]
    return options


SCHEDULE = ScheduleSupport(
    accepts="none",
    source="ggml-org/llama.cpp tools/server/server-context.cpp:453 (server_slot::get_n_draft_max) at 0c1e570, "
           "vendored in llama-cpp-python 0.3.36",
    note="llama-server drafts up to --spec-draft-n-max tokens for every generating slot however many slots are "
         "busy: get_n_draft_max bounds the draft by the slot's context room and remaining tokens only, no flag ties "
         "speculation to the number of requests, and the per-request speculative.* fields are compiled out "
         "(tools/server/server-schema.cpp:198-227, #if 0). Deploy one K: the recipe's "
         "speculative.num_speculative_tokens (--spec-draft-n-max K). The server runs at most -np requests at once "
         "(the recipe's max_num_seqs), so the load to state is 1 to that.")

SPEC = EngineSpec(name="llamacpp", adapter=LlamacppAdapter, owned_by=("llamacpp",), default_port=8080, launch=launch,
                  personality="loadgen.emulator.llamacpp:Llamacpp", model_is_hf_tokenizer=False,
                  schedule_support=SCHEDULE)
