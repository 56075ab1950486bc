"""Which proxy a server is reached through: --proxy, the proxy environment variables, NO_PROXY."""

import base64

import pytest

from loadgen.config import RunConfig
from loadgen.errors import UsageError
from loadgen.transport.proxy import ProxyError, bypasses_proxy, parse_proxy, proxy_for
from loadgen.wiring import http_client


def test_the_scheme_own_variable_lower_case_first_then_all_proxy():
    env = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128", "HTTP_PROXY": "plain:8080",
           "ALL_PROXY": "http://all:1"}
    https = proxy_for("https://api.example", None, env)
    assert (https.host, https.port, https.source) == ("lower", 3128, "https_proxy")
    http = proxy_for("http://api.example:8000", None, env)
    assert (http.host, http.port, http.shown, http.source) == ("plain", 8080, "http://plain:8080", "HTTP_PROXY")
    assert proxy_for("http://api.example", None, {"all_proxy": "http://all:1"}).host == "all"
    assert proxy_for("http://api.example", None, {"HTTPS_PROXY": "http://p:1"}) is None  # another scheme's


def test_the_flag_overrides_the_environment_and_empty_turns_proxies_off():
    env = {"HTTP_PROXY": "http://env:1"}
    assert proxy_for("http://api.example", "http://flag:2", env).source == "--proxy"
    assert proxy_for("http://api.example", "", env) is None
    # NO_PROXY is the environment's: an explicit --proxy is used for every server
    assert proxy_for("http://api.example", "http://flag:2", {"NO_PROXY": "*"}).host == "flag"


def test_http_proxy_is_ignored_in_a_cgi_environment():
    """httpoxy: under CGI a client's `Proxy:` header arrives as HTTP_PROXY."""
    assert proxy_for("http://api.example", None, {"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}) is None
    assert proxy_for("http://api.example", None, {"http_proxy": "http://ok:1", "REQUEST_METHOD": "GET"}).host == "ok"


@pytest.mark.parametrize(("host", "no_proxy", "bypass"), [
    ("api.example.com", "example.com", True),
    ("api.example.com", ".example.com", True),
    ("api.example.com", "*.example.com", True),
    ("example.com", ".example.com", True),
    ("API.Example.COM", " other.org ,  EXAMPLE.com ", True),
    ("notexample.com", "example.com", False),
    ("example.com.evil.org", "example.com", False),
    ("anything", "*", True),
    ("10.1.2.3", "10.1.2.3", True),
    ("10.1.2.3", "10.0.0.0/8", True),
    ("11.1.2.3", "10.0.0.0/8", False),
    ("::1", "[::1]", True),
    ("fd00::5", "fd00::/8", True),
    ("10.1.2.3", "example.com 10.1.2.4", False),
    ("localhost", "127.0.0.1", False),  # names are not resolved: list each as the URL gives it
    ("127.0.0.1", "", False),  # loopback is not exempt unless listed (as in curl)
])
def test_no_proxy_entries(host, no_proxy, bypass):
    assert bypasses_proxy(host, no_proxy) is bypass


def test_no_proxy_lower_case_first():
    env = {"HTTP_PROXY": "http://p:1", "no_proxy": "other.org", "NO_PROXY": "api.example"}
    assert proxy_for("http://api.example", None, env) is not None
    assert proxy_for("http://api.example", None, env | {"no_proxy": "api.example"}) is None


def test_credentials_go_into_the_header_only():
    proxy = parse_proxy("http://alice:s%40cret@proxy.corp:3128", "HTTPS_PROXY")
    assert proxy.shown == "http://proxy.corp:3128" and "cret" not in repr(proxy)
    assert proxy.auth_header == f"Proxy-Authorization: Basic {base64.b64encode(b'alice:s@cret').decode()}\r\n"
    assert parse_proxy("proxy.corp", "--proxy").shown == "http://proxy.corp:80"  # no scheme: http, as curl
    assert parse_proxy("http://[::1]:3128/", "--proxy").shown == "http://[::1]:3128"


@pytest.mark.parametrize(("url", "message"), [
    ("https://proxy.corp:443", "--proxy uses a https:// proxy; only http:// proxies are supported"),
    ("socks5://proxy.corp:1080", "--proxy uses a socks5:// proxy"),
    ("http://proxy.corp:notaport", "--proxy is not a proxy URL: give http://[USER:PASS@]HOST:PORT"),
    ("http://user:pw@proxy.corp/some/path", "--proxy is not a proxy URL"),
])
def test_unusable_proxy_urls_are_one_clear_error_without_credentials(url, message):
    with pytest.raises(ProxyError) as info:
        parse_proxy(url, "--proxy")
    assert str(info.value).startswith(message) and "pw" not in str(info.value)


def test_a_run_config_off_switch_and_bad_proxy_through_the_wiring(monkeypatch):
    """`--proxy ''` (as loadgen run's options give it) turns the environment's proxy off; a proxy
    URL that cannot be used is the one-line UsageError of bad input."""
    monkeypatch.setenv("HTTP_PROXY", "http://env-proxy:3128")
    options = {"url": "http://gpu-host:8000"}
    assert http_client(RunConfig.from_options(options), "http://gpu-host:8000").proxy.source == "HTTP_PROXY"
    assert http_client(RunConfig.from_options(options | {"proxy": ""}), "http://gpu-host:8000").proxy is None
    monkeypatch.setenv("HTTP_PROXY", "ftp://env-proxy")
    with pytest.raises(UsageError, match="HTTP_PROXY uses a ftp:// proxy"):
        http_client(RunConfig.from_options(options), "http://gpu-host:8000")
