// #/overview: queue and endpoint counts, throughput and the last hour's chart, refreshed every
// 3 s while the page is shown (one request at a time: the next one is set after the answer).

import { apiGet } from '/ui/api.js';
import { el, replace, num, rate, age, clock } from '/ui/format.js';
import { drawChart } from '/ui/chart.js';

const POLL_MS = 3000;

const GROUPS = [
  ['Queue', [
    ['queue.pending', 'Pending'],
    ['queue.scheduled', 'Scheduled'],
    ['queue.waiting', 'Waiting'],
    ['queue.in_flight', 'In flight'],
    ['queue.delivered', 'Delivered'],
    ['queue.dead', 'Dead letters', '#/dlq'],
    ['queue.cancelled', 'Cancelled'],
    ['oldest_pending', 'Oldest pending'],
  ]],
  ['Endpoints', [
    ['endpoints.healthy', 'Healthy', '#/endpoints'],
    ['endpoints.open', 'Open (breaker)', '#/endpoints'],
    ['endpoints.disabled', 'Disabled', '#/endpoints'],
  ]],
  ['Throughput (last full interval)', [
    ['delivery_rate', 'Deliveries/s'],
    ['failure_rate', 'Failures/s'],
    ['accepted_rate', 'Accepted/s'],
  ]],
];

function card([stat, title, href]) {
  return el('div', { class: 'card', dataset: { stat } },
    el('span', { class: 'card-label' }, href ? el('a', { href }, title) : title),
    el('span', { class: 'card-value' }, '…'));
}

function set(root, stat, value, shown) {
  const c = root.querySelector(`[data-stat="${stat}"]`);
  if (!c) return;
  c.dataset.value = String(value);
  c.querySelector('.card-value').textContent = shown;
}

function showStatus(root, status) {
  for (const group of ['queue', 'endpoints']) {
    const counts = (status && status[group]) || {};
    for (const c of root.querySelectorAll(`[data-stat^="${group}."]`)) {
      const v = Number(counts[c.dataset.stat.slice(group.length + 1)]);
      const ok = Number.isFinite(v);
      set(root, c.dataset.stat, ok ? v : '-', ok ? num(v) : '-');
      c.classList.toggle('alert', ok && v > 0 && ['queue.dead', 'endpoints.open', 'endpoints.disabled'].includes(c.dataset.stat));
    }
  }
}

function showStats(root, svg, stats) {
  const iv = Number(stats.interval_seconds) > 0 ? Number(stats.interval_seconds) : 1;
  // The server's last interval is the one now, still filling: rates and chart use those done.
  const all = Array.isArray(stats.series) ? stats.series : [];
  const series = all.length >= 2 ? all.slice(0, -1) : all;
  const last = series.length ? series[series.length - 1] : null;
  for (const [stat, key] of [['delivery_rate', 'delivered'], ['failure_rate', 'failed'], ['accepted_rate', 'accepted']]) {
    const r = last ? (Number(last[key]) || 0) / iv : 0;
    set(root, stat, r, rate(r));
  }
  const oldest = stats.oldest_pending_at ? Date.parse(stats.oldest_pending_at) : NaN;
  if (Number.isFinite(oldest)) {
    const s = Math.max(0, Math.floor((Date.now() - oldest) / 1000));
    set(root, 'oldest_pending', s, age(s));
  } else set(root, 'oldest_pending', '-', '-');
  drawChart(svg, series, iv);
}

export function render(view, ctx) {
  const cards = el('div', { class: 'overview' },
    GROUPS.map(([title, list]) => el('section', { class: 'group' },
      el('h2', null, title), el('div', { class: 'cards' }, list.map(card)))));
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.id = 'chart';
  drawChart(svg, [], 10);
  const started = el('p', { class: 'muted small' });
  const updated = el('p', { id: 'updated', class: 'muted' }, 'Loading…');
  view.append(el('h1', null, 'Overview'), cards,
    el('section', { class: 'group chart-box' }, el('h2', null, 'Last hour'), svg, started),
    updated);

  let timer = null;
  let failing = false;
  const tick = async () => {
    timer = null;
    if (!document.hidden) {
      const [status, stats] = await Promise.allSettled([apiGet('status'), apiGet('stats')]);
      if (!ctx.alive()) return;
      const errors = [];
      if (status.status === 'fulfilled') showStatus(cards, status.value);
      else errors.push(status.reason);
      if (stats.status === 'fulfilled' && stats.value) {
        showStats(cards, svg, stats.value);
        const since = stats.value.started_at ? new Date(stats.value.started_at) : null;
        started.textContent = since && !Number.isNaN(since.getTime())
          ? 'Counted since the daemon started, ' + since.toLocaleString() + '.' : '';
      } else if (stats.status === 'rejected') errors.push(stats.reason);
      if (errors.length) {
        failing = true;
        ctx.error(errors[0]);
      } else if (failing) {
        failing = false;
        ctx.flash('');
      }
      const now = new Date();
      replace(updated, 'Updated ',
        el('time', { datetime: now.toISOString() }, clock(now)),
        errors.length ? ' (with errors)' : '', '; refreshed every 3 s.');
    }
    if (ctx.alive()) timer = setTimeout(tick, POLL_MS);
  };
  const visibility = () => {
    if (!document.hidden && timer !== null && ctx.alive()) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener('visibilitychange', visibility);
  ctx.onLeave(() => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    document.removeEventListener('visibilitychange', visibility);
  });
  tick();
}
