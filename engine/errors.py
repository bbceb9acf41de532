"""One exception hierarchy, mapped to wire errors and close codes here and nowhere else.

Server code raises these from procedures and middleware; the engine turns them into an
`Error` reply (code and message as in codecs/WIRE.md) or, for ProtocolViolation, into a
close code. Any other exception that escapes application code becomes `internal`: its
details go to the server's log, never on the wire.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ErrorCode",
    "CloseCode",
    "TickwireError",
    "BadRequest",
    "NotFound",
    "Forbidden",
    "Blocked",
    "Timeout",
    "LimitExceeded",
    "InternalError",
    "Unauthenticated",
    "Unavailable",
    "ProtocolViolation",
    "RemoteError",
    "ConnectionClosed",
    "error_from_code",
    "reconnect_allowed",
    "wire_error",
]


class ErrorCode(IntEnum):
    """`Error.code` on the wire (WIRE.md, "Errors")."""

    BAD_REQUEST = 1
    NOT_FOUND = 2
    FORBIDDEN = 3
    TIMEOUT = 4
    LIMIT_EXCEEDED = 5
    INTERNAL = 6
    UNAUTHENTICATED = 7
    UNAVAILABLE = 8


class CloseCode(IntEnum):
    """WebSocket close codes (WIRE.md, "Close codes"). 4500 and up: do not reconnect."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    PING_TIMEOUT = 4000
    HANDSHAKE_TIMEOUT = 4005
    HANDSHAKE_REJECTED = 4008
    MESSAGE_BEFORE_HANDSHAKE = 4009
    MALFORMED = 4100
    UNKNOWN_TYPE = 4101
    FLOOD = 4102
    SLOW_READER = 4103
    SCHEMA_MISMATCH = 4500
    UNSUPPORTED_PROTOCOL = 4501


def reconnect_allowed(code: int | None) -> bool:
    """Whether a client should reconnect after the server closed with this code."""
    return code != CloseCode.NORMAL and (code is None or code < 4500)


class TickwireError(Exception):
    """Base of every error that reaches a client as an `Error` reply."""

    code = ErrorCode.INTERNAL
    default_message = "error"

    def __init__(self, message: str | None = None):
        self.message = message or self.default_message
        super().__init__(self.message)

    @property
    def name(self) -> str:
        return type(self).__name__


class BadRequest(TickwireError):
    code = ErrorCode.BAD_REQUEST
    default_message = "bad request"


class NotFound(TickwireError):
    code = ErrorCode.NOT_FOUND
    default_message = "not found"


class Forbidden(TickwireError):
    code = ErrorCode.FORBIDDEN
    default_message = "forbidden"


class Blocked(Forbidden):
    """Raised by middleware to refuse what a client asked, with a message it sees."""

    default_message = "blocked by middleware"


class Timeout(TickwireError):
    code = ErrorCode.TIMEOUT
    default_message = "timed out"


class LimitExceeded(TickwireError):
    code = ErrorCode.LIMIT_EXCEEDED
    default_message = "limit exceeded"


class InternalError(TickwireError):
    code = ErrorCode.INTERNAL
    default_message = "internal server error"


class Unauthenticated(TickwireError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "not authenticated"


class Unavailable(TickwireError):
    code = ErrorCode.UNAVAILABLE
    default_message = "unavailable"


_BY_CODE: dict[int, type[TickwireError]] = {
    cls.code: cls
    for cls in (BadRequest, NotFound, Forbidden, Timeout, LimitExceeded, InternalError, Unauthenticated, Unavailable)
}


class RemoteError(TickwireError):
    """On a client: the server answered a request with an error."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code  # type: ignore[assignment]

    @property
    def name(self) -> str:
        try:
            return _BY_CODE[self.code].__name__
        except KeyError:
            return f"Error{self.code}"

    def __repr__(self) -> str:
        return f"RemoteError({self.name}, {self.message!r})"


def error_from_code(code: int, message: str) -> TickwireError:
    """The TickwireError a wire code stands for (to re-raise an error from another process)."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls is not None else Unavailable(message)


class ProtocolViolation(Exception):
    """A client broke the protocol: the connection is closed with `close_code`."""

    def __init__(self, close_code: CloseCode, reason: str):
        super().__init__(reason)
        self.close_code = close_code
        self.reason = reason


class ConnectionClosed(Exception):
    """On a client: the connection closed while a request was waiting."""

    def __init__(self, code: int | None, reason: str = ""):
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


def wire_error(exc: BaseException) -> tuple[int, str]:
    """The (code, message) a client sees for an exception raised by server code.

    TickwireErrors say what they mean; anything else is `internal`, with no details on the
    wire (the caller logs the traceback).
    """
    if isinstance(exc, TickwireError):
        return int(exc.code), exc.message
    return int(ErrorCode.INTERNAL), InternalError.default_message
