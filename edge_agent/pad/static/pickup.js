// Pickup orders: GET /v1/orders (open ones, oldest first), moved new -> picking -> ready -> collected
// with POST /v1/orders/{id}/status. Handing over needs the customer's code, typed or its pickup QR
// (RP1:<order>:<code>) scanned; a wrong code or the lock after too many is said plainly. order.created
// and order.status on the feed reload the list.

import { ApiError, get, post } from './api.js';
import { scanWithCamera } from './scan.js';
import { $, ago, busy, buzz, clock, el, say } from './ui.js';

const NEXT = { new: ['picking', 'Start picking'], picking: ['ready', 'Ready for pickup'] };
const STATUS = { new: 'new', picking: 'picking', ready: 'ready', collected: 'collected' };
let orders = [];
const typed = new Map();  // order_id -> the code being typed (survives a redraw)

/** The end of an order number, as associates read it out (a placed order's number is a 36-character UUID). */
function short(id) { return id.length > 12 ? `…${id.slice(-8)}` : id; }

function said(err, order) {
  if (err instanceof ApiError && err.status === 429) {
    const mins = err.retryAfter ? Math.ceil(err.retryAfter / 60) : 15;
    return `Locked after too many wrong codes: try again in ${mins} min, or check the order confirmation.`;
  }
  const words = err.message.replaceAll(order.order_id, short(order.order_id));
  if (err instanceof ApiError && err.status === 403) return `Not handed over: ${words}`;
  return words;
}

async function move(order, status, code) {
  const body = code === undefined ? { status } : { status, pickup_code: code };
  const moved = await post(`/v1/orders/${encodeURIComponent(order.order_id)}/status`, body);
  if (status === 'collected') {
    typed.delete(order.order_id);
    say('pickup-msg', `Order ${short(order.order_id)} handed over.`, 'ok');
  } else {
    say('pickup-msg', `Order ${short(order.order_id)}: ${moved.status}.`, 'ok');
  }
  await load();
}

function handover(order) {
  const input = el('input', { class: 'code-field scan-field', inputmode: 'numeric', maxlength: '80', spellcheck: 'false',
                              autocomplete: 'off', placeholder: 'Customer\'s code', 'aria-label': `Pickup code for ${order.order_id}`,
                              value: typed.get(order.order_id) || '' });
  input.addEventListener('input', () => typed.set(order.order_id, input.value));
  const give = el('button', { type: 'submit', class: 'primary big' }, 'Hand over');
  const cam = el('button', { type: 'button', class: 'cam' }, 'Scan');
  const form = el('form', { class: 'handover', autocomplete: 'off' },
    el('div', { class: 'scan-row' }, input, cam), give);
  const submit = busy(give, async () => {
    const code = input.value.trim();
    if (!code) { say('pickup-msg', 'Type the customer\'s pickup code or scan their pickup QR.', 'error'); return; }
    await move(order, 'collected', code);
  }, (err) => { say('pickup-msg', said(err, order), 'error'); input.select(); });
  form.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
  cam.addEventListener('click', async () => {
    const code = await scanWithCamera('the customer\'s pickup QR');
    if (code) { input.value = code; typed.set(order.order_id, code); submit(); }
  });
  return form;
}

function card(order) {
  const li = el('li', { class: `card order ${order.status}`, 'data-order': order.order_id },
    el('div', { class: 'row' },
      el('strong', { class: 'id' }, `Order ${short(order.order_id)}`),
      el('span', { class: `state ${order.status}` }, STATUS[order.status] || order.status)),
    el('p', { class: 'ref' }, [order.order_id.length > 12 ? order.order_id : null, `received ${ago(order.received_at)}`,
                               order.origin ? `from ${order.origin === 'hub' ? 'online' : order.origin}` : null]
      .filter(Boolean).join(' · ')),
    order.ready_by ? el('p', { class: 'small' }, `Ready by ${clock(order.ready_by)}`) : null,
    el('ul', { class: 'lines' }, (order.lines || []).map((l) => el('li', {},
      el('span', { class: 'qty' }, `${l.qty} ×`), el('span', { class: 'name' }, l.name || l.sku),
      el('span', { class: `stock ${l.stock_store > 0 ? 'yes' : 'none'}` }, `store ${l.stock_store ?? '–'}`)))),
    order.locked_until && Date.parse(order.locked_until) > Date.now()
      ? el('p', { class: 'notice' }, `Locked after wrong codes until ${clock(order.locked_until)}`) : null);
  const next = NEXT[order.status];
  if (next) {
    const b = el('button', { type: 'button', class: 'primary big' }, next[1]);
    b.addEventListener('click', busy(b, () => move(order, next[0]), (err) => say('pickup-msg', said(err, order), 'error')));
    li.append(b);
  } else if (order.status === 'ready') {
    li.append(handover(order));
  }
  return li;
}

function render() {
  $('pickup-empty').hidden = orders.length > 0;
  // Keep the field being typed in: a redraw must not take the focus from under the associate's thumb.
  const focused = document.activeElement?.closest?.('[data-order]')?.dataset.order;
  $('orders').replaceChildren(...orders.map(card));
  if (focused) document.querySelector(`[data-order="${CSS.escape(focused)}"] .code-field`)?.focus();
  const waiting = orders.filter((o) => o.status === 'new').length;
  const badge = document.querySelector('[data-tab="pickup"] .badge');
  badge.textContent = String(waiting);
  badge.hidden = waiting === 0;
}

export async function load() {
  orders = await get('/v1/orders?status=open');
  render();
}

let again = null;
export function onEvent(msg) {
  if (msg.type !== 'order.created' && msg.type !== 'order.status') return false;
  if (msg.type === 'order.created') buzz();
  clearTimeout(again);  // a burst of events: one reload
  again = setTimeout(() => load().catch((err) => say('pickup-msg', err.message, 'error')), 150);
  return true;
}

export function clear() { orders = []; typed.clear(); render(); say('pickup-msg', ''); }

export function tick() { if (orders.length && !document.activeElement?.closest?.('[data-order]')) render(); }
