"""The sample game's world: one room where players walk among wandering NPCs and chat.

Everything that moves is an entity of the schema struct `Mob` (game.fbs) in the room's
EntityTable; the engine's interest layer sends each player only the cells around its
avatar, at the send rate, and the browser interpolates between those snapshots.

- Players: an avatar each, spawned near the plaza at the centre. The view follows it.
  `Move` inputs set the intent (a direction held, or a point to walk to); the simulation
  walks the avatar at `speed` units a second, bounded by the world's edge. A held
  direction that is not renewed for `intent_timeout` seconds stops (a client that went
  away mid-stride does not walk on forever).
- NPCs: slimes, bunnies and wisps in herds. Each walks to a goal near its herd's home,
  waits, and picks another; bunnies flee players who come close. One numpy pass a tick
  for all of them.
- Names: the room state is the roster (player id -> name, colour). It changes only when
  someone joins or leaves, so the engine sends it only then, encoded once for everyone.
- Chat: a `Say` input becomes a `Chat` room message broadcast to everyone (encoded once,
  shared by every player's frame), with the name the room knows: nobody can speak under
  another's name. Joins and leaves are announced the same way, as player 0.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from engine.rooms import Player, Room, World

from .generated import game

__all__ = ["Meadow", "WORLD_SIZE", "PLAZA", "clean_name", "look_of"]

WORLD_SIZE = 4000.0
PLAZA = (2000.0, 2000.0)  # where players appear
EDGE = 12.0  # how close to the world's edge an avatar may walk
LOOKS = 12  # player colours (the client's palette has as many)
MAX_NAME = 16
MAX_SAY = 160

# NPC kinds: (speed in units/s, wander radius around home, wait range in s, share of NPCs)
NPC_KINDS = {
    game.Kind.Slime: (38.0, 140.0, (0.8, 3.5), 0.45),
    game.Kind.Bunny: (95.0, 190.0, (0.3, 2.0), 0.35),
    game.Kind.Wisp: (55.0, 260.0, (0.0, 0.4), 0.20),
}
FLEE_RADIUS = 110.0  # bunnies run from players this close
FLEE_SPEED = 2.2  # times a bunny's speed


def clean_name(raw: Any, player_id: int) -> str:
    """A printable name of at most MAX_NAME characters, or guest-<id>."""
    text = "".join(ch for ch in str(raw or "") if ch.isprintable()).strip()[:MAX_NAME].strip()
    return text or f"guest-{player_id}"


def look_of(name: str) -> int:
    """A player's colour: from its name, so the same name keeps its colour."""
    return zlib.crc32(name.encode()) % LOOKS


def octant(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Heading in eighths of a turn (0 east, 2 south: y grows downwards on screen)."""
    return (np.rint(np.arctan2(dy, dx) / (math.pi / 4)).astype(np.int64) % 8).astype(np.uint8)


class Meadow(Room):
    tick_rate = 20
    send_rate = 20
    max_players = 500
    reconnect_grace = 5.0
    auto_dispose = False  # the world lives on when empty: NPCs wander, the next player finds it
    max_inputs_per_second = 40.0  # a client sends at most one Move per frame it changes in
    input_burst = 40
    state_type = game.Roster
    input_type = None  # Move or Say: on_input dispatches on the record's type

    npc_count = 900
    herds = 48
    speed = 200.0  # a player's, units per second
    intent_timeout = 1.0
    say_interval = 0.5  # s between a player's chat lines (faster ones are refused)
    # 250-unit cells, 5 x 5 around the avatar: a player sees at least 500 units each way,
    # which the browser's camera shows (it zooms to fit).
    world = World(game.Mob, capacity=1500, cell_size=250.0, view_radius=2, spawn_budget=192)

    # -- lifecycle -----------------------------------------------------------------------------
    def on_create(self, options: Any) -> None:
        opts = options if isinstance(options, dict) else {}
        self.rng = np.random.default_rng(int(opts.get("seed", 1)))
        n = self.entities.capacity
        self.home = np.zeros((n, 2), np.float32)
        self.goal = np.zeros((n, 2), np.float32)
        self.pace = np.zeros(n, np.float32)  # an NPC's walking speed
        self.wait = np.zeros(n, np.float32)  # seconds an NPC still stands
        self.npcs = self._spawn_npcs(int(opts.get("npcs", self.npc_count)))
        self.avatar: dict[int, int] = {}  # player id -> entity
        self.intent: dict[int, tuple[float, float, float]] = {}  # player -> (dx, dy, when)
        self.target: dict[int, tuple[float, float]] = {}  # player -> point it walks to
        self.last_say: dict[int, float] = {}
        self.state = game.Roster([])

    def _spawn_npcs(self, count: int) -> np.ndarray:
        rng = self.rng
        centres = rng.uniform(250, WORLD_SIZE - 250, (self.herds, 2)).astype(np.float32)
        # A few herds near the plaza, so a newcomer meets the locals at once.
        centres[:6] = np.array(PLAZA, np.float32) + np.array(
            [[-330, -200], [320, -240], [-300, 260], [340, 220], [0, 380], [40, -400]], np.float32
        )
        herd = rng.integers(0, self.herds, count)
        kinds = list(NPC_KINDS)
        shares = np.array([NPC_KINDS[k][3] for k in kinds])
        kind_of_herd = rng.choice(len(kinds), self.herds, p=shares / shares.sum())
        kind = np.array(kinds, np.uint8)[kind_of_herd[herd]]
        home = centres[herd] + rng.normal(0, 60, (count, 2)).astype(np.float32)
        home = np.clip(home, EDGE, WORLD_SIZE - EDGE)
        ids = self.entities.spawn_many(
            count, x=home[:, 0], y=home[:, 1], kind=kind, look=rng.integers(0, 16, count), face=rng.integers(0, 8, count)
        )
        self.home[ids] = home
        self.goal[ids] = home
        for k in kinds:
            sel = ids[kind == k]
            self.pace[sel] = NPC_KINDS[k][0] * rng.uniform(0.8, 1.2, sel.size)
            self.wait[sel] = rng.uniform(0, 3, sel.size)
        return ids

    def on_join(self, player: Player, options: Any) -> None:
        player.name = clean_name(player.name, player.id)
        angle = self.rng.uniform(0, 2 * math.pi)
        r = self.rng.uniform(40, 140)
        e = self.entities.spawn(
            x=PLAZA[0] + r * math.cos(angle),
            y=PLAZA[1] + r * math.sin(angle),
            kind=game.Kind.Player,
            look=look_of(player.name),
            face=2,
            player=player.id,
        )
        self.avatar[player.id] = e
        self.follow(player, e)
        self._roster_changed(player)
        self.broadcast(game.Chat(0, "", f"{player.name} joined"))

    def on_leave(self, player: Player, consented: bool) -> None:
        e = self.avatar.pop(player.id, None)
        if e is not None:
            self.entities.despawn(e)
        self.intent.pop(player.id, None)
        self.target.pop(player.id, None)
        self.last_say.pop(player.id, None)
        self._roster_changed(None)
        self.broadcast(game.Chat(0, "", f"{player.name} left"))

    def _roster_changed(self, joining: Player | None) -> None:
        players = sorted(self.players.values(), key=lambda p: p.id)
        if joining is not None and joining.id not in self.players:
            players.append(joining)  # on_join runs before the engine seats the player
        self.state = game.Roster([game.Member(p.id, p.name, look_of(p.name)) for p in players])

    # -- inputs --------------------------------------------------------------------------------
    def on_input(self, player: Player, data: Any) -> None:
        match data:
            case game.Move(dx, dy, to, tx, ty):
                if to:
                    self.target[player.id] = (min(max(tx, EDGE), WORLD_SIZE - EDGE), min(max(ty, EDGE), WORLD_SIZE - EDGE))
                    self.intent.pop(player.id, None)
                else:
                    dx, dy = max(-100, min(100, dx)) / 100.0, max(-100, min(100, dy)) / 100.0
                    if dx or dy:
                        self.target.pop(player.id, None)  # keys take over from a click
                    self.intent[player.id] = (dx, dy, self.time)
            case game.Say(text):
                self.say(player, text)
            case _:
                pass  # not this game's input: ignored

    def say(self, player: Player, text: str) -> None:
        text = "".join(ch for ch in text if ch.isprintable()).strip()[:MAX_SAY]
        if not text:
            return
        last = self.last_say.get(player.id)
        if last is not None and self.time - last < self.say_interval:
            self.send(player, game.Chat(0, "", "slow down: one line every half second"))
            return
        self.last_say[player.id] = self.time
        self.broadcast(game.Chat(player.id, player.name, text))

    # -- simulation ----------------------------------------------------------------------------
    def on_tick(self, now: float, dt: float) -> None:
        self._walk_players(now, dt)
        self._wander(dt)

    def _walk_players(self, now: float, dt: float) -> None:
        t = self.entities
        x, y, face = t["x"], t["y"], t["face"]
        step = self.speed * dt
        for pid, e in self.avatar.items():
            vx = vy = 0.0
            goal = self.target.get(pid)
            if goal is not None:
                gx, gy = goal[0] - float(x[e]), goal[1] - float(y[e])
                d = math.hypot(gx, gy)
                if d <= step:
                    x[e], y[e] = goal
                    del self.target[pid]
                else:
                    vx, vy = gx / d, gy / d
            else:
                intent = self.intent.get(pid)
                if intent is not None:
                    vx, vy, when = intent
                    if now - when > self.intent_timeout:
                        vx = vy = 0.0
                        del self.intent[pid]
                    norm = math.hypot(vx, vy)
                    if norm > 1.0:
                        vx, vy = vx / norm, vy / norm
            if vx or vy:
                x[e] = min(max(float(x[e]) + vx * step, EDGE), WORLD_SIZE - EDGE)
                y[e] = min(max(float(y[e]) + vy * step, EDGE), WORLD_SIZE - EDGE)
                face[e] = int(round(math.atan2(vy, vx) / (math.pi / 4))) % 8

    def _wander(self, dt: float) -> None:
        """Every NPC at once: stand, or walk towards its goal; a new goal on arrival."""
        ids = self.npcs
        t = self.entities
        x, y = t["x"], t["y"]
        pos = np.stack([x[ids], y[ids]], axis=1)
        if self.avatar and self.tick % 2 == 0:
            self._flee(ids, pos)
        wait = self.wait[ids] - dt
        self.wait[ids] = np.maximum(wait, 0)
        moving = wait <= 0
        delta = self.goal[ids] - pos
        dist = np.hypot(delta[:, 0], delta[:, 1])
        step = self.pace[ids] * dt
        arrived = moving & (dist <= step)
        walking = moving & ~arrived
        w = ids[walking]
        unit = delta[walking] / dist[walking, None]
        x[w] = pos[walking, 0] + unit[:, 0] * step[walking]
        y[w] = pos[walking, 1] + unit[:, 1] * step[walking]
        t["face"][w] = octant(unit[:, 0], unit[:, 1])
        a = ids[arrived]
        if a.size:
            x[a], y[a] = self.goal[a, 0], self.goal[a, 1]
            self._next_goal(a)

    def _next_goal(self, a: np.ndarray) -> None:
        rng = self.rng
        kind = self.entities["kind"][a]
        for k, (speed, radius, (lo, hi), _) in NPC_KINDS.items():
            sel = a[kind == k]
            if not sel.size:
                continue
            angle = rng.uniform(0, 2 * math.pi, sel.size)
            r = radius * np.sqrt(rng.uniform(0, 1, sel.size))
            goal = self.home[sel] + np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
            self.goal[sel] = np.clip(goal, EDGE, WORLD_SIZE - EDGE)
            self.wait[sel] = rng.uniform(lo, hi, sel.size)
            self.pace[sel] = speed * rng.uniform(0.8, 1.2, sel.size)

    def _flee(self, ids: np.ndarray, pos: np.ndarray) -> None:
        """Bunnies near a player run away from it (one distance matrix, players x bunnies)."""
        bunny = self.entities["kind"][ids] == game.Kind.Bunny
        if not bunny.any():
            return
        t = self.entities
        av = np.fromiter(self.avatar.values(), np.int64)
        players = np.stack([t["x"][av], t["y"][av]], axis=1)
        b = pos[bunny]
        d = b[None, :, :] - players[:, None, :]  # players x bunnies x 2
        dist = np.hypot(d[..., 0], d[..., 1])
        nearest = dist.argmin(axis=0)
        close = dist[nearest, np.arange(b.shape[0])] < FLEE_RADIUS
        if not close.any():
            return
        who = ids[bunny][close]
        away = d[nearest[close], np.flatnonzero(close)]
        norm = np.maximum(np.hypot(away[:, 0], away[:, 1]), 1e-3)[:, None]
        self.goal[who] = np.clip(b[close] + away / norm * (FLEE_RADIUS * 1.6), EDGE, WORLD_SIZE - EDGE)
        self.wait[who] = 0
        self.pace[who] = NPC_KINDS[game.Kind.Bunny][0] * FLEE_SPEED

    # -- for tools -----------------------------------------------------------------------------
    def positions(self) -> list[dict[str, Any]]:
        """Every player's avatar as the simulation has it (the debug procedure's answer)."""
        t = self.entities
        return [
            {"player": p.id, "name": p.name, "x": float(t["x"][e]), "y": float(t["y"][e])}
            for p in self.players.values()
            if (e := self.avatar.get(p.id)) is not None
        ]
