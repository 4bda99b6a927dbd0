// Formatting of the API's values for people. Money arrives in integer minor units with an ISO
// 4217 currency; the currency's own number of decimals (2 for USD, 0 for JPY) comes from Intl.

const digitsCache = new Map();

// minorDigits is how many decimals a currency's minor unit has.
export function minorDigits(currency) {
  if (!digitsCache.has(currency)) {
    let digits = 2;
    try {
      digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
    } catch {
      // an unknown code: keep 2
    }
    digitsCache.set(currency, digits);
  }
  return digitsCache.get(currency);
}

// major converts minor units to a number of major units (for charts; not for sums).
export function major(amount, currency) {
  return amount / 10 ** minorDigits(currency);
}

// money formats minor units exactly: the integer is split into whole and fractional digits as
// a string, so large amounts never go through floating point.
export function money(amount, currency) {
  if (amount === null || amount === undefined) return '—';
  const digits = minorDigits(currency);
  const negative = amount < 0;
  const abs = BigInt(Math.abs(amount));
  const scale = 10n ** BigInt(digits);
  const whole = abs / scale;
  const frac = abs % scale;
  const parts = new Intl.NumberFormat(undefined, { style: 'currency', currency, minimumFractionDigits: digits, maximumFractionDigits: digits })
    .formatToParts(0);
  const wholeText = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 }).format(whole);
  const out = parts.map((p) => {
    switch (p.type) {
      case 'integer': return wholeText;
      case 'group': return '';
      case 'fraction': return frac.toString().padStart(digits, '0');
      default: return p.value;
    }
  }).join('');
  return negative ? '−' + out : out;
}

// compactMajor is for chart axes: a number of major units as $12.5K.
export function compactMajor(value, currency) {
  return new Intl.NumberFormat(undefined, { style: 'currency', currency, notation: 'compact', maximumFractionDigits: 1 })
    .format(value);
}

export function count(n) {
  return new Intl.NumberFormat().format(n);
}

// rate formats the API's four-decimal ratio strings ("0.0525") as a percentage; null is "—".
export function rate(value) {
  if (value === null || value === undefined) return '—';
  return new Intl.NumberFormat(undefined, { style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 2 })
    .format(Number(value));
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const dateUTC = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });

export function when(iso) {
  return iso ? dateTime.format(new Date(iso)) : '—';
}

export function day(iso) {
  return iso ? dateOnly.format(new Date(iso)) : '—';
}

// utcDay is for bucket boundaries, which are UTC midnights.
export function utcDay(iso) {
  return iso ? dateUTC.format(new Date(iso)) : '—';
}

// ago says how long ago a time was, roughly.
export function ago(iso, now = Date.now()) {
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(-seconds, 'second');
  if (abs < 3600) return rtf.format(-Math.round(seconds / 60), 'minute');
  if (abs < 86400) return rtf.format(-Math.round(seconds / 3600), 'hour');
  return rtf.format(-Math.round(seconds / 86400), 'day');
}

// shortId names a subscription in little space. Subscription ids are UUIDv7, whose first
// digits are a timestamp shared by ids made close together; the last ones are random.
export function shortId(id) {
  return id ? id.slice(-8) : '';
}

// eventTitle turns "subscription.plan_changed" into "Plan changed".
export function eventTitle(type) {
  const name = type.includes('.') ? type.slice(type.indexOf('.') + 1) : type;
  const words = name.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function statusLabel(status) {
  return (status || '').replace(/_/g, ' ');
}
