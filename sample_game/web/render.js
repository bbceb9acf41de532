// Drawing the meadow on a canvas: ground and scenery, entities sorted by depth, names,
// speech bubbles, the interest grid (G) and a minimap. It draws what it is given: the
// game (main.js) hands it the interpolated entities of each animation frame.

import { PLAZA, PONDS, TILE, WORLD_SIZE, lushness, tileDecor } from "./terrain.js";

/** Players' colours, by Mob.look (the room picks one from the name). */
export const PALETTE = [
  "#ff6b6b", "#ffa94d", "#ffd43b", "#a9e34b", "#51cf66", "#38d9a9",
  "#3bc9db", "#4dabf7", "#748ffc", "#9775fa", "#da77f2", "#f783ac",
];
const KIND = { PLAYER: 0, SLIME: 1, BUNNY: 2, WISP: 3 };
const SEEN = 430; // world units from the avatar that are always in its interest view
const FADE_MS = 350; // entities that come into view fade in
const BUBBLE_MS = 6000;
const GROUND_STEP = 8; // world units per texel of the baked ground colour
const DRY = [62, 112, 48];
const LUSH = [112, 168, 74];

export class Renderer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.width = 0;
    this.height = 0;
    this.dpr = 1;
    this.scale = 1; // screen px per world unit
    this.cam = { x: PLAZA.x, y: PLAZA.y };
    this.decor = new Map(); // "tx,ty" -> tile decorations
    this.ground = bakeGround();
    this.resize();
  }

  resize() {
    const dpr = Math.min(globalThis.devicePixelRatio || 1, 2);
    const w = this.canvas.clientWidth || 800;
    const h = this.canvas.clientHeight || 600;
    if (w === this.width && h === this.height && dpr === this.dpr) return;
    this.width = w;
    this.height = h;
    this.dpr = dpr;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    // The screen shows no more than the interest view holds, so nothing pops in on screen.
    this.scale = Math.max(w, h) / (2 * SEEN);
  }

  toWorld(sx, sy) {
    return { x: this.cam.x + (sx - this.width / 2) / this.scale, y: this.cam.y + (sy - this.height / 2) / this.scale };
  }

  toScreen(x, y) {
    return { x: (x - this.cam.x) * this.scale + this.width / 2, y: (y - this.cam.y) * this.scale + this.height / 2 };
  }

  /**
   * One frame. `scene`: {now, me (entity id or null), entities (Map id -> fields), motion
   * (Map id -> px/s), seenAt (Map id -> first seen, ms), roster (Map player -> {name,
   * look}), bubbles (Map player -> {text, at}), target ({x, y} or null), grid (null or
   * {cell, cells: Set of cell numbers, columns})}.
   */
  draw(scene) {
    this.resize();
    const { ctx, dpr, scale } = this;
    const me = scene.me !== null ? scene.entities.get(scene.me) : undefined;
    if (me !== undefined) {
      this.cam.x = me.x;
      this.cam.y = me.y;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#1d3a22";
    ctx.fillRect(0, 0, this.width, this.height);
    // World space: 1 unit = `scale` px, the camera at the centre.
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, dpr * (this.width / 2 - this.cam.x * scale), dpr * (this.height / 2 - this.cam.y * scale));
    const view = this.visibleRect();
    this.drawGround(view, scene.now);
    if (scene.grid) this.drawGrid(view, scene.grid);
    if (scene.target) this.drawTarget(scene.target, scene.now);
    const order = [...scene.entities].sort((a, b) => a[1].y - b[1].y);
    for (const [id, e] of order) {
      if (e.x < view.x0 - 40 || e.x > view.x1 + 40 || e.y < view.y0 - 40 || e.y > view.y1 + 40) continue;
      ctx.globalAlpha = fadeIn(scene, id);
      this.drawEntity(id, e, scene, id === scene.me);
    }
    ctx.globalAlpha = 1;
    // Screen space: labels stay crisp and the same size whatever the zoom.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // Everyone's name and words, then ours on top of them.
    const players = order.filter(([id, e]) => Math.round(e.kind) === KIND.PLAYER && id !== scene.me);
    if (me !== undefined) players.push([scene.me, me]);
    for (const [id, e] of players) {
      const p = this.toScreen(e.x, e.y);
      if (p.x < -100 || p.x > this.width + 100 || p.y < -60 || p.y > this.height + 100) continue;
      ctx.globalAlpha = fadeIn(scene, id);
      const who = scene.roster.get(Math.round(e.player));
      this.drawName(p, who ? who.name : `player ${Math.round(e.player)}`, id === scene.me);
      const bubble = scene.bubbles.get(Math.round(e.player));
      if (bubble && scene.now - bubble.at < BUBBLE_MS) this.drawBubble(p, bubble.text, scene.now - bubble.at);
    }
    ctx.globalAlpha = 1;
    this.drawVignette();
    if (me !== undefined) this.drawMinimap(scene, me);
  }

  visibleRect() {
    const a = this.toWorld(0, 0);
    const b = this.toWorld(this.width, this.height);
    return { x0: a.x, y0: a.y, x1: b.x, y1: b.y };
  }

  // -- ground ------------------------------------------------------------------------------
  drawGround(view, now) {
    const ctx = this.ctx;
    const x0 = Math.max(0, view.x0);
    const y0 = Math.max(0, view.y0);
    const x1 = Math.min(WORLD_SIZE, view.x1);
    const y1 = Math.min(WORLD_SIZE, view.y1);
    if (x1 <= x0 || y1 <= y0) return;
    // The ground's colour: a small texture stretched over the world, smoothed.
    const s = GROUND_STEP;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.ground, x0 / s, y0 / s, (x1 - x0) / s, (y1 - y0) / s, x0, y0, x1 - x0, y1 - y0);
    const tiles = [];
    for (let ty = Math.floor(y0 / TILE); ty * TILE < y1; ty++) {
      for (let tx = Math.floor(x0 / TILE); tx * TILE < x1; tx++) tiles.push(this.tile(tx, ty));
    }
    const all = tiles.flat();
    this.drawPlaza(now);
    for (const p of PONDS) this.drawPond(p, view, now);
    ctx.strokeStyle = "rgba(30, 80, 30, 0.55)";
    ctx.lineWidth = 1.3;
    ctx.lineCap = "round";
    ctx.beginPath();
    for (const d of all) {
      if (d.type !== "tuft") continue;
      ctx.moveTo(d.x - d.r * 0.6, d.y - d.r + d.rot * 2);
      ctx.lineTo(d.x, d.y);
      ctx.lineTo(d.x + d.r * 0.2 + d.rot, d.y - d.r * 1.3);
      ctx.moveTo(d.x, d.y);
      ctx.lineTo(d.x + d.r * 0.8, d.y - d.r * 0.9);
    }
    ctx.stroke();
    for (const d of all) {
      if (d.type === "stone") {
        ctx.fillStyle = "rgba(0,0,0,0.18)";
        ctx.beginPath();
        ctx.ellipse(d.x + 1.5, d.y + 2, d.r, d.r * 0.6, d.rot, 0, Math.PI * 2);
        ctx.fill();
        ctx.fillStyle = "#9aa39a";
        ctx.beginPath();
        ctx.ellipse(d.x, d.y, d.r, d.r * 0.62, d.rot, 0, Math.PI * 2);
        ctx.fill();
        ctx.fillStyle = "rgba(255,255,255,0.25)";
        ctx.beginPath();
        ctx.ellipse(d.x - d.r * 0.25, d.y - d.r * 0.2, d.r * 0.45, d.r * 0.25, d.rot, 0, Math.PI * 2);
        ctx.fill();
      } else if (d.type === "flower") {
        ctx.fillStyle = d.color;
        ctx.beginPath();
        circle(ctx, d.x, d.y, d.r);
        ctx.fill();
        ctx.fillStyle = "rgba(120, 80, 0, 0.8)";
        ctx.beginPath();
        circle(ctx, d.x, d.y, d.r * 0.4);
        ctx.fill();
      } else if (d.type === "mushroom") {
        ctx.fillStyle = "#efe6d2";
        ctx.fillRect(d.x - d.r * 0.25, d.y - d.r * 0.2, d.r * 0.5, d.r * 0.9);
        ctx.fillStyle = "#d9480f";
        ctx.beginPath();
        ctx.ellipse(d.x, d.y - d.r * 0.2, d.r, d.r * 0.6, 0, Math.PI, 0);
        ctx.fill();
        ctx.fillStyle = "#fff";
        ctx.beginPath();
        circle(ctx, d.x - d.r * 0.35, d.y - d.r * 0.45, d.r * 0.15);
        circle(ctx, d.x + d.r * 0.3, d.y - d.r * 0.5, d.r * 0.12);
        ctx.fill();
      }
    }
    // The world's edge.
    ctx.strokeStyle = "rgba(10, 30, 12, 0.9)";
    ctx.lineWidth = 10;
    ctx.strokeRect(-5, -5, WORLD_SIZE + 10, WORLD_SIZE + 10);
  }

  tile(tx, ty) {
    const key = `${tx},${ty}`;
    let d = this.decor.get(key);
    if (d === undefined) {
      if (this.decor.size > 4000) this.decor.clear();
      d = tileDecor(tx, ty);
      this.decor.set(key, d);
    }
    return d;
  }

  drawPlaza(now) {
    const ctx = this.ctx;
    const { x, y, r } = PLAZA;
    ctx.fillStyle = "rgba(0,0,0,0.12)";
    ctx.beginPath();
    circle(ctx, x, y + 4, r + 6);
    ctx.fill();
    ctx.fillStyle = "#b9ad95";
    ctx.beginPath();
    circle(ctx, x, y, r);
    ctx.fill();
    ctx.strokeStyle = "rgba(90, 75, 55, 0.35)";
    ctx.lineWidth = 2;
    for (let ring = 40; ring < r; ring += 32) {
      ctx.beginPath();
      circle(ctx, x, y, ring);
      ctx.stroke();
    }
    ctx.beginPath();
    for (let k = 0; k < 16; k++) {
      const a = (k * Math.PI) / 8;
      ctx.moveTo(x + Math.cos(a) * 40, y + Math.sin(a) * 40);
      ctx.lineTo(x + Math.cos(a) * r, y + Math.sin(a) * r);
    }
    ctx.stroke();
    ctx.strokeStyle = "#8c7f68";
    ctx.lineWidth = 5;
    ctx.beginPath();
    circle(ctx, x, y, r);
    ctx.stroke();
    // The fountain.
    ctx.fillStyle = "#7d8a92";
    ctx.beginPath();
    circle(ctx, x, y, 30);
    ctx.fill();
    ctx.fillStyle = "#4dabf7";
    ctx.beginPath();
    circle(ctx, x, y, 24);
    ctx.fill();
    ctx.strokeStyle = "rgba(255,255,255,0.6)";
    ctx.lineWidth = 1.5;
    const t = now / 1000;
    for (let k = 0; k < 3; k++) {
      const phase = (t * 0.6 + k / 3) % 1;
      ctx.globalAlpha = 1 - phase;
      ctx.beginPath();
      circle(ctx, x, y, 4 + phase * 19);
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  drawPond(p, view, now) {
    const pad = Math.max(p.rx, p.ry) + 10;
    if (p.x + pad < view.x0 || p.x - pad > view.x1 || p.y + pad < view.y0 || p.y - pad > view.y1) return;
    const ctx = this.ctx;
    ctx.fillStyle = "#6b8f3c";
    ctx.beginPath();
    ctx.ellipse(p.x, p.y, p.rx + 7, p.ry + 7, p.rot, 0, Math.PI * 2);
    ctx.fill();
    const g = ctx.createRadialGradient(p.x, p.y, 0, p.x, p.y, Math.max(p.rx, p.ry));
    g.addColorStop(0, "#1c7ed6");
    g.addColorStop(1, "#4dabf7");
    ctx.fillStyle = g;
    ctx.beginPath();
    ctx.ellipse(p.x, p.y, p.rx, p.ry, p.rot, 0, Math.PI * 2);
    ctx.fill();
    ctx.strokeStyle = "rgba(255,255,255,0.35)";
    ctx.lineWidth = 1.5;
    const t = now / 1000;
    for (let k = 0; k < 3; k++) {
      const s = 0.3 + 0.2 * k;
      const dx = Math.cos(p.rot) * p.rx * (0.3 * k - 0.3);
      ctx.beginPath();
      ctx.ellipse(p.x + dx, p.y + Math.sin(t + k * 2 + p.x) * 4, p.rx * s * 0.4, 2, p.rot, 0, Math.PI);
      ctx.stroke();
    }
  }

  drawGrid(view, grid) {
    const ctx = this.ctx;
    const cell = grid.cell;
    ctx.fillStyle = "rgba(255, 240, 120, 0.10)";
    for (const c of grid.cells) {
      const col = c % grid.columns;
      const row = Math.floor(c / grid.columns);
      ctx.fillRect(col * cell, row * cell, cell, cell);
    }
    ctx.strokeStyle = "rgba(255, 255, 255, 0.28)";
    ctx.lineWidth = 1.5 / this.scale;
    ctx.setLineDash([8 / this.scale, 6 / this.scale]);
    ctx.beginPath();
    for (let x = Math.max(0, Math.floor(view.x0 / cell) * cell); x <= Math.min(WORLD_SIZE, view.x1); x += cell) {
      ctx.moveTo(x, Math.max(0, view.y0));
      ctx.lineTo(x, Math.min(WORLD_SIZE, view.y1));
    }
    for (let y = Math.max(0, Math.floor(view.y0 / cell) * cell); y <= Math.min(WORLD_SIZE, view.y1); y += cell) {
      ctx.moveTo(Math.max(0, view.x0), y);
      ctx.lineTo(Math.min(WORLD_SIZE, view.x1), y);
    }
    ctx.stroke();
    ctx.setLineDash([]);
  }

  drawTarget(target, now) {
    const ctx = this.ctx;
    const pulse = (now / 600) % 1;
    ctx.strokeStyle = `rgba(255, 255, 255, ${0.9 - pulse * 0.7})`;
    ctx.lineWidth = 2 / this.scale;
    ctx.beginPath();
    ctx.ellipse(target.x, target.y, 6 + pulse * 10, (6 + pulse * 10) * 0.55, 0, 0, Math.PI * 2);
    ctx.stroke();
    ctx.fillStyle = "rgba(255,255,255,0.8)";
    ctx.beginPath();
    ctx.ellipse(target.x, target.y, 3, 1.8, 0, 0, Math.PI * 2);
    ctx.fill();
  }

  // -- entities ----------------------------------------------------------------------------
  drawEntity(id, e, scene, mine) {
    const kind = Math.round(e.kind);
    const t = scene.now;
    const speed = scene.motion.get(id) ?? 0;
    if (kind === KIND.PLAYER) this.drawPlayer(id, e, t, speed, mine);
    else if (kind === KIND.SLIME) this.drawSlime(id, e, t, speed);
    else if (kind === KIND.BUNNY) this.drawBunny(id, e, t, speed);
    else this.drawWisp(id, e, t);
  }

  shadow(x, y, rx) {
    const ctx = this.ctx;
    ctx.fillStyle = "rgba(0, 0, 0, 0.22)";
    ctx.beginPath();
    ctx.ellipse(x, y, rx, rx * 0.38, 0, 0, Math.PI * 2);
    ctx.fill();
  }

  drawPlayer(id, e, t, speed, mine) {
    const ctx = this.ctx;
    const R = 15;
    const moving = speed > 20;
    const bob = moving ? Math.abs(Math.sin(t / 95 + id)) * 3.5 : Math.sin(t / 500 + id) * 0.6;
    const color = PALETTE[Math.round(e.look) % PALETTE.length];
    if (mine) {
      ctx.strokeStyle = `rgba(255, 255, 255, ${0.55 + 0.25 * Math.sin(t / 300)})`;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.ellipse(e.x, e.y + R * 0.75, R * 1.35, R * 0.55, 0, 0, Math.PI * 2);
      ctx.stroke();
    }
    this.shadow(e.x, e.y + R * 0.75, R * (1 - bob * 0.02));
    const cy = e.y - bob;
    // Feet, stepping when moving.
    const step = moving ? Math.sin(t / 95 + id) * 3 : 0;
    ctx.fillStyle = shade(color, -0.45);
    ctx.beginPath();
    ctx.ellipse(e.x - 5, e.y + R * 0.62 + step * 0.3, 4, 2.6, 0, 0, Math.PI * 2);
    ctx.ellipse(e.x + 5, e.y + R * 0.62 - step * 0.3, 4, 2.6, 0, 0, Math.PI * 2);
    ctx.fill();
    const g = ctx.createRadialGradient(e.x - R * 0.35, cy - R * 0.45, 1, e.x, cy, R * 1.1);
    g.addColorStop(0, shade(color, 0.35));
    g.addColorStop(1, color);
    ctx.fillStyle = g;
    ctx.strokeStyle = shade(color, -0.5);
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    circle(ctx, e.x, cy, R);
    ctx.fill();
    ctx.stroke();
    this.eyes(e.x, cy - 1, e.face, R, 3.2);
  }

  eyes(x, y, face, R, size) {
    const ctx = this.ctx;
    const a = (Math.round(face) % 8) * (Math.PI / 4);
    const dx = Math.cos(a);
    const dy = Math.sin(a);
    if (dy < -0.5) return; // facing away: the back of the head
    const cx = x + dx * R * 0.38;
    const cy = y + dy * R * 0.25;
    const px = -dy;
    const py = dx;
    const spread = R * 0.36 * (0.55 + 0.45 * Math.abs(dy) + (Math.abs(dx) > 0.9 ? 0 : 0));
    for (const s of [-1, 1]) {
      const ex = cx + px * spread * s;
      const ey = cy + py * spread * s * 0.4;
      ctx.fillStyle = "#fff";
      ctx.beginPath();
      ctx.ellipse(ex, ey, size, size * 1.2, 0, 0, Math.PI * 2);
      ctx.fill();
      ctx.fillStyle = "#222";
      ctx.beginPath();
      circle(ctx, ex + dx * size * 0.35, ey + dy * size * 0.35, size * 0.55);
      ctx.fill();
    }
  }

  drawSlime(id, e, t, speed) {
    const ctx = this.ctx;
    const R = 10;
    const hue = (Math.round(e.look) * 23 + 80) % 360;
    const phase = t / (speed > 5 ? 140 : 420) + id * 1.7;
    const squish = Math.sin(phase) * (speed > 5 ? 0.16 : 0.06);
    const hop = speed > 5 ? Math.max(0, Math.sin(phase)) * 4 : 0;
    this.shadow(e.x, e.y + R * 0.5, R * (1 - hop * 0.03));
    const w = R * (1 + squish);
    const h = R * (1 - squish);
    const cy = e.y - hop;
    ctx.fillStyle = `hsla(${hue}, 70%, 52%, 0.92)`;
    ctx.strokeStyle = `hsl(${hue}, 60%, 30%)`;
    ctx.lineWidth = 1.3;
    ctx.beginPath();
    ctx.moveTo(e.x - w, cy + R * 0.45);
    ctx.bezierCurveTo(e.x - w, cy - h * 1.3, e.x + w, cy - h * 1.3, e.x + w, cy + R * 0.45);
    ctx.closePath();
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "rgba(255,255,255,0.45)";
    ctx.beginPath();
    ctx.ellipse(e.x - w * 0.4, cy - h * 0.35, w * 0.22, h * 0.14, -0.5, 0, Math.PI * 2);
    ctx.fill();
    ctx.fillStyle = `hsl(${hue}, 60%, 16%)`;
    ctx.beginPath();
    const look = Math.cos((Math.round(e.face) % 8) * (Math.PI / 4)) * 2;
    circle(ctx, e.x - 3 + look, cy - 0.5, 1.4);
    circle(ctx, e.x + 3 + look, cy - 0.5, 1.4);
    ctx.fill();
  }

  drawBunny(id, e, t, speed) {
    const ctx = this.ctx;
    const fur = ["#f8f9fa", "#e9d8c4", "#c8b29a", "#adb5bd"][Math.round(e.look) % 4];
    const moving = speed > 10;
    const hop = moving ? Math.abs(Math.sin(t / 80 + id)) * 5 : 0;
    const a = (Math.round(e.face) % 8) * (Math.PI / 4);
    const dir = Math.cos(a) >= 0 ? 1 : -1;
    this.shadow(e.x, e.y + 5, 8);
    const cy = e.y - hop;
    ctx.fillStyle = fur;
    ctx.strokeStyle = "rgba(60, 50, 40, 0.6)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.ellipse(e.x, cy, 8, 6, 0, 0, Math.PI * 2);
    ctx.fill();
    ctx.stroke();
    ctx.beginPath();
    circle(ctx, e.x - dir * 8, cy - 1, 2.4);
    ctx.fillStyle = "#fff";
    ctx.fill();
    const hx = e.x + dir * 6;
    const hy = cy - 4;
    ctx.fillStyle = fur;
    for (const s of [-1, 1]) {
      ctx.beginPath();
      ctx.ellipse(hx + s * 1.6 - dir, hy - 7, 1.8, 5, s * 0.2 - dir * 0.25, 0, Math.PI * 2);
      ctx.fill();
      ctx.stroke();
    }
    ctx.beginPath();
    circle(ctx, hx, hy, 4.6);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "#222";
    ctx.beginPath();
    circle(ctx, hx + dir * 1.8, hy - 0.8, 0.9);
    ctx.fill();
    ctx.fillStyle = "#f783ac";
    ctx.beginPath();
    circle(ctx, hx + dir * 4.2, hy + 0.6, 0.9);
    ctx.fill();
  }

  drawWisp(id, e, t) {
    const ctx = this.ctx;
    const gold = Math.round(e.look) % 3 === 0;
    const pulse = 0.75 + 0.25 * Math.sin(t / 260 + id);
    const y = e.y - 14 + Math.sin(t / 400 + id) * 3;
    this.shadow(e.x, e.y + 2, 4);
    ctx.globalCompositeOperation = "lighter";
    const r = 22 * pulse;
    const g = ctx.createRadialGradient(e.x, y, 0, e.x, y, r);
    g.addColorStop(0, gold ? "rgba(255, 236, 153, 0.95)" : "rgba(190, 255, 255, 0.95)");
    g.addColorStop(0.25, gold ? "rgba(255, 200, 60, 0.45)" : "rgba(80, 220, 255, 0.45)");
    g.addColorStop(1, "rgba(0, 0, 0, 0)");
    const alpha = ctx.globalAlpha;
    ctx.fillStyle = g;
    ctx.beginPath();
    circle(ctx, e.x, y, r);
    ctx.fill();
    ctx.globalAlpha = alpha * 0.6;
    for (let k = 0; k < 3; k++) {
      const a = t / 300 + id + (k * Math.PI * 2) / 3;
      ctx.beginPath();
      circle(ctx, e.x + Math.cos(a) * 9, y + Math.sin(a) * 5, 1.2);
      ctx.fill();
    }
    ctx.globalAlpha = alpha;
    ctx.globalCompositeOperation = "source-over";
  }

  // -- labels ------------------------------------------------------------------------------
  drawName(p, name, mine) {
    const ctx = this.ctx;
    ctx.font = "600 12px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "alphabetic";
    const y = p.y - 15 * this.scale - 12;
    ctx.lineJoin = "round";
    ctx.lineWidth = 3.5;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.7)";
    ctx.strokeText(name, p.x, y);
    ctx.fillStyle = mine ? "#ffe066" : "#ffffff";
    ctx.fillText(name, p.x, y);
  }

  drawBubble(p, text, age) {
    const ctx = this.ctx;
    ctx.font = "13px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";
    const lines = wrap(ctx, text, 200).slice(0, 3);
    const lh = 16;
    const w = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 16;
    const h = lines.length * lh + 10;
    const x = p.x - w / 2;
    const y = p.y - 15 * this.scale - 30 - h;
    const fade = age > BUBBLE_MS - 600 ? (BUBBLE_MS - age) / 600 : Math.min(1, age / 120);
    const alpha = ctx.globalAlpha;
    ctx.globalAlpha = alpha * Math.max(0, fade);
    ctx.fillStyle = "rgba(255, 255, 255, 0.95)";
    ctx.strokeStyle = "rgba(0, 0, 0, 0.25)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    roundRect(ctx, x, y, w, h, 8);
    ctx.moveTo(p.x - 6, y + h);
    ctx.lineTo(p.x, y + h + 7);
    ctx.lineTo(p.x + 6, y + h);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "#1a1b1e";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    lines.forEach((line, i) => ctx.fillText(line, p.x, y + 6 + i * lh));
    ctx.globalAlpha = alpha;
  }

  drawVignette() {
    const ctx = this.ctx;
    const { width: w, height: h } = this;
    const g = ctx.createRadialGradient(w / 2, h / 2, Math.min(w, h) * 0.35, w / 2, h / 2, Math.max(w, h) * 0.75);
    g.addColorStop(0, "rgba(0,0,0,0)");
    g.addColorStop(1, "rgba(0,0,0,0.45)");
    ctx.fillStyle = g;
    ctx.fillRect(0, 0, w, h);
  }

  drawMinimap(scene, me) {
    const ctx = this.ctx;
    const size = Math.min(150, Math.max(90, this.width * 0.14));
    const x = this.width - size - 14;
    const y = 14;
    const k = size / WORLD_SIZE;
    ctx.fillStyle = "rgba(16, 24, 20, 0.72)";
    ctx.beginPath();
    roundRect(ctx, x - 6, y - 6, size + 12, size + 12, 10);
    ctx.fill();
    ctx.fillStyle = "#3f7032";
    ctx.fillRect(x, y, size, size);
    ctx.fillStyle = "#4dabf7";
    for (const p of PONDS) {
      ctx.beginPath();
      ctx.ellipse(x + p.x * k, y + p.y * k, Math.max(1.5, p.rx * k), Math.max(1, p.ry * k), p.rot, 0, Math.PI * 2);
      ctx.fill();
    }
    ctx.fillStyle = "#cdbf9f";
    ctx.beginPath();
    circle(ctx, x + PLAZA.x * k, y + PLAZA.y * k, Math.max(2, PLAZA.r * k));
    ctx.fill();
    for (const [id, e] of scene.entities) {
      if (Math.round(e.kind) !== KIND.PLAYER || id === scene.me) continue;
      ctx.fillStyle = PALETTE[Math.round(e.look) % PALETTE.length];
      ctx.fillRect(x + e.x * k - 1.5, y + e.y * k - 1.5, 3, 3);
    }
    if (me !== undefined) {
      const v = this.visibleRect();
      ctx.strokeStyle = "rgba(255,255,255,0.7)";
      ctx.lineWidth = 1;
      ctx.strokeRect(x + Math.max(0, v.x0) * k, y + Math.max(0, v.y0) * k, (Math.min(WORLD_SIZE, v.x1) - Math.max(0, v.x0)) * k, (Math.min(WORLD_SIZE, v.y1) - Math.max(0, v.y0)) * k);
      ctx.fillStyle = "#ffe066";
      ctx.beginPath();
      circle(ctx, x + me.x * k, y + me.y * k, 3);
      ctx.fill();
    }
  }
}

/** The world's ground colour, one texel per GROUND_STEP units (500 x 500, baked once). */
function bakeGround() {
  const n = Math.ceil(WORLD_SIZE / GROUND_STEP);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = n;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(n, n);
  const px = img.data;
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < n; i++) {
      const t = lushness(i * GROUND_STEP, j * GROUND_STEP);
      const k = (j * n + i) * 4;
      px[k] = DRY[0] + (LUSH[0] - DRY[0]) * t;
      px[k + 1] = DRY[1] + (LUSH[1] - DRY[1]) * t;
      px[k + 2] = DRY[2] + (LUSH[2] - DRY[2]) * t;
      px[k + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

function fadeIn(scene, id) {
  const seen = scene.seenAt.get(id);
  return seen === undefined ? 1 : Math.min(1, (scene.now - seen) / FADE_MS);
}

function circle(ctx, x, y, r) {
  ctx.moveTo(x + r, y);
  ctx.arc(x, y, r, 0, Math.PI * 2);
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

/** A #rrggbb colour lightened (amount > 0) or darkened (< 0). */
function shade(hex, amount) {
  const n = parseInt(hex.slice(1), 16);
  const mix = (c) => Math.round(amount >= 0 ? c + (255 - c) * amount : c * (1 + amount));
  const r = mix(n >> 16);
  const g = mix((n >> 8) & 255);
  const b = mix(n & 255);
  return `rgb(${r}, ${g}, ${b})`;
}

function wrap(ctx, text, width) {
  const words = text.split(/\s+/);
  const lines = [];
  let line = "";
  for (const word of words) {
    const next = line ? `${line} ${word}` : word;
    if (ctx.measureText(next).width > width && line) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) lines.push(line);
  return lines;
}
