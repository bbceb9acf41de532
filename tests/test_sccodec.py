"""The SocketCluster codec (engine/sccodec.py), pure: packets in, protocol records out and
back, and the session driven through it (pings as frames of their own, close codes, rate).
Malformed JSON, wrong shapes, oversized frames and floods get errors or close codes, never
an exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._generated import protocol as P
from engine.codec import Rejected
from engine.errors import CloseCode, ErrorCode, ProtocolViolation
from engine.limits import Limits
from engine.metrics import Metrics
from engine.packed import NO_PAYLOAD, Codebook, Payload
from engine.sccodec import PONG_TIMEOUT, ScCodec
from engine.session import AWAITING, CLOSING, OPEN, Session

from codec_values import everything

MODEL, E = everything()
CB = Codebook(P, E)
CODEC = ScCodec(CB)
CTX = CB.context()


def j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def decode(frame: bytes | str, conn=None) -> list:
    conn = conn or CODEC.connection()
    return conn.decode(frame.encode() if isinstance(frame, str) else frame, CTX)


def value(p: Payload):
    return CB.payload_value(p)


def out(data: bytes | memoryview) -> object:
    return json.loads(bytes(data))


# ----------------------------------------------------------------------------------------
# client to server


def test_handshake_keeps_its_cid_for_the_answer():
    conn = CODEC.connection()
    (hs,) = decode(j({"event": "#handshake", "data": {"authToken": "abc"}, "cid": 7}), conn)
    assert hs == P.Handshake("", "abc", "socketcluster")
    welcome = conn.encode(P.Welcome("worker-0.1", "worker-0", 8000, 20000, False, ""))
    assert out(welcome) == {"rid": 7, "data": {"id": "worker-0.1", "pingTimeout": 20000, "isAuthenticated": False}}
    assert decode(j({"event": "#handshake", "data": {"authToken": None}, "cid": 1}))[0].token == ""
    assert decode(j({"event": "#handshake", "cid": 1}))[0].token == ""
    assert decode(j({"event": "#handshake", "data": {"authToken": 5}, "cid": 1}))[0].token == "5"  # refused as a token


def test_welcome_with_a_refused_token_names_the_error_as_socketcluster_does():
    conn = CODEC.connection()
    decode(j({"event": "#handshake", "data": {"authToken": "x"}, "cid": 3}), conn)
    expired = out(conn.encode(P.Welcome("s", "w", 1, 2, False, "token expired")))
    assert expired["data"]["authError"] == {"name": "AuthTokenExpiredError", "message": "token expired"}
    invalid = out(conn.encode(P.Welcome("s", "w", 1, 2, False, "invalid token")))
    assert invalid["data"]["authError"]["name"] == "AuthTokenInvalidError"


@pytest.mark.parametrize("event", ["#handshake", "#authenticate"])
def test_handshake_or_authenticate_without_cid_closes_4008(event):
    with pytest.raises(ProtocolViolation) as err:
        decode(j({"event": event, "data": {}}))
    assert err.value.close_code == 4008


def test_invoke_and_transmit():
    (call,) = decode(j({"event": "add", "data": {"a": 1, "b": [2, "é"]}, "cid": 5}))
    assert isinstance(call, P.Call) and (call.cid, call.procedure) == (5, "add")
    assert value(call.data) == {"a": 1, "b": [2, "é"]}
    (emit,) = decode(j({"event": "note", "data": "hi"}))
    assert isinstance(emit, P.Emit) and emit.event == "note" and value(emit.data) == "hi"
    (bare,) = decode(j({"event": "ping-me", "cid": 2}))
    assert bare.data is NO_PAYLOAD  # no data: the procedure gets None
    (null,) = decode(j({"event": "x", "data": None}))
    assert value(null.data) is None and null.data.type_id == CB.json_type


def test_channel_packets_with_and_without_cid():
    assert decode(j({"event": "#subscribe", "data": {"channel": "c", "waitForAuth": False}, "cid": 3})) == [P.Subscribe(3, ["c"])]
    assert decode(j({"event": "#subscribe", "data": {"channel": "c"}})) == [P.Subscribe(0, ["c"])]
    assert decode(j({"event": "#unsubscribe", "data": "c"})) == [P.Unsubscribe(0, ["c"])]
    assert decode(j({"event": "#unsubscribe", "data": "c", "cid": 9})) == [P.Unsubscribe(9, ["c"])]
    (pub,) = decode(j({"event": "#publish", "data": {"channel": "c", "data": {"x": 1}}, "cid": 4}))
    assert (pub.cid, pub.channel, value(pub.data)) == (4, "c", {"x": 1})
    (pub,) = decode(j({"event": "#publish", "data": {"channel": "c"}}))
    assert (pub.cid, value(pub.data)) == (0, None)


def test_tokens():
    # A bad token leaves the socket unauthenticated, as in SocketCluster, whatever it had.
    assert decode(j({"event": "#authenticate", "data": "tok", "cid": 2})) == [P.Deauthenticate(), P.Authenticate(2, "tok")]
    assert decode(j({"event": "#authenticate", "data": 12, "cid": 2}))[1] == P.Authenticate(2, "")
    assert [type(m) for m in decode(j([{"event": "#authenticate", "data": "t", "cid": 3}, {"event": "e"}]))] == [
        P.Deauthenticate, P.Authenticate, P.Emit,
    ]
    assert decode(j({"event": "#removeAuthToken"})) == [P.Deauthenticate()]


def test_a_batch_is_its_packets_in_order():
    frame = j([
        {"event": "#subscribe", "data": {"channel": "a"}, "cid": 1},
        {"event": "#publish", "data": {"channel": "a", "data": 1}},
        {"event": "e", "data": 2},
        "garbage",
        {"event": "p", "data": 3, "cid": 2},
    ])
    kinds = [type(m) for m in decode(frame)]
    assert kinds == [P.Subscribe, P.Publish, P.Emit, Rejected, P.Call]
    assert decode(b"[]") == []


def test_pings_and_pongs_in_both_styles():
    conn = CODEC.connection()
    assert conn.encode(P.Ping()) == b""  # unknown style: '' (v2) first...
    assert conn.encode(P.Ping()) == b"#1"  # ...then '#1' (v1), until a pong says which
    assert decode(b"#2", conn) == [P.Pong()]
    assert [conn.encode(P.Ping()) for _ in range(3)] == [b"#1"] * 3
    assert conn.encode(P.Pong()) == b"#2"
    v2 = CODEC.connection()
    assert decode(b"", v2) == [P.Pong()]
    assert [v2.encode(P.Ping()) for _ in range(3)] == [b""] * 3
    assert decode(b"#1", CODEC.connection()) == [P.Ping()]
    fixed = ScCodec(CB, protocol_version=1).connection()
    assert fixed.encode(P.Ping()) == b"#1"


@pytest.mark.parametrize(
    "frame, cid, words",
    [
        (b"not json", 0, "not JSON"),
        (b"{\"event\": ", 0, "not JSON"),
        (b"\xff\xfe{}", 0, "not JSON"),  # not UTF-8
        (b'{"event":"x","data":NaN}', 0, "not JSON"),
        (b'{"event":"x","data":Infinity}', 0, "not JSON"),
        (b'{"event":"x","data":1e999}', 0, "JSON"),  # a float JSON cannot send on
        (b'{"event":"x","data":' + b"9" * 5000 + b"}", 0, "not JSON"),  # over Python's digit limit
        (b"[" * 100000 + b"]" * 100000, 0, "not JSON"),  # nesting deeper than any parser's stack
        (b"42", 0, "not a SocketCluster packet"),
        (b'"#handshake"', 0, "not a SocketCluster packet"),
        (b"null", 0, "not a SocketCluster packet"),
        (b"[[{}]]", 0, "a packet is a JSON object"),
        (b'{"rid": 3, "data": 1}', 0, "a response to no request"),
        (b'{"data": 1}', 0, "without an event"),
        (b'{"event": 5, "cid": 1}', 0, "without an event"),
        (b'{"event": "x", "cid": 1.5}', 0, "cid"),
        (b'{"event": "x", "cid": -1}', 0, "cid"),
        (b'{"event": "x", "cid": true}', 0, "cid"),
        (b'{"event": "x", "cid": 4294967296}', 0, "cid"),
        (b'{"event": "x", "cid": "1"}', 0, "cid"),
        (b'{"event":"#subscribe","data":"c","cid":4}', 4, "Subscribe channel name was malformatted"),
        (b'{"event":"#subscribe","data":{"channel":5},"cid":4}', 4, "Subscribe channel name"),
        (b'{"event":"#unsubscribe","data":{"channel":"c"},"cid":5}', 5, "Unsubscribe channel name"),
        (b'{"event":"#publish","data":"c","cid":6}', 6, "Publish channel name"),
        (b'{"event":"#publish","data":{"channel":"c","data":1e400},"cid":7}', 7, "JSON"),
    ],
)
def test_malformed_input_is_rejected_with_a_reason(frame, cid, words):
    (msg,) = decode(frame)
    assert isinstance(msg, Rejected) and msg.cid == cid and words in msg.reason


def test_long_event_names_are_rejected():
    (msg,) = decode(j({"event": "x" * 5000, "cid": 3}))
    assert isinstance(msg, Rejected) and msg.cid == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_random_frames_never_raise(frame):
    conn = CODEC.connection()
    try:
        msgs = conn.decode(frame, CTX)
    except ProtocolViolation as exc:
        assert exc.close_code == 4008
        return
    assert isinstance(msgs, list)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_publish_data_round_trips_unchanged(data):
    """What a client publishes is what subscribers get: spliced as JSON text, never reparsed."""
    (pub,) = decode(j({"event": "#publish", "data": {"channel": "c", "data": data}}))
    delivery = CODEC.channel_message(CODEC.channel_prefix(1, "c"), pub.data)
    assert out(delivery) == {"event": "#publish", "data": {"channel": "c", "data": data}}
    assert value(pub.data) == data


# ----------------------------------------------------------------------------------------
# server to client


def test_results_and_errors():
    conn = CODEC.connection()
    assert out(conn.encode(P.Result(4, CB.payload({"a": [1, 2]})))) == {"rid": 4, "data": {"a": [1, 2]}}
    assert out(conn.encode(P.Result(4, NO_PAYLOAD))) == {"rid": 4}
    assert out(conn.encode(P.Error(5, ErrorCode.NOT_FOUND, "no procedure 'x'"))) == {
        "rid": 5, "error": {"name": "NotFound", "message": "no procedure 'x'", "code": 2},
    }
    assert out(conn.encode(P.Error(5, ErrorCode.TIMEOUT, "slow")))["error"]["name"] == "TimeoutError"
    assert conn.encode(P.Error(0, ErrorCode.NOT_FOUND, "no receiver")) == b""  # nobody waits for it
    assert conn.encode(P.Result(0, NO_PAYLOAD)) == b""


def test_authenticate_answers_in_socketclusters_shape():
    conn = CODEC.connection()
    decode(j({"event": "#authenticate", "data": "tok", "cid": 8}), conn)
    decode(j({"event": "#authenticate", "data": "bad", "cid": 9}), conn)
    assert out(conn.encode(P.Result(8, CB.payload({"authenticated": True})))) == {
        "rid": 8, "data": {"isAuthenticated": True, "authError": None},
    }
    err = out(conn.encode(P.Error(9, ErrorCode.UNAUTHENTICATED, "token expired")))["error"]
    assert err["name"] == "AuthTokenExpiredError"
    # A later Result with the same cid is an ordinary one again.
    assert out(conn.encode(P.Result(8, CB.payload(1)))) == {"rid": 8, "data": 1}


def test_subscribed_and_kicked_by_name():
    conn = CODEC.connection()
    assert out(conn.encode(P.Subscribed(3, [P.ChannelInfo("room", 7, CB.json_type, 0, "")]))) == {"rid": 3}
    refused = out(conn.encode(P.Subscribed(4, [P.ChannelInfo("vip", 0, 0, ErrorCode.FORBIDDEN, "members only")])))
    assert refused == {"rid": 4, "error": {"name": "Forbidden", "message": "members only", "code": 3}}
    assert conn.encode(P.Subscribed(0, [P.ChannelInfo("x", 8, 2, 0, "")])) == b""
    assert out(conn.encode(P.Message(7, CB.payload("hi")))) == {"event": "#publish", "data": {"channel": "room", "data": "hi"}}
    assert out(conn.encode(P.Kicked(7, "bye"))) == {"event": "#kickOut", "data": {"channel": "room", "message": "bye"}}
    assert conn.encode(P.Kicked(99, "unknown id")) == b""


def test_events_and_tokens_out():
    conn = CODEC.connection()
    assert out(conn.encode(P.Emit("ev", CB.payload({"x": 1})))) == {"event": "ev", "data": {"x": 1}}
    assert out(conn.encode(P.Emit("ev", NO_PAYLOAD))) == {"event": "ev"}
    assert out(conn.encode(P.SetToken("a.b.c"))) == {"event": "#setAuthToken", "data": {"token": "a.b.c"}}
    assert out(conn.encode(P.RemoveToken())) == {"event": "#removeAuthToken"}
    assert conn.encode(P.Tick(1, 2, 3, 4, 5, 6)) == b""  # rooms are not on this wire


def test_bytes_and_typed_payloads():
    assert out(CODEC.payload_json(CB.payload(b"\x00\xff"))) == {"base64": True, "data": "AP8="}
    numbers = E.Numbers(i16=-3, f64=float("nan"))
    plain = out(CODEC.payload_json(CB.payload(numbers)))
    assert plain["$type"] == "Numbers" and plain["i16"] == -3 and plain["f64"] is None  # JSON has no NaN
    assert CODEC.payload_json(NO_PAYLOAD) is None
    long_text = CB.payload("x" * 300)  # a Json body whose length takes two varint bytes
    assert out(CODEC.payload_json(long_text)) == "x" * 300


def test_join_batches_packets_as_a_json_array():
    parts = [b'{"rid":1}', b'{"event":"e"}']
    assert CODEC.join(parts[:1]) == parts[0]
    assert out(CODEC.join(parts)) == [{"rid": 1}, {"event": "e"}]


def test_channel_message_is_built_once_and_shared():
    prefix = CODEC.channel_prefix(3, 'weird "name" é')
    data = CODEC.channel_message(prefix, CB.payload({"k": [1]}))
    assert out(data) == {"event": "#publish", "data": {"channel": 'weird "name" é', "data": {"k": [1]}}}


# ----------------------------------------------------------------------------------------
# the session, driven through the codec


def make(limits: Limits | None = None, now: float = 0.0) -> Session:
    limits = limits or Limits()
    return Session(CODEC, limits, CB.context(max_string=limits.max_string_length), Metrics(), now)


HELLO = j({"event": "#handshake", "data": {"authToken": None}, "cid": 1})


def opened(limits: Limits | None = None) -> Session:
    s = make(limits)
    (hs,) = s.receive(HELLO, 0.0, text=True)
    assert isinstance(hs, P.Handshake) and s.state == OPEN
    s.send(P.Welcome("id", "w", 8000, 20000, False, ""))
    s.take_frames()
    return s


def test_session_handshake_and_before_handshake_rules():
    assert make().receive(j({"event": "#subscribe", "data": {"channel": "c"}, "cid": 1}), 0, True) == []
    s = make()
    s.receive(b"garbage", 0, True)
    assert s.close_code == CloseCode.MESSAGE_BEFORE_HANDSHAKE
    s = make()
    s.receive(b"", 0, True)  # a pong before the handshake too (SocketCluster's strictHandshake)
    assert s.close_code == CloseCode.MESSAGE_BEFORE_HANDSHAKE
    s = make()
    s.receive(j({"event": "#handshake"}), 0, True)
    assert s.close_code == CloseCode.HANDSHAKE_REJECTED and s.state == CLOSING
    s = make()
    assert s.receive(HELLO, 0, text=False) == []  # SocketCluster sends text frames
    assert s.close_code == CloseCode.MALFORMED
    s = make(Limits(handshake_timeout=1.0))
    s.poll(2.0)
    assert s.close_code == CloseCode.HANDSHAKE_TIMEOUT


def test_session_answers_rejected_requests_and_counts_them():
    s = opened()
    frame = j([{"event": "#subscribe", "data": 5, "cid": 2}, {"no": "event"}, {"event": "ok", "cid": 3}])
    msgs = s.receive(frame, 1.0, True)
    assert [type(m) for m in msgs] == [P.Call]
    (batch,) = s.take_frames()
    assert out(batch)["error"]["name"] == "BadRequest" and out(batch)["rid"] == 2
    assert s.stats.rejected == 2 and s.state == OPEN


def test_session_pings_are_frames_of_their_own_even_when_busy():
    limits = Limits(ping_interval=1.0, ping_timeout=10.0)
    s = opened(limits)
    s.send(P.Emit("a", CB.payload(1)))
    assert s.poll(0.5) is False
    s.receive(j({"event": "busy"}), 1.5, True)  # heard from just now: a packed session would not ping
    s.poll(1.6)
    s.send(P.Emit("b", CB.payload(2)))
    frames = s.take_frames()
    assert frames == [b'{"event":"a","data":1}', b"", b'{"event":"b","data":2}']
    assert s.receive(b"", 1.7, True) == []  # the v2 pong fixes the style
    s.poll(2.8)
    assert s.take_frames() == [b""]


def test_session_pong_timeout_closes_with_socketclusters_4001():
    s = opened(Limits(ping_interval=1.0, ping_timeout=3.0))
    s.poll(3.5)
    assert s.close_code == PONG_TIMEOUT == 4001
    assert s.stats.closes == {4001: 1}


def test_session_answers_a_v1_ping_with_its_own_frame():
    s = opened()
    s.send(P.Emit("x", NO_PAYLOAD))
    assert s.receive(b"#1", 1.0, True) == []
    assert s.take_frames() == [b'{"event":"x"}', b"#2"]


def test_session_oversized_frames_and_floods():
    s = opened(Limits(max_frame_size=100))
    s.receive(j({"event": "x", "data": "y" * 200}), 1.0, True)
    assert s.close_code == CloseCode.MESSAGE_TOO_BIG
    limits = Limits(max_messages_per_second=10, message_burst=10, flood_close_after=1.0)
    s = opened(limits)
    answers = 0
    for i in range(40):
        msgs = s.receive(j([{"event": "p", "cid": 10 * i + k} for k in range(5)]), 0.1 + i * 0.05, True)
        answers += len(msgs)
        if s.state == CLOSING:
            break
    assert s.close_code == CloseCode.FLOOD
    assert 10 <= answers < 40
    s = opened(limits)
    for i in range(100):  # garbage counts against the rate too
        s.receive(b"not json", 0.1 + i * 0.05, True)
    assert s.close_code == CloseCode.FLOOD


def test_session_batches_everything_of_one_flush_into_one_frame():
    s = opened()
    prefix = CODEC.channel_prefix(1, "c")
    for i in range(3):
        s.push(CODEC.channel_message(prefix, CB.payload(i)))
    s.send(P.Result(2, CB.payload("done")))
    (frame,) = s.take_frames()
    packets = out(frame)
    assert [p["data"]["data"] for p in packets[:3]] == [0, 1, 2]
    assert packets[3] == {"rid": 2, "data": "done"}
    small = opened(Limits(max_out_frame_size=60))
    for i in range(4):
        small.push(CODEC.channel_message(prefix, CB.payload(i)))
    frames = small.take_frames()
    assert len(frames) > 1 and all(isinstance(out(f), (list, dict)) for f in frames)
    assert small.stats.frames_split == len(frames) - 1
