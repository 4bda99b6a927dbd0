// The dashboard's shell: the key, the hash router, the navigation and the pipeline indicator.
// Views are modules with mount(root, ctx) → cleanup; a view owns its timers and stops them in
// its cleanup, which the router calls before the next view mounts.
import { get, storedKey, storeKey, forgetKey, onUnauthorized } from './api.js';
import { h, replace, announce } from './dom.js';
import * as overview from './views/overview.js';
import * as subscriptions from './views/subscriptions.js';
import * as subscription from './views/subscription.js';
import * as live from './views/live.js';

const PIPELINE_EVERY_MS = 5000;

const routes = [
  { nav: 'overview', title: 'Overview', pattern: /^\/?$/, view: overview },
  { nav: 'subscriptions', title: 'Subscriptions', pattern: /^\/subscriptions\/?$/, view: subscriptions },
  { nav: 'subscriptions', title: 'Subscription', pattern: /^\/subscriptions\/([0-9a-fA-F-]{36})\/?$/, view: subscription },
  { nav: 'live', title: 'Live', pattern: /^\/live\/?$/, view: live },
];

const main = document.getElementById('main');
let cleanup = () => {};
let rejected = ''; // why the last key was refused, shown on the key form

function parseHash() {
  let raw = location.hash.replace(/^#/, '') || '/';
  try {
    raw = decodeURI(raw);
  } catch {
    // a malformed escape: route it as it is (it will match no page)
  }
  const q = raw.indexOf('?');
  return { path: q < 0 ? raw : raw.slice(0, q), query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

// setQuery records a view's state (filters, page, version) in the address without re-rendering
// the view; Back and Forward then re-render it from the address.
function setQuery(path, query, { push = true } = {}) {
  const qs = query.toString();
  const hash = '#' + path + (qs ? '?' + qs : '');
  if (hash === location.hash) return;
  history[push ? 'pushState' : 'replaceState'](null, '', hash);
}

function render({ focus = false } = {}) {
  cleanup();
  cleanup = () => {};
  const key = storedKey();
  document.getElementById('sign-out').hidden = !key;
  if (!key) {
    setNav('');
    document.title = 'Connect · Billing dashboard';
    replace(main, connectView());
    stopPipeline();
    if (focus) main.querySelector('input')?.focus();
    return;
  }
  startPipeline();
  const { path, query } = parseHash();
  for (const route of routes) {
    const match = path.match(route.pattern);
    if (!match) continue;
    setNav(route.nav);
    document.title = `${route.title} · Billing dashboard`;
    main.replaceChildren();
    const stop = route.view.mount(main, {
      id: match[1],
      query,
      setQuery: (q, opts) => setQuery(path, q, opts),
      setTitle: (t) => { document.title = `${t} · Billing dashboard`; },
      reload: () => render({ focus: true }),
    });
    cleanup = typeof stop === 'function' ? stop : () => {};
    if (focus) main.querySelector('h1')?.focus();
    return;
  }
  setNav('');
  document.title = 'Not found · Billing dashboard';
  replace(main, h('section', { class: 'page' },
    h('h1', { tabindex: '-1' }, 'No such page'),
    h('p', {}, 'The address ', h('code', {}, location.hash), ' does not name a dashboard page. ', h('a', { href: '#/' }, 'Go to the overview'), '.')));
  if (focus) main.querySelector('h1')?.focus();
}

function setNav(current) {
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

// ---------------------------------------------------------------- the key form

function connectView() {
  const error = rejected;
  const input = h('input', {
    id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'api-key-help' + (error ? ' api-key-error' : ''),
    'aria-invalid': error ? 'true' : null,
  });
  const button = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Connect');
  const message = h('div', { id: 'api-key-error', class: 'form-error', role: 'alert', hidden: !error }, error);
  const form = h('form', {
    class: 'connect-form', novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) {
        showError('Paste an API key first.');
        return;
      }
      button.disabled = true;
      button.textContent = 'Checking…';
      try {
        await get('/plans', {}, { key, notify: false });
        storeKey(key);
        rejected = '';
        announce('Connected.');
        render({ focus: true });
      } catch (err) {
        showError(
          err.kind === 'unauthorized' ? 'The API refused this key (401 Unauthorized). Check that it is complete and has not been revoked.'
            : err.kind === 'network' ? 'Cannot reach the billing API. Check that billingd is running, then try again.'
              : err.kind === 'forbidden' ? 'This key may not read (403). Use a key with the read scope or more.'
                : `The API answered with an error: ${err.message}`,
          err.kind);
        button.disabled = false;
        button.textContent = 'Connect';
        input.focus();
      }
    },
  },
  h('label', { for: 'api-key' }, 'API key'),
  h('div', { class: 'input-row' }, input, button),
  h('p', { id: 'api-key-help', class: 'help' },
    'Kept in this browser tab only (session storage) and sent as an ', h('code', {}, 'Authorization: Bearer'), ' header; never put in an address.'),
  message);

  function showError(text, kind = '') {
    message.textContent = text;
    message.dataset.kind = kind;
    message.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', 'api-key-help api-key-error');
  }

  return h('section', { class: 'connect', 'aria-labelledby': 'connect-title' },
    h('h1', { id: 'connect-title', tabindex: '-1' }, 'Connect to the billing API'),
    h('p', { class: 'lead' }, 'Paste an API key to see revenue, subscriptions and their history. A key with the ', h('strong', {}, 'read'), ' scope is enough.'),
    form,
    h('details', { class: 'hint' },
      h('summary', {}, 'Where do I find a key?'),
      h('p', {}, h('code', {}, 'make run'), ' prints one and writes it to ', h('code', {}, '.data/api-key'), '. Make a read-only one with ',
        h('code', {}, 'billingctl apikey create --name finance --scope read'), '.')));
}

onUnauthorized(() => {
  forgetKey();
  rejected = 'The API no longer accepts the key this tab was using (401 Unauthorized). It may have been revoked, or it belongs to another server. Paste a valid key.';
  render({ focus: true });
});

document.getElementById('sign-out').addEventListener('click', () => {
  forgetKey();
  rejected = '';
  announce('The key was forgotten.');
  render({ focus: true });
});

// ---------------------------------------------------------------- the pipeline indicator

let pipelineTimer = 0;
let pipelineRun = 0; // a stopped loop's tick still awaiting an answer must not schedule another
let lastPipelineText = '';

function startPipeline() {
  if (pipelineTimer) return;
  const run = ++pipelineRun;
  const tick = async () => {
    if (!document.hidden) await checkPipeline();
    if (run === pipelineRun) pipelineTimer = setTimeout(tick, PIPELINE_EVERY_MS);
  };
  pipelineTimer = setTimeout(tick, 0);
}

function stopPipeline() {
  pipelineRun += 1;
  clearTimeout(pipelineTimer);
  pipelineTimer = 0;
  document.getElementById('pipeline').hidden = true;
  document.getElementById('lag-banner').hidden = true;
}

async function checkPipeline() {
  const box = document.getElementById('pipeline');
  const banner = document.getElementById('lag-banner');
  let state;
  let text;
  let title = '';
  let bannerText = '';
  try {
    const status = await get('/pipeline/status');
    const behind = status.projectors.reduce((m, p) => Math.max(m, p.lag_events), 0);
    const oldest = status.projectors.reduce((m, p) => Math.max(m, p.lag_seconds), 0);
    const dead = status.projectors.reduce((n, p) => n + p.dead_letters, 0);
    if (behind > 0) {
      state = 'behind';
      text = `${behind} event${behind === 1 ? '' : 's'} behind`;
      // The banner is a live region: it says only what changes rarely (the oldest event's age,
      // which changes on every check, is in the indicator's tooltip and on the Live page).
      bannerText = `The read models are ${behind} event${behind === 1 ? '' : 's'} behind the event store. ` +
        'Lists and revenue figures may not show the latest changes yet; histories and replays are always current.';
    } else {
      state = 'ok';
      text = 'Up to date';
    }
    title = `Event log head: #${status.head_position ?? 0}. ` + (oldest > 0 ? `Oldest waiting event: ${oldest.toFixed(1)} s. ` : '') +
      status.projectors.map((p) => `${p.name}: ${p.lag_events} behind, last applied #${p.last_applied_position ?? '—'}`).join('; ') +
      (dead ? `. ${dead} dead letter${dead === 1 ? '' : 's'}.` : '');
  } catch (err) {
    if (err.kind === 'unauthorized') return;
    if (err.routeMissing) {
      box.hidden = true;
      return;
    }
    state = 'down';
    text = err.kind === 'network' ? 'API unreachable' : 'API trouble';
    bannerText = err.kind === 'network'
      ? 'The billing API is not answering. The dashboard keeps trying every few seconds.'
      : `The pipeline status failed: ${err.message}`;
  }
  box.hidden = false;
  box.dataset.state = state;
  box.title = title;
  if (text !== lastPipelineText) {
    document.getElementById('pipeline-text').textContent = text;
    lastPipelineText = text;
  }
  banner.hidden = !bannerText;
  banner.dataset.state = state;
  if (banner.textContent !== bannerText) banner.textContent = bannerText;
}

// The skip link must not change the hash (the router owns it): it moves focus instead.
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => render({ focus: true }));
render();
