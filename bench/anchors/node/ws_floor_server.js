'use strict';
// The Node floor: a plain `ws` server speaking the floor protocol of the Python floors
// (bench/anchors/python/py_server.py), so the same load generator drives all of them:
//   b"S"            subscribe this connection (answered with b"s")
//   b"P" + payload  publish: the frame is built once (header + payload) and written with
//                   socket.write to every subscriber, nothing else per subscriber
//   b"E" + payload  echo it back
//   node ws_floor_server.js --port P
const http = require('http');
const { WebSocketServer, Sender } = require('ws');
const { parseArgs, serveCommands } = require('./wslib');

const o = parseArgs(process.argv.slice(2), { port: 0 });
const httpServer = http.createServer();
const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false });
const subscribers = new Set();
const S = 0x53, P = 0x50, E = 0x45;
let published = 0;

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    const kind = data[0];
    if (kind === P) {
      const frame = Buffer.concat(Sender.frame(data, { fin: true, rsv1: false, opcode: 2, mask: false, readOnly: true }));
      for (const sub of subscribers) sub._socket.write(frame);
      published++;
    } else if (kind === E) {
      ws.send(data, { binary: true });
    } else if (kind === S) {
      subscribers.add(ws);
      ws.send(Buffer.from('s'), { binary: true });
    }
  });
  ws.on('close', () => subscribers.delete(ws));
  ws.on('error', () => subscribers.delete(ws));
});

const reply = serveCommands({
  gc: () => { if (global.gc) { global.gc(); global.gc(); } return { ok: true }; },
  stats: () => ({ clients: wss.clients.size, subscribers: subscribers.size, published }),
});
httpServer.listen(o.port, '127.0.0.1', () => reply({ ready: true, pid: process.pid }));
