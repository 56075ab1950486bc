"""The sender in simulated time: multi-turn templating, and the times it keeps (scheduled, sent,
end; client queueing; the waits between retries and after refused connections), exactly."""

import asyncio
from pathlib import Path

import numpy as np
import orjson
import pytest

from loadgen.config import RunConfig
from loadgen.engines import get_adapter
from loadgen.scheduler import closed_loop, open_loop
from loadgen.sender import Sender
from loadgen.transport import ExchangeError
from loadgen.workloads import BuildOptions, Conversation, Prompt, build_prompts, load_tokenizer

from ..clock import FakeClock

MS = 1_000_000
HTTP_500 = ExchangeError("http_status", "HTTP 500: boom", 500)
REFUSED = ExchangeError("connect", "connection refused")


class FakeClient:
    """Streams a reply per request in vLLM's format in simulated time, one word each `step_ns`,
    over `connections` connections (a request waits for a free one before it is sent, as with the
    real pool). `errors` maps a request's index to the error it fails with, once sent."""

    def __init__(self, clock: FakeClock, replies=(), *, errors=None, step_ns=10 * MS, connections=100):
        self.clock, self.replies, self.errors, self.step_ns = clock, list(replies), errors or {}, step_ns
        self.connections = asyncio.Semaphore(connections)
        self.bodies, self.sent = [], []

    async def stream(self, path, body, on_event, on_sent, category=""):
        async with self.connections:
            index = len(self.bodies)
            self.bodies.append(orjson.loads(body))
            self.sent.append(self.clock.now_ns())
            on_sent(self.clock.now_ns())
            if index in self.errors:
                raise self.errors[index]
            words = self.replies[index].split(" ") if index < len(self.replies) else ["ok"]
            for i, word in enumerate(words):
                await self.clock.sleep_until(self.clock.now_ns() + self.step_ns)
                finish = "stop" if i == len(words) - 1 else None  # engines close a stream with a finish reason
                on_event(self.clock.now_ns(), orjson.dumps({"choices": [{"text": (" " if i else "") + word,
                                                                         "finish_reason": finish}],
                                                            "usage": {"completion_tokens": i + 1}}))


def sender_for(client: FakeClient, tmp_path: Path, records: list, tokenizer=None, **config) -> Sender:
    config = RunConfig(url="http://x", output_dir=tmp_path, num_requests=1, **config)
    return Sender(client, get_adapter("vllm"), "m", config, tokenizer,
                  lambda record, done: records.append((record, done)), clock=client.clock)


def single_turn(i: int) -> Prompt:
    return Prompt(f"p{i}", np.arange(8, dtype=np.int32))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(None)


def run_conversation(tmp_path: Path, client: FakeClient, tokenizer):
    (prompt,) = build_prompts([Conversation("c", "chat", ("hello world", "tell me more", "why"))], tokenizer,
                              BuildOptions())
    records = []
    sender = sender_for(client, tmp_path, records, tokenizer)
    client.clock.run(sender.send(prompt, 0, warmup=False))
    assert [done for _, done in records] == [False] * (len(records) - 1) + [True]  # only the last ends it
    return prompt, [record for record, _ in records]


def test_replies_become_context_for_the_next_turn(tmp_path, tokenizer):
    client = FakeClient(FakeClock(), ["the sky is blue", "it scatters light", "because"])
    prompt, records = run_conversation(tmp_path, client, tokenizer)
    assert [r.turn for r in records] == [0, 1, 2] and all(r.ok for r in records)
    assert client.bodies[0]["prompt"] == prompt.token_ids.tolist()
    expected_turn2 = tokenizer.chat_ids([{"role": "user", "content": "hello world"},
                                         {"role": "assistant", "content": "the sky is blue"},
                                         {"role": "user", "content": "tell me more"},
                                         {"role": "assistant", "content": "it scatters light"},
                                         {"role": "user", "content": "why"}])
    assert client.bodies[2]["prompt"] == expected_turn2
    assert records[2].prompt_tokens == len(expected_turn2)
    assert [r.output_tokens for r in records] == [4, 3, 1]


def test_a_later_turn_is_scheduled_the_moment_the_reply_it_answers_ends(tmp_path, tokenizer):
    client = FakeClient(FakeClock(), ["the sky is blue", "it scatters light", "because"])
    _, records = run_conversation(tmp_path, client, tokenizer)
    assert [(r.scheduled_ns, r.sent_ns, r.end_ns) for r in records] == [(0, 0, 40 * MS), (40 * MS, 40 * MS, 70 * MS),
                                                                         (70 * MS, 70 * MS, 80 * MS)]


def test_a_failed_turn_ends_the_conversation(tmp_path, tokenizer):
    client = FakeClient(FakeClock(), ["a b", "c", "d"], errors={1: HTTP_500})
    _, records = run_conversation(tmp_path, client, tokenizer)
    assert [(r.turn, r.ok) for r in records] == [(0, True), (1, False)]
    assert records[1].error.kind == "http_status" and len(client.bodies) == 2


def test_client_queueing_is_the_wait_from_the_scheduled_time_to_the_send(tmp_path):
    """One connection and 50 ms replies against arrivals 10 ms apart: the sender falls behind, and
    TTFT still counts from the schedule while the wait shows as sent - scheduled."""
    clock, records = FakeClock(), []
    client = FakeClient(clock, ["a b c d e"] * 3, connections=1)
    sender = sender_for(client, tmp_path, records)

    async def send(prompt, scheduled_ns):
        await sender.send(prompt, scheduled_ns, warmup=False)

    assert clock.run(open_loop((single_turn(i) for i in range(3)), [0, 10 * MS, 20 * MS], 0, send, clock=clock)) == 3
    records = sorted((r for r, _ in records), key=lambda r: r.scheduled_ns)
    assert [r.scheduled_ns for r in records] == [0, 10 * MS, 20 * MS]
    assert [r.sent_ns - r.scheduled_ns for r in records] == [0, 40 * MS, 80 * MS]
    assert [r.end_ns for r in records] == [50 * MS, 100 * MS, 150 * MS]
    assert [r.first_ns - r.scheduled_ns for r in records] == [10 * MS, 50 * MS, 90 * MS]  # TTFT includes the queue


def test_retries_wait_a_jittered_doubling_backoff_and_keep_the_first_scheduled_time(tmp_path):
    clock, records = FakeClock(), []
    client = FakeClient(clock, errors={0: HTTP_500, 1: HTTP_500})
    clock.run(sender_for(client, tmp_path, records, retries=2).send(single_turn(0), 0, warmup=False))
    ((record, done),) = records  # the failed attempts are not requests of their own
    assert done and record.ok and record.retried == ["http_status/500", "http_status/500"]
    assert record.scheduled_ns == 0 and record.sent_ns == client.sent[2]
    first_wait, second_wait = np.diff(client.sent)
    assert 250 * MS <= first_wait < 500 * MS and 500 * MS <= second_wait < 1_000 * MS  # 0.5 s, 1 s; jitter x 0.5-1


def test_refused_connections_pace_the_slot_50_ms_doubling_to_1_s(tmp_path):
    clock, records = FakeClock(), []
    client = FakeClient(clock, errors={i: REFUSED for i in range(7)})
    sender = sender_for(client, tmp_path, records)

    async def send(prompt, scheduled_ns):
        await sender.send(prompt, scheduled_ns, warmup=False)

    assert clock.run(closed_loop((single_turn(i) for i in range(8)), 1, send, limit=8, clock=clock)) == 8
    assert np.diff(client.sent).tolist() == [50 * MS, 100 * MS, 200 * MS, 400 * MS, 800 * MS, 1_000 * MS, 1_000 * MS]
    assert [r.ok for r, _ in records] == [False] * 7 + [True]  # every refusal recorded, none retried
    assert clock.now_ns() == client.sent[-1] + 10 * MS  # a success resets the pacing: no wait after it


class FakeChatClient(FakeClient):
    """The same replies as vLLM's chat chunks (delta.content, continuous usage), recording the route."""

    async def stream(self, path, body, on_event, on_sent, category=""):
        self.paths = [*getattr(self, "paths", []), path]

        def as_chat(t_ns, data):
            obj = orjson.loads(data)
            choice = obj["choices"][0]
            on_event(t_ns, orjson.dumps({"choices": [{"delta": {"content": choice["text"]},
                                                      "finish_reason": choice["finish_reason"]}],
                                         "usage": obj["usage"] | {"prompt_tokens": 3}}))
        await super().stream(path, body, as_chat, on_sent, category)


def test_chat_sends_messages_and_the_streamed_reply_as_the_assistants(tmp_path, tokenizer):
    client = FakeChatClient(FakeClock(), ["the sky is blue", "because"])
    (prompt,) = build_prompts([Conversation("c", "chat", ("hello world", "why"))], tokenizer,
                              BuildOptions(keep_messages=True))
    records = []
    sender = sender_for(client, tmp_path, records, tokenizer, endpoint="chat")
    client.clock.run(sender.send(prompt, 0, warmup=False))
    assert client.paths == ["/v1/chat/completions"] * 2
    assert client.bodies[0]["messages"] == [{"role": "user", "content": "hello world"}]
    assert client.bodies[1]["messages"] == [{"role": "user", "content": "hello world"},
                                            {"role": "assistant", "content": "the sky is blue"},
                                            {"role": "user", "content": "why"}]
    assert "prompt" not in client.bodies[1]
    record = records[1][0]  # the local template's count of the second turn, against the server's
    assert record.prompt_tokens == len(tokenizer.chat_ids(client.bodies[1]["messages"]))
    assert record.server_prompt_tokens == 3 and records[0][0].output_tokens == 4

