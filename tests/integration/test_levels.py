"""`loadgen run --concurrency-levels` against an emulator whose draft length follows the batch
(--draft-schedule 1-7:3,8-:0, vLLM's num_speculative_tokens_per_batch_size): the per-level client
AL is the configured truth at each level and the collapse is named where drafting stops."""

import math

from loadgen.analysis.levels import COLLAPSE_AL_CHANGE

ACCEPT = (0.8, 0.6, 0.4)
#: tokens per step at K = 3: 1 + 0.8 + 0.8*0.6 + 0.8*0.6*0.4
K3_AL = 1 + 0.8 + 0.48 + 0.192
#: their spread per step: P(1..4 tokens) = 0.2, 0.32, 0.288, 0.192
K3_SD = math.sqrt(sum(p * (n - K3_AL) ** 2 for n, p in zip((1, 2, 3, 4), (0.2, 0.32, 0.288, 0.192), strict=True)))


def test_levels_show_the_client_al_of_each_batch_and_the_collapse_at_8(emulator, run_loadgen, tmp_path):
    emu = emulator("--ttft-ms", "5", "--step-ms", "10", "--accept", ",".join(map(str, ACCEPT)),
                   "--draft-schedule", "1-7:3,8-:0", "--seed", "1")
    report, text = run_loadgen(url=emu.url, concurrency_levels="1,4,8,16", level_duration_s=3.0, max_tokens=256,
                               workers=2)
    levels = report["levels"]
    rows = {row["concurrency"]: row for row in levels["levels"]}
    assert list(rows) == [1, 4, 8, 16] and [row["start_s"] for row in levels["levels"]] == [0, 3, 6, 9]
    # every request accounted for: each in the level of its scheduled time, all of them finished
    summary = report["summary"]
    assert sum(row["requests"] for row in rows.values()) == summary["requests_sent"] == summary["requests_completed"]
    assert all(row["requests"] >= row["concurrency"] for row in rows.values())  # each level's slots all sent
    # K = 3 at 1 and 4 running: AL within 4 standard errors of the truth (a few hundred steps: about
    # +-0.24 at level 1), plus 0.03 for the last step of each request, whose draft max_tokens cuts short
    for c in (1, 4):
        steps = rows[c]["steps"]
        assert steps > 200, rows[c]
        assert abs(rows[c]["acceptance_length"] - K3_AL) < 4 * K3_SD / math.sqrt(steps) + 0.03, rows[c]
    # K = 0 from 8 running: every step one token. Not exactly 1.0: between a request's end and its
    # slot's next arrival the batch is one short (7) for a moment, and the steps of the others then
    # draft; at 16 that takes nine slots between requests at once. Measured 1.00x; 1.05 leaves room
    # for the longer gaps of a busy machine
    for c in (8, 16):
        assert rows[c]["steps"] > 1000 and 1.0 <= rows[c]["acceptance_length"] < 1.05, rows[c]
    collapse = levels["collapse"]
    assert (collapse["concurrency"], collapse["previous_concurrency"], collapse["metric"]) == (8, 4,
                                                                                            "acceptance_length")
    assert collapse["threshold"] == COLLAPSE_AL_CHANGE and collapse["change"] < -0.5
    assert report["workers"]["count"] == 2 and report["config"]["concurrency_levels"] == [1, 4, 8, 16]
    assert "Per load level" in text and "collapse at concurrency 8: client AL" in text
