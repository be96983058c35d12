// #/endpoints: the endpoints with their health, backlog and last 24 hours; #/endpoints/NAME: one
// endpoint, its policy and its recent attempts. Pause, resume and enable for admin tokens.

import { apiGet, apiPost, endpointPath } from '/ui/api.js';
import { el, replace, num, percent, ms, yesNo, timeEl, table, fields, badge, hashLink } from '/ui/format.js';
import { sparkline } from '/ui/chart.js';

const ACTIONS = {
  pause: ['Pause', 'Paused'],
  resume: ['Resume', 'Resumed'],
  enable: ['Enable', 'Enabled'],
};

/** The actions an endpoint takes now. */
function actionsFor(e) {
  const list = [];
  if (!e.paused) list.push('pause');
  if (e.paused) list.push('resume');
  if (e.state === 'disabled' || e.state === 'open') list.push('enable');
  return list;
}

/** Its action buttons (hidden and disabled without the admin scope). */
function buttons(e, ctx) {
  return el('div', { class: 'actions' }, actionsFor(e).map((a) => el('button', {
    type: 'button',
    class: a === 'enable' ? 'primary' : null,
    dataset: { action: a },
    'aria-label': ACTIONS[a][0] + ' ' + e.name,
    hidden: !ctx.admin,
    disabled: !ctx.admin,
  }, ACTIONS[a][0])));
}

/** Clicks on `[data-action]` buttons inside `root` run the action, then `after(name)`. */
function wireActions(root, ctx, nameOf, after) {
  root.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-action]');
    if (!b || !root.contains(b) || b.disabled || !ctx.admin) return;
    const action = b.dataset.action;
    const name = nameOf(b);
    if (!ACTIONS[action] || name === null) return;
    b.disabled = true;
    try {
      await apiPost(endpointPath(name, action), {});
      ctx.flash(`${ACTIONS[action][1]} endpoint ${name}.`, 'ok');
      await after(name);
    } catch (e) {
      ctx.error(e);
      b.disabled = false;
    }
  });
}

/** The stats of each endpoint by its name (null when the stats are unavailable). */
async function statsByName() {
  try {
    const s = await apiGet('stats/endpoints');
    return new Map((Array.isArray(s) ? s : []).map((x) => [x.endpoint, x]));
  } catch (e) {
    if (e.status === 401) throw e;
    return null;
  }
}

/** An endpoint's last 24 hours as the sparkline takes them: [{delivered, failed}], oldest first. */
function hourly(stats) {
  const d = Array.isArray(stats.hourly_delivered) ? stats.hourly_delivered : [];
  const f = Array.isArray(stats.hourly_failed) ? stats.hourly_failed : [];
  return d.map((delivered, i) => ({ delivered, failed: f[i] ?? 0 }));
}

/** The cells that come from the stats: success rate, p95 and the sparkline. */
function fillStats(tr, stats) {
  const set = (field, ...content) => {
    const td = tr.querySelector(`td[data-field="${field}"]`);
    if (td) replace(td, ...content);
  };
  set('success_rate', stats ? percent(stats.success_rate) : '-');
  set('p95_ms', stats ? ms(stats.p95_ms) : '-');
  set('sparkline', sparkline(stats ? hourly(stats) : []));
}

/** An endpoint's row; `stats` is its entry in the stats (null when none or not loaded yet). */
function row(e, stats, ctx) {
  const cell = (field, ...content) => el('td', { dataset: { field } }, ...content);
  const backlog = (Number(e.pending) || 0) + (Number(e.waiting) || 0);
  const tr = el('tr', { dataset: { endpoint: e.name } },
    cell('name', el('a', { href: hashLink(['endpoints', e.name]) }, e.name),
      e.configured === false ? el('span', { class: 'muted small' }, ' (not configured)') : null),
    cell('state', badge(e.state)),
    cell('paused', yesNo(e.paused)),
    cell('tenant', e.tenant ?? '-'),
    cell('success_rate'),
    cell('p95_ms'),
    cell('backlog', num(backlog)),
    cell('dead', e.dead > 0 ? el('a', { href: hashLink(['dlq'], { endpoint: e.name }) }, num(e.dead)) : num(e.dead)),
    cell('sparkline'),
    el('td', { class: 'row-actions' }, buttons(e, ctx)));
  fillStats(tr, stats);
  return tr;
}

/** Rows shown at first, and added by each "Show more". */
const PAGE = 200;
/** The wait after the last key in the filter before it applies. */
const FILTER_MS = 150;
const ENDPOINT_COLUMNS = 10;
const ORIGIN_COLUMNS = 8;

/** A row of one muted cell across the table (a placeholder or an empty list's sentence). */
function noteRow(columns, text, cls = 'muted') {
  return el('tr', { class: 'note-row' }, el('td', { colspan: columns, class: cls }, text));
}

/** A "Show N more" label for a button, `left` rows not shown yet. */
function moreLabel(left) {
  return `Show ${num(Math.min(PAGE, left))} more`;
}

/** The filter's words: a name or tenant, lower case, with a precomputed haystack per entry. */
function searchItem(e) {
  return {
    e,
    name: String(e.name ?? '').toLowerCase(),
    tenant: String(e.tenant ?? '').toLowerCase(),
    tr: null, // its row, built the first time it is shown
  };
}

function originRow(o) {
  const cell = (field, ...content) => el('td', { dataset: { field } }, ...content);
  return el('tr', { dataset: { origin: String(o.origin ?? '') } },
    cell('origin', el('span', { class: 'mono' }, o.origin ?? '-')),
    cell('state', badge(o.state)),
    cell('consecutive_failures', num(o.consecutive_failures)),
    cell('failing_since', timeEl(o.failing_since)),
    cell('last_error', o.last_error ? el('span', { class: 'error-text' }, o.last_error) : '-'),
    cell('pending', num(o.pending)),
    cell('in_flight', num(o.in_flight)),
    cell('dead', num(o.dead)));
}

/** The origins section: its heading, the "show every origin" box, the table; `load()` fills it. */
function originsSection(ctx) {
  const box = el('input', { id: 'origins-all', type: 'checkbox' });
  const { wrap, body } = table({ id: 'origins' },
    ['Origin', 'State', 'Consecutive failures', 'Failing since', 'Last error', 'Pending', 'In flight', 'Dead'],
    [noteRow(ORIGIN_COLUMNS, 'Loading…', 'muted placeholder')]);
  const count = el('p', { class: 'muted', 'aria-live': 'polite' });
  const more = el('button', { id: 'origins-more', type: 'button', hidden: true }, moreLabel(PAGE));
  const section = el('section', { class: 'origins', 'aria-labelledby': 'origins-title' },
    el('h2', { id: 'origins-title' }, 'Origins'),
    el('p', { class: 'muted small' }, 'Messages to plain URLs (without an endpoint) are protected per origin: scheme, host and port.'),
    el('div', { class: 'toolbar' }, el('label', { for: 'origins-all', class: 'check' }, box, 'show every origin')),
    wrap, el('div', { class: 'list-foot' }, count, more));

  let list = [];
  let shown = 0;
  let seq = 0;
  const describe = () => {
    count.textContent = list.length
      ? `${num(shown)} of ${num(list.length)} ${list.length === 1 ? 'origin' : 'origins'} shown.`
      : '';
    more.hidden = shown >= list.length;
    more.textContent = moreLabel(list.length - shown);
  };
  const showUpTo = (n) => {
    const frag = document.createDocumentFragment();
    for (let i = shown; i < n; i++) frag.append(originRow(list[i]));
    body.append(frag);
    shown = n;
    describe();
  };
  const load = async () => {
    const my = ++seq;
    const all = box.checked;
    let answer;
    try {
      answer = await apiGet('origins', all ? { all: 'true' } : null);
    } catch (e) {
      if (e.status === 401) throw e;
      if (!ctx.alive() || my !== seq) return;
      list = [];
      shown = 0;
      body.replaceChildren(noteRow(ORIGIN_COLUMNS, 'Origins unavailable: ' + (e.detail || e.message || e), 'error-text'));
      describe();
      return;
    }
    if (!ctx.alive() || my !== seq) return;
    list = (Array.isArray(answer) ? answer : []).filter((o) => o && typeof o === 'object');
    shown = 0;
    body.replaceChildren();
    if (!list.length) {
      body.append(noteRow(ORIGIN_COLUMNS, all
        ? 'No origins: no message to a plain URL has been recorded.'
        : 'No origin is failing or has messages.'));
    }
    showUpTo(Math.min(PAGE, list.length));
  };
  box.addEventListener('change', () => load().catch(ctx.error));
  more.addEventListener('click', () => {
    const from = shown;
    showUpTo(Math.min(shown + PAGE, list.length));
    // The button gone, the focus moves to the first row it added.
    const first = more.hidden ? body.rows[from]?.querySelector('[data-field="origin"]') : null;
    if (first) {
      first.setAttribute('tabindex', '-1');
      first.focus();
    }
  });
  return { section, load };
}

export function renderList(view, ctx) {
  const filter = el('input', { id: 'endpoint-filter', type: 'search', autocomplete: 'off', placeholder: 'name or tenant' });
  const { wrap, body } = table({ id: 'endpoints' },
    ['Name', 'State', 'Paused', 'Tenant', 'Success (24 h)', 'p95 (since start)', 'Backlog', 'Dead', 'Last 24 h', 'Actions'],
    [noteRow(ENDPOINT_COLUMNS, 'Loading…', 'muted placeholder')]);
  const count = el('p', { class: 'muted', 'aria-live': 'polite' });
  const more = el('button', { id: 'endpoints-more', type: 'button', hidden: true }, moreLabel(PAGE));
  const origins = originsSection(ctx);
  view.append(el('h1', null, 'Endpoints'),
    el('div', { class: 'toolbar' }, el('label', { for: 'endpoint-filter' }, 'Filter'), filter),
    wrap, el('div', { class: 'list-foot' }, count, more),
    origins.section);

  let items = []; // every endpoint, in the order served
  let byName = new Map(); // name → its item
  let stats = null; // name → its stats entry (null: unavailable or not loaded yet)
  let built = new Set(); // the items whose row is built
  let query = ''; // the filter applied
  let matches = []; // the items the filter selects
  let limit = PAGE; // how many of them may be shown
  let shown = 0; // how many rows are in the table
  let timer = null;
  let seq = 0;
  ctx.onLeave(() => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  });

  const rowOf = (it) => {
    if (!it.tr) {
      it.tr = row(it.e, stats ? stats.get(it.e.name) : null, ctx);
      built.add(it);
    }
    return it.tr;
  };
  const describe = () => {
    const total = items.length;
    if (!total) count.textContent = '';
    else if (shown < matches.length) {
      count.textContent = query
        ? `${num(shown)} of ${num(matches.length)} matching endpoints shown (${num(total)} in all; refine the filter to narrow).`
        : `${num(shown)} of ${num(total)} endpoints shown (filter to narrow).`;
    } else count.textContent = `${num(shown)} of ${num(total)} endpoints shown.`;
    more.hidden = shown >= matches.length;
    more.textContent = moreLabel(matches.length - shown);
  };
  /** Selects the matching items: O(N) over strings lowered once per load. */
  const select = () => {
    query = filter.value.trim().toLowerCase();
    const q = query;
    matches = q ? items.filter((it) => it.name.includes(q) || it.tenant.includes(q)) : items;
  };
  /** Shows the first `limit` matches (rows are built once, then reused). */
  const render = () => {
    const n = Math.min(limit, matches.length);
    const frag = document.createDocumentFragment();
    for (let i = 0; i < n; i++) frag.append(rowOf(matches[i]));
    if (!items.length) frag.append(noteRow(ENDPOINT_COLUMNS, 'No endpoints.'));
    else if (!n) frag.append(noteRow(ENDPOINT_COLUMNS, 'No endpoint matches the filter.'));
    body.replaceChildren(frag);
    shown = n;
    describe();
  };
  const applyNow = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    select();
    limit = PAGE;
    render();
  };

  /** The endpoints are shown as soon as they come; the stats (larger) fill their cells after. */
  const load = async () => {
    const my = ++seq;
    const listed = apiGet('endpoints');
    const pending = statsByName();
    pending.catch(() => {}); // awaited below (unless the list fails first)
    const list = await listed;
    if (!ctx.alive() || my !== seq) return;
    items = (Array.isArray(list) ? list : []).filter((e) => e && typeof e === 'object').map(searchItem);
    byName = new Map(items.map((it) => [it.e.name, it]));
    built = new Set();
    select();
    render();
    const s = await pending;
    if (!ctx.alive() || my !== seq) return;
    stats = s;
    for (const it of built) fillStats(it.tr, s ? s.get(it.e.name) : null);
  };
  /** After an action on one endpoint: only its row is fetched again and replaced. */
  const refreshOne = async (name) => {
    let e;
    try {
      e = await apiGet(endpointPath(name));
    } catch (err) {
      if (err.status === 401) throw err;
      return load();
    }
    if (!ctx.alive()) return;
    const it = byName.get(name);
    if (!it || !e || typeof e !== 'object' || e.name !== name) return load();
    const old = it.tr;
    Object.assign(it, searchItem(e));
    if (old && old.parentNode === body) {
      const hadFocus = old.contains(document.activeElement) || document.activeElement === document.body;
      const tr = rowOf(it);
      old.replaceWith(tr);
      if (hadFocus) tr.querySelector('button[data-action]:not([hidden])')?.focus();
    }
  };

  filter.addEventListener('input', () => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(applyNow, FILTER_MS);
  });
  filter.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') applyNow();
  });
  more.addEventListener('click', () => {
    if (timer !== null) applyNow();
    const from = shown;
    limit = shown + PAGE;
    const n = Math.min(limit, matches.length);
    const frag = document.createDocumentFragment();
    for (let i = from; i < n; i++) frag.append(rowOf(matches[i]));
    body.append(frag);
    shown = n;
    describe();
    // The button gone, the focus moves to the first row it added.
    if (more.hidden) body.rows[from]?.querySelector('a')?.focus();
  });
  wireActions(body, ctx, (b) => b.closest('tr[data-endpoint]')?.dataset.endpoint ?? null,
    (name) => refreshOne(name).catch(ctx.error));
  return Promise.all([load(), origins.load()]);
}

function attemptsTable(list) {
  const rows = (Array.isArray(list) ? list : []).map((a) => el('tr', { class: 'attempt' },
    el('td', { dataset: { field: 'at' } }, timeEl(a.at)),
    el('td', { dataset: { field: 'uuid' } }, el('a', { href: hashLink(['messages', a.uuid]), class: 'mono' }, a.uuid)),
    el('td', { dataset: { field: 'n' } }, num(a.n)),
    el('td', { dataset: { field: 'duration_ms' } }, ms(a.duration_ms)),
    el('td', { dataset: { field: 'result' } }, a.status != null ? String(a.status) : '',
      a.error ? el('span', { class: 'error-text' }, (a.status != null ? ' ' : '') + a.error) : '',
      a.status == null && !a.error ? '-' : ''),
    el('td', { dataset: { field: 'state' } }, a.state ? badge(a.state) : '-')));
  const t = table({ id: 'attempts' }, ['Time', 'Message', 'Attempt', 'Duration', 'Status or error', 'Message state'], rows);
  if (!rows.length) t.body.append(el('tr', null, el('td', { colspan: 6, class: 'muted' }, 'No attempts recorded.')));
  return t.wrap;
}

function policyFields(p) {
  if (!p) return el('p', { class: 'muted' }, 'Not configured: its messages are held until it is added back.');
  return fields([
    ['URL', p.url, 'policy_url'],
    ['Headers set', p.headers && p.headers.length ? p.headers.join(', ') : '-'],
    ['Signing secrets', num(p.signing_secrets)],
    ['Timeout', p.timeout ?? 'default'],
    ['Max attempts', p.max_attempts ?? 'default'],
    ['Concurrency', num(p.concurrency)],
    ['Rate', p.rate ?? 'unlimited'],
    ['Ordered', yesNo(p.ordered)],
    ['On dead', p.on_dead],
    ['Breaker', `opens after ${p.breaker_failures} failures, cooldown ${p.breaker_cooldown}`],
    ['Disable after', p.disable_after],
    p.unreadable_files && p.unreadable_files.length ? ['Unreadable secret files', p.unreadable_files.join(', ')] : null,
  ]);
}

function lanesTable(lanes) {
  if (!Array.isArray(lanes) || !lanes.length) return null;
  return table({ id: 'lanes' }, ['Ordering key', 'Messages', 'Head', 'Head state', 'Blocked'],
    lanes.map((l) => el('tr', null,
      el('td', null, l.key === '' ? el('span', { class: 'muted' }, '(endpoint lane)') : l.key),
      el('td', null, num(l.messages)),
      el('td', null, el('a', { href: hashLink(['messages', l.head]), class: 'mono' }, l.head)),
      el('td', null, badge(l.head_state)),
      el('td', null, yesNo(l.blocked))))).wrap;
}

export function renderDetail(view, ctx, name) {
  const content = el('div', { class: 'detail' }, el('p', { class: 'muted placeholder' }, 'Loading…'));
  view.append(el('p', { class: 'crumbs' }, el('a', { href: '#/endpoints' }, 'Endpoints'), ' / '),
    el('h1', null, 'Endpoint ', el('span', { class: 'mono' }, name)), content);

  const load = async () => {
    const [e, attempts] = await Promise.all([
      apiGet(endpointPath(name)),
      apiGet(endpointPath(name, 'attempts'), { limit: 20 }).catch((err) => {
        if (err.status === 401) throw err;
        return err;
      }),
    ]);
    if (!ctx.alive()) return;
    const backlog = (Number(e.pending) || 0) + (Number(e.waiting) || 0);
    const lanes = lanesTable(e.lanes);
    replace(content,
      buttons(e, ctx),
      fields([
        ['State', badge(e.state), 'state'],
        ['Reason', e.reason ?? '-', 'reason'],
        ['State since', timeEl(e.state_since), 'state_since'],
        ['Paused', yesNo(e.paused), 'paused'],
        ['Configured', e.configured ? 'yes (' + (e.source ?? '?') + ')' : 'no', 'configured'],
        ['Tenant', e.tenant ?? '-', 'tenant'],
        ['Events', e.events && e.events.length ? e.events.join(', ') : '-', 'events'],
        ['Consecutive failures', num(e.consecutive_failures), 'consecutive_failures'],
        ['Failing since', timeEl(e.failing_since), 'failing_since'],
        ['Last success', timeEl(e.last_success_at), 'last_success_at'],
        ['Last error', e.last_error ? el('span', { class: 'error-text' }, e.last_error) : '-', 'last_error'],
        ['Last error at', timeEl(e.last_error_at), 'last_error_at'],
        ['Backlog', el('a', { href: hashLink(['messages'], { endpoint: e.name }) }, num(backlog) + ' pending or waiting'), 'backlog'],
        ['In flight', num(e.in_flight), 'in_flight'],
        ['Dead', el('a', { href: hashLink(['dlq'], { endpoint: e.name }) }, num(e.dead)), 'dead'],
      ]),
      el('h2', null, 'Policy'), policyFields(e.policy),
      lanes ? el('h2', null, 'Ordered lanes') : null, lanes,
      el('h2', null, 'Recent attempts'),
      attempts instanceof Error
        ? el('p', { class: 'error-text' }, 'Attempts unavailable: ' + attempts.detail)
        : attemptsTable(attempts));
  };
  wireActions(content, ctx, () => name, () => load().catch(ctx.error));
  return load();
}
