// Small helpers every view uses: escaping, ages against the server's clock, badges.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe to put in HTML (everything from a store is data, never markup). */
export const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);

// Server clock minus this browser's, from the "now" of each API answer:
// ages are computed on the server's clock, so a wrong PC clock cannot hide a dead store.
let skewMs = 0;

/** Remember the server's time from an answer's `now`. */
export function setServerNow(iso) {
  const t = Date.parse(iso);
  if (!Number.isNaN(t)) skewMs = t - Date.now();
}

/** Milliseconds since the epoch, on the server's clock. */
export const serverNow = () => Date.now() + skewMs;

/** "42 s", "5 min", "3 h 2 min", "2 d 4 h". */
export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h} h ${Math.round((s - h * 3600) / 60)} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** Seconds from an ISO time to now (server clock); null for no time. */
export function ageOf(iso) {
  const t = Date.parse(iso ?? '');
  return Number.isNaN(t) ? null : (serverNow() - t) / 1000;
}

/** A <time> that `tick()` keeps current: "for 5 min". */
export function since(iso, prefix = '') {
  if (!iso) return '<span class="muted">–</span>';
  return `<time data-t="${esc(iso)}" data-p="${esc(prefix)}" title="${esc(iso)}">${esc(prefix)}${duration(ageOf(iso))}</time>`;
}

/** Refresh every age shown under `root`. */
export function tick(root) {
  for (const el of root.querySelectorAll('time[data-t]')) {
    const text = el.dataset.p + duration(ageOf(el.dataset.t));
    if (el.textContent !== text) el.textContent = text;
  }
}

/** A state badge: online, busy, starting, offline, error, unknown. */
export const badge = (state) => `<span class="state ${esc(state)}">${esc(state)}</span>`;

/** "1 store", "2 stores", "0 stores" (the count is formatted like `num`). */
export const plural = (n, word, many = `${word}s`) => `${num(n)} ${Number(n) === 1 ? word : many}`;

/** A number, or a dash. */
export const num = (n, digits = 0) => (n == null ? '–' : Number(n).toLocaleString('en', { maximumFractionDigits: digits }));

/** A local clock time for timeline tooltips. */
export const clock = (iso) => (iso ? new Date(iso).toLocaleString('en-GB', { hour12: false }) : 'now');

const SEVERITY = { critical: 3, warning: 2, info: 1 };

/** Worst severity first, then newest. */
export function byUrgency(a, b) {
  return (SEVERITY[b.severity] || 0) - (SEVERITY[a.severity] || 0) || String(b.raised_at).localeCompare(String(a.raised_at));
}

/** The rank of a severity (critical highest). */
export const severityRank = (s) => SEVERITY[s] || 0;
