"""loadgen templates and tokenizes prompts itself and sends ids; these must be the very ids that
llama-server would make of the same conversation (its /apply-template, then /tokenize as its
chat endpoint does: BOS added, special tokens parsed), or a benchmark measures other prompts.

Wire facts (llama.cpp tools/server/server-context.cpp, server-common.cpp, common/chat.cpp):
- POST /apply-template takes a chat-completions body ({"messages": [...], "chat_template_kwargs":
  {...}}) and answers {"prompt": text}. When the vocab adds a BOS (Llama 3 does), a BOS written by
  the template is cut from the text, because the chat endpoint tokenizes with add_special=true.
- Every template gets `date_string` = the server's today, so Llama-3.1's system block says
  "Today Date: <today>" where transformers' rendering keeps the template's "26 Jul 2024": the
  comparisons pin date_string to the template default.
- POST /tokenize {"content": text, "add_special": false, "parse_special": true} -> {"tokens": [ids]}.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.request
from pathlib import Path

import pytest

from loadgen.workloads import SAMPLE_PATH, load_tokenizer

TEMPLATE_DATE = "26 Jul 2024"  # the Llama-3.1 template's own default for date_string
BOS = "<|begin_of_text|>"

CONVERSATIONS = {
    "system_user": [{"role": "system", "content": "You are a terse assistant. Answer in one sentence."},
                    {"role": "user", "content": "Why is the sky blue?"}],
    "user_only": [{"role": "user", "content": "Write a haiku about speculative decoding."}],
    "multi_turn": [{"role": "user", "content": "Name three prime numbers."},
                   {"role": "assistant", "content": "2, 3 and 5."},
                   {"role": "user", "content": "And their sum?"}],
    "system_multi_turn": [{"role": "system", "content": "Reply in French."},
                          {"role": "user", "content": "Hello!"},
                          {"role": "assistant", "content": "Bonjour !"},
                          {"role": "user", "content": "How are you?"}],
    "non_ascii": [{"role": "user", "content": "Grüß dich! 你好，世界。Привет, как дела? こんにちは 🦙🚀 "
                                              "naïve café — «quotes» … ½ ∑ x² ≠ y"}],
    "code": [{"role": "user", "content": "Fix this:\n\n```python\ndef f(xs):\n\tfor i in range(len(xs)):\n"
                                         "        if xs[i] == None: return -1  \n    return {'k': [1, 2]}\n```\n"
                                         "and `SELECT * FROM t WHERE a<>b;` too."}],
    "whitespace_edges": [{"role": "user", "content": "\n\n   padded question?   \n"},
                         {"role": "assistant", "content": "  padded answer \t"},
                         {"role": "user", "content": "again\r\n"}],
    "special_looking": [{"role": "user", "content": "What does <|eot_id|> mean, and <|not_a_token|>?"}],
}

TEXTS = [
    "Hello world",
    "",
    " leading space, and trailing ",
    "   \n\n\t mixed   whitespace\n\n\n",
    "don't, WE'LL, they're, I'M",
    "3.14159 + 1234567890 = 1234567893.14159",
    "Grüß dich! 你好，世界 🦙 — naïve",
    "def f(x):\n    return x ** 2  # square\n",
    "<|begin_of_text|>starts with BOS",
    "a<|eot_id|>b",
    "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|reserved_special_token_5|>",
    "<|not_a_token|> <|eot_id",
    "<s></s>[INST] <<SYS>>",
]


def _post(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _server_chat_ids(url: str, messages: list[dict], date: str | None = TEMPLATE_DATE) -> tuple[str, list[int]]:
    """The server's own prompt text and ids for a chat, as its /v1/chat/completions makes them."""
    body: dict = {"messages": messages}
    if date is not None:
        body["chat_template_kwargs"] = {"date_string": date}
    prompt = _post(url, "/apply-template", body)["prompt"]
    return prompt, _post(url, "/tokenize", {"content": prompt, "add_special": True})["tokens"]


@pytest.fixture(scope="module")
def server(llama_server_shared):
    return llama_server_shared()


@pytest.fixture(scope="module")
def tok(llama_tokenizer_dir: Path):
    return load_tokenizer(llama_tokenizer_dir)


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_chat_ids_match_server(server, tok, name):
    messages = CONVERSATIONS[name]
    prompt, server_ids = _server_chat_ids(server.url, messages)
    ours = tok.chat_ids(messages)
    assert tok.render(messages) == BOS + prompt  # the server cut the template's BOS; tokenizing adds it
    assert ours == server_ids
    assert ours[0] == tok.bos_token_id and ours.count(tok.bos_token_id) == 1  # exactly one BOS


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_server(server, tok, text):
    assert tok.encode(text) == _post(server.url, "/tokenize", {"content": text})["tokens"]


def test_sample_workload_matches_server(server, tok):
    """Every prompt of the shipped sample workload, first turns and two-turn conversations."""
    rows = [json.loads(line) for line in Path(SAMPLE_PATH).read_text(encoding="utf-8").splitlines() if line.strip()]
    assert rows
    for row in rows:
        messages = [{"role": "user", "content": row["turns"][0]}]
        for turn in row["turns"][1:]:
            messages += [{"role": "assistant", "content": "A placeholder reply."}, {"role": "user", "content": turn}]
        assert tok.chat_ids(messages) == _server_chat_ids(server.url, messages)[1], row["id"]


def test_server_counts_the_same_prompt_tokens(server, tok):
    """End to end: our ids sent as a /v1/completions prompt are taken as they are (no BOS added),
    and the server's own chat endpoint makes a prompt of the same length."""
    messages = CONVERSATIONS["system_user"]
    ids = tok.chat_ids(messages)
    done = _post(server.url, "/v1/completions", {"prompt": ids, "max_tokens": 1, "temperature": 0})
    assert done["usage"]["prompt_tokens"] == len(ids)
    chat = _post(server.url, "/v1/chat/completions", {"messages": messages, "max_tokens": 1, "temperature": 0,
                                                      "chat_template_kwargs": {"date_string": TEMPLATE_DATE}})
    assert chat["usage"]["prompt_tokens"] == len(ids)


def test_server_dates_the_llama31_system_block_today(server, tok):
    """Documents a difference: without date_string, llama-server renders today's date into the
    Llama-3.1 system block ("%d %b %Y", local time); transformers keeps the template's default.
    So loadgen's ids equal the server's chat ids only up to that date line (same length, as a
    rule: one date tokenizes like another)."""
    messages = CONVERSATIONS["user_only"]
    prompt, _ = _server_chat_ids(server.url, messages, date=None)
    found = re.search(r"Today Date: (\d{2} \w{3} \d{4})\n", prompt)
    assert found, prompt
    served = dt.datetime.strptime(found.group(1), "%d %b %Y").date()
    assert abs((served - dt.date.today()).days) <= 1
    assert f"Today Date: {TEMPLATE_DATE}" in tok.render(messages)
