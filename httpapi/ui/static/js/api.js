// The dashboard's only way to the server: the public /v1 API, with the key the user pasted.
// The key lives in sessionStorage (gone when the tab closes) and travels only in the
// Authorization header, never in a URL.

const KEY_STORAGE = 'billing.apiKey';

export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || '';
  } catch {
    return '';
  }
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

// ApiError is every failure a view may have to show. kind is one of:
//   network       the server did not answer (down, or the connection broke)
//   unauthorized  401: the key is missing, wrong or revoked
//   forbidden     403: the key lacks the scope
//   not-found     404; problemType tells a missing resource (/problems/not-found) from a
//                 route this server does not have (/problems/route-not-found)
//   unavailable   503: the database or Redis is unreachable
//   invalid       400 / 422: a parameter was refused; fieldErrors name them
//   server        any other status
export class ApiError extends Error {
  constructor(kind, message, { status = 0, problemType = '', correlationId = '', fieldErrors = [] } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.problemType = problemType;
    this.correlationId = correlationId;
    this.fieldErrors = fieldErrors;
  }

  // routeMissing is true for a 404 that means "this server has no such endpoint (yet)".
  get routeMissing() {
    return this.kind === 'not-found' && this.problemType !== '/problems/not-found' &&
      this.problemType !== '/problems/not-yet-existing';
  }
}

const kindByStatus = { 400: 'invalid', 401: 'unauthorized', 403: 'forbidden', 404: 'not-found', 422: 'invalid', 503: 'unavailable' };

// Listeners told about every 401, so the shell can ask for another key whatever view asked.
const unauthorizedListeners = new Set();
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
}

// get fetches a /v1 path (params: an object of query parameters; undefined and '' are left
// out) and returns the decoded JSON, or throws an ApiError. A 401 is also reported to the
// onUnauthorized listeners unless notify is false (the key form tries keys itself).
export async function get(path, params = {}, { key = storedKey(), signal, notify = true } = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(name, String(value));
  }
  const qs = query.toString();
  const url = '/v1' + path + (qs ? '?' + qs : '');
  let resp;
  try {
    resp = await fetch(url, {
      headers: { Authorization: 'Bearer ' + key, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError('network', 'The billing API did not answer. It may be down or restarting.');
  }
  if (resp.ok) return resp.json();

  let problem = {};
  try {
    problem = await resp.json();
  } catch {
    // not a problem document: a proxy's error page, say
  }
  const kind = kindByStatus[resp.status] || 'server';
  const error = new ApiError(kind, problem.detail || problem.title || `HTTP ${resp.status}`, {
    status: resp.status,
    problemType: problem.type || '',
    correlationId: problem.correlation_id || resp.headers.get('X-Correlation-ID') || '',
    fieldErrors: Array.isArray(problem.errors) ? problem.errors : [],
  });
  if (kind === 'unauthorized' && notify) unauthorizedListeners.forEach((fn) => fn(error));
  return Promise.reject(error);
}
