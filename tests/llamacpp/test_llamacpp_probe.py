"""`loadgen probe` against a real llama-server (speculative, with --metrics)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_probe_llama_server(llama_server_shared):
    srv = llama_server_shared()
    proc = subprocess.run([sys.executable, "-m", "loadgen", "probe", srv.url, "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = {f["check"]: f for f in json.loads(proc.stdout)["findings"]}
    assert found["engine"]["finding"].startswith("llamacpp ")
    assert found["token-id prompts"]["finding"].startswith("accepted")
    assert found["per-chunk token counts"]["consequence"] == "steps are grouped from timings/gaps"
    assert found["steps per chunk"]["finding"].startswith("one chunk per token")
    assert found["speculative metrics"]["consequence"] == "server AL will be exact over the window"
    assert "/metrics" in found["endpoints"]["finding"].split(";")[0]
