// Small DOM helpers shared by the screens. Text goes in with textContent only: nothing the agent
// sends (product names, notes typed at a kiosk) is ever read as HTML.

export const $ = (id) => document.getElementById(id);

/** An element with attributes/properties and children (strings become text). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Shows a message under a screen; kind 'error' or 'ok' colours it. */
export function say(id, text, kind = '') {
  const node = $(id);
  node.textContent = text || '';
  node.className = `msg ${kind}`.trim();
  // An answer to what the thumb just did must be seen: bring it up above the tab bar if it is below it.
  if (text && kind) node.scrollIntoView({ block: 'nearest' });
}

export function money(amount, currency = '') {
  if (amount === null || amount === undefined) return '–';
  const n = Number(amount);
  return `${currency ? currency + ' ' : ''}${Number.isFinite(n) ? n.toFixed(2) : amount}`;
}

/** "3 min ago", "just now" for an ISO time. */
export function ago(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

/** HH:MM of an ISO time, in the PAD's time zone. */
export function clock(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
}

/** A button that shows "…" and is disabled while fn runs; errors go to onError. */
export function busy(button, fn, onError) {
  return async (...args) => {
    if (button.disabled) return;
    button.disabled = true;
    button.classList.add('busy');
    try {
      await fn(...args);
    } catch (err) {
      onError(err);
    } finally {
      button.disabled = false;
      button.classList.remove('busy');
    }
  };
}

/** A short buzz on a PAD that can (a new help request, a new order). */
export function buzz(pattern = [120, 60, 120]) {
  if (navigator.vibrate) navigator.vibrate(pattern);
}
