'use strict';
// SocketCluster 20 server under test: socketcluster-server attached to a plain http
// server, default `ws` engine, one process, defaults otherwise (ping every 8 s). Clients
// do everything through the protocol itself (#handshake, #subscribe, #publish).
//   node --expose-gc sc_server.js --port P
// stdout: {"ready": true} when listening, then one reply per command on stdin:
//   {"cmd": "gc"} -> {"ok": true}        {"cmd": "stats"} -> {clients, channels, heap_kib}
const http = require('http');
const socketClusterServer = require('socketcluster-server');
const { parseArgs, serveCommands } = require('./wslib');

const o = parseArgs(process.argv.slice(2), { port: 0 });
const httpServer = http.createServer();
const agServer = socketClusterServer.attach(httpServer);

(async () => {
  for await (const { error } of agServer.listener('error')) console.error('[sc_server]', error && error.message);
})();

function stats() {
  const broker = agServer.brokerEngine;
  return {
    clients: agServer.clientsCount,
    channels: broker && broker._clientSubscribers ? Object.keys(broker._clientSubscribers).length : null,
    heap_kib: Math.round(process.memoryUsage().heapUsed / 1024),
  };
}

const reply = serveCommands({
  gc: () => { if (global.gc) { global.gc(); global.gc(); } return { ok: true, gc: !!global.gc }; },
  stats,
});
httpServer.listen(o.port, '127.0.0.1', () => reply({ ready: true, pid: process.pid }));
