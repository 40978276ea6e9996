// The console page: sign-in, routes (#/, #/alerts, #/store/ID, #/associates on the agent, #/enroll and #/rollouts on the
// hub), live updates, buttons.
// Mode "hub": every store, SSE from the hub; mode "store": the agent's own store, its WebSocket feed.

import * as api from './api.js';
import { alertsTable, setRules } from './alerts.js';
import { installAssociates, renderAssociates } from './associates.js';
import { installEnroll, leaveEnroll, renderEnroll } from './enroll.js';
import { alertsByStore, applyFilter, patchConfigs, patchStores, renderFleet } from './fleet.js';
import { installRollouts, renderRollouts } from './rollouts.js';
import { commandsHTML, renderStore, tickCommands } from './store.js';
import { esc, setServerNow, tick } from './util.js';

const state = {
  meta: null,
  stores: new Map(),          // id -> summary
  alerts: new Map(),          // id -> live alert
  alertsByStore: new Map(),
  configs: new Map(),         // id -> the hub's side of its devices.yaml (newest pushed, answered, state)
  commands: new Map(),        // id -> command of the store shown
  detail: null,
  filter: { text: '', problems: false, words: [] },
  route: { view: 'fleet' },
};
const $ = (id) => document.getElementById(id);
const view = $('view');
const isHub = () => state.meta.mode === 'hub';
let errorTimer = null;
const CONFIGS_EVERY_MS = 15000;

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { el.hidden = true; }, 10000);
}

function showLogin(message = '') {
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').focus();
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  api.setToken($('token').value.trim());
  $('login').hidden = true;
  boot();
});
$('logout').addEventListener('click', () => { api.clearToken(); location.reload(); });

async function loadFleet() {
  const f = await api.call('/fleet');
  setServerNow(f.now);
  state.stores = new Map(f.stores.map((s) => [s.store, s]));
  state.configs = new Map(Object.entries(f.configs || {})); // the hub's only: the agent has none
  state.alerts = new Map(f.alerts.filter((a) => a.state !== 'resolved').map((a) => [a.id, a]));
  state.alertsByStore = alertsByStore(state.alerts);
  showAlertCount();
}

function showAlertCount() {
  $('alert-count').textContent = state.alerts.size ? String(state.alerts.size) : '';
}

function parseRoute() {
  const h = location.hash.replace(/^#\/?/, '');
  if (h.startsWith('store/')) return { view: 'store', store: decodeURIComponent(h.slice(6)) };
  if (h === 'alerts') return { view: 'alerts' };
  if (h === 'associates' && state.meta.pairing) return { view: 'associates' }; // only an agent pairs its devices
  if (h === 'enroll' && isHub()) return { view: 'enroll' }; // only the hub enrolls store PCs
  if (h === 'rollouts' && isHub()) return { view: 'rollouts' }; // and rolls releases out
  return isHub() ? { view: 'fleet' } : { view: 'store', store: state.meta.store };
}

function renderFleetAlerts() {
  const el = $('fleet-alerts');
  if (el) el.innerHTML = `<h2>Open alerts</h2>${alertsTable(state.alerts.values(), { canAct: isHub(), showStore: true, limit: 8 })}`;
}

function renderAlertsView() {
  view.innerHTML = `<h1>Alerts</h1><div id="alerts">${alertsTable(state.alerts.values(), { canAct: isHub(), showStore: true })}</div>`
    + (isHub() ? '' : '<p class="muted">These are the hub\'s rules applied to this store; staff acknowledge and resolve alerts on the hub console.</p>');
}

async function loadStore(id) {
  const d = await api.call(`/stores/${encodeURIComponent(id)}`);
  setServerNow(d.now);
  if (state.route.view !== 'store' || state.route.store !== id) return; // the user moved on meanwhile
  const mine = new Map([...state.commands].filter(([, c]) => c.store === id));
  // The database's rows, plus what only this page knows of its own commands (deadline, timeout).
  const extra = (c) => { const m = mine.get(c.id); return m ? { deadline: m.deadline, timeout_s: m.timeout_s } : {}; };
  state.commands = new Map(d.commands.map((c) => [c.id, { ...c, ...extra(c) }]));
  for (const [cid, c] of mine) if (!state.commands.has(cid)) state.commands.set(cid, c);
  const level = $('log-level')?.value;
  const seq = $('resend-seq')?.value;
  state.detail = d;
  renderStore(view, state, d);
  if (level) $('log-level').value = level;
  if (seq) $('resend-seq').value = seq;
}

let reloadTimer = null;
function reloadStoreSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => {
    const jobs = [loadStore(state.route.store)];
    if (!isHub()) jobs.push(loadFleet());
    Promise.all(jobs).catch((e) => showError(`could not refresh: ${e.message}`));
  }, 300);
}

async function route() {
  const was = state.route?.view;
  state.route = parseRoute();
  if (was === 'enroll' && state.route.view !== 'enroll') leaveEnroll();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === state.route.view);
  try {
    if (state.route.view === 'fleet') {
      renderFleet(view, state);
      renderFleetAlerts();
      requestAnimationFrame(() => performance.mark('fleet-rendered'));
    } else if (state.route.view === 'alerts') {
      renderAlertsView();
    } else if (state.route.view === 'associates') {
      await renderAssociates(view);
    } else if (state.route.view === 'enroll') {
      await renderEnroll(view);
    } else if (state.route.view === 'rollouts') {
      await renderRollouts(view);
    } else {
      await loadStore(state.route.store);
      requestAnimationFrame(() => performance.mark('store-rendered'));
    }
  } catch (e) {
    if (e instanceof api.Unauthorized) { api.clearToken(); showLogin('Your token is no longer accepted.'); return; }
    view.innerHTML = `<p class="error">${esc(e.message)}</p>`; // the message may quote the URL's store id
  }
}

function renderCommands() {
  const el = $('commands');
  if (el && state.route.view === 'store') el.innerHTML = commandsHTML(state.commands.values(), state.route.store);
}

let streamedBefore = false;
function onHubEvent(name, data) {
  if (name === 'hello') {
    setServerNow(data.now);
    // After a reconnect, what changed meanwhile was not streamed: read it all again.
    if (streamedBefore) loadFleet().then(route).catch((e) => showError(e.message));
    streamedBefore = true;
    return;
  }
  if (name !== 'update') return;
  const changed = new Set(data.stores.map((s) => s.store));
  for (const s of data.stores) state.stores.set(s.store, s);
  for (const a of data.alerts) {
    changed.add(a.store);
    if (a.state === 'resolved') state.alerts.delete(a.id); else state.alerts.set(a.id, a);
  }
  if (data.alerts.length) { state.alertsByStore = alertsByStore(state.alerts); showAlertCount(); }
  let cmdChanged = false;
  for (const c of data.commands) {
    if (!state.commands.has(c.id) && c.store !== state.route.store) continue;
    state.commands.set(c.id, { ...(state.commands.get(c.id) || {}), ...c });
    cmdChanged = true;
  }
  const v = state.route.view;
  if (v === 'fleet') {
    patchStores(state, changed);
    if (data.alerts.length) renderFleetAlerts();
  } else if (v === 'alerts' && data.alerts.length) {
    renderAlertsView();
  } else if (v === 'store') {
    if (changed.has(state.route.store)) reloadStoreSoon();
    else if (cmdChanged) renderCommands();
  }
}

function onAgentEvent(type) {
  if (type.startsWith('device.') || type.startsWith('alert.')) reloadStoreSoon();
}

function onLiveState(s) {
  const el = $('live');
  el.textContent = s === 'live' ? 'live' : s;
  el.className = `live ${s}`;
  if (s === 'unauthorized') { api.clearToken(); showLogin('Your token is no longer accepted.'); }
}

function commandArgs(action) {
  if (action === 'set_log_level') return { level: $('log-level').value };
  if (action === 'resend_from') {
    const seq = Number.parseInt($('resend-seq').value, 10);
    if (!(seq >= 1)) throw new Error('enter the seq to resend from (a whole number from 1)');
    return { seq };
  }
  return {};
}

document.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-act]');
  if (!b) return;
  b.disabled = true;
  try {
    if (b.dataset.act === 'ack' || b.dataset.act === 'resolve') {
      const row = await api.post(`/alerts/${encodeURIComponent(b.dataset.alert)}/${b.dataset.act}`);
      if (row.state === 'resolved') state.alerts.delete(row.id); else state.alerts.set(row.id, row);
      state.alertsByStore = alertsByStore(state.alerts);
      showAlertCount();
      onHubEvent('update', { stores: [], alerts: [row], commands: [] });
      if (state.route.view === 'store') reloadStoreSoon();
    } else if (b.dataset.act === 'command') {
      const store = state.route.store;
      const row = await api.post(`/stores/${encodeURIComponent(store)}/commands`,
        { device: b.dataset.device, action: b.dataset.action, args: commandArgs(b.dataset.action) });
      state.commands.set(row.id, { ...row, store });
      renderCommands();
      if (row.state === 'sent') {
        // The answer or the timeout comes on the live stream; ask once more in case the stream was down.
        setTimeout(async () => {
          if (state.commands.get(row.id)?.state !== 'sent') return;
          const now = await api.call(`/commands/${encodeURIComponent(row.id)}`);
          state.commands.set(row.id, { ...state.commands.get(row.id), ...now });
          renderCommands();
        }, (row.timeout_s + 3) * 1000);
      }
    }
  } catch (err) {
    showError(err.message);
  } finally {
    b.disabled = false;
  }
});

document.addEventListener('input', (e) => {
  if (e.target.id === 'filter') { state.filter.text = e.target.value; applyFilter(state); }
});
document.addEventListener('change', (e) => {
  if (e.target.id === 'problems') { state.filter.problems = e.target.checked; applyFilter(state); }
});

async function boot() {
  if (!api.token()) { showLogin(); return; }
  try {
    state.meta = await api.call('/meta');
  } catch (e) {
    if (e instanceof api.Unauthorized) { api.clearToken(); showLogin('That token is not known here.'); return; }
    showError(`cannot reach the console: ${e.message}`);
    return;
  }
  setRules(state.meta.rules);
  $('nav').hidden = false;
  $('who').textContent = state.meta.who;
  $('logout').hidden = false;
  if (!isHub()) document.querySelector('[data-nav="fleet"]').textContent = state.meta.store;
  if (isHub()) {
    $('nav-enroll').hidden = false;
    $('nav-rollouts').hidden = false;
    const hooks = {
      onError: showError,
      onUnauthorized: () => { api.clearToken(); showLogin('Your token is no longer accepted.'); },
    };
    installEnroll(hooks);
    installRollouts(hooks);
  }
  if (state.meta.pairing) {
    $('nav-associates').hidden = false;
    installAssociates({
      onError: showError,
      onUnauthorized: () => { api.clearToken(); showLogin('Your token is no longer accepted.'); },
    });
  }
  await loadFleet();
  window.addEventListener('hashchange', route);
  await route();
  if (isHub()) {
    api.liveHub(onHubEvent, onLiveState);
    // A version pushed or a store's answer to one comes in no snapshot: the fleet view reads them again now and then.
    setInterval(() => {
      if (state.route.view !== 'fleet') return;
      api.call('/configs').then((c) => patchConfigs(state, c.configs)).catch((e) => showError(`could not refresh: ${e.message}`));
    }, CONFIGS_EVERY_MS);
  } else {
    api.liveAgent(onAgentEvent, onLiveState);
    // The feed carries device and alert events; outbox, clock and queues change without one.
    setInterval(() => { if (state.route.view === 'store') reloadStoreSoon(); }, 15000);
  }
  setInterval(() => tickCommands(view), 1000);
  setInterval(() => tick(view), 5000);
}

boot();
