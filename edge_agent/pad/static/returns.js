// Returns: the receipt scanned or typed (GET /v1/sales/{sale}: its lines with what is left to return, and
// its refund_basis, from which the screen says to the cent what the chosen lines refund after points, as the
// return computes it), lines and quantities chosen (up to `returnable`), the refund method, then
// POST /v1/returns with a client_return_id kept until it succeeds (a retry after a lost answer is the same
// return, not a second).
// The slip's print job (Print-Job header) is followed until it printed or failed.

import { ApiError, call, get, uuid4 } from './api.js';
import { $, busy, el, money, say } from './ui.js';

const METHODS = ['cash', 'card', 'qr', 'points'];
let sale = null;
let chosen = {};   // sku -> qty to return
let key = null;    // client_return_id of the return being made

function reset() {
  sale = null; chosen = {}; key = null;
  $('sale').hidden = true;
}

const cents = (amount) => BigInt(Math.round(Number(amount) * 100));

// n / d rounded to the nearest, a half to the even one (Decimal's ROUND_HALF_EVEN), for n, d >= 0.
function halfEven(n, d) {
  let q = n / d;
  const twice = 2n * (n - q * d);
  if (twice > d || (twice === d && q % 2n === 1n)) q += 1n;
  return q;
}

// What the chosen units refund, as edge_agent/returns.py computes it from the sale's refund_basis: the share of
// the money paid that the returned lines' value is of all of them, counted from what earlier returns took
// (rounded once, to the cent), and of the redeemed points given back (rounded down). In integers: to the cent.
function estimate() {
  const basis = sale.refund_basis;
  let value = 0n, units = 0n, restoredByUnit = 0;
  for (const line of sale.lines) {
    const n = chosen[line.sku] || 0;
    value += cents(line.unit_price) * BigInt(n);
    units += cents(line.refund_unit ?? line.unit_price) * BigInt(n);
    restoredByUnit += (line.points_restored_unit || 0) * n;
  }
  if (!basis || cents(basis.lines_value) <= 0n) {  // an agent without the basis: one unit's share each
    return { money: (Number(units) / 100).toFixed(2), restored: restoredByUnit };
  }
  const whole = cents(basis.lines_value);
  const before = cents(basis.returned_value);
  const paid = cents(basis.paid);
  const refund = halfEven(paid * (before + value), whole) - halfEven(paid * before, whole);
  const redeemed = BigInt(basis.points_redeemed || 0);
  const restored = (redeemed * (before + value)) / whole - (redeemed * before) / whole;
  return { money: (Number(refund) / 100).toFixed(2), restored: Number(restored) };
}

function renderLines() {
  $('sale-lines').replaceChildren(...sale.lines.map((line) => {
    const n = chosen[line.sku] || 0;
    const minus = el('button', { type: 'button', 'aria-label': `One less ${line.name}`, disabled: n <= 0 }, '−');
    const plus = el('button', { type: 'button', 'aria-label': `One more ${line.name}`, disabled: n >= line.returnable }, '+');
    minus.addEventListener('click', () => { chosen[line.sku] = Math.max(0, n - 1); key = null; renderLines(); });
    plus.addEventListener('click', () => { chosen[line.sku] = Math.min(line.returnable, n + 1); key = null; renderLines(); });
    return el('li', { class: `line${line.returnable ? '' : ' spent'}`, 'data-sku': line.sku },
      el('div', { class: 'what' },
        el('span', { class: 'name' }, line.name || line.sku),
        el('span', { class: 'small' }, `${line.qty} × ${money(line.unit_price)}` +
          (line.returned ? ` · ${line.returned} returned already` : ''))),
      line.returnable ? el('div', { class: 'stepper' }, minus, el('output', { 'aria-label': `Returning of ${line.name}` }, String(n)), plus)
        : el('span', { class: 'small' }, 'nothing left to return'));
  }));
  const total = estimate();
  const any = Object.values(chosen).some((n) => n > 0);
  $('refund-total').textContent = any
    ? `Refund ${money(total.money, sale.currency)}` + (total.restored ? ` + ${total.restored} points` : '')
    : 'Choose what comes back';
  $('refund').disabled = !any;
}

async function find(code) {
  reset();
  $('refunded').hidden = true;
  say('returns-msg', '');
  const text = code.trim();
  if (!text) return;
  try {
    sale = await get(`/v1/sales/${encodeURIComponent(text)}`);
  } catch (err) {
    const slip = err instanceof ApiError && err.message.startsWith('this is a return slip');
    say('returns-msg', slip ? 'This is a return slip, not a sale: scan the barcode on the sale\'s receipt.'
      : err instanceof ApiError && err.status === 404 ? `No sale of this store for "${text}".` : err.message, 'error');
    return;
  }
  chosen = {};
  const when = new Date(sale.time).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  $('sale-head').replaceChildren(`Sale of ${when} · ${money(sale.total, sale.currency)}` +
    ` · paid by ${sale.payment?.method || '–'}`,
  ...(sale.member_id ? [' · member ', el('span', { class: 'nowrap' }, sale.member_id)] : []));
  const method = sale.payment?.method;
  $('refund-method').value = METHODS.includes(method) ? method : 'card';
  $('sale').hidden = false;
  renderLines();
  if (!sale.lines.some((l) => l.returnable > 0)) say('returns-msg', 'Everything of this sale was returned already.');
}

async function followSlip(job) {
  const box = $('slip');
  for (let wait = 300, i = 0; i < 40; i += 1, wait = Math.min(wait * 1.5, 3000)) {
    let got;
    try { got = await get(`/v1/print/jobs/${encodeURIComponent(job)}`); } catch (err) { box.textContent = `Slip: ${err.message}`; return; }
    if (got.state === 'done') { box.textContent = `Slip printed on ${got.device}.`; box.className = 'slip ok'; return; }
    if (got.state === 'failed') {
      box.textContent = `The slip did not print on ${got.device}: ${got.reason || 'printer error'}. Retry it from the console.`;
      box.className = 'slip error';
      return;
    }
    box.textContent = `Slip ${got.state === 'printing' ? 'printing' : 'waiting to print'} on ${got.device}…`;
    await new Promise((r) => setTimeout(r, wait));
  }
}

async function refund() {
  const lines = Object.entries(chosen).filter(([, n]) => n > 0).map(([code, qty]) => ({ code, qty }));
  key = key || uuid4();
  const { data, headers } = await call('POST', '/v1/returns', {
    client_return_id: key, sale: sale.sale_id, lines, refund: { method: $('refund-method').value },
  });
  const job = headers.get('Print-Job');
  const box = $('refunded');
  box.replaceChildren(
    el('p', { class: 'big-text' }, data.total === null || data.total === undefined
      ? 'Return taken: the refund goes back to the original payment.'
      : `Refund ${money(data.total, sale.currency)} by ${data.refund?.method || $('refund-method').value}`),
    el('p', { class: 'small' }, `Return ${data.id}` +
      (data.points_reversed ? ` · ${data.points_reversed} points taken back` : '') +
      (data.points_restored ? ` · ${data.points_restored} points given back` : '')),
    el('p', { id: 'slip', class: 'slip' }, job ? 'Slip sent to the printer…' : 'No printer takes return slips here: write one by hand.'));
  box.hidden = false;
  reset();
  $('receipt-code').value = '';
  say('returns-msg', '');
  if (job) followSlip(job);
}

export function clear() {
  reset();
  $('receipt-code').value = '';
  $('refunded').hidden = true;
  $('refunded').replaceChildren();
  say('returns-msg', '');
}

export function setup() {
  $('receipt-form').addEventListener('submit', (e) => { e.preventDefault(); find($('receipt-code').value); });
  const button = $('refund');
  button.addEventListener('click', busy(button, refund, (err) => say('returns-msg', `Not refunded: ${err.message}`, 'error')));
}

/** A code from the ring scanner or the camera while this screen is shown. */
export function scanned(code) { $('receipt-code').value = code; find(code); }
