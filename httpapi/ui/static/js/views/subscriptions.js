// Subscriptions: GET /v1/subscriptions with its filters (customer_id, status, plan_id), paged
// with its cursor (starting_after = next_starting_after). The API pages forward only, so the
// view remembers the cursors it came through to offer "Previous".
import { get } from '../api.js';
import { h, replace, announce } from '../dom.js';
import { money, count, day, shortId, statusLabel } from '../format.js';
import { loading, empty, failed } from '../states.js';

export const STATUSES = ['trialing', 'active', 'past_due', 'paused', 'unpaid', 'canceled'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CUSTOMER = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const PAGE_SIZES = [20, 50, 100];

// Cursors survive leaving the page and coming back (within the tab): filter key → cursor stack.
const cursorStacks = new Map();

export function statusBadge(status) {
  return h('span', { class: ['badge', `badge-${status}`] }, statusLabel(status));
}

export function mount(root, ctx) {
  let stopped = false;
  const q = ctx.query;
  const state = {
    search: q.get('customer_id') || '',
    status: STATUSES.includes(q.get('status')) ? q.get('status') : '',
    plan: q.get('plan_id') || '',
    limit: PAGE_SIZES.includes(Number(q.get('limit'))) ? Number(q.get('limit')) : 20,
    after: UUID.test(q.get('starting_after') || '') ? q.get('starting_after') : '',
  };

  const searchInput = h('input', {
    type: 'search', id: 'filter-customer', value: state.search, autocomplete: 'off', spellcheck: 'false',
    placeholder: 'cus_acme or a subscription id', 'aria-describedby': 'search-help',
  });
  const searchError = h('p', { id: 'search-error', class: 'form-error', role: 'alert', hidden: true });
  const statusSelect = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'All statuses'),
    STATUSES.map((s) => h('option', { value: s }, statusLabel(s))));
  const planSelect = h('select', { id: 'filter-plan' }, h('option', { value: '' }, 'All plans'));
  const limitSelect = h('select', { id: 'filter-limit' }, PAGE_SIZES.map((n) => h('option', { value: String(n) }, `${n} per page`)));
  statusSelect.value = state.status;
  limitSelect.value = String(state.limit);
  if (state.plan) planSelect.append(h('option', { value: state.plan }, state.plan));
  planSelect.value = state.plan;

  const field = (label, control, extra) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control, extra);
  const form = h('form', {
    class: 'toolbar', role: 'search', 'aria-label': 'Filter subscriptions',
    onsubmit: (event) => {
      event.preventDefault();
      const text = searchInput.value.trim();
      if (UUID.test(text)) {
        location.hash = `#/subscriptions/${text.toLowerCase()}`;
        return;
      }
      if (text && !CUSTOMER.test(text)) {
        searchError.textContent = 'A customer id is 1–128 letters, digits, _ . : or -, starting with a letter or digit; a subscription id is a UUID.';
        searchError.hidden = false;
        searchInput.setAttribute('aria-invalid', 'true');
        searchInput.focus();
        return;
      }
      searchError.hidden = true;
      searchInput.removeAttribute('aria-invalid');
      state.search = text;
      restart();
    },
  },
  h('div', { class: 'field field-grow' },
    h('label', { for: searchInput.id }, 'Customer or subscription ID'),
    h('div', { class: 'input-row' }, searchInput, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Search')),
    h('p', { id: 'search-help', class: 'help' }, 'A customer id filters the list (exact match); a subscription id opens it.'),
    searchError),
  field('Status', statusSelect),
  field('Plan', planSelect),
  field('Page size', limitSelect));

  statusSelect.addEventListener('change', () => { state.status = statusSelect.value; restart(); });
  planSelect.addEventListener('change', () => { state.plan = planSelect.value; restart(); });
  limitSelect.addEventListener('change', () => { state.limit = Number(limitSelect.value); restart(); });

  const results = h('div', { class: 'results' });
  replace(root, h('div', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, 'Subscriptions'),
      h('p', { class: 'muted' }, 'From the subscriptions read model; open one for its history.')),
    form,
    results));

  const filterKey = () => JSON.stringify([state.search, state.status, state.plan, state.limit]);
  const cursors = () => {
    if (!cursorStacks.has(filterKey())) cursorStacks.set(filterKey(), []);
    return cursorStacks.get(filterKey());
  };

  function remember() {
    const query = new URLSearchParams();
    if (state.search) query.set('customer_id', state.search);
    if (state.status) query.set('status', state.status);
    if (state.plan) query.set('plan_id', state.plan);
    if (state.limit !== 20) query.set('limit', String(state.limit));
    if (state.after) query.set('starting_after', state.after);
    ctx.setQuery(query);
  }

  function restart() {
    state.after = '';
    cursorStacks.set(filterKey(), []);
    remember();
    load();
  }

  function filtered() {
    return state.search || state.status || state.plan;
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    replace(results, loading('Loading subscriptions'));
    let page;
    try {
      page = await get('/subscriptions', {
        customer_id: state.search, status: state.status, plan_id: state.plan, limit: state.limit, starting_after: state.after,
      });
    } catch (err) {
      if (stopped || mine !== seq || err.kind === 'unauthorized') return;
      replace(results, failed(err, load));
      return;
    }
    if (stopped || mine !== seq) return;
    render(page);
  }

  function render(page) {
    const stack = cursors();
    const pageNumber = stack.length + 1;
    if (page.data.length === 0) {
      if (state.after) {
        replace(results, empty('No more subscriptions', 'This page is past the end of the list.',
          h('button', { type: 'button', class: 'btn', onclick: firstPage }, 'First page')));
      } else if (filtered()) {
        replace(results, empty('No subscription matches these filters', 'Try another customer, status or plan.',
          h('button', { type: 'button', class: 'btn', onclick: clearFilters }, 'Clear filters')));
      } else {
        const none = empty('No subscriptions yet', 'Create one through the API (POST /v1/subscriptions); it appears here within a second.');
        none.dataset.state = 'empty';
        replace(results, none);
      }
      announce('No subscriptions shown.');
      return;
    }
    const rows = page.data.map((s) => {
      const href = `#/subscriptions/${s.id}`;
      return h('tr', {
        class: 'row-link', dataset: { id: s.id },
        onclick: (event) => {
          if (event.target.closest('a, button') || getSelection().toString()) return;
          location.hash = href;
        },
      },
      h('th', { scope: 'row', 'data-label': 'Subscription' }, h('a', { href, class: 'mono', title: s.id }, shortId(s.id))),
      h('td', { 'data-label': 'Customer' }, s.customer_id),
      h('td', { 'data-label': 'Plan' }, s.plan_id),
      h('td', { 'data-label': 'Status' }, statusBadge(s.status), s.cancel_at_period_end ? h('span', { class: 'tag' }, 'cancels at period end') : null),
      h('td', { class: 'num', 'data-label': 'Seats' }, count(s.seats)),
      h('td', { class: 'num', 'data-label': 'MRR' }, money(s.mrr, s.currency)),
      h('td', { 'data-label': 'Period ends' }, day(s.current_period_end)),
      h('td', { 'data-label': 'Updated' }, day(s.updated_at)));
    });
    const prev = h('button', { type: 'button', class: 'btn', disabled: stack.length === 0 && !state.after, onclick: previousPage }, '← Previous');
    const next = h('button', { type: 'button', class: 'btn', disabled: !page.has_more, onclick: () => nextPage(page.next_starting_after) }, 'Next →');
    replace(results,
      h('div', { class: 'table-wrap' },
        h('table', { class: 'table subs-table' },
          h('caption', { class: 'visually-hidden' }, `Subscriptions, page ${pageNumber}`),
          h('thead', {}, h('tr', {},
            ['Subscription', 'Customer', 'Plan', 'Status'].map((c) => h('th', { scope: 'col' }, c)),
            h('th', { scope: 'col', class: 'num' }, 'Seats'), h('th', { scope: 'col', class: 'num' }, 'MRR'),
            h('th', { scope: 'col' }, 'Period ends'), h('th', { scope: 'col' }, 'Updated'))),
          h('tbody', {}, rows))),
      h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, h('span', { class: 'muted' }, `Page ${pageNumber} · ${page.data.length} shown`), next));
    announce(`Page ${pageNumber}: ${page.data.length} subscription${page.data.length === 1 ? '' : 's'}.`);
  }

  function nextPage(cursor) {
    cursors().push(state.after);
    state.after = cursor;
    remember();
    load();
  }

  function previousPage() {
    const stack = cursors();
    state.after = stack.length ? stack.pop() : '';
    remember();
    load();
  }

  function firstPage() {
    cursorStacks.set(filterKey(), []);
    state.after = '';
    remember();
    load();
  }

  function clearFilters() {
    state.search = '';
    state.status = '';
    state.plan = '';
    searchInput.value = '';
    statusSelect.value = '';
    planSelect.value = '';
    restart();
  }

  (async () => {
    try {
      const plans = await get('/plans');
      if (stopped) return;
      for (const p of plans.data) {
        if (p.id !== state.plan) planSelect.append(h('option', { value: p.id }, `${p.name} (${p.id})`));
      }
      planSelect.value = state.plan;
    } catch {
      // without the catalog the plan filter offers what the address named; the list still loads
    }
  })();
  load();

  return () => { stopped = true; };
}
