// One store: its devices with their actions, queues, clock, its devices.yaml and release, the last 24 hours per
// device, its alerts, the remote commands sent to it and (from the hub) its identity issues and rollouts.

import { alertsTable, deviceAlertsTable } from './alerts.js';
import { configState, labelsWrong, presence } from './fleet.js';
import { badge, clock, duration, esc, num, plural, serverNow, since } from './util.js';

// A device's actions are what its store's snapshot lists (each driver declares its own): a button says the
// name in words ("end_session": "End session"); only where words alone mislead is there a label here.
const ACTION_LABELS = { resend_from: 'Resend from seq' };

function actionLabel(a) {
  const words = String(a).replace(/_/g, ' ');
  return ACTION_LABELS[a] || words.charAt(0).toUpperCase() + words.slice(1);
}

function card(title, body, bad = false) {
  return `<div class="card${bad ? ' bad-card' : ''}"><h3>${esc(title)}</h3>${body}</div>`;
}

function cards(s, h) {
  const lab = s.labels;
  const pr = s.printing;
  const mb = (b) => (b == null ? '–' : `${num(b / 1048576, 1)} MB`);
  return `<div class="cards">`
    + card('Outbox', `<b>${plural(s.outbox_depth, 'event')}</b><br>oldest unacked ${duration(s.oldest_unacked_age_s || 0)}`
      + `<br>${mb(h.outbox_bytes)} of ${mb(h.outbox_budget_bytes)}`, s.over_budget || s.oldest_unacked_age_s > 600)
    + card('Clock', s.clock_offset_s == null ? 'no ack with a time yet'
      : `store is <b>${num(Math.abs(s.clock_offset_s), 1)} s</b> ${s.clock_offset_s >= 0 ? 'behind' : 'ahead of'} the hub`,
    Math.abs(s.clock_offset_s || 0) > 5)
    + card('Store health', s.status == null ? 'not reported'
      : s.status === 'ok' ? '<span class="ok">ok</span>'
        : `<b class="bad">degraded</b><ul class="reasons">${(s.reasons || []).map((r) => `<li data-code="${esc(r.code)}" `
          + `title="${esc(r.code)}">${esc(r.message || r.code)}</li>`).join('')}</ul>`, s.status === 'degraded')
    + card('Price labels', lab && lab.non_compliant != null
      ? `<b>${num(labelsWrong(lab))}</b> of ${plural(lab.labels, 'label')} not compliant`
        + (lab.past_grace != null && lab.non_compliant > lab.past_grace
          ? `<br>${num(lab.non_compliant - lab.past_grace)} being updated` : '')
        + ((lab.past_grace != null ? lab.oldest_past_grace_since : lab.oldest_non_compliant_since)
          ? `<br>oldest for ${since(lab.past_grace != null ? lab.oldest_past_grace_since : lab.oldest_non_compliant_since)}` : '')
      : s.status != null ? '<span class="muted">no shelf labels</span>' : 'not reported', labelsWrong(lab) > 0)
    + card('Print queue', pr ? `${num(pr.queued)} queued, ${num(pr.waiting)} waiting, <b>${num(pr.failed)}</b> failed`
      + (pr.oldest_waiting_since ? `<br>oldest waiting ${since(pr.oldest_waiting_since)}` : '')
      : s.status != null ? '<span class="muted">no printer</span>' : 'not reported',
    pr && (pr.failed > 0 || pr.waiting > 0))
    + (s.hub ? card('Hub link', `${s.hub === 'online' ? '<span class="ok">connected</span>' : '<b class="bad">not connected</b>'}`
      + (s.hub_error ? `<br><span class="small">${esc(s.hub_error)}</span>` : ''), s.hub !== 'online') : '')
    + card('Events', `last seq ${num(h.last_seq)}<br>acked ${num(h.acked_seq)}<br>disk free ${mb(h.disk_free_bytes)}`)
    + `</div>`;
}

function counters(c) {
  const parts = Object.entries(c || {}).map(([k, v]) => `${esc(k)} ${num(v)}`);
  return parts.length ? `<span class="muted small">${parts.join(' · ')}</span>` : '';
}

function actionButtons(device, actions) {
  return actions.map((a) => `<button type="button" data-act="command" data-device="${esc(device)}" data-action="${esc(a)}">`
    + `${esc(actionLabel(a))}</button>`).join(' ');
}

function devicesTable(devices) {
  if (!devices.length) return '<p class="muted">No devices in the last snapshot.</p>';
  const body = devices.map((d) => `<tr data-device="${esc(d.id)}" data-state="${esc(d.state)}">`
    + `<td><b>${esc(d.id)}</b><div class="muted small">${esc(d.kind || '')}</div></td>`
    + `<td>${badge(d.state)}</td><td>${since(d.since)}</td>`
    // A device working again keeps its last error (why it last failed), shown as history, not as a fault.
    + `<td class="${d.state === 'online' || d.state === 'busy' ? 'muted small' : 'err'}">`
    + `${d.last_error ? esc((d.state === 'online' || d.state === 'busy' ? 'before: ' : '') + d.last_error) : ''}</td>`
    + `<td>${counters(d.counters)}</td>`
    + `<td class="actions">${actionButtons(d.id, d.actions)}</td></tr>`).join('');
  return `<table id="devices" class="grid"><thead><tr><th>Device</th><th>State</th><th>For</th><th>Last error</th>`
    + `<th>Counters</th><th>Actions</th></tr></thead><tbody>${body}</tbody></table>`;
}

function agentActions(meta) {
  const levels = meta.log_levels.map((l) => `<option${l === 'debug' ? ' selected' : ''}>${esc(l)}</option>`).join('');
  return `<div class="agent-actions">
    <button type="button" data-act="command" data-device="agent" data-action="status">Status</button>
    <span class="group"><select id="log-level">${levels}</select>
      <button type="button" data-act="command" data-device="agent" data-action="set_log_level">Set log level</button></span>
    <span class="group"><input id="resend-seq" type="number" min="1" placeholder="seq">
      <button type="button" data-act="command" data-device="agent" data-action="resend_from">Resend events from seq</button></span>
  </div>`;
}

function commandState(c, storeId) {
  if (c.state === 'sent') {
    return `<span class="state starting">waiting</span> <span data-deadline="${esc(c.deadline || '')}">for the answer…</span>`;
  }
  if (c.state === 'ok') return `<span class="state online">ok</span>`;
  if (c.state === 'timeout') {
    return `<span class="state error">timeout</span> ${esc(c.error || 'no answer')} from ${esc(storeId)}:`
      + ' the store may be offline; the broker dropped the command, so it will not run later';
  }
  return `<span class="state error">error</span> ${esc(c.error || '')}`;
}

/** The commands sent to this store from this page and before, newest first. */
export function commandsHTML(commands, storeId) {
  const list = [...commands].sort((a, b) => String(b.sent_at || '').localeCompare(String(a.sent_at || '')));
  if (!list.length) return '<p class="muted">No commands sent yet.</p>';
  return list.slice(0, 20).map((c) => {
    const result = c.state === 'ok' && c.result != null
      ? `<pre class="result">${esc(JSON.stringify(c.result, null, 1).slice(0, 2000))}</pre>` : '';
    const args = c.args && Object.keys(c.args).length ? ` ${esc(JSON.stringify(c.args))}` : '';
    // A command the hub never saw sent (edge-hub cmd writing to another database) has only its answer.
    const what = c.action ? `<b>${esc(actionLabel(c.action))}</b> on ${esc(c.device || '?')}${args}`
      : '<b>a command sent outside this hub</b>';
    const at = c.sent_at || c.answered_at;
    return `<div class="command" data-id="${esc(c.id)}" data-state="${esc(c.state)}">${what}`
      + ` <span class="muted small">${at ? `${since(at)} ago` : ''}</span> · <span class="cmd-state">${commandState(c, storeId)}</span>${result}</div>`;
  }).join('');
}

/** Count the seconds a pending command has left. */
export function tickCommands(root) {
  for (const el of root.querySelectorAll('[data-deadline]')) {
    const left = (Date.parse(el.dataset.deadline) - serverNow()) / 1000;
    el.textContent = Number.isNaN(left) ? 'for the answer…' : `for the answer… ${Math.max(0, Math.ceil(left))} s left`;
  }
}

const HOUR_MS = 3600e3;

/**
 * The axis under the bars: a tick on every third whole hour of the browser's clock (a line and
 * "03:00"), and "now" at the right end. Ticks too close to the ends are left out, so that no
 * label hangs past the bar or sits on top of "now".
 */
export function axisTicks(from, to) {
  const span = to - from;
  const step = span > 12 * HOUR_MS ? 3 * HOUR_MS : span > 3 * HOUR_MS ? HOUR_MS : 15 * 60e3;
  const first = new Date(from);
  first.setMinutes(0, 0, 0);
  let t = first.getTime();
  while (t < from || (step === 3 * HOUR_MS && new Date(t).getHours() % 3)) t += step === 3 * HOUR_MS ? HOUR_MS : step;
  let out = '';
  for (; t < to; t += step) {
    const pct = ((t - from) / span) * 100;
    if (pct < 3 || pct > 93) continue;
    const text = new Date(t).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
    out += `<span class="tick" style="left:${pct}%">${text}</span>`;
  }
  return `${out}<span class="tick now" style="left:100%">now</span>`;
}

/** Each device's states over the window, as bars (percent of the window, so it scales with the page). */
export function timelineHTML(tl) {
  const from = Date.parse(tl.from);
  const to = Date.parse(tl.to);
  const span = to - from;
  const ids = Object.keys(tl.devices || {});
  if (!ids.length || !(span > 0)) return '<p class="muted">No device history yet.</p>';
  const ticks = axisTicks(from, to);
  const rowsHTML = ids.map((id) => {
    const segs = tl.devices[id].map((s) => {
      const start = Math.max(from, Date.parse(s.since));
      const end = s.until ? Date.parse(s.until) : to;
      const left = ((start - from) / span) * 100;
      const width = Math.max(0.2, ((end - start) / span) * 100);
      const tip = `${s.state} ${clock(s.since)} – ${clock(s.until)}${s.last_error ? `: ${s.last_error}` : ''}`;
      return `<div class="seg ${esc(s.state)}" data-state="${esc(s.state)}" style="left:${left}%;width:${width}%" title="${esc(tip)}"></div>`;
    }).join('');
    return `<div class="tl-row" data-device="${esc(id)}"><span class="tl-name">${esc(id)}</span><div class="tl-bar">${segs}</div></div>`;
  }).join('');
  return `<div class="timeline">${rowsHTML}<div class="tl-row"><span class="tl-name"></span><div class="tl-axis">${ticks}</div></div></div>`;
}

// A store's word on a release (sync/topics.py UpdateResult), in words; the last ones are the rollout halting.
const UPDATE_STATES = { downloading: 'downloading', refused: 'refused', installed: 'installed, switching soon',
  waiting_quiet: 'waiting for a quiet moment', switching: 'switching', healthy: 'healthy', rolled_back: 'rolled back',
  failed: 'failed' };
const UPDATE_BAD = new Set(['refused', 'rolled_back', 'failed']);

/** The devices.yaml in force, its state and drift, and (from the hub) its newest version and the store's word on it. */
function configCard(c, desired) {
  if (!c && !desired) return card('Configuration', '<span class="muted">not reported by this agent</span>');
  const lines = [];
  if (c) {
    const state = configState(c);
    lines.push(`<b id="cfg-in-force">${c.version === 0 ? 'the store\'s own file' : `version ${esc(c.version ?? '?')}`}</b>`
      + ` in force · <span id="cfg-state" class="${state ? 'bad' : 'ok'}">${esc(state || 'applied')}</span>`);
    lines.push(c.drift ? `<span id="cfg-drift"><span class="state drift">drift</span> the file was edited at the store`
      + `${c.drift_since ? `, seen for ${since(c.drift_since)}` : ''}: push the change from the hub, or undo it</span>`
      : '<span id="cfg-drift" class="muted">no local edit</span>');
  } else {
    lines.push('<span class="muted">the store does not report its config</span>');
  }
  if (desired) {
    const ahead = desired.desired != null && (!c || c.version !== desired.desired);
    lines.push(`<span id="cfg-desired">hub's newest: <b>${desired.desired != null ? `version ${esc(desired.desired)}` : 'none'}</b>`
      + `${ahead ? ' <span class="bad">not in force</span>' : ''}</span>`);
    if (desired.answered != null && desired.state) {
      const worse = desired.state === 'refused' || desired.state === 'rolled_back';
      lines.push(`<span id="cfg-answer">version ${esc(desired.answered)}: `
        + `<span class="${worse ? 'bad' : ''}">${esc(desired.state.replace(/_/g, ' '))}</span>`
        + `${desired.reason ? ` — ${esc(desired.reason)}` : ''}</span>`);
    }
    if (desired.errors && desired.errors.length && desired.state === 'refused') {
      lines.push(`<ul class="reasons">${desired.errors.map((e) => `<li>${esc(e)}</li>`).join('')}</ul>`);
    }
    // Earlier versions it rolled back (the latest answer, said just above, is not repeated).
    const said = (r) => r.version === desired.answered && desired.state === 'rolled_back';
    for (const r of (desired.rolled_back || []).filter((x) => !said(x))) {
      lines.push(`<span class="small">version ${esc(r.version)} rolled back: ${esc(r.reason || '?')}</span>`);
    }
  }
  const bad = (c && (c.drift || configState(c))) || (desired && desired.state === 'refused');
  return card('Configuration (devices.yaml)', lines.join('<br>'), bad);
}

/** The release the store runs and (from the hub) its latest word on a rollout. */
function releaseCard(version, update, isHub) {
  const lines = [`runs <b id="release-running">${esc(version || '?')}</b>`];
  if (update) {
    lines.push(`<span id="release-update">rollout <a href="#/rollouts">${esc(update.rollout)}</a> asked for `
      + `<b>${esc(update.version)}</b>: <span class="${UPDATE_BAD.has(update.state) ? 'bad' : ''}">`
      + `${esc(UPDATE_STATES[update.state] || update.state)}</span> ${update.at ? `${since(update.at)} ago` : ''}</span>`);
    if (update.reason) lines.push(`<span class="small">${esc(update.reason)}</span>`);
  } else if (isHub) {
    lines.push('<span class="muted">in no rollout yet</span>');
  }
  return card('Release', lines.join('<br>'), Boolean(update && UPDATE_BAD.has(update.state)));
}

/** "Configuration and release": the devices.yaml in force and the release the store runs. */
export function opsHTML(detail, isHub) {
  const s = detail.summary;
  return `<h2>Configuration and release</h2><div class="cards" id="ops">`
    + `${configCard(detail.config ?? s.config, detail.desired)}${releaseCard(detail.version ?? s.version, detail.update, isHub)}</div>`;
}

// What staff should do about each identity code (docs/console.md says more).
const IDENTITY_ADVICE = {
  stream_conflict: (store) => 'An event came for a position that holds another event; the hub kept it aside. '
    + `Look at both with "edge-hub identity ${store}", then resolve the alert.`,
  database_restored: () => 'The store went on from an older copy of its database: its stock counts and points may lack '
    + 'the events after the backup. A stock count fixes the counts; resolve the alert once done.',
  duplicate_store: () => 'Two PCs run as this store. Find the second one and stop its agent; '
    + 'the alert resolves itself once the hub no longer sees both.',
};

/**
 * What the hub noticed about the store's identity: each issue with its detail and since, and the
 * events kept aside. Null (the agent's page, an older hub): nothing to show.
 */
export function identityHTML(ident, store) {
  if (!ident) return '';
  const open = (ident.issues || []).filter((i) => !i.cleared_at);
  const cleared = (ident.issues || []).filter((i) => i.cleared_at);
  const issue = (i) => `<div class="card identity-issue${i.cleared_at ? '' : ' bad-card'}" data-code="${esc(i.code)}" `
    + `data-subject="${esc(i.subject)}"><h3>${esc(i.code.replace(/_/g, ' '))} · ${esc(i.subject)}</h3>`
    + `<div>${esc(i.detail)}</div>`
    + `<div class="muted small">since ${clock(i.first_at)} (${since(i.first_at)} ago)`
    + `${i.count > 1 ? ` · seen ${num(i.count)} times, last ${since(i.last_at)} ago` : ''}`
    + `${i.cleared_at ? ` · cleared ${since(i.cleared_at)} ago` : ''}</div>`
    + `${!i.cleared_at && Object.hasOwn(IDENTITY_ADVICE, i.code) ? `<div class="small advice">${esc(IDENTITY_ADVICE[i.code](store))}</div>` : ''}</div>`;
  const kept = ident.latest_conflicts && ident.latest_conflicts.length
    ? `<table class="grid small" id="conflicts"><thead><tr><th>Stream</th><th>Seq</th><th>Event kept aside</th>`
      + `<th>Event the hub holds there</th><th>Type</th><th>When</th></tr></thead><tbody>`
      + ident.latest_conflicts.map((c) => `<tr><td><code>${esc(c.stream || '(legacy)')}</code></td><td class="n">${num(c.seq)}</td>`
        + `<td><code>${esc(c.id)}</code></td><td><code>${esc(c.kept_id)}</code></td><td>${esc(c.type)}</td>`
        + `<td>${since(c.received_at)} ago</td></tr>`).join('')
      + '</tbody></table>' : '';
  const summary = `<p id="identity-summary">${open.length ? `<b class="bad">${plural(open.length, 'open issue')}</b>`
    : '<span class="ok">no open issue</span>'} · <b class="${ident.conflicts ? 'bad' : ''}">${plural(ident.conflicts, 'event')}</b>`
    + ` kept aside as ${ident.conflicts === 1 ? 'a conflict' : 'conflicts'} · ${plural(ident.streams, 'stream')}</p>`;
  return `<h2>Store identity</h2><div id="identity">${summary}`
    + `${open.length ? `<div class="identity-issues">${open.map(issue).join('')}</div>` : ''}${kept}`
    + `${cleared.length ? `<div class="identity-issues">${cleared.map(issue).join('')}</div>` : ''}</div>`;
}

/** The store view. */
export function renderStore(root, state, detail) {
  const s = detail.summary;
  const h = detail.health || {};
  const canAct = state.meta.mode === 'hub';
  const pres = presence(s, state.meta);
  root.innerHTML = `<div class="store-head">
      ${state.meta.mode === 'hub' ? '<a href="#/" class="back">← all stores</a>' : ''}
      <h1>${esc(s.store)}</h1> ${badge(pres)} <span>${since(s.presence_since, 'for ')}</span>
      <span class="muted">agent ${esc(s.version || '?')} · last health ${since(s.health_at)} ago</span>
    </div>
    ${cards(s, h)}
    ${opsHTML(detail, state.meta.mode === 'hub')}
    ${identityHTML(detail.identity, s.store)}
    <h2>Devices</h2>${devicesTable(detail.devices)}
    <h2>Agent</h2>${agentActions(state.meta)}
    <h2>Commands</h2><div id="commands">${commandsHTML(state.commands.values(), s.store)}</div>
    <h2>Last 24 hours</h2><div id="timeline">${timelineHTML(detail.timeline)}</div>
    <h2>Alerts</h2><div id="store-alerts">${alertsTable(detail.alerts, { canAct, showStore: false, empty: 'No alerts.' })}</div>
    <h2>Reported by the store</h2><div id="device-alerts">${deviceAlertsTable(detail.device_alerts)}</div>`;
}
