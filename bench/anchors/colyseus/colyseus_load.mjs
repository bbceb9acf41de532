// Load generator for the Colyseus room (colyseus_server.mjs): `clients` @colyseus/sdk 0.18
// clients in this one process. Client 0 decodes every patch (its decoded entity count is
// the correctness check); the others only count their patches' bytes, which changes
// nothing on the server. Counters for the harness (bench/system.py):
//   units          patches received by client 0: one per server tick with changes
//   messages       patches received by all clients
//   bytes          their payload bytes (Colyseus message header included, WebSocket header not)
//   wire_bytes     the same with the WebSocket frame header
//   entity_updates entity updates those patches carry: moved entities per tick that a
//                  client sees (all of them, or view_frac of them), times its patches
// With `inputs` (default 1), every client answers each patch with one input (message
// type 0, [dx, dy]: a step of its entity), as the Tickwire bots answer each frame.
//   node colyseus_load.mjs
import { createRequire } from 'module';
import { performance } from 'perf_hooks';
import { Client } from '@colyseus/sdk';

const require = createRequire(import.meta.url);
const { serveCommands } = require('./wslib.js');
const ROOM_STATE = 14, ROOM_STATE_PATCH = 15;
const wsHeader = (n) => (n < 126 ? 2 : n < 65536 ? 4 : 10);

const st = { rooms: [], per: [], p: {}, fullStateBytes: 0, visibleMoved: 0 };

async function setup(cmd) {
  const p = st.p = cmd.params || {};
  const n = Number(p.entities) || 1000, clients = Number(p.clients) || 10;
  const moved = Math.round(n * (p.move_frac ?? 1));
  st.visibleMoved = p.view_frac > 0 ? moved / Math.max(1, Math.round(1 / p.view_frac)) : moved;
  const client = new Client(`http://127.0.0.1:${cmd.port}`);
  const opts = { entities: n, clients, hz: p.hz || 20, move_frac: p.move_frac ?? 1, view_frac: p.view_frac || 0 };
  const inputs = (p.inputs ?? 1) ? true : false;
  for (let i = 0; i < clients; i++) {
    const room = i === 0 ? await client.create('bench', opts) : await client.joinById(st.rooms[0].roomId);
    const c = { patches: 0, bytes: 0, wire: 0, inputs: 0 };
    const a = i * 2.399963229728653, step = [1.458 * Math.cos(a), 1.458 * Math.sin(a)];
    const events = room.connection.events, decode = events.onmessage;
    events.onmessage = (e) => {
      const b = new Uint8Array(e.data), code = b[0] & 0x3f;
      if (code === ROOM_STATE_PATCH) {
        c.patches++; c.bytes += b.length; c.wire += b.length + wsHeader(b.length);
        if (inputs) { room.send(0, step); c.inputs++; }
        if (i !== 0) return;
      } else if (code === ROOM_STATE && i === 0) st.fullStateBytes = b.length;
      decode(e);
    };
    st.rooms.push(room); st.per.push(c);
  }
  return { ok: true, connected: st.rooms.length, room: st.rooms[0].roomId };
}

function sample() {
  const sum = (f) => st.per.reduce((s, c) => s + f(c), 0);
  const messages = sum((c) => c.patches);
  const ents = st.rooms[0] && st.rooms[0].state && st.rooms[0].state.entities;
  return {
    t: performance.now() / 1000,
    units: st.per.length ? st.per[0].patches : 0,
    messages, bytes: sum((c) => c.bytes), wire_bytes: sum((c) => c.wire), inputs: sum((c) => c.inputs),
    entity_updates: messages * st.visibleMoved,
    // not counters: kept as read at the end of the window (the harness's "gauges")
    gauges: { client0_entities: ents ? ents.size : -1, full_state_bytes: st.fullStateBytes },
  };
}

async function stop() {
  // The server ticks by itself: nothing to stop. Leave so the room sees the clients go.
  await Promise.race([Promise.all(st.rooms.map((r) => r.leave().catch(() => {}))), new Promise((r) => setTimeout(r, 2000))]);
  return { ok: true, ...sample() };
}

const reply = serveCommands({ setup, start: () => ({ ok: true }), sample, stop });
reply({ ready: true, pid: process.pid });
