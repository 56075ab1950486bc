"""The emulated engine: HTTP routes, generation streams and worker processes.

Everything an engine says on the wire comes from its Personality (engine.py: vllm.py, sglang.py,
trtllm.py, llamacpp.py); this module owns timing, acceptance and the sockets.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import signal
import socket
import sys
import time
import typing
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING

import orjson

from loadgen.engines.registry import ENGINES

from .counters import Counters
from .engine import BatchStats, GenerationParams, Personality, RequestRejected
from .faults import NO_FAULT, FaultPlan, Faults, draw
from .http import Connection, Request, accept_connections
from .prefix_cache import PrefixCache, prompt_units
from .profile import (
    DEFAULT_TEMPERATURE_SLOPE,
    AcceptSettings,
    request_factor,
    step_probabilities,
    validate_accept_profile,
)
from .schedule import DraftSchedule, draft_length_at
from .stepper import AcceptanceSampler, PositionalSampler, Stepper

if TYPE_CHECKING:  # pragma: no cover - the emulator imports no analysis code at run time
    from loadgen.analysis.step_model import StepModel

__all__ = ["EmulatorConfig", "serve", "PERSONALITIES", "GENERATION_ROUTES"]


def _personality(reference: str) -> type[Personality]:
    """EngineSpec.personality ("loadgen.emulator.vllm:Vllm") -> the class."""
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


#: engine -> its personality, derived from the engine registry: every engine whose EngineSpec names one
PERSONALITIES: dict[str, type[Personality]] = {name: _personality(spec.personality) for name, spec in ENGINES.items()
                                               if spec.personality is not None}

_WORDS = [" the", " model", " token", " draft", " step", " verify", " accept", " and", " of", " to",
          " a", " in", " is", " that", " for", " it", " with", " as", " on", " be"]
_TOKEN_IDS = range(32000)
#: output ids come in segments of this many: each copied from the prompt with the request's c_r, else random
ID_SEGMENT = 8
#: --endpoints name -> the generation route it serves
GENERATION_ROUTES = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass(frozen=True)
class EmulatorConfig:
    engine: str = "vllm"
    #: the engine version whose wire format is spoken (one of the personality's `versions`); None: its
    #: first, the version loadgen's recipes pin
    engine_version: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "emulator"
    ttft_ms: float = 50.0
    step_ms: float = 20.0
    load_step_ms: float = 0.0  # added to every step per other request running (a batch slows with its size)
    #: the step time from a cost model instead (loadgen/analysis/step_model.py): every step of every
    #: request takes cost.step_ms(running * (K + 1), K), K = draft_len and `running` the requests
    #: running in this process; step_ms is then ignored and load_step_ms must stay 0
    cost: StepModel | None = None
    accept: tuple[float, ...] = (0.8, 0.6, 0.4)
    #: K by the requests running, as vLLM's num_speculative_tokens_per_batch_size (schedule.py):
    #: each step drafts this step's K (at most the profile's positions); () drafts every position
    draft_schedule: DraftSchedule = ()
    #: per-category acceptance, ((category, AcceptSettings), ...); see profile.py (a category's
    #: probabilities alone are taken too, and read as AcceptSettings)
    accept_profile: tuple[tuple[str, AcceptSettings | tuple[float, ...]], ...] = ()
    #: decode steps merged into one chunk (the prefill chunk stays on its own)
    stream_interval: int = 1
    #: first decode steps of each request that draft nothing, as n-gram drafting has nothing to
    #: match yet (vLLM 0.32's n-gram drafted nothing for 4 steps); they count as no draft at all
    undrafted_start: int = 0
    seed: int = 0
    workers: int = 1
    send_timestamps: bool = False  # add "emulator_sent_ns" (CLOCK_MONOTONIC) to every chunk
    api_key: str | None = None
    faults: Faults = field(default_factory=Faults)
    max_model_len: int = 131072
    early_ms: float = 0.5  # see Stepper: centres the millisecond timer grid on the schedule
    #: an LRU of prompt blocks per worker (prefix_cache.py): hits shorten the prefill and are counted
    prefix_cache: bool = False
    engines: tuple[str, ...] = field(default=tuple(PERSONALITIES), repr=False)
    #: on /v1/chat/completions, the first this many output tokens of each request stream as reasoning
    #: deltas in the engine's own field (vLLM `reasoning`, the others `reasoning_content`)
    reasoning_tokens: int = 0
    #: the generation routes served (GENERATION_ROUTES keys); a missing one answers 404 like an unknown path
    endpoints: tuple[str, ...] = ("completions", "chat")
    #: /v1/completions refuses token-id prompts (HTTP 400), as a gateway or hosted API that tokenizes itself
    text_prompts_only: bool = False
    #: acceptance scales by max(0, 1 - slope * T) at a request's temperature T, for every category
    #: whose profile entry sets no temperature_slope of its own (profile.py)
    accept_temperature_slope: float = DEFAULT_TEMPERATURE_SLOPE
    #: vLLM's --per-request-spec-decode-metrics: none, summary or detailed (the vllm personality only)
    per_request_spec_decode_metrics: str = "none"
    #: GET path -> a body recorded from a real engine, served in place of the emulated endpoint (an
    #: older version's /metrics or /server_info, to see what loadgen reads of it in a probe or a run)
    replay: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        if self.engine not in self.engines:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {', '.join(self.engines)}")
        versions = PERSONALITIES[self.engine].versions if self.engine in PERSONALITIES else ()
        if self.engine_version is not None and self.engine_version not in versions:
            raise ValueError(f"--engine-version {self.engine_version!r}: --engine {self.engine} speaks "
                             f"{', '.join(versions) or 'no version'}")
        if self.ttft_ms < 0 or self.step_ms <= 0 or self.load_step_ms < 0:
            raise ValueError("ttft must be >= 0 ms, step > 0 ms and load step >= 0 ms")
        if self.cost is not None:
            if self.load_step_ms:
                raise ValueError("--cost replaces --load-step-ms (its per-token costs slow a step as the batch "
                                 "grows): give one of them")
            cost = self.cost
            if not all(math.isfinite(v) for v in (cost.base_ms, cost.token_ms, cost.compute_token_ms, cost.draft_ms)) \
                    or math.isnan(cost.knee_tokens):
                raise ValueError("--cost: every cost must be a finite number (only knee may be inf)")
        if any(not 0.0 <= p <= 1.0 for p in self.accept):
            raise ValueError("acceptance probabilities must lie in [0, 1]")
        if any(k > self.draft_len for _, _, k in self.draft_schedule):
            raise ValueError(f"--draft-schedule: a K is above the {self.draft_len} draft positions --accept gives")
        if self.accept_profile:
            profile = validate_accept_profile(dict(self.accept_profile), "accept profile", self.accept)
            object.__setattr__(self, "accept_profile", tuple(profile.items()))  # frozen: normalised once here
        if not (math.isfinite(self.accept_temperature_slope) and self.accept_temperature_slope >= 0):
            raise ValueError("--accept-temperature-slope must be a number >= 0")
        if self.stream_interval < 1:
            raise ValueError("stream interval must be at least 1")
        if self.undrafted_start < 0:
            raise ValueError("undrafted start must be at least 0 steps")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.reasoning_tokens < 0:
            raise ValueError("reasoning tokens must be at least 0")
        if self.per_request_spec_decode_metrics not in ("none", "summary", "detailed"):
            raise ValueError("--per-request-spec-decode-metrics: give none, summary or detailed")
        unknown = [e for e in self.endpoints if e not in GENERATION_ROUTES]
        if unknown or not self.endpoints:
            raise ValueError(f"--endpoints: give one or more of {', '.join(GENERATION_ROUTES)}"
                             + (f" (not {', '.join(unknown)})" if unknown else ""))
        reason = PERSONALITIES[self.engine].single_worker_reason if self.engine in PERSONALITIES else None
        if self.workers > 1 and reason:
            raise ValueError(f"--workers {self.workers} is not supported with --engine {self.engine}: {reason}")

    @property
    def draft_len(self) -> int:
        """Draft tokens per verify step: the profile's list length, else --accept's."""
        return len(self.profile_settings[0][1].accept) if self.accept_profile else len(self.accept)

    @property
    def profile_settings(self) -> tuple[tuple[str, AcceptSettings], ...]:
        """accept_profile with every entry as AcceptSettings (__post_init__ made them so)."""
        return typing.cast("tuple[tuple[str, AcceptSettings], ...]", self.accept_profile)

    @property
    def nominal_step_ms(self) -> float:
        """A step of one request running alone: --step-ms, or the cost model's at one request."""
        if self.cost is None:
            return self.step_ms
        k = self.draft_len_at(1)
        return self.cost.step_ms(k + 1, k)

    def draft_len_at(self, running: int) -> int:
        """A step's draft length with `running` requests running in the process: the schedule's K,
        else every position."""
        return draft_length_at(self.draft_schedule, running) if self.draft_schedule else self.draft_len

    def step_ns_at(self, running: int) -> int:
        """One step's time with `running` requests running in the process: --step-ms plus --load-step-ms
        per other request, or the cost model's step for a batch of `running` requests at that step's K."""
        if self.cost is None:
            return int(self.step_ms * 1e6) + int(self.load_step_ms * 1e6) * max(0, running - 1)
        k = self.draft_len_at(running)
        return round(self.cost.step_ms(running * (k + 1), k) * 1e6)


class Generation:
    """One request's output: step i is due at arrival + ttft + i * step; step 0 is the prefill.

    A chunk goes out after the prefill step and then after every --stream-interval decode steps
    (and at the end); the server counters see every step whatever the interval."""

    __slots__ = ("app", "conn", "params", "rid", "created", "emitted", "index", "start_ns", "texts", "ids",
                 "encoder", "sampler", "copy_share", "copy_source", "id_buffer", "pending", "drafts", "draft_tokens",
                 "accepted", "first_ns", "interval", "fault",
                 "due", "per_token", "verify_steps")

    def __init__(self, app: App, conn: Connection, params: GenerationParams, start_ns: int,
                 fault: FaultPlan = NO_FAULT, copy_source: list[int] | None = None) -> None:
        self.app, self.conn, self.params = app, conn, params
        self.fault = fault
        personality = app.personality
        self.rid = (personality.chat_request_id if params.chat else personality.request_id)(app.next_id())
        self.created = int(time.time())
        self.emitted = 0    # tokens produced so far
        self.index = 0      # steps run so far
        self.pending = 0    # tokens produced but not yet sent
        self.drafts = 0     # verify steps
        self.draft_tokens = 0  # tokens drafted (llama.cpp's timings.draft_n)
        self.accepted = 0   # accepted draft tokens (timings.draft_n_accepted)
        #: (drafted, accepted) per verify step, where the personality reports them per request (vLLM)
        self.verify_steps: list[tuple[int, int]] | None = [] if personality.keeps_verify_steps else None
        self.start_ns = start_ns
        # the current step's due time (step 0: the prefill, shortened by the prompt's cached share)
        cached = params.cached_tokens
        self.due = start_ns + (app.ttft_ns if not cached else app.ttft_ns * (params.prompt_tokens - cached)
                               // params.prompt_tokens)
        self.first_ns = 0   # when the first chunk went out
        self.texts: list[str] = []
        self.ids: list[int] = []
        self.sampler, self.copy_share = app.acceptance_for(params)
        #: output ids are copied from the prompt's ids (ID_SEGMENT at a time) only where ids go on the wire
        self.copy_source = copy_source if self.copy_share and params.return_token_ids else None
        self.id_buffer: list[int] = []  # ids of the current segment not yet sent
        encoder_of = personality.chat_stream_encoder if params.chat else personality.stream_encoder
        self.encoder = encoder_of(self.rid, self.created, params) if params.stream else None
        #: the encoder takes a chunk's text as one string per token (llama.cpp's events; chat's reasoning split)
        self.per_token = self.encoder is not None and self.encoder.per_token
        self.interval = app.stream_interval

    def _next_due(self) -> int:
        """When the next step is due: one step time after this one's due time (never after its
        actual send, so lateness does not accumulate); the step time grows with the requests
        running when --load-step-ms or --cost is set."""
        self.due += self.app.step_time_ns()
        return self.due

    def step(self, now_ns: int) -> int | None:
        conn, app, params = self.conn, self.app, self.params
        if conn.closed:
            self._close("requests_aborted", now_ns)
            return None
        if self.fault.stream is not None and self.emitted >= self.fault.at_token and params.stream:
            due = self._strike(now_ns)
            if due != 0:
                return due
        batch = app.batch
        step = self.index
        n = 1
        if step:
            sampler = self.sampler
            k = sampler.draft_len if step > app.undrafted_start else 0
            if k and app.scheduled_k:
                k = min(k, app.draft_len_by_running[app.running])  # --draft-schedule: this step's K
            if k and app.caps_drafts and params.max_tokens - self.emitted - 1 < k:
                k = params.max_tokens - self.emitted - 1  # 0: no room left for a draft
                accepted = sampler.draw_upto(k, self.emitted) if k > 0 else 0
            elif k:
                accepted = sampler.draw(self.emitted) if k == sampler.draft_len else sampler.draw_upto(k, self.emitted)
            if k > 0:
                # 1 + accepted drafts; the server counters see the draw even where max_tokens cuts it
                n += accepted
                arr = app.counters.array
                arr[app.i_drafts] += 1
                arr[app.i_draft_tokens] += k
                arr[app.i_accepted] += accepted
                for i in app.i_pos[:accepted]:
                    arr[i] += 1
                self.drafts += 1
                self.draft_tokens += k
                self.accepted += accepted
                if self.verify_steps is not None:
                    self.verify_steps.append((k, accepted))
                batch.drafts += 1
                batch.draft_tokens += k
                batch.accepted += accepted
            remaining = params.max_tokens - self.emitted
            if n > remaining:
                n = remaining
            batch.decode += 1
            batch.decode_tokens += n
        else:
            batch.prefill += 1
            batch.ctx_tokens += params.prompt_tokens
        emitted = self.emitted = self.emitted + n
        self.index = index = step + 1
        finished = emitted >= params.max_tokens
        if not finished and step % self.interval:
            self.pending += n
            return self._next_due()  # merged into a later chunk
        count, self.pending = self.pending + n, 0
        app.record_send(self.due)
        if not self.first_ns:
            self.first_ns = now_ns
        choices = app.rng.choices
        ids = (self._output_ids(count) if self.copy_source else choices(_TOKEN_IDS, k=count)) \
            if params.return_token_ids else []
        words = choices(_WORDS, k=count)
        finish = "length" if finished else None
        encoder = self.encoder
        if encoder is None:  # not streaming: the whole text goes out at the end
            self.texts.extend(words)
            self.ids.extend(ids)
            if not finished:
                return self._next_due()
            personality = app.personality
            conn.respond_json(200, personality.chat_body(self, now_ns) if params.chat else
                              personality.completion_body(self, "".join(self.texts), self.ids, "length", now_ns))
            self._close("requests_finished_length", now_ns)
            return None
        extra = (b',"emulator_arrival_ns":%d,"emulator_sent_ns":%d' % (self.start_ns, time.monotonic_ns())
                 if app.send_timestamps else b"")
        payload = encoder.events(words if self.per_token else "".join(words), ids, finish, emitted, index, extra)
        if not finished:
            conn.write_chunk(payload)
            return self._next_due()
        conn.end_stream(payload + encoder.tail(self, now_ns))
        self._close("requests_finished_length", now_ns)
        return None

    def _output_ids(self, count: int) -> list[int]:
        """The next `count` output ids, made ID_SEGMENT at a time: with probability c_r (copy_share) a
        segment is ID_SEGMENT consecutive ids from a random place in the prompt, else random ids (a
        prompt shorter than a segment is copied whole). The prompt-output overlap then has a known share."""
        buffer, rng, prompt = self.id_buffer, self.app.rng, self.copy_source
        assert prompt, "called only with a token-id prompt to copy from"
        while len(buffer) < count:
            if rng.random() < self.copy_share:
                start = rng.randrange(max(1, len(prompt) - ID_SEGMENT + 1))
                buffer.extend(prompt[start:start + ID_SEGMENT])
            else:
                buffer.extend(rng.choices(_TOKEN_IDS, k=ID_SEGMENT))
        ids, self.id_buffer = buffer[:count], buffer[count:]
        return ids

    def _strike(self, now_ns: int) -> int | None:
        """The injected stream fault: None ends the stream, a time delays this step to it, and 0
        lets the step run on as usual."""
        kind, self.fault = self.fault.stream, NO_FAULT
        conn = self.conn
        if kind == "stall":
            self.due += int(self.app.config.faults.stall_s * 1e9)  # every later step shifts too
            return self.due
        if kind == "malformed":
            conn.write_chunk(b'data: {"choices": [{"text": "cut short\n\n')
            return 0
        if kind == "stream_error":
            event = self.app.personality.error_event(500, "injected fault: the engine failed mid-stream")
            if event is None:
                conn.abort()
            else:
                conn.end_stream(event)
        else:  # reset
            conn.reset()
        self._close("requests_aborted", now_ns)
        return None

    def _close(self, outcome: str, now_ns: int) -> None:
        app = self.app
        app.running -= 1
        arr, idx = app.counters.array, app.idx
        arr[idx["requests_running"]] -= 1
        arr[idx[outcome]] += 1
        arr[idx["generation_tokens"]] += self.emitted
        if self.first_ns:
            arr[idx["prompt_ns"]] += self.first_ns - self.start_ns
            arr[idx["predicted_ns"]] += now_ns - self.first_ns
        seq_len = self.params.prompt_tokens + self.emitted
        if seq_len > arr[idx["seq_len_max"]]:
            arr[idx["seq_len_max"]] = seq_len
        if outcome == "requests_finished_length":
            app.batch.completed += 1
        app.personality.on_request_end(self, outcome, now_ns)


class App:
    """Routes requests of one worker process; all state is per process except the counters."""

    def __init__(self, config: EmulatorConfig, counters: Counters, worker: int) -> None:
        self.config = config
        self.counters = counters
        self.idx = {name: counters.index(name) for name in counters.names}
        self.i_drafts, self.i_draft_tokens, self.i_accepted = (
            self.idx["spec_drafts"], self.idx["spec_draft_tokens"], self.idx["spec_accepted_tokens"])
        self.i_pos = [self.idx[f"spec_accepted_pos_{i}"] for i in range(config.draft_len)]
        self.rng = random.Random(config.seed * 1_000_003 + worker)
        profile = dict(config.profile_settings)
        self.default_settings = profile.get("default", AcceptSettings(config.accept))
        self.settings = profile
        self.temperature_slope = config.accept_temperature_slope
        #: the samplers of requests whose acceptance is the category's own (no knob moves it): shared
        self.default_sampler = AcceptanceSampler(self.default_settings.accept, self.rng)
        self.samplers = {category: AcceptanceSampler(s.accept, self.rng) for category, s in profile.items()}
        self.ttft_ns = int(config.ttft_ms * 1e6)
        self.running = 0  # generations in progress in this process
        #: step time (ns) by the generations running: the hot path looks it up, computes nothing
        self.step_ns_by_running: list[int] = []
        #: --draft-schedule: K by the generations running, looked up as the step time is
        self.scheduled_k = bool(config.draft_schedule)
        self.draft_len_by_running: list[int] = []
        self._grow_step_table(64)
        self.send_timestamps = config.send_timestamps
        self.personality = PERSONALITIES[config.engine](config, counters, worker)
        self.stream_interval = config.stream_interval if self.personality.merges_steps else 1
        self.undrafted_start = config.undrafted_start
        self.caps_drafts = self.personality.caps_drafts
        self.i_lag_sum, self.i_lag_count, self.i_lag_max = (
            self.idx["send_lag_ns_sum"], self.idx["send_lag_count"], self.idx["send_lag_ns_max"])
        self.routes = {**self.personality.routes(), **{("GET", path): _replayed(body) for path, body in config.replay}}
        #: the generation routes served -> whether the route is chat
        self.generation_paths = {GENERATION_ROUTES[e]: e == "chat" for e in config.endpoints}
        self.paths = {path for _, path in self.routes} | set(self.generation_paths)
        self.batch = BatchStats()
        self.stepper = Stepper(asyncio.get_running_loop(), early_ns=int(config.early_ms * 1e6),
                               on_fire=self.on_fire if self.personality.uses_batches else None)
        self.created = int(time.time())
        self._ids = iter(range(worker, sys.maxsize, config.workers))
        self.faults = config.faults
        self.fault_rng = random.Random(config.seed * 7919 + worker + 1)
        self.started_ns = time.monotonic_ns()
        self.connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.prefix_cache = PrefixCache(self.personality.cache_block_tokens) if config.prefix_cache else None

    def step_time_ns(self) -> int:
        """The step time with the requests now running in this process (EmulatorConfig.step_ns_at)."""
        return self.step_ns_by_running[self.running]

    def _grow_step_table(self, size: int) -> None:
        table = self.step_ns_by_running
        table.extend(self.config.step_ns_at(r) for r in range(len(table), size))
        ks = self.draft_len_by_running
        ks.extend(self.config.draft_len_at(r) for r in range(len(ks), size))

    def next_id(self) -> int:
        return next(self._ids)

    def acceptance_for(self, params: GenerationParams) -> tuple[AcceptanceSampler, float]:
        """A request's sampler and its copy share c_r, from its category's settings (the category's
        profile, else the profile's "default", else --accept). u_r and c_r are drawn here, once per
        request, and everything that does not change per step is folded into the sampler's
        probabilities: a request no knob moves shares the category's sampler, as before profiles had knobs."""
        category = params.category
        settings = self.default_settings if category is None else self.settings.get(category, self.default_settings)
        slope = self.temperature_slope if settings.temperature_slope is None else settings.temperature_slope
        temperature = params.temperature if slope else 0.0
        if not (settings.varies_per_request or temperature):
            shared = self.default_sampler if category is None else self.samplers.get(category, self.default_sampler)
            return shared, 0.0
        rng = self.rng
        spread, copy = settings.request_spread, settings.copy
        scale = rng.uniform(1.0 - spread, 1.0 + spread) if spread else 1.0
        copy_share = rng.uniform(0.0, min(1.0, 2.0 * copy)) if copy else 0.0
        if settings.position_slope:
            # the position factor changes per step: the sampler applies it, the rest is folded in here
            factor = request_factor(scale=scale, temperature=temperature, temperature_slope=slope)
            return PositionalSampler([p * factor for p in settings.accept], rng, position_slope=settings.position_slope,
                                     max_tokens=params.max_tokens, boost=settings.copy_gain * copy_share), copy_share
        return AcceptanceSampler(step_probabilities(settings.accept, scale=scale, temperature=temperature,
                                                    temperature_slope=slope, copy_share=copy_share,
                                                    copy_gain=settings.copy_gain), rng), copy_share

    def on_fire(self, now_ns: int) -> None:
        batch = self.batch
        if not (batch.prefill or batch.decode):
            return
        arr, idx = self.counters.array, self.idx
        arr[idx["batch_steps"]] += 1
        arr[idx["batch_items"]] += batch.prefill + batch.decode
        self.personality.on_batch(batch, now_ns)
        batch.reset()

    def record_send(self, due_ns: int) -> None:
        lag = time.monotonic_ns() - due_ns
        arr = self.counters.array
        arr[self.i_lag_sum] += lag
        arr[self.i_lag_count] += 1
        if lag > arr[self.i_lag_max]:
            arr[self.i_lag_max] = lag

    def handle(self, conn: Connection, request: Request) -> None:
        now = request.received_ns
        personality = self.personality
        if self.faults.slow_start_s and now - self.started_ns < self.faults.slow_start_s * 1e9 \
                and request.path != "/metrics":
            personality.respond_error(conn, 503, "injected fault: the server is still starting")
            return
        if self.config.api_key is not None and request.path.startswith("/v1/"):
            if request.headers.get("authorization") != f"Bearer {self.config.api_key}":
                personality.respond_error(conn, 401, "Unauthorized")
                return
        handler = self.routes.get((request.method, request.path))
        if handler is not None:
            handler(conn, request)
        elif request.method == "POST" and request.path in self.generation_paths:
            self._completions(conn, request, now, self.generation_paths[request.path])
        elif request.path in self.paths:
            personality.respond_error(conn, 405, "Method Not Allowed")
        else:
            personality.respond_error(conn, 404, f"Not Found: {request.path}")

    def _completions(self, conn: Connection, request: Request, now: int, chat: bool) -> None:
        """POST /v1/completions (chat False) or /v1/chat/completions (chat True)."""
        personality = self.personality
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            exc = personality.bad_json()
            personality.respond_error(conn, exc.status, str(exc), exc.body)
            return
        if not chat and self.config.text_prompts_only and isinstance(body, dict) \
                and isinstance(body.get("prompt"), list):
            personality.respond_error(conn, 400, "this server takes text prompts only: send \"prompt\" as a string, "
                                                 "not token ids (loadgen emulate --text-prompts-only)")
            return
        try:
            params = (personality.parse_chat_request if chat else personality.parse_request)(body, request.headers)
        except RequestRejected as exc:
            personality.respond_error(conn, exc.status, str(exc), exc.body)
            return
        if self.prefix_cache is not None:
            self._look_up_prefix(body, params)
        fault = draw(self.faults, self.fault_rng, params.max_tokens) if self.faults.any_per_request else NO_FAULT
        if fault.status is not None:
            personality.respond_error(conn, fault.status, f"injected fault: HTTP {fault.status}")
            return
        arr, idx = self.counters.array, self.idx
        arr[idx["requests_total"]] += 1
        arr[idx["requests_running"]] += 1
        arr[idx["prompt_tokens"]] += params.prompt_tokens
        prompt = body.get("prompt") if not chat and params.return_token_ids else None
        gen = Generation(self, conn, params, now, fault, prompt if isinstance(prompt, list) else None)
        if params.stream:
            conn.begin_stream()
        self.running += 1
        if self.running >= len(self.step_ns_by_running):
            self._grow_step_table(2 * self.running)
        self.stepper.schedule(gen.due, gen.step)

    def _look_up_prefix(self, body: dict, params: GenerationParams) -> None:
        """--prefix-cache: the request's cached tokens (0 where it opts out), counted server-wide."""
        assert self.prefix_cache is not None, "called only with --prefix-cache"
        identity = self.personality.cache_identity(body)
        units = prompt_units(body) if identity is not None else None
        params.cached_tokens = 0 if identity is None or units is None else self.prefix_cache.admit(units, *identity)
        self.counters.array[self.idx["prefix_cache_hits"]] += params.cached_tokens


def _replayed(body: bytes):
    """A route that answers with a recorded body: Prometheus text, else JSON."""
    content_type = "application/json" if body.lstrip()[:1] in (b"{", b"[") else "text/plain; version=0.0.4"

    def answer(conn: Connection, request: Request) -> None:
        conn.respond(200, body, content_type)
    return answer


async def _serve_worker(config: EmulatorConfig, counters: Counters, worker: int, sock: socket.socket,
                        listening: Callable[[], object]) -> None:
    counters.row = worker
    loop = asyncio.get_running_loop()
    app = App(config, counters, worker)
    accept_connections(sock, loop, app.handle, app.connections.add)
    listening()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if config.faults.restart_after_s is not None:
        port = sock.getsockname()[1]
        await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=config.faults.restart_after_s)
        if not stop.is_set():
            # A crash and restart: every connection dropped, the port closed for a while, then open again.
            loop.remove_reader(sock.fileno())
            sock.close()
            for conn in list(app.connections):
                conn.reset()
            await asyncio.sleep(config.faults.restart_down_s)
            sock = _listening_socket(config.host, port)
            sock.listen(4096)
            accept_connections(sock, loop, app.handle, app.connections.add)
    await stop.wait()
    loop.remove_reader(sock.fileno())
    sock.close()


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _run_loop(coro) -> None:
    try:
        import uvloop
        uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(coro)


def _worker_main(config: EmulatorConfig, counters: Counters, worker: int, port: int,
                 ready: multiprocessing.synchronize.Event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    sock = _listening_socket(config.host, port)
    sock.listen(4096)
    _run_loop(_serve_worker(config, counters, worker, sock, ready.set))


def serve(config: EmulatorConfig, on_ready=None) -> None:
    """Serve until SIGINT/SIGTERM. Workers share the port through SO_REUSEPORT, so the kernel spreads
    connections over them; `on_ready(port)` is called once every worker listens."""
    counters = Counters(config.workers, config.draft_len, gauges=PERSONALITIES[config.engine].gauges)
    # Bound but never listening: it only reserves the port (also port 0 -> a free one) and so
    # receives no connections.
    reserve = _listening_socket(config.host, config.port)
    port = reserve.getsockname()[1]
    if config.workers == 1:
        reserve.listen(4096)
        _run_loop(_serve_worker(config, counters, 0, reserve, lambda: on_ready and on_ready(port)))
        return
    ctx = multiprocessing.get_context("fork")
    events = [ctx.Event() for _ in range(config.workers)]
    procs = [ctx.Process(target=_worker_main, args=(config, counters, w, port, events[w]), daemon=True)
             for w in range(config.workers)]
    for p in procs:
        p.start()
    for event, proc in zip(events, procs):
        while not event.wait(0.1):
            if not proc.is_alive():
                raise RuntimeError(f"emulator worker exited with code {proc.exitcode}")
    if on_ready:
        on_ready(port)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    while not stop and all(p.is_alive() for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM
    for p in procs:
        p.join(5)
    reserve.close()
