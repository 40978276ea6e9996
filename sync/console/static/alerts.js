// Alerts: the table of live alerts with the staff's buttons, and a store's device alerts.

import { byUrgency, esc, since } from './util.js';

function stateCell(a) {
  if (a.state === 'resolved') return `resolved by ${esc(a.resolved_by)} ${since(a.resolved_at)} ago`;
  const took = a.state === 'acknowledged' ? `taken by <b>${esc(a.acked_by)}</b>` : '<b>open</b>';
  const cleared = a.cleared_at ? ` · <span class="ok">cause cleared ${since(a.cleared_at)} ago</span>` : '';
  return took + cleared;
}

// Rules whose cause never clears by itself (a stream conflict): staff resolve those once they have looked.
let resolvableRules = new Set();

/** Remember which rules' alerts may be resolved while their cause is there (from /meta). */
export function setRules(rules) {
  resolvableRules = new Set((rules || []).filter((r) => r.resolve_while_present).map((r) => r.id));
}

function buttons(a, canAct) {
  if (!canAct || a.state === 'resolved') return '';
  const ack = a.state === 'open' ? `<button type="button" data-act="ack" data-alert="${esc(a.id)}">Acknowledge</button>` : '';
  // Resolving is for a cause that has cleared: until then the button would only be refused.
  const res = a.cleared_at || resolvableRules.has(a.rule)
    ? `<button type="button" data-act="resolve" data-alert="${esc(a.id)}">Resolve</button>` : '';
  return ack + res;
}

/**
 * Alerts as a table, most urgent first. `canAct`: the hub (staff acknowledge and resolve);
 * on the agent the alerts are the rules' view of the store, read-only.
 */
export function alertsTable(alerts, { canAct, showStore, empty = 'No open alerts.', limit = Infinity }) {
  const all = [...alerts].sort(byUrgency);
  if (!all.length) return `<p class="muted empty-alerts">${esc(empty)}</p>`;
  const list = all.slice(0, limit);
  const more = all.length > list.length
    ? `<p class="muted">… and ${all.length - list.length} more on the <a href="#/alerts">Alerts</a> page.</p>` : '';
  const head = `<tr><th>Severity</th>${showStore ? '<th>Store</th>' : ''}<th>Alert</th><th>Since</th><th>State</th><th></th></tr>`;
  const body = list.map((a) => `<tr class="alert ${esc(a.state)}" data-alert="${esc(a.id)}" data-rule="${esc(a.rule)}" data-subject="${esc(a.subject)}">`
    + `<td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td>`
    + (showStore ? `<td><a href="#/store/${encodeURIComponent(a.store)}">${esc(a.store)}</a></td>` : '')
    + `<td><b>${esc(a.title)}</b><div class="muted small">${esc(a.detail)}</div></td>`
    + `<td>${since(a.since)}</td><td>${stateCell(a)}</td><td class="actions">${buttons(a, canAct)}</td></tr>`).join('');
  return `<table class="grid alerts"><thead>${head}</thead><tbody>${body}</tbody></table>${more}`;
}

/** The store's own alerts (retail.device.alert), raised and cleared. */
export function deviceAlertsTable(rows) {
  if (!rows || !rows.length) return '<p class="muted">None reported.</p>';
  const who = (r) => (r.subject && r.subject !== r.device ? `${r.device}/${r.subject}` : r.device);
  const body = rows.map((r) => `<tr><td>${esc(who(r))}</td><td><code>${esc(r.code)}</code></td>`
    + `<td><span class="state ${r.state === 'raised' ? 'error' : 'online'}">${esc(r.state)}</span></td>`
    + `<td>${esc(r.severity || '')}</td><td>${esc(r.message || '')}</td><td>${since(r.time)}</td></tr>`).join('');
  return `<table class="grid"><thead><tr><th>Device</th><th>Code</th><th>State</th><th>Severity</th><th>Message</th>`
    + `<th>When</th></tr></thead><tbody>${body}</tbody></table>`;
}
