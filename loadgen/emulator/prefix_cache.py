"""`loadgen emulate --prefix-cache`: a prefix cache the emulated engines report as the real ones do.

Each worker process keeps an LRU of prompt blocks (block_tokens units each), keyed on a chain
hash: a block's key is the hash of the previous block's key and its own units, so a block hits
only where the whole prefix up to it was seen before, as vLLM's block hashes
(vllm/v1/core/kv_cache_utils.py, hash_block_tokens) and SGLang's radix tree match. The units are
the prompt's token ids, or, for a text prompt (or a chat body's message contents), its words: the
emulator has no tokenizer, and counts a text's tokens as its words (engine.prompt_token_count).

A salt (vLLM's and SGLang's `cache_salt`) keys the first block, so requests with different salts
share nothing. Like the engines, a request never hits its last unit: vLLM caps a hit at
num_tokens - 1 (vllm/v1/core/kv_cache_manager.py, get_computed_blocks: "we must recompute the
last token to obtain logits"), and so does this cache, then rounds down to whole blocks.

Hits shorten the prefill: the server scales the request's time to first token by its uncached
share of the prompt (server.py, Generation). The counts go where each personality reports them.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PrefixCache", "prompt_units", "DEFAULT_CAPACITY_BLOCKS"]

#: blocks kept per worker before the least recently used is evicted (a million 16-token blocks'
#: worth of keys is far more than a test sends; eviction is there so a long run stays bounded)
DEFAULT_CAPACITY_BLOCKS = 1 << 16


def prompt_units(body: dict) -> list | None:
    """What a request's prompt is made of for the cache: its token ids, else its text's words (a
    completions prompt, or a chat body's message contents in order); None when it has neither."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return prompt
    if isinstance(prompt, str):
        return prompt.split()
    messages = body.get("messages")
    if isinstance(messages, list):
        words: list[str] = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                words += content.split()
        return words or None
    return None


class PrefixCache:
    """One worker's cache of prompt blocks, least recently used evicted first."""

    def __init__(self, block_tokens: int, capacity_blocks: int = DEFAULT_CAPACITY_BLOCKS) -> None:
        if block_tokens < 1 or capacity_blocks < 1:
            raise ValueError("a prefix cache needs blocks of at least 1 token and room for at least 1 block")
        self.block_tokens = block_tokens
        self._capacity = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def admit(self, units: list, salt: str | None = None) -> int:
        """The units of this prompt already cached (whole blocks, the last unit never), after which
        every whole block of it is cached: a later prompt sharing the prefix hits it."""
        size = self.block_tokens
        blocks = self._blocks
        key = hash(("salt", salt))
        hit_blocks = 0
        matching = True
        for start in range(0, len(units) - size + 1, size):
            key = hash((key, tuple(units[start:start + size])))
            if key in blocks:
                blocks.move_to_end(key)
                if matching:
                    hit_blocks += 1
            else:
                matching = False
                blocks[key] = None
                if len(blocks) > self._capacity:
                    blocks.popitem(last=False)
        return min(hit_blocks * size, ((len(units) - 1) // size) * size)
