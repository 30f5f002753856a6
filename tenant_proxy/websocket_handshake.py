"""A watch asked for over WebSocket: whether it is one, and what kube-apiserver would answer.

How the API server does it (k8s.io/apiserver endpoints/handlers/watch.go, `WatchServer`):
- A request is a WebSocket one when `wsstream.IsWebSocketRequest` says so: `Upgrade: websocket`
  and an `upgrade` token in Connection. Such a watch is handed to golang.org/x/net/websocket's
  `websocket.Handler(HandleWS)`; anything else is the chunked HTTP stream.
- x/net/websocket refuses, in this order: a malformed handshake (400); no Origin, or one
  url.ParseRequestURI cannot read (403: `websocket.Handler` is meant for browsers, which always
  send Origin); more than one subprotocol (400: the default handshake cannot choose).
- Subprotocols: authentication removes the `base64url.bearer.authorization.k8s.io.<token>` one
  (Headlamp offers `base64.binary.k8s.io` plus that one); what is left is echoed when it is one
  name, whatever the name: nothing is encoded, `base64.binary.k8s.io` still gets plain JSON.
- Each event is one message holding the bytes of its line in the HTTP stream (the JSON and its
  newline), a text message for JSON (`UseTextFraming`). No extension is negotiated. What the
  client sends is read and ignored; its close ends the watch; the end of the stream (timeout,
  ERROR, the server ending it) is a close frame with code 1000.

Pure: the I/O side is `watch_sinks`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tenant_proxy import status
from tenant_proxy.headers import websocket_bearer

_CONNECTION_UPGRADE = re.compile(r"(^|.*,\s*)upgrade($|\s*,)")
# url.ParseRequestURI, by its first characters: "*", an absolute path, or a scheme; and no
# control character anywhere.
_REQUEST_URI = re.compile(r"(\*$|/|[A-Za-z][A-Za-z0-9+.-]*:)[^\x00-\x1f\x7f]*$")


def is_websocket_upgrade(upgrade: str, connection: str) -> bool:
    """wsstream.IsWebSocketRequest, given the first Upgrade and Connection header values."""
    if upgrade.lower() != "websocket":
        return False
    return _CONNECTION_UPGRADE.match(connection.lower()) is not None


def subprotocols(header_values: Iterable[str]) -> list[str]:
    """The subprotocols offered, the bearer-token one taken out (it is never echoed)."""
    _, rest = websocket_bearer(",".join(header_values))
    return [p.strip() for p in rest.split(",") if p.strip()]


def handshake_refusal(version: str, origin: str, offered: list[str]) -> status.ApiError | None:
    """What the API server would refuse in a handshake aiohttp found well-formed, else None."""
    if version != "13":
        # aiohttp also takes drafts 7 and 8; x/net/websocket only RFC 6455's version.
        return status.bad_request("unsupported WebSocket version: only 13 is")
    if not _REQUEST_URI.match(origin):
        return status.forbidden("a WebSocket watch needs a valid Origin header")
    if len(offered) > 1:
        return status.bad_request("a WebSocket watch takes one subprotocol besides a bearer token")
    return None
