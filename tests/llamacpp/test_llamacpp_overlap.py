"""--output-ids against the REAL llama-server with n-gram (prompt-lookup) drafting: the ids loadgen
journals from `__verbose.tokens` are the ones llama-server itself returns for the same greedy
request (its native /completion with return_tokens), and the report's overlap is computed for them."""

import io
import json
import urllib.request

from rich.console import Console

from loadgen.config import RunConfig
from loadgen.records import read_journal
from loadgen.run import run

MAX_TOKENS = 16
#: a repetitive prompt (a short sentence's Llama-3 ids, eight times) and two plain ones, BOS first
PROMPTS = [[128000] + [791, 4062, 374, 264, 1296, 315, 279, 1917] * 8, [128000, 9906, 1917, 11, 1268, 527, 499],
           [128000, 40, 1093, 311, 1304, 264, 3363, 922, 279, 9581]]
NGRAM = ("--spec-type", "ngram-simple", "--spec-draft-n-max", "4")


def native_tokens(url: str, prompt: list[int]) -> list[int]:
    """The same greedy request on llama-server's own /completion, which returns the ids it generated."""
    body = {"prompt": prompt, "n_predict": MAX_TOKENS, "temperature": 0, "ignore_eos": True, "return_tokens": True}
    request = urllib.request.Request(f"{url}/completion", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())["tokens"]


def test_output_ids_are_llama_servers_own_and_scored(llama_server_shared, tmp_path):
    server = llama_server_shared(spec_rates=None, draft_n=0, parallel=1, extra_args=NGRAM)
    workload = tmp_path / "w.jsonl"
    workload.write_text("".join(json.dumps({"prompt_token_ids": p, "category": f"c{i}"}) + "\n"
                                for i, p in enumerate(PROMPTS)))
    out = tmp_path / "out"
    report = run(RunConfig(url=server.url, output_dir=out, workload=str(workload), num_requests=len(PROMPTS),
                           concurrency=1, max_tokens=MAX_TOKENS, temperature=0.0, output_ids=True, progress=False,
                           plots=False), Console(file=io.StringIO(), width=120)).to_json()
    assert report["config"]["engine"] == "llamacpp" and report["summary"]["requests_completed"] == len(PROMPTS)
    records = sorted(read_journal(out / "requests.jsonl"), key=lambda r: r.category)
    short = 0
    for record, prompt in zip(records, PROMPTS, strict=True):
        native = native_tokens(server.url, prompt)
        assert record.output_tokens == len(native) == MAX_TOKENS
        # in order, each id llama-server generated, less those of tokens that ended inside a UTF-8
        # character: the stream carries their text with the next token's chunk, and only that one's id
        remaining = iter(native)
        assert all(token in remaining for token in record.output_ids), record.category
        short += len(record.output_ids) < len(native)
    overlap = report["overlap"]
    assert overlap["available"] and overlap["requests"] == len(PROMPTS)
    assert overlap["requests_missing_ids"] == short
    for category in overlap["categories"].values():
        assert len(category["precisions"]) == 4 and all(0.0 <= p <= 1.0 for p in category["precisions"])
