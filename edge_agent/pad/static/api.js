// Talking to the agent: the PAD's token, JSON calls, and the live feed.
// The token came from pairing (POST /v1/pair). It is the one thing this app keeps (localStorage, so a PAD
// stays paired through a restart); it travels in the Authorization header only, never in a URL.

const KEY = 'pad-token';

export const token = () => localStorage.getItem(KEY);
export const setToken = (t) => localStorage.setItem(KEY, t);
export const forget = () => localStorage.removeItem(KEY);

/** An answer that is not 2xx: its status, the agent's words, and Retry-After (s) when given. */
export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// What an answer without readable words means.
const WORDS = {
  0: 'The store\'s system cannot be reached: check the Wi-Fi, then try again.',
  401: 'This PAD is not paired (or its pairing was removed).',
  403: 'This PAD may not do that.',
  429: 'Too many tries: wait a moment.',
  503: 'The store\'s system is busy for a moment: try again.',
};

let onUnpaired = () => {};
/** Called with the reason when the agent refuses the token (401): the app goes back to pairing. */
export function whenUnpaired(fn) { onUnpaired = fn; }

/**
 * A JSON call; resolves to {data, headers}. Throws ApiError; a 401 also calls the unpaired handler.
 * `auth: false` sends no token (pairing).
 */
export async function call(method, path, body, { auth = true } = {}) {
  const headers = {};
  if (auth) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                              cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  } catch {
    throw new ApiError(0, WORDS[0]);
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = typeof data.detail === 'string' && data.detail ? data.detail : '';
    const retry = Number(res.headers.get('Retry-After')) || null;
    const err = new ApiError(res.status, detail || WORDS[res.status] || `The store's system said ${res.status}.`, retry);
    if (res.status === 401 && auth) onUnpaired(detail);
    throw err;
  }
  return { data, headers: res.headers };
}

export const get = async (path) => (await call('GET', path)).data;
export const post = async (path, body = {}) => (await call('POST', path, body)).data;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The live feed (WS /v1/events). A browser cannot set a header on a WebSocket and a token in a URL ends up
 * in logs: each (re)connect first gets a one-use ticket (POST /v1/tickets, good for 30 s) and the URL carries
 * that. A reconnect asks for what it missed (since, epoch); onReload() is called when the app must reload
 * what it shows (the first hello, a new epoch: the agent restarted, or missed events).
 * onEvent(msg); onState('live' | 'reconnecting'). Returns a function that stops it.
 */
export function liveFeed(onEvent, onState, onReload) {
  let stopped = false;
  let ws = null;
  let lastId = null;
  let epoch = null;
  (async () => {
    let backoff = 1000;
    while (!stopped) {
      let code = 0;
      try {
        const { ticket } = await post('/v1/tickets', { for: 'events' });
        const url = new URL('/v1/events', location.href);
        url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
        url.searchParams.set('ticket', ticket);
        if (lastId !== null && epoch !== null) {
          url.searchParams.set('since', String(lastId));
          url.searchParams.set('epoch', epoch);
        }
        code = await new Promise((resolve) => {
          ws = new WebSocket(url);
          ws.onmessage = (m) => {
            let msg;
            try { msg = JSON.parse(m.data); } catch { return; }
            if (msg.type === 'hello') {
              const fresh = epoch === null || msg.epoch !== epoch || msg.missed || !msg.resumed;
              epoch = msg.epoch;
              lastId = msg.last_id;
              backoff = 1000;
              onState('live');
              if (fresh) onReload();
              return;
            }
            if (typeof msg.id === 'number') lastId = msg.id;
            onEvent(msg);
          };
          ws.onclose = (e) => resolve(e.code);
        });
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return;  // unpaired: the app shows pairing
      }
      if (stopped) return;
      if (code === 4403) { onState('refused'); return; }
      // 4401 here is a ticket spent before the socket opened (a refused token is a 401 above); 4408: too slow.
      onState('reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  })();
  return () => { stopped = true; if (ws) ws.close(); };
}

/** A random (version 4) UUID: an idempotency key (crypto.randomUUID needs a secure context; this does not). */
export function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
