"""What Tickwire's load generator sends and how it counts what it gets, without sockets.

The load must cost much less per delivered message than the server, or it measures
itself. So the client's messages are encoded once with the engine's Codebook and only the
changing bytes are put in later (a timestamp, a cid, a channel name or id), and the
server's frames are counted without decoding them when their shape allows it:

- a fan-out delivery is `Message` + channel id + `Bytes` length + data: a fixed length
  (35 B for 32 B of data). A frame is exactly k deliveries when its length is k times
  that and every k-th byte run holds that head: the first message's head gives its length,
  so the next one starts where it is expected, and so on, which is the decoder's own walk.
  Three strided slices check that (`DeliveryCounter.count`).
- a round trip's reply is the same bytes every time (one call in flight per connection,
  with a fixed cid; `echo` returns what it got): one comparison.
- churn's replies (`Subscribed` with one accepted channel, `Result` with no payload) are
  walked with a few varint reads (`scan_acks`), without building records.
- a room's send-tick frame (the mmo scenario) is its `Tick` header and at most one
  `EntitySync`: `room_frame` reads the header's tick number, and `SyncCounter` counts the
  entity records by walking the op and group headers of the EntitySync data only (a
  group's byte length follows from its count and field mask), never the records.

Anything else (a ping riding with deliveries, an error) goes to the full decoder. The
tests check every fast count against `Codebook.decode_frame`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from engine._generated import protocol as P
from engine.interest import DEPART, ENTER, UPDATE, SyncLayout
from engine.packed import Codebook, DecodeContext, DecodeError, Payload, r_uvarint, uvarint_bytes

__all__ = ["CLIENT", "ClientFrames", "DeliveryCounter", "SyncCounter", "room_frame", "scan_acks", "stamp_of"]

CLIENT = "tickwire-bench-load"
STAMP = struct.Struct("<d")
MESSAGE = P.Message.TYPE_ID
SUBSCRIBED = P.Subscribed.TYPE_ID
RESULT = P.Result.TYPE_ID
TICK = P.Tick.TYPE_ID
ENTITY_SYNC = P.EntitySync.TYPE_ID
BYTES = P.Bytes.TYPE_ID
ECHO_CID = 1  # one call in flight per connection: the same cid every time
MAX_CID = 1 << 14  # cids cycle below this (two varint bytes at most)


def stamp_of(data: bytes, offset: int) -> float:
    """The send time a publisher wrote at the start of a message's data."""
    return STAMP.unpack_from(data, offset)[0]


class ClientFrames:
    """The client's side: every frame the load sends, encoded once, and a full decoder."""

    def __init__(self, size: int = 32, channel: str = "c"):
        if size < STAMP.size:
            raise ValueError(f"size must be at least {STAMP.size} bytes (the timestamp)")
        self.size = size
        self.channel = channel
        self.codebook = Codebook(P)
        cb = self.codebook
        self.handshake = cb.encode(P.Handshake(cb.hash, "", CLIENT))
        self.subscribe_channel = cb.encode(P.Subscribe(1, [channel]))
        self.pad = b"x" * (size - STAMP.size)
        # A Publish of `size` bytes of data: everything before the data is the same each time.
        sample = cb.encode(P.Publish(0, channel, self.data_payload(0.0)))
        self.publish_head = sample[: len(sample) - size]
        self.call_echo = cb.encode(P.Call(ECHO_CID, "echo", self.data_payload(0.0)))
        self.echo_reply = cb.encode(P.Result(ECHO_CID, self.data_payload(0.0)))
        self.ping = cb.encode(P.Ping())
        self.pong = cb.encode(P.Pong())
        self._cids = [uvarint_bytes(c) for c in range(MAX_CID)]
        self._next_cid = 0

    def data(self, stamp: float) -> bytes:
        return STAMP.pack(stamp) + self.pad

    def data_payload(self, stamp: float) -> Payload:
        return self.codebook.payload(self.data(stamp))

    def publish(self, stamp: float) -> bytes:
        """One Publish (no acknowledgement) of `size` bytes starting with `stamp`."""
        return self.publish_head + STAMP.pack(stamp) + self.pad

    def cid(self) -> bytes:
        """The next request id, as its varint (1 .. MAX_CID-1, cycling)."""
        c = self._next_cid + 1
        if c >= MAX_CID:
            c = 1
        self._next_cid = c
        return self._cids[c]

    def subscribe(self, name: bytes) -> bytes:
        """Subscribe (acknowledged) to one channel; `name` is ASCII, under 128 bytes."""
        return b"\x0c" + self.cid() + b"\x01" + bytes((len(name),)) + name

    def unsubscribe(self, channel_id: int) -> bytes:
        """Unsubscribe (acknowledged) from one channel id: a uint32 vector of one."""
        return b"\x0e" + self.cid() + b"\x01" + struct.pack("<I", channel_id)

    def context(self) -> DecodeContext:
        """A decoding context for one connection (its channel types are its own)."""
        return self.codebook.context(max_string=1 << 20, max_vector=1 << 20, channel_types={})

    def decode(self, frame: bytes, ctx: DecodeContext) -> list:
        return self.codebook.decode_frame(frame, ctx)


class DeliveryCounter:
    """Counts the deliveries of one channel in a frame by length arithmetic.

    Valid for channels whose every message is `size` bytes of `Bytes`: the fan-out
    channel of bench/apps.py, whose publisher always sends `size` bytes.
    """

    __slots__ = ("channel_id", "head", "length", "data_offset", "_strides")

    def __init__(self, channel_id: int, size: int):
        self.channel_id = channel_id
        self.head = uvarint_bytes(MESSAGE) + uvarint_bytes(channel_id) + uvarint_bytes(size)
        self.length = len(self.head) + size
        self.data_offset = len(self.head)  # where the data (its timestamp first) begins
        self._strides = tuple(self.head[i : i + 1] for i in range(len(self.head)))

    def count(self, frame: bytes) -> int:
        """k when the frame is exactly k deliveries of this channel, else 0 (decode it)."""
        n = len(frame)
        size = self.length
        k = n // size
        if k == 0 or k * size != n:
            return 0
        for i, b in enumerate(self._strides):
            if frame[i::size] != b * k:
                return 0
        return k

    def stamps(self, frame: bytes, k: int) -> list[float]:
        """The publishers' timestamps of the k deliveries of a counted frame."""
        off, size = self.data_offset, self.length
        return [STAMP.unpack_from(frame, off + i * size)[0] for i in range(k)]


def scan_acks(frame: bytes) -> tuple[list[int], int] | None:
    """The acknowledgements of churn in a frame, or None when it holds anything else.

    Returns (ids of the channels of the Subscribed messages, number of Results): each
    Subscribed must hold one accepted channel and each Result no payload, which is what
    the server answers a one-channel Subscribe and an acknowledged Unsubscribe with.
    Anything else (an error, a ping, a refused channel) returns None: decode the frame.
    """
    ids: list[int] = []
    results = 0
    pos, end = 0, len(frame)
    try:
        while pos < end:
            t = frame[pos]
            if t == SUBSCRIBED:
                pos += 1
                if frame[pos] >= 0x80:  # cid
                    _, pos = r_uvarint(frame, pos)
                else:
                    pos += 1
                if frame[pos] != 1:  # one ChannelInfo
                    return None
                n = frame[pos + 1]  # name length
                if n >= 0x80:
                    return None
                pos += 2 + n
                channel_id = frame[pos]
                if channel_id >= 0x80:
                    channel_id, pos = r_uvarint(frame, pos)
                else:
                    pos += 1
                if frame[pos] >= 0x80:  # type id
                    _, pos = r_uvarint(frame, pos)
                else:
                    pos += 1
                if frame[pos] != 0 or frame[pos + 1] != 0:  # error 0, empty message
                    return None
                pos += 2
                if channel_id == 0:
                    return None
                ids.append(channel_id)
            elif t == RESULT:
                pos += 1
                if frame[pos] >= 0x80:
                    _, pos = r_uvarint(frame, pos)
                else:
                    pos += 1
                if frame[pos] != 0:  # no payload
                    return None
                pos += 1
                results += 1
            else:
                return None
    except (IndexError, DecodeError):
        return None
    if pos != end:
        return None
    return ids, results


def acks_of(messages: Sequence[object]) -> tuple[list[int], int, int]:
    """The same as scan_acks from decoded messages: (accepted channel ids, Results, errors)."""
    ids: list[int] = []
    results = errors = 0
    for m in messages:
        if type(m) is P.Subscribed:
            for info in m.channels:
                if info.error:
                    errors += 1
                else:
                    ids.append(info.id)
        elif type(m) is P.Result:
            results += 1
        elif type(m) is P.Error:
            errors += 1
    return ids, results, errors


def room_frame(frame: bytes) -> tuple[int, int, int] | None:
    """A send-tick frame of one room: (tick number, start, end of the EntitySync data;
    start == end when there is none), or None when the frame holds anything else (decode
    it). The Tick header is six varints: room, tick, time, applied and echoed input, echo
    age (WIRE.md; schemas/protocol.fbs)."""
    try:
        if frame[0] != TICK:
            return None
        pos = 1
        while frame[pos] & 0x80:  # room
            pos += 1
        tick, pos = r_uvarint(frame, pos + 1)
        for _ in range(4):
            while frame[pos] & 0x80:
                pos += 1
            pos += 1
        end = len(frame)
        if pos == end:
            return tick, pos, pos
        if frame[pos] != ENTITY_SYNC:
            return None
        n, start = r_uvarint(frame, pos + 1)
    except (IndexError, DecodeError):
        return None
    if start + n != end:
        return None
    return tick, start, end


class SyncCounter:
    """Counts the records of EntitySync data (WIRE.md, "Entity sync") from its headers.

    `count(data)` returns (update records, enter records, departures, cell leaves). Each
    group's header gives its kind, field mask, count and id coding, hence its byte length,
    so the walk skips the records. Clients of the same view centre get the same bytes in
    a tick, so counts are kept per distinct message (`cache`, cleared when it grows).
    tests/test_bench_harness.py checks the counts against `apply_entity_sync`.
    """

    MAX_CACHE = 4096

    def __init__(self, layout: SyncLayout):
        self.layout = layout
        self.ncells = layout.ncells
        self.id_bits = layout.id_bits
        self.full_bits = sum(layout.widths)
        self._mask_bits: dict[int, int] = {}
        self.cache: dict[bytes, tuple[int, int, int, int]] = {}

    def _bits(self, mask: int) -> int:
        b = self._mask_bits.get(mask)
        if b is None:
            if mask == 0 or mask >> len(self.layout.widths):
                raise DecodeError(f"update group with field mask {mask}")
            b = self._mask_bits[mask] = sum(w for i, w in enumerate(self.layout.widths) if mask >> i & 1)
        return b

    def count(self, data: bytes) -> tuple[int, int, int, int]:
        hit = self.cache.get(data)
        if hit is not None:
            return hit
        got = self.walk(data)
        if len(self.cache) >= self.MAX_CACHE:
            self.cache.clear()
        self.cache[data] = got
        return got

    def walk(self, data: bytes) -> tuple[int, int, int, int]:
        updates = enters = departs = leaves = 0
        pos, end = 0, len(data)
        try:
            while pos < end:
                tag, pos = r_uvarint(data, pos)
                if tag >> 1 >= self.ncells:
                    raise DecodeError(f"cell {tag >> 1} is outside the grid")
                if tag & 1:
                    leaves += 1
                    continue
                ngroups, pos = r_uvarint(data, pos)
                for _ in range(ngroups):
                    code, pos = r_uvarint(data, pos)
                    count, pos = r_uvarint(data, pos)
                    kind = code & 3
                    if kind == UPDATE:
                        fbits = self._bits(code >> 2)
                        updates += count
                    elif kind == ENTER and code >> 2 == 0:
                        fbits = self.full_bits
                        enters += count
                    elif kind == DEPART and code >> 2 == 0:
                        fbits = 0
                        departs += count
                    else:
                        raise DecodeError(f"bad group code {code}")
                    if count == 0:
                        raise DecodeError("empty entity group")
                    gap = data[pos]
                    pos += 1
                    if gap:
                        _, pos = r_uvarint(data, pos)
                        rbits = gap + fbits
                    else:
                        rbits = self.id_bits + fbits
                    pos += (count * rbits - gap + 7) >> 3
        except IndexError:
            raise DecodeError("truncated entity sync data") from None
        if pos != end:
            raise DecodeError("entity sync data does not end where its last group does")
        return updates, enters, departs, leaves
