// Customers: member arrivals, live. GET /v1/members on load (the cards the store holds now), then
// member.arrived on the feed puts a card on top and member.expired takes it away. Shown as the API gives
// them (an associate's feed carries the member id; nothing here is kept on the PAD).

import { get } from './api.js';
import { $, ago, el, money } from './ui.js';

const cards = new Map();  // member_id -> {card, at, rank}: at when the feed said so (null: loaded), rank to sort by
const MAX = 60;  // cards shown
const KEEP = 200;  // cards held
let arrivals = 0;

function stock(n, where) {
  if (n === null || n === undefined) return el('span', { class: 'stock none' }, `${where} –`);
  return el('span', { class: `stock ${n > 0 ? 'yes' : 'none'}` }, `${where} ${n}`);
}

function where(card) {
  if (card.via === 'hub') return 'Checked in with the app';
  if (card.station) return `At ${card.station}`;
  if (card.via === 'scan') return 'Scanned at the entrance';
  return '';
}

// The balance every document the member gets prints (points_balance: the card's, plus what sales here earned),
// with the part the hub has not confirmed yet marked: it cannot be redeemed before the hub's next card.
function points(card) {
  const balance = card.points_balance ?? card.points;
  if (balance === null || balance === undefined) return null;
  const pending = card.points_pending || 0;
  return el('span', { class: 'points' }, `${balance} points`,
    pending ? el('span', { class: 'pending' }, ` (${pending} pending)`) : null);
}

function render() {
  const list = $('customers');
  const shown = [...cards.values()].sort((a, b) => b.rank - a.rank).slice(0, MAX);
  $('customers-empty').hidden = shown.length > 0;
  list.replaceChildren(...shown.map(({ card, at }) => el('li', { class: 'card member', 'data-member': card.member_id },
    el('div', { class: 'row' },
      el('strong', { class: 'id' }, card.member_id),
      card.tier ? el('span', { class: `tier tier-${String(card.tier).toLowerCase()}` }, card.tier)
        : el('span', { class: 'tier' }, card.known ? 'member' : 'no card here'),
      at ? el('span', { class: 'when' }, ago(new Date(at).toISOString())) : null),
    el('div', { class: 'row small' },
      el('span', {}, where(card)),
      points(card)),
    card.tags && card.tags.length ? el('ul', { class: 'tags' }, card.tags.map((t) => el('li', {}, t))) : null,
    card.interests && card.interests.length ? el('div', { class: 'interests' },
      el('p', { class: 'label' }, 'Looked at online'),
      el('ul', {}, card.interests.map((i) => el('li', {},
        el('span', { class: 'name' }, i.name || i.sku),
        el('span', { class: 'price' }, i.price ? money(i.price) : ''),
        stock(i.stock_store, 'store'),
        i.stock_online !== undefined ? stock(i.stock_online, 'online') : null)))) : null)));
  const badge = document.querySelector('[data-tab="customers"] .badge');
  badge.textContent = String(cards.size);
  badge.hidden = cards.size === 0;
}

/** Everything again from GET /v1/members (first load, or the feed says events were missed). */
export async function load() {
  const list = await get('/v1/members?limit=100');
  cards.clear();
  // The list is the latest first, and says not when each arrived: no time is shown for these.
  list.forEach((card, i) => cards.set(card.member_id, { card, at: null, rank: -i }));
  arrivals = 0;
  render();
}

/** A feed event; true when it concerned customers. */
export function onEvent(msg) {
  if (msg.type === 'member.arrived') {
    const before = cards.get(msg.data.member_id)?.card || {};
    const card = { ...before, ...msg.data };
    // A scan of a member the hub never sent a card for carries no stock_online: keep what we knew.
    arrivals += 1;
    cards.set(card.member_id, { card, at: Date.parse(msg.time) || Date.now(), rank: arrivals });
    if (cards.size > KEEP) {  // a busy day: the earliest arrivals go first (their cards expire anyway)
      const oldest = [...cards.entries()].sort((a, b) => a[1].rank - b[1].rank)[0][0];
      cards.delete(oldest);
    }
    render();
    return true;
  }
  if (msg.type === 'member.expired') {
    cards.delete(msg.data.member_id);
    render();
    return true;
  }
  return false;
}

export function clear() { cards.clear(); arrivals = 0; render(); }

export function tick() { if (cards.size) render(); }
