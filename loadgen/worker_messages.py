"""The messages between the parent and its load workers (workers.py; Ray actors, ray_workers.py),
each a small typed class, and their encoding, here and nowhere else.

Over one stream socket per worker the parent first sends a `WorkerSetup` (8-byte length +
pickle: it carries the RunConfig and the prompts), then both sides exchange one JSON array per
line, `[tag, field, ...]`, the fields in the order the class declares them:

    parent -> worker   Phase, Stop (no new requests), Cancel (those in flight too), ClockRequest
    worker -> parent   Ready; Begin as each request starts, Finished as it ends; PhaseDone;
                       ClockReading; Failed

A Ray actor opens its connection with a `Hello` (a JSON object, so that a driver of another
loadgen version can still read the version and say so).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

import orjson

from .records import RequestRecord
from .transport import ReadLag

if TYPE_CHECKING:
    from .config import RunConfig
    from .workers import Plan
    from .workloads import Prompt

__all__ = ["WorkerSetup", "Phase", "Stop", "Cancel", "ClockRequest", "Ready", "Begin", "Finished", "PhaseDone",
           "ClockReading", "Failed", "Message", "Hello", "encode", "decode", "encode_setup", "read_setup"]


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to run its share."""

    config: RunConfig
    url: str
    model: str
    engine: str
    plan: Plan
    #: the prompts the plan names, by index, for a worker on another machine (no workload cache
    #: there); None: the worker loads the workload from this machine's cache
    prompts: dict[int, Prompt] | None = None


def encode_setup(setup: WorkerSetup) -> bytes:
    blob = pickle.dumps(setup)
    return struct.pack("<Q", len(blob)) + blob


async def read_setup(reader: asyncio.StreamReader) -> WorkerSetup:
    (size,) = struct.unpack("<Q", await reader.readexactly(8))
    return pickle.loads(await reader.readexactly(size))


class _Fields:
    """A message whose fields travel as they are (JSON values), in their declared order."""

    __slots__: tuple[str, ...] = ()  # each message's dataclass(slots=True) lists its fields here
    tag: ClassVar[str]

    def to_wire(self) -> list:
        return [getattr(self, name) for name in self.__slots__]

    @classmethod
    def from_wire(cls, fields: list) -> Self:
        return cls(*fields)


@dataclass(frozen=True, slots=True)
class Phase(_Fields):
    """Run one phase. The times are on the worker's clock (the parent adds its offset)."""

    tag: ClassVar[str] = "phase"
    warmup: bool
    deadline_ns: int | None
    start_ns: int | None  # open loop: the first send time; None: closed loop, start now


@dataclass(frozen=True, slots=True)
class Stop(_Fields):
    """Send no new requests; those in flight finish."""

    tag: ClassVar[str] = "stop"


@dataclass(frozen=True, slots=True)
class Cancel(_Fields):
    """Cancel the requests in flight too."""

    tag: ClassVar[str] = "cancel"


@dataclass(frozen=True, slots=True)
class ClockRequest(_Fields):
    """Answer with a ClockReading at once: one round trip of the clock-offset measurement."""

    tag: ClassVar[str] = "clock?"


@dataclass(frozen=True, slots=True)
class Ready(_Fields):
    """Set up: prompts loaded, bodies serialized, connections open."""

    tag: ClassVar[str] = "ready"


@dataclass(frozen=True, slots=True)
class Begin(_Fields):
    """A request has started: what the parent needs to fail it (worker_lost) should the worker be lost."""

    tag: ClassVar[str] = "begin"
    request_id: int
    category: str
    sub_category: str
    turn: int
    prompt_tokens: int
    max_tokens: int
    scheduled_ns: int
    warmup: bool

    @classmethod
    def of(cls, r: RequestRecord) -> Begin:
        return cls(r.request_id, r.category, r.sub_category, r.turn, r.prompt_tokens, r.max_tokens, r.scheduled_ns,
                   r.warmup)


@dataclass(frozen=True, slots=True)
class Finished(_Fields):
    """A request has ended."""

    tag: ClassVar[str] = "record"
    record: RequestRecord
    conversation_done: bool  # its conversation's last turn (every request, unless multi-turn)
    in_flight: int  # the worker's requests still in flight

    def to_wire(self) -> list:
        return [self.record.to_json(), self.conversation_done, self.in_flight]

    @classmethod
    def from_wire(cls, fields: list) -> Finished:
        record, done, in_flight = fields
        return cls(RequestRecord.from_json(record), done, in_flight)


@dataclass(frozen=True, slots=True)
class PhaseDone(_Fields):
    """The phase is over; its read-lag histogram (how late the worker read its chunks)."""

    tag: ClassVar[str] = "phase_done"
    read_lag: ReadLag

    def to_wire(self) -> list:
        return [self.read_lag.to_json()]

    @classmethod
    def from_wire(cls, fields: list) -> PhaseDone:
        return cls(ReadLag.from_json(fields[0]))


@dataclass(frozen=True, slots=True)
class ClockReading(_Fields):
    tag: ClassVar[str] = "clock"
    monotonic_ns: int


@dataclass(frozen=True, slots=True)
class Failed(_Fields):
    """The worker cannot go on (its workload would not load, or a bug): the run fails with this."""

    tag: ClassVar[str] = "error"
    error: str


Message = Phase | Stop | Cancel | ClockRequest | Ready | Begin | Finished | PhaseDone | ClockReading | Failed
_BY_TAG: dict[str, type[Message]] = {cls.tag: cls for cls in (Phase, Stop, Cancel, ClockRequest, Ready, Begin,
                                                                Finished, PhaseDone, ClockReading, Failed)}


def encode(message: Message) -> bytes:
    """One line: [tag, field, ...]."""
    return orjson.dumps([message.tag, *message.to_wire()], option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def decode(line: bytes) -> Message:
    tag, *fields = orjson.loads(line)
    return _BY_TAG[tag].from_wire(fields)


@dataclass(frozen=True)
class Hello:
    """A Ray actor's first line to the driver: the run's token (so a stray connection is dropped),
    which share it is, and where it runs."""

    token: str | None
    index: int
    version: str | None
    node: str
    where: str

    def encode(self) -> bytes:
        return orjson.dumps(self) + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Hello:
        """Lenient: an empty line or another version's fields still give the token and version to check."""
        obj = orjson.loads(line or b"{}")
        return cls(obj.get("token"), obj.get("index", -1), obj.get("version"), obj.get("node", ""),
                   obj.get("where", ""))
