// Talking to the server: the token, JSON calls, and the live feed (SSE on the hub, WebSocket on the agent).
// The token travels in the Authorization header only, never in a URL.

const KEY = 'edge-console-token';

export const cfg = { mode: document.body.dataset.mode, api: document.body.dataset.api };

/** The token of this tab, or null. */
export const token = () => sessionStorage.getItem(KEY);
export const setToken = (t) => sessionStorage.setItem(KEY, t);
export const clearToken = () => sessionStorage.removeItem(KEY);

/** The server refused the token: the page asks for another. */
export class Unauthorized extends Error {}

/**
 * A JSON call to the console API; throws Unauthorized on 401 and Error(detail) on any other failure
 * (with `status`, and `body`: the answer as sent, e.g. a 422's list of `errors`).
 */
export const call = (path, options = {}) => request(cfg.api + path, options);

/** A JSON call to the agent's own local API (`/v1/...`, same origin, same token): the agent's console only. */
export const callAgent = (path, options = {}) => request(path, options);

async function request(url, options) {
  const res = await fetch(url, {
    ...options,
    headers: { Authorization: `Bearer ${token()}`, 'Content-Type': 'application/json', ...(options.headers || {}) },
  });
  if (res.status === 401) throw new Unauthorized('unknown token');
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail ?? body);
    const err = new Error(detail || `HTTP ${res.status}`);
    err.status = res.status;
    err.body = body;
    throw err;
  }
  return body;
}

/** POST a JSON body. */
export const post = (path, body = {}) => call(path, { method: 'POST', body: JSON.stringify(body) });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The hub's live stream. EventSource cannot send an Authorization header, so the
 * stream is read with fetch and parsed here; reconnects with backoff.
 * onEvent(name, data); onState('live' | 'reconnecting' | 'unauthorized').
 */
export async function liveHub(onEvent, onState) {
  let backoff = 1000;
  for (;;) {
    try {
      const res = await fetch(`${cfg.api}/stream`, {
        headers: { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' },
        cache: 'no-store',
      });
      if (res.status === 401) { onState('unauthorized'); return; }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      onState('live');
      backoff = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let name = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (data) onEvent(name, JSON.parse(data));
        }
      }
    } catch (err) {
      console.warn('live stream:', err);
    }
    onState('reconnecting');
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 15000);
  }
}

/**
 * The agent's live feed (WS /v1/events, the same one kiosks and wristbands use).
 * A browser cannot set headers on a WebSocket and a token in a URL ends up in logs,
 * so each (re)connect first gets a one-use ticket (POST /v1/tickets, good for 30 s)
 * with the bearer header, and the URL carries that.
 */
export async function liveAgent(onEvent, onState) {
  let backoff = 1000;
  for (;;) {
    let code = 0;
    try {
      const res = await fetch('/v1/tickets', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token()}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ for: 'events' }),
        cache: 'no-store',
      });
      if (res.status === 401 || res.status === 403) { onState('unauthorized'); return; }
      if (!res.ok) throw new Error(`ticket: HTTP ${res.status}`);
      const { ticket } = await res.json();
      const url = new URL('/v1/events', location.href);
      url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
      url.searchParams.set('ticket', ticket);
      code = await new Promise((resolve) => {
        const ws = new WebSocket(url);
        ws.onmessage = (m) => {
          const msg = JSON.parse(m.data);
          if (msg.type === 'hello') { onState('live'); backoff = 1000; }
          onEvent(msg.type, msg);
        };
        ws.onclose = (e) => resolve(e.code);
      });
    } catch (err) {
      console.warn('live feed:', err);
    }
    if (code === 4403) { onState('unauthorized'); return; }
    // 4401 here is a ticket that expired before the socket opened (a token refused is a 401 above): retry.
    onState('reconnecting');
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 15000);
  }
}
