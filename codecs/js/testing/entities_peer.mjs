// The JavaScript side of tests/test_js_entities.py: applies EntitySync data to a
// ClientWorld, tick after tick, and prints the worlds as JSON for comparison with the
// Python reference decoder (engine/interest.py).
//
//   node entities_peer.mjs CASES.json
//   CASES: {"cases": [{"fields": [...], "info": {...}, "ticks": ["<data hex>", ...]}]}
//   out:   {"cases": [[{"entities": {id: fields}, "cells": {id: cell}, "spawned": [...],
//                       "despawned": [...]} | {"error": "..."}, ...], ...]}
// A case stops at its first error. Non-finite floats are written as strings ("NaN") and
// bigints as "<digits>n", since JSON has neither.

import { readFileSync } from "node:fs";

import { ClientWorld, SyncLayout, applyEntitySync } from "../entities.js";
import { DecodeError } from "../packed.js";
import { unhex } from "./plain.mjs";

function plainValue(v) {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return v;
}

function snapshot(world) {
  const entities = {};
  for (const [id, fields] of world.entities) {
    entities[id] = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, plainValue(v)]));
  }
  return {
    entities,
    cells: Object.fromEntries(world.cellOf),
    spawned: [...world.spawned],
    despawned: [...world.despawned],
  };
}

const { cases } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = cases.map(({ fields, info, ticks }) => {
  const world = new ClientWorld(SyncLayout.fromInfo(fields, info));
  const results = [];
  for (const data of ticks) {
    world.spawned.length = 0;
    world.despawned.length = 0;
    try {
      applyEntitySync(world, unhex(data));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      results.push({ error: err.message });
      break;
    }
    results.push(snapshot(world));
  }
  return results;
});
process.stdout.write(JSON.stringify({ cases: out }));
