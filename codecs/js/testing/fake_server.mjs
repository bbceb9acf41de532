// A scripted Tickwire server for the client's tests: the ws package's WebSocketServer
// speaking the protocol through a codebook, each client message answered by a script.

import { once } from "node:events";

import { SUBPROTOCOL } from "../client.js";
import { WebSocket } from "./server.mjs";

export const WELCOME = Object.freeze({
  $type: "Welcome",
  socket_id: "fake.1",
  process: "fake",
  ping_interval_ms: 0,
  ping_timeout_ms: 0,
});

/** A scripted server: `script(peer, msg)` answers each message a client sends. */
export class FakeServer {
  constructor(codebook, script) {
    this.codebook = codebook;
    this.script = script;
    this.peers = [];
    this.closes = []; // close codes the clients sent
  }

  /** Listen on a free port; `registry` (an array) collects it for the test's cleanup. */
  async start(registry = null) {
    const codebook = this.codebook;
    this.wss = new WebSocket.WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    await once(this.wss, "listening");
    this.url = `ws://127.0.0.1:${this.wss.address().port}/`;
    this.wss.on("connection", (ws) => {
      const peer = {
        ws,
        ctx: codebook.context({ maxString: 1 << 20 }),
        send: (...msgs) => ws.send(codebook.encodeFrame(msgs)),
        received: [],
      };
      this.peers.push(peer);
      ws.on("close", (code) => this.closes.push(code));
      ws.on("message", (data) => {
        for (const msg of codebook.decodeFrame(new Uint8Array(data), peer.ctx)) {
          peer.received.push(msg);
          this.script(peer, msg);
        }
      });
    });
    registry?.push(this);
    return this;
  }

  async close() {
    for (const p of this.peers) p.ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

/** A script that answers Handshake with Welcome (and `welcome` over it), and passes the
 * rest to `more(peer, msg)`. */
export function welcoming(more = () => {}, welcome = {}) {
  return (peer, msg) => {
    if (msg.$type === "Handshake") peer.send({ ...WELCOME, ...welcome });
    else more(peer, msg);
  };
}

