// The hub's console only (meta.mode "hub"): "Enroll a store". Staff give a store id and its first devices.yaml;
// POST /api/enrollments answers a one-time code, shown here once with the command to run on the new PC. The list
// is GET /api/enrollments: codes issued, used when and from where, or expired (the hub never returns a code again).
//
// The code lives in this tab's memory only while it is on screen: never in storage or a URL.

import { Unauthorized, call } from './api.js';
import { esc } from './util.js';

const MAX_YAML_BYTES = 256 * 1024; // the hub's limit for a devices.yaml
const TTLS = [[3600, '1 hour'], [4 * 3600, '4 hours'], [86400, '1 day'], [7 * 86400, '7 days']];

const st = { issued: null, rows: null };
let hooks = null;

const $ = (id) => document.getElementById(id);

function issuedHTML() {
  const c = st.issued;
  if (!c) return '';
  const cmd = `sudo edge-agent enroll --hub ${location.origin} --code ${c.code} --store ${c.store} `
    + '--config /etc/edge-agent/devices.yaml --data-dir /var/lib/edge-agent';
  return `<div class="card" id="enroll-issued"><h3>Code for ${esc(c.store)}</h3>
    <p class="big-code" id="enroll-code">${esc(c.code)}</p>
    <p>One use, until ${esc(c.expires_at.slice(0, 16).replace('T', ' '))} UTC. It is shown only now: copy it to the
    person setting up the PC. On the new PC:</p>
    <pre class="result enroll-cmd" id="enroll-cmd">${esc(cmd)}</pre>
    <p class="hint">Use the hub's HTTPS address as the store PC reaches it if it differs from this page's.</p></div>`;
}

function rowsHTML(rows) {
  if (rows === null) return '<p class="muted">loading…</p>';
  if (!rows.length) return '<p class="muted">No code issued yet.</p>';
  const tr = (r) => `<tr><td>${esc(r.store)}</td><td>${esc(r.issued_at.slice(0, 16).replace('T', ' '))}</td>`
    + `<td>${esc(r.issued_by)}</td><td><span class="state ${esc(r.state)}">${esc(r.state)}</span></td>`
    + `<td>${esc(r.expires_at.slice(0, 16).replace('T', ' '))}</td>`
    + `<td>${r.used_at ? esc(r.used_at.slice(0, 16).replace('T', ' ')) : '–'}</td>`
    + `<td>${esc(r.used_from || '–')}</td><td>${esc(r.hostname || '–')}</td></tr>`;
  return `<table class="grid" id="enroll-list"><thead><tr><th>Store</th><th>Issued (UTC)</th><th>By</th><th>State</th>`
    + `<th>Expires</th><th>Used</th><th>From</th><th>PC</th></tr></thead><tbody>${rows.map(tr).join('')}</tbody></table>`;
}

async function refresh() {
  st.rows = await call('/enrollments');
  const el = $('enroll-rows');
  if (el) el.innerHTML = rowsHTML(st.rows);
}

function failed(err) {
  if (err instanceof Unauthorized) { hooks?.onUnauthorized(); return; }
  const el = $('enroll-error');
  if (el) el.textContent = err.message; else hooks?.onError(err.message);
}

async function issue(form) {
  const store = $('enroll-store').value.trim();
  const file = $('enroll-file').files[0];
  const error = $('enroll-error');
  error.textContent = '';
  if (!/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/.test(store)) {
    error.textContent = 'The store id is lowercase letters, digits and "-", e.g. store-042.';
    return;
  }
  if (!file) { error.textContent = 'Choose the store\'s devices.yaml.'; return; }
  if (file.size > MAX_YAML_BYTES) { error.textContent = 'That file is over 256 KiB: is it a devices.yaml?'; return; }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const devices_yaml = await file.text();
    st.issued = await call('/enrollments', {
      method: 'POST', cache: 'no-store',
      body: JSON.stringify({ store, devices_yaml, ttl_s: Number($('enroll-ttl').value) }),
    });
    $('enroll-out').innerHTML = issuedHTML();
    form.reset();
    await refresh();
  } catch (err) {
    failed(err);
  } finally {
    button.disabled = false;
  }
}

/** The view (#/enroll): the form, the code just issued if any, the codes issued. */
export async function renderEnroll(root) {
  root.innerHTML = `<div id="enroll">
    <h1>Enroll a store</h1>
    <p class="muted">A new store PC sets itself up from a one-time code: it makes its own keys, the hub signs its
    certificates and hands it the store's devices.yaml. No password is typed or copied.</p>
    <div class="pairing">
      <form id="enroll-form" class="card" novalidate autocomplete="off">
        <h2>Issue a code</h2>
        <label for="enroll-store">Store id</label>
        <input id="enroll-store" maxlength="64" placeholder="store-042" spellcheck="false" autocapitalize="off" required>
        <label for="enroll-file">Its devices.yaml</label>
        <input id="enroll-file" type="file" accept=".yaml,.yml,text/yaml" required>
        <span class="hint">its store.id must be this store's; enrollment fills in hub: and api.tls</span>
        <label for="enroll-ttl">Valid for</label>
        <select id="enroll-ttl">${TTLS.map(([s, t]) => `<option value="${s}">${t}</option>`).join('')}</select>
        <button type="submit">Issue a code</button>
        <p id="enroll-error" class="error" role="alert"></p>
      </form>
      <div id="enroll-out">${issuedHTML()}</div>
    </div>
    <h2>Codes issued</h2><div id="enroll-rows">${rowsHTML(st.rows)}</div>
  </div>`;
  await refresh().catch(failed);
}

/** Leaving the view forgets the code on screen. */
export function leaveEnroll() { st.issued = null; }

/** At boot on the hub (a second sign-in adds nothing). */
export function installEnroll(callbacks) {
  const first = hooks === null;
  hooks = callbacks;
  if (!first) return;
  document.addEventListener('submit', (e) => {
    if (e.target.id !== 'enroll-form') return;
    e.preventDefault();
    issue(e.target);
  });
}
