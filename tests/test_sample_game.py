"""The sample game's room (sample_game/room.py), stepped with RoomKit: players walk,
NPCs wander, names and chat reach everyone. Plus: its generated codecs are not stale."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from engine.testing import RoomKit
from sample_game.generated import game
from sample_game.room import EDGE, MAX_SAY, NPC_KINDS, PLAZA, WORLD_SIZE, Meadow, clean_name, look_of

from helpers import ROOT

SPEED = Meadow.speed


def kit(**options) -> RoomKit:
    return RoomKit(Meadow, options={"seed": 3, **options}, schemas=[game])


def avatar(k: RoomKit, client) -> tuple[float, float]:
    e = k.room.avatar[client.id]
    return float(k.room.entities["x"][e]), float(k.room.entities["y"][e])


def chats(client) -> list[tuple[int, str, str]]:
    return [(m.player, m.name, m.text) for m in client.messages if isinstance(m, game.Chat)]


def test_generated_codecs_are_not_stale():
    """sample_game/README.md's compile command, with --check, through the real CLI."""
    args = ["sample_game/game.fbs", "--out", "sample_game/generated", "--lang", "py,js", "--js-runtime", "/tickwire/packed.js"]
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "schema", "compile", *args, "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr + "\nrun: tickwire schema compile " + " ".join(args)


# -- players -------------------------------------------------------------------------------


def test_players_appear_near_the_plaza_with_their_names():
    k = kit()
    ann = k.join("ann")
    bob = k.join("  ")
    k.advance(0.2)
    for c in (ann, bob):
        x, y = avatar(k, c)
        assert math.hypot(x - PLAZA[0], y - PLAZA[1]) < 150
    roster = {m.player: (m.name, m.look) for m in ann.state.players}
    assert roster == {ann.id: ("ann", look_of("ann")), bob.id: (f"guest-{bob.id}", look_of(f"guest-{bob.id}"))}
    assert bob.state == ann.state
    # Each sees the other's avatar, tagged with its player id, in the synced entities.
    tagged = {int(v["player"]): v for v in ann.world.entities.values() if v["kind"] == game.Kind.Player}
    assert set(tagged) == {ann.id, bob.id}
    assert tagged[bob.id]["look"] == look_of(f"guest-{bob.id}")


def test_names_are_cleaned():
    assert clean_name("  Zoë\x00\n ", 4) == "Zoë"
    assert clean_name("x" * 40, 4) == "x" * 16
    assert clean_name(None, 9) == "guest-9"


def test_keys_walk_the_avatar_and_it_stops_when_they_stop_coming():
    k = kit()
    ann = k.join("ann")
    k.advance(0.1)
    x0, y0 = avatar(k, ann)
    for _ in range(10):  # one second of "right" held, renewed as the browser does
        ann.input(game.Move(100, 0))
        k.advance(0.1)
    x1, y1 = avatar(k, ann)
    assert x1 - x0 == pytest.approx(SPEED * 1.0, abs=0.1 * SPEED) and y1 == y0
    assert int(k.room.entities["face"][k.room.avatar[ann.id]]) == 0  # facing east
    # Nothing renews the intent: the avatar walks out its timeout, then stands.
    k.advance(Meadow.intent_timeout + 0.5)
    x2, _ = avatar(k, ann)
    k.advance(1.0)
    assert avatar(k, ann)[0] == x2 <= x1 + SPEED * (Meadow.intent_timeout + 0.1)
    # A stop input stops it at once.
    ann.input(game.Move(0, 100))
    k.advance(0.3)
    ann.input(game.Move(0, 0))
    k.advance(0.05)
    stopped = avatar(k, ann)
    k.advance(0.5)
    assert avatar(k, ann) == stopped


def test_diagonals_are_not_faster():
    k = kit()
    ann = k.join("ann")
    k.advance(0.1)
    x0, y0 = avatar(k, ann)
    ann.input(game.Move(100, 100))
    k.advance(0.5)
    ann.input(game.Move(0, 0))
    k.advance(0.1)
    x1, y1 = avatar(k, ann)
    assert math.hypot(x1 - x0, y1 - y0) <= SPEED * 0.55 + 1e-3
    assert x1 - x0 == pytest.approx(y1 - y0, abs=1e-3)


def test_a_click_walks_to_the_point_and_stops_there():
    k = kit()
    ann = k.join("ann")
    k.advance(0.1)
    x0, y0 = avatar(k, ann)
    tx, ty = x0 - 150.0, y0 + 80.0
    ann.input(game.Move(0, 0, True, tx, ty))
    k.advance(0.5)
    mid = avatar(k, ann)
    assert 0 < math.hypot(mid[0] - x0, mid[1] - y0) < math.hypot(tx - x0, ty - y0)
    k.advance(2.0)  # no heartbeat needed: a target holds until reached
    assert avatar(k, ann) == pytest.approx((tx, ty), abs=0.2)
    # Keys take over from a click.
    ann.input(game.Move(0, 0, True, tx + 300, ty))
    k.advance(0.2)
    ann.input(game.Move(0, -100))
    k.advance(0.3)
    ann.input(game.Move(0, 0))
    k.advance(0.1)
    x, y = avatar(k, ann)
    k.advance(1.0)
    assert avatar(k, ann) == (x, y) and y < ty


def test_the_world_has_an_edge():
    k = kit()
    ann = k.join("ann")
    k.advance(0.1)
    ann.input(game.Move(0, 0, True, 0.0, WORLD_SIZE))  # a corner, beyond the edge margin
    k.advance(20.0)
    x, y = avatar(k, ann)
    assert (x, y) == pytest.approx((EDGE, WORLD_SIZE - EDGE), abs=0.2)
    for _ in range(10):
        ann.input(game.Move(-100, 100))
        k.advance(0.1)
    assert avatar(k, ann) == pytest.approx((EDGE, WORLD_SIZE - EDGE), abs=0.2)


def test_inputs_of_other_shapes_are_ignored():
    k = kit()
    ann = k.join("ann")
    k.advance(0.1)
    before = avatar(k, ann)
    ann.input({"dx": 100})  # JSON, not a Move: ignored, not an error
    ann.input(game.Chat(1, "x", "not an input"))
    k.advance(0.5)
    assert avatar(k, ann) == before


def test_leaving_removes_the_avatar_and_the_name():
    k = kit()
    ann = k.join("ann")
    bob = k.join("bob")
    k.advance(0.2)
    e = k.room.avatar[bob.id]
    bob.leave()
    k.advance(0.2)
    assert e not in k.room.entities
    assert [m.name for m in ann.state.players] == ["ann"]
    assert e not in ann.world.entities
    assert chats(ann)[-1] == (0, "", "bob left")


# -- NPCs ----------------------------------------------------------------------------------


def test_npcs_wander_near_their_homes_and_stay_in_the_world():
    k = kit()
    room = k.room
    t = room.entities
    ids = room.npcs
    assert len(ids) == Meadow.npc_count
    start = np.stack([t["x"][ids], t["y"][ids]], axis=1).copy()
    k.advance(10.0)
    now = np.stack([t["x"][ids], t["y"][ids]], axis=1)
    moved = np.hypot(*(now - start).T) > 1.0
    assert moved.mean() > 0.8  # most of them went somewhere
    assert (now >= EDGE - 1e-3).all() and (now <= WORLD_SIZE - EDGE + 1e-3).all()
    far = np.hypot(*(now - room.home[ids]).T)
    radius = np.array([NPC_KINDS[game.Kind(int(kind))][1] for kind in t["kind"][ids]])
    assert (far <= radius + 1.0).all()
    kinds = set(t["kind"][ids].tolist())
    assert kinds == {game.Kind.Slime, game.Kind.Bunny, game.Kind.Wisp}


def test_a_player_sees_npcs_move_smoothly_through_its_view():
    k = kit()
    ann = k.join("ann")
    k.advance(1.0)
    npcs = {e: dict(v) for e, v in ann.world.entities.items() if v["kind"] != game.Kind.Player}
    assert len(npcs) > 20  # the herds near the plaza
    k.advance(3.0)
    held = [e for e in npcs if e in ann.world.entities]
    changed = [e for e in held if (ann.world.entities[e]["x"], ann.world.entities[e]["y"]) != (npcs[e]["x"], npcs[e]["y"])]
    assert len(changed) > len(held) // 2
    # What the player holds is what the room has (quantised), for every entity it sees.
    for e in ann.world.entities:
        q = k.room.entities.quantised(e)
        assert (ann.world.entities[e]["x"], ann.world.entities[e]["y"]) == (q["x"], q["y"])


def test_bunnies_run_from_players():
    k = kit()
    ann = k.join("ann")
    k.advance(0.1)
    t = k.room.entities
    ids = k.room.npcs
    bunnies = ids[t["kind"][ids] == game.Kind.Bunny]
    b = int(bunnies[0])
    # Put Ann right next to a bunny, standing.
    e = k.room.avatar[ann.id]
    t["x"][e], t["y"][e] = float(t["x"][b]) - 30.0, float(t["y"][b])
    before = float(t["x"][b])
    k.advance(0.5)
    assert float(t["x"][b]) > before + 10  # away from Ann, to the east


# -- chat ----------------------------------------------------------------------------------


def test_chat_reaches_everyone_under_the_speakers_room_name():
    k = kit()
    ann = k.join("ann")
    bob = k.join("bob")
    k.advance(0.1)
    ann.input(game.Say("  hello, meadow!  "))
    sent = len(k.sends)
    k.advance(0.1)
    for c in (ann, bob):
        assert chats(c)[-1] == (ann.id, "ann", "hello, meadow!")
    assert chats(ann)[:2] == [(0, "", "ann joined"), (0, "", "bob joined")]
    # One encoding for everyone: the line travels in the send tick's shared parts.
    shared = [part for tick in k.sends[sent:] for part in tick.shared]
    assert sum(b"hello, meadow!" in part for part in shared) == 1


def test_chat_is_bounded_and_paced():
    k = kit()
    ann = k.join("ann")
    bob = k.join("bob")
    k.advance(0.1)
    ann.input(game.Say("x" * 500))
    k.advance(0.1)
    assert chats(bob)[-1] == (ann.id, "ann", "x" * MAX_SAY)
    ann.input(game.Say("too soon"))
    ann.input(game.Say("   "))
    k.advance(0.1)
    assert chats(bob)[-1][2] == "x" * MAX_SAY  # Bob heard neither
    assert chats(ann)[-1] == (0, "", "slow down: one line every half second")
    k.advance(Meadow.say_interval)
    ann.input(game.Say("now"))
    k.advance(0.1)
    assert chats(bob)[-1] == (ann.id, "ann", "now")


def test_positions_are_the_simulations():
    k = kit()
    ann = k.join("ann")
    k.advance(0.1)
    [row] = k.room.positions()
    assert row == {"player": ann.id, "name": "ann", "x": avatar(k, ann)[0], "y": avatar(k, ann)[1]}
