// Colyseus 0.18 server under test: room "bench" holds a MapSchema of `entities` entities
// {x: float32, y: float32, k: uint8}. Its simulation moves `move_frac` of them every tick
// at `hz`, and patchRate sends the changes at the same rate. With `view_frac` > 0 every
// client gets a StateView holding one entity in round(1 / view_frac), at an offset that
// depends on its join order (a fixed view: this room computes no interest, so Colyseus is
// charged nothing for it). The room is created by the first client, with these options.
// Inputs: message type 0, [dx, dy], moves the sender's entity (one in `entities`, by join
// order) by that much; the load sends one per patch per client when `inputs` is set.
// CPU: each simulation tick and each broadcastPatch is timed with process.cpuUsage(), so
// stats splits the process's CPU (cumulative µs) as the Tickwire bench server does:
// out_cpu_us (simulation, patch encoding, writes) and in_cpu_us (everything else: reading
// and handling the inputs, the event loop).
//   node colyseus_server.mjs --port P
// stdout: {"ready": true}, then replies to {"cmd": "stats"} (ticks, patches, inputs, CPU)
// and {"cmd": "gc"}.
import { createRequire } from 'module';
import { Server, Room } from 'colyseus';
import { WebSocketTransport } from '@colyseus/ws-transport';
import { schema, t, MapSchema, StateView } from '@colyseus/schema';

const require = createRequire(import.meta.url);
const { parseArgs, serveCommands } = require('./wslib.js');
const o = parseArgs(process.argv.slice(2), { port: 0 });

const Entity = schema({ x: t.float32(), y: t.float32(), k: t.uint8() }, 'Entity');
const State = schema({ entities: t.map(Entity) }, 'State');
const ViewState = schema({ entities: t.map(Entity).view() }, 'ViewState');
const counters = { ticks: 0, patches: 0, joins: 0, rooms: 0, inputs: 0 };
let outCpuUs = 0;
const cpuNow = () => { const u = process.cpuUsage(); return u.user + u.system; };
const timed = (fn) => function (...args) {
  const t0 = cpuNow();
  try { return fn.apply(this, args); } finally { outCpuUs += cpuNow() - t0; }
};

class BenchRoom extends Room {
  onCreate(opts) {
    counters.rooms++;
    this.n = Number(opts.entities) || 1000;
    this.moving = Math.round(this.n * (opts.move_frac ?? 1));
    this.every = opts.view_frac > 0 ? Math.max(1, Math.round(1 / opts.view_frac)) : 0;
    this.maxClients = (Number(opts.clients) || 10) + 10;
    this.autoDispose = false;
    const state = new (this.every ? ViewState : State)();
    if (!state.entities) state.entities = new MapSchema();
    this.ents = [];
    for (let i = 0; i < this.n; i++) {
      const e = new Entity();
      e.x = (i * 7.3) % 1000; e.y = (i * 3.1) % 1000; e.k = i % 200;
      state.entities.set('e' + i, e);
      this.ents.push(e);
    }
    this.setState(state);
    const period = 1000 / (Number(opts.hz) || 20);
    const broadcastPatch = this.broadcastPatch.bind(this);
    this.broadcastPatch = timed(() => { counters.patches++; return broadcastPatch(); });
    this.patchRate = period;
    this.tickN = 0;
    this.setSimulationInterval(timed(() => this.tick()), period);
    this.onMessage(0, (client, m) => {
      counters.inputs++;
      const e = this.ents[client.userData.slot % this.n];
      if (Array.isArray(m) && e) { e.x = (e.x + 1000 + m[0]) % 1000; e.y = (e.y + 1000 + m[1]) % 1000; }
    });
  }

  tick() {
    if (this.moving > 0) {
      const start = (this.tickN * this.moving) % this.n;
      for (let j = 0; j < this.moving; j++) {
        const e = this.ents[(start + j) % this.n];
        e.x = (e.x + 1.25) % 1000; e.y = (e.y + 0.75) % 1000;
      }
    }
    this.tickN++;
    counters.ticks++;
  }

  onJoin(client) {
    const slot = counters.joins++;
    client.userData = { slot };
    if (this.every) {
      client.view = new StateView();
      for (let i = slot % this.every; i < this.n; i += this.every) client.view.add(this.ents[i]);
    }
  }
}

const gameServer = new Server({ transport: new WebSocketTransport() });
gameServer.define('bench', BenchRoom);
await gameServer.listen(o.port, '127.0.0.1');
const reply = serveCommands({
  gc: () => { if (global.gc) { global.gc(); global.gc(); } return { ok: true }; },
  stats: () => { const total = cpuNow(); return { ...counters, out_cpu_us: outCpuUs, in_cpu_us: total - outCpuUs }; },
});
reply({ ready: true, pid: process.pid });
