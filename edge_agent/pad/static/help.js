// Help requests from kiosks: GET /v1/assist (open and recently taken, oldest first), assist.* on the
// feed, and "Take" (POST /v1/assist/{id}/take): the kiosk is told who is coming; taken already by
// someone else is said with their name. The one who took it closes it with "Done".

import { ApiError, get, post } from './api.js';
import { $, ago, busy, buzz, el, say } from './ui.js';

const REASONS = {
  age_check: 'Age check',
  item_wont_scan: 'An item will not scan',
  payment_problem: 'Payment problem',
  other: 'Needs help',
};
const requests = new Map();  // assist_id -> request
let me = null;

export function setMe(name) { me = name; }

function fail(err) {
  say('help-msg', err instanceof ApiError && err.status === 409 ? err.message : `Not taken: ${err.message}`, 'error');
}

function card(r) {
  const mine = r.state === 'taken' && r.taken_by === me;
  const state = r.state === 'open' ? el('span', { class: 'state open' }, 'waiting')
    : el('span', { class: 'state taken' }, mine ? 'you are going' : `taken by ${r.taken_by}`);
  const li = el('li', { class: `card assist ${r.state}`, 'data-assist': r.assist_id },
    el('div', { class: 'row' }, el('strong', {}, r.station), state, el('span', { class: 'when' }, ago(r.created_at))),
    el('p', { class: 'reason' }, REASONS[r.reason] || r.reason),
    r.note ? el('p', { class: 'note' }, r.note) : null);
  if (r.state === 'open') {
    const take = el('button', { type: 'button', class: 'primary big' }, 'Take');
    take.addEventListener('click', busy(take, async () => {
      const taken = await post(`/v1/assist/${encodeURIComponent(r.assist_id)}/take`);
      requests.set(taken.assist_id, taken);
      say('help-msg', `${r.station}: the kiosk is told you are coming.`, 'ok');
      render();
    }, fail));
    li.append(take);
  } else if (mine) {
    const done = el('button', { type: 'button', class: 'big' }, 'Done');
    done.addEventListener('click', busy(done, async () => {
      await post(`/v1/assist/${encodeURIComponent(r.assist_id)}/done`);
      requests.delete(r.assist_id);
      say('help-msg', '');
      render();
    }, (err) => say('help-msg', err.message, 'error')));
    li.append(done);
  }
  return li;
}

function render() {
  const shown = [...requests.values()].filter((r) => r.state === 'open' || r.state === 'taken')
    .sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
  $('help-empty').hidden = shown.length > 0;
  $('help').replaceChildren(...shown.map(card));
  const open = shown.filter((r) => r.state === 'open').length;
  const badge = document.querySelector('[data-tab="help"] .badge');
  badge.textContent = String(open);
  badge.hidden = open === 0;
  badge.classList.toggle('urgent', open > 0);
}

export async function load() {
  let list;
  try {
    list = await get('/v1/assist');
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) { list = []; } else { throw err; }
  }
  requests.clear();
  for (const r of list) requests.set(r.assist_id, r);
  render();
}

export function onEvent(msg) {
  if (!msg.type.startsWith('assist.')) return false;
  const r = msg.data;
  if (!r || !r.assist_id) return true;
  if (msg.type === 'assist.closed' || r.state === 'done' || r.state === 'cancelled') requests.delete(r.assist_id);
  else requests.set(r.assist_id, r);
  if (msg.type === 'assist.requested') buzz([200, 100, 200, 100, 200]);
  render();
  return true;
}

export function clear() { requests.clear(); render(); say('help-msg', ''); }

export function tick() { if (requests.size) render(); }
