// #/messages?FILTERS: the messages, 50 a page, newest first, filtered as the API filters them.
// The filter form, the table and the pager are shared with #/dlq (dlq.js).

import { apiGet } from '/ui/api.js';
import { el, append, num, timeEl, table, badge, hashLink, queryString } from '/ui/format.js';

/** The API's filters (src/api/routes/mod.rs FILTERS), as the form shows them. */
export const FILTERS = [
  ['endpoint', 'Endpoint', ''],
  ['tenant', 'Tenant', ''],
  ['event', 'Event type', ''],
  ['since', 'Created since', 'RFC 3339 or 2h'],
  ['until', 'Created until', 'RFC 3339 or 30m'],
  ['status', 'Last status', '503 or 5xx'],
  ['error', 'Error text', ''],
  ['url_prefix', 'URL prefix', 'https://…'],
  ['key', 'Idempotency key', ''],
];
export const STATES = ['pending', 'scheduled', 'in_flight', 'waiting', 'delivered', 'dead', 'cancelled'];
const PAGE = 50;

/** The filters of a hash query: { name: value } (state: a list), empty ones left out. */
export function filtersOf(query, withState) {
  const f = {};
  if (withState) {
    const states = query.getAll('state').filter(Boolean);
    if (states.length) f.state = states;
  }
  for (const [name] of FILTERS) {
    const v = query.get(name);
    if (v) f[name] = v;
  }
  return f;
}

function filterForm(query, withState, onSubmit) {
  const controls = [];
  if (withState) {
    const current = query.get('state') || '';
    controls.push(el('div', { class: 'control' },
      el('label', { for: 'f-state' }, 'State'),
      el('select', { id: 'f-state', name: 'state' },
        el('option', { value: '', selected: current === '' }, 'any but delivered'),
        STATES.map((s) => el('option', { value: s, selected: current === s }, s)))));
  }
  for (const [name, label, hint] of FILTERS) {
    controls.push(el('div', { class: 'control' },
      el('label', { for: 'f-' + name }, label),
      el('input', { id: 'f-' + name, name, type: 'text', value: query.get(name) || '', placeholder: hint || null, autocomplete: 'off', spellcheck: 'false' })));
  }
  const form = el('form', { id: 'filters', class: 'filters', role: 'search', 'aria-label': 'Filters' },
    el('div', { class: 'controls' }, controls),
    el('div', { class: 'form-actions' },
      el('button', { type: 'submit', class: 'primary' }, 'Apply'),
      el('button', { type: 'button', id: 'clear-filters' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = {};
    for (const c of form.elements) if (c.name && c.value.trim()) f[c.name] = c.value.trim();
    onSubmit(f);
  });
  form.querySelector('#clear-filters').addEventListener('click', () => onSubmit({}));
  return form;
}

function lastResult(m) {
  const parts = [];
  if (m.last_status != null) parts.push(el('span', { class: 'status' }, String(m.last_status)));
  if (m.last_error) {
    const text = m.last_error.length > 140 ? m.last_error.slice(0, 140) + '…' : m.last_error;
    parts.push(el('span', { class: 'error-text', title: m.last_error.slice(0, 1000) }, (parts.length ? ' ' : '') + text));
  }
  return parts.length ? parts : '-';
}

/** The table of a page of messages: rows `tr[data-uuid]`. */
export function messagesTable(list) {
  const rows = list.map((m) => el('tr', { dataset: { uuid: m.uuid } },
    el('td', { dataset: { field: 'created_at' } }, timeEl(m.created_at)),
    el('td', { dataset: { field: 'state' } }, badge(m.state),
      m.cancel_requested ? el('span', { class: 'muted small' }, ' cancel requested') : null),
    el('td', { dataset: { field: 'endpoint' } },
      m.endpoint ? el('a', { href: hashLink(['endpoints', m.endpoint]) }, m.endpoint) : '-'),
    el('td', { dataset: { field: 'url' }, class: 'url', title: m.url }, m.url),
    el('td', { dataset: { field: 'attempts' } }, `${num(m.attempts_used)}/${num(m.max_attempts)}`,
      m.attempts_total !== m.attempts_used ? el('span', { class: 'muted small' }, ` (${num(m.attempts_total)} in all)`) : null),
    el('td', { dataset: { field: 'last' } }, lastResult(m)),
    el('td', { dataset: { field: 'uuid' } },
      el('a', { href: hashLink(['messages', m.uuid]), class: 'mono', 'aria-label': 'Message ' + m.uuid, title: m.uuid },
        String(m.uuid).slice(0, 8) + '…'))));
  const t = table({ id: 'messages' }, ['Created', 'State', 'Endpoint', 'URL', 'Attempts', 'Last status or error', 'Message'], rows);
  if (!rows.length) t.body.append(el('tr', { class: 'empty' }, el('td', { colspan: 7, class: 'muted' }, 'No messages match.')));
  return t.wrap;
}

/**
 * A list page: `section` is "messages" or "dlq". `extra(filters, reload)` may give a node to put
 * between the form and the table (the DLQ's bulk actions).
 */
export function renderList(view, ctx, query, { section, title, withState, extra }) {
  const onSubmit = (f) => {
    const hash = '#/' + section + (queryString(f) ? '?' + queryString(f) : '');
    if (location.hash === hash) ctx.reload();
    else location.hash = hash;
  };
  const form = filterForm(query, withState, onSubmit);
  const filters = filtersOf(query, withState);
  const cursor = query.get('cursor');
  const summary = el('p', { class: 'muted', id: 'page-summary', 'aria-live': 'polite' }, 'Loading…');
  const holder = el('div', { class: 'list' });
  const first = el('button', { type: 'button', id: 'first', disabled: !cursor }, 'First page');
  const next = el('button', { type: 'button', id: 'next', disabled: true }, 'Next page');
  let nextCursor = null;
  first.addEventListener('click', () => {
    location.hash = '#/' + section + (queryString(filters) ? '?' + queryString(filters) : '');
  });
  next.addEventListener('click', () => {
    if (nextCursor) location.hash = '#/' + section + '?' + queryString({ ...filters, cursor: nextCursor });
  });

  const load = async () => {
    for (const c of form.elements) c.removeAttribute('aria-invalid');
    let page;
    try {
      page = await apiGet(section, { ...filters, limit: PAGE, cursor });
    } catch (e) {
      if (!ctx.alive()) return;
      const field = e.field && form.elements.namedItem(e.field);
      if (field) field.setAttribute('aria-invalid', 'true');
      summary.textContent = 'Could not list the messages.';
      holder.replaceChildren();
      throw e;
    }
    if (!ctx.alive()) return;
    const list = page && Array.isArray(page.messages) ? page.messages : [];
    nextCursor = page && page.next_cursor ? page.next_cursor : null;
    next.disabled = !nextCursor;
    holder.replaceChildren(messagesTable(list));
    summary.textContent = (cursor ? 'A later page: ' : '') + (list.length
      ? `${list.length} message${list.length === 1 ? '' : 's'}${nextCursor ? ', more on the next page' : ''}.`
      : 'No messages.');
  };
  append(view, el('h1', null, title), form,
    extra ? extra(filters, () => load().catch(ctx.error)) : null,
    summary, holder, el('div', { class: 'pager' }, first, next));
  return load();
}

export function render(view, ctx, query) {
  return renderList(view, ctx, query, { section: 'messages', title: 'Messages', withState: true });
}
