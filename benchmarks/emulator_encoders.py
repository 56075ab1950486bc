"""CPU per chunk of the emulator's stream encoders (the emulator's hot path: one events() call per
chunk of every stream), per engine: /v1/completions, /v1/chat/completions, and chat with every
token streamed as reasoning. One token per chunk with continuous usage, the costliest common case.

    python benchmarks/emulator_encoders.py [--chunks 100000]
"""

from __future__ import annotations

import argparse
import time

from loadgen.emulator import llamacpp, sglang, trtllm, vllm
from loadgen.emulator.engine import GenerationParams

ENCODERS = {
    "vllm": (lambda p: vllm.StreamEncoder("cmpl-1", 1, p, "fp"),
             lambda p: vllm.ChatStreamEncoder("chatcmpl-1", 1, p, "fp")),
    "sglang": (lambda p: sglang.StreamEncoder("cmpl-1", 1, p), lambda p: sglang.ChatStreamEncoder("chatcmpl-1", 1, p)),
    "trtllm": (lambda p: trtllm.StreamEncoder("cmpl-1", 1, p, True),
               lambda p: trtllm.ChatStreamEncoder("chatcmpl-1", 1, p, True)),
    "llamacpp": (lambda p: llamacpp.StreamEncoder("cmpl-1", 1, p, "m"),
                 lambda p: llamacpp.ChatStreamEncoder("chatcmpl-1", 1, p, "m")),
}


def params(chat: bool, reasoning_tokens: int = 0) -> GenerationParams:
    return GenerationParams(model="m", prompt_tokens=1024, max_tokens=1 << 40, stream=True, include_usage=True,
                            continuous_usage=True, return_token_ids=False, ignore_eos=True, chat=chat,
                            reasoning_tokens=reasoning_tokens)


def ns_per_chunk(encoder, chunks: int) -> float:
    texts = [" word"]
    text = texts if encoder.per_token else " word"
    events = encoder.events
    started = time.perf_counter_ns()
    for i in range(1, chunks + 1):
        events(text, [], None, i, i)
    return (time.perf_counter_ns() - started) / chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    chunks = parser.parse_args().chunks
    print(f"{'engine':10} {'completions':>12} {'chat':>12} {'chat, reasoning':>16}   (ns per chunk)")
    for engine, (completion, chat) in ENCODERS.items():
        figures = (ns_per_chunk(completion(params(False)), chunks), ns_per_chunk(chat(params(True)), chunks),
                   ns_per_chunk(chat(params(True, reasoning_tokens=1 << 40)), chunks))
        print(f"{engine:10} {figures[0]:12.0f} {figures[1]:12.0f} {figures[2]:16.0f}")


if __name__ == "__main__":
    main()
