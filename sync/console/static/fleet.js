// The fleet view: one row per store (its release and devices.yaml version with drift among the columns), a filter,
// totals. Built for a thousand stores: one innerHTML for the first paint, then only the rows that changed are replaced.

import { ageOf, badge, duration, esc, num, plural, since, severityRank } from './util.js';

const rows = new Map(); // store id -> { tr, hay, problem }
const MAX_CHIPS = 3;

/** "online", "offline", "unknown", or "silent" (online but no snapshot for stale_after_s). */
export function presence(s, meta) {
  if (s.presence === 'online' && s.health_at && ageOf(s.health_at) > meta.stale_after_s) return 'silent';
  return s.presence || 'unknown';
}

function chip(d) {
  const why = d.last_error ? `: ${d.last_error}` : '';
  return `<span class="chip ${esc(d.state)}" title="${esc(`${d.id} (${d.kind || '?'}) ${d.state}${why}`)}">`
    + `${esc(d.id)} ${esc(d.state)} ${since(d.since)}</span>`;
}

/** Labels wrong past their grace (older agents report only `non_compliant`, in their grace or not). */
export function labelsWrong(l) {
  if (!l) return 0;
  return l.past_grace != null ? l.past_grace : l.non_compliant || 0;
}

function labelsCell(l) {
  if (!l || l.non_compliant == null) return '<span class="muted">–</span>';
  const wrong = labelsWrong(l);
  if (wrong) {
    const since = l.past_grace != null ? l.oldest_past_grace_since : l.oldest_non_compliant_since;
    return `<span class="bad" title="oldest since ${esc(since || '?')}">${num(wrong)} wrong</span>`;
  }
  if (l.non_compliant) return `<span title="a price changed: the labels are being updated">${num(l.non_compliant)} updating</span>`;
  return `<span class="ok">${num(l.labels)} ok</span>`;
}

function printingCell(p) {
  if (!p) return '<span class="muted">–</span>';
  const bad = p.failed || p.waiting;
  const text = `${num(p.queued)} queued` + (p.waiting ? `, ${num(p.waiting)} waiting` : '') + (p.failed ? `, ${num(p.failed)} failed` : '');
  return `<span class="${bad ? 'bad' : ''}">${text}</span>`;
}

function clockCell(off) {
  if (off == null) return '<span class="muted">–</span>';
  return `<span class="${Math.abs(off) > 5 ? 'bad' : ''}">${off > 0 ? '+' : ''}${num(off, 1)} s</span>`;
}

// The states of a store's devices.yaml (sync/console/facts.py CONFIG_STATES) other than "applied", in words.
const CONFIG_STATES = { refused: 'refused', rolled_back: 'rolled back', restart_required: 'restart pending' };

/** The config's state in words when it is not plain "applied", else ''. */
export const configState = (c) => (c && c.state && c.state !== 'applied' ? CONFIG_STATES[c.state] || c.state : '');

/** "v3", "own file" (version 0: the store's own devices.yaml, never sent by the hub). */
export const configVersion = (c) => (c.version == null ? '?' : c.version === 0 ? 'own file' : `v${c.version}`);

/**
 * The hub's newest version of a store's devices.yaml when the store does not run it (``h``: the hub's side, from
 * GET /api/fleet's ``configs``): its state as the store answered ("refused", "rolled back", "restart pending"), or
 * "pending" before any answer. Null when the store runs it, said it applied it, or the hub pushed none.
 */
export function hubConfig(c, h) {
  if (!h || h.desired == null || (c && c.version === h.desired)) return null;
  if (h.answered !== h.desired || !h.state) return { version: h.desired, state: 'pending', word: 'pending' };
  if (h.state === 'applied') return null; // the next snapshot names it
  return { version: h.desired, state: h.state, word: CONFIG_STATES[h.state] || h.state };
}

/** A config drifted, or not applied as sent (pending is on its way: not a problem). */
export function configTrouble(c, h) {
  const hub = hubConfig(c, h);
  return Boolean((c && (c.drift || configState(c))) || (hub && hub.state !== 'pending'));
}

function configCell(c, h) {
  const hub = hubConfig(c, h);
  if (!c && !hub) return '<span class="muted" title="this agent does not report its config">–</span>';
  // The hub's word names the version it is about; else the state of the version in force.
  const state = hub ? '' : configState(c);
  return (c ? `<span class="cfg-version">${esc(configVersion(c))}</span>` : '<span class="muted">?</span>')
    + (c && c.drift ? ` <span class="state drift" title="${esc(`the file was edited at the store${c.drift_since
      ? `; seen since ${c.drift_since}` : ''}`)}">drift</span>` : '')
    + (state ? ` <span class="state cfg-${esc(c.state)}">${esc(state)}</span>` : '')
    + (hub ? ` <span class="state cfg-${esc(hub.state)}" title="the hub's newest version">v${esc(hub.version)} `
      + `${esc(hub.word)}</span>` : '');
}

function alertsCell(a) {
  if (!a || !a.n) return '<span class="muted">0</span>';
  return `<span class="sev ${esc(a.worst)}">${a.n}</span>`;
}

/** Open identity issues the hub noticed (absent from an older hub): a badge, the problems on hover. */
function identityBadge(s) {
  const n = s.identity ? s.identity.open : 0;
  if (!n) return '';
  const why = s.identity.issues.map((i) => `${i.problem} (${i.subject})`).join('\n');
  return ` <span class="state error identity" title="${esc(why)}">${n === 1 ? esc(s.identity.issues[0].problem) : `${n} identity issues`}</span>`;
}

/** The store's own verdict when it is not ok: a badge, its reasons on hover. */
function degraded(s) {
  if (s.status !== 'degraded') return '';
  const why = (s.reasons || []).map((r) => r.message || r.code).join('\n');
  return ` <span class="state error degraded" title="${esc(why)}">degraded</span>`;
}

function rowHTML(s, state) {
  const pres = presence(s, state.meta);
  const d = s.devices || {};
  const ok = (d.online || 0) + (d.busy || 0);
  const chips = s.problems.slice(0, MAX_CHIPS).map(chip).join(' ')
    + (s.problems.length > MAX_CHIPS ? ` <span class="muted">+${s.problems.length - MAX_CHIPS} more</span>` : '');
  return `<td><a href="#/store/${encodeURIComponent(s.store)}">${esc(s.store)}</a>${identityBadge(s)}</td>`
    + `<td>${badge(pres)} ${since(s.presence_since)}${degraded(s)}</td>`
    + `<td class="devices"><span class="${ok < d.total ? 'bad' : 'ok'}">${ok}/${d.total}</span> ${chips}</td>`
    + `<td class="n outbox">${num(s.outbox_depth)}${s.over_budget ? ' <span class="state error">over budget</span>' : ''}</td>`
    + `<td class="n">${s.oldest_unacked_age_s ? duration(s.oldest_unacked_age_s) : '–'}</td>`
    + `<td>${labelsCell(s.labels)}</td><td>${printingCell(s.printing)}</td><td class="n">${clockCell(s.clock_offset_s)}</td>`
    // After the columns bench/bench_console.py reads by position (the outbox is the fourth).
    + `<td class="release">${esc(s.version || '–')}</td><td class="config">${configCell(s.config, state.configs.get(s.store))}</td>`
    + `<td>${alertsCell(state.alertsByStore.get(s.store))}</td><td>${since(s.health_at)}</td>`;
}

function describe(s, state) {
  const pres = presence(s, state.meta);
  const a = state.alertsByStore.get(s.store);
  const problem = pres !== 'online' || s.problems.length > 0 || (a && a.n > 0)
    || labelsWrong(s.labels) > 0 || (s.printing && (s.printing.failed || s.printing.waiting)) || s.over_budget
    || s.status === 'degraded' || (s.identity && s.identity.open > 0) || configTrouble(s.config, state.configs.get(s.store));
  const c = s.config;
  const hub = hubConfig(c, state.configs.get(s.store));
  const cfg = [...(c ? ['config', configVersion(c), c.drift && 'drift', c.state, configState(c)] : []),
    ...(hub ? ['config', `v${hub.version}`, hub.state, hub.word] : [])];
  const hay = [s.store, pres, s.version, s.status, ...cfg,
    ...s.problems.flatMap((p) => [p.id, p.kind, p.state, p.last_error]),
    ...(s.reasons || []).map((r) => r.code), ...((s.identity && s.identity.issues) || []).map((i) => i.code)]
    .filter(Boolean).join(' ').toLowerCase();
  return { hay, problem };
}

function totalsHTML(state) {
  const t = { stores: 0, online: 0, offline: 0, silent: 0, unknown: 0, identity: 0, drift: 0, config: 0, pending: 0 };
  const releases = new Map();
  const dev = { total: 0, online: 0, busy: 0, starting: 0, offline: 0, error: 0 };
  for (const s of state.stores.values()) {
    t.stores += 1;
    t[presence(s, state.meta)] += 1;
    if (s.identity && s.identity.open > 0) t.identity += 1;
    if (s.config && s.config.drift) t.drift += 1;
    const hub = hubConfig(s.config, state.configs.get(s.store));
    if (hub && hub.state === 'pending') t.pending += 1;
    else if (hub || configState(s.config)) t.config += 1;
    if (s.version) releases.set(s.version, (releases.get(s.version) || 0) + 1);
    for (const k of Object.keys(dev)) dev[k] += s.devices[k] || 0;
  }
  const sev = { critical: 0, warning: 0, info: 0 };
  for (const a of state.alerts.values()) if (a.state !== 'resolved') sev[a.severity] = (sev[a.severity] || 0) + 1;
  return `<span><b>${plural(t.stores, 'store')}</b>: ${badge('online')} ${t.online} ${badge('offline')} ${t.offline}`
    + ` ${badge('silent')} ${t.silent}${t.unknown ? ` ${badge('unknown')} ${t.unknown}` : ''}</span>`
    + `<span><b>${plural(dev.total, 'device')}</b>: ${badge('online')} ${dev.online + dev.busy} ${badge('starting')} ${dev.starting}`
    + ` ${badge('offline')} ${dev.offline} ${badge('error')} ${dev.error}</span>`
    + `<span>alerts: <span class="sev critical">${sev.critical}</span> critical <span class="sev warning">${sev.warning}</span> warning</span>`
    + (t.identity ? `<span id="identity-total"><b class="bad">${plural(t.identity, 'store')}</b> with identity issues</span>` : '')
    + releasesHTML(releases)
    + (t.drift || t.config || t.pending ? `<span id="config-total">config:`
      + `${t.drift ? ` <span class="state drift">drift</span> ${t.drift}` : ''}`
      + `${t.config ? ` <span class="state cfg-trouble">not applied as sent</span> ${t.config}` : ''}`
      + `${t.pending ? ` <span class="state cfg-pending">pending</span> ${t.pending}` : ''}</span>` : '');
}

/** How many stores run each release, the most common first (a few; the rest summed). */
function releasesHTML(releases) {
  if (!releases.size) return '';
  const list = [...releases].sort((a, b) => b[1] - a[1] || b[0].localeCompare(a[0]));
  const shown = list.slice(0, 4).map(([v, n]) => `<b>${esc(v)}</b> ${num(n)}`).join(' · ');
  const rest = list.slice(4).reduce((sum, [, n]) => sum + n, 0);
  return `<span id="release-total">releases: ${shown}${rest ? ` · ${num(rest)} on ${list.length - 4} others` : ''}</span>`;
}

/** The whole fleet view, drawn once. */
export function renderFleet(root, state) {
  root.innerHTML = `<div class="totals" id="totals">${totalsHTML(state)}</div>
    <div id="fleet-alerts"></div>
    <div class="toolbar">
      <input id="filter" type="search" placeholder="Filter: store, device, state, error, release, drift…" autocomplete="off" value="${esc(state.filter.text)}">
      <label><input id="problems" type="checkbox" ${state.filter.problems ? 'checked' : ''}> problems only</label>
      <span id="shown" class="muted"></span>
    </div>
    <table id="fleet" class="grid"><thead><tr><th>Store</th><th>Presence</th><th>Devices</th><th>Outbox</th>
      <th>Oldest unacked</th><th>Labels</th><th>Printing</th><th>Clock</th><th>Release</th><th>Config</th><th>Alerts</th><th>Last health</th></tr></thead>
      <tbody></tbody></table>`;
  const ids = [...state.stores.keys()].sort();
  const tbody = root.querySelector('#fleet tbody');
  tbody.innerHTML = ids.map((id) => `<tr data-store="${esc(id)}">${rowHTML(state.stores.get(id), state)}</tr>`).join('');
  rows.clear();
  for (const tr of tbody.children) {
    const s = state.stores.get(tr.dataset.store);
    rows.set(s.store, { tr, ...describe(s, state) });
  }
  applyFilter(state);
}

/** Redraw the rows of stores that changed (and add new stores in order). */
export function patchStores(state, ids) {
  const tbody = document.querySelector('#fleet tbody');
  if (!tbody) return;
  for (const id of ids) {
    const s = state.stores.get(id);
    if (!s) continue;
    let entry = rows.get(id);
    if (!entry) {
      const tr = document.createElement('tr');
      tr.dataset.store = id;
      const next = [...rows.keys()].filter((k) => k > id).sort()[0];
      tbody.insertBefore(tr, next ? rows.get(next).tr : null);
      entry = { tr };
      rows.set(id, entry);
    }
    entry.tr.innerHTML = rowHTML(s, state);
    Object.assign(entry, describe(s, state));
    entry.tr.hidden = !matches(entry, state.filter);
  }
  const totals = document.getElementById('totals');
  if (totals) totals.innerHTML = totalsHTML(state);
  showCount();
}

function matches(entry, filter) {
  if (filter.problems && !entry.problem) return false;
  return filter.words.every((w) => entry.hay.includes(w));
}

function showCount() {
  const shown = [...rows.values()].filter((e) => !e.tr.hidden).length;
  const el = document.getElementById('shown');
  if (el) el.textContent = `${shown} of ${rows.size} shown`;
}

/** Show only the rows that match the filter box and the problems switch. */
export function applyFilter(state) {
  state.filter.words = state.filter.text.toLowerCase().split(/\s+/).filter(Boolean);
  for (const entry of rows.values()) {
    const hide = !matches(entry, state.filter);
    if (entry.tr.hidden !== hide) entry.tr.hidden = hide;
  }
  showCount();
}

/** Take the hub's side of every store's devices.yaml again; redraw the rows whose side changed. */
export function patchConfigs(state, configs) {
  const next = new Map(Object.entries(configs || {}));
  const changed = new Set();
  for (const id of new Set([...state.configs.keys(), ...next.keys()])) {
    if (JSON.stringify(state.configs.get(id)) !== JSON.stringify(next.get(id))) changed.add(id);
  }
  state.configs = next;
  if (changed.size) patchStores(state, changed);
}

/** Worst severity and count of live alerts per store. */
export function alertsByStore(alerts) {
  const out = new Map();
  for (const a of alerts.values()) {
    if (a.state === 'resolved') continue;
    const e = out.get(a.store) || { n: 0, worst: 'info' };
    e.n += 1;
    if (severityRank(a.severity) > severityRank(e.worst)) e.worst = a.severity;
    out.set(a.store, e);
  }
  return out;
}
