// Product check: a code scanned or typed, GET /v1/products/{code} (the price the checkout charges now,
// with its promotion, rating, reviews, store and online stock) and GET /v1/labels?sku= (what each shelf
// label shows, right or wrong), with "Re-push label" (POST /v1/labels/{mac}/push) for one that is wrong.
// A label re-pushed less than half a minute ago, or still being pushed, is not pushed again: the answer's
// "repush" ("queued", "already_pushing", "cooldown") and "retry_after" are said in words (repushWords).

import { ApiError, get, post } from './api.js';
import { $, ago, busy, el, money, say } from './ui.js';

let current = null;

/** The promotion the checkout applies now, or null (the same rule as edge_agent/catalog.py unit_price). */
export function activePromo(p, now = Date.now()) {
  const promo = p.promo;
  if (!promo) return null;
  if (promo.starts_at && Date.parse(promo.starts_at) > now) return null;
  if (promo.ends_at && now >= Date.parse(promo.ends_at)) return null;
  return Number(promo.price) < Number(p.price) ? promo : null;
}

function stars(rating) {
  if (rating === null || rating === undefined) return 'no rating';
  const full = Math.round(rating);
  return `${'★'.repeat(full)}${'☆'.repeat(5 - full)} ${rating.toFixed(1)}`;
}

function renderProduct(p) {
  const promo = activePromo(p);
  $('product').replaceChildren(
    el('p', { class: 'sub' }, p.name),
    el('p', { class: 'small' }, `SKU ${p.sku} · ${p.barcodes.join(', ')}`),
    el('p', { class: 'price-now' },
      el('span', { class: 'big-text' }, money(promo ? promo.price : p.price, p.currency)),
      promo ? el('s', { class: 'was' }, money(p.price)) : null,
      promo ? el('span', { class: 'promo' }, promo.label || 'promotion') : null),
    el('p', { class: 'small' }, 'What the checkout charges now'),
    el('div', { class: 'facts' },
      el('span', { class: `stock ${p.stock_store > 0 ? 'yes' : 'none'}` }, `In store ${p.stock_store}`),
      el('span', { class: `stock ${p.stock_online > 0 ? 'yes' : 'none'}` }, `Online ${p.stock_online}`),
      el('span', { class: 'rating' }, `${stars(p.rating)} · ${p.reviews} reviews`)));
  $('product').hidden = false;
}

/** What a re-push's answer means for the associate at the shelf. */
export function repushWords(mac, answer) {
  const wait = Number(answer?.retry_after) || 0;
  const again = wait ? ` You can push it again in ${wait} s.` : '';
  if (answer?.repush === 'cooldown') {
    return { text: `Label ${mac} was pushed again moments ago: give it a minute to show the new picture.${again}`, tone: 'ok' };
  }
  if (answer?.repush === 'already_pushing') {
    return { text: `Label ${mac} is being pushed already: it shows the new picture within a minute.${again}`, tone: 'ok' };
  }
  return { text: `Label ${mac} pushed again: it shows the new picture within a minute.`, tone: 'ok' };
}

function labelCard(l) {
  const right = l.compliant;
  const li = el('li', { class: `card label ${right ? 'right' : 'wrong'}`, 'data-label': l.mac },
    el('div', { class: 'row' }, el('strong', { class: 'id' }, l.mac),
      el('span', { class: `state ${right ? 'ok' : 'bad'}` }, right ? 'right price' : 'wrong')),
    el('p', {}, l.price !== null ? `Shows ${money(l.price)}` : (l.notice ? `Shows a notice: ${l.notice}` : 'Shows nothing confirmed yet'),
      ` · checkout ${money(l.checkout_price)}`),
    right ? null : el('p', { class: 'notice' }, l.reason || 'not what the checkout charges'),
    el('p', { class: 'small' }, [l.zone ? `zone ${l.zone}` : null, l.device,
      l.battery_mv ? `battery ${(l.battery_mv / 1000).toFixed(2)} V` : null,
      l.last_seen ? `seen ${ago(l.last_seen)}` : null].filter(Boolean).join(' · ')));
  const push = el('button', { type: 'button', class: right ? 'big' : 'primary big' }, 'Re-push label');
  push.addEventListener('click', busy(push, async () => {
    const words = repushWords(l.mac, await post(`/v1/labels/${encodeURIComponent(l.mac)}/push`));
    say('product-msg', words.text, words.tone);
    follow(l.mac, current?.sku);
  }, (err) => say('product-msg', err instanceof ApiError && err.status === 429
    ? `Not pushed: too many re-pushes from this PAD; try again in ${err.retryAfter || 60} s.`
    : `Not pushed: ${err.message}`, 'error')));
  li.append(push);
  return li;
}

/** After a re-push: the label looked at again for about half a minute, until it shows the checkout's price. */
async function follow(mac, sku) {
  for (let wait = 1000, i = 0; i < 10; i += 1, wait = Math.min(wait * 1.5, 5000)) {
    await new Promise((r) => setTimeout(r, wait));
    if (!current || current.sku !== sku) return;  // another product is shown now
    let label;
    try { label = await get(`/v1/labels/${encodeURIComponent(mac)}`); } catch { return; }
    if (label.compliant && !label.pending) break;
  }
  if (current && current.sku === sku) await loadLabels(sku);
}

async function loadLabels(sku) {
  let labels = [];
  try {
    labels = await get(`/v1/labels?sku=${encodeURIComponent(sku)}`);
  } catch (err) {
    say('product-msg', `Labels: ${err.message}`, 'error');
  }
  $('labels-title').hidden = false;
  $('labels-title').textContent = labels.length ? `Shelf labels (${labels.length})` : 'No shelf label shows this product';
  $('labels').replaceChildren(...labels.map(labelCard));
}

async function check(code) {
  const text = code.trim();
  say('product-msg', '');
  if (!text) return;
  try {
    current = await get(`/v1/products/${encodeURIComponent(text)}`);
  } catch (err) {
    current = null;
    $('product').hidden = true; $('labels-title').hidden = true; $('labels').replaceChildren();
    say('product-msg', err instanceof ApiError && err.status === 404 ? `No product with the code "${text}".` : err.message, 'error');
    return;
  }
  renderProduct(current);
  await loadLabels(current.sku);
}

export function clear() {
  current = null;
  $('product-code').value = '';
  $('product').hidden = true;
  $('product').replaceChildren();
  $('labels-title').hidden = true;
  $('labels').replaceChildren();
  say('product-msg', '');
}

export function setup() {
  $('product-form').addEventListener('submit', (e) => { e.preventDefault(); check($('product-code').value); });
}

export function scanned(code) { $('product-code').value = code; check(code); }
