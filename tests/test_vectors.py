"""The golden vectors (codecs/vectors/*.json) and the cross-language tests.

Python checks every vector here; codecs/js/test/vectors.test.mjs checks the same files
under node. The cross-language tests drive a node peer (codecs/js/testing/peer.mjs):
Hypothesis values encoded by Python are decoded by JavaScript and the other way round,
and random bytes must get the same verdict from both decoders.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine._generated import protocol as P
from engine.packed import Codebook, DecodeError, UnknownType
from engine.schema.model import Table, load

from codec_values import (
    CHANNEL,
    CHANNEL_TYPE,
    GOLDEN,
    PROTOCOL,
    ROOT,
    UPDATE_GOLDEN,
    FromPlain,
    Strategies,
    everything,
    plain,
    same,
)
from conftest import require_tool

VECTORS = os.path.join(ROOT, "codecs", "vectors")
VECTOR_FILES = ["protocol.json", "everything.json"]


def modules() -> dict[str, Any]:
    return {"protocol": P, "everything": everything()[1]}


def load_vectors(name: str) -> dict:
    with open(os.path.join(VECTORS, name), encoding="utf-8") as fh:
        return json.load(fh)


def setup(spec: dict) -> tuple[Codebook, Any, FromPlain]:
    mods = modules()
    cb = Codebook(*(mods[n] for n in spec["schemas"]))
    channel_types = {int(k): v for k, v in spec.get("context", {}).get("channel_types", {}).items()}
    ctx = cb.context(channel_types=channel_types)
    last = spec["schemas"][-1]
    model = load(PROTOCOL) if last == "protocol" else everything()[0]
    return cb, ctx, FromPlain(model, mods[last], *(mods[n] for n in spec["schemas"]))


def frames(name: str) -> list[tuple[str, dict]]:
    spec = load_vectors(name)
    return [(f"{name}:{f['name']}", f) for f in spec["frames"]]


def invalid(name: str) -> list[tuple[str, dict]]:
    spec = load_vectors(name)
    return [(f"{name}:{f['name']}", f) for f in spec["invalid"]]


# ----------------------------------------------------------------------------------------
# Python against the vectors


@pytest.mark.parametrize("file", VECTOR_FILES)
def test_vectors(file):
    spec = load_vectors(file)
    cb, ctx, from_plain = setup(spec)
    changed = False
    for frame in spec["frames"]:
        msgs = [from_plain.message(m) for m in frame["messages"]]
        out = bytearray()
        for m in msgs:
            cb.encode_into(out, m)
        if UPDATE_GOLDEN:
            decoded = cb.decode_frame(bytes(out), ctx)
            frame["hex"], frame["messages"] = out.hex(), [plain(m) for m in decoded]
            changed = True
            continue
        assert out.hex() == frame["hex"], f"{frame['name']}: encoding changed"
        decoded = cb.decode_frame(bytes.fromhex(frame["hex"]), ctx)
        got = [plain(m) for m in decoded]
        assert same(got, frame["messages"]), f"{frame['name']}: decoded {got}"
    for bad in spec["invalid"]:
        with pytest.raises(DecodeError) as info:
            cb.decode_frame(bytes.fromhex(bad["hex"]), ctx)
        assert type(info.value).__name__ == bad["error"], f"{bad['name']}: {info.value!r}"
    if UPDATE_GOLDEN:
        spec["codebook_hash"] = cb.hash
    if changed:
        with open(os.path.join(VECTORS, file), "w", encoding="utf-8") as fh:
            fh.write(dump_vectors(spec))


def dump_vectors(spec: dict) -> str:
    """One vector a line, so that a diff shows which vectors changed."""
    head = {k: v for k, v in spec.items() if k not in ("frames", "invalid")}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    for key in ("frames", "invalid"):
        lines.append(f' "{key}": [')
        items = [f"  {json.dumps(x, ensure_ascii=False)}" for x in spec[key]]
        lines.append(",\n".join(items))
        lines.append(" ]," if key == "frames" else " ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def test_vectors_cover_every_message():
    for file in VECTOR_FILES:
        spec = load_vectors(file)
        seen = {m["$type"] for f in spec["frames"] for m in f["messages"]}
        mod = modules()[spec["schemas"][-1]]
        names = {cls.__name__ for cls, _, _ in mod.MESSAGES.values()}
        assert names <= seen, f"{file} has no vector for {sorted(names - seen)}"


def test_vectors_name_their_schema_hash():
    # A vector file belongs to one version of its schema: a new hash means new vectors.
    for file in VECTOR_FILES:
        spec = load_vectors(file)
        mods = modules()
        if not UPDATE_GOLDEN:
            assert Codebook(*(mods[n] for n in spec["schemas"])).hash == spec["codebook_hash"], file


# ----------------------------------------------------------------------------------------
# the JavaScript peer


class Peer:
    def __init__(self) -> None:
        node = require_tool("node")
        self.proc = subprocess.Popen(
            [
                node,
                "codecs/js/testing/peer.mjs",
                "protocol=codecs/js/generated/protocol.js",
                f"everything={os.path.relpath(os.path.join(GOLDEN, 'everything.js'), ROOT)}",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **request: Any) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the node peer exited"
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def peer():
    p = Peer()
    yield p
    p.close()


SCHEMAS = ["protocol", "everything"]
CONTEXT = {"channel_types": {str(CHANNEL): CHANNEL_TYPE}}


def test_peer_hash_matches(peer):
    mods = modules()
    for names in (["protocol"], ["protocol", "everything"], ["everything", "protocol"]):
        cb = Codebook(*(mods[n] for n in names))
        assert peer.ask(op="hash", schemas=names) == {"ok": True, "hash": cb.hash}


def _codebook() -> tuple[Codebook, Any]:
    mods = modules()
    cb = Codebook(mods["protocol"], mods["everything"])
    return cb, cb.context(channel_types={CHANNEL: CHANNEL_TYPE})


def _strategies() -> st.SearchStrategy:
    model, mod = everything()
    cb, _ = _codebook()
    tag_bodies = Strategies(model, mod, []).table("Tag").map(cb.encode_body)
    s = Strategies(model, mod, sorted(cb.types), channel_body=tag_bodies)
    return st.one_of([s.message(t) for t in model.messages])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_strategies(), min_size=1, max_size=3))
def test_python_encodes_javascript_decodes(peer, msgs):
    cb, ctx = _codebook()
    out = bytearray()
    for m in msgs:
        cb.encode_into(out, m)
    reply = peer.ask(op="decode", schemas=SCHEMAS, hex=out.hex(), context=CONTEXT)
    assert reply["ok"], reply
    expected = [plain(m) for m in cb.decode_frame(bytes(out), ctx)]
    assert same(reply["messages"], expected), (reply["messages"], expected)
    # and JavaScript encodes what it decoded to the same bytes
    assert reply["hex"] == out.hex()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_strategies(), min_size=1, max_size=3))
def test_javascript_encodes_python_decodes(peer, msgs):
    cb, ctx = _codebook()
    out = bytearray()
    for m in msgs:
        cb.encode_into(out, m)
    # JavaScript encodes the plain values (not the bytes) that Python decodes from them.
    decoded = cb.decode_frame(bytes(out), ctx)
    reply = peer.ask(op="encode", schemas=SCHEMAS, messages=[plain(m) for m in decoded])
    assert reply["ok"], reply
    assert reply["hex"] == out.hex()
    again = cb.decode_frame(bytes.fromhex(reply["hex"]), ctx)
    assert same([plain(m) for m in again], [plain(m) for m in decoded])


def _verdict(cb: Codebook, ctx: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", [plain(m) for m in cb.decode_frame(data, ctx)]
    except UnknownType:
        return "UnknownType", None
    except DecodeError:
        return "DecodeError", None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.lists(_strategies(), min_size=1, max_size=2).map(lambda ms: _mutate(ms)))
def test_both_decoders_agree_on_any_bytes(peer, data):
    cb, ctx = _codebook()
    verdict, value = _verdict(cb, ctx, data)
    reply = peer.ask(op="decode", schemas=SCHEMAS, hex=data.hex(), context=CONTEXT)
    if verdict == "ok":
        assert reply["ok"], (data.hex(), reply)
        assert same(reply["messages"], value)
    else:
        assert not reply["ok"], (data.hex(), verdict, reply)
        # an unknown type id is its own error (close 4101, not 4100) on both sides
        assert (reply["error"] == "UnknownType") == (verdict == "UnknownType"), (data.hex(), reply)


def _mutate(msgs: list) -> bytes:
    """Valid frames cut short or with one byte changed: near misses find more than noise."""
    cb, _ = _codebook()
    out = bytearray()
    for m in msgs:
        cb.encode_into(out, m)
    data = bytes(out)
    h = hash(data)
    if h % 3 == 0 and len(data) > 1:
        return data[: 1 + h % (len(data) - 1)]
    i = h % len(data)
    return data[:i] + bytes([(data[i] + 1 + (h >> 8) % 255) % 256]) + data[i + 1 :]


def test_vectors_agree_with_peer(peer):
    for file in VECTOR_FILES:
        spec = load_vectors(file)
        for frame in spec["frames"]:
            reply = peer.ask(op="decode", schemas=spec["schemas"], hex=frame["hex"], context=spec["context"])
            assert reply["ok"], (frame["name"], reply)
            assert same(reply["messages"], frame["messages"]), frame["name"]
            reply = peer.ask(op="encode", schemas=spec["schemas"], messages=frame["messages"])
            assert reply == {"ok": True, "hex": frame["hex"]}, frame["name"]
        for bad in spec["invalid"]:
            reply = peer.ask(op="decode", schemas=spec["schemas"], hex=bad["hex"], context=spec["context"])
            assert not reply["ok"] and reply["error"] == bad["error"], (bad["name"], reply)
