"""Tickwire: a realtime engine for multiplayer games.

Server code builds an App (procedures, receivers, middleware, channel types) and runs it
with `tickwire run module:app`; clients use `Client` (Python) or /tickwire.js (browser).
"""

from .app import App, Settings
from .client import Client, Subscription
from .errors import (
    BadRequest,
    Blocked,
    CloseCode,
    ConnectionClosed,
    ErrorCode,
    Forbidden,
    InternalError,
    LimitExceeded,
    NotFound,
    RemoteError,
    TickwireError,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from .limits import Limits
from .socket import Socket
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "App",
    "Settings",
    "Limits",
    "Client",
    "Subscription",
    "Socket",
    "Worker",
    "TickwireError",
    "BadRequest",
    "Blocked",
    "Forbidden",
    "NotFound",
    "Timeout",
    "LimitExceeded",
    "InternalError",
    "Unauthenticated",
    "Unavailable",
    "RemoteError",
    "ConnectionClosed",
    "ErrorCode",
    "CloseCode",
]
