"""SocketCluster's JSON protocol as a codec: the unmodified socketcluster-client on Tickwire.

A client that offers no Tickwire subprotocol (SocketCluster's client offers none, and
connects to `/socketcluster/` by default) gets this codec on the same port, whatever the
path. It maps SocketCluster's packets (socketcluster-client 20, sc-formatter, protocol
versions 1 and 2) to the protocol records every codec speaks, so the session, the
services, middleware and limits treat these clients like any other.

Client to server (a frame is one packet, or a JSON array of packets: a batch):

| SocketCluster                                                  | protocol record              |
|----------------------------------------------------------------|------------------------------|
| `''` (v2), `'#2'` (v1)                                         | Pong; the ping style is known |
| `'#1'`                                                         | Ping (answered `'#2'`)        |
| `{"event":"#handshake","data":{"authToken":T},"cid":N}`        | Handshake("", T)             |
| `{"event":"#authenticate","data":T,"cid":N}`                   | Deauthenticate, Authenticate(N, T) |
| `{"event":"#removeAuthToken"}`                                 | Deauthenticate               |
| `{"event":"#subscribe","data":{"channel":C},"cid":N}`          | Subscribe(N, [C])            |
| `{"event":"#unsubscribe","data":C}`                            | Unsubscribe(0, [C]) by name  |
| `{"event":"#publish","data":{"channel":C,"data":D},"cid":N}`   | Publish(N, C, Json D)        |
| `{"event":E,"data":D,"cid":N}` (invoke)                        | Call(N, E, Json D)           |
| `{"event":E,"data":D}` (transmit)                              | Emit(E, Json D)              |
| a packet that is none of these, text that is not JSON          | codec.Rejected               |

`cid` is optional on #subscribe, #unsubscribe and #publish (0: no answer). A handshake or
#authenticate without one closes with 4008, as SocketCluster does; anything before the
handshake closes with 4009 (the session's rule, SocketCluster's strictHandshake).

Server to client:

| protocol record              | SocketCluster                                                      |
|------------------------------|--------------------------------------------------------------------|
| Welcome                      | `{"rid":N,"data":{"id","pingTimeout","isAuthenticated"[,"authError"]}}` |
| Result(N, D)                 | `{"rid":N,"data":D}` (`{"rid":N}` without data)                     |
| Error(N, code, message)      | `{"rid":N,"error":{"name","message","code"}}`; with cid 0: nothing  |
| Subscribed(N, [info])        | `{"rid":N}`, or `{"rid":N,"error":...}` when refused               |
| Emit(E, D)                   | `{"event":E,"data":D}`                                             |
| Message (a channel delivery) | `{"event":"#publish","data":{"channel":C,"data":D}}`               |
| Kicked                       | `{"event":"#kickOut","data":{"channel":C,"message":M}}`            |
| SetToken / RemoveToken       | `{"event":"#setAuthToken","data":{"token":T}}` / `{"event":"#removeAuthToken"}` |
| Ping / Pong                  | `''` / `''` (v2), `'#1'` / `'#2'` (v1), each a frame of its own     |

Everything else queued in one flush travels as one JSON array (a batch), which the client
unpacks packet by packet.

Payloads: an untyped channel's messages, and procedure and event data, are the
protocol's Json message, whose body is JSON text: it is spliced into the frame as it is,
never parsed again, and a publish from either kind of client reaches the other unchanged.
A schema-typed message is written as its plain form (Record.to_dict, tables with
"$type"), once per message per worker for a channel delivery (channel_message); Bytes as
SocketCluster's `{"base64":true,"data":...}`.

Ping style: SocketCluster's server has one protocolVersion for all its clients; Tickwire
serves both on one port. Until a client has answered, pings alternate between the two
styles (`''` first, then `'#1'`); the first pong fixes the style. A v2 client answers
the first; a v1 client sees one empty frame (its 'raw' event) and answers the second, in
time as long as two ping intervals are under the ping timeout (8 s and 20 s by default).
SocketCluster's client resets its ping timer only on pings, so these clients are pinged
every interval, busy or not (`ping_always`), and a missing pong closes with
SocketCluster's 4001 ("Client pong timed out").

Pure: no sockets, loop or clock. The per-connection state (ping style, the handshake's
request id, ids of pending #authenticate requests, channel names by id for #kickOut) lives
in the ScConnection the session holds.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, Callable, Sequence

from ._generated import protocol as P
from .codec import Rejected
from .errors import CloseCode, ErrorCode, ProtocolViolation
from .packed import NO_PAYLOAD, Codebook, DecodeContext, DecodeError, EncodeError, Payload, r_uvarint, uvarint_bytes

__all__ = ["ScCodec", "ScConnection", "SC_PATH", "ERROR_NAMES", "PONG_TIMEOUT"]

SC_PATH = "/socketcluster/"  # socketcluster-client's default path (any path works)
PONG_TIMEOUT = 4001  # SocketCluster: "Client pong timed out" (its 4000 is the client's own)
HANDSHAKE_REJECTED = 4008  # SocketCluster closes a handshake without cid with it
MAX_CID = 0xFFFFFFFF

# Error.code as the name of a SocketCluster error object (its clients read err.name).
ERROR_NAMES = {
    ErrorCode.BAD_REQUEST: "BadRequest",
    ErrorCode.NOT_FOUND: "NotFound",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.TIMEOUT: "TimeoutError",
    ErrorCode.LIMIT_EXCEEDED: "LimitExceeded",
    ErrorCode.INTERNAL: "InternalError",
    ErrorCode.UNAUTHENTICATED: "Unauthenticated",
    ErrorCode.UNAVAILABLE: "Unavailable",
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Python's json reads NaN and Infinity unless told not to; SocketCluster's JSON.parse does not.
_loads = json.JSONDecoder(parse_constant=_refuse_constant).decode
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON; EncodeError for what JSON cannot hold (NaN, a set...)."""
    try:
        text = _dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodeError(f"cannot send {type(value).__name__} as JSON: {exc}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON.stringify escapes them): keep it escaped
        return _dumps_ascii(value).encode("ascii")


def _finite(v: Any) -> Any:
    """A plain value with NaN and infinities as null (JSON has no other way to say them)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def auth_error_name(message: str) -> str:
    """SocketCluster's name for a refused token (engine.auth's messages)."""
    return "AuthTokenExpiredError" if "expired" in message else "AuthTokenInvalidError"


def _error_json(name: str, message: str, code: int) -> bytes:
    return json_bytes({"name": name, "message": message, "code": code})


_MISSING = object()


class ScCodec:
    """The codec shared by a worker's SocketCluster connections (see the module's doc)."""

    name = "sc-json"
    subprotocol = None  # the codec for clients that offer no subprotocol
    text = True
    pings_are_frames = True
    ping_always = True
    concatenates = False

    def __init__(self, codebook: Codebook, protocol_version: int | None = None):
        """protocol_version: 1 or 2 to ping every client in that style (as a SocketCluster
        server configured so), None to find each client's style from its first pong."""
        if protocol_version not in (None, 1, 2):
            raise ValueError("protocol_version is 1, 2 or None (detect)")
        self.codebook = codebook
        self.protocol_version = protocol_version
        self.json_type = codebook.json_type
        self.bytes_type = codebook.bytes_type

    def connection(self) -> "ScConnection":
        return ScConnection(self)

    @staticmethod
    def close_code(code: int) -> int:
        return PONG_TIMEOUT if code == CloseCode.PING_TIMEOUT else code

    def schema_ok(self, schema_hash: str) -> bool:
        return True  # JSON clients carry no schema: typed messages are checked as they come

    # Stateless forms, for tools and tests; a session uses connection().
    def decode(self, frame: bytes, ctx: DecodeContext) -> list[Any]:
        return ScConnection(self).decode(frame, ctx)

    def encode(self, msg: Any) -> bytes:
        return ScConnection(self).encode(msg)

    @staticmethod
    def join(parts: Sequence[bytes]) -> bytes:
        """One packet as it is, several as a batch (a JSON array)."""
        if len(parts) == 1:
            return bytes(parts[0])
        return b"[" + b",".join(parts) + b"]"

    # -- payloads ------------------------------------------------------------------------------
    def json_payload(self, value: Any) -> Payload:
        """A JSON value from a client as the protocol's Json message."""
        body = json_bytes(value)
        return Payload(self.json_type, uvarint_bytes(len(body)) + body)

    def payload_json(self, p: Payload) -> bytes | memoryview | None:
        """A payload as JSON text to splice into a packet; None for no payload."""
        t = p.type_id
        if t == self.json_type:
            body = p.body
            if body[0] < 0x80:
                return memoryview(body)[1:]
            _, pos = r_uvarint(body, 0)
            return memoryview(body)[pos:]
        if t == 0:
            return None
        try:
            value = self.codebook.payload_value(p)
            if t == self.bytes_type:
                return b'{"base64":true,"data":"' + base64.b64encode(value) + b'"}'
            plain = value.to_dict()
            try:
                return json_bytes(plain)
            except EncodeError:
                return json_bytes(_finite(plain))
        except (DecodeError, EncodeError):
            return b"null"  # payloads are checked where they enter; this is never reached

    # -- channel deliveries: once per message per worker ------------------------------------
    @staticmethod
    def channel_prefix(channel_id: int, name: str) -> bytes:
        return b'{"event":"#publish","data":{"channel":' + json_bytes(name) + b',"data":'

    def channel_message(self, prefix: bytes, payload: Payload) -> bytes:
        data = self.payload_json(payload)
        return b"".join((prefix, b"null" if data is None else data, b"}}"))


class ScConnection:
    """One connection's side of ScCodec: what its wire form depends on."""

    __slots__ = ("codec", "style", "probes", "handshake_cid", "auth_cids", "names")

    def __init__(self, codec: ScCodec):
        self.codec = codec
        self.style: int | None = codec.protocol_version  # 1 or 2 once known
        self.probes = 0  # pings sent while the style is unknown
        self.handshake_cid = 0
        self.auth_cids: set[int] | None = None  # pending #authenticate requests
        self.names: dict[int, str] | None = None  # channel id -> name, for #kickOut

    def join(self, parts: Sequence[bytes]) -> bytes:
        return ScCodec.join(parts)

    # -- inbound -------------------------------------------------------------------------------
    def decode(self, frame: bytes, ctx: DecodeContext) -> list[Any]:
        n = len(frame)
        if n == 0:
            self.style = 2
            return [P.Pong()]
        if n == 2 and frame[0] == 0x23:  # '#'
            if frame == b"#2":
                self.style = 1
                return [P.Pong()]
            if frame == b"#1":
                self.style = 1
                return [P.Ping()]
        try:
            packet = _loads(frame.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            return [Rejected(0, "not JSON")]
        if type(packet) is dict:
            msg = self._packet(packet, ctx)
            return msg if type(msg) is list else [msg]
        if type(packet) is list:
            msgs = []
            for p in packet:
                msg = self._packet(p, ctx)
                if type(msg) is list:
                    msgs.extend(msg)
                else:
                    msgs.append(msg)
            return msgs
        return [Rejected(0, "not a SocketCluster packet")]

    def _packet(self, p: Any, ctx: DecodeContext) -> Any:
        if type(p) is not dict:
            return Rejected(0, "a packet is a JSON object")
        event = p.get("event")
        if type(event) is not str:
            # {"rid": n} answers a server invoke: Tickwire never invokes a client.
            return Rejected(0, "a response to no request" if "rid" in p else "a packet without an event")
        cid = p.get("cid", 0)
        if cid is None:
            cid = 0
        elif type(cid) is not int or not 0 <= cid <= MAX_CID:
            return Rejected(0, "cid is not an integer from 1 to 2**32-1")
        if len(event) > ctx.max_string:
            return Rejected(cid, "event name over max_string_length")
        if event[:1] == "#":
            special = _SPECIAL.get(event)
            if special is not None:
                return special(self, p, cid)
        data = p.get("data", _MISSING)
        try:
            payload = NO_PAYLOAD if data is _MISSING else self.codec.json_payload(data)
        except EncodeError as exc:
            return Rejected(cid, str(exc))
        return P.Call(cid, event, payload) if cid else P.Emit(event, payload)

    def _handshake(self, p: dict, cid: int) -> Any:
        if not cid:
            raise ProtocolViolation(HANDSHAKE_REJECTED, "Handshake request was malformatted")  # type: ignore[arg-type]
        self.handshake_cid = cid
        data = p.get("data")
        token = data.get("authToken") if type(data) is dict else None
        if token is None:
            token = ""
        elif type(token) is not str:
            token = _dumps_ascii(token)  # not a token: refused as one (authError), as SocketCluster does
        return P.Handshake("", token, "socketcluster")

    def _authenticate(self, p: dict, cid: int) -> Any:
        if not cid:
            raise ProtocolViolation(HANDSHAKE_REJECTED, "Authenticate request was malformatted")  # type: ignore[arg-type]
        token = p.get("data")
        if self.auth_cids is None:
            self.auth_cids = set()
        if len(self.auth_cids) < 64:  # bounded: a client with more in flight gets plain errors
            self.auth_cids.add(cid)
        # SocketCluster deauthenticates a socket that presents a bad token, whatever it had.
        return [P.Deauthenticate(), P.Authenticate(cid, token if type(token) is str else "")]

    def _subscribe(self, p: dict, cid: int) -> Any:
        data = p.get("data")
        channel = data.get("channel") if type(data) is dict else None
        if type(channel) is not str:
            return Rejected(cid, "Subscribe channel name was malformatted")
        return P.Subscribe(cid, [channel])

    @staticmethod
    def _unsubscribe(p: dict, cid: int) -> Any:
        channel = p.get("data")
        if type(channel) is not str:
            return Rejected(cid, "Unsubscribe channel name was malformatted")
        return P.Unsubscribe(cid, [channel])

    def _publish(self, p: dict, cid: int) -> Any:
        data = p.get("data")
        channel = data.get("channel") if type(data) is dict else None
        if type(channel) is not str:
            return Rejected(cid, "Publish channel name was malformatted")
        try:
            payload = self.codec.json_payload(data.get("data"))  # type: ignore[union-attr]
        except EncodeError as exc:
            return Rejected(cid, str(exc))
        return P.Publish(cid, channel, payload)

    # -- outbound ------------------------------------------------------------------------------
    def encode(self, msg: Any) -> bytes:
        encode = _ENCODERS.get(type(msg))
        return encode(self, msg) if encode is not None else b""  # rooms and the like: not on this wire

    def _ping(self, msg: Any) -> bytes:
        style = self.style
        if style is None:  # unknown: '' then '#1', alternately, until a pong says which
            self.probes += 1
            return b"" if self.probes % 2 else b"#1"
        return b"#1" if style == 1 else b""

    def _pong(self, msg: Any) -> bytes:
        return b"#2" if self.style == 1 else b""

    def _welcome(self, msg: Any) -> bytes:
        data: dict[str, Any] = {
            "id": msg.socket_id,
            "pingTimeout": msg.ping_timeout_ms,
            "isAuthenticated": bool(msg.authenticated),
        }
        if msg.auth_error:
            data["authError"] = {"name": auth_error_name(msg.auth_error), "message": msg.auth_error}
        return json_bytes({"rid": self.handshake_cid, "data": data})

    def _result(self, msg: Any) -> bytes:
        cid = msg.cid
        if not cid:
            return b""
        auth = self.auth_cids
        if auth and cid in auth:
            auth.discard(cid)
            return b'{"rid":%d,"data":{"isAuthenticated":true,"authError":null}}' % cid
        data = self.codec.payload_json(msg.data) if msg.data is not None else None
        if data is None:
            return b'{"rid":%d}' % cid
        return b"".join((b'{"rid":%d,"data":' % cid, data, b"}"))

    def _error(self, msg: Any) -> bytes:
        cid = msg.cid
        if not cid:
            return b""  # SocketCluster has no unsolicited error packet: nobody is waiting
        auth = self.auth_cids
        if auth and cid in auth:
            auth.discard(cid)
            name = auth_error_name(msg.message) if msg.code == ErrorCode.UNAUTHENTICATED else ERROR_NAMES.get(msg.code)
        else:
            name = ERROR_NAMES.get(msg.code, "Error")
        return b'{"rid":%d,"error":' % cid + _error_json(name or "Error", msg.message, msg.code) + b"}"

    def _subscribed(self, msg: Any) -> bytes:
        refused = None
        for info in msg.channels:
            if info.error:
                refused = refused or info
            else:
                if self.names is None:
                    self.names = {}
                self.names[info.id] = info.name
        cid = msg.cid
        if not cid:
            return b""
        if refused is not None:
            name = ERROR_NAMES.get(refused.error, "Error")
            return b'{"rid":%d,"error":' % cid + _error_json(name, refused.message, refused.error) + b"}"
        return b'{"rid":%d}' % cid

    def _emit(self, msg: Any) -> bytes:
        data = self.codec.payload_json(msg.data) if msg.data is not None else None
        head = b'{"event":' + json_bytes(msg.event)
        if data is None:
            return head + b"}"
        return b"".join((head, b',"data":', data, b"}"))

    def _message(self, msg: Any) -> bytes:
        name = self.names.get(msg.channel) if self.names else None
        if name is None:
            return b""
        return self.codec.channel_message(ScCodec.channel_prefix(msg.channel, name), msg.payload)

    def _kicked(self, msg: Any) -> bytes:
        name = self.names.pop(msg.channel, None) if self.names else None
        if name is None:
            return b""
        return b'{"event":"#kickOut","data":' + json_bytes({"channel": name, "message": msg.reason}) + b"}"

    @staticmethod
    def _set_token(msg: Any) -> bytes:
        return b'{"event":"#setAuthToken","data":{"token":' + json_bytes(msg.token) + b"}}"

    @staticmethod
    def _remove_token_out(msg: Any) -> bytes:
        return b'{"event":"#removeAuthToken"}'


_SPECIAL: dict[str, Callable[[ScConnection, dict, int], Any]] = {
    "#handshake": ScConnection._handshake,
    "#authenticate": ScConnection._authenticate,
    "#removeAuthToken": lambda conn, p, cid: P.Deauthenticate(),
    "#subscribe": ScConnection._subscribe,
    "#unsubscribe": lambda conn, p, cid: ScConnection._unsubscribe(p, cid),
    "#publish": ScConnection._publish,
}

_ENCODERS: dict[type, Callable[[ScConnection, Any], bytes]] = {
    P.Ping: ScConnection._ping,
    P.Pong: ScConnection._pong,
    P.Welcome: ScConnection._welcome,
    P.Result: ScConnection._result,
    P.Error: ScConnection._error,
    P.Subscribed: ScConnection._subscribed,
    P.Emit: ScConnection._emit,
    P.Message: ScConnection._message,
    P.Kicked: ScConnection._kicked,
    P.SetToken: lambda conn, msg: ScConnection._set_token(msg),
    P.RemoveToken: lambda conn, msg: ScConnection._remove_token_out(msg),
}
