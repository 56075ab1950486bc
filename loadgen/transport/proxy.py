"""Which HTTP proxy, if any, a request to the server goes through: `--proxy`, else the standard
environment variables, with NO_PROXY honoured.

The rules are curl's, written out here so that they are the same on every Python:
- `--proxy URL` is used for every request; `--proxy ''` turns proxies off, the environment included.
- Without --proxy: https_proxy / HTTPS_PROXY for an https:// server, http_proxy / HTTP_PROXY for an
  http:// one, all_proxy / ALL_PROXY for either when the scheme's own is not set. The lower-case
  name wins where both are set. HTTP_PROXY is ignored when REQUEST_METHOD is set (a CGI script's
  environment, where a client's `Proxy:` header becomes HTTP_PROXY: "httpoxy").
- no_proxy / NO_PROXY lists hosts that go direct: `*` (every host), a host name (that host and
  every host under it; a leading `.` or `*.` is ignored), an IP address, or a CIDR block
  (10.0.0.0/8, fd00::/8). Case-insensitive; commas or spaces separate entries. As in curl, a
  loopback server is not exempt by itself: list it (`NO_PROXY=localhost,127.0.0.1`).

Only http:// proxies are supported (a plain connection to the proxy; https servers are reached
through a CONNECT tunnel in it). Credentials in the proxy URL go out as Proxy-Authorization:
Basic and nowhere else: `shown` is the proxy without them, for messages and reports.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = ["Proxy", "ProxyError", "parse_proxy", "proxy_for", "bypasses_proxy"]


class ProxyError(ValueError):
    """A proxy URL, from --proxy or the environment, that cannot be used (the message names which)."""


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where to connect, the Proxy-Authorization header line (or ""), and the proxy
    as messages may show it (no credentials), with where the setting came from."""

    host: str
    port: int
    shown: str
    source: str  # "--proxy" or the environment variable's name
    auth_header: str = field(default="", repr=False)


def parse_proxy(url: str, source: str) -> Proxy:
    """`url` as a Proxy; ProxyError, with a message that names `source`, for what is not an
    http:// proxy URL. A URL without a scheme is taken as http:// (as curl does)."""
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    host = parts.hostname if parts is not None else None
    if parts is None or not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyError(f"{source} is not a proxy URL: give http://[USER:PASS@]HOST:PORT")
    if parts.scheme != "http":
        raise ProxyError(f"{source} uses a {parts.scheme}:// proxy; only http:// proxies are supported "
                         "(https servers are reached through a CONNECT tunnel in an http:// proxy)")
    port = port or 80
    shown = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    auth = ""
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode('ascii')}\r\n"
    return Proxy(host, port, shown, source, auth)


def proxy_for(server_url: str, setting: str | None, environ: Mapping[str, str] = os.environ) -> Proxy | None:
    """The proxy a request to `server_url` goes through, or None for a direct connection.

    `setting` is --proxy: None reads the environment, "" is no proxy, anything else is the proxy.
    ProxyError for a proxy URL that cannot be used."""
    if setting is not None:
        return parse_proxy(setting, "--proxy") if setting else None
    parts = urlsplit(server_url)
    names = [f"{parts.scheme}_proxy", f"{parts.scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"]
    if "REQUEST_METHOD" in environ:
        names.remove("HTTP_PROXY")  # a CGI environment: HTTP_PROXY may be a client's header
    name = next((n for n in names if environ.get(n, "").strip()), None)
    if name is None:
        return None
    no_proxy = environ.get("no_proxy", environ.get("NO_PROXY", ""))
    if parts.hostname and bypasses_proxy(parts.hostname, no_proxy):
        return None
    return parse_proxy(environ[name].strip(), name)


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY's entries send `host` (a name or an IP address, no port) direct."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(",", " ").lower().split():
        if entry == "*":
            return True
        entry = entry.removeprefix("*.").lstrip(".").strip("[]").rstrip(".")
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass  # a host name: it does not name an address
        elif host == entry or host.endswith("." + entry):
            return True
    return False

