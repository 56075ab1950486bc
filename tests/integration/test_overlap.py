"""--output-ids end to end against the built-in emulator's ground truth (its accept profile's `copy`
and `copy_gain`): a category that copies nothing has no 4-gram overlap, one that copies half its
8-id segments has the overlap that follows from that, and its AL follows the overlap exactly where
copying lifts acceptance (copy_gain > 0), not where it does not."""

import io
import json

import numpy as np
import pytest
from rich.console import Console

from loadgen.config import EmulatorSettings, RunConfig
from loadgen.records import read_journal
from loadgen.run import run

from .test_bad_input import assert_one_line_error, loadgen

ACCEPT = [0.8, 0.6, 0.4]
PROFILE = {"copying": {"accept": ACCEPT, "copy": 0.5, "copy_gain": 0.8},
           "copying_no_gain": {"accept": ACCEPT, "copy": 0.5, "copy_gain": 0.0},
           "default": ACCEPT}
PER_CATEGORY, MAX_TOKENS, PROMPT_LEN, SEGMENT = 60, 128, 512, 8
#: E[c_r] = copy for c_r ~ U(0, 2 copy); each copied segment holds SEGMENT - 3 whole 4-grams of the output's
#: MAX_TOKENS - 3 (the 3 that straddle two segments match only by chance)
EXPECTED_SHARE = 0.5 * (SEGMENT - 3) * (MAX_TOKENS / SEGMENT) / (MAX_TOKENS - 3)


@pytest.fixture(scope="module")
def copied_run(tmp_path_factory):
    """One run of 60 requests per category, each prompt 512 random ids of its own (so copied
    segments rarely share a 4-gram and clipping stays out of the expectation)."""
    folder = tmp_path_factory.mktemp("overlap")
    rng = np.random.default_rng(5)
    workload = folder / "w.jsonl"
    workload.write_text("".join(
        json.dumps({"prompt_token_ids": rng.integers(1000, 30000, PROMPT_LEN).tolist(), "category": category}) + "\n"
        for category in ("copying", "copying_no_gain", "plain") for _ in range(PER_CATEGORY)))
    profile = folder / "profile.json"
    profile.write_text(json.dumps(PROFILE))
    out = folder / "out"
    console = io.StringIO()
    report = run(RunConfig(url=None, output_dir=out, workload=str(workload), num_requests=3 * PER_CATEGORY,
                           concurrency=24, max_tokens=MAX_TOKENS, output_ids=True, progress=False, seed=7,
                           emulator=EmulatorSettings(ttft_ms=2, step_ms=1, accept_profile=str(profile))),
                 Console(file=console, width=160)).to_json()
    return report, list(read_journal(out / "requests.jsonl")), console.getvalue(), out


def test_every_output_id_is_journaled_and_scored(copied_run):
    report, records, console, _ = copied_run
    assert report["config"]["output_ids"] is True
    assert [len(r.output_ids) for r in records] == [r.output_tokens for r in records] == [MAX_TOKENS] * len(records)
    overlap = report["overlap"]
    assert overlap["available"] and overlap["requests"] == 3 * PER_CATEGORY
    assert "Prompt-output overlap" in console and "copying_no_gain" in console


def test_overlap_is_the_copied_share_and_none_without_copying(copied_run):
    categories = copied_run[0]["overlap"]["categories"]
    assert categories["plain"]["ngram_share"] < 0.01 and categories["plain"]["mean_overlap"] < 0.01
    assert categories["plain"]["verdict"].startswith("n-gram drafting unlikely")
    for name in ("copying", "copying_no_gain"):
        # c_r ~ U(0, 1): the mean of 60 requests' shares has a standard error of ~0.025
        assert categories[name]["ngram_share"] == pytest.approx(EXPECTED_SHARE, abs=0.08), name
        assert categories[name]["verdict"].startswith(("n-gram drafting likely", "n-gram drafting marginal"))


def test_al_follows_overlap_only_where_copying_lifts_acceptance(copied_run):
    categories = copied_run[0]["overlap"]["categories"]
    gain, no_gain = categories["copying"], categories["copying_no_gain"]
    assert gain["al_correlation"] > 0.6 and gain["al_slope"] > 0
    bins = gain["al_by_overlap"]
    assert bins[-1]["mean_acceptance_length"] > bins[0]["mean_acceptance_length"] + 0.4
    assert abs(no_gain["al_correlation"]) < 0.45  # 3.5 standard errors of r at 60 requests


def test_the_page_shows_the_overlap_picture_and_table(copied_run):
    out = copied_run[3]
    assert (out / "al_by_overlap.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = (out / "report.html").read_text()
    assert 'alt="al_by_overlap"' in page and "<h2>Prompt-output overlap</h2>" in page and "copying_no_gain" in page


def test_output_ids_on_an_engine_that_then_sends_no_text_refuse_a_multi_turn_workload(emulator, tmp_path):
    """TRT-LLM's detokenize false empties the text, which the default workload's second turns carry."""
    emu = emulator("--engine", "trtllm", "--ttft-ms", "5", "--step-ms", "2", "--accept", "")
    proc = loadgen("run", "--url", emu.url, "--workload", "sample", "-n", "2", "--output-ids", "--no-metrics",
                   "--no-progress", "--output-dir", str(tmp_path / "out"))
    assert_one_line_error(proc, "--output-ids", "trtllm", "multi-turn")
