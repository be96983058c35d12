// #/messages/UUID: one message with its headers, body and attempts; cancel while it waits or
// runs; for a dead message, a retry form whose edits (url, headers, body) are sent only when
// changed (POST /ui/api/dlq/retry, as src/api/routes/act.rs reads them).

import { apiGet, apiPost, messagePath } from '/ui/api.js';
import { el, replace, num, ms, bytes, yesNo, timeEl, table, fields, badge, hashLink } from '/ui/format.js';

const SHOW_MAX = 64 * 1024;
const CANCELLABLE = ['pending', 'scheduled', 'waiting', 'in_flight'];

/** The first SHOW_MAX bytes of `text` (UTF-8), and whether it was cut. */
function head(text) {
  const enc = new TextEncoder().encode(text);
  if (enc.length <= SHOW_MAX) return { shown: text, cut: false, size: enc.length };
  const shown = new TextDecoder().decode(enc.slice(0, SHOW_MAX)).replace(/\uFFFD$/, '');
  return { shown, cut: true, size: enc.length };
}

function bodySection(m, ctx) {
  const out = [el('h2', null, 'Body')];
  if (m.body_base64 != null) {
    let bin;
    try {
      bin = Uint8Array.from(atob(String(m.body_base64)), (c) => c.charCodeAt(0));
    } catch {
      out.push(el('p', { class: 'error-text' }, 'The body is binary and its base64 could not be read.'));
      return out;
    }
    const href = URL.createObjectURL(new Blob([bin], { type: 'application/octet-stream' }));
    ctx.onLeave(() => URL.revokeObjectURL(href));
    const safe = String(m.uuid).replace(/[^0-9a-fA-F-]/g, '') || 'body';
    out.push(el('p', null, `Binary body (${bytes(bin.length)}): not shown. `,
      el('a', { id: 'download', href, download: safe + '.bin' }, 'Download it')));
    return out;
  }
  const text = typeof m.body === 'string' ? m.body : '';
  const { shown, cut, size } = head(text);
  if (!size) out.push(el('p', { class: 'muted' }, 'Empty body.'));
  else if (cut) out.push(el('p', { class: 'note' }, `Showing the first 64 KiB of ${bytes(size)}.`));
  out.push(el('pre', { id: 'body', class: 'data' }, shown));
  return out;
}

function headersTable(list) {
  const rows = (Array.isArray(list) ? list : []).map((h) =>
    el('tr', null, el('th', { scope: 'row', class: 'mono' }, h.name), el('td', { class: 'mono' }, h.value)));
  const t = table({ id: 'headers' }, ['Name', 'Value'], rows);
  if (!rows.length) t.body.append(el('tr', null, el('td', { colspan: 2, class: 'muted' }, 'No headers.')));
  return t.wrap;
}

function attemptsTable(list) {
  const rows = (Array.isArray(list) ? list : []).map((a) => el('tr', { class: 'attempt' },
    el('td', { dataset: { field: 'n' } }, num(a.n)),
    el('td', { dataset: { field: 'at' } }, timeEl(a.at)),
    el('td', { dataset: { field: 'duration_ms' } }, ms(a.duration_ms)),
    el('td', { dataset: { field: 'status' } }, a.status != null ? String(a.status) : '-'),
    el('td', { dataset: { field: 'error' }, class: a.error ? 'error-text' : 'muted' }, a.error ?? '-'),
    el('td', null, a.response_excerpt
      ? el('pre', { class: 'data excerpt', dataset: { field: 'response_excerpt' } }, a.response_excerpt)
      : el('pre', { class: 'data excerpt empty', dataset: { field: 'response_excerpt' } }))));
  const t = table({ id: 'attempts' }, ['#', 'Time', 'Duration', 'Status', 'Error', 'Response (excerpt)'], rows);
  if (!rows.length) t.body.append(el('tr', null, el('td', { colspan: 6, class: 'muted' }, 'No attempts yet.')));
  return t.wrap;
}

const strip = (v) => String(v).replace(/^[ \t]+|[ \t\r]+$/g, '');

/** `Name: value` lines as [{name, value}]; blank lines are skipped. */
function parseHeaders(text) {
  const out = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const at = line.indexOf(':');
    const name = at > 0 ? line.slice(0, at).trim() : '';
    if (!name) throw new Error(`Headers, line ${i + 1}: expected "Name: value".`);
    out.push({ name, value: strip(line.slice(at + 1)) });
  });
  return out;
}

/**
 * The edits turning `before` into `after`: `headers` to set (the server replaces every header
 * of that name, case-insensitive) and `remove_headers`. A name may be set to one value only.
 */
function diffHeaders(before, after) {
  const group = (list) => {
    const m = new Map();
    for (const { name, value } of list) {
      const k = name.toLowerCase();
      if (!m.has(k)) m.set(k, { names: [], values: [] });
      m.get(k).names.push(name);
      m.get(k).values.push(strip(value));
    }
    return m;
  };
  const old = group(before);
  const now = group(after);
  const set = [];
  const remove = [];
  for (const [k, g] of old) if (!now.has(k)) remove.push(g.names[0]);
  for (const [k, g] of now) {
    const o = old.get(k);
    const same = o && o.values.length === g.values.length
      && o.values.every((v, i) => v === g.values[i]) && o.names.every((n, i) => n === g.names[i]);
    if (same) continue;
    if (g.values.length > 1) {
      throw new Error(`Headers: ${g.names[0]} is given ${g.values.length} times; a retry sets one value per header name.`);
    }
    set.push({ name: g.names[0], value: g.values[0] });
  }
  return { set, remove };
}

function editForm(m, ctx, reload) {
  const binary = m.body_base64 != null;
  const headerLines = (m.headers || []).map((h) => `${h.name}: ${h.value}`).join('\n');
  const url = el('input', { id: 'edit-url', name: 'url', type: 'text', value: m.url, autocomplete: 'off', spellcheck: 'false' });
  const hdrs = el('textarea', { id: 'edit-headers', name: 'headers', rows: Math.min(12, Math.max(3, (m.headers || []).length + 1)), spellcheck: 'false' });
  const body = el('textarea', { id: 'edit-body', name: 'body', rows: 10, spellcheck: 'false', disabled: binary });
  hdrs.value = headerLines;
  if (!binary) body.value = typeof m.body === 'string' ? m.body : '';
  // What the controls show at first (a textarea turns CR LF into LF): unchanged is not sent.
  const initial = { url: url.value, headers: hdrs.value, body: body.value };
  const retry = el('button', { id: 'retry', type: 'submit', class: 'primary', hidden: !ctx.admin, disabled: !ctx.admin }, 'Retry');
  const form = el('form', { id: 'edit', class: 'edit', hidden: !ctx.admin },
    el('p', { class: 'muted' }, 'Send it again with a fresh attempt budget; only the fields you change are edited.'),
    el('div', { class: 'control wide' }, el('label', { for: 'edit-url' }, 'URL'), url,
      m.endpoint ? el('span', { class: 'hint' }, 'It goes to endpoint ' + m.endpoint + ': its URL comes from the endpoint, and a changed URL is refused.') : null),
    el('div', { class: 'control wide' }, el('label', { for: 'edit-headers' }, 'Headers (one "Name: value" a line)'), hdrs),
    el('div', { class: 'control wide' }, el('label', { for: 'edit-body' }, 'Body'), body,
      binary ? el('span', { class: 'hint' }, 'The body is binary: it cannot be edited here.') : null),
    el('div', { class: 'form-actions' }, retry));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!ctx.admin) return;
    for (const c of [url, hdrs, body]) c.removeAttribute('aria-invalid');
    const edits = {};
    try {
      if (url.value.trim() !== initial.url.trim()) edits.url = url.value.trim();
      if (hdrs.value !== initial.headers) {
        const { set, remove } = diffHeaders(m.headers || [], parseHeaders(hdrs.value));
        if (set.length) edits.headers = set;
        if (remove.length) edits.remove_headers = remove;
      }
    } catch (e) {
      hdrs.setAttribute('aria-invalid', 'true');
      ctx.flash(e.message, 'error');
      hdrs.focus();
      return;
    }
    if (!binary && body.value !== initial.body) {
      // A textarea has LF line ends: a body that had CR LF gets them back.
      const crlf = typeof m.body === 'string' && m.body.includes('\r\n');
      edits.body = crlf ? body.value.replace(/\r?\n/g, '\r\n') : body.value;
    }
    retry.disabled = true;
    try {
      const r = await apiPost('dlq/retry', { uuids: [m.uuid], ...edits });
      const changed = Object.keys(edits).map((k) => (k === 'remove_headers' ? 'headers' : k));
      ctx.flash(r && r.changed === 0 ? 'Nothing was retried.'
        : 'Retried' + (changed.length ? ' with edits (' + [...new Set(changed)].join(', ') + ')' : '') + ': the message is pending again.', 'ok');
      reload();
    } catch (e) {
      const target = { url, headers: hdrs, remove_headers: hdrs, body }[String(e.field || '').split(/[.[]/)[0]];
      if (target) target.setAttribute('aria-invalid', 'true');
      ctx.error(e);
      retry.disabled = false;
    }
  });
  return [el('h2', null, 'Retry'),
    ctx.admin ? null : el('p', { class: 'muted' }, 'Retrying needs a token with the admin scope.'), form];
}

function details(m) {
  return fields([
    ['UUID', el('span', { class: 'mono' }, m.uuid), 'uuid'],
    ['State', [badge(m.state), m.cancel_requested ? ' (cancel requested: cancelled when its attempt ends)' : ''], 'state'],
    ['Method', m.method, 'method'],
    ['URL', el('span', { class: 'mono break' }, m.url), 'url'],
    ['Endpoint', m.endpoint ? [el('a', { href: hashLink(['endpoints', m.endpoint]) }, m.endpoint),
      m.endpoint_state ? [' ', badge(m.endpoint_state)] : null] : '-', 'endpoint'],
    ['Path', m.path ?? '-', 'path'],
    ['Event', m.event ?? '-', 'event'],
    ['Ordering key', m.ordering_key ?? '-', 'ordering_key'],
    ['Idempotency key', m.key ?? '-', 'key'],
    ['Body size', bytes(m.body_size), 'body_size'],
    ['Created', timeEl(m.created_at), 'created_at'],
    ['Next attempt', timeEl(m.next_attempt_at), 'next_attempt_at'],
    ['Delivered', timeEl(m.delivered_at), 'delivered_at'],
    ['Retried', timeEl(m.retried_at), 'retried_at'],
    ['Replayed', timeEl(m.replayed_at), 'replayed_at'],
    ['Dead', timeEl(m.dead_at), 'dead_at'],
    ['Cancelled', timeEl(m.cancelled_at), 'cancelled_at'],
    ['Cancel requested', yesNo(m.cancel_requested), 'cancel_requested'],
    ['Attempts', `${num(m.attempts_used)} of ${num(m.max_attempts)} (${num(m.attempts_total)} in all)`, 'attempts'],
    ['Last status', m.last_status != null ? String(m.last_status) : '-', 'last_status'],
    ['Last error', m.last_error ? el('span', { class: 'error-text' }, m.last_error) : '-', 'last_error'],
  ]);
}

export function render(view, ctx, uuid) {
  const content = el('div', { class: 'detail' }, el('p', { class: 'muted placeholder' }, 'Loading…'));
  view.append(el('p', { class: 'crumbs' }, el('a', { href: '#/messages' }, 'Messages'), ' / '),
    el('h1', null, 'Message ', el('span', { class: 'mono break' }, uuid)), content);
  let leaving = [];
  ctx.onLeave(() => leaving.splice(0).forEach((fn) => fn()));
  const load = async () => {
    const m = await apiGet(messagePath(uuid));
    if (!ctx.alive()) return;
    // The previous load's object URL goes with the page it belonged to.
    leaving.splice(0).forEach((fn) => fn());
    const sub = { ...ctx, onLeave: (fn) => leaving.push(fn) };
    const cancel = CANCELLABLE.includes(m.state) ? el('button', { id: 'cancel', type: 'button', class: 'danger', hidden: !ctx.admin, disabled: !ctx.admin || m.cancel_requested }, 'Cancel message') : null;
    if (cancel) {
      cancel.addEventListener('click', async () => {
        cancel.disabled = true;
        try {
          const r = await apiPost(messagePath(m.uuid, 'cancel'), {});
          ctx.flash(r && r.cancel_requested > 0 ? 'Cancel requested: the message is cancelled when its attempt ends.'
            : r && r.changed > 0 ? 'Cancelled.' : 'Nothing to cancel.', 'ok');
          await load();
        } catch (e) {
          ctx.error(e);
          cancel.disabled = false;
        }
      });
    }
    replace(content,
      el('div', { class: 'actions' }, cancel,
        m.state === 'dead' ? el('a', { href: '#/dlq' }, 'Dead letters') : null,
        m.endpoint ? el('a', { href: hashLink(['messages'], { endpoint: m.endpoint }) }, 'Messages of ' + m.endpoint) : null),
      details(m),
      el('h2', null, 'Headers'), headersTable(m.headers),
      ...bodySection(m, sub),
      el('h2', null, 'Attempts'), attemptsTable(m.attempts),
      ...(m.state === 'dead' ? editForm(m, ctx, () => load().catch(ctx.error)) : []));
  };
  return load();
}
