// A live Tickwire server for the client's tests: `python -m engine.cli run APP --single`
// on 127.0.0.1, started and stopped by the test, every wait bounded.
//
// The Python is the repository's virtualenv (.venv/bin/python, or $TICKWIRE_PYTHON); the
// WebSocket under Node is the `ws` package pinned in tests/package.json.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The `ws` package's WebSocket (browser-compatible API), from tests/node_modules. */
export const WebSocket = createRequire(join(ROOT, "tests", "package.json"))("ws");

export function python() {
  if (process.env.TICKWIRE_PYTHON) return process.env.TICKWIRE_PYTHON;
  const venv = join(ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/** A TCP port that was free a moment ago. */
export async function freePort() {
  const srv = createServer();
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const { port } = srv.address();
  srv.close();
  await once(srv, "close");
  return port;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `predicate` until it is true; throws after `timeout` ms. */
export async function eventually(predicate, { timeout = 5000, interval = 10, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}

/**
 * One server process on a fixed port: start() it, stop() it (SIGTERM: clients get 1001),
 * kill() it (SIGKILL: the connections drop), start() it again on the same port.
 */
export class Server {
  constructor({ app = "tests.js_app:app", port = 0, limits = {}, env = {} } = {}) {
    this.app = app;
    this.port = port;
    this.limits = limits;
    this.env = env;
    this.proc = null;
    this.output = "";
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/`;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start({ timeout = 20000 } = {}) {
    if (!this.port) this.port = await freePort();
    const args = ["-m", "engine.cli", "run", this.app, "--single", "--host", "127.0.0.1", "--port", String(this.port)];
    args.push("--log-level", "warning");
    for (const [name, value] of Object.entries(this.limits)) args.push("--limit", `${name}=${value}`);
    const proc = spawn(python(), args, {
      cwd: ROOT,
      env: { ...process.env, PYTHONUNBUFFERED: "1", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc = proc;
    const keep = (chunk) => {
      this.output = (this.output + chunk).slice(-20000);
    };
    proc.stdout.setEncoding("utf8").on("data", keep);
    proc.stderr.setEncoding("utf8").on("data", keep);
    const deadline = Date.now() + timeout;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`the server exited (${proc.exitCode ?? proc.signalCode}):\n${this.output}`);
      }
      try {
        const res = await fetch(`${this.http}/health`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return this;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`the server did not answer /health within ${timeout} ms:\n${this.output}`);
      }
      await sleep(50);
    }
  }

  async #signal(signal, timeout) {
    const proc = this.proc;
    if (proc === null) return;
    this.proc = null;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, "exit");
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeout);
    await exited;
    clearTimeout(timer);
  }

  /** SIGTERM: the server closes its clients with 1001 and exits (SIGKILL after 5 s). */
  stop() {
    return this.#signal("SIGTERM", 5000);
  }

  /** SIGKILL: connections drop without a close frame. */
  kill() {
    return this.#signal("SIGKILL", 5000);
  }
}
