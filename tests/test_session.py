"""The session state machine, without sockets: frames and time in, messages and frames out."""

from __future__ import annotations

import pytest

from engine._generated import protocol as P
from engine.codec import PackedCodec
from engine.errors import CloseCode, ErrorCode
from engine.limits import Limits
from engine.metrics import Metrics
from engine.packed import Codebook
from engine.session import AWAITING, CLOSING, OPEN, Session

CB = Codebook(P)
CODEC = PackedCodec(CB)


def make(limits: Limits | None = None, now: float = 0.0) -> Session:
    limits = limits or Limits()
    return Session(CODEC, limits, CB.context(max_string=limits.max_string_length), Metrics(), now)


def enc(*msgs: object) -> bytes:
    return b"".join(CB.encode(m) for m in msgs)


def hello() -> bytes:
    return enc(P.Handshake(CB.hash, "", "test"))


def sent(session: Session) -> list[object]:
    return [m for frame in session.take_frames() for m in CB.decode_frame(frame, CB.context())]


def test_handshake_then_messages_in_order():
    s = make()
    assert s.state == AWAITING
    frame = hello() + enc(P.Subscribe(1, ["a"]), P.Call(2, "x", None))
    msgs = s.receive(frame, 0.1)
    assert [type(m) for m in msgs] == [P.Handshake, P.Subscribe, P.Call]
    assert s.state == OPEN and s.pending_calls == 1


def test_message_before_handshake_closes_4009():
    s = make()
    assert s.receive(enc(P.Call(1, "x", None)), 0) == []
    assert s.close_code == CloseCode.MESSAGE_BEFORE_HANDSHAKE and s.state == CLOSING


def test_schema_mismatch_closes_4500():
    s = make()
    assert s.receive(enc(P.Handshake("0000000000000000", "", "")), 0) == []
    assert s.close_code == CloseCode.SCHEMA_MISMATCH


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\x01\x05ab", CloseCode.MALFORMED),  # truncated string in Handshake
        (b"\x7f", CloseCode.UNKNOWN_TYPE),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", CloseCode.MALFORMED),  # endless varint
        (b"", CloseCode.MALFORMED),
    ],
)
def test_malformed_frames_close(frame: bytes, code: int):
    s = make()
    assert s.receive(frame, 0) == []
    assert s.close_code == code
    assert s.stats.protocol_errors == 1


def test_server_only_messages_from_client_close_4101():
    s = make()
    s.receive(hello(), 0)
    assert s.receive(enc(P.Welcome("x", "y", 1, 1, False, "")), 0) == []
    assert s.close_code == CloseCode.UNKNOWN_TYPE


def test_second_handshake_closes_4101():
    s = make()
    s.receive(hello(), 0)
    s.receive(hello(), 0)
    assert s.close_code == CloseCode.UNKNOWN_TYPE


def test_frame_over_max_frame_size_closes_1009():
    s = make(Limits(max_frame_size=10))
    s.receive(b"\x05" * 11, 0)
    assert s.close_code == CloseCode.MESSAGE_TOO_BIG


def test_string_over_limit_closes_before_allocating():
    s = make(Limits(max_string_length=8))
    s.receive(hello()[:0] + enc(P.Handshake("x" * 9, "", "")), 0)
    assert s.close_code == CloseCode.MALFORMED


def test_ping_is_answered_and_pong_ignored():
    s = make()
    s.receive(hello(), 0)
    s.take_frames()
    assert s.receive(enc(P.Ping(), P.Pong()), 1) == []
    assert sent(s) == [P.Pong()]


def test_rate_limit_refuses_then_flood_closes():
    limits = Limits(max_messages_per_second=10, message_burst=5, flood_close_after=1.0)
    s = make(limits)
    s.receive(hello(), 0)
    s.take_frames()
    calls = enc(*[P.Call(i + 1, "p", None) for i in range(8)])
    msgs = s.receive(calls, 0.0)
    assert len(msgs) == 5  # the burst
    errors = sent(s)
    assert [e.cid for e in errors] == [6, 7, 8]
    assert all(e.code == ErrorCode.LIMIT_EXCEEDED for e in errors)
    assert s.stats.rate_limited == 3
    # Emits over the rate get one notice a second, not one each.
    s.receive(enc(*[P.Emit("e", None)] * 5), 0.2)
    assert sent(s) == []  # told at 0.0 already
    s.receive(enc(*[P.Emit("e", None)] * 20), 1.3)
    assert [(e.cid, e.code) for e in sent(s)] == [(0, ErrorCode.LIMIT_EXCEEDED)]
    # Still refused, with no quiet second, after flood_close_after: closed.
    s.receive(enc(*[P.Emit("e", None)] * 20), 2.0)
    assert s.close_code is None
    s.receive(enc(*[P.Emit("e", None)] * 20), 2.6)
    assert s.close_code == CloseCode.FLOOD


def test_rate_recovers_after_a_pause():
    s = make(Limits(max_messages_per_second=10, message_burst=2))
    s.receive(hello(), 0)
    assert len(s.receive(enc(*[P.Emit("e", None)] * 3), 0)) == 2
    assert len(s.receive(enc(*[P.Emit("e", None)] * 2), 1.0)) == 2
    s.receive(enc(*[P.Emit("e", None)] * 3), 3.0)  # refused again, after a quiet spell
    assert s.over_rate_since == 3.0 and s.close_code is None


def test_pending_calls_limit():
    s = make(Limits(max_pending_calls=2))
    s.receive(hello(), 0)
    s.take_frames()
    msgs = s.receive(enc(P.Call(1, "p", None), P.Call(2, "p", None), P.Call(3, "p", None)), 0)
    assert [m.cid for m in msgs] == [1, 2]
    [err] = sent(s)
    assert (err.cid, err.code, err.message) == (3, ErrorCode.LIMIT_EXCEEDED, "max_pending_calls")
    s.reply(1, P.Result(1, None))
    assert [m.cid for m in s.receive(enc(P.Call(4, "p", None)), 0)] == [4]


def test_everything_queued_leaves_in_one_frame():
    s = make()
    s.receive(hello(), 0)
    for i in range(20):
        s.send(P.Emit("e", CB.payload(i)))
    frames = s.take_frames()
    assert len(frames) == 1
    assert len(CB.decode_frame(frames[0], CB.context())) == 20
    assert s.take_frames() == ()


def test_output_over_the_frame_limit_is_split_and_counted():
    s = make(Limits(max_out_frame_size=100))
    for i in range(10):
        s.push(b"\x05" * 30)  # ten 30-byte parts
    frames = s.take_frames()
    assert [len(f) for f in frames] == [90, 90, 90, 30]
    assert s.stats.frames_split == 3


def test_handshake_timeout():
    s = make(Limits(handshake_timeout=5))
    s.poll(4.9)
    assert s.close_code is None
    s.poll(5.1)
    assert s.close_code == CloseCode.HANDSHAKE_TIMEOUT


def test_ping_then_ping_timeout():
    s = make(Limits(ping_interval=2, ping_timeout=5))
    s.receive(hello(), 0)
    s.take_frames()
    assert s.poll(1.0) is False
    assert s.poll(2.5) is True
    assert sent(s) == [P.Ping()]
    assert s.poll(3.0) is False  # one ping per interval
    s.receive(enc(P.Pong()), 3.5)  # heard from the client
    s.poll(7.0)
    assert s.close_code is None
    s.poll(8.6)
    assert s.close_code == CloseCode.PING_TIMEOUT


def test_slow_reader_closes_after_timeout():
    s = make(Limits(slow_reader_timeout=3))
    s.receive(hello(), 0)
    s.set_backlogged(True, 1.0)
    s.receive(enc(P.Pong()), 3.5)
    s.poll(3.9)
    assert s.close_code is None
    s.set_backlogged(False, 3.95)
    s.poll(4.5)
    assert s.close_code is None
    s.set_backlogged(True, 5.0)
    s.receive(enc(P.Pong()), 8.0)
    s.poll(8.1)
    assert s.close_code == CloseCode.SLOW_READER


def test_close_keeps_queued_output_but_fail_drops_it():
    s = make()
    s.receive(hello(), 0)
    s.send(P.Emit("bye", None))
    s.close(1001, "going away")
    assert len(s.take_frames()) == 1
    s2 = make()
    s2.receive(hello(), 0)
    s2.send(P.Emit("x", None))
    s2.fail(CloseCode.MALFORMED, "bad")
    assert s2.take_frames() == ()
    assert s2.receive(enc(P.Ping()), 1) == []  # closing: nothing more is read


@pytest.mark.parametrize("queued", [[], [b"q" * 20], [b"q" * 40], [b"q" * 96]])
def test_a_room_section_over_the_limit_repeats_its_header_in_each_frame_it_continues(queued):
    # Parts are opaque bytes here: H stands for a Tick header, a/b/c for the section's messages.
    s = make(Limits(max_out_frame_size=100))
    s.state = OPEN
    for part in queued:
        s.push(part)
    header = b"H" * 5
    section = [header, b"a" * 60, b"b" * 60, b"c" * 30]
    frames = list(s.frames_with(section))
    assert len(frames) > 1 and all(len(f) <= 100 for f in frames)
    # Nothing lost or reordered, and the header is never a frame's last part.
    assert b"".join(f.replace(header, b"") for f in frames) == b"".join(queued) + b"a" * 60 + b"b" * 60 + b"c" * 30
    assert not any(f.endswith(header) for f in frames)
    # Every frame that carries the section's messages has the header before them.
    for f in frames:
        first = min((f.index(m) for m in (b"a", b"b", b"c") if m in f), default=None)
        if first is not None:
            assert f.find(header) != -1 and f.find(header) < first
