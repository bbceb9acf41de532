"""The app the SocketCluster-client tests run (tests/test_sc_client.py, tests/sc/*.mjs):
procedures with a result and with errors, a receiver, tokens, and a schema-typed channel."""

import types

from engine import App
from engine.errors import BadRequest
from engine.schema.gen_python import generate_python
from engine.schema.model import build
from engine.schema.parse import parse

SCHEMA = """
namespace sctest;
attribute "msgid";
struct Vec2 { x: float; y: float; }
table Pos (msgid: 64) { who: string; at: Vec2; hp: ushort; tags: [string]; }
"""


def _schema_module() -> types.ModuleType:
    src = generate_python(build([parse(SCHEMA, "sctest.fbs")], "sctest", "sctest.fbs"))
    mod = types.ModuleType("sctest_schema")
    exec(compile(src, "sctest_schema", "exec"), mod.__dict__)
    return mod


sctest = _schema_module()
app = App(schemas=[sctest])
app.channel_type("pos.*", sctest.Pos)
notes: list = []  # what the "note" receiver got, on this worker


@app.procedure("echo")
def echo(socket, data):
    return data


@app.procedure("fail")
def fail(socket, data):
    raise BadRequest(f"no good: {data}")


@app.procedure("crash")
def crash(socket, data):
    raise RuntimeError("details that stay in the server's log")


@app.procedure("where")
def where(socket, data):
    return socket.worker.process


@app.procedure("login")
def login(socket, data):
    socket.set_token({"user": data["user"]})
    return "ok"


@app.procedure("logout")
def logout(socket, data):
    socket.deauthenticate()


@app.procedure("whoami")
def whoami(socket, data):
    return socket.token.get("user") if socket.token else None


@app.procedure("serverPublish")
def server_publish(socket, data):
    socket.worker.publish(data["channel"], data["data"])


@app.procedure("shout")
def shout(socket, data):
    socket.emit("shouted", data)


@app.receiver("note")
def note(socket, data):
    notes.append(data)
    socket.emit("noted", {"count": len(notes), "last": data})


@app.procedure("notes")
def get_notes(socket, data):
    return notes
