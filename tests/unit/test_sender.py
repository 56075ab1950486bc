"""Multi-turn: each reply is appended as the assistant's message and the conversation re-templated."""

import asyncio
from pathlib import Path

import orjson

from loadgen.config import RunConfig
from loadgen.engines import get_adapter
from loadgen.sender import Sender
from loadgen.transport import ExchangeError
from loadgen.workloads import BuildOptions, Conversation, build_prompts, load_tokenizer


class FakeClient:
    """Streams a fixed reply per turn in vLLM's format; optionally fails one turn."""

    def __init__(self, replies, fail_turn=None):
        self.replies, self.fail_turn, self.bodies = replies, fail_turn, []

    async def stream(self, path, body, on_event, on_sent, category=""):
        turn = len(self.bodies)
        self.bodies.append(orjson.loads(body))
        on_sent(1)
        if turn == self.fail_turn:
            raise ExchangeError("http_status", "HTTP 500: boom", 500)
        words = self.replies[turn].split(" ")
        for i, _ in enumerate(words):
            text = (" " if i else "") + words[i]
            on_event(10 + i, orjson.dumps({"choices": [{"text": text, "finish_reason": None}],
                                           "usage": {"completion_tokens": i + 1}}))


def run_conversation(tmp_path: Path, client: FakeClient, tokenizer):
    (prompt,) = build_prompts([Conversation("c", "chat", ("hello world", "tell me more", "why"))], tokenizer,
                              BuildOptions())
    records = []
    config = RunConfig(url="http://x", output_dir=tmp_path, num_requests=1)
    sender = Sender(client, get_adapter("vllm"), "m", config, tokenizer,
                    lambda record, done: records.append((record, done)))
    asyncio.run(sender.send(prompt, 0, warmup=False))
    assert [done for _, done in records] == [False] * (len(records) - 1) + [True]  # only the last ends it
    return prompt, [record for record, _ in records]


def test_replies_become_context_for_the_next_turn(tmp_path):
    tokenizer = load_tokenizer(None)
    client = FakeClient(["the sky is blue", "it scatters light", "because"])
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


def test_a_failed_turn_ends_the_conversation(tmp_path):
    client = FakeClient(["a b", "c", "d"], fail_turn=1)
    _, records = run_conversation(tmp_path, client, load_tokenizer(None))
    assert [(r.turn, r.ok) for r in records] == [(0, True), (1, False)]
    assert records[1].error.kind == "http_status" and len(client.bodies) == 2
