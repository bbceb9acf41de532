// The sample game in the browser: join the world, walk, chat, watch the world move.
//
// Everything network comes from the Tickwire client the server serves (/tickwire.js) and
// the codec the schema compiler wrote (/generated/game.js). The room sends entity
// updates 20 times a second; room.render() interpolates them ~100 ms in the past, so
// everything glides at the display's frame rate.

import { Client } from "/tickwire.js";
import * as game from "/generated/game.js";
import { Controls, isMoveKey } from "./controls.js";
import { RateMeter, formatBytes } from "./meter.js";
import { Renderer } from "./render.js";

const ROOM_TYPE = "world";
const SEND_EVERY_MS = 50; // inputs go out at most at the room's send rate
const CHAT_LINES = 60;
const $ = (id) => document.getElementById(id);

const params = new URLSearchParams(location.search);

function boot() {
  // Behind the name card, the meadow itself, the camera drifting around the plaza.
  const preview = new Renderer($("view"));
  let previewing = true;
  const drift = (now) => {
    if (!previewing) return;
    preview.cam.x = 2000 + Math.cos(now / 9000) * 260;
    preview.cam.y = 2000 + Math.sin(now / 9000) * 160;
    preview.draw(emptyScene(now));
    requestAnimationFrame(drift);
  };
  requestAnimationFrame(drift);
  addEventListener("meadow:playing", () => (previewing = false), { once: true });
  const form = $("join-form");
  const input = $("join-name");
  input.value = params.get("name") ?? localStorage.getItem("meadow.name") ?? "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) return input.focus();
    localStorage.setItem("meadow.name", name);
    play(name);
  });
  if (params.get("name")) play(params.get("name"));
  else input.focus();
}

async function play(name) {
  $("join").classList.add("busy");
  $("join-error").textContent = "";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const client = new Client(`${scheme}://${location.host}/`, {
    schemas: [game],
    interpolation: { delay: 100, angles: { face: 8 } },
  });
  let room;
  try {
    await client.connect();
    room = await takeSeat(client, name);
  } catch (err) {
    $("join").classList.remove("busy");
    $("join-error").textContent = `Could not join: ${err.message}`;
    client.close();
    return;
  }
  $("join").hidden = true;
  document.body.classList.add("playing");
  dispatchEvent(new Event("meadow:playing"));
  new Game(client, room).start();
}

function emptyScene(now) {
  const none = new Map();
  return { now, me: null, entities: none, motion: none, seenAt: none, roster: none, bubbles: none, target: null, grid: null };
}

/** Join the world; after a reload, take the same seat back (the avatar waits for its
 * player for the room's reconnect grace period), else a new one. */
async function takeSeat(client, name) {
  const seat = sessionStorage.getItem("meadow.seat");
  if (seat && sessionStorage.getItem("meadow.seat.name") === name) {
    try {
      const room = await client.joinRoom("", null, { seat });
      rememberSeat(room, name);
      return room;
    } catch {
      // The seat is gone (or still held by the page before the reload): a new one.
    }
  }
  const room = await client.joinRoom(ROOM_TYPE, { name });
  rememberSeat(room, name);
  return room;
}

function rememberSeat(room, name) {
  sessionStorage.setItem("meadow.seat", room.seat);
  sessionStorage.setItem("meadow.seat.name", name);
}

class Game {
  constructor(client, room) {
    this.client = client;
    this.room = room;
    this.renderer = new Renderer($("view"));
    this.controls = new Controls({ worldSize: 4000 });
    this.meter = new RateMeter(1000);
    this.roster = new Map(); // player id -> {name, look}
    this.bubbles = new Map(); // player id -> {text, at}
    this.seenAt = new Map(); // entity id -> when it came into view (to fade it in)
    this.lastPos = new Map(); // entity id -> [x, y, time] of the previous frame
    this.motion = new Map(); // entity id -> speed on screen, units/s
    this.me = null; // the entity id of our avatar
    this.showGrid = params.has("grid");
    this.chat = [];
    this.frames = 0;
    // For the console and the browser test: the live objects.
    globalThis.meadow = this;
  }

  start() {
    const { client, room } = this;
    room.on("state", (roster) => this.setRoster(roster));
    if (room.state) this.setRoster(room.state);
    room.on("message", (msg) => {
      if (msg?.$type === "Chat") this.heard(msg);
    });
    room.on("leave", ({ reason }) => this.banner(`You are out of the world (${reason}). Reload to come back.`, true));
    client.on("#disconnect", () => this.banner("Connection lost: reconnecting…"));
    client.on("#connect", () => this.banner(null));
    this.bindKeys();
    this.bindPointer();
    this.bindChat();
    setInterval(() => this.sendIntent(), SEND_EVERY_MS);
    setInterval(() => this.updateHud(), 250);
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) this.stop();
    });
    addEventListener("blur", () => this.stop());
    addEventListener("resize", () => this.renderer.resize());
    const frame = (now) => {
      this.draw(now);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  setRoster(roster) {
    this.roster = new Map((roster?.players ?? []).map((m) => [m.player, { name: m.name, look: m.look }]));
  }

  heard(msg) {
    const now = performance.now();
    if (msg.player) this.bubbles.set(msg.player, { text: msg.text, at: now });
    this.chat.push(msg);
    if (this.chat.length > CHAT_LINES) this.chat.shift();
    const line = document.createElement("div");
    line.className = msg.player ? "line" : "line news";
    if (msg.player) {
      const who = document.createElement("b");
      who.textContent = msg.name;
      const look = this.roster.get(msg.player)?.look;
      if (look !== undefined) who.style.color = `var(--look-${look})`;
      line.append(who, document.createTextNode(` ${msg.text}`));
    } else {
      line.textContent = msg.text;
    }
    const log = $("chat-log");
    log.append(line);
    while (log.childElementCount > CHAT_LINES) log.firstElementChild.remove();
    log.scrollTop = log.scrollHeight;
  }

  // -- input -------------------------------------------------------------------------------
  sendIntent() {
    const move = this.controls.next(performance.now());
    if (move !== null) this.room.input(move);
  }

  stop() {
    this.controls.releaseAll();
    this.sendIntent();
  }

  bindKeys() {
    addEventListener("keydown", (event) => {
      if (event.target === $("chat-input")) return;
      if (event.code === "Enter") {
        event.preventDefault();
        $("chat-input").focus();
      } else if (event.code === "KeyG") {
        this.showGrid = !this.showGrid;
      } else if (isMoveKey(event.code)) {
        event.preventDefault();
        if (!event.repeat && this.controls.press(event.code)) this.sendIntent();
      }
    });
    addEventListener("keyup", (event) => {
      if (this.controls.release(event.code)) this.sendIntent();
    });
  }

  bindPointer() {
    const canvas = $("view");
    let dragging = false;
    const walk = (event) => {
      const rect = canvas.getBoundingClientRect();
      const p = this.renderer.toWorld(event.clientX - rect.left, event.clientY - rect.top);
      this.controls.walkTo(p.x, p.y);
    };
    canvas.addEventListener("pointerdown", (event) => {
      dragging = true;
      canvas.setPointerCapture(event.pointerId);
      $("chat-input").blur();
      walk(event);
      this.sendIntent();
    });
    canvas.addEventListener("pointermove", (event) => {
      if (dragging) walk(event); // sent by the next input tick
    });
    const up = () => {
      dragging = false;
    };
    canvas.addEventListener("pointerup", up);
    canvas.addEventListener("pointercancel", up);
  }

  bindChat() {
    const input = $("chat-input");
    $("chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (text) this.room.input({ $type: "Say", text });
      input.value = "";
      input.blur();
    });
    input.addEventListener("keydown", (event) => {
      if (event.code === "Escape") input.blur();
    });
    input.addEventListener("focus", () => this.stop());
  }

  // -- frame -------------------------------------------------------------------------------
  draw(now) {
    const room = this.room;
    const entities = room.render();
    this.me = null;
    for (const [id, e] of entities) {
      if (Math.round(e.kind) === game.Kind.Player && Math.round(e.player) === room.player) this.me = id;
      const last = this.lastPos.get(id);
      if (last === undefined) {
        if (this.frames > 0) this.seenAt.set(id, now);
      } else if (now > last[2]) {
        const v = Math.hypot(e.x - last[0], e.y - last[1]) / ((now - last[2]) / 1000);
        this.motion.set(id, (this.motion.get(id) ?? v) * 0.7 + v * 0.3);
      }
      this.lastPos.set(id, [e.x, e.y, now]);
    }
    for (const id of this.lastPos.keys()) {
      if (!entities.has(id)) {
        this.lastPos.delete(id);
        this.motion.delete(id);
        this.seenAt.delete(id);
      }
    }
    const target = this.controls.target;
    const mine = this.me !== null ? entities.get(this.me) : undefined;
    if (target && mine && Math.hypot(mine.x - target.x, mine.y - target.y) < 4) this.controls.arrived();
    this.renderer.draw({
      now,
      me: this.me,
      entities,
      motion: this.motion,
      seenAt: this.seenAt,
      roster: this.roster,
      bubbles: this.bubbles,
      target: this.controls.target,
      grid: this.showGrid ? this.gridInfo() : null,
    });
    this.frames++;
  }

  /** The interest grid, as the room described it (EntitySyncInfo), and the cells the
   * client holds entities in: what the server chose to send. */
  gridInfo() {
    const world = this.room.entities;
    if (!world) return null;
    const layout = world.layout;
    const cell = layout.cellStepsX * layout.fields[layout.x].quant.step;
    return { cell, columns: layout.columns, cells: new Set(world.cellOf.values()) };
  }

  updateHud() {
    const { client, room } = this;
    const now = performance.now();
    this.meter.sample(now, client.bytesReceived);
    const entities = room.entities?.entities;
    let nearby = 0;
    if (entities) {
      for (const e of entities.values()) if (e.kind === game.Kind.Player && e.player !== room.player) nearby++;
    }
    $("hud-online").textContent = String(this.roster.size);
    $("hud-nearby").textContent = String(nearby);
    $("hud-entities").textContent = String(entities?.size ?? 0);
    $("hud-ping").textContent = room.rtt === null ? "–" : room.rtt < 1 ? "<1 ms" : `${Math.round(room.rtt)} ms`;
    $("hud-down").textContent = `${formatBytes(this.meter.rate())}/s`;
    $("hud-worker").textContent = client.process || "–";
    const mine = this.me !== null ? entities?.get(this.me) : undefined;
    $("hud-pos").textContent = mine ? `${Math.round(mine.x)}, ${Math.round(mine.y)}` : "–";
  }

  banner(text, sticky = false) {
    const el = $("banner");
    if (text === null) {
      if (!el.dataset.sticky) el.hidden = true;
      return;
    }
    el.textContent = text;
    el.hidden = false;
    if (sticky) el.dataset.sticky = "1";
  }
}

boot();
