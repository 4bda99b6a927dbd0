// The MRR chart, drawn by uPlot (vendored, loaded as the global uPlot by index.html): MRR at
// the end of each bucket as a line on the left axis, and each bucket's movements as stacked
// bars on the right axis, gains (new, expansion, reactivation) above zero and losses
// (contraction, churn) below.
import { h } from './dom.js';
import { major, money, compactMajor, utcDay } from './format.js';

// The movements in stacking order, from the zero line outwards.
export const GAINS = [
  { key: 'new', label: 'New', color: '--c-new' },
  { key: 'expansion', label: 'Expansion', color: '--c-expansion' },
  { key: 'reactivation', label: 'Reactivation', color: '--c-reactivation' },
];
export const LOSSES = [
  { key: 'contraction', label: 'Contraction', color: '--c-contraction' },
  { key: 'churn', label: 'Churn', color: '--c-churn' },
];

function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

// mrrChart draws the series into container and follows its width. It returns destroy().
export function mrrChart(container, series) {
  const uPlot = globalThis.uPlot;
  if (!uPlot) {
    container.append(h('p', { class: 'muted' }, 'The chart library did not load; the figures are in the table below.'));
    return () => {};
  }
  const { currency, buckets } = series;
  const xs = buckets.map((b) => Date.parse(b.start) / 1000);

  // uPlot draws bars from zero, one series over the other, so stacking is drawn as running
  // totals, the outermost first: each later series covers the part of the bar that is its
  // inner neighbours'. Legend and tooltips show each movement's own amount (raw), not the total.
  const raw = [];
  const data = [xs];
  const seriesOpts = [{ value: (u, ts, si, idx) => (idx == null ? '—' : utcDay(buckets[idx].start)) }];
  const stack = (group, sign) => {
    const totals = group.map((_, i) => buckets.map((b) => group.slice(0, i + 1).reduce((sum, m) => sum + b[m.key], 0)));
    for (let i = group.length - 1; i >= 0; i -= 1) {
      const m = group[i];
      data.push(totals[i].map((v) => sign * major(v, currency)));
      raw.push(buckets.map((b) => sign * b[m.key]));
      const color = cssColor(m.color);
      seriesOpts.push({
        label: m.label, scale: 'mov', fill: color, stroke: color, width: 0,
        paths: uPlot.paths.bars({ size: [0.6, 48] }), points: { show: false },
        value: valueOf(raw.length - 1),
      });
    }
  };
  const valueOf = (r) => (u, v, si, idx) => (idx == null ? '—' : money(raw[r][idx], currency));
  stack(GAINS, 1);
  stack(LOSSES, -1);
  data.push(buckets.map((b) => major(b.ending_mrr, currency)));
  raw.push(buckets.map((b) => b.ending_mrr));
  const line = cssColor('--c-mrr');
  seriesOpts.push({ label: 'MRR (end of period)', scale: 'mrr', stroke: line, width: 2, points: { show: true, size: 5, fill: line }, value: valueOf(raw.length - 1) });

  const axisColor = cssColor('--text-muted');
  const gridColor = cssColor('--border');
  const moneyTicks = (u, values) => values.map((v) => compactMajor(v, currency));
  const opts = {
    width: Math.max(280, container.clientWidth),
    height: container.clientWidth < 500 ? 240 : 320,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
    scales: {
      x: { time: true, range: (u, min, max) => padRange(min, max, xs) },
      mrr: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
      mov: { range: (u, min, max) => symmetric(min, max) },
    },
    axes: [
      { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor } },
      { scale: 'mrr', stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor }, values: moneyTicks, size: 64 },
      { scale: 'mov', side: 1, stroke: axisColor, grid: { show: false }, ticks: { stroke: gridColor }, values: moneyTicks, size: 64 },
    ],
    series: seriesOpts,
    legend: { live: true },
    cursor: { points: { size: 7 } },
  };
  const plot = new uPlot(opts, data, container);
  // The legend lists series in drawing order; show it in reading order instead: the time, MRR,
  // then the movements from the zero line outwards (rows keep their live values when moved).
  const rows = [...container.querySelectorAll('.u-legend tr')];
  if (rows.length === seriesOpts.length) {
    const gains = GAINS.length;
    const order = [0, rows.length - 1, ...[...Array(gains).keys()].map((i) => gains - i),
      ...[...Array(LOSSES.length).keys()].map((i) => gains + LOSSES.length - i)];
    const body = rows[0].parentNode;
    for (const i of order) body.append(rows[i]);
  }
  const canvas = container.querySelector('canvas');
  if (canvas) {
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', 'Chart of MRR and its movements; the same figures are in the table below it.');
  }
  const resize = new ResizeObserver(() => {
    const width = Math.max(280, container.clientWidth);
    if (Math.abs(width - plot.width) > 2) plot.setSize({ width, height: width < 500 ? 240 : 320 });
  });
  resize.observe(container);
  return () => {
    resize.disconnect();
    plot.destroy();
  };
}

// padRange leaves half a bucket on each side so the first and last bars are not cut.
function padRange(min, max, xs) {
  if (xs.length < 2) return [min - 86400 * 15, max + 86400 * 15];
  const step = Math.min(...xs.slice(1).map((x, i) => x - xs[i]));
  return [min - step / 2, max + step / 2];
}

// symmetric keeps zero in the middle third at least, so gains and losses are comparable.
function symmetric(min, max) {
  const m = Math.max(Math.abs(min), Math.abs(max), 1) * 1.15;
  return [Math.min(min * 1.15, -m / 3), Math.max(max * 1.15, m / 3)];
}
