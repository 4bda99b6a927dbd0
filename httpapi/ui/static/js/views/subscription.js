// One subscription: its current state (GET /v1/subscriptions/{id}?consistent=true, folded from
// the events so it is never behind), its invoices and its customer's entitlements, and its audit
// trail (GET …/events) with a version slider that replays the state at each point
// (GET …/replay?version=N) and highlights what that event changed (GET …/diff). New events are
// polled for and appear without a reload.
import { get } from '../api.js';
import { h, replace, uid, announce } from '../dom.js';
import { money, count, when, day, shortId, eventTitle, statusLabel } from '../format.js';
import { loading, empty, failed, notAvailable } from '../states.js';
import { statusBadge } from './subscriptions.js';

const POLL_MS = 3000;

// The fields of a Subscription in the order people read them; fields the API adds later are
// shown after these, under their JSON names.
const FIELDS = [
  ['plan_id', 'Plan'], ['seats', 'Seats'], ['status', 'Status'], ['mrr', 'MRR'], ['unit_amount', 'Unit price'],
  ['interval', 'Billing interval'], ['currency', 'Currency'], ['current_period_start', 'Period start'],
  ['current_period_end', 'Period end'], ['trial_end', 'Trial ends'], ['cancel_at_period_end', 'Cancels at period end'],
  ['canceled_at', 'Canceled at'], ['paused_at', 'Paused at'], ['scheduled_change', 'Scheduled change'],
  ['features', 'Features'], ['payment_method', 'Payment method'], ['customer_id', 'Customer'], ['version', 'Version'], ['created_at', 'Created'],
  ['updated_at', 'Updated'],
];
const HIDDEN = new Set(['id']);
// Fields every event moves; highlighting them would only hide what the event changed.
const BOOKKEEPING = new Set(['version', 'updated_at']);

function fieldLabel(name) {
  const known = FIELDS.find(([f]) => f === name);
  return known ? known[1] : name.replace(/_/g, ' ');
}

// fieldText renders one field's value (s is the whole subscription, for its currency).
function fieldText(name, value, s) {
  if (value === null || value === undefined) return '—';
  if (name === 'mrr' || name === 'unit_amount') return money(value, s.currency);
  if (name === 'status') return statusLabel(value);
  if (typeof value === 'boolean') return value ? 'Yes' : 'No';
  if (Array.isArray(value)) return value.length ? value.join(', ') : 'none';
  if (name === 'scheduled_change') {
    return `${value.plan_id} × ${count(value.seats)} from ${day(value.effective_at)}`;
  }
  if (typeof value === 'string' && /^\d{4}-\d\d-\d\dT/.test(value)) return when(value);
  if (typeof value === 'number') return count(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// eventSummary says in a line what an event's data changed, for the known shapes; other
// events show their data in full below it.
function eventSummary(e) {
  const d = e.data || {};
  const plan = (p) => (p && p.plan_id) || '';
  switch (e.type) {
    case 'subscription.created':
      return `${plan(d.plan)} × ${d.seats}, ${statusLabel(d.status)}`;
    case 'subscription.plan_changed':
      return `${plan(d.from_plan)} × ${d.from_seats} → ${plan(d.plan)} × ${d.seats}` + (d.direction ? ` (${d.direction})` : '');
    case 'subscription.plan_change_scheduled':
      return `${plan(d.plan)} × ${d.seats} from ${day(d.effective_at)}`;
    case 'subscription.seats_changed':
      return `${d.from_seats} → ${d.seats} seats`;
    case 'subscription.cancellation_scheduled':
      return `cancels on ${day(d.cancel_at)}`;
    case 'subscription.canceled':
      return d.reason ? `reason: ${d.reason}` : '';
    default:
      return '';
  }
}

export function mount(root, ctx) {
  const id = ctx.id.toLowerCase();
  let stopped = false;
  let pollTimer = 0;
  let replayTimer = 0;

  let current = null; // the subscription now
  let events = []; // its history, in version order
  let selected = 0; // the version the replay shows
  let following = true; // the slider follows new events while it is at the latest version
  const wanted = Number(ctx.query.get('version')) || 0;

  const title = h('h1', { tabindex: '-1' }, `Subscription ${shortId(id)}`);
  const headBadge = h('span', { class: 'head-badge' });
  const subtitle = h('p', { class: 'muted subtitle' });
  const stateCard = h('section', { class: 'card', 'aria-labelledby': 'state-title' }, h('h2', { id: 'state-title' }, 'Current state'), loading());
  const entCard = h('section', { class: 'card', 'aria-labelledby': 'ent-title', dataset: { panel: 'entitlements' } }, h('h2', { id: 'ent-title' }, 'Entitlements'), loading());
  const invCard = h('section', { class: 'card card-wide', 'aria-labelledby': 'inv-title', dataset: { panel: 'invoices' } }, h('h2', { id: 'inv-title' }, 'Invoices'), loading());
  const historyCard = h('section', { class: 'card card-wide', 'aria-labelledby': 'history-title' }, h('h2', { id: 'history-title' }, 'History'), loading('Loading the history'));
  const liveNote = h('p', { class: 'live-note', id: 'live-note' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), 'Watching for new events');

  replace(root, h('div', { class: 'page' },
    h('nav', { 'aria-label': 'Breadcrumb', class: 'breadcrumb' },
      h('ol', {}, h('li', {}, h('a', { href: '#/subscriptions' }, 'Subscriptions')), h('li', { 'aria-current': 'page' }, shortId(id)))),
    h('div', { class: 'page-head' }, h('div', { class: 'title-row' }, title, headBadge), subtitle, liveNote),
    h('div', { class: 'grid' }, stateCard, entCard, invCard, historyCard)));
  ctx.setTitle(`Subscription ${shortId(id)}`);

  // ------------------------------------------------------------ current state

  function renderCurrent() {
    const s = current;
    replace(headBadge, statusBadge(s.status));
    replace(subtitle, 'Customer ', h('a', { href: `#/subscriptions?customer_id=${encodeURIComponent(s.customer_id)}` }, s.customer_id),
      ' · ', h('span', { class: 'mono' }, s.id));
    const rows = [
      ['Plan', s.plan_id], ['Seats', count(s.seats)], ['MRR', money(s.mrr, s.currency)],
      ['Price', `${money(s.unit_amount, s.currency)} per seat per ${s.interval}`],
      ['Current period', `${day(s.current_period_start)} – ${day(s.current_period_end)}`],
      s.trial_end ? ['Trial ends', when(s.trial_end)] : null,
      s.cancel_at_period_end ? ['Cancels', `at the period end, ${day(s.current_period_end)}`] : null,
      s.canceled_at ? ['Canceled', when(s.canceled_at)] : null,
      s.paused_at ? ['Paused', when(s.paused_at)] : null,
      s.scheduled_change ? ['Scheduled change', fieldText('scheduled_change', s.scheduled_change, s)] : null,
      'payment_method' in s ? ['Payment method', s.payment_method || 'none'] : null,
      ['Events', count(s.version)], ['Created', when(s.created_at)], ['Updated', when(s.updated_at)],
    ].filter(Boolean);
    replace(stateCard, h('h2', { id: 'state-title' }, 'Current state'),
      h('dl', { class: 'facts', dataset: { current: '' } }, rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))));
  }

  // ------------------------------------------------------------ invoices and entitlements

  async function loadInvoices() {
    try {
      const list = await get(`/subscriptions/${id}/invoices`);
      if (stopped) return;
      const invoices = list.data || [];
      if (invoices.length === 0) {
        replace(invCard, h('h2', { id: 'inv-title' }, 'Invoices'), empty('No invoices yet', 'Invoices appear here as the subscription is billed.'));
        return;
      }
      replace(invCard, h('h2', { id: 'inv-title' }, 'Invoices'), invoiceTable(invoices));
    } catch (err) {
      if (stopped || err.kind === 'unauthorized') return;
      let body;
      if (err.routeMissing) {
        body = notAvailable('Invoices are not available on this server yet',
          'This version of the API has no GET /v1/subscriptions/{id}/invoices. Invoices will show here once it does.');
      } else if (err.kind === 'not-found') {
        body = empty('No invoices', 'The API has no invoices for this subscription.');
      } else {
        body = failed(err, loadInvoices);
      }
      replace(invCard, h('h2', { id: 'inv-title' }, 'Invoices'), body);
    }
  }

  function invoiceTable(invoices) {
    return h('div', { class: 'table-wrap' }, h('table', { class: 'table invoices-table' },
      h('thead', {}, h('tr', {}, ['Number', 'Status', 'Period', 'Created', 'Paid'].map((c) => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col', class: 'num' }, 'Total'))),
      h('tbody', {}, invoices.map((inv) => h('tr', { dataset: { invoice: inv.id } },
        h('th', { scope: 'row', 'data-label': 'Number' },
          h('details', { class: 'invoice-lines' },
            h('summary', {}, h('span', { class: 'mono' }, inv.number)),
            linesTable(inv))),
        h('td', { 'data-label': 'Status' }, h('span', { class: ['badge', `badge-inv-${inv.status}`] }, inv.status), inv.reason ? h('span', { class: 'tag' }, inv.reason) : null),
        h('td', { 'data-label': 'Period' }, `${day(inv.period_start)} – ${day(inv.period_end)}`),
        h('td', { 'data-label': 'Created' }, when(inv.created_at)),
        h('td', { 'data-label': 'Paid' }, inv.paid_at ? when(inv.paid_at) : (inv.attempts ? `not yet (${inv.attempts} attempt${inv.attempts === 1 ? '' : 's'})` : 'not yet')),
        h('td', { class: 'num', 'data-label': 'Total' }, money(inv.total, inv.currency)))))));
  }

  function linesTable(inv) {
    const c = inv.currency;
    return h('table', { class: 'table lines' },
      h('caption', {}, `Lines of ${inv.number}`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Description'), h('th', { scope: 'col', class: 'num' }, 'Qty'),
        h('th', { scope: 'col', class: 'num' }, 'Unit'), h('th', { scope: 'col', class: 'num' }, 'Amount'))),
      h('tbody', {}, (inv.lines || []).map((l) => h('tr', {},
        h('td', {}, l.description, l.proration ? h('span', { class: 'tag' }, 'proration') : null),
        h('td', { class: 'num' }, count(l.quantity)), h('td', { class: 'num' }, money(l.unit_amount, c)), h('td', { class: 'num' }, money(l.amount, c))))),
      h('tfoot', {},
        h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Subtotal'), h('td', { class: 'num' }, money(inv.subtotal, c))),
        inv.credit_applied ? h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Credit applied'), h('td', { class: 'num' }, '−' + money(inv.credit_applied, c))) : null,
        h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Total'), h('td', { class: 'num' }, money(inv.total, c)))));
  }

  async function loadEntitlements() {
    if (!current) return;
    try {
      const ent = await get(`/customers/${encodeURIComponent(current.customer_id)}/entitlements`);
      if (stopped) return;
      const own = new Set(((ent.subscriptions || []).find((s) => s.subscription_id === id) || {}).features || []);
      const features = ent.features || [];
      replace(entCard, h('h2', { id: 'ent-title' }, 'Entitlements'),
        h('p', { class: 'muted' }, `What customer ${ent.customer_id} may use now, from all its subscriptions.`),
        features.length
          ? h('ul', { class: 'chips', 'aria-label': 'Features' }, features.map((f) => h('li', { class: ['chip', own.has(f) && 'chip-own'] }, f,
            own.has(f) ? h('span', { class: 'visually-hidden' }, ' (from this subscription)') : null)))
          : empty('No features', 'None of the customer\'s subscriptions grants a feature right now.'),
        (ent.subscriptions || []).length > 1 ? h('ul', { class: 'plain-list' }, ent.subscriptions.map((s) => h('li', {},
          h('a', { href: `#/subscriptions/${s.subscription_id}`, class: 'mono' }, shortId(s.subscription_id)), ` ${s.plan_id} · `, statusBadge(s.status),
          ` · ${(s.features || []).length} feature${(s.features || []).length === 1 ? '' : 's'}`))) : null);
    } catch (err) {
      if (stopped || err.kind === 'unauthorized') return;
      let body;
      if (err.routeMissing) {
        body = notAvailable('Entitlements are not available on this server yet',
          'This version of the API has no GET /v1/customers/{id}/entitlements. The plan\'s features are listed under History meanwhile.');
      } else if (err.kind === 'not-found') {
        body = empty('No entitlements', 'The API knows no entitlements for this customer.');
      } else {
        body = failed(err, loadEntitlements);
      }
      replace(entCard, h('h2', { id: 'ent-title' }, 'Entitlements'), body);
    }
  }

  // ------------------------------------------------------------ history and replay

  const slider = h('input', { type: 'range', id: 'replay-version', min: '1', max: '1', step: '1', value: '1', 'aria-describedby': 'replay-caption' });
  const prevBtn = h('button', { type: 'button', class: 'btn btn-icon', 'aria-label': 'Previous version', onclick: () => step(-1) }, '‹');
  const nextBtn = h('button', { type: 'button', class: 'btn btn-icon', 'aria-label': 'Next version', onclick: () => step(1) }, '›');
  const latestBtn = h('button', { type: 'button', class: 'btn', onclick: () => select(events.length, { announceIt: true }) }, 'Latest');
  const caption = h('p', { id: 'replay-caption', class: 'replay-caption', 'aria-live': 'polite' });
  const replayBody = h('div', { class: 'replay-body', dataset: { replay: '' } });
  const timeline = h('ol', { class: 'timeline', id: uid('timeline'), 'aria-label': 'Events, newest first' });

  slider.addEventListener('input', () => {
    select(Number(slider.value), { fromSlider: true });
  });

  function step(delta) {
    const v = Math.min(events.length, Math.max(1, selected + delta));
    if (v !== selected) select(v, { announceIt: true });
  }

  function describe(v) {
    const e = events[v - 1];
    return e ? `Version ${v} of ${events.length}: ${eventTitle(e.type)}, ${when(e.occurred_at)}` : '';
  }

  // select shows version v: at once the caption and the timeline, and after a short pause (the
  // slider may be moving) the replayed state.
  function select(v, { fromSlider = false, announceIt = false } = {}) {
    selected = v;
    following = v === events.length;
    slider.value = String(v);
    slider.setAttribute('aria-valuetext', describe(v));
    prevBtn.disabled = v <= 1;
    nextBtn.disabled = v >= events.length;
    latestBtn.disabled = following;
    caption.textContent = describe(v);
    for (const li of timeline.children) {
      if (Number(li.dataset.version) === v) li.setAttribute('aria-current', 'step');
      else li.removeAttribute('aria-current');
    }
    const query = new URLSearchParams();
    if (!following) query.set('version', String(v));
    ctx.setQuery(query, { push: false });
    if (announceIt) announce(describe(v));
    clearTimeout(replayTimer);
    replayTimer = setTimeout(() => replay(v), fromSlider ? 150 : 0);
  }

  let replaySeq = 0;
  async function replay(v) {
    const mine = ++replaySeq;
    replayBody.setAttribute('aria-busy', 'true');
    try {
      const [at, diff] = await Promise.all([
        get(`/subscriptions/${id}/replay`, { version: v }),
        v > 1 ? get(`/subscriptions/${id}/diff`, { from_version: v - 1, to_version: v }) : Promise.resolve(null),
      ]);
      if (stopped || mine !== replaySeq) return;
      renderReplay(v, at, diff);
    } catch (err) {
      if (stopped || mine !== replaySeq || err.kind === 'unauthorized') return;
      replace(replayBody, failed(err, () => replay(v)));
    } finally {
      if (mine === replaySeq) replayBody.removeAttribute('aria-busy');
    }
  }

  function renderReplay(v, at, diff) {
    const s = at.subscription;
    const changes = new Map((diff ? diff.changes : []).filter((c) => !BOOKKEEPING.has(c.field) && !HIDDEN.has(c.field)).map((c) => [c.field, c]));
    const names = [...FIELDS.map(([f]) => f).filter((f) => f in s), ...Object.keys(s).filter((f) => !FIELDS.some(([k]) => k === f))]
      .filter((f) => !HIDDEN.has(f));
    const e = events[v - 1];
    const changedCount = changes.size;
    replace(replayBody,
      h('p', { class: 'replay-summary' },
        v === 1 ? 'The subscription as it was created.'
          : `${eventTitle(e ? e.type : '')}: ${changedCount === 0 ? 'no field' : changedCount === 1 ? '1 field' : `${changedCount} fields`} changed` +
            (changedCount ? ', highlighted below with their values before.' : '.')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'table state-table', dataset: { version: String(at.version) } },
        h('caption', { class: 'visually-hidden' }, `State at version ${at.version}`),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, `At version ${at.version}`), h('th', { scope: 'col' }, 'Before'))),
        h('tbody', {}, names.map((f) => {
          const change = changes.get(f);
          return h('tr', { class: change ? 'changed' : null, dataset: { field: f, changed: change ? 'true' : 'false' } },
            h('th', { scope: 'row' }, fieldLabel(f), change ? h('span', { class: 'changed-mark' }, ' changed') : null),
            h('td', { class: 'value' }, fieldText(f, s[f], s)),
            h('td', { class: 'before' }, change ? fieldText(f, change.from, s) : ''));
        })))));
  }

  function eventItem(e, isNew = false) {
    const m = e.metadata || {};
    const summary = eventSummary(e);
    return h('li', { class: ['event', isNew && 'is-new'], dataset: { version: String(e.version), type: e.type }, id: `event-v${e.version}` },
      h('div', { class: 'event-head' },
        h('span', { class: 'event-version' }, `v${e.version}`),
        h('h3', { class: 'event-title' }, eventTitle(e.type)),
        h('time', { datetime: e.occurred_at, class: 'muted' }, when(e.occurred_at))),
      summary ? h('p', { class: 'event-summary' }, summary) : null,
      h('dl', { class: 'event-meta' },
        h('div', {}, h('dt', {}, 'Actor'), h('dd', {}, m.actor || '—')),
        h('div', {}, h('dt', {}, 'Correlation id'), h('dd', { class: 'mono' }, m.correlation_id || '—')),
        m.source ? h('div', {}, h('dt', {}, 'Source'), h('dd', {}, m.source)) : null),
      h('div', { class: 'event-actions' },
        h('button', { type: 'button', class: 'btn btn-small', onclick: () => select(e.version, { announceIt: true }) }, 'Show state after this event'),
        h('details', {}, h('summary', {}, 'Event data'), h('pre', { class: 'json' }, JSON.stringify(e.data, null, 2)))));
  }

  function renderHistory() {
    slider.max = String(events.length);
    replace(historyCard,
      h('div', { class: 'card-head' }, h('h2', { id: 'history-title' }, 'History'),
        h('p', { class: 'muted' }, 'Every event, read from the event store. Move the slider to see the subscription as it was after each one.')),
      h('div', { class: 'replay' },
        h('div', { class: 'replay-controls' },
          h('label', { for: 'replay-version' }, 'Version'),
          prevBtn, slider, nextBtn, latestBtn),
        caption,
        replayBody),
      h('h3', { class: 'section-title' }, 'Timeline'),
      timeline);
    replace(timeline, [...events].reverse().map((e) => eventItem(e)));
  }

  async function loadEvents(after) {
    const out = [];
    let cursor = after;
    for (;;) {
      const page = await get(`/subscriptions/${id}/events`, { after_version: cursor, limit: 1000 });
      out.push(...page.data);
      if (!page.has_more) return out;
      cursor = page.next_after_version;
    }
  }

  // ------------------------------------------------------------ loading and polling

  async function start() {
    try {
      [current, events] = await Promise.all([
        get(`/subscriptions/${id}`, { consistent: 'true' }),
        loadEvents(0),
      ]);
    } catch (err) {
      if (stopped || err.kind === 'unauthorized') return;
      liveNote.hidden = true;
      const body = err.kind === 'not-found'
        ? empty('No such subscription', `No subscription has the id ${id}.`, h('a', { href: '#/subscriptions', class: 'btn' }, 'Back to the list'))
        : failed(err, ctx.reload);
      replace(root.querySelector('.grid'), h('section', { class: 'card card-wide' }, body));
      return;
    }
    if (stopped) return;
    renderCurrent();
    renderHistory();
    const v = wanted >= 1 && wanted <= events.length ? wanted : events.length;
    select(v);
    loadInvoices();
    loadEntitlements();
    pollTimer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const fresh = await loadEvents(events.length);
        if (stopped) return;
        liveNote.dataset.state = 'ok';
        if (fresh.length) {
          const wasFollowing = following;
          events.push(...fresh);
          current = await get(`/subscriptions/${id}`, { consistent: 'true' });
          if (stopped) return;
          slider.max = String(events.length);
          for (const e of fresh) timeline.prepend(eventItem(e, true));
          renderCurrent();
          select(wasFollowing ? events.length : selected);
          announce(`New event${fresh.length === 1 ? '' : 's'}: ${fresh.map((e) => eventTitle(e.type)).join(', ')}.`);
          loadInvoices();
          loadEntitlements();
        }
      } catch (err) {
        if (stopped || err.kind === 'unauthorized') return;
        liveNote.dataset.state = 'down';
      }
    }
    if (!stopped) pollTimer = setTimeout(poll, POLL_MS);
  }

  start();

  return () => {
    stopped = true;
    clearTimeout(pollTimer);
    clearTimeout(replayTimer);
  };
}
