// The storefront: plain JavaScript over the public API. Every click, product view and
// add-to-cart is posted to /v1/events, so browsing here feeds the shopper's next recommendations.
"use strict";

const TEXT = {
  en: {
    shop: "shopfusion store", search: "Search", searchPlaceholder: "Search products…", cart: "Cart",
    forYou: "Recommended for you", resultsFor: "Results for", similar: "Similar items",
    whyTitle: "Why this item?", why: "Why this?", addToCart: "Add to cart", added: "Added to cart",
    you: "You are", eventsSent: "events sent", outOfStock: "out of stock", noResults: "No results.",
    category: "Category", brand: "Brand", didYouMean: "Showing results for", searchDown: "Search is not available for this catalog yet.",
    signal: "signal", rankBy: "ranked it #",
  },
  zh: {
    shop: "shopfusion 商店", search: "搜索", searchPlaceholder: "搜索商品…", cart: "购物车",
    forYou: "为你推荐", resultsFor: "搜索结果", similar: "相似商品",
    whyTitle: "为什么推荐这件商品？", why: "为什么推荐？", addToCart: "加入购物车", added: "已加入购物车",
    you: "你的访客编号", eventsSent: "条行为已发送", outOfStock: "缺货", noResults: "没有结果。",
    category: "类目", brand: "品牌", didYouMean: "已显示以下搜索结果", searchDown: "此商品目录暂不支持搜索。",
    signal: "信号", rankBy: "排名第",
  },
};

const state = {
  lang: localStorage.getItem("sf-lang") || (navigator.language.startsWith("zh") ? "zh" : "en"),
  user: localStorage.getItem("sf-visitor") || `visitor-${Math.random().toString(36).slice(2, 10)}`,
  key: "",
  sent: 0,
  cart: 0,
  query: "",
  filters: { category: [], brand: [] },
};
localStorage.setItem("sf-visitor", state.user);

const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[state.lang][key] || TEXT.en[key] || key;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// A busy server refuses with 429/503 and a Retry-After (seconds): wait it out (at most 2 s) and
// ask again, twice at most, instead of leaving the shopper a half-drawn page.
const RETRIES = 2;

async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    for (const value of [].concat(v)) if (value !== undefined && value !== null && value !== "") url.searchParams.append(k, value);
  }
  let response = await fetch(url);
  for (let attempt = 0; attempt < RETRIES && (response.status === 429 || response.status === 503); attempt++) {
    const seconds = Math.min(Number(response.headers.get("Retry-After")) || 1, 2);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    response = await fetch(url);
  }
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.detail || response.statusText), { status: response.status });
  return body;
}

async function track(type, item, extra = {}) {
  if (!state.key) return;
  const event = { user_id: state.user, item_id: item, type, session_id: state.user, ...extra };
  const response = await fetch("/v1/events", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-API-Key": state.key },
    body: JSON.stringify({ events: [event] }),
  });
  if (response.ok) {
    state.sent += 1;
    $("tracking-status").textContent = String(state.sent);
  }
}

function price(item) {
  if (item.price === null) return "";
  const symbol = { USD: "$", CNY: "¥", EUR: "€", GBP: "£" }[item.currency] || `${item.currency} `;
  return `${symbol}${item.price.toFixed(2)}`;
}

function tile(item, position, context) {
  const open = () => {
    track("click", item.item_id, { position, query: state.query && context === "search" ? state.query : "" });
    location.hash = `#/product/${encodeURIComponent(item.item_id)}`;
  };
  return el("div", { class: "tile", "data-item": item.item_id, lang: item.language || "" },
    el("a", { class: "title", href: `#/product/${encodeURIComponent(item.item_id)}`, onclick: (e) => { e.preventDefault(); open(); } }, item.title),
    el("div", { class: "meta" }, `${item.brand} · ${item.category}`),
    el("div", { class: "price" }, price(item), item.in_stock ? "" : el("span", { class: "oos" }, ` ${t("outOfStock")}`)),
    el("button", { class: "why", type: "button", onclick: () => explain(item.item_id) }, t("why")),
  );
}

function fill(container, items, context) {
  container.replaceChildren(...(items.length ? items.map((it, i) => tile(it, i, context)) : [el("p", {}, t("noResults"))]));
}

function show(view) {
  for (const id of ["home-view", "search-view", "product-view"]) $(id).hidden = id !== view;
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

async function home() {
  show("home-view");
  notice("");
  const body = await api("/v1/recommend", { user_id: state.user, k: 12 });
  fill($("feed"), body.items, "feed");
}

async function search(query) {
  show("search-view");
  state.query = query;
  $("q").value = query;
  $("query-echo").textContent = query;
  try {
    const body = await api("/v1/search", { q: query, user_id: state.user, k: 12, category: state.filters.category, brand: state.filters.brand });
    notice("");
    $("corrected").hidden = !body.corrected_query;
    $("corrected").textContent = body.corrected_query ? `${t("didYouMean")}: ${body.corrected_query}` : "";
    fill($("results"), body.items, "search");
    facets(body.facets);
    track("search", null, { query }).catch(() => {});
  } catch (err) {
    fill($("results"), [], "search");
    $("facets").replaceChildren();
    notice(err.status === 503 ? t("searchDown") : err.message);
  }
}

function facets(all) {
  const groups = [];
  for (const [name, values] of Object.entries(all)) {
    const chosen = state.filters[name] || [];
    const list = el("ul", {}, ...values.slice(0, 12).map((v) => {
      const box = el("input", { type: "checkbox", "data-facet": name, value: v.value });
      box.checked = chosen.includes(v.value);
      box.addEventListener("change", () => {
        const set = new Set(state.filters[name] || []);
        box.checked ? set.add(v.value) : set.delete(v.value);
        state.filters[name] = [...set];
        search(state.query);
      });
      return el("li", {}, el("label", {}, box, ` ${v.value} (${v.count})`));
    }));
    groups.push(el("div", { class: "facet" }, el("h4", {}, t(name)), list));
  }
  $("facets").replaceChildren(...groups);
}

async function product(itemId) {
  show("product-view");
  notice("");
  const [item, similar] = await Promise.all([api(`/v1/items/${encodeURIComponent(itemId)}`), api(`/v1/similar/${encodeURIComponent(itemId)}`, { k: 8 })]);
  const button = el("button", { id: "add-to-cart", type: "button" }, t("addToCart"));
  button.addEventListener("click", async () => {
    await track("add_to_cart", item.item_id);
    state.cart += 1;
    $("cart-count").textContent = String(state.cart);
    button.textContent = t("added");
  });
  if (!item.in_stock) button.disabled = true;
  $("product").replaceChildren(
    el("h2", { lang: item.language || "" }, item.title),
    el("p", { class: "meta" }, `${item.brand} · ${item.category}`),
    el("p", { class: "price" }, price(item), item.in_stock ? "" : ` ${t("outOfStock")}`),
    button,
    el("button", { class: "why", type: "button", onclick: () => explain(item.item_id) }, t("why")),
  );
  fill($("similar"), similar.items, "similar");
  track("view", item.item_id).catch(() => {});
}

async function explain(itemId) {
  const body = await api("/v1/explain", { item_id: itemId, user_id: state.user, lang: state.lang });
  $("why-summary").textContent = body.summary;
  $("why-reasons").replaceChildren(...body.reasons.map((r) => el("li", {},
    el("span", { class: "bar", style: `width:${Math.round(100 * r.share)}%` }),
    el("span", {}, `${r.reason} — ${r.source} ${t("signal")}${r.rank ? `, ${t("rankBy")}${r.rank}` : ""} (${Math.round(100 * r.share)}%)`),
  )));
  $("why-panel").hidden = false;
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  $("lang").textContent = state.lang === "en" ? "中文" : "English";
}

async function route() {
  const hash = decodeURIComponent(location.hash.slice(1) || "/");
  try {
    if (hash.startsWith("/product/")) await product(hash.slice("/product/".length));
    else if (hash.startsWith("/search/")) await search(hash.slice("/search/".length));
    else await home();
  } catch (err) {
    notice(err.message);
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const query = $("q").value.trim();
  if (!query) return;
  state.filters = { category: [], brand: [] };
  const target = `#/search/${encodeURIComponent(query)}`;
  if (location.hash === target) search(query); else location.hash = target;
});
$("lang").addEventListener("click", () => {
  state.lang = state.lang === "en" ? "zh" : "en";
  localStorage.setItem("sf-lang", state.lang);
  applyLanguage();
  route();
});
$("why-close").addEventListener("click", () => { $("why-panel").hidden = true; });
window.addEventListener("hashchange", route);

(async () => {
  $("visitor").textContent = state.user;
  applyLanguage();
  try {
    state.key = (await api("/storefront/config.json")).ingest_key;
  } catch (err) {
    state.key = "";
  }
  await route();
  document.body.dataset.ready = "1";
})();
