// The designed states every panel can be in besides showing data: loading, empty, not
// available on this server, and failed.
import { h } from './dom.js';

const icons = {
  empty: 'M4 5h16v2H4zm0 6h16v2H4zm0 6h10v2H4z',
  missing: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm1 15h-2v-2h2zm0-4h-2V7h2z',
  error: 'M1 21h22L12 2zm12-3h-2v-2h2zm0-4h-2v-4h2z',
  offline: 'M2 8.8 4 10.8a11.3 11.3 0 0 1 16 0l2-2a14 14 0 0 0-20 0zm4 4 2 2a5.7 5.7 0 0 1 8 0l2-2a8.5 8.5 0 0 0-12 0zm4 4 2 2 2-2a2.8 2.8 0 0 0-4 0z',
};

function icon(name) {
  return h('svg', { class: 'state-icon', viewBox: '0 0 24 24', 'aria-hidden': 'true', width: 28, height: 28 },
    h('path', { d: icons[name], fill: 'currentColor' }));
}

export function loading(what = 'Loading') {
  return h('div', { class: 'state state-loading', role: 'status' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', {}, what + '…'));
}

// empty is "there is nothing yet", with what would make something appear.
export function empty(title, body, ...actions) {
  return h('div', { class: 'state state-empty' }, icon('empty'),
    h('div', {}, h('p', { class: 'state-title' }, title), body && h('p', {}, body), actions.length ? h('p', { class: 'state-actions' }, actions) : null));
}

// notAvailable is for a feature this server does not offer (yet): a 404 for the route itself.
export function notAvailable(title, body) {
  return h('div', { class: 'state state-missing', dataset: { state: 'not-available' } }, icon('missing'),
    h('div', {}, h('p', { class: 'state-title' }, title), h('p', {}, body)));
}

// failed explains an ApiError in words, with a way to try again.
export function failed(err, retry) {
  const kind = err && err.kind;
  let title = 'Something went wrong';
  let body = err && err.message ? err.message : String(err);
  let iconName = 'error';
  switch (kind) {
    case 'network':
      title = 'Cannot reach the billing API';
      body = 'The server did not answer. It may be down or restarting; check that billingd is running, then retry.';
      iconName = 'offline';
      break;
    case 'unavailable':
      title = 'The service is temporarily unavailable';
      body = 'Its database or Redis does not answer right now. Retry in a moment.';
      iconName = 'offline';
      break;
    case 'forbidden':
      title = 'This key may not read this';
      body = 'The API key lacks the scope this page needs (read). Paste a key with the read scope.';
      break;
    case 'not-found':
      title = 'Not found';
      break;
    case 'invalid':
      title = 'The request was refused';
      if (err.fieldErrors.length) body = err.fieldErrors.map((e) => `${e.pointer}: ${e.detail}`).join('; ');
      break;
    case 'server':
      title = `The server failed (HTTP ${err.status})`;
      break;
    default:
      break;
  }
  return h('div', { class: 'state state-error', role: 'alert', dataset: { state: 'error', kind: kind || 'unknown' } }, icon(iconName),
    h('div', {},
      h('p', { class: 'state-title' }, title),
      h('p', {}, body),
      err && err.correlationId ? h('p', { class: 'muted' }, 'Correlation id to quote: ', h('code', {}, err.correlationId)) : null,
      retry ? h('p', { class: 'state-actions' }, h('button', { type: 'button', class: 'btn', onclick: retry }, 'Retry')) : null));
}
