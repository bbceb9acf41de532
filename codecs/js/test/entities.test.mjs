// Entity sync in JavaScript: the worked examples of codecs/WIRE.md ("Entity sync"), bad
// data, and a room fed EntitySyncInfo and EntitySync by a scripted server, rendered
// through its interpolation buffer. tests/test_js_entities.py compares this decoder with
// the Python reference on thousands of records.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { Client } from "../client.js";
import { ClientWorld, SyncLayout, applyEntitySync } from "../entities.js";
import { Codebook, DecodeError } from "../packed.js";
import * as protocol from "../generated/protocol.js";
import { FakeServer, welcoming } from "../testing/fake_server.mjs";
import { unhex } from "../testing/plain.mjs";
import { WebSocket, eventually } from "../testing/server.mjs";

const T = { timeout: 20000 };

// WIRE.md's struct Tiny { x, y: float (range: "0 16", precision: "0.5"); hp: ubyte (bits: 4) }
// with capacity 16 and cells of 4 units (8 steps, 5 x 5 cells).
const TINY = [
  { name: "x", kind: "quant", quant: { min: 0, max: 16, bits: 6, step: 0.5 } },
  { name: "y", kind: "quant", quant: { min: 0, max: 16, bits: 6, step: 0.5 } },
  { name: "hp", kind: "uint", width: 4 },
];
const INFO = {
  struct_name: "Tiny",
  id_bits: 4,
  x_field: 0,
  y_field: 1,
  cell_steps_x: 8,
  cell_steps_y: 8,
  columns: 5,
  rows: 5,
};
const world = () => new ClientWorld(SyncLayout.fromInfo(TINY, INFO));

test("the layout a client rebuilds from its struct and EntitySyncInfo", () => {
  const lay = SyncLayout.fromInfo(TINY, INFO);
  assert.deepEqual(lay.widths, [3, 3, 4]); // positions narrowed to their cell offset
  assert.equal(lay.cells, 25);
  assert.equal(lay.recordBits(0b111), 14);
  assert.equal(lay.recordBits(0b001), 7);
  assert.throws(() => SyncLayout.fromInfo(TINY, { ...INFO, x_field: 2 }), TypeError); // hp is no position
});

test("WIRE.md's example: a snapshot, an update, a departure", () => {
  const w = world();
  applyEntitySync(w, unhex("02010101" + "00a00d"));
  assert.deepEqual([...w.entities], [[0, { x: 5, y: 1.5, hp: 3 }]]);
  assert.deepEqual([...w.cellOf], [[0, 1]]);
  assert.deepEqual(w.spawned, [0]);
  applyEntitySync(w, unhex("0201040100" + "30"));
  assert.deepEqual(w.entities.get(0), { x: 5.5, y: 1.5, hp: 3 });
  applyEntitySync(w, unhex("0201020100" + "00"));
  assert.equal(w.entities.size, 0);
  assert.deepEqual(w.despawned, [0]);
});

test("WIRE.md's example: a gap-coded group", () => {
  const w = world();
  applyEntitySync(w, unhex("020101030100" + "da04c2ff"));
  assert.deepEqual(Object.fromEntries(w.entities), {
    0: { x: 5, y: 1.5, hp: 3 },
    2: { x: 4, y: 0, hp: 1 },
    3: { x: 7.5, y: 3.5, hp: 15 },
  });
  assert.deepEqual(w.inCell(1), [0, 2, 3]);
});

test("an entity crossing between two visible cells moves; a left cell empties", () => {
  const w = world();
  applyEntitySync(w, unhex("0201010100a00d")); // entity 0 in cell 1
  // One message: entity 0 departs cell 1 and enters cell 2 (x 8: offset 0 in column 2):
  // id 0 | x 0 | y 3 | hp 0 = 0x0180.
  applyEntitySync(w, unhex("020102010000" + "04010101008001"));
  assert.deepEqual(w.entities.get(0), { x: 8, y: 1.5, hp: 0 });
  assert.equal(w.cellOf.get(0), 2);
  assert.deepEqual(w.despawned, []);
  applyEntitySync(w, unhex("05")); // leave cell 2
  assert.equal(w.entities.size, 0);
  assert.deepEqual(w.despawned, [0]);
});

test("malformed data is a DecodeError (as in the Python decoder)", () => {
  for (const [bad, why] of [
    ["3401", /cell 26 is outside the grid/],
    ["020100", /truncated varint/],
    ["0201000100", /field mask 0/],
    ["020103010000", /group kind 3/],
    ["0201050100", /carry no field mask/],
    ["020101000000", /empty or truncated/],
    ["0201010121", /gaps of 33 bits/],
    ["02010101", /empty or truncated/],
    ["0201010100a0", /truncated entity group/],
    ["0201010101100000", /entity id 16 is over 4 bits/],
    ["ff", /truncated varint/],
  ]) {
    assert.throws(() => applyEntitySync(world(), unhex(bad)), (err) => err instanceof DecodeError && why.test(err.message), bad);
  }
});

// EntitySync (30) and EntitySyncInfo (31) are proposed for schemas/protocol.fbs (WIRE.md).
// Until the generated protocol module declares them, this test declares them itself, with
// their WIRE.md fields.
const DECLARED = new Codebook(protocol).byName.has("EntitySync");
const ENTITY_MESSAGES = {
  SCHEMA_NAME: "entity_sync_test",
  SCHEMA_HASH: "0000000000000000",
  MESSAGES: DECLARED
    ? []
    : [
        {
          id: 30,
          name: "EntitySync",
          encode: (w, m) => w.bytes(m.data, "EntitySync.data"),
          decode: (r) => ({ $type: "EntitySync", data: r.bytes(1 << 20) }),
        },
        {
          id: 31,
          name: "EntitySyncInfo",
          encode(w, m) {
            w.varint(m.room);
            w.string(m.struct_name, "EntitySyncInfo.struct_name");
            for (const k of ["id_bits", "x_field", "y_field"]) w.u8(m[k]);
            for (const k of ["cell_steps_x", "cell_steps_y", "columns", "rows"]) w.varint(m[k]);
          },
          decode(r) {
            const m = { $type: "EntitySyncInfo", room: r.uint(2 ** 32 - 1, "room"), struct_name: r.string(4096) };
            for (const k of ["id_bits", "x_field", "y_field"]) m[k] = r.u8();
            for (const k of ["cell_steps_x", "cell_steps_y", "columns", "rows"]) m[k] = r.uint(2 ** 32 - 1, k);
            return m;
          },
        },
      ],
};

const servers = [];
after(async () => {
  for (const s of servers) await s.close();
});

test("a room that syncs entities: room.entities, snapshots at tick times, render", T, async () => {
  const codebook = new Codebook(protocol, ENTITY_MESSAGES);
  let peer;
  const server = await new FakeServer(
    codebook,
    welcoming((p, msg) => {
      peer = p;
      if (msg.$type === "JoinRoom") {
        p.send(
          { $type: "RoomJoined", cid: msg.cid, room: 1, room_id: "w", room_type: "world", player: 1, seat: "w/s" },
          { $type: "EntitySyncInfo", room: 1, ...INFO },
          { $type: "Tick", room: 1, tick: 1, time_ms: 1000 },
          { $type: "EntitySync", data: unhex("0201010100a00d") }, // entity 0 at (5, 1.5)
        );
      }
    }),
  ).start(servers);
  let clock = 0;
  const c = new Client(server.url, {
    WebSocket,
    schemas: [ENTITY_MESSAGES],
    entityFields: { Tiny: TINY },
    interpolation: { delay: 100 },
    now: () => clock,
  });
  await c.connect();
  const spawns = [];
  const room = await c.joinRoom("world");
  room.on("tick", (r) => spawns.push([...r.entities.spawned]));
  assert.ok(room.entities instanceof ClientWorld);
  assert.deepEqual(room.entities.entities.get(0), { x: 5, y: 1.5, hp: 3 });
  assert.equal(room.snapshots.size, 1);

  clock = 50;
  peer.send({ $type: "Tick", room: 1, tick: 2, time_ms: 1050 }, { $type: "EntitySync", data: unhex("020104010030") });
  await eventually(() => room.ticks === 2);
  clock = 100;
  peer.send({ $type: "Tick", room: 1, tick: 3, time_ms: 1100 }); // nothing moved: a snapshot all the same
  await eventually(() => room.ticks === 3);
  assert.deepEqual(spawns, [[], []]); // entity 0 spawned in tick 1, before the listener
  assert.equal(room.snapshots.size, 3);
  assert.equal(room.receiveTime(125), 1125);
  assert.equal(room.render(125).get(0).x, 5.25); // drawn at 1025: halfway from 5 to 5.5
  assert.equal(room.render(175).get(0).x, 5.5);

  clock = 150;
  peer.send({ $type: "Tick", room: 1, tick: 4, time_ms: 1150 }, { $type: "EntitySync", data: unhex("020102010000") });
  await eventually(() => room.ticks === 4);
  assert.equal(room.entities.entities.size, 0);
  assert.equal(room.render(240).size, 1); // drawn at 1140: still there on the delayed timeline
  assert.equal(room.render(250).size, 0);
  await c.close();
});

test("a room that syncs a struct the client has no fields for: reported, not fatal", T, async () => {
  const codebook = new Codebook(protocol, ENTITY_MESSAGES);
  const server = await new FakeServer(
    codebook,
    welcoming((p, msg) => {
      if (msg.$type === "JoinRoom") {
        p.send(
          { $type: "RoomJoined", cid: msg.cid, room: 1, room_id: "w", room_type: "world", player: 1, seat: "w/s" },
          { $type: "EntitySyncInfo", room: 1, ...INFO, struct_name: "Unknown" },
          { $type: "Tick", room: 1, tick: 1, time_ms: 1000 },
          { $type: "EntitySync", data: unhex("0201010100a00d") },
        );
      }
    }),
  ).start(servers);
  const c = new Client(server.url, { WebSocket, schemas: [ENTITY_MESSAGES] });
  const errors = [];
  c.on("#error", (e) => errors.push(e.message));
  await c.connect();
  const room = await c.joinRoom("world");
  assert.equal(room.entities, null);
  assert.match(errors[0], /struct 'Unknown'.*entityFields/);
  assert.equal(room.tick, 1);
  assert.equal(c.connects, 1);
  await c.close();
});
