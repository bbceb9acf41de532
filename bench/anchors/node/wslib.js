'use strict';
// What the Node scripts of the bench share: a minimal WebSocket client over net.Socket
// (RFC 6455 framing, lighter than `ws` or socketcluster-client, so the load generator
// costs less than the server it loads), the SocketCluster protocol on top of it, the
// JSON-lines command loop, and percentiles. Loopback only; every wait has a time limit.
const net = require('net');
const crypto = require('crypto');
const readline = require('readline');

// Client frames carry an all-zero mask key: valid per RFC 6455 and the payload stays as is.
function clientFrame(payload, opcode = 1) {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const n = p.length;
  let h;
  if (n < 126) { h = Buffer.alloc(6); h[1] = 0x80 | n; }
  else if (n < 65536) { h = Buffer.alloc(8); h[1] = 0x80 | 126; h.writeUInt16BE(n, 2); }
  else { h = Buffer.alloc(14); h[1] = 0x80 | 127; h.writeUInt32BE(Math.floor(n / 2 ** 32), 2); h.writeUInt32BE(n >>> 0, 6); }
  h[0] = 0x80 | opcode;
  return Buffer.concat([h, p]);
}
const EMPTY_TEXT = clientFrame('');

class Conn {
  // onFrame(opcode, payloadOrNull, length): called for every data frame; the payload is
  // only assembled when `capture` is true (counting alone is cheaper).
  constructor(sock, rest) {
    this.sock = sock;
    this.capture = true;
    this.onFrame = null;
    this.closed = false;
    this.frames = 0;
    this.bytes = 0;
    this._need = 0; this._parts = null; this._pending = null; this._op = 0; this._len = 0;
    sock.on('data', (d) => this._data(d));
    sock.on('close', () => { this.closed = true; });
    sock.on('error', () => { this.closed = true; });
    if (rest && rest.length) this._data(rest);
  }

  _data(chunk) {
    if (this._pending) { chunk = Buffer.concat([this._pending, chunk]); this._pending = null; }
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (this._need > 0) {
        const take = Math.min(this._need, len - off);
        if (this._parts) this._parts.push(chunk.subarray(off, off + take));
        this._need -= take; off += take;
        if (this._need === 0) this._done();
        continue;
      }
      if (len - off < 2) { this._pending = Buffer.from(chunk.subarray(off)); return; }
      let plen = chunk[off + 1] & 0x7f, hlen = 2;
      if (plen === 126) { hlen = 4; if (len - off < 4) { this._pending = Buffer.from(chunk.subarray(off)); return; } plen = chunk.readUInt16BE(off + 2); }
      else if (plen === 127) { hlen = 10; if (len - off < 10) { this._pending = Buffer.from(chunk.subarray(off)); return; } plen = chunk.readUInt32BE(off + 2) * 2 ** 32 + chunk.readUInt32BE(off + 6); }
      this._op = chunk[off] & 0x0f; this._len = plen;
      off += hlen;
      this._need = plen;
      this._parts = (this.capture || this._op >= 8) ? [] : null;
      if (plen === 0) this._done();
    }
  }

  _done() {
    const op = this._op, n = this._len;
    const payload = this._parts ? (this._parts.length === 1 ? this._parts[0] : Buffer.concat(this._parts)) : null;
    this._parts = null;
    if (op === 1 && n === 0) { this.write(EMPTY_TEXT); return; } // SocketCluster ping: '' -> pong ''
    if (op === 9) { this.write(clientFrame(payload, 10)); return; } // WebSocket ping -> pong
    if (op === 8) { this.closed = true; try { this.sock.end(); } catch (e) { /* gone */ } return; }
    if (op === 10) return;
    this.frames++; this.bytes += n;
    if (this.onFrame) this.onFrame(op, payload, n);
  }

  write(buf) { if (!this.closed) this.sock.write(buf); }
  sendText(s) { this.write(clientFrame(s)); }
  close() {
    if (this.closed) return;
    this.closed = true;
    try { this.sock.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0])); } catch (e) { /* gone */ }
    setTimeout(() => { try { this.sock.destroy(); } catch (e) { /* gone */ } }, 500).unref();
  }
}

function connectWs(port, path = '/', timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0), settled = false;
    const fail = (e) => { if (!settled) { settled = true; clearTimeout(t); s.destroy(); reject(e); } };
    const t = setTimeout(() => fail(new Error('WebSocket handshake timed out')), timeoutMs);
    s.on('connect', () => {
      s.setNoDelay(true);
      const key = crypto.randomBytes(16).toString('base64');
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    const onData = (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) { if (buf.length > 65536) fail(new Error('handshake response too long')); return; }
      s.removeListener('data', onData);
      const head = buf.subarray(0, i).toString();
      if (!/^HTTP\/1\.1 101/.test(head)) return fail(new Error('upgrade refused: ' + head.split('\r\n')[0]));
      settled = true; clearTimeout(t);
      resolve(new Conn(s, buf.subarray(i + 4)));
    };
    s.on('data', onData);
    s.on('error', fail);
  });
}

// SocketCluster protocol v2 (JSON): requests carry a cid, replies the same rid.
function scRequest(conn, obj, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    const prev = conn.onFrame, prevCapture = conn.capture;
    conn.capture = true;
    const done = (fn, v) => { clearTimeout(t); conn.onFrame = prev; conn.capture = prevCapture; fn(v); };
    const t = setTimeout(() => done(reject, new Error(`no reply to ${obj.event} in ${timeoutMs} ms`)), timeoutMs);
    conn.onFrame = (op, payload) => {
      let m;
      try { m = JSON.parse(payload.toString()); } catch (e) { return; }
      if (m && m.rid === obj.cid) {
        if (m.error) done(reject, new Error(`${obj.event}: ${JSON.stringify(m.error)}`)); else done(resolve, m);
      }
    };
    conn.sendText(JSON.stringify(obj));
  });
}

async function scConnect(port, channel = null) {
  const c = await connectWs(port, '/socketcluster/');
  c.cid = 1;
  await scRequest(c, { event: '#handshake', data: { authToken: null }, cid: c.cid++ });
  if (channel) await scRequest(c, { event: '#subscribe', data: { channel }, cid: c.cid++ });
  c.capture = false;
  return c;
}

// Run fn(i) for i < n with at most `conc` in flight; failures are counted, not thrown.
async function openMany(n, conc, fn) {
  const out = []; let next = 0, errors = 0, firstError = null;
  async function worker() {
    while (next < n) {
      const i = next++;
      for (let attempt = 0; attempt < 3; attempt++) {
        try { out.push(await fn(i)); break; } catch (e) { errors++; firstError = firstError || String(e.message || e); await sleep(100 * (attempt + 1)); }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(conc, n) }, worker));
  return { conns: out, errors, firstError };
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}
function latencySummary(samples) {
  const s = samples.slice().sort((a, b) => a - b);
  return { lat_p50_ms: percentile(s, 0.5), lat_p99_ms: percentile(s, 0.99), lat_n: s.length };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(argv, defaults) {
  const o = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) continue;
    const k = argv[i].slice(2), v = argv[i + 1];
    if (v !== undefined && !v.startsWith('--')) { o[k] = isNaN(Number(v)) ? v : Number(v); i++; } else o[k] = true;
  }
  return o;
}

// The harness's command loop: one JSON command per stdin line, one JSON reply per line
// on stdout, in order. End of stdin (the harness went away) ends the process; so does a
// hard limit, whatever happens.
function serveCommands(handlers, hardLimitMs = 900000) {
  const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    if (!line.trim()) return;
    queue = queue.then(async () => {
      let cmd;
      try { cmd = JSON.parse(line); } catch (e) { return reply({ error: 'bad JSON command' }); }
      if (cmd.cmd === 'quit') process.exit(0);
      const h = handlers[cmd.cmd];
      if (!h) return reply({ error: `unknown command ${cmd.cmd}` });
      try { reply(await h(cmd)); } catch (e) { reply({ error: String((e && e.stack) || e) }); }
    });
  });
  rl.on('close', () => process.exit(0));
  setTimeout(() => { console.error('hard time limit reached'); process.exit(3); }, hardLimitMs).unref();
  return reply;
}

module.exports = { clientFrame, Conn, connectWs, scRequest, scConnect, openMany, latencySummary, sleep, parseArgs, serveCommands };
