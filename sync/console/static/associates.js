// The agent's console only (meta.pairing): associates' PADs and wristbands. "Pair a device" asks the agent
// for a one-time code (POST /v1/pairing) and shows it large, with its QR, its link and the time it has left;
// the list is GET /v1/paired (revoked ones too); "Unpair" asks once more, then DELETE /v1/paired/NAME.
// Only an admin makes codes (a code makes an associate, who sees member ids in full): the form says so, and
// when the agent answers a console sign-in 403 the form gives way to that sentence; list and unpair still work.
//
// The code lives in this tab's memory only, until its device pairs or it expires: never in storage, a URL
// of this page or the console's log. The QR is the agent's SVG, shown as an <img> from a data: URL once
// DOMParser has read it as an SVG document: an image runs no script and loads nothing, and the page's
// CSP (img-src 'self' data:) allows it as it stands.

import { Unauthorized, callAgent } from './api.js';
import { clock, esc, since } from './util.js';

const POLL_CODE_MS = 3000;    // while a code is out: its device shows as paired within seconds
const POLL_LIST_MS = 15000;   // otherwise: last seen (the agent writes it at most once a minute)
const MAX_QR_CHARS = 200000;  // the agent's QR of a short URL is a few kB
const UNPAIRED_SHOWN = 20;    // the newest unpaired devices; the older ones are counted
const SVG_NS = 'http://www.w3.org/2000/svg';

const st = {
  adminOnly: false,   // the agent refused this sign-in a code (403): it is not an admin's
  devices: null,      // GET /v1/paired, as answered
  code: null,         // { code, name, zones, url, qr, expiresAt (this browser's ms), madeAt (the agent's ms) }
  paired: null,       // the name the code on screen paired, once it did
  confirming: null,   // the name whose "Unpair" waits for its confirmation
  loading: false,
  nextPoll: 0,
};
let hooks = null; // set once by installAssociates

const $ = (id) => document.getElementById(id);

/** The QR as an image URL, or null when the answer is not an SVG document. */
export function qrImageURL(svg) {
  if (typeof svg !== 'string' || !svg || svg.length > MAX_QR_CHARS) return null;
  const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
  const root = doc.documentElement;
  if (root.namespaceURI !== SVG_NS || root.localName !== 'svg' || doc.getElementsByTagName('parsererror').length) return null;
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
}

/** "9:05" for 545 s. */
const mmss = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;

const zonesText = (zones) => (zones && zones.length ? zones.map(esc).join(', ') : '<span class="muted">every zone</span>');

function codeHTML() {
  if (st.paired) {
    return `<div class="card pair-done" id="pair-done"><h3>Paired</h3>`
      + `<p><b>${esc(st.paired)}</b> is paired: it shows its name at the top of its screen and is in the list below.</p></div>`;
  }
  const c = st.code;
  if (!c) {
    return `<div class="card pair-help"><h3>How it works</h3><p>Make a code here (signed in as admin), then on the PAD scan its QR code `
      + `(or type the code on the pairing screen). A code pairs one device, once, within 10 minutes.</p></div>`;
  }
  return `<div class="card pair-code" id="pair-card" data-name="${esc(c.name)}">`
    + `<h3>Pairing code for ${esc(c.name)} · ${zonesText(c.zones)}</h3>`
    + `<div id="pair-code" class="big-code">${esc(c.code)}</div>`
    + (c.qr ? '<img id="pair-qr" class="qr" alt="QR code of the pairing link" width="240" height="240">'
      : '<p class="error">No QR code in the agent\'s answer: type the code on the PAD.</p>')
    + `<p class="small">On the PAD: scan this QR code with its camera, or type the code on its pairing screen.</p>`
    + `<p class="small">Link: <code id="pair-url">${esc(c.url)}</code></p>`
    + `<p id="pair-left" class="countdown" aria-live="polite"></p></div>`;
}

function renderCode() {
  const out = $('pair-out');
  if (!out) return;
  out.innerHTML = codeHTML();
  const img = $('pair-qr');
  if (img) img.src = st.code.qr; // a property, not markup: the URL is data, built above
  countdown();
}

/** The time the code on screen has left; once it is out, the code is crossed out and its QR taken away. */
function countdown() {
  const el = $('pair-left');
  const c = st.code;
  if (!el || !c) return;
  const left = Math.ceil((c.expiresAt - Date.now()) / 1000);
  if (left > 0) {
    const text = `expires in ${mmss(left)}`;
    if (el.textContent !== text) el.textContent = text;
    return;
  }
  $('pair-card').classList.add('expired');
  $('pair-qr')?.remove();
  const at = new Date(c.expiresAt).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
  el.textContent = `Expired at ${at}: make a new code.`;
}

function stateCell(d) {
  if (d.revoked_at) {
    return `<span class="muted">unpaired ${since(d.revoked_at)} ago${d.revoked_by ? ` by ${esc(d.revoked_by)}` : ''}</span>`;
  }
  if (st.confirming === d.name) {
    return `<span class="confirm">Unpair ${esc(d.name)}? It stops working at once.</span> `
      + `<button type="button" class="danger" data-pair-act="confirm" data-name="${esc(d.name)}">Yes, unpair</button> `
      + `<button type="button" data-pair-act="cancel">Cancel</button>`;
  }
  return `<button type="button" data-pair-act="unpair" data-name="${esc(d.name)}">Unpair</button>`;
}

/** The paired devices first (by name), then the newest unpaired ones. */
export function pairedHTML(devices) {
  if (!devices) return '<p class="muted">Loading…</p>';
  if (!devices.length) return '<p class="muted" id="paired-empty">No device paired yet.</p>';
  const on = devices.filter((d) => !d.revoked_at);
  const off = devices.filter((d) => d.revoked_at).sort((a, b) => String(b.revoked_at).localeCompare(String(a.revoked_at)));
  const rows = [...on, ...off.slice(0, UNPAIRED_SHOWN)].map((d) => `<tr data-name="${esc(d.name)}" `
    + `data-state="${d.revoked_at ? 'unpaired' : 'paired'}"${d.revoked_at ? ' class="muted"' : ''}>`
    + `<td><b>${esc(d.name)}</b></td><td>${zonesText(d.zones)}</td>`
    + `<td><span title="${esc(clock(d.paired_at))}">${since(d.paired_at)} ago</span>`
    + `${d.paired_by ? ` <span class="muted small">by ${esc(d.paired_by)}</span>` : ''}</td>`
    + `<td class="last-seen">${d.last_seen ? `${since(d.last_seen)} ago` : '<span class="muted">–</span>'}</td>`
    + `<td class="actions">${stateCell(d)}</td></tr>`).join('');
  const more = off.length > UNPAIRED_SHOWN ? `<p class="muted small">… and ${off.length - UNPAIRED_SHOWN} unpaired earlier.</p>` : '';
  return `<table class="grid" id="paired-table"><thead><tr><th>Device</th><th>Zones</th><th>Paired</th><th>Last seen</th>`
    + `<th></th></tr></thead><tbody>${rows}</tbody></table>${more}`;
}

function renderList() {
  const el = $('paired');
  if (el) el.innerHTML = pairedHTML(st.devices);
}

/** Read the list again; when the device of the code on screen has paired, say so. */
async function refresh() {
  if (st.loading) return;
  st.loading = true;
  try {
    st.devices = await callAgent('/v1/paired', { cache: 'no-store' });
    const c = st.code;
    if (c && st.devices.some((d) => d.name === c.name && !d.revoked_at && Date.parse(d.paired_at) >= c.madeAt - 1000)) {
      st.paired = c.name;
      st.code = null;
      renderCode();
    }
    renderList();
  } finally {
    st.loading = false;
    const waiting = st.code && Date.now() < st.code.expiresAt + POLL_CODE_MS;
    st.nextPoll = Date.now() + (waiting ? POLL_CODE_MS : POLL_LIST_MS);
  }
}

function failed(err) {
  if (err instanceof Unauthorized) hooks.onUnauthorized(); else hooks.onError(err.message);
}

// The agent's 422 names the field (edge_agent/api/app.py: {"errors": [{"loc": "name", ...}]}); said here in words.
const FIELD_WORDS = {
  name: 'The name may hold only a–z, 0–9 and "-" (not first), up to 32 characters: for example pad-anna.',
  zones: 'Each zone is up to 32 letters, digits, spaces, "_" or "-" (a letter or digit first), as a shelf label\'s '
    + 'zone; at most 32 zones, separated by commas.',
};

/** Why a code was not made, in words. */
export function refusal(err, name) {
  if (err.status === 422 && Array.isArray(err.body?.errors)) {
    const said = new Set(err.body.errors.map((e) => FIELD_WORDS[String(e.loc).split('.')[0]] || `${e.loc}: ${e.msg}`));
    return [...said].join(' ');
  }
  if (err.status === 409 && (st.devices || []).some((d) => d.name === name && !d.revoked_at)) {
    return `${name} is already paired. Unpair it in the list below first, or choose another name.`;
  }
  if (err.status === 429 || err.status === 503) return `${err.message} (try again in a moment)`;
  return err.message;
}

const ADMIN_ONLY = 'Making a pairing code needs an admin sign-in: sign out and sign in with an admin token. '
  + 'With this sign-in you can see the paired devices and unpair them.';

/** The form, or in its place the sentence that this sign-in may not make codes. */
function renderForm() {
  const form = $('pair-form');
  const note = $('pair-admin-only');
  if (!form || !note) return;
  form.style.display = st.adminOnly ? 'none' : '';
  note.style.display = st.adminOnly ? '' : 'none';
}

async function makeCode(form) {
  const name = $('pair-name').value.trim().toLowerCase();
  const zones = [...new Set($('pair-zones').value.split(',').map((z) => z.trim()).filter(Boolean))];
  const error = $('pair-error');
  error.textContent = '';
  if (!name) { error.textContent = 'Give the device a name, for example pad-anna.'; return; }
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const r = await callAgent('/v1/pairing', { method: 'POST', body: JSON.stringify({ name, zones }), cache: 'no-store' });
    const madeAt = Date.parse(r.expires_at) - r.expires_in * 1000;
    st.code = { code: r.code, name: r.name, zones: r.zones, url: r.pair_url, qr: qrImageURL(r.qr_svg),
      expiresAt: Date.now() + r.expires_in * 1000, madeAt };
    st.paired = null;
    st.nextPoll = Date.now() + POLL_CODE_MS;
    form.reset();
    renderCode();
  } catch (err) {
    if (err instanceof Unauthorized) { hooks.onUnauthorized(); return; }
    if (err.status === 403) { st.adminOnly = true; renderForm(); return; }
    error.textContent = refusal(err, name);
  } finally {
    button.disabled = false;
  }
}

async function unpair(name, button) {
  button.disabled = true;
  try {
    const gone = await callAgent(`/v1/paired/${encodeURIComponent(name)}`, { method: 'DELETE' });
    st.confirming = null;
    // The device that was paired is now unpaired; earlier devices of the name (unpaired before) stay as they were.
    st.devices = (st.devices || []).map((d) => (d.name === gone.name && !d.revoked_at && gone.paired_at ? gone : d));
    if (st.paired === name) { st.paired = null; renderCode(); }
    renderList();
  } catch (err) {
    failed(err);
    button.disabled = false;
  }
}

/** The view (#/associates): the form, the code on screen if one is out, the list. */
export async function renderAssociates(root) {
  root.innerHTML = `<div id="associates">
    <h1>Devices for associates</h1>
    <p class="muted">Associates' PADs and wristbands pair with a one-time code and get a token of their own; `
    + `unpairing one refuses its token at once.</p>
    <div class="pairing">
      <form id="pair-form" class="card" novalidate autocomplete="off">
        <h2>Pair a device</h2>
        <label for="pair-name">Name</label>
        <input id="pair-name" maxlength="32" placeholder="pad-anna" spellcheck="false" autocapitalize="off" required>
        <span class="hint">what the device will be called: a–z, 0–9 and "-"</span>
        <label for="pair-zones">Zones <span class="muted">(optional)</span></label>
        <input id="pair-zones" maxlength="1100" placeholder="cosmetics, fragrance" spellcheck="false">
        <span class="hint">zones as the shelf labels name them, by commas; none: every zone</span>
        <button type="submit">Make a pairing code</button>
        <span class="hint">making a code needs an admin sign-in</span>
        <p id="pair-error" class="error" role="alert"></p>
      </form>
      <div id="pair-admin-only" class="card" role="status" style="display: none"><h2>Pair a device</h2><p>${ADMIN_ONLY}</p></div>
      <div id="pair-out"></div>
    </div>
    <h2>Paired devices</h2><div id="paired">${pairedHTML(st.devices)}</div>
  </div>`;
  renderForm();
  renderCode();
  await refresh();
}

/** At boot on the agent (a second sign-in adds nothing): the form, the buttons, a one-second tick (countdown, list). */
export function installAssociates(callbacks) {
  const first = hooks === null;
  hooks = callbacks;
  st.adminOnly = false; // a new sign-in: the agent says again what it may do
  if (!first) return;
  document.addEventListener('submit', (e) => {
    if (e.target.id !== 'pair-form') return;
    e.preventDefault();
    makeCode(e.target);
  });
  document.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-pair-act]');
    if (!b) return;
    const act = b.dataset.pairAct;
    if (act === 'unpair') st.confirming = b.dataset.name;
    else if (act === 'cancel') st.confirming = null;
    if (act === 'confirm') unpair(b.dataset.name, b); else renderList();
  });
  setInterval(() => {
    if (!$('associates')) return;
    countdown();
    if (Date.now() >= st.nextPoll) refresh().catch(failed);
  }, 1000);
}
