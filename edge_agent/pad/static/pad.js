// The associate's PAD: pairing, the tab bar, the live feed shared by the screens, scanning.
// Opened as /pad#pair=CODE (what the pairing QR holds: the code sits after #, which no server or proxy
// sees, and leaves the address bar at once), or paired by typing the code or scanning the QR here.
// The token is the one thing kept on the PAD (localStorage); a 401 later means it was unpaired.
// A pairing link opened on a PAD that is paired already asks first (askRepair): re-pairing would make it
// another device, and whoever sent the link may not be its associate.

import { ApiError, call, forget, liveFeed, setToken, token, whenUnpaired } from './api.js';
import * as customers from './customers.js';
import * as help from './help.js';
import * as pickup from './pickup.js';
import * as product from './product.js';
import * as returns from './returns.js';
import { listenForRingScanner, scanWithCamera } from './scan.js';
import * as stock from './stock.js';
import { $, el, say } from './ui.js';

const DEVICE = 'pad-device';  // {name, store}: the PAD's own name and its store's (no customer's data)
const SCREENS = { customers, help, pickup, returns, product, stock };
let tab = 'customers';
let stopFeed = null;

// The code after #pair= is taken before anything else runs, and the address bar forgets it at once
// (also when the link is opened again in a tab that already shows the app: only the fragment changes).
function takeCode() {
  const code = new URLSearchParams(location.hash.slice(1)).get('pair');
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  return code;
}
const codeFromUrl = takeCode();

function device() {
  try { return JSON.parse(localStorage.getItem(DEVICE) || 'null'); } catch { return null; }
}

function setLive(state) {
  const live = $('live');
  live.textContent = { live: 'live', reconnecting: 'reconnecting…', refused: 'no feed for this PAD' }[state] || state;
  live.className = state === 'live' ? 'on' : 'off';
}

/** A message for the whole app, above every screen (empty: none). */
function banner(text) {
  $('banner').textContent = text || '';
  $('banner').hidden = !text;
}

function showPairing(why = '') {
  if (stopFeed) { stopFeed(); stopFeed = null; }
  $('app').hidden = true;
  $('tabs').hidden = true;
  $('pairing').hidden = false;
  $('pairing-why').hidden = !why;
  $('pairing-why').textContent = why;
  $('where').textContent = 'Store PAD';
  setLive('not paired');
  banner('');
  for (const screen of Object.values(SCREENS)) screen.clear();  // nothing of the store stays on the screen
}

function select(name) {
  tab = name;
  for (const b of document.querySelectorAll('#tabs [role=tab]')) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  for (const key of Object.keys(SCREENS)) $(`tab-${key}`).hidden = key !== name;
  window.scrollTo(0, 0);
}

async function reloadAll() {
  const results = await Promise.allSettled([customers.load(), help.load(), pickup.load()]);
  const failed = results.find((r) => r.status === 'rejected' && !(r.reason instanceof ApiError && r.reason.status === 401));
  banner(failed ? `Not everything could be loaded: ${failed.reason.message}` : '');
}

function showApp() {
  const me = device();
  $('pairing').hidden = true;
  $('app').hidden = false;
  $('tabs').hidden = false;
  $('where').textContent = me ? `${me.name} · ${me.store}` : 'Store PAD';
  help.setMe(me?.name || null);
  select(tab);
  if (!stopFeed) {
    stopFeed = liveFeed((msg) => {
      for (const screen of [customers, help, pickup]) if (screen.onEvent(msg)) return;
    }, setLive, () => { reloadAll(); });
  }
}

/** The store's words as a sentence: a capital first, a full stop last. */
function sentence(text) {
  const t = String(text || '').trim();
  if (!t) return t;
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

/** What is typed in the pairing field as the code looks: upper case, the dash after four (a pasted link stays). */
function formatCode(field) {
  const typed = field.value;
  if (/[#/:]/.test(typed)) return;
  const clean = typed.toUpperCase().replace(/[^0-9A-Z]/g, '').slice(0, 8);
  const shown = clean.length > 4 ? `${clean.slice(0, 4)}-${clean.slice(4)}` : clean;
  if (shown !== typed) field.value = shown;
}

/** The code of a pairing QR (its URL, /pad#pair=CODE) or of what was typed. */
function codeOf(text) {
  const t = text.trim();
  const at = t.indexOf('#pair=');
  return at >= 0 ? decodeURIComponent(t.slice(at + 6).split('&')[0]) : t;
}

async function pair(code) {
  const clean = codeOf(code);
  if (!clean) { say('pair-msg', 'Type the pairing code (8 letters and digits).', 'error'); return; }
  say('pair-msg', 'Pairing…');
  try {
    const { data } = await call('POST', '/v1/pair', { code: clean }, { auth: false });
    setToken(data.token);
    localStorage.setItem(DEVICE, JSON.stringify({ name: data.name, store: data.store?.name || data.store?.id || '' }));
    $('pair-code').value = '';
    say('pair-msg', '');
    if (stopFeed) { stopFeed(); stopFeed = null; }  // the feed again, as the new name
    banner('');
    showApp();
  } catch (err) {
    const words = err instanceof ApiError && err.status === 429
      ? `Too many wrong codes from this PAD: wait ${err.retryAfter ? Math.ceil(err.retryAfter / 60) + ' min' : 'a while'}, then try again.`
      : sentence(err.message);
    if (token() && $('pairing').hidden) {  // a link opened on a PAD that is paired already: it stays paired
      banner(`That pairing code was not taken (${words}). This PAD stays paired as ${device()?.name || 'before'}.`);
    } else {
      say('pair-msg', words, 'error');
    }
  }
}

/** A pairing link on a PAD paired already: "This PAD is pad-x. Pair it as the new device instead?" in the page. */
function askRepair(code) {
  const me = device()?.name || 'paired already';
  $('repair')?.remove();
  const box = el('div', { id: 'repair', class: 'notice banner', role: 'alertdialog', 'aria-labelledby': 'repair-q' },
    el('p', { id: 'repair-q' }, `This PAD is ${me}. Pair it as the new device instead?`),
    el('button', { type: 'button', id: 'repair-yes', class: 'big',
      onclick: () => { box.remove(); pair(code); } }, 'Pair as the new device'),
    el('button', { type: 'button', id: 'repair-no', class: 'primary big',
      onclick: () => { box.remove(); banner(`The pairing code was not used: this PAD stays ${me}.`); } }, `Keep ${me}`));
  $('app').prepend(box);
  box.scrollIntoView({ block: 'nearest' });
}

/** A code from a pairing link: paired at once on a PAD that is not paired, asked first on one that is. */
function offerCode(code) {
  if (token() && $('pairing').hidden) askRepair(code); else pair(code);
}

/** Where a scanned code goes: a pickup QR to its order, a receipt to returns, a product to the screen in use. */
function routeScan(code) {
  if (!$('pairing').hidden) { $('pair-code').value = code; pair(code); return; }
  if (code.startsWith('RP1:')) {
    select('pickup');
    const order = code.split(':')[1] || '';
    const field = document.querySelector(`[data-order="${CSS.escape(order)}"] .code-field`);
    if (field) { field.value = code; field.form.requestSubmit(); } else say('pickup-msg', `No ready order ${order} here.`, 'error');
    return;
  }
  if (code.startsWith('RS1:') || /^\d{40}$/.test(code)) { select('returns'); returns.scanned(code); return; }
  if (tab === 'stock') { stock.scanned(code); return; }
  select('product');
  product.scanned(code);
}

function setup() {
  whenUnpaired(() => {
    forget();
    localStorage.removeItem(DEVICE);
    // The screen below says how to get a new code: said once.
    showPairing('This PAD is no longer paired with the store (its pairing was removed, or the store was reset).');
  });
  $('pair-form').addEventListener('submit', (e) => { e.preventDefault(); pair($('pair-code').value); });
  $('pair-code').addEventListener('input', (e) => formatCode(e.target));
  $('pair-scan').addEventListener('click', async () => {
    const code = await scanWithCamera('the pairing QR code');
    if (code) pair(code);
  });
  for (const b of document.querySelectorAll('#tabs [role=tab]')) b.addEventListener('click', () => select(b.dataset.tab));
  // A "Scan" button beside a field: the camera fills the field and submits its form.
  for (const b of document.querySelectorAll('button.cam[data-for]')) {
    b.addEventListener('click', async () => {
      const field = $(b.dataset.for);
      const code = await scanWithCamera(field.placeholder.toLowerCase().replace(/^scan or type /, '') || 'the code');
      if (code) { field.value = code; field.form.requestSubmit(); }
    });
  }
  returns.setup();
  product.setup();
  stock.setup();
  listenForRingScanner(routeScan);
  setInterval(() => { customers.tick(); help.tick(); pickup.tick(); }, 30000);
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/pad/sw.js', { scope: '/pad' }).catch(() => {});

  window.addEventListener('hashchange', () => {
    const code = takeCode();
    if (code) offerCode(code);
  });
  if (token()) showApp(); else showPairing();
  if (codeFromUrl) offerCode(codeFromUrl);
}

setup();
