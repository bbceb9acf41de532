"""Codecs: how one connection's protocol messages become frames, and back.

A codec is chosen per connection by WebSocket subprotocol at the handshake, as
SocketCluster let its users plug codecs in. Every codec speaks the same protocol records
(engine._generated.protocol), so the session and the services never know which one is in
use. `packed` is Tickwire's compact binary format (codecs/WIRE.md); the SocketCluster JSON
codec plugs in through the same interface.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from ._generated import protocol as P
from .packed import Codebook, DecodeContext, Payload, uvarint_bytes

__all__ = ["Codec", "PackedCodec", "PACKED_SUBPROTOCOL", "Rejected"]

PACKED_SUBPROTOCOL = "tickwire.packed.v1"


class Rejected:
    """What a codec decodes a packet to when it is well-formed on the wire but stands for
    no protocol message (SocketCluster's "raw" messages, a subscribe without a channel
    name): the session counts it against the rate and, when it carried a request id,
    answers it with `bad_request`, as SocketCluster answers a malformed request."""

    __slots__ = ("cid", "reason")

    def __init__(self, cid: int, reason: str):
        self.cid = cid
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rejected) and (other.cid, other.reason) == (self.cid, self.reason)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rejected({self.cid}, {self.reason!r})"


class Codec(Protocol):
    name: str
    subprotocol: str | None
    text: bool  # frames are text (JSON codecs) rather than binary
    # Pings and pongs are frames of their own, not messages inside a frame (SocketCluster's
    # '' and '#1'/'#2'): the session never joins them with other messages.
    pings_are_frames: bool
    # The client's liveness check counts only the server's pings (SocketCluster's client
    # closes after pingTimeout without one, whatever else arrives): ping every interval,
    # not only when the connection has been silent.
    ping_always: bool
    # A frame is its messages back to back (join is b"".join): a room's section can go out
    # without a join of its own (Socket.room_frame).
    concatenates: bool

    def connection(self) -> Any:
        """This codec's side of one connection: an object with decode, encode and join.
        A stateless codec is its own; a codec whose wire form depends on what the peer said
        (SocketCluster's ping style, the request id of its handshake) makes one per
        connection, holding that state and nothing else."""

    def close_code(self, code: int) -> int:
        """The close code this codec's clients expect for one of WIRE.md's."""

    def decode(self, frame: bytes, ctx: DecodeContext) -> list[Any]:
        """The protocol records in one frame; DecodeError (UnknownType) when malformed, or
        errors.ProtocolViolation for a packet that closes the connection with its own code."""

    def encode(self, msg: Any) -> bytes:
        """One protocol record, ready to be joined with others into a frame."""

    def join(self, parts: Sequence[bytes]) -> bytes:
        """Several encoded messages as one frame."""

    def schema_ok(self, schema_hash: str) -> bool:
        """Whether a client built with this schema hash may connect."""

    def channel_prefix(self, channel_id: int, name: str) -> bytes:
        """What precedes a payload's body in a channel delivery (computed once per channel)."""

    def channel_message(self, prefix: bytes, payload: Payload) -> bytes:
        """A channel delivery: encoded once per message per worker, shared by subscribers."""


class PackedCodec:
    """Tickwire's binary format: a frame is messages back to back (WIRE.md)."""

    name = "packed"
    subprotocol = PACKED_SUBPROTOCOL
    text = False
    pings_are_frames = False
    ping_always = False
    concatenates = True

    def __init__(self, codebook: Codebook):
        self.codebook = codebook
        self.hash = codebook.hash

    def connection(self) -> "PackedCodec":
        return self

    @staticmethod
    def close_code(code: int) -> int:
        return code

    def decode(self, frame: bytes, ctx: DecodeContext) -> list[Any]:
        return self.codebook.decode_frame(frame, ctx)

    def encode(self, msg: Any) -> bytes:
        return self.codebook.encode(msg)

    @staticmethod
    def join(parts: Sequence[bytes]) -> bytes:
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def schema_ok(self, schema_hash: str) -> bool:
        return schema_hash == self.hash

    @staticmethod
    def channel_prefix(channel_id: int, name: str) -> bytes:
        return uvarint_bytes(P.Message.TYPE_ID) + uvarint_bytes(channel_id)

    @staticmethod
    def channel_message(prefix: bytes, payload: Payload) -> bytes:
        return prefix + payload.body
