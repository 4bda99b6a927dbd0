// Live: the event pipeline's state (GET /v1/pipeline/status) and the events committed since the
// page opened (GET /v1/events from the log's head, polled), newest first.
import { get } from '../api.js';
import { h, replace, announce } from '../dom.js';
import { count, when, shortId, eventTitle } from '../format.js';
import { loading, empty, failed, notAvailable } from '../states.js';

const POLL_MS = 2500;
const KEEP = 200; // events kept on screen

export function mount(root) {
  let stopped = false;
  let timer = 0;
  let cursor = null; // GET /v1/events after_position; null until the head is known
  let shown = 0;

  const statusCard = h('section', { class: 'card', 'aria-labelledby': 'pipe-title' }, h('h2', { id: 'pipe-title' }, 'Pipeline'), loading());
  const feed = h('ol', { class: 'feed', 'aria-label': 'Events, newest first' });
  const feedState = h('div', {}, loading('Finding the head of the log'));
  const feedCard = h('section', { class: 'card card-wide', 'aria-labelledby': 'feed-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'feed-title' }, 'Events since you opened this page'),
      h('p', { class: 'muted' }, `Checked every ${POLL_MS / 1000} seconds, in the log's order.`)),
    feedState, feed);
  replace(root, h('div', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, 'Live'),
      h('p', { class: 'muted' }, 'Commands append events; the relay publishes them to Redis and projectors apply them to the read models.')),
    h('div', { class: 'grid' }, statusCard, feedCard)));

  function renderStatus(status) {
    replace(statusCard, h('h2', { id: 'pipe-title' }, 'Pipeline'),
      h('dl', { class: 'facts' },
        h('div', {}, h('dt', {}, 'Head of the log'), h('dd', { class: 'mono' }, status.head_position === null ? 'empty' : `#${status.head_position}`)),
        h('div', {}, h('dt', {}, 'Not yet published'), h('dd', {}, `${count(status.relay_lag_events)} event${status.relay_lag_events === 1 ? '' : 's'}`))),
      h('div', { class: 'table-wrap' }, h('table', { class: 'table projectors' },
        h('caption', {}, 'Projectors'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Read model'), h('th', { scope: 'col', class: 'num' }, 'Behind'),
          h('th', { scope: 'col', class: 'num' }, 'Oldest waiting'), h('th', { scope: 'col', class: 'num' }, 'Last applied'),
          h('th', { scope: 'col', class: 'num' }, 'Dead letters'))),
        h('tbody', {}, status.projectors.map((p) => h('tr', { class: p.lag_events > 0 ? 'lagging' : null, dataset: { projector: p.name } },
          h('th', { scope: 'row' }, p.name),
          h('td', { class: 'num', 'data-label': 'Behind' }, `${count(p.lag_events)} event${p.lag_events === 1 ? '' : 's'}`),
          h('td', { class: 'num', 'data-label': 'Oldest waiting' }, p.lag_seconds > 0 ? `${p.lag_seconds.toFixed(1)} s` : '—'),
          h('td', { class: 'num mono', 'data-label': 'Last applied' }, p.last_applied_position === null ? '—' : `#${p.last_applied_position}`),
          h('td', { class: 'num', 'data-label': 'Dead letters' }, count(p.dead_letters))))))));
  }

  function eventItem(e) {
    const m = e.metadata || {};
    const isSub = e.stream_type === 'subscription';
    return h('li', { class: ['event', 'is-new'], dataset: { position: String(e.global_position), type: e.type } },
      h('div', { class: 'event-head' },
        h('span', { class: 'event-version mono' }, `#${e.global_position}`),
        h('h3', { class: 'event-title' }, eventTitle(e.type)),
        h('time', { datetime: e.occurred_at, class: 'muted' }, when(e.occurred_at))),
      h('p', { class: 'event-summary' },
        isSub ? h('a', { href: `#/subscriptions/${e.stream_id}` }, `Subscription ${shortId(e.stream_id)}`) : `${e.stream_type} ${shortId(e.stream_id)}`,
        ` · version ${e.version} · by ${m.actor || 'unknown'}`,
        m.correlation_id ? [' · correlation ', h('span', { class: 'mono' }, m.correlation_id)] : null));
  }

  async function tick() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const status = await get('/pipeline/status');
        if (stopped) return;
        renderStatus(status);
        if (cursor === null) {
          cursor = status.head_position ?? 0;
          replace(feedState, empty('Waiting for new events', 'Run a command (create, upgrade, pause…) and its events appear here.'));
        }
      } catch (err) {
        if (stopped || err.kind === 'unauthorized') return;
        if (err.routeMissing) {
          replace(statusCard, h('h2', { id: 'pipe-title' }, 'Pipeline'),
            notAvailable('Pipeline status is not available', 'This server has no GET /v1/pipeline/status.'));
          if (cursor === null) cursor = 0;
        } else {
          replace(statusCard, h('h2', { id: 'pipe-title' }, 'Pipeline'), failed(err));
        }
      }
      if (cursor !== null) {
        try {
          const page = await get('/events', { after_position: cursor, limit: 100 });
          if (stopped) return;
          cursor = page.next_after_position;
          if (page.data.length) {
            feedState.replaceChildren();
            for (const e of page.data) feed.prepend(eventItem(e));
            shown += page.data.length;
            while (feed.children.length > KEEP) feed.lastElementChild.remove();
            announce(`${page.data.length} new event${page.data.length === 1 ? '' : 's'}.`);
          }
        } catch (err) {
          if (stopped || err.kind === 'unauthorized') return;
          if (!shown) replace(feedState, failed(err));
        }
      }
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }
  tick();

  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
