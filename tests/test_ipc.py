"""Inter-process framing: round trips, the incremental parser, bad input, coalesced writes."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import ipc
from engine.ipc import (
    Counts,
    FrameReader,
    FrameTooLarge,
    Handle,
    Hello,
    IPCError,
    KvDel,
    KvGet,
    KvSet,
    Link,
    Presence,
    Pub,
    Rep,
    Req,
    Stats,
    Sub,
    Unhandle,
    Unsub,
    decode,
    encode,
)

from helpers import arun

names = st.text(max_size=40)
u32 = st.integers(0, 0xFFFFFFFF)
blobs = st.binary(max_size=200)
messages = st.one_of(
    st.builds(Hello, names),
    st.builds(Sub, names),
    st.builds(Unsub, names),
    st.builds(Pub, names, u32, blobs),
    st.builds(Handle, names),
    st.builds(Unhandle, names),
    st.builds(Req, u32, u32, names, blobs),
    st.builds(Rep, u32, st.integers(0, 255), blobs),
    st.builds(Counts, st.lists(st.tuples(names, u32), max_size=5).map(tuple)),
    st.builds(Presence, u32, names),
    st.builds(KvGet, u32, names),
    st.builds(KvSet, u32, u32, names, blobs),
    st.builds(KvDel, u32, names),
    st.builds(Stats, u32),
)

EXAMPLES = [
    Hello("worker-1"),
    Sub("room.lobby"),
    Unsub("ünïcode ✓"),
    Pub("room.1", 42, b"\x00\x01body"),
    Pub("", 0, b""),
    Handle("rooms.place"),
    Unhandle("rooms.place"),
    Req(7, 2500, "rooms.place", b"data"),
    Rep(7, 0, b"answer"),
    Rep(8, 8, b"nobody handles it"),
    Counts((("a", 1), ("bb", 70000))),
    Counts(()),
    Presence(9, "room.1"),
    KvGet(10, "k"),
    KvSet(11, 0, "k", b"v" * 1000),
    KvDel(12, "k"),
    Stats(13),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_op_round_trips(msg):
    frame = encode(msg)
    assert struct.unpack_from("<I", frame)[0] == len(frame) - 4
    assert decode(frame) == msg


def test_pub_frame_is_what_a_broker_forwards():
    # The broker forwards PUB frames as received: the same bytes must decode on the worker.
    frame = ipc.pub_frame("c", 5, b"xyz")
    assert frame == encode(Pub("c", 5, b"xyz")) and len(frame) == 4 + 7 + 1 + 3


def test_counts_are_split_to_fit_the_frame_limit():
    items = [(f"channel-{i}", i) for i in range(100)]
    frames = ipc.counts_frames(items, max_frame=200)
    assert len(frames) > 1 and all(len(f) - 4 <= 200 for f in frames)
    assert [x for f in frames for x in decode(f).items] == items


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=12), st.lists(st.integers(1, 64), max_size=30))
def test_reader_returns_every_frame_whatever_the_chunking(msgs, cuts):
    stream = b"".join(encode(m) for m in msgs)
    reader = FrameReader()
    got, at = [], 0
    for cut in cuts:
        got += reader.feed(stream[at : at + cut])
        at += cut
    got += reader.feed(stream[at:])
    assert [decode(f) for f in got] == msgs
    assert reader.buffered == 0


def test_reader_takes_many_frames_in_one_chunk_and_a_big_one_in_many():
    small = [encode(Sub(f"c{i}")) for i in range(50)]
    reader = FrameReader()
    assert reader.feed(b"".join(small)) == small
    big = encode(Pub("big", 1, bytes(range(256)) * 4096))  # 1 MiB
    out = []
    for i in range(0, len(big), 65536):
        out += reader.feed(big[i : i + 65536])
    assert out == [big]


def test_oversized_frame_is_refused_from_its_length_alone():
    reader = FrameReader(max_frame=1000)
    with pytest.raises(FrameTooLarge):
        reader.feed(struct.pack("<I", 1001))  # four bytes: nothing else is read or buffered
    reader = FrameReader(max_frame=1000)
    assert reader.feed(b"\xff\xff") == []  # half a length: wait
    with pytest.raises(FrameTooLarge):
        reader.feed(b"\xff\xff")  # 4 GiB declared: refused, never allocated
    with pytest.raises(IPCError):
        FrameReader().feed(struct.pack("<I", 0))


@pytest.mark.parametrize(
    "frame",
    [
        b"\x01\x00\x00\x00\x63",  # unknown op
        b"\x01\x00\x00",  # no op
        struct.pack("<IBH", 3, ipc.Op.SUB, 10),  # string longer than the frame
        struct.pack("<IBH", 5, ipc.Op.SUB, 2) + b"\xff\xfe",  # not UTF-8
        struct.pack("<IBH", 6, ipc.Op.SUB, 2) + b"abc",  # trailing bytes after the string
        struct.pack("<IBHI", 8, ipc.Op.PUB, 9, 1) + b"a",  # channel past the end
        struct.pack("<IB", 2, ipc.Op.REP) + b"\x00",  # REP too short
        struct.pack("<IBI", 5, ipc.Op.COUNTS, 1_000_000),  # a count the frame cannot hold
        struct.pack("<IBI", 11, ipc.Op.COUNTS, 1) + struct.pack("<HI", 5, 1),  # entry past the end
        struct.pack("<IBI", 6, ipc.Op.STATS, 1) + b"x",  # STATS with extra bytes
        struct.pack("<IBI", 9, ipc.Op.STATS, 1),  # declared length disagrees
    ],
)
def test_malformed_frames_raise_ipc_error(frame):
    with pytest.raises(IPCError):
        decode(frame)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_ipc_error(data):
    reader = FrameReader(max_frame=256)
    try:
        for frame in reader.feed(data):
            decode(frame)
    except IPCError:
        pass


def test_pub_fast_paths_agree_with_decode_and_check_lengths():
    frame = ipc.pub_frame("chän", 9, b"body")
    assert ipc.pub_channel(frame) == "chän".encode()
    assert Pub(*ipc.pub_fields(frame)) == decode(frame)
    short = struct.pack("<IBHI", 8, ipc.Op.PUB, 9, 1) + b"a"
    for bad in (short, frame[:10]):
        with pytest.raises(IPCError):
            ipc.pub_channel(bad)
        with pytest.raises(IPCError):
            ipc.pub_fields(bad)


def test_encoding_refuses_strings_the_framing_cannot_carry():
    with pytest.raises(IPCError):
        ipc.sub_frame("x" * 70000)


# -- Link ----------------------------------------------------------------------------------
class RecordingTransport:
    """A transport seam: records writes; closing reports connection_lost like asyncio's."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.protocol: Link | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self._lost()

    def abort(self) -> None:
        self.aborted = True
        self._lost()

    def _lost(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)  # type: ignore[union-attr]


class RecordingOwner:
    def __init__(self, fail: Exception | None = None) -> None:
        self.frames: list[bytes] = []
        self.events: list[str] = []
        self.fail = fail

    def opened(self, link: Link) -> None:
        self.events.append("opened")

    def received(self, link: Link, frames: list[bytes]) -> None:
        if self.fail is not None:
            raise self.fail
        for frame in frames:
            decode(frame)
        self.frames += frames

    def lost(self, link: Link, exc: Exception | None) -> None:
        self.events.append("lost")


def open_link(owner=None, **kwargs) -> tuple[Link, RecordingTransport, RecordingOwner]:
    owner = owner or RecordingOwner()
    link = Link(owner, **kwargs)
    transport = RecordingTransport()
    transport.protocol = link
    link.connection_made(transport)  # type: ignore[arg-type]
    return link, transport, owner


def test_frames_queued_in_one_loop_iteration_leave_in_one_write():
    async def scenario():
        link, transport, _ = open_link()
        frames = [ipc.pub_frame("c", 1, b"x" * 64) for _ in range(100)]
        for f in frames[:60]:
            link.offer(f)
        for f in frames[60:]:
            link.send(f)
        assert transport.writes == []  # nothing leaves before the iteration ends
        await asyncio.sleep(0)
        assert transport.writes == [b"".join(frames)]
        link.send(frames[0])
        await asyncio.sleep(0)
        link.send(frames[1])
        await asyncio.sleep(0)
        assert len(transport.writes) == 3  # one write per iteration that had something
        assert (link.writes, link.frames_out) == (3, 102)

    arun(scenario())


def test_offer_drops_for_a_peer_that_stopped_reading_send_never_does():
    async def scenario():
        link, transport, _ = open_link(max_buffer=1000)
        frame = ipc.pub_frame("c", 1, b"x" * 300)
        assert [link.offer(frame) for _ in range(4)] == [True, True, True, False]  # over max_buffer
        link.pause_writing()  # the transport's own buffer is full
        await asyncio.sleep(0)
        assert link.offer(frame) is False
        link.send(ipc.sub_frame("control"))  # control frames are never dropped
        link.resume_writing()
        assert link.offer(frame) is True
        await asyncio.sleep(0)
        assert link.dropped == 2
        assert [type(decode(f)).__name__ for f in FrameReader().feed(b"".join(transport.writes))] == [
            "Pub",
            "Pub",
            "Pub",
            "Sub",
            "Pub",
        ]

    arun(scenario())


def test_malformed_input_closes_the_link_cleanly():
    async def scenario():
        link, transport, owner = open_link(max_frame=100)
        link.data_received(encode(Sub("ok")))
        link.data_received(struct.pack("<I", 10_000))  # over max_frame
        await asyncio.sleep(0)
        assert transport.aborted and link.closed and link.malformed == 1
        assert [decode(f) for f in owner.frames] == [Sub("ok")]
        assert owner.events == ["opened", "lost"]
        link.data_received(encode(Sub("late")))  # ignored after close
        link.send(b"nothing")  # and sends are no-ops
        assert len(owner.frames) == 1

        link2, transport2, _ = open_link()
        link2.data_received(b"\x02\x00\x00\x00\x63\x00")  # unknown op, caught in dispatch
        assert transport2.aborted and link2.malformed == 1

        link3, transport3, _ = open_link(RecordingOwner(fail=KeyError("bug")))
        link3.data_received(encode(Sub("x")))  # a bug in the owner: logged, link closed
        assert transport3.aborted

    arun(scenario())


def test_links_over_a_real_unix_socketpair():
    async def scenario():
        loop = asyncio.get_running_loop()
        a_sock, b_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        got: asyncio.Queue[bytes] = asyncio.Queue()

        class Collect(RecordingOwner):
            def received(self, link, frames):
                for f in frames:
                    got.put_nowait(f)

        _, a = await loop.create_unix_connection(lambda: Link(RecordingOwner()), sock=a_sock)
        _, b = await loop.create_unix_connection(lambda: Link(Collect()), sock=b_sock)
        big = ipc.pub_frame("big", 3, b"z" * 2_000_000)
        frames = [ipc.pub_frame("c", i, b"%d" % i) for i in range(1000)] + [big]
        for f in frames:
            a.send(f)
        received = [await asyncio.wait_for(got.get(), 5) for _ in frames]
        assert received == frames
        assert a.writes == 1
        a.close()
        b.close()
        await asyncio.sleep(0.01)

    arun(scenario())
