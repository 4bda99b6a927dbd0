// A small element builder. Text always goes in as text nodes (never innerHTML), so nothing
// from the API can become markup; styles are set through CSSOM, which the Content-Security-
// Policy allows (it refuses style attributes).

// h(tag, props, ...children): props are attributes, except
//   class     a string or an array of strings (falsy entries skipped)
//   on<Event> an event listener (onclick, oninput…)
//   dataset   an object of data-* values
//   style     an object of CSS properties (CSSOM)
//   props set on the element itself: value, checked, disabled, hidden, selected, open
// Children may be strings, numbers, nodes, arrays of those, or null/false (skipped).
export function h(tag, props = {}, ...children) {
  const el = tag === 'svg' || tag === 'path'
    ? document.createElementNS('http://www.w3.org/2000/svg', tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') {
      const names = Array.isArray(value) ? value.filter(Boolean) : [value];
      if (names.length) el.setAttribute('class', names.join(' '));
    } else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (name === 'style') {
      for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    } else if (['value', 'checked', 'disabled', 'hidden', 'selected', 'open'].includes(name)) {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

// replace empties el and fills it with children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// announce reads a message out to screen readers (the page's polite live region).
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A tick later, so that the same message twice is announced twice.
  setTimeout(() => { region.textContent = message; }, 50);
}

let ids = 0;
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}
