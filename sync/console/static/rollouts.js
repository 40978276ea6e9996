// The hub's console only (meta.mode "hub"): "Rollouts" (#/rollouts). Each staged rollout of a release, newest first
// (GET /api/rollouts): its state, how many stores are updated of how many, per wave, why it halted, each store's line
// and every action with who did it and when. Staff halt, resume or roll back a rollout after a confirmation
// (POST /api/rollouts/{id}/halt | resume | rollback: rollout_actions keeps the staff member's name). The view reads
// the rollouts again every few seconds while it is on screen: the engine moves them on by itself.

import { Unauthorized, call, post } from './api.js';
import { clock, esc, num, plural, setServerNow, since } from './util.js';

const LIMIT = 20;
const REFRESH_MS = 5000;
// What each button does, as the confirmation says it (sync/hub/fleet/rollout.py).
const ACTIONS = {
  halt: { label: 'Halt', ask: 'No store is asked anything more until it is resumed.', yes: 'Yes, halt' },
  resume: { label: 'Resume', ask: 'The next wave is asked once the current one stayed healthy.', yes: 'Yes, resume' },
  rollback: { label: 'Roll back', ask: 'Every store it asked is asked for the release it ran before; the rollout is then over.',
    yes: 'Yes, roll back' },
};
// A store's word that counts against the release (rollout_engine.py WORSE_STATES).
const WORSE = new Set(['rolled_back', 'failed', 'refused']);

const st = {
  rollouts: null,      // GET /api/rollouts, as answered
  confirming: null,    // { id, act } whose button waits for its confirmation
  seen: '',            // the last answer as text: an unchanged one is not drawn again
  shut: new Set(),     // rollouts whose store lines were folded by hand
  opened: new Set(),   // older rollouts whose store lines were unfolded by hand
  nextPoll: 0,
};
let hooks = null;

const $ = (id) => document.getElementById(id);

/** "running", "halted", "rolled back" or "done": what the rollout is, in words. */
export function rolloutState(r) {
  return r.rolled_back_at ? 'rolled back' : r.state;
}

/** Stores updated (running the release and healthy on it) of the rollout's stores. */
export function progress(r) {
  const done = r.waves.reduce((n, w) => n + w.healthy, 0);
  const total = r.waves.reduce((n, w) => n + w.stores.length, 0);
  return { done, total };
}

function buttons(r) {
  const can = [];
  if (r.state === 'running') can.push('halt');
  if (r.state === 'halted' && !r.rolled_back_at) can.push('resume');
  if (!r.rolled_back_at) can.push('rollback');
  if (st.confirming && st.confirming.id === r.id && can.includes(st.confirming.act)) {
    const a = ACTIONS[st.confirming.act];
    return `<span class="confirm">${esc(a.label)} ${esc(r.id)}? ${esc(a.ask)}</span> `
      + `<button type="button" class="danger" data-ro-act="confirm" data-id="${esc(r.id)}">${esc(a.yes)}</button> `
      + `<button type="button" data-ro-act="cancel">Cancel</button>`;
  }
  return can.map((act) => `<button type="button" class="${act === 'rollback' ? 'danger' : ''}" data-ro-act="${act}" `
    + `data-id="${esc(r.id)}">${esc(ACTIONS[act].label)}</button>`).join(' ');
}

function wavesHTML(r) {
  return r.waves.map((w) => {
    const n = w.stores.length;
    const now = r.state === 'running' && w.wave === r.wave;
    const worse = w.stores.filter((x) => WORSE.has(x.state) && x.asked === r.version).length;
    return `<div class="wave${now ? ' current' : ''}" data-wave="${w.wave}"><b>wave ${w.wave}</b> `
      + `<span class="muted">${plural(n, 'store')}</span><br>`
      + `<span class="wave-count">${num(w.healthy)}/${num(n)} updated</span>`
      + `${w.asked < n ? ` <span class="muted">${num(w.asked)} asked</span>` : ''}`
      + `${worse ? ` <span class="bad">${num(worse)} worse</span>` : ''}</div>`;
  }).join('<span class="wave-arrow">→</span>');
}

function storeLine(r, x) {
  const bad = WORSE.has(x.state) || x.health === 'degraded' || x.presence === 'offline';
  return `<tr data-store="${esc(x.store)}"${bad ? ' class="bad-row"' : ''}><td>${x.wave}</td>`
    + `<td><a href="#/store/${encodeURIComponent(x.store)}">${esc(x.store)}</a></td>`
    + `<td>${esc(x.asked || '–')}${x.asked && x.asked !== r.version ? ' <span class="muted small">(back)</span>' : ''}</td>`
    + `<td class="${WORSE.has(x.state) ? 'bad' : ''}">${esc((x.state || '–').replace(/_/g, ' '))}</td>`
    + `<td>${esc(x.running || '–')}</td><td>${esc(x.presence || '–')}</td>`
    + `<td class="${x.health === 'degraded' ? 'bad' : ''}">${esc(x.health || '–')}</td>`
    + `<td class="small">${esc(x.reason || '')}</td></tr>`;
}

function actionsHTML(r) {
  if (!r.actions.length) return '<p class="muted">No action yet.</p>';
  return `<table class="grid small ro-actions"><thead><tr><th>When</th><th>Who</th><th>Action</th><th>Detail</th></tr></thead>`
    + `<tbody>${[...r.actions].reverse().map((a) => `<tr data-action="${esc(a.action)}"><td title="${esc(a.at)}">`
      + `${esc(clock(a.at))} <span class="muted">(${since(a.at)} ago)</span></td><td class="by">${esc(a.by)}</td>`
      + `<td><b>${esc(a.action)}</b></td><td>${esc(a.detail || '')}</td></tr>`).join('')}</tbody></table>`;
}

function rolloutHTML(r, i) {
  const state = rolloutState(r);
  const { done, total } = progress(r);
  const pct = total ? Math.round((done / total) * 100) : 0;
  const open = i === 0 ? !st.shut.has(r.id) : st.opened.has(r.id);
  // Rolled back: its release made a store worse, or staff thought it would. Halted by hand: waiting for staff.
  const tone = r.rolled_back_at ? 'bad' : r.state === 'halted' ? 'warn' : '';
  return `<div class="card rollout${tone ? ` ${tone}-card` : ''}" data-id="${esc(r.id)}" `
    + `data-state="${esc(state)}">`
    + `<div class="ro-head"><h2>${esc(r.version)}</h2> <span class="state ro-${esc(state.replace(' ', '-'))}">${esc(state)}</span>`
    + ` <code class="muted">${esc(r.id)}</code>`
    + ` <span class="muted small">started ${esc(clock(r.created_at))} by ${esc(r.created_by)} · waves ${esc(r.spec)}`
    + ` · soak ${num(r.soak_s)} s</span><span class="spacer"></span><span class="ro-buttons">${buttons(r)}</span></div>`
    + `<div class="ro-progress"><div class="bar"><div style="width:${pct}%"></div></div>`
    + `<span class="ro-count"><b>${num(done)}</b> of ${plural(total, 'store')} updated</span>`
    + `${r.state === 'running' ? ` <span class="muted">· wave ${r.wave} of ${r.waves.length}</span>` : ''}</div>`
    + (r.reason ? `<p class="ro-reason${tone ? ` ${tone}` : ''}">${esc(r.reason)}</p>` : '')
    + `<div class="waves">${wavesHTML(r)}</div>`
    + `<details class="ro-stores"${open ? ' open' : ''}><summary>Stores (${num(total)})</summary>`
    + `<table class="grid small"><thead><tr><th>Wave</th><th>Store</th><th>Asked</th><th>Its word</th><th>Runs</th>`
    + `<th>Presence</th><th>Health</th><th>Why</th></tr></thead>`
    + `<tbody>${r.waves.flatMap((w) => w.stores).map((x) => storeLine(r, x)).join('')}</tbody></table></details>`
    + `<h3>Actions</h3>${actionsHTML(r)}</div>`;
}

function listHTML() {
  if (st.rollouts === null) return '<p class="muted">Loading…</p>';
  if (!st.rollouts.length) {
    return '<p class="muted" id="rollouts-empty">No rollout yet. <code>edge-hub rollout start VERSION</code> starts one.</p>';
  }
  return st.rollouts.map(rolloutHTML).join('');
}

function render() {
  const el = $('rollout-list');
  if (!el) return;
  el.innerHTML = listHTML();
  if (st.rollouts !== null) el.dataset.drawn = '1';
}

async function refresh() {
  st.nextPoll = Date.now() + REFRESH_MS;
  const body = await call(`/rollouts?limit=${LIMIT}`);
  setServerNow(body.now);
  // Unchanged (the common case between two looks): the page is left as it is, a thousand store lines and all.
  const seen = JSON.stringify(body.rollouts);
  if (seen === st.seen && $('rollout-list')?.dataset.drawn) return;
  st.seen = seen;
  st.rollouts = body.rollouts;
  render();
}

function failed(err) {
  if (err instanceof Unauthorized) { hooks?.onUnauthorized(); return; }
  const el = $('rollouts-error');
  if (el) el.textContent = err.message; else hooks?.onError(err.message);
}

async function act(id, what, button) {
  button.disabled = true;
  $('rollouts-error').textContent = '';
  try {
    const body = await post(`/rollouts/${encodeURIComponent(id)}/${what}`);
    st.confirming = null;
    st.rollouts = (st.rollouts || []).map((r) => (r.id === id ? body.rollout : r));
    render();
  } catch (err) {
    st.confirming = null;
    render();
    failed(err);
  }
}

/** The view (#/rollouts): every rollout, newest first. */
export async function renderRollouts(root) {
  root.innerHTML = `<div id="rollouts"><h1>Rollouts</h1>
    <p class="muted">Releases go out in waves: a canary store, then a share, then all. A store that gets worse halts the
    rollout and its stores are asked back by themselves; here staff halt, resume or roll back by hand.</p>
    <p id="rollouts-error" class="error" role="alert"></p>
    <div id="rollout-list">${listHTML()}</div></div>`;
  await refresh().catch(failed);
}

/** At boot on the hub (a second sign-in adds nothing). */
export function installRollouts(callbacks) {
  const first = hooks === null;
  hooks = callbacks;
  if (!first) return;
  document.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-ro-act]');
    if (!b) return;
    const what = b.dataset.roAct;
    if (what === 'confirm') { act(b.dataset.id, st.confirming.act, b); return; }
    st.confirming = what === 'cancel' ? null : { id: b.dataset.id, act: what };
    render();
  });
  document.addEventListener('toggle', (e) => {
    const d = e.target;
    if (!(d instanceof HTMLDetailsElement) || !d.classList.contains('ro-stores')) return;
    const id = d.closest('.rollout').dataset.id;
    const newest = st.rollouts && st.rollouts[0] && st.rollouts[0].id === id;
    const set = newest ? st.shut : st.opened;
    if (newest === d.open) set.delete(id); else set.add(id);
  }, true);
  setInterval(() => {
    // Not while a confirmation is on screen: its button stays where the pointer is.
    if ($('rollouts') && Date.now() >= st.nextPoll && !document.querySelector('#rollouts .confirm')) {
      refresh().catch(failed);
    }
  }, 1000);
}
