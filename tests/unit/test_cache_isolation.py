"""--cache-isolation's request field and --unique-prefix's ids, as the sender adds them."""

from pathlib import Path

import numpy as np
import orjson

from loadgen.config import RunConfig
from loadgen.engines import get_adapter
from loadgen.sender import _isolation_splice, _UniquePrefix
from loadgen.workloads import load_tokenizer


def config(**kwargs) -> RunConfig:
    return RunConfig(url="http://127.0.0.1:1", output_dir=Path("out"), num_requests=1, **kwargs)


def test_a_salt_per_conversation_and_run_or_the_opt_out():
    body = orjson.dumps({"model": "m", "prompt": [1, 2, 3]})
    assert _isolation_splice(get_adapter("vllm"), config()) is None  # not asked for
    salt = _isolation_splice(get_adapter("vllm"), config(cache_isolation=True))
    other_run = _isolation_splice(get_adapter("sglang"), config(cache_isolation=True))
    assert salt is not None and other_run is not None
    first, second = orjson.loads(salt(body, 7)), orjson.loads(salt(body, 8))
    assert first["prompt"] == [1, 2, 3] and first["cache_salt"] != second["cache_salt"]
    assert orjson.loads(salt(body, 7))["cache_salt"] == first["cache_salt"]  # the conversation's turns share it
    assert orjson.loads(other_run(body, 7))["cache_salt"] != first["cache_salt"]  # another run does not
    opt_out = _isolation_splice(get_adapter("llamacpp"), config(cache_isolation=True))
    assert opt_out is not None and orjson.loads(opt_out(body, 7))["cache_prompt"] is False
    assert _isolation_splice(get_adapter("trtllm"), config(cache_isolation=True)) is None


def test_a_unique_prefix_after_the_bos_decodes_to_its_run_and_conversation():
    tokenizer = load_tokenizer(None)
    unique, other_run = _UniquePrefix(tokenizer), _UniquePrefix(tokenizer)
    ids = np.asarray([tokenizer.bos_token_id, *tokenizer.encode("Hello there")], dtype=np.int32)
    first, second = unique.insert(ids, 1), unique.insert(ids, 2)
    assert first[0] == tokenizer.bos_token_id and first[-ids.size + 1:].tolist() == ids[1:].tolist()
    assert first.tolist() != second.tolist()  # another conversation, another prefix
    assert unique.insert(ids, 1).tolist() == first.tolist()  # the conversation's turns share it
    assert other_run.insert(ids, 1)[:-ids.size + 1].tolist() != first[:-ids.size + 1].tolist()
    text = tokenizer.decode(first[1:-ids.size + 1].tolist()).replace(" ", "")
    assert text.startswith("1") and len(text.strip()) == 9  # the conversation, then 8 hex digits of the run
    no_bos = np.asarray(tokenizer.encode("Hello there"), dtype=np.int32)
    assert unique.insert(no_bos, 1)[-no_bos.size:].tolist() == no_bos.tolist()


def test_conversations_differ_within_the_first_cache_block():
    """A prefix cache keys blocks by everything before them: where the run's token filled the first
    block, every conversation of the run would share it (the emulator's 16-token blocks hit 18 %).
    The conversation's number comes first, so two conversations differ in their first 16 ids."""
    tokenizer = load_tokenizer(None)
    unique = _UniquePrefix(tokenizer)
    ids = np.asarray([tokenizer.bos_token_id, *tokenizer.encode("Hello there, a long shared prompt")], dtype=np.int32)
    firsts = {tuple(unique.insert(ids, conversation)[:16].tolist()) for conversation in range(40)}
    assert len(firsts) == 40
