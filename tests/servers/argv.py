"""Reading the command line a fake engine was started with (tests/servers/fakes record their argv)."""

from __future__ import annotations

import json


def draft_length(argv: list[str]) -> int:
    """What the fake vLLM was told: num_speculative_tokens of --speculative-config, 0 without one."""
    if "--speculative-config" not in argv:
        return 0
    return json.loads(argv[argv.index("--speculative-config") + 1])["num_speculative_tokens"]


def without(argv: list[str], flags: set[str]) -> list[str]:
    """ARGV without these flags and their values."""
    return [a for i, a in enumerate(argv) if a not in flags and not (i and argv[i - 1] in flags)]
