// Overview: revenue now (GET /v1/dashboard/summary), its movements over a chosen range
// (GET /v1/dashboard/mrr) and MRR by plan (GET /v1/dashboard/plans). ARPA, churn rate and NRR
// are the API's own figures (summary.arpa, mrr.churn_rate, mrr.net_revenue_retention), not
// recomputed here, so the page and the API always agree.
import { get } from '../api.js';
import { h, replace } from '../dom.js';
import { money, count, rate, utcDay } from '../format.js';
import { loading, empty, failed } from '../states.js';
import { mrrChart, GAINS, LOSSES } from '../chart.js';

const REFRESH_MS = 15000;

const PRESETS = [
  { id: '30d', label: 'Last 30 days', interval: 'day' },
  { id: '90d', label: 'Last 90 days', interval: 'week' },
  { id: '12m', label: 'Last 12 months', interval: 'month' },
  { id: 'ytd', label: 'Year to date', interval: 'month' },
  { id: 'custom', label: 'Custom range' },
];

const DAY = 86400000;

function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

// serviceNow is the service's clock when it runs a test clock (demo data lives on it), else
// this computer's.
async function serviceNow() {
  try {
    const clock = await get('/test/clock');
    return Date.parse(clock.now);
  } catch {
    return Date.now();
  }
}

// presetRange returns the UTC days [from, to] (both inclusive) of a preset, ending today.
function presetRange(id, now) {
  const today = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate());
  const d = new Date(today);
  switch (id) {
    case '30d': return [today - 29 * DAY, today];
    case '90d': return [today - 89 * DAY, today];
    case 'ytd': return [Date.UTC(d.getUTCFullYear(), 0, 1), today];
    default: return [Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 11, 1), today];
  }
}

export function mount(root, ctx) {
  let stopped = false;
  let destroyChart = () => {};
  let timer = 0;
  let now = Date.now();

  const q = ctx.query;
  const state = {
    range: PRESETS.some((p) => p.id === q.get('range')) ? q.get('range') : '12m',
    from: q.get('from') || '',
    to: q.get('to') || '',
    interval: ['day', 'week', 'month'].includes(q.get('interval')) ? q.get('interval') : '',
    currency: /^[A-Z]{3}$/.test(q.get('currency') || '') ? q.get('currency') : '',
  };

  const heading = h('h1', { tabindex: '-1' }, 'Overview');
  const rangeSelect = h('select', { id: 'range' }, PRESETS.map((p) => h('option', { value: p.id }, p.label)));
  const fromInput = h('input', { type: 'date', id: 'range-from', required: true });
  const toInput = h('input', { type: 'date', id: 'range-to', required: true });
  const intervalSelect = h('select', { id: 'range-interval' },
    [['day', 'Daily'], ['week', 'Weekly'], ['month', 'Monthly']].map(([v, l]) => h('option', { value: v }, l)));
  const currencySelect = h('select', { id: 'range-currency' }, h('option', { value: '' }, 'Main currency'));
  const field = (label, control) => h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
  const controls = h('form', { class: 'toolbar', 'aria-label': 'Range and currency', onsubmit: (e) => e.preventDefault() },
    field('Range', rangeSelect), field('From', fromInput), field('To (inclusive)', toInput),
    field('Interval', intervalSelect), field('Currency', currencySelect));

  const kpis = h('section', { class: 'kpis', 'aria-labelledby': 'kpi-now' });
  const rangeKpis = h('section', { class: 'kpis', 'aria-labelledby': 'kpi-range' });
  const chartCard = h('section', { class: 'card', 'aria-labelledby': 'chart-title' });
  const plansCard = h('section', { class: 'card', 'aria-labelledby': 'plans-title' });
  replace(root, h('div', { class: 'page' },
    h('div', { class: 'page-head' }, heading, h('p', { class: 'muted' }, 'Recurring revenue from the read models.')),
    controls,
    h('h2', { id: 'kpi-now', class: 'section-title' }, 'Now'),
    kpis,
    h('h2', { id: 'kpi-range', class: 'section-title' }, 'In the range'),
    rangeKpis,
    chartCard,
    plansCard));

  function syncControls() {
    rangeSelect.value = state.range;
    const custom = state.range === 'custom';
    if (!custom) {
      const [f, t] = presetRange(state.range, now);
      fromInput.value = isoDay(f);
      toInput.value = isoDay(t);
    } else {
      fromInput.value = state.from;
      toInput.value = state.to;
    }
    intervalSelect.value = state.interval || (PRESETS.find((p) => p.id === state.range).interval ?? 'month');
    currencySelect.value = state.currency;
  }

  function remember() {
    const query = new URLSearchParams();
    if (state.range !== '12m') query.set('range', state.range);
    if (state.range === 'custom') {
      query.set('from', state.from);
      query.set('to', state.to);
    }
    if (state.interval) query.set('interval', state.interval);
    if (state.currency) query.set('currency', state.currency);
    ctx.setQuery(query, { push: false });
  }

  rangeSelect.addEventListener('change', () => {
    state.range = rangeSelect.value;
    if (state.range === 'custom') {
      state.from = fromInput.value;
      state.to = toInput.value;
    } else {
      state.interval = '';
    }
    syncControls();
    remember();
    load();
  });
  for (const input of [fromInput, toInput]) {
    input.addEventListener('change', () => {
      if (!fromInput.value || !toInput.value) return;
      state.range = 'custom';
      state.from = fromInput.value;
      state.to = toInput.value;
      syncControls();
      remember();
      load();
    });
  }
  intervalSelect.addEventListener('change', () => {
    state.interval = intervalSelect.value;
    remember();
    load();
  });
  currencySelect.addEventListener('change', () => {
    state.currency = currencySelect.value;
    remember();
    load();
  });

  function kpi(label, value, { id, raw, note } = {}) {
    return h('div', { class: 'kpi', dataset: id ? { kpi: id } : {} },
      h('p', { class: 'kpi-label' }, label),
      h('p', { class: 'kpi-value', dataset: raw !== undefined ? { value: String(raw) } : {} }, value),
      note ? h('p', { class: 'kpi-note' }, note) : null);
  }

  let loadSeq = 0;
  let lastFingerprint = '';
  async function load({ quiet = false } = {}) {
    const seq = ++loadSeq;
    if (!quiet) {
      replace(kpis, loading('Loading revenue'));
      replace(rangeKpis);
      replace(chartCard, h('h2', { id: 'chart-title' }, 'MRR and its movements'), loading('Loading the chart'));
      replace(plansCard, h('h2', { id: 'plans-title' }, 'MRR by plan'), loading('Loading plans'));
    }
    const from = new Date(fromInput.value + 'T00:00:00Z');
    const to = new Date(Date.parse(toInput.value + 'T00:00:00Z') + DAY);
    const currency = state.currency || undefined;
    let summary;
    let series;
    let byPlan;
    try {
      [summary, series, byPlan] = await Promise.all([
        get('/dashboard/summary', { currency }),
        get('/dashboard/mrr', { from: from.toISOString().replace('.000', ''), to: to.toISOString().replace('.000', ''), interval: intervalSelect.value, currency }),
        get('/dashboard/plans', { currency }),
      ]);
    } catch (err) {
      if (stopped || seq !== loadSeq || err.kind === 'unauthorized') return;
      if (quiet) return; // a failed refresh keeps the figures on screen; the header tells the API is down
      destroyChart();
      destroyChart = () => {};
      replace(kpis, failed(err, () => load()));
      replace(chartCard);
      replace(plansCard);
      return;
    }
    if (stopped || seq !== loadSeq) return;
    const fingerprint = JSON.stringify([summary, series, byPlan]);
    if (quiet && fingerprint === lastFingerprint) return; // nothing changed: keep the chart as it is
    lastFingerprint = fingerprint;
    render(summary, series, byPlan);
  }

  function render(summary, series, byPlan) {
    const c = summary.currency;
    if (!state.currency && currencySelect.options[0].textContent === 'Main currency') {
      currencySelect.options[0].textContent = `Main currency (${c})`;
    }
    replace(kpis,
      kpi('MRR', money(summary.mrr, c), { id: 'mrr', raw: summary.mrr }),
      kpi('ARR', money(summary.arr, c), { id: 'arr', raw: summary.arr }),
      kpi('ARPA', money(summary.arpa, c), { id: 'arpa', raw: summary.arpa, note: `over ${count(summary.customers)} paying customer${summary.customers === 1 ? '' : 's'}` }),
      kpi('Active', count(summary.active_subscriptions), { id: 'active', raw: summary.active_subscriptions }),
      kpi('Trialing', count(summary.trialing_subscriptions), { id: 'trialing', raw: summary.trialing_subscriptions }),
      kpi('Past due', count(summary.past_due_subscriptions), { id: 'past_due', raw: summary.past_due_subscriptions }),
      kpi('Paused', count(summary.paused_subscriptions), { id: 'paused', raw: summary.paused_subscriptions }),
      kpi('Canceled', count(summary.canceled_subscriptions), { id: 'canceled', raw: summary.canceled_subscriptions }));

    const undefinedNote = 'no MRR at the start of the range';
    const net = series.ending_mrr - series.starting_mrr;
    const sum = (key) => series.buckets.reduce((n, b) => n + b[key], 0);
    replace(rangeKpis,
      kpi('Churn rate', rate(series.churn_rate), { id: 'churn_rate', raw: series.churn_rate ?? '', note: series.churn_rate === null ? undefinedNote : `${money(sum('churn'), c)} churned` }),
      kpi('Net revenue retention', rate(series.net_revenue_retention), { id: 'nrr', raw: series.net_revenue_retention ?? '', note: series.net_revenue_retention === null ? undefinedNote : 'customers with MRR at the start' }),
      kpi('Net MRR change', (net > 0 ? '+' : '') + money(net, c), { id: 'net', raw: net, note: `${money(series.starting_mrr, c)} → ${money(series.ending_mrr, c)}` }),
      kpi('New MRR', money(sum('new'), c), { id: 'new', raw: sum('new') }));

    const total = summary.active_subscriptions + summary.trialing_subscriptions + summary.past_due_subscriptions +
      summary.paused_subscriptions + summary.canceled_subscriptions;
    destroyChart();
    destroyChart = () => {};
    if (total === 0 && series.starting_mrr === 0 && series.buckets.every((b) => b.ending_mrr === 0)) {
      const none = empty('No subscriptions yet',
        `Nothing is billed in ${c} yet. Create a subscription through the API (POST /v1/subscriptions, see the README's quick start) and it appears here within a second.`);
      none.dataset.state = 'empty';
      replace(chartCard, h('h2', { id: 'chart-title' }, 'MRR and its movements'), none);
      replace(plansCard, h('h2', { id: 'plans-title' }, 'MRR by plan'), empty('No plans with subscriptions yet'));
      return;
    }

    const plot = h('div', { class: 'chart' });
    replace(chartCard,
      h('div', { class: 'card-head' },
        h('h2', { id: 'chart-title' }, 'MRR and its movements'),
        h('p', { class: 'muted' }, `${utcDay(series.from)} – ${utcDay(new Date(Date.parse(series.to) - 1).toISOString())}, by ${series.interval}, ${c}. Bars: movements (right axis); line: MRR (left axis).`)),
      plot,
      movementsTable(series));
    destroyChart = mrrChart(plot, series);

    replace(plansCard, h('h2', { id: 'plans-title' }, 'MRR by plan'), plansTable(byPlan, summary.mrr));
  }

  function movementsTable(series) {
    const c = series.currency;
    const cols = [...GAINS, ...LOSSES];
    return h('details', { class: 'figures' },
      h('summary', {}, 'Show the figures as a table'),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'table numeric' },
          h('caption', { class: 'visually-hidden' }, 'MRR movements by period'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Period'), h('th', { scope: 'col' }, 'Starting MRR'),
            cols.map((m) => h('th', { scope: 'col' }, m.label)), h('th', { scope: 'col' }, 'Ending MRR'))),
          h('tbody', {}, series.buckets.map((b) => h('tr', {},
            h('th', { scope: 'row' }, utcDay(b.start)),
            h('td', { 'data-label': 'Starting MRR' }, money(b.starting_mrr, c)),
            cols.map((m) => h('td', { 'data-label': m.label }, b[m.key] ? (GAINS.includes(m) ? '+' : '−') + money(b[m.key], c) : '—')),
            h('td', { 'data-label': 'Ending MRR' }, money(b.ending_mrr, c))))))));
  }

  function plansTable(byPlan, totalMRR) {
    const c = byPlan.currency;
    if (byPlan.data.length === 0) return empty('No plans with subscriptions', `No subscription in ${c} is open right now.`);
    return h('div', { class: 'table-wrap' },
      h('table', { class: 'table plans-table' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Plan'), h('th', { scope: 'col', class: 'num' }, 'Subscriptions'), h('th', { scope: 'col', class: 'num' }, 'Seats'),
          h('th', { scope: 'col', class: 'num' }, 'MRR'), h('th', { scope: 'col' }, 'Share of MRR'))),
        h('tbody', {}, byPlan.data.map((p) => {
          const share = totalMRR > 0 ? p.mrr / totalMRR : 0;
          return h('tr', { dataset: { plan: p.plan_id } },
            h('th', { scope: 'row' }, h('a', { href: `#/subscriptions?plan_id=${encodeURIComponent(p.plan_id)}` }, p.plan_id)),
            h('td', { class: 'num', 'data-label': 'Subscriptions' }, count(p.subscriptions)),
            h('td', { class: 'num', 'data-label': 'Seats' }, count(p.seats)),
            h('td', { class: 'num', 'data-label': 'MRR' }, money(p.mrr, c)),
            h('td', { 'data-label': 'Share' }, h('div', { class: 'share' },
              h('span', { class: 'share-bar', 'aria-hidden': 'true' }, h('span', { style: { width: `${(share * 100).toFixed(1)}%` } })),
              h('span', { class: 'share-text' }, rate(share.toFixed(4))))));
        }))));
  }

  (async () => {
    now = await serviceNow();
    if (stopped) return;
    try {
      const plans = await get('/plans');
      const currencies = [...new Set(plans.data.map((p) => p.currency))].sort();
      for (const code of currencies) currencySelect.append(h('option', { value: code }, code));
    } catch {
      // the currency list is a convenience; the summary's own currency still shows
    }
    if (stopped) return;
    syncControls();
    await load();
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) await load({ quiet: true });
      if (!stopped) timer = setTimeout(tick, REFRESH_MS);
    };
    timer = setTimeout(tick, REFRESH_MS);
  })();

  return () => {
    stopped = true;
    clearTimeout(timer);
    destroyChart();
  };
}
