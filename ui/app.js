// The dashboard: the session (login form or app), hash routing to the pages, the flash line.

import { loadSession, login, logout, currentSession, isAdmin, onUnauthorized } from '/ui/api.js';
import { el, visible } from '/ui/format.js';
import * as overview from '/ui/overview.js';
import * as endpoints from '/ui/endpoints.js';
import * as messages from '/ui/messages.js';
import * as dlq from '/ui/dlq.js';
import * as message from '/ui/message.js';

const $ = (id) => document.getElementById(id);

/** The page shown: its leave handlers; `alive` turns false when it is left. */
let page = null;
let lastPath = null;

function flash(text, kind = 'info') {
  const f = $('flash');
  f.className = text ? 'flash-' + kind : '';
  f.textContent = text ? visible(text) : '';
}

function leave() {
  if (!page) return;
  page.alive = false;
  for (const fn of page.leaving.splice(0)) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
  page = null;
}

function newContext() {
  const p = { alive: true, leaving: [] };
  page = p;
  return {
    alive: () => p.alive,
    onLeave: (fn) => p.leaving.push(fn),
    admin: isAdmin(),
    flash: (text, kind) => {
      if (p.alive) flash(text, kind);
    },
    /** Shows a failure (a 401 already brought the login form back). */
    error: (e) => {
      if (!p.alive || (e && e.status === 401)) return;
      if (!(e && 'status' in e)) console.error(e);
      flash(e && e.detail ? e.detail : String((e && e.message) || e), 'error');
    },
    reload: () => {
      if (p.alive) route({ keepFlash: true });
    },
  };
}

function parseHash() {
  const h = location.hash.replace(/^#/, '');
  const at = h.indexOf('?');
  const path = at < 0 ? h : h.slice(0, at);
  const query = new URLSearchParams(at < 0 ? '' : h.slice(at + 1));
  let segments;
  try {
    segments = path.split('/').filter(Boolean).map((s) => decodeURIComponent(s));
  } catch {
    segments = null;
  }
  return { path, segments, query };
}

function notFound(view) {
  view.append(el('h1', { tabindex: '-1' }, 'Not found'),
    el('p', null, 'There is no such page. ', el('a', { href: '#/overview' }, 'Go to the overview'), '.'));
}

const TITLES = { overview: 'Overview', endpoints: 'Endpoints', messages: 'Messages', dlq: 'Dead letters' };

function route({ keepFlash = false } = {}) {
  leave();
  if (!currentSession()) return;
  const { path, segments, query } = parseHash();
  if (segments && segments.length === 0) history.replaceState(null, '', '#/overview');
  const [section = 'overview', arg, extra] = segments || ['?'];
  const ctx = newContext();
  if (!keepFlash) flash('');
  const view = $('view');
  view.replaceChildren();
  let run = null;
  if (extra === undefined) {
    if (section === 'overview' && arg === undefined) run = () => overview.render(view, ctx);
    else if (section === 'endpoints') run = arg === undefined
      ? () => endpoints.renderList(view, ctx)
      : () => endpoints.renderDetail(view, ctx, arg);
    else if (section === 'messages') run = arg === undefined
      ? () => messages.render(view, ctx, query)
      : () => message.render(view, ctx, arg);
    else if (section === 'dlq' && arg === undefined) run = () => dlq.render(view, ctx, query);
  }
  const known = run && TITLES[section] ? section : null;
  for (const a of document.querySelectorAll('nav a[href^="#/"]')) {
    if (a.getAttribute('href') === '#/' + known) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = (known ? TITLES[known] : 'Not found') + ' · webhookd';
  if (!run) notFound(view);
  else {
    try {
      Promise.resolve(run()).catch((e) => {
        ctx.error(e);
        if (!ctx.alive()) return;
        for (const p of view.querySelectorAll('.placeholder')) p.textContent = 'Could not load this page (see above).';
      });
    } catch (e) {
      ctx.error(e);
    }
  }
  // Moving to another page moves the focus to its heading (not when only the query changed).
  if (lastPath !== null && lastPath !== path && !keepFlash) {
    const h1 = view.querySelector('h1');
    if (h1) {
      h1.setAttribute('tabindex', '-1');
      h1.focus();
    }
  }
  lastPath = path;
}

function showLogin(message) {
  leave();
  $('app').hidden = true;
  $('loading').hidden = true;
  $('login-view').hidden = false;
  $('view').replaceChildren();
  flash('');
  $('login-error').textContent = message ? visible(message) : '';
  $('token').focus();
}

function showApp() {
  const s = currentSession();
  $('login-view').hidden = true;
  $('loading').hidden = true;
  $('app').hidden = false;
  const who = $('session-name');
  who.replaceChildren(el('span', { class: 'who-name' }, s.name ?? ''),
    el('span', { class: 'who-scopes' }, ' (' + (Array.isArray(s.scopes) ? s.scopes.join(', ') : '') + ')'));
  lastPath = null;
  route();
}

onUnauthorized((e) => showLogin('Your session has ended: sign in again. (' + e.detail + ')'));

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('token');
  const button = $('login').querySelector('button[type="submit"]');
  $('login-error').textContent = '';
  button.disabled = true;
  try {
    await login(input.value.trim());
    input.value = '';
    showApp();
  } catch (e) {
    $('login-error').textContent = visible(e.detail || String(e));
    input.focus();
    input.select();
  } finally {
    button.disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  const button = $('logout');
  button.disabled = true;
  try {
    await logout();
  } catch (e) {
    console.error(e);
  } finally {
    button.disabled = false;
  }
  showLogin('');
});

window.addEventListener('hashchange', () => route());

async function start() {
  try {
    const s = await loadSession();
    if (s) showApp();
    else showLogin('');
  } catch (e) {
    showLogin(e.detail || String(e));
  }
}

start();
