"""The web app answers only its own pages: a Host allow-list and an Origin check in front of every route.

Three attacks a browser makes possible against a server on 127.0.0.1 or a LAN, and what stops each one:

- **DNS rebinding**: a page at ``evil.example`` re-points its own name at 127.0.0.1 and then reads the app
  "same-origin". Its requests carry ``Host: evil.example``, so every request must name an address the app is
  served on (loopback names, the ``--host`` address, names given with ``--allowed-host``); anything else gets
  421 before any route runs.
- **Cross-origin reads**: Gradio's own CORS layer echoes any ``Origin`` (``null`` included) with credentials
  once the Host header is not a loopback name, which is every LAN request. Here a request carrying an
  ``Origin`` other than the app's own (the scheme, host and port it was reached at) is refused with 403, so
  Gradio never sees it, preflights included; and CORS headers leave only for the app's own origin.
- **Cross-site requests that need no CORS** (a form post, ``<img src>``, a ``no-cors`` fetch): refused by the
  browser's Fetch Metadata (``Sec-Fetch-Site``), which names where a request comes from. Only a top-level
  navigation (a link to the app) may come from another site.

Clients that are not browsers (curl, ``gradio_client``) send neither ``Origin`` nor ``Sec-Fetch-*`` and pass,
as long as the Host header is right; a password (``--password``) is what guards the app against them.

Plain ASGI with no heavy imports: ``check_port_free`` runs before Gradio is even imported.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from clipsearch import ClipsearchError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# A link from another site may open the app; nothing else from another site is let in (web.dev/fetch-metadata).
NAVIGATION_DESTINATIONS = frozenset({"document", ""})
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


@dataclass(frozen=True)
class HostPolicy:
    """The Host names the app answers to: loopback names, the address it listens on, and ``allowed_hosts``.

    On a wildcard address (0.0.0.0, ::) the app is served on every address of the machine, so the Host header
    may also be the IP address the connection arrived on, or the machine's own host name.
    """

    names: frozenset[str]
    any_local_address: bool = False

    @classmethod
    def for_server(cls, host: str, allowed_hosts: Iterable[str] = ()) -> HostPolicy:
        bound = normalise_host_name(host)
        names = set(LOOPBACK_NAMES) | {normalise_host_name(h) for h in allowed_hosts}
        wildcard = bound in WILDCARD_HOSTS
        if wildcard:
            machine = socket.gethostname().lower()
            names |= {machine, machine.split(".")[0], machine.split(".")[0] + ".local"}  # .local: mDNS
        else:
            names.add(bound)
        return cls(frozenset(n for n in names if n), wildcard)

    def allows(self, name: str, local_address: str | None) -> bool:
        if name in self.names:
            return True
        return self.any_local_address and local_address is not None and _same_ip(name, local_address)


def normalise_host_name(name: str) -> str:
    """Lower case, no IPv6 brackets, no trailing dot: the form names are compared in."""
    name = name.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name


def check_allowed_host(value: str) -> str:
    """``value`` as a bare host name or IP address (what ``--allowed-host`` takes); ``ValueError`` if it is not."""
    name = normalise_host_name(value)
    if not (_HOST_NAME.fullmatch(name) or _is_ip(name)):
        raise ValueError(f"{value!r} is not a host name or IP address (give it without scheme, port or path)")
    return name


def split_host_header(value: str) -> tuple[str, int | None] | None:
    """``Host: name[:port]`` (IPv6 in brackets) as (normalised name, port); ``None`` when it is malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = value.rpartition(":")
        if not sep:
            name, port_text = value, None
        if ":" in name:
            return None  # a bare IPv6 address must be bracketed
    if not name or any(c in name for c in "/@\\ \t"):
        return None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
    return normalise_host_name(name), int(port_text) if port_text else None


def same_origin(origin: str, host: tuple[str, int | None]) -> bool:
    """Whether ``Origin`` names the host and port the request was sent to (scheme http or https)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None \
            or parts.path or parts.query:
        return False
    default = 443 if parts.scheme == "https" else 80
    name, port = host
    return normalise_host_name(parts.hostname) == name and (origin_port or default) == (port or default)


class OriginGuard:
    """ASGI middleware: refuse foreign Host headers, foreign origins and cross-site requests before ``app``."""

    def __init__(self, app, policy: HostPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self.judge(scope, headers)
        if refusal is not None:
            await _refuse(scope, receive, send, refusal)
            return
        origin = headers.get("origin", [None])[0]  # absent, or the app's own (judged above)

        async def send_own_cors_only(message) -> None:
            # Other origins never get this far; this keeps the promise whatever a route sets ("*", say).
            if message["type"] == "http.response.start":
                message["headers"] = _own_cors_only(message.get("headers", []), origin)
            await send(message)

        await self.app(scope, receive, send_own_cors_only)

    def judge(self, scope, headers: dict[str, list[str]]) -> Refusal | None:
        hosts = headers.get("host", [])
        host = split_host_header(hosts[0]) if len(hosts) == 1 else None
        if host is None:
            return Refusal(400, "a request needs exactly one well-formed Host header")
        local = scope.get("server")
        if not self.policy.allows(host[0], local[0] if local else None):
            return Refusal(421, "this server does not answer to that Host name (a DNS rebinding attempt?); "
                                "open the app at the address it was started on, or start it with --allowed-host")
        origins = headers.get("origin", [])
        if len(origins) > 1 or (origins and not same_origin(origins[0], host)):
            return Refusal(403, "cross-origin requests are refused: open the app at its own address")
        site = headers.get("sec-fetch-site", [""])[0].lower()
        if site in ("cross-site", "same-site") and not _is_navigation(scope, headers):
            return Refusal(403, "requests from other sites are refused: open the app at its own address")
        return None


def _own_cors_only(headers: list, origin: str | None) -> list:
    """Response headers without any CORS grant except ``Access-Control-*`` for exactly ``origin``."""
    allowed = [v for k, v in headers if k.lower() == b"access-control-allow-origin"]
    if origin is not None and allowed == [origin.encode("latin-1")]:
        return headers
    return [(k, v) for k, v in headers if not k.lower().startswith(b"access-control-")]


def _is_navigation(scope, headers: dict[str, list[str]]) -> bool:
    return (
        scope["type"] == "http"
        and scope.get("method") in ("GET", "HEAD")
        and headers.get("sec-fetch-mode", [""])[0].lower() == "navigate"
        and headers.get("sec-fetch-dest", [""])[0].lower() in NAVIGATION_DESTINATIONS
    )


def _headers(scope) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in scope.get("headers", []):
        found.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return found


async def _refuse(scope, receive, send, refusal: Refusal) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect; closing before accepting answers the handshake with 403
        await send({"type": "websocket.close", "code": 1008})
        return
    body = f"clipsearch: {refusal.message}\n".encode()
    await send({
        "type": "http.response.start",
        "status": refusal.status,
        "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"vary", b"Origin"),
        ],
    })
    await send({"type": "http.response.body", "body": body})


def guarded_gradio_app(policy: HostPolicy):
    """A Gradio ``App`` (the FastAPI app a ``Blocks`` is served by) whose every request passes ``OriginGuard``
    first: Gradio's routes, its CORS layer, uploads, the queue, file routes, login and static assets alike.

    Handed to ``Blocks.launch(_app=...)``, the one way to have Gradio's own server run our ASGI code outermost
    from its first request. ``app.launch(prevent_thread_lock=True)`` and wrapping afterwards would leave the
    port open unguarded until the wrap, and ``app_kwargs={"middleware": ...}`` lands inside Gradio's CORS
    layer, which answers preflights itself. ``launch`` checks that Gradio used it (else it stops the server).
    """
    from gradio.routes import App, ORJSONResponse

    class GuardedApp(App):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.origin_guard = OriginGuard(super().__call__, policy)

        async def __call__(self, scope, receive, send) -> None:
            await self.origin_guard(scope, receive, send)

    return GuardedApp(default_response_class=ORJSONResponse)


def check_port_free(host: str, port: int) -> None:
    """Refuse, in one line naming ``--port``, a port that another program holds (or an address not ours).

    The binds the server will make, tried up front (with SO_REUSEADDR, as uvicorn): every address ``host``
    names, and 127.0.0.1, which Gradio checks too. A second ``serve`` on the same port then fails at once
    instead of after loading the model.
    """
    if port == 0:
        return
    address = normalise_host_name(host) or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ClipsearchError(f"cannot listen on {host}: no such address on this machine (check --host)") from None
    own = list(dict.fromkeys((family, sockaddr[:2]) for family, _, _, _, sockaddr in infos))
    failures = [error for family, sockaddr in own if (error := _bind_error(family, sockaddr))]
    if len(failures) == len(own) and not any(e.errno in _TAKEN for e in failures):
        raise ClipsearchError(f"cannot listen on {host} port {port}: {failures[0].strerror} (check --host)")
    failures.append(_bind_error(socket.AF_INET, ("127.0.0.1", port)))  # Gradio's own check binds there
    taken = next((e for e in failures if e is not None and e.errno in _TAKEN), None)
    if taken is not None:
        why = "is already in use" if taken.errno == errno.EADDRINUSE else "needs privileges"
        raise ClipsearchError(f"port {port} on {host} {why} (another clipsearch serve?); choose another with --port")


_TAKEN = (errno.EADDRINUSE, errno.EACCES)


def _bind_error(family: int, sockaddr: tuple) -> OSError | None:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            return exc
    return None


def _same_ip(name: str, address: str) -> bool:
    """Whether a Host name is the IP address a connection arrived on (an IPv4-mapped IPv6 one included)."""
    try:
        given, local = ipaddress.ip_address(name), ipaddress.ip_address(normalise_host_name(address))
    except ValueError:
        return False
    return getattr(local, "ipv4_mapped", None) == given or local == given


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
