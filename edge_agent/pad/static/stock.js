// Count and labels: a product scanned or typed, its count on the shelf saved (POST /v1/stock/adjustments
// with counted, reason count; one key per count so a retry is not counted twice), and a shelf label bound
// to it (POST /v1/labels/bind, the label's id scanned or typed).

import { ApiError, get, post, uuid4 } from './api.js';
import { $, busy, say } from './ui.js';

let item = null;
let countKey = null;

function show(p) {
  item = p;
  countKey = null;
  $('stock-name').textContent = p.name;
  $('stock-now').textContent = `Store: ${p.stock_store}`;  // the store's own count, beside the field
  $('counted').value = '';  // what is on the shelf, counted: not the store's number to be confirmed unseen
  $('stock-item').hidden = false;
}

async function find(code) {
  const text = code.trim();
  say('stock-msg', '');
  if (!text) return;
  try {
    show(await get(`/v1/products/${encodeURIComponent(text)}`));
  } catch (err) {
    item = null;
    $('stock-item').hidden = true;
    say('stock-msg', err instanceof ApiError && err.status === 404 ? `No product with the code "${text}".` : err.message, 'error');
  }
}

function counted() {
  const text = $('counted').value.trim();
  if (!text) return null;
  const n = Number(text);
  return Number.isInteger(n) && n >= 0 && n <= 9999 ? n : null;
}

function step(by) {
  const n = counted() ?? 0;
  $('counted').value = String(Math.min(9999, Math.max(0, n + by)));
  countKey = null;
}

export function clear() {
  item = null;
  $('stock-code').value = '';
  $('label-id').value = '';
  $('stock-item').hidden = true;
  say('stock-msg', '');
}

export function setup() {
  $('stock-form').addEventListener('submit', (e) => { e.preventDefault(); find($('stock-code').value); });
  $('count-minus').addEventListener('click', () => step(-1));
  $('count-plus').addEventListener('click', () => step(1));
  $('counted').addEventListener('input', () => { countKey = null; });
  const save = $('count-form').querySelector('button[type=submit]');
  const saveCount = busy(save, async () => {
    const n = counted();
    if (n === null) {
      say('stock-msg', $('counted').value.trim() ? 'The count is a whole number from 0 to 9999.'
        : 'Type how many are on the shelf (0 if none).', 'error');
      return;
    }
    countKey = countKey || uuid4();
    const done = await post('/v1/stock/adjustments', { code: item.sku, counted: n, reason: 'count', client_adjustment_id: countKey });
    countKey = null;
    item = { ...item, stock_store: done.qty };
    $('stock-now').textContent = `Store: ${done.qty}`;
    say('stock-msg', `Counted ${done.qty} of ${done.name} (${done.delta >= 0 ? '+' : ''}${done.delta}).`, 'ok');
  }, (err) => say('stock-msg', `Not saved: ${err.message}`, 'error'));
  $('count-form').addEventListener('submit', (e) => { e.preventDefault(); saveCount(); });
  const bindButton = $('bind-form').querySelector('button[type=submit]');
  const bind = busy(bindButton, async () => {
    const label = $('label-id').value.trim();
    if (!label) { say('stock-msg', 'Scan or type the label\'s id (on its back, or its barcode).', 'error'); return; }
    const bound = await post('/v1/labels/bind', { label, code: item.sku });
    $('label-id').value = '';
    say('stock-msg', `Label ${bound.mac} now shows ${item.name}.`, 'ok');
  }, (err) => say('stock-msg', `Not bound: ${err.message}`, 'error'));
  $('bind-form').addEventListener('submit', (e) => { e.preventDefault(); bind(); });
}

/** A scan while this screen is shown: a product, or with a product open and the label field focused, a label. */
export function scanned(code) { $('stock-code').value = code; find(code); }
