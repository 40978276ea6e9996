// The mirror's screen: live picture, product picker, before/after, basket, online orders.
// Everything goes through the agent's local API with the mirror's token;
// the picture is an MJPEG stream the browser shows and never stores.
// "Add to basket" goes to the counter kiosk's basket when the mirror has one
// (devices.yaml kiosk:), "Order online" places a pickup order for this store.
// Clothes (tops, jackets) are drawn on the body: the mirror says whether it sees a face close up or a
// body stepped back ("view"), and garments are grayed out until it sees the body, with each garment's
// suggested size (an estimate from the shoulders) once it does.
// A screen opened without the mirror's own token shows staff what to fix
// (showStaff) instead of a page that cannot work: never a broken picture.
"use strict";

const KINDS = [["lipstick", "Lips"], ["eyeshadow", "Eyes"], ["blush", "Cheeks"], ["glasses", "Glasses"],
               ["top", "Tops"], ["outerwear", "Jackets"]];
const BODY_KINDS = new Set(["top", "outerwear"]);
const VIEW_WORDS = { face: "Face view", body: "Body view", none: "" };
const STEP_BACK = "Step back to try on clothes";
const params = new URLSearchParams(location.search);
const hash = new URLSearchParams(location.hash.slice(1));
// The token comes after # (a fragment never leaves the browser), is kept in this tab only, and is
// sent in the Authorization header alone. One after ? went to the server in the URL: it is not used.
const token = hash.get("token") || sessionStorage.getItem("mirror-token") || "";
sessionStorage.setItem("mirror-token", token);
const tokenInQuery = params.has("token");
if (hash.has("token") || tokenInQuery) {
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
}

const $ = (id) => document.getElementById(id);
const state = { device: params.get("device"), products: [], chosen: {}, kind: "lipstick", mirrored: true, online: false,
                since: null, synced: false, kiosk: null, session: null, orderShownAt: 0,
                pending: {},  // sku -> client_order_id of an order whose answer never came, this session only
                looks: 0, lookAt: 0,
                view: "none", sizes: {} };  // what the mirror sees, and each garment's suggested size  // looks being sent, and when the last one was answered

// What an answer without a readable detail means, in words for the customer.
const STATUS_WORDS = {
  401: "This screen is not signed in to the store's system; ask an associate.",
  403: "This screen may not do that; ask an associate.",
  404: "This mirror is not set up in the store's system; ask an associate.",
  409: "There is not enough of it in stock.",
  503: "The store's system is busy for a moment; please try again.",
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { Authorization: "Bearer " + token, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      cache: "no-store",
    });
  } catch (err) {  // no answer at all: the agent is restarting or the network is down
    throw new ApiError(0, "The mirror cannot reach the store's system right now; please try again in a moment.");
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = typeof data.detail === "string" && data.detail ? data.detail : "";
    const words = STATUS_WORDS[res.status] || `Something went wrong (${res.status} ${res.statusText}).`;
    throw new ApiError(res.status, res.status === 503 ? words : (detail || words));
  }
  return data;
}

// A random (version 4) UUID: the order's idempotency key. crypto.randomUUID
// needs a secure context, which a mirror on http://<agent>:8080 is not.
function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function say(text) { $("message").textContent = text || ""; }

// Answers that mean this screen's set-up is wrong (its token, or the mirror it names), not a passing failure.
const SETUP_ERRORS = new Set([401, 403, 404]);
let unset = false;

// Replaces the page with a notice for staff: why the screen cannot work and how to open it properly.
// Nothing else runs from then on; the page looks again every 30 s, in case the agent's config is fixed.
function showStaff(why) {
  if (unset) return;
  unset = true;
  const img = $("live");
  img.onerror = null; img.removeAttribute("src");  // no stream, no broken picture, no retries
  const device = state.device || "<the mirror's device id>";
  $("staff-why").textContent = why;
  const fix = $("staff-fix");
  const url = document.createElement("code");
  url.textContent = `${location.origin}/mirror?device=${device}#token=<the mirror's token>`;
  fix.replaceChildren("Staff: open ", url, " with the token of the API client that this mirror's ",
                      Object.assign(document.createElement("code"), { textContent: "station:" }),
                      " names in devices.yaml (role mirror). The store's docs/mirror.md, \"The screen\", has the steps.");
  document.body.classList.add("unset");
  $("staff").hidden = false;
  if (token) setTimeout(() => location.reload(), 30000);
}

// The words for staff about an answer that says the set-up is wrong.
function setupWords(err) {
  if (err.status === 401) return `The store's system does not know the token this screen was opened with (${err.message}).`;
  if (err.status === 403) return `The token this screen was opened with may not show this mirror: ${err.message}.`;
  return `The store's system has no such mirror: ${err.message}.`;
}

function money(p) { return p.currency + " " + Number(p.price).toFixed(2); }

function renderKinds() {
  const nav = $("kinds");
  nav.replaceChildren(...KINDS.map(([kind, label]) => {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.setAttribute("role", "tab");
    b.setAttribute("aria-selected", String(kind === state.kind));
    b.onclick = () => { state.kind = kind; renderKinds(); renderProducts(); };
    return b;
  }));
}

// Clothes can be tried on only while the mirror sees the body: until then they are grayed out.
function clothesWait(kind) { return BODY_KINDS.has(kind) && state.view !== "body"; }

function renderProducts() {
  const list = $("products");
  const note = $("step-back");
  note.hidden = !clothesWait(state.kind);
  list.replaceChildren(...state.products.filter((p) => p.kind === state.kind).map((p) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button"; b.className = "product" + (state.chosen[p.kind] === p.sku ? " on" : "");
    if (clothesWait(p.kind) && state.chosen[p.kind] !== p.sku) { b.disabled = true; b.classList.add("grayed"); }
    const sw = document.createElement("span");
    sw.className = "swatch" + (p.kind === "glasses" ? " glasses" : BODY_KINDS.has(p.kind) ? " garment" : "");
    sw.style.background = p.shade; sw.style.borderColor = p.kind === "glasses" ? p.shade : "";
    const name = document.createElement("span"); name.textContent = p.name;
    const price = document.createElement("span"); price.className = "price"; price.textContent = money(p);
    const stock = document.createElement("span"); stock.className = "stock";
    stock.textContent = p.stock_store > 0 ? "In store now" : "Online only";
    b.append(sw, name, price, stock);
    if (p.promo) { const pr = document.createElement("span"); pr.className = "promo"; pr.textContent = p.promo; b.append(pr); }
    b.onclick = () => toggle(p);
    li.append(b);
    return li;
  }));
}

function renderChosen() {
  const box = $("chosen");
  const items = Object.values(state.chosen).map((sku) => state.products.find((p) => p.sku === sku)).filter(Boolean);
  box.replaceChildren(...items.map((p) => {
    const div = document.createElement("div"); div.className = "item";
    const name = document.createElement("span"); name.textContent = p.name + " · " + money(p);
    div.append(name);
    if (BODY_KINDS.has(p.kind)) {
      const fit = document.createElement("span"); fit.className = "fit";
      const size = state.sizes[p.sku];
      fit.textContent = state.view !== "body" ? STEP_BACK
        : size ? `Suggested size (estimate): ${size}` : "Suggested size (estimate): measuring…";
      div.append(fit);
    }
    const take = document.createElement("button"); take.type = "button"; take.className = "primary";
    take.textContent = "Add to basket"; take.disabled = p.stock_store <= 0;
    take.onclick = () => addToBasket(p);
    const order = document.createElement("button"); order.type = "button";
    order.textContent = "Order online"; order.disabled = p.stock_online <= 0;
    order.onclick = () => orderOnline(p, order);
    div.append(take, order);
    return div;
  }));
}

function renderBasket(basket) {
  const name = (line) => { const p = state.products.find((x) => x.sku === line.sku); return p ? p.name : line.sku; };
  const own = basket.lines.map((line) => {
    const li = document.createElement("li");
    li.textContent = `${line.qty} × ${name(line)} (${line.channel === "store" ? "take now" : "online order"})`;
    return li;
  });
  const atKiosk = (basket.kiosk ? basket.kiosk.lines : []).map((line) => {
    const li = document.createElement("li");
    li.textContent = `${line.qty} × ${name(line)} (pay at the kiosk)`;
    return li;
  });
  $("basket-lines").replaceChildren(...atKiosk, ...own);
}

function showOrder(order) {
  state.orderShownAt = Date.now();
  $("pickup-code").textContent = order.pickup_code;
  const where = order.store_name ? `the pickup counter of ${order.store_name}` : "the store's pickup counter";
  $("collect").textContent = `Collect it at ${where} once we tell you it is ready: show this code. ` +
    `Order ${order.order_id}, ${order.items} item${order.items === 1 ? "" : "s"}, ${order.currency} ${order.total}.`;
  $("order").hidden = false;
}

async function sendLook() {
  const compare = Number($("compare").value) / 100;
  // The slider's "before" part is on the screen's left; when the picture is
  // shown mirrored, that is the right of the picture the mirror sends.
  const side = state.mirrored ? "right" : "left";
  $("split").hidden = compare === 0;
  state.looks += 1;
  try {
    await api("PUT", `/v1/mirror/${state.device}/look`, { skus: Object.values(state.chosen), compare, compare_side: side });
    say("");
  } catch (err) { say(err.message); } finally {
    state.looks -= 1;
    state.lookAt = Date.now();
  }
}

function toggle(p) {
  if (state.chosen[p.kind] === p.sku) delete state.chosen[p.kind]; else state.chosen[p.kind] = p.sku;
  renderProducts(); renderChosen(); sendLook();
}

async function addToBasket(p) {
  try {
    renderBasket(await api("POST", `/v1/mirror/${state.device}/basket`, { sku: p.sku, qty: 1, channel: "store" }));
    say(state.kiosk ? `Added to your basket: pay at the kiosk ${state.kiosk}.`
                    : "Added to your basket: pay at the kiosk or with an associate.");
  } catch (err) { say("Not added: " + err.message); }
}

async function orderOnline(p, button) {
  // A retry after no answer (or a busy store system) keeps the order's key, so
  // an order that did go through is not placed twice; any other answer ends it.
  // The keys belong to this customer's session: the next customer never
  // replays (and so never sees) an order of the last one.
  const key = state.pending[p.sku] || (state.pending[p.sku] = uuid4());
  button.disabled = true;
  say("Ordering…");
  try {
    const order = await api("POST", `/v1/mirror/${state.device}/order`,
                            { client_order_id: key, lines: [{ sku: p.sku, qty: 1 }] });
    delete state.pending[p.sku];
    showOrder(order);
    say("Ordered online: your pickup code is on the screen.");
  } catch (err) {
    if (err.status !== 0 && err.status !== 503) delete state.pending[p.sku];
    say("Not ordered: " + err.message);
  } finally {
    button.disabled = p.stock_online <= 0;
  }
}

async function done() {
  try {
    await api("POST", `/v1/mirror/${state.device}/session/end`);
    state.chosen = {}; state.pending = {}; $("compare").value = 0;
    renderProducts(); renderChosen(); $("split").hidden = true;
    $("order").hidden = true;
    say(state.kiosk ? `Thank you! Your basket is waiting at the kiosk ${state.kiosk}.` : "Thank you! Your basket is waiting at the kiosk.");
  } catch (err) { say(err.message); }
}

// The stream is an <img>, which cannot send the token: each (re)connect gets a one-use ticket
// (POST /v1/tickets, good for 30 s) and the picture's URL carries that, never the token.
async function startStream() {
  if (unset) return;
  const img = $("live");
  img.classList.add("waiting");  // shown once a frame is decoded (onload, or the next poll), never broken
  img.onload = () => img.classList.remove("waiting");
  img.onerror = () => { img.classList.add("waiting"); setTimeout(startStream, 1000); };  // the mirror restarts
  let ticket;
  try {
    ticket = (await api("POST", "/v1/tickets", { for: "stream", device: state.device })).ticket;
  } catch (err) {
    if (SETUP_ERRORS.has(err.status)) { showStaff(setupWords(err)); return; }
    setTimeout(startStream, 1000);  // the agent is restarting, or this screen holds too many tickets
    return;
  }
  if (unset) return;
  img.src = `/v1/mirror/${state.device}/stream?ticket=${encodeURIComponent(ticket)}`;
}

async function poll() {
  try {
    const asked = Date.now();
    const s = await api("GET", `/v1/mirror/${state.device}`);
    if (s.screen === false) {
      showStaff(`This page was opened with a staff member's token, not the mirror's own: the live picture goes ` +
                `to the mirror's screen (API client ${s.station}) alone.`);
      return;
    }
    if ($("live").naturalWidth > 0) $("live").classList.remove("waiting");
    // An answer asked for before the code went up knows nothing of its order: it must not hide it.
    const stale = asked <= state.orderShownAt;
    state.mirrored = s.mirror;
    state.kiosk = s.kiosk || null;
    $("live").classList.toggle("mirrored", s.mirror);
    const online = s.state === "online" || s.state === "busy";
    $("offline").hidden = online;
    $("hint").hidden = !online || s.face;
    const view = online ? (s.view || "none") : "none";
    const sizes = s.sizes || {};
    $("view").hidden = view === "none";
    $("view").textContent = VIEW_WORDS[view];
    $("view").className = view;
    if (view !== state.view || JSON.stringify(sizes) !== JSON.stringify(state.sizes)) {
      state.view = view; state.sizes = sizes;
      renderProducts(); renderChosen();
    }
    // A new "since" while online: the mirror restarted and its old stream ended.
    if (online && (!state.online || s.since !== state.since)) startStream();
    state.online = online;
    state.since = s.since;
    if (!state.synced) {  // what the mirror already shows (set from a PAD, or before a reload)
      state.synced = true;
      for (const sku of s.look.skus) {
        const p = state.products.find((x) => x.sku === sku);
        if (p) state.chosen[p.kind] = sku;
      }
      const shown = s.look.compare_side === (state.mirrored ? "right" : "left") ? s.look.compare : 0;
      $("compare").value = Math.round(shown * 100);
      $("split").hidden = shown === 0;
      renderProducts(); renderChosen();
    } else if (!s.session && Object.keys(state.chosen).length && !s.look.skus.length && !state.looks &&
               asked > state.lookAt) {  // (an answer from before the customer's last tap knows nothing of it)
      state.chosen = {}; renderProducts(); renderChosen();  // the customer walked away: start afresh
    }
    const session = s.session ? s.session.id : null;
    if (!stale && state.session !== null && session !== state.session) {
      // That customer's session ended (walked away, or another began): their
      // pickup code and unanswered orders are theirs, not the next customer's.
      state.pending = {};
      $("order").hidden = true;
    }
    if (!stale) state.session = session;
    if (!s.session && !stale) $("order").hidden = true;  // the order was the last customer's: their code is not shown on
    renderBasket(s.basket);
    $("privacy").textContent = s.privacy;
  } catch (err) {
    if (SETUP_ERRORS.has(err.status)) { showStaff(setupWords(err)); return; }
    say(err.message);
  }
  setTimeout(poll, 1000);
}

async function main() {
  if (!token) {
    showStaff(tokenInQuery ? "This screen was opened with the token after ?, where it travels in the URL: " +
                             "put it after # instead." : "This screen was opened without the mirror's token.");
    return;
  }
  if (!state.device) {
    const mirrors = await api("GET", "/v1/mirror");
    if (!mirrors.length) { showStaff("No mirror in this store's devices.yaml names this screen's API client as its station:."); return; }
    state.device = mirrors[0].id;
  }
  $("compare").oninput = sendLook;
  $("done").onclick = done;
  state.products = await api("GET", `/v1/mirror/${state.device}/products`);
  renderKinds(); renderProducts();
  poll();
}

function start() {
  main().catch((err) => {
    if (SETUP_ERRORS.has(err.status)) { showStaff(setupWords(err)); return; }
    say(err.message);
    setTimeout(start, 3000);  // the agent is starting or busy: the screen comes up by itself
  });
}

start();
