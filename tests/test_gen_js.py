"""The JavaScript generator: golden output, and the JavaScript test suite under node.

The generated JavaScript's behaviour is tested from both sides: codecs/js/test/*.test.mjs
(run here through `node --test`) and tests/test_vectors.py, which drives a node peer.
"""

from __future__ import annotations

import os
import subprocess

from engine.schema.gen_js import DEFAULT_RUNTIME, generate_dts, generate_js
from engine.schema.gen_python import header
from engine.schema.model import load

from codec_values import EVERYTHING, GOLDEN, PROTOCOL, ROOT, check_golden
from conftest import require_tool

# The golden module imports the runtime from where it lies, so the node tests load it.
GOLDEN_RUNTIME = "../../codecs/js/packed.js"


def test_everything_matches_golden():
    model = load(EVERYTHING)
    check_golden(os.path.join(GOLDEN, "everything.js"), generate_js(model, GOLDEN_RUNTIME))
    check_golden(os.path.join(GOLDEN, "everything.d.ts"), generate_dts(model, GOLDEN_RUNTIME))


def test_protocol_module_is_fresh():
    model = load(PROTOCOL)
    out = os.path.join(ROOT, "codecs", "js", "generated")
    for name, text in (("protocol.js", generate_js(model)), ("protocol.d.ts", generate_dts(model))):
        with open(os.path.join(out, name), encoding="utf-8") as fh:
            assert fh.read() == text, f"codecs/js/generated/{name} is stale: run `make schemas`"


def test_header_and_runtime_import():
    model = load(PROTOCOL)
    js = generate_js(model)
    assert js.startswith(header(model, "//"))
    assert f'from "{DEFAULT_RUNTIME}";' in js
    assert generate_dts(model).startswith(header(model, "//"))
    assert 'from "/static/packed.js";' in generate_js(model, "/static/packed.js")


def test_node_suite():
    node = require_tool("node")
    result = subprocess.run(
        [node, "--test", "codecs/js/test/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
