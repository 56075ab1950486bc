"""`loadgen compare`: speculative decoding against a baseline without it, where the emulator makes
the speedup known; and random inputs against real prompts where acceptance depends on the text."""

import subprocess
import sys

import orjson
import pytest

CATEGORIES = ("coding", "humanities", "math", "multilingual", "qa", "rag", "reasoning", "roleplay", "stem",
              "summarization", "writing")


def _loadgen(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "loadgen", *args, *(("--no-metrics", "--no-progress")
                                                                     if args[0] in ("run", "sweep") else ())],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_speedup_over_a_baseline_is_the_acceptance_length(emulator, tmp_path):
    plain = emulator("--ttft-ms", "5", "--step-ms", "10", "--accept", "")
    spec = emulator("--ttft-ms", "5", "--step-ms", "10", "--accept", "0.8,0.6,0.4")
    common = ("-c", "2,4", "-n", "16", "--max-tokens", "96", "--workload", "random")
    _loadgen("sweep", "--url", plain.url, "--output-dir", str(tmp_path / "base"), *common)
    _loadgen("sweep", "--url", spec.url, "--output-dir", str(tmp_path / "sd"), *common)
    proc = _loadgen("compare", str(tmp_path / "sd"), "--baseline", str(tmp_path / "base"), "--output-dir",
                    str(tmp_path / "cmp"))
    result = orjson.loads((tmp_path / "cmp" / "compare.json").read_bytes())
    points = result["runs"][str(tmp_path / "sd")]["points"]
    assert set(points) == {"2", "4"}
    for p in points.values():
        # same step time, AL tokens per step: TPOT and user TPS improve by the AL (1 + .8 + .48 + .192)
        assert p["tpot_speedup"] == pytest.approx(2.472, rel=0.1) and p["acceptance_length"] == pytest.approx(
            2.472, rel=0.1)
        assert p["user_tps_speedup"] == pytest.approx(p["acceptance_length"], rel=0.06)
        assert p["output_tps_speedup"] > 2
    assert "pays off at every load" in proc.stdout
    assert (tmp_path / "cmp" / "compare.csv").read_text().startswith("run,value,category")


def test_random_inputs_overstate_acceptance_where_it_depends_on_the_text(emulator, tmp_path):
    profile = tmp_path / "profile.json"
    # the emulator accepts drafts for random ids (category "random": the default) far more than for text
    profile.write_text(orjson.dumps({"default": [0.9, 0.8, 0.7], **{c: [0.5, 0.3, 0.1] for c in CATEGORIES}}).decode())
    emu = emulator("--ttft-ms", "5", "--step-ms", "5", "--accept-profile", str(profile))
    base = emulator("--ttft-ms", "5", "--step-ms", "5", "--accept", "")
    for name, url, workload in (("real", emu.url, "sample"), ("random", emu.url, "random"),
                                ("base", base.url, "sample")):
        _loadgen("run", "--url", url, "-c", "4", "-n", "66", "--max-tokens", "64", "--workload", workload,
                 "--isl", "200", "--output-dir", str(tmp_path / name))
    proc = _loadgen("compare", str(tmp_path / "real"), str(tmp_path / "random"), "--baseline", str(tmp_path / "base"),
                    "--output-dir", str(tmp_path / "cmp"))
    (row,) = orjson.loads((tmp_path / "cmp" / "compare.json").read_bytes())["random_vs_real"]
    truth = (1 + .9 + .72 + .504) / (1 + .5 + .15 + .015) - 1  # 87 %
    assert row["comparable"] and row["al_overstated"] == pytest.approx(truth, rel=0.12)
    assert row["output_tps_overstated"] > 0.3 and "random inputs" in proc.stdout
