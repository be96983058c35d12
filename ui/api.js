// Same-origin calls to the dashboard's routes: the session (cookie + CSRF token) and the API
// under /ui/api/ (the /v1 routes). Errors are RFC 9457 problems; their detail is kept.

import { queryString } from '/ui/format.js';

/** A refused or failed request: `status` (0: no answer), `detail`, the problem document. */
export class ApiError extends Error {
  constructor(status, detail, problem) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.problem = problem || null;
    this.field = problem && typeof problem.field === 'string' ? problem.field : null;
  }
}

let session = null;
let unauthorized = () => {};

/** Called (once per refusal) when a call answers 401: the session is over. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export function currentSession() {
  return session;
}

export function isAdmin() {
  return !!(session && Array.isArray(session.scopes) && session.scopes.includes('admin'));
}

async function request(url, { method = 'GET', body, auth = true, retried = false } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (session && session.csrf) headers['X-CSRF-Token'] = session.csrf;
    init.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, 'The server did not answer (' + (e && e.message ? e.message : e) + ').');
  }
  const text = await res.text().catch(() => '');
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const p = data && typeof data === 'object' ? data : null;
    const detail = (p && (typeof p.detail === 'string' && p.detail ? p.detail : p.title))
      || 'HTTP ' + res.status + (res.statusText ? ' ' + res.statusText : '');
    const err = new ApiError(res.status, String(detail), p);
    // Another tab logged in again: this page's CSRF token is the old session's. Take the
    // current session's and try once more.
    if (res.status === 403 && method !== 'GET' && auth && !retried && /CSRF/.test(String(detail))) {
      const fresh = await loadSession().catch(() => null);
      if (fresh) return request(url, { method, body, auth, retried: true });
    }
    if (res.status === 401 && auth && session) {
      session = null;
      unauthorized(err);
    }
    throw err;
  }
  if (data === null && text) throw new ApiError(res.status, 'The server answered something other than JSON.');
  return data;
}

function apiUrl(path, query) {
  const q = query ? queryString(query) : '';
  return '/ui/api/' + path + (q ? '?' + q : '');
}

/** GET /ui/api/PATH?QUERY (PATH's parameters already encoded). */
export function apiGet(path, query) {
  return request(apiUrl(path, query));
}

/** POST /ui/api/PATH with a JSON body and the CSRF token. */
export function apiPost(path, body) {
  return request(apiUrl(path), { method: 'POST', body: body ?? {} });
}

/** The session, or null when there is none (401). */
export async function loadSession() {
  try {
    session = await request('/ui/session', { auth: false });
  } catch (e) {
    session = null;
    if (e.status === 401) return null;
    throw e;
  }
  return session;
}

export async function login(token) {
  session = null;
  session = await request('/ui/login', { method: 'POST', body: { token }, auth: false });
  return session;
}

export async function logout() {
  try {
    await request('/ui/logout', { method: 'POST', body: {}, auth: false });
  } finally {
    session = null;
  }
}

/** An endpoint's path under /ui/api/ (its name encoded). */
export function endpointPath(name, ...rest) {
  return ['endpoints', encodeURIComponent(name), ...rest].join('/');
}

/** A message's path under /ui/api/. */
export function messagePath(uuid, ...rest) {
  return ['messages', encodeURIComponent(uuid), ...rest].join('/');
}
