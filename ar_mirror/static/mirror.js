// The mirror's screen: live picture, product picker, before/after, basket.
// Everything goes through the agent's local API with the mirror's token;
// the picture is an MJPEG stream the browser shows and never stores.
"use strict";

const KINDS = [["lipstick", "Lips"], ["eyeshadow", "Eyes"], ["blush", "Cheeks"], ["glasses", "Glasses"]];
const params = new URLSearchParams(location.search);
const hash = new URLSearchParams(location.hash.slice(1));
const token = hash.get("token") || params.get("token") || sessionStorage.getItem("mirror-token") || "";
sessionStorage.setItem("mirror-token", token);
if (hash.has("token") || params.has("token")) {
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
}

const $ = (id) => document.getElementById(id);
const state = { device: params.get("device"), products: [], chosen: {}, kind: "lipstick", mirrored: true, online: false,
                since: null, synced: false };

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + token, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    cache: "no-store",
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.detail || res.statusText);
  return data;
}

function say(text) { $("message").textContent = text || ""; }

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

function renderProducts() {
  const list = $("products");
  list.replaceChildren(...state.products.filter((p) => p.kind === state.kind).map((p) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button"; b.className = "product" + (state.chosen[p.kind] === p.sku ? " on" : "");
    const sw = document.createElement("span");
    sw.className = "swatch" + (p.kind === "glasses" ? " glasses" : "");
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
    const take = document.createElement("button"); take.type = "button"; take.className = "primary";
    take.textContent = "Add to basket"; take.disabled = p.stock_store <= 0;
    take.onclick = () => addToBasket(p, "store");
    const order = document.createElement("button"); order.type = "button";
    order.textContent = "Order online"; order.disabled = p.stock_online <= 0;
    order.onclick = () => addToBasket(p, "online");
    div.append(name, take, order);
    return div;
  }));
}

function renderBasket(basket) {
  $("basket-lines").replaceChildren(...basket.lines.map((line) => {
    const p = state.products.find((x) => x.sku === line.sku);
    const li = document.createElement("li");
    li.textContent = `${line.qty} × ${p ? p.name : line.sku} (${line.channel === "store" ? "take now" : "online order"})`;
    return li;
  }));
}

async function sendLook() {
  const compare = Number($("compare").value) / 100;
  // The slider's "before" part is on the screen's left; when the picture is
  // shown mirrored, that is the right of the picture the mirror sends.
  const side = state.mirrored ? "right" : "left";
  $("split").hidden = compare === 0;
  try {
    await api("PUT", `/v1/mirror/${state.device}/look`, { skus: Object.values(state.chosen), compare, compare_side: side });
    say("");
  } catch (err) { say(err.message); }
}

function toggle(p) {
  if (state.chosen[p.kind] === p.sku) delete state.chosen[p.kind]; else state.chosen[p.kind] = p.sku;
  renderProducts(); renderChosen(); sendLook();
}

async function addToBasket(p, channel) {
  try {
    renderBasket(await api("POST", `/v1/mirror/${state.device}/basket`, { sku: p.sku, qty: 1, channel }));
    say(channel === "store" ? "Added: pay at the kiosk or with an associate." : "Added as an online order.");
  } catch (err) { say(err.message); }
}

async function done() {
  try {
    await api("POST", `/v1/mirror/${state.device}/session/end`);
    state.chosen = {}; $("compare").value = 0;
    renderProducts(); renderChosen(); $("split").hidden = true;
    say("Thank you! Your basket is waiting at the kiosk.");
  } catch (err) { say(err.message); }
}

function startStream() {
  const img = $("live");
  img.onerror = () => setTimeout(startStream, 1000);  // the mirror restarts: try again
  img.src = `/v1/mirror/${state.device}/stream?token=${encodeURIComponent(token)}&t=${Date.now()}`;
}

async function poll() {
  try {
    const s = await api("GET", `/v1/mirror/${state.device}`);
    state.mirrored = s.mirror;
    $("live").classList.toggle("mirrored", s.mirror);
    const online = s.state === "online" || s.state === "busy";
    $("offline").hidden = online;
    $("hint").hidden = !online || s.face;
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
    } else if (!s.session && Object.keys(state.chosen).length && !s.look.skus.length) {
      state.chosen = {}; renderProducts(); renderChosen();  // the customer walked away: start afresh
    }
    renderBasket(s.basket);
    $("privacy").textContent = s.privacy;
  } catch (err) { say(err.message); }
  setTimeout(poll, 1000);
}

async function main() {
  if (!token) { say("Open this page with #token=<the mirror's token>."); return; }
  if (!state.device) {
    const mirrors = await api("GET", "/v1/mirror");
    if (!mirrors.length) { say("No mirror is configured for this screen."); return; }
    state.device = mirrors[0].id;
  }
  $("compare").oninput = sendLook;
  $("done").onclick = done;
  state.products = await api("GET", `/v1/mirror/${state.device}/products`);
  renderKinds(); renderProducts();
  poll();
}

main().catch((err) => say(err.message));
