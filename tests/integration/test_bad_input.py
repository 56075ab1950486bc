"""Bad input: one clear line on stderr, exit code 2, no traceback."""

import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def loadgen(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    if args[0] == "run" and "--workload" not in args:
        args = (*args, "--workload", "random")
    return subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    """/v1/models answers per `models_status`; every POST answers 404 (an endpoint that is not there)."""

    models_body = b"<html>hello</html>"

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.models_body)))
        self.end_headers()
        self.wfile.write(self.models_body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"detail": "Not Found"}'
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    def start(models_body: bytes) -> str:
        handler = type("H", (_Handler,), {"models_body": models_body})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    servers: list[ThreadingHTTPServer] = []
    yield start
    for s in servers:
        s.shutdown()


def test_unreachable_url(tmp_path):
    proc = loadgen("run", "--url", f"http://127.0.0.1:{free_port()}", "-n", "2", "--output-dir", str(tmp_path))
    assert_one_line_error(proc, "cannot connect", "--url")


def test_server_that_is_not_openai_compatible(fake_server, tmp_path):
    url = fake_server(b"<html>hello</html>")
    assert_one_line_error(loadgen("run", "--url", url, "-n", "2", "--output-dir", str(tmp_path)),
                          "not an OpenAI-compatible server")


def test_completions_endpoint_404(fake_server, tmp_path):
    url = fake_server(b'{"object": "list", "data": [{"id": "m", "owned_by": "x"}]}')
    assert_one_line_error(loadgen("run", "--url", url, "-n", "2", "--output-dir", str(tmp_path)),
                          "HTTP 404", "/v1/completions")


def test_zero_concurrency(tmp_path):
    assert_one_line_error(loadgen("run", "--concurrency", "0", "--output-dir", str(tmp_path)),
                          "--concurrency must be at least 1")


def test_unwritable_output_dir(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(loadgen("run", "-n", "2", "--output-dir", str(blocker / "out")),
                          "cannot write to output directory")


def test_unknown_model_lists_what_is_served(emulator, tmp_path):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1")
    assert_one_line_error(loadgen("run", "--url", emu.url, "--model", "nope", "-n", "2", "--output-dir", str(tmp_path)),
                          "'nope' is not served", "emulator")


def test_malformed_workload_file(tmp_path: Path):
    bad = tmp_path / "w.jsonl"
    bad.write_text('{"prompt_token_ids": [1, 2]}\n{"prompt_token_ids": "abc"}\n')
    assert_one_line_error(loadgen("run", "--workload", str(bad), "-n", "2", "--output-dir", str(tmp_path / "o")),
                          "w.jsonl:2", "prompt_token_ids")


def test_bad_url_scheme(tmp_path):
    assert_one_line_error(loadgen("run", "--url", "gpu-host:8000", "--output-dir", str(tmp_path)), "http://")


def test_non_numeric_flag_is_one_line_too(tmp_path):
    proc = loadgen("run", "--concurrency", "many", "--output-dir", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.fixture
def self_signed_tls_server(tmp_path: Path):
    """openssl's own test server with a fresh self-signed certificate; yields its https URL."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True, timeout=60)
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key",
                             str(key), "-www", "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                threading.Event().wait(0.05)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_tls_failure_is_one_line_and_insecure_skips_verification(self_signed_tls_server, tmp_path):
    proc = loadgen("run", "--url", self_signed_tls_server, "-n", "1", "--no-metrics",
                   "--output-dir", str(tmp_path / "a"))
    assert_one_line_error(proc, "TLS handshake with 127.0.0.1", "CERTIFICATE_VERIFY_FAILED")
    # --insecure: the handshake passes, and the next problem is named (openssl's page is no OpenAI server)
    proc = loadgen("run", "--url", self_signed_tls_server, "-n", "1", "--no-metrics", "--insecure",
                   "--output-dir", str(tmp_path / "b"))
    assert_one_line_error(proc, "is not an OpenAI-compatible server")


_ROW = '{{"timestamp": {}, "input_length": {}, "output_length": 4}}\n'


@pytest.mark.parametrize("name, text, flags, needles", [
    ("t.jsonl", _ROW.format(0, 50) + _ROW.format(900, 50) + _ROW.format(300, 50), [],
     ["t.jsonl:3", "before the previous row's", "time order"]),
    ("t.jsonl", _ROW.format(0, 50) + '{"timestamp": 10, "output_length": 4}\n', [],
     ["t.jsonl:2", "missing field 'input_length'"]),
    ("t.csv", "", [], ["is empty"]),
    ("t.dat", "0;50;4\n", [], ["cannot tell the format"]),
    ("t.jsonl", _ROW.format(0, 3), ["--workload", "sample"], ["t.jsonl:1", "chat template's own"]),
    ("t.jsonl", _ROW.format(0, 50), ["--request-rate", "5"], ["--trace", "--request-rate"]),
    ("t.jsonl", _ROW.format(0, 50), ["--concurrency-levels", "1,2", "--level-duration", "1"],
     ["--trace", "--concurrency-levels"]),
    ("t.jsonl", _ROW.format(0, 50), ["--isl", "64"], ["--trace", "--isl"]),
])
def test_bad_traces_are_one_line(tmp_path: Path, name, text, flags, needles):
    trace = tmp_path / name
    trace.write_text(text)
    assert_one_line_error(loadgen("run", "--trace", str(trace), *flags, "--output-dir", str(tmp_path / "o")), *needles)


def test_trace_speed_needs_a_trace(tmp_path):
    assert_one_line_error(loadgen("run", "--trace-speed", "2", "--output-dir", str(tmp_path)),
                          "--trace-speed", "give --trace")


def test_a_trace_row_beyond_the_servers_context_is_named(emulator, tmp_path: Path):
    emu = emulator("--ttft-ms", "1", "--step-ms", "1")  # /v1/models: max_model_len 131072
    trace = tmp_path / "t.jsonl"
    trace.write_text(_ROW.format(0, 50) + _ROW.format(5, 131070))
    assert_one_line_error(loadgen("run", "--url", emu.url, "--trace", str(trace), "--output-dir", str(tmp_path / "o")),
                          "t.jsonl:2", "input 131070 + output 4 tokens exceed the server's context length 131072")
