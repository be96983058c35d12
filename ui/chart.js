// Inline SVG charts, built with createElementNS (no markup strings): the overview's line chart
// of deliveries and failures per second, and the endpoints' 24-hour sparklines.

import { clock } from '/ui/format.js';

const NS = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A round upper bound for an axis: 1, 2, 2.5, 5 times a power of ten. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function label(v) {
  if (v === 0) return '0';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1).replace(/\.0$/, '');
  return v.toFixed(2).replace(/0$/, '').replace(/\.0?$/, '');
}

const W = 720;
const H = 240;
const M = { l: 46, r: 14, t: 30, b: 26 };

/**
 * Draws `series` ([{at, delivered, failed}], oldest first, counts per interval) into `svg` as
 * rates per second over the time the series covers (the last hour when it is empty).
 */
export function drawChart(svg, series, intervalSeconds) {
  const iv = intervalSeconds > 0 ? intervalSeconds : 1;
  const pts = (Array.isArray(series) ? series : [])
    .map((p) => ({
      t: Date.parse(p && p.at),
      delivered: (Number(p && p.delivered) || 0) / iv,
      failed: (Number(p && p.failed) || 0) / iv,
    }))
    .filter((p) => Number.isFinite(p.t));
  let t1 = pts.length ? pts[pts.length - 1].t : Date.now();
  let t0 = pts.length ? pts[0].t : t1 - 3600e3;
  if (t1 - t0 < iv * 1000) t0 = t1 - 3600e3;
  const top = niceMax(Math.max(0, ...pts.map((p) => Math.max(p.delivered, p.failed))));
  const x = (t) => M.l + ((t - t0) / (t1 - t0)) * (W - M.l - M.r);
  const y = (v) => H - M.b - (v / top) * (H - M.t - M.b);

  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Deliveries and failures per second over the last hour');
  svg.replaceChildren(svgEl('title', {}, 'Deliveries and failures per second, last hour'));

  const grid = svgEl('g', { class: 'axis' });
  for (const v of [0, top / 2, top]) {
    grid.append(svgEl('line', { class: 'grid', x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }));
    grid.append(svgEl('text', { x: M.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, label(v)));
  }
  const ticks = 4;
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + ((t1 - t0) * i) / ticks;
    const anchor = i === 0 ? 'start' : i === ticks ? 'end' : 'middle';
    grid.append(svgEl('line', { class: 'tick', x1: x(t), x2: x(t), y1: H - M.b, y2: H - M.b + 4 }));
    grid.append(svgEl('text', { x: x(t), y: H - 6, 'text-anchor': anchor }, clock(new Date(t), false)));
  }
  grid.append(svgEl('line', { class: 'base', x1: M.l, x2: W - M.r, y1: y(0), y2: y(0) }));
  grid.append(svgEl('text', { x: 4, y: M.t - 14 }, 'per second'));
  svg.append(grid);

  for (const key of ['delivered', 'failed']) {
    let d;
    if (pts.length === 0) d = `M${M.l},${y(0)}H${W - M.r}`;
    else if (pts.length === 1) d = `M${M.l},${y(pts[0][key])}H${W - M.r}`;
    else d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join('');
    svg.append(svgEl('path', { class: 'series ' + key, d }));
  }

  const legend = svgEl('g', { class: 'legend' });
  let lx = W - M.r - 230;
  for (const [key, text] of [['delivered', 'Deliveries/s'], ['failed', 'Failures/s']]) {
    legend.append(svgEl('rect', { class: 'swatch ' + key, x: lx, y: 8, width: 12, height: 12, rx: 2 }));
    legend.append(svgEl('text', { x: lx + 18, y: 18 }, text));
    lx += 120;
  }
  svg.append(legend);
}

/**
 * A small bar chart of `hourly` ([{delivered, failed}], 24 hours, oldest first): each bar's
 * height is the hour's attempts, its failed part on top.
 */
export function sparkline(hourly) {
  const hours = Array.isArray(hourly) ? hourly.slice(-24) : [];
  const bw = 4;
  const h = 22;
  const w = 24 * bw;
  const max = Math.max(1, ...hours.map((x) => (Number(x.delivered) || 0) + (Number(x.failed) || 0)));
  const delivered = hours.reduce((s, x) => s + (Number(x.delivered) || 0), 0);
  const failed = hours.reduce((s, x) => s + (Number(x.failed) || 0), 0);
  const text = `Last 24 hours: ${delivered} delivered, ${failed} failed`;
  const svg = svgEl('svg', { class: 'sparkline', viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: 'img', 'aria-label': text });
  svg.append(svgEl('title', {}, text));
  svg.append(svgEl('line', { class: 'base', x1: 0, x2: w, y1: h - 0.5, y2: h - 0.5 }));
  const offset = (24 - hours.length) * bw;
  hours.forEach((x, i) => {
    const d = Number(x.delivered) || 0;
    const f = Number(x.failed) || 0;
    const dh = (d / max) * (h - 1);
    const fh = (f / max) * (h - 1);
    const bx = offset + i * bw;
    if (d > 0) svg.append(svgEl('rect', { class: 'delivered', x: bx, y: h - 1 - dh, width: bw - 1, height: Math.max(dh, 1) }));
    if (f > 0) svg.append(svgEl('rect', { class: 'failed', x: bx, y: h - 1 - dh - fh, width: bw - 1, height: Math.max(fh, 1) }));
  });
  return svg;
}
