"""Tickwire: a realtime engine for multiplayer games.

Server code builds an App (procedures, receivers, middleware, channel types, rooms) and
runs it with `tickwire run module:app`; clients use `Client` (Python) or /tickwire.js.

Names are imported on first use (PEP 562): a broker process imports `engine.broker` and
never pays for websockets and numpy, which keeps a restarted broker's start short.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "App": "app",
    "Settings": "app",
    "Limits": "limits",
    "Client": "client",
    "Subscription": "client",
    "ClientRoom": "client",
    "Socket": "socket",
    "Worker": "worker",
    "Room": "rooms",
    "World": "rooms",
    "Player": "rooms",
    "TickwireError": "errors",
    "BadRequest": "errors",
    "Blocked": "errors",
    "Forbidden": "errors",
    "NotFound": "errors",
    "Timeout": "errors",
    "LimitExceeded": "errors",
    "InternalError": "errors",
    "Unauthenticated": "errors",
    "Unavailable": "errors",
    "RemoteError": "errors",
    "ConnectionClosed": "errors",
    "ErrorCode": "errors",
    "CloseCode": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
