"""Browser-side defences of ``polypseg serve``: security headers on every answer, and the
``Host`` names it accepts (against DNS rebinding).

* Every response carries :data:`SECURITY_HEADERS` (``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``) and a
  ``Content-Security-Policy``: :data:`API_CSP` (nothing may load, no framing) unless the route set
  its own, as the page does with a fresh nonce per answer (:func:`page_csp`), so the page's one
  inline ``<script>`` and ``<style>`` run and nothing else does (no ``'unsafe-inline'``).
* **DNS rebinding**: a page on ``evil.example`` whose name is made to resolve to ``127.0.0.1``
  reaches a loopback server from the victim's browser, with ``Host: evil.example``. With
  ``allowed_hosts`` set, a request whose ``Host`` is a name not in it gets a 421 JSON error.
  Addresses (``127.0.0.1``, ``[::1]``, ``10.0.0.5``) are always accepted: rebinding needs a name.
  :func:`allowed_host_names` gives the default set of ``polypseg serve``: the name it was bound
  to and ``localhost`` for loopback or wildcard binds, plus ``--allowed-host`` names (``*``: any).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

#: Headers sent with every answer (name, value), lower-case names as ASGI wants them.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
)
#: The policy of API answers (JSON, PNG): nothing loads, nothing frames them.
API_CSP = dict(SECURITY_HEADERS)["content-security-policy"]
#: Status of a request whose ``Host`` is not accepted.
MISDIRECTED = 421

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


def page_csp(nonce: str) -> str:
    """The page's policy: its own inline script and style (by ``nonce``), calls to the API,
    images from itself, ``data:`` and ``blob:``; nothing else, and no framing."""
    return (
        "default-src 'none'; connect-src 'self'; img-src 'self' data: blob:; "
        f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def host_name(header: str) -> str:
    """The name or address of a ``Host`` header, without port, brackets, case or final dot."""
    host = header.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def is_address(host: str) -> bool:
    """Whether ``host`` (as :func:`host_name` gives it) is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed_host_names(bind: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bind`` accepts by default, plus ``extra``;
    ``None`` (any) when ``extra`` holds ``*``.

    A name bound to is accepted as it is; ``localhost`` when the bind is a loopback or
    wildcard address (or a name resolving to loopback); a wildcard bind also accepts this
    machine's host name.
    """
    names = {host_name(name) for name in extra if name.strip()}
    if "*" in names:
        return None
    bind = host_name(bind)
    if not is_address(bind):
        names.add(bind)
        try:
            loopback = all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(bind, None)
            )
        except (OSError, ValueError):
            loopback = False
        if loopback:
            names.add("localhost")
        return frozenset(names)
    address = ipaddress.ip_address(bind)
    if address.is_loopback or address.is_unspecified:
        names.add("localhost")
    if address.is_unspecified:
        names.update(host_name(n) for n in (socket.gethostname(), socket.getfqdn()) if n)
    return frozenset(names)


def _json(status: int, message: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}, body


class BrowserGuard:
    """ASGI middleware: the ``Host`` check (when ``allowed_hosts`` is not ``None``) and the
    security headers on every HTTP answer (a route's own ``Content-Security-Policy`` wins)."""

    def __init__(
        self,
        app: Asgi,
        allowed_hosts: frozenset[str] | None = None,
        no_csp: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        #: Paths whose answers get no ``Content-Security-Policy`` (``serve --docs``'s Swagger
        #: UI, which loads from a CDN); the other headers still.
        self.no_csp = no_csp

    def host_allowed(self, scope: Scope) -> bool:
        """Whether the request's ``Host`` is an address, an allowed name, or absent."""
        if self.allowed_hosts is None:
            return True
        header = next((v for k, v in scope.get("headers", ()) if k == b"host"), None)
        if header is None:  # HTTP/1.0 without Host: browsers always send one
            return True
        host = host_name(header.decode("latin-1"))
        return is_address(host) or host in self.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        skip = {b"content-security-policy"} if scope.get("path") in self.no_csp else set()

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _ in headers} | skip
                headers += [
                    (name.encode(), value.encode())
                    for name, value in SECURITY_HEADERS
                    if name.encode() not in present
                ]
                message["headers"] = headers
            await send(message)

        if not self.host_allowed(scope):
            start, body = _json(
                MISDIRECTED,
                "this server does not answer to that host name; start it with "
                "--allowed-host NAME to accept it",
            )
            await send_guarded(start)
            await send_guarded({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_guarded)
