// Formatting and safe DOM building. Every string from the server is hostile: it only ever
// reaches the page as a text node (or an attribute set with setAttribute), after visible().

// C0 controls but \t and \n, DEL, C1 controls, the bidirectional marks, overrides and isolates
// (which can reorder what is shown), zero-width characters and line separators.
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** The text with its control characters made visible: ESC as \x1b, U+202E as \u{202e}. */
export function visible(s) {
  if (s === null || s === undefined) return '';
  return String(s).replace(CONTROLS, (c) => {
    const n = c.codePointAt(0);
    return n < 0x100 ? '\\x' + n.toString(16).padStart(2, '0') : '\\u{' + n.toString(16) + '}';
  });
}

/** Appends children: nodes as they are, anything else as a text node of visible(text). */
export function append(parent, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    parent.append(c instanceof Node ? c : document.createTextNode(visible(c)));
  }
  return parent;
}

/** Replaces the children of `parent` (as append() takes them). */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, ...children);
}

/**
 * An element. attrs: `class`, `dataset` (an object), `text`, `on` ({event: handler}); any other
 * key is set with setAttribute (true: present, false/null: left out). Links may only point
 * inside the page (`#/...`) or at a blob made here.
 */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'text') e.textContent = visible(v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else {
      if (k === 'href' && !/^(#\/|blob:)/.test(String(v))) throw new Error('refused link ' + v);
      if (/^on/i.test(k)) throw new Error('refused attribute ' + k);
      const text = v === true ? '' : String(v);
      // What a person reads (a tooltip, a screen reader's label) has its controls made visible.
      e.setAttribute(k, ['title', 'aria-label', 'placeholder', 'alt'].includes(k) ? visible(text) : text);
    }
  }
  return append(e, children);
}

/** A `#/...` link: the path's segments are encoded one by one. */
export function hashLink(segments, query) {
  const path = '#/' + segments.map((s) => encodeURIComponent(s)).join('/');
  const q = query ? queryString(query) : '';
  return q ? path + '?' + q : path;
}

/** `a=1&b=x%20y` from an object (or entries); empty values are left out, arrays repeat. */
export function queryString(obj) {
  const parts = [];
  const entries = obj instanceof URLSearchParams ? [...obj] : Object.entries(obj);
  for (const [k, v] of entries) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one === null || one === undefined || one === '') continue;
      parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(one)));
    }
  }
  return parts.join('&');
}

/** A class name part from a server word (`in_flight` → `in_flight`, anything odd → `other`). */
export function token(s) {
  return /^[a-z0-9_ -]{1,40}$/i.test(String(s ?? '')) ? String(s).replace(/ /g, '-') : 'other';
}

function utc(d) {
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '').replace(/Z$/, '') + ' UTC';
}

/** A `<time>`: local time shown, UTC on hover; "-" when none. */
export function timeEl(iso) {
  if (!iso) return el('span', { class: 'muted' }, '-');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return el('span', null, iso);
  return el('time', { datetime: d.toISOString(), title: utc(d) }, d.toLocaleString());
}

/** A short local time of day (for "updated at" and axis labels). */
export function clock(d, seconds = true) {
  const opts = { hour: '2-digit', minute: '2-digit' };
  if (seconds) opts.second = '2-digit';
  return d.toLocaleTimeString([], opts);
}

export function num(n) {
  return typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString() : '-';
}

/** Per second, two decimals. */
export function rate(r) {
  return typeof r === 'number' && Number.isFinite(r) ? r.toFixed(2) + '/s' : '-';
}

export function percent(r) {
  return typeof r === 'number' && Number.isFinite(r) ? (r * 100).toFixed(1) + '%' : '-';
}

export function ms(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '-';
  return v < 1000 ? v.toFixed(1) + ' ms' : (v / 1000).toFixed(2) + ' s';
}

export function bytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '-';
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}

/** An age in seconds as `45s`, `3m 20s`, `2h 5m`, `3d 4h`. */
export function age(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

export function plural(n, one, many = one + 's') {
  return n + ' ' + (n === 1 ? one : many);
}

export function yesNo(b) {
  return b ? 'yes' : 'no';
}

/** A table in a horizontally scrolling wrapper; `head` is a list of column titles. */
export function table(attrs, head, rows) {
  const t = el('table', attrs,
    el('thead', null, el('tr', null, head.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', null, rows));
  return { wrap: el('div', { class: 'table-wrap' }, t), table: t, body: t.tBodies[0] };
}

/** A definition list from [term, value] pairs (values: text or nodes). */
export function fields(pairs, attrs) {
  return el('dl', Object.assign({ class: 'fields' }, attrs),
    pairs.filter(Boolean).map(([term, value, key]) => [
      el('dt', null, term),
      el('dd', key ? { dataset: { field: key } } : null, value ?? '-'),
    ]));
}

/** A state word as a badge. */
export function badge(state) {
  return el('span', { class: 'badge state-' + token(state) }, state ?? '-');
}
