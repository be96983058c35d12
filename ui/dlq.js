// #/dlq?FILTERS: the dead letters, and the bulk retry and delete of those the filters select
// (all of them with no filter): a dry run counts them, the operator confirms, and while the
// real request runs a dry run every second shows how many are left.

import { apiPost } from '/ui/api.js';
import { el, plural } from '/ui/format.js';
import { renderList } from '/ui/messages.js';

const POLL_MS = 1000;
const VERBS = {
  retry: { ask: 'Retry', done: 'Retried', doing: 'Retrying' },
  delete: { ask: 'Delete', done: 'Deleted', doing: 'Deleting' },
};

/** The body selecting the filtered dead letters: the filters, or `all` without any. */
function selection(filters) {
  const f = { ...filters };
  delete f.state;
  return Object.keys(f).length ? f : { all: true };
}

function bulkPanel(ctx, filters, reload) {
  const sel = selection(filters);
  const scope = sel.all ? 'all dead messages' : 'the dead messages the filters select';
  const retry = el('button', { type: 'button', id: 'bulk-retry', hidden: !ctx.admin, disabled: !ctx.admin }, 'Retry…');
  const del = el('button', { type: 'button', id: 'bulk-delete', class: 'danger', hidden: !ctx.admin, disabled: !ctx.admin }, 'Delete…');
  const count = el('p', { id: 'bulk-count' });
  const confirm = el('button', { type: 'button', id: 'bulk-confirm', class: 'primary' }, 'Confirm');
  const cancel = el('button', { type: 'button', id: 'bulk-cancel' }, 'Cancel');
  const confirmBox = el('div', { class: 'confirm', hidden: true, role: 'group', 'aria-label': 'Confirm the bulk action' },
    count, el('p', { class: 'muted small' }, 'Selected: ' + scope + '.'),
    el('div', { class: 'form-actions' }, confirm, cancel));
  const progressLabel = el('label', { for: 'bulk-progress' }, 'Progress');
  const progress = el('progress', { id: 'bulk-progress', max: 1, value: 0 });
  const progressBox = el('div', { class: 'progress', hidden: true }, progressLabel, progress);
  const result = el('p', { id: 'bulk-result', 'aria-live': 'polite' });

  let pending = null; // { action, total }
  let timer = null;
  ctx.onLeave(() => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  });
  const busy = (b) => {
    for (const x of [retry, del, confirm, cancel]) x.disabled = b || (!ctx.admin && (x === retry || x === del));
  };

  const ask = async (action) => {
    if (!ctx.admin) return;
    busy(true);
    result.textContent = '';
    progressBox.hidden = true;
    try {
      const r = await apiPost('dlq/' + action, { ...sel, dry_run: true, count_only: true });
      if (!ctx.alive()) return;
      const n = Number(r.changed ?? r.matched) || 0;
      pending = { action, total: n };
      count.textContent = n > 0
        ? `${VERBS[action].ask} ${plural(n, 'dead message')}?`
        : `No dead messages to ${action}.`;
      confirm.hidden = n === 0;
      confirm.textContent = n > 0 ? `${VERBS[action].ask} ${plural(n, 'message')}` : 'Confirm';
      confirmBox.hidden = false;
      busy(false);
      (n > 0 ? confirm : cancel).focus();
    } catch (e) {
      busy(false);
      ctx.error(e);
    }
  };

  const close = () => {
    pending = null;
    confirmBox.hidden = true;
    count.textContent = '';
  };

  const run = async () => {
    if (!pending || !ctx.admin) return;
    const { action, total } = pending;
    busy(true);
    progress.max = Math.max(total, 1);
    progress.value = 0;
    progressLabel.textContent = `${VERBS[action].doing} ${plural(total, 'message')}`;
    progressBox.hidden = false;
    let done = false;
    const poll = async () => {
      timer = null;
      if (done || !ctx.alive()) return;
      try {
        const r = await apiPost('dlq/' + action, { ...sel, dry_run: true, count_only: true });
        const left = Number(r.changed ?? r.matched) || 0;
        if (!done) progress.value = Math.min(total, Math.max(0, total - left));
      } catch (e) {
        if (e.status === 401) return;
      }
      if (!done && ctx.alive()) timer = setTimeout(poll, POLL_MS);
    };
    timer = setTimeout(poll, POLL_MS);
    try {
      const r = await apiPost('dlq/' + action, { ...sel, count_only: true });
      done = true;
      if (!ctx.alive()) return;
      const changed = Number(r.changed) || 0;
      progress.max = Math.max(total, changed, 1);
      progress.value = Math.max(total, changed);
      result.textContent = `${VERBS[action].done} ${plural(changed, 'message')}`;
      ctx.flash(result.textContent, 'ok');
      close();
      reload();
    } catch (e) {
      done = true;
      ctx.error(e);
      progressBox.hidden = true;
    } finally {
      done = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      busy(false);
    }
  };

  retry.addEventListener('click', () => ask('retry'));
  del.addEventListener('click', () => ask('delete'));
  confirm.addEventListener('click', run);
  cancel.addEventListener('click', () => {
    const back = pending && pending.action === 'delete' ? del : retry;
    close();
    back.focus();
  });

  return el('section', { class: 'bulk', 'aria-label': 'Bulk actions' },
    el('div', { class: 'form-actions' },
      el('span', { class: 'muted' }, ctx.admin ? `Act on ${scope}:` : 'Bulk retry and delete need a token with the admin scope.'),
      retry, del),
    confirmBox, progressBox, result);
}

export function render(view, ctx, query) {
  return renderList(view, ctx, query, {
    section: 'dlq',
    title: 'Dead letters',
    withState: false,
    extra: (filters, reload) => bulkPanel(ctx, filters, reload),
  });
}
