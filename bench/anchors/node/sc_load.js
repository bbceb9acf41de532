'use strict';
// Load generator for servers that speak the SocketCluster protocol (SocketCluster 20;
// later also Tickwire's sc-json codec): raw WebSocket clients from wslib.js, driven by
// the harness's load protocol (bench/system.py). Scenarios:
//   fanout  `subscribers` sockets on channel "c"; one publisher sends `burst` publishes
//           `rate` times a second. units = deliveries received by the subscribers.
//           (fanout-batch: the same, with a burst of 20.)
//   single  `subscribers` sockets on "c"; the publisher stays at most `inflight` messages
//           ahead of the slowest subscriber (closed loop). units = deliveries.
//   churn   one socket subscribes fresh channel names (acknowledged, at most `inflight`
//           in flight) and unsubscribes each again. units = subscribes + unsubscribes.
//   memory  "connect" opens idle handshaken sockets (they answer pings, nothing else).
// Publish-to-delivery latency is measured on one subscriber in `sample_every`.
//   node sc_load.js
const { performance } = require('perf_hooks');
const { clientFrame, scConnect, openMany, latencySummary, sleep, serveCommands } = require('./wslib');

const st = {
  scenario: null, port: 0, p: {},
  subs: [], pub: null, churner: null, idle: [],
  units: 0, published: 0, errors: 0, firstError: null, lat: [],
  running: false, timer: null, deadline: 0,
};
const now = () => performance.now();

function publishFrame(channel) {
  // data {"t": ms, "p": padding} of about `size` bytes, inside the #publish envelope
  const t = now().toFixed(3);
  const pad = Math.max(0, (st.p.size || 32) - 17 - t.length);
  return clientFrame(`{"event":"#publish","data":{"channel":"${channel}","data":{"t":${t},"p":"${'x'.repeat(pad)}"}}}`);
}

function watchSubscriber(c, sampled) {
  c.capture = sampled;
  c.onFrame = (op, payload) => {
    st.units++;
    if (!sampled || !payload || st.lat.length >= 100000) return;
    try {
      const m = JSON.parse(payload.toString());
      const t = m && m.data && m.data.data && m.data.data.t;
      if (typeof t === 'number') st.lat.push(now() - t);
    } catch (e) { /* not a publish */ }
  };
}

async function setup(cmd) {
  // fanout-batch is fanout with a larger burst: the same load
  st.scenario = cmd.scenario === 'fanout-batch' ? 'fanout' : cmd.scenario; st.port = cmd.port; st.p = cmd.params || {};
  const t0 = now();
  if (st.scenario === 'fanout' || st.scenario === 'single') {
    const n = st.p.subscribers || 1000;
    const r = await openMany(n, 50, () => scConnect(st.port, 'c'));
    st.subs = r.conns;
    const every = st.p.sample_every || (st.scenario === 'single' ? 1 : 100);
    st.subs.forEach((c, i) => watchSubscriber(c, i % every === 0));
    st.pub = await scConnect(st.port);
    if (st.subs.length < n) return { error: `only ${st.subs.length} of ${n} subscribers (${r.firstError})` };
    return { ok: true, connected: st.subs.length + 1, errors: r.errors, ms: Math.round(now() - t0) };
  }
  if (st.scenario === 'churn') {
    st.churner = await scConnect(st.port);
    return { ok: true, connected: 1 };
  }
  if (st.scenario === 'memory') return { ok: true, connected: 0 };
  return { error: `sc_load does not run scenario ${st.scenario}` };
}

function startFanout() {
  const rate = st.p.rate || 10, burst = st.p.burst || 1, t0 = now();
  let rounds = 0;
  st.timer = setInterval(() => {
    if (!st.running || now() > st.deadline) return stopLoad();
    const due = Math.floor(((now() - t0) / 1000) * rate) - rounds;
    if (due <= 0) return;
    const frames = [];
    for (let i = 0; i < due * burst; i++) frames.push(publishFrame('c'));
    st.pub.write(frames.length === 1 ? frames[0] : Buffer.concat(frames));
    rounds += due; st.published += due * burst;
  }, 5);
}

function startSingle() {
  const window = st.p.inflight || 100, base = st.subs.map((c) => c.frames);
  let scheduled = false;
  const slowest = () => { let m = Infinity; st.subs.forEach((c, i) => { m = Math.min(m, c.frames - base[i]); }); return m; };
  const refill = () => {
    scheduled = false;
    if (!st.running) return;
    if (now() > st.deadline) return stopLoad();
    const ahead = st.published - slowest();
    if (ahead > window / 2) return;
    const frames = [];
    for (let i = 0; i < window - ahead; i++) frames.push(publishFrame('c'));
    st.pub.write(Buffer.concat(frames));
    st.published += frames.length;
  };
  const kick = () => { if (!scheduled && st.running) { scheduled = true; setImmediate(refill); } };
  for (const c of st.subs) { const f = c.onFrame; c.onFrame = (op, p, n) => { f(op, p, n); kick(); }; }
  st.timer = setInterval(refill, 10);
  refill();
}

function startChurn() {
  const c = st.churner, window = st.p.inflight || 1000, max = st.p.max_channels || 5000000;
  let issued = 0, acked = 0;
  const fill = () => {
    if (!st.running) return;
    if (now() > st.deadline || acked >= max) return stopLoad();
    const out = issued - acked;
    if (out > window / 2) return;
    const k = Math.min(window - out, max - issued);
    if (k <= 0) return;
    const frames = [];
    for (let i = 0; i < k; i++) {
      const name = 'ch' + issued++;
      frames.push(clientFrame(`{"event":"#subscribe","data":{"channel":"${name}"},"cid":${c.cid++}}`));
      frames.push(clientFrame(`{"event":"#unsubscribe","data":"${name}"}`)); // a transmit: no reply
    }
    c.write(Buffer.concat(frames));
  };
  c.capture = true;
  c.onFrame = (op, payload) => {
    acked++;
    st.units += 2;
    if (payload && payload.includes('"error"')) { st.errors++; st.firstError = st.firstError || payload.toString().slice(0, 200); }
    fill();
  };
  st.timer = setInterval(fill, 20);
  fill();
}

function stopLoad() {
  st.running = false;
  if (st.timer) { clearInterval(st.timer); st.timer = null; }
}

function start() {
  st.running = true;
  st.deadline = now() + (st.p.max_s || 60) * 1000;
  ({ fanout: startFanout, single: startSingle, churn: startChurn })[st.scenario]();
  return { ok: true };
}

function sample() {
  const lat = latencySummary(st.lat);
  st.lat = [];
  return {
    // a fan-out delivery is a frame of its own (in churn, units are not frames)
    t: now() / 1000, units: st.units, frames: st.scenario === 'churn' ? 0 : st.units, published: st.published, errors: st.errors,
    open: st.subs.filter((c) => !c.closed).length, ...lat, first_error: st.firstError,
  };
}

async function stop() {
  stopLoad();
  if (st.scenario === 'fanout') {
    const expected = () => st.published * st.subs.length;
    const end = now() + (st.p.drain_s || 0) * 1000;
    while (st.units < expected() && now() < end) await sleep(50);
    return { ok: true, published: st.published, delivered: st.units, backlog: expected() - st.units };
  }
  return { ok: true, published: st.published, units: st.units };
}

async function connect(cmd) {
  const r = await openMany(cmd.n, 100, () => scConnect(st.port));
  st.idle.push(...r.conns);
  return { connected: st.idle.length, errors: r.errors, first_error: r.firstError };
}

const reply = serveCommands({ setup, start, sample, stop, connect });
reply({ ready: true, pid: process.pid });
