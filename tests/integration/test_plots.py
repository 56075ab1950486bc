"""Pictures and the HTML page of a run, a sweep and a comparison; `loadgen report DIR` draws a
finished run again."""

import subprocess
import sys

PNG = b"\x89PNG\r\n\x1a\n"


def _loadgen(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_run_sweep_and_compare_pages_embed_their_pictures(emulator, tmp_path):
    spec = emulator("--ttft-ms", "5", "--step-ms", "5")
    plain = emulator("--ttft-ms", "5", "--step-ms", "5", "--accept", "")
    common = ("-c", "2,4", "-n", "32", "--max-tokens", "96", "--no-metrics", "--no-progress")  # > 1 s: a time series
    _loadgen("sweep", "--url", spec.url, "--output-dir", str(tmp_path / "sd"), *common)
    _loadgen("sweep", "--url", plain.url, "--output-dir", str(tmp_path / "base"), *common)
    _loadgen("compare", str(tmp_path / "sd"), "--baseline", str(tmp_path / "base"), "--output-dir", str(tmp_path / "c"))
    run = tmp_path / "sd" / "c4"
    for folder, names, page in ((run, ("acceptance", "al_by_category", "time_series", "al_by_position",
                                        "al_spread"), "report.html"),
                                (tmp_path / "sd", ("pareto",), "sweep.html"),
                                (tmp_path / "c", ("speedup", "prompt_speedups", "al_boxes"), "compare.html")):
        for name in names:
            assert (folder / f"{name}.png").read_bytes().startswith(PNG), name
        text = (folder / page).read_text()
        assert text.count("data:image/png;base64,") == len(names) and "<table>" in text
    # drawn again from report.json alone
    for png in run.glob("*.png"):
        png.unlink()
    (run / "report.html").unlink()
    _loadgen("report", str(run))
    assert (run / "acceptance.png").read_bytes().startswith(PNG) and (run / "report.html").exists()
