"""`loadgen run` through a real HTTP proxy on loopback: Debian's tinyproxy, started by each test
with its own configuration and stopped at teardown. Without the binary the tests skip, unless
LOADGEN_REQUIRE_TINYPROXY=1 (as in CI, whose .ci/run installs it), where they fail instead.

https servers are the emulator behind a TLS front (the test's own, with a fresh self-signed
certificate for 127.0.0.1 that the client is told to trust through SSL_CERT_FILE), reached
through the proxy's CONNECT tunnel."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from tests.integration.test_bad_input import assert_one_line_error, free_port
from tests.real_engines import unavailable

REQUIRE_ENV = "LOADGEN_REQUIRE_TINYPROXY"
REQUESTS, MAX_TOKENS = 12, 16
SECRET = "pr0xy-s3cret"


@dataclass
class Tinyproxy:
    url: str  # http://127.0.0.1:PORT, no credentials
    log: Path

    def requests(self) -> list[str]:
        """The request lines the proxy logged ("POST http://127.0.0.1:N/v1/completions", "CONNECT 127.0.0.1:N")."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return [line.split("): ", 1)[1].rsplit(" HTTP/", 1)[0] for line in lines if "Request (file descriptor" in line]


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator:
    """start(connect_ports=(), basic_auth=None) -> a running tinyproxy on a free loopback port."""
    binary = shutil.which("tinyproxy") or next((p for p in ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")
                                                if os.path.exists(p)), None)
    if binary is None:
        unavailable("tinyproxy is not installed (Debian package tinyproxy; .ci/run installs it)", REQUIRE_ENV)
    procs: list[subprocess.Popen] = []

    def start(connect_ports: tuple[int, ...] = (), basic_auth: tuple[str, str] | None = None) -> Tinyproxy:
        port = free_port()
        folder = tmp_path / f"tinyproxy-{port}"
        folder.mkdir()
        log = folder / "tinyproxy.log"
        config = [f"Port {port}", "Listen 127.0.0.1", "Timeout 60", "Allow 127.0.0.1", f'LogFile "{log}"',
                  "LogLevel Connect", "MaxClients 200", "DisableViaHeader Yes",
                  # without ConnectPort lines tinyproxy tunnels to any port: name the allowed ones
                  *(f"ConnectPort {p}" for p in connect_ports or (1,))]
        if basic_auth:
            config.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        (folder / "tinyproxy.conf").write_text("\n".join(config) + "\n")
        proc = subprocess.Popen([binary, "-d", "-c", str(folder / "tinyproxy.conf")], stdout=subprocess.DEVNULL,
                                stderr=open(folder / "stderr.log", "wb"), start_new_session=True)
        procs.append(proc)
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tinyproxy exited: {(folder / 'stderr.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return Tinyproxy(f"http://127.0.0.1:{port}", log)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("tinyproxy did not listen within 20 s") from None
                time.sleep(0.05)

    yield start
    for proc in procs:  # its own process group: tinyproxy forks no children in -d mode, but be sure
        with_group = os.getpgid(proc.pid) if proc.poll() is None else None
        if with_group is not None:
            os.killpg(with_group, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def loadgen_run(url: str, out: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loadgen", "run", "--url", url, "--workload", "random",
                           "-n", str(REQUESTS), "-c", "3", "--max-tokens", str(MAX_TOKENS), "--no-metrics",
                           "--no-plots", "--output-dir", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, env=os.environ | (env or {}))


def assert_complete_run(proc: subprocess.CompletedProcess, out: Path) -> dict:
    """The run finished with every request and token counted; returns report.json."""
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    report = orjson.loads((out / "report.json").read_bytes())
    summary = report["summary"]
    assert (summary["requests_completed"], summary["requests_failed"]) == (REQUESTS, 0)
    assert summary["output_tokens"] == REQUESTS * MAX_TOKENS
    return report


def completions(proxy: Tinyproxy, url: str) -> int:
    return proxy.requests().count(f"POST {url}/v1/completions")


def test_run_through_the_proxy_from_the_environment(emulator, tinyproxy, tmp_path):
    emu, proxy = emulator("--engine", "vllm"), tinyproxy()
    proc = loadgen_run(emu.url, tmp_path / "out", env={"http_proxy": proxy.url, "NO_PROXY": "gpu-host,10.0.0.0/8"})
    report = assert_complete_run(proc, tmp_path / "out")
    assert report["config"]["proxy"] == proxy.url
    assert f"through proxy {proxy.url} (from http_proxy)" in proc.stdout
    # every measured request, and the preflight's, went through the proxy, in absolute form
    assert completions(proxy, emu.url) == REQUESTS + 1
    assert f"GET {emu.url}/v1/models" in proxy.requests()


def test_proxy_credentials_from_the_flag_are_used_and_never_written_out(emulator, tinyproxy, tmp_path):
    emu, proxy = emulator("--engine", "sglang"), tinyproxy(basic_auth=("loadgen", SECRET))
    with_credentials = proxy.url.replace("http://", f"http://loadgen:{SECRET}@")
    # the flag wins over the environment, whose proxy does not exist
    proc = loadgen_run(emu.url, tmp_path / "out", "--proxy", with_credentials,
                       env={"HTTP_PROXY": f"http://127.0.0.1:{free_port()}"})
    report = assert_complete_run(proc, tmp_path / "out")
    assert report["config"]["proxy"] == proxy.url and completions(proxy, emu.url) == REQUESTS + 1
    written = [p.read_text(errors="replace") for p in (tmp_path / "out").iterdir() if p.is_file()]
    assert written and not any(SECRET in text for text in [*written, proc.stdout, proc.stderr])
    # without them, or with wrong ones: one line naming the proxy (never the password), exit 2
    failed = loadgen_run(emu.url, tmp_path / "out-none", "--proxy", proxy.url)
    assert_one_line_error(failed, f"proxy {proxy.url} (from --proxy) needs credentials: put them in the proxy URL")
    # tinyproxy refuses wrong credentials with 401 (not 407): the line names both suspects
    failed = loadgen_run(emu.url, tmp_path / "out-wrong", "--proxy", with_credentials.replace(SECRET, "wrong"))
    assert_one_line_error(failed, "GET /v1/models: HTTP 401; check --api-key",
                          f"or the credentials of proxy {proxy.url} (from --proxy)")
    assert "wrong" not in failed.stderr + failed.stdout  # the password given


def test_no_proxy_sends_the_server_direct(emulator, tinyproxy, tmp_path):
    emu, proxy = emulator("--engine", "vllm"), tinyproxy()
    proc = loadgen_run(emu.url, tmp_path / "out", env={"HTTP_PROXY": proxy.url, "no_proxy": "example.com, 127.0.0.0/8"})
    report = assert_complete_run(proc, tmp_path / "out")
    assert "proxy" not in report["config"] and "through proxy" not in proc.stdout
    assert proxy.requests() == []


def test_the_built_in_emulator_ignores_the_proxy_environment(tmp_path):
    """No --url: loadgen's own server on loopback is never reached through the environment's proxy
    (here one that does not exist)."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "loadgen", "run", "--workload", "random", "-n", "4", "-c", "2",
                           "--max-tokens", "8", "--no-metrics", "--no-plots", "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=180,
                          env=os.environ | {"HTTP_PROXY": f"http://127.0.0.1:{free_port()}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert orjson.loads((out / "report.json").read_bytes())["summary"]["requests_completed"] == 4


class _TlsFront:
    """TLS in front of a plain-HTTP server: each connection's bytes piped both ways."""

    def __init__(self, upstream_port: int, context: ssl.SSLContext) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream_port, self.context = upstream_port, context
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()  # a client that refused the certificate
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=_pipe, args=(upstream, tls), daemon=True).start()
        _pipe(tls, upstream)

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def tls_emulator(emulator, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(https URL of the emulator behind a TLS front, the certificate to trust for it)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    emu = emulator("--engine", "vllm")
    front = _TlsFront(int(emu.url.rsplit(":", 1)[1]), context)
    try:
        yield f"https://127.0.0.1:{front.port}", cert
    finally:
        front.close()


def test_https_through_a_connect_tunnel_verifies_the_server(tls_emulator, tinyproxy, tmp_path):
    url, cert = tls_emulator
    port = int(url.rsplit(":", 1)[1])
    proxy = tinyproxy(connect_ports=(port,))
    env = {"HTTPS_PROXY": proxy.url, "SSL_CERT_FILE": str(cert)}
    proc = loadgen_run(url, tmp_path / "out", env=env)
    report = assert_complete_run(proc, tmp_path / "out")
    assert report["config"]["proxy"] == proxy.url and "(from HTTPS_PROXY)" in proc.stdout
    tunnels = proxy.requests()
    assert tunnels and set(tunnels) == {f"CONNECT 127.0.0.1:{port}"}  # the requests themselves are inside TLS
    # the server's name is checked inside the tunnel: the certificate is for 127.0.0.1, not localhost
    failed = loadgen_run(f"https://localhost:{port}", tmp_path / "out-name", env=env)
    assert_one_line_error(failed, f"TLS handshake with localhost:{port} failed", "CERTIFICATE_VERIFY_FAILED")


def test_an_unusable_proxy_is_one_line_naming_it(tinyproxy, tmp_path):
    refused_port = free_port()
    for args, env, says in (
        (("--proxy", f"http://user:{SECRET}@127.0.0.1:{refused_port}"), {},
         f"cannot connect to proxy http://127.0.0.1:{refused_port} (from --proxy): Connection refused"),
        ((), {"HTTP_PROXY": "http://no-such-proxy.invalid:3128"},
         "cannot connect to proxy http://no-such-proxy.invalid:3128 (from HTTP_PROXY)"),
        (("--proxy", "socks5://127.0.0.1:1080"), {}, "--proxy uses a socks5:// proxy; only http:// proxies"),
    ):
        proc = loadgen_run("http://gpu-host:8000", tmp_path / f"out-{len(says)}", *args, env=env)
        assert_one_line_error(proc, says)
        assert SECRET not in proc.stderr
    # a proxy that will not tunnel to the server's port: tinyproxy answers CONNECT with 403
    proxy = tinyproxy(connect_ports=(443,))
    proc = loadgen_run("https://127.0.0.1:8443", tmp_path / "out-403", "--proxy", proxy.url)
    assert_one_line_error(proc, f"proxy {proxy.url} (from --proxy) refused CONNECT 127.0.0.1:8443: HTTP 403")


class _Redirecting(BaseHTTPRequestHandler):
    """A gateway that moved: /v1/models answers (or redirects, per `models_too`); every POST redirects."""

    models_too = False

    def do_GET(self):  # noqa: N802
        if self.models_too:
            self._redirect(301)
            return
        body = b'{"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "vllm"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._redirect(307)

    def _redirect(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Location", f"https://llm.example:8443{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("models_too", "says"), [
    (False, "the server redirected POST /v1/completions (HTTP 307) to https://llm.example:8443/v1/completions: "
            "use https://llm.example:8443 as --url"),
    (True, "the server redirected GET /v1/models (HTTP 301) to https://llm.example:8443/v1/models: "
           "use https://llm.example:8443 as --url"),
])
def test_a_redirect_is_one_line_naming_where_it_points(models_too, says, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Redirecting,), {"models_too": models_too}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        proc = loadgen_run(f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "out")
        assert_one_line_error(proc, says)
        assert time.monotonic() - started < 50  # refused at once, not retried as "not ready" (--startup-wait 60)
    finally:
        server.shutdown()
        server.server_close()
