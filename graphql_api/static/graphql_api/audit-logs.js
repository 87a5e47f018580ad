// The Audit Logs page (/audit-logs/): the seed's screen on the public GraphQL API, the
// same queries a product's frontend sends. Plain ES modules, fetch and WebSocket; no
// build step. Every value is written as text (textContent), never as markup.
//
// State lives in the URL (eventType, userEmail, search, ip, from, to, and the position: page with the
// cursor it was reached by), so a reload, the back button and a shared link show the
// same page. Who may read is the API's rule: its error codes decide what is shown.

const PAGE_SIZE = 50;
const EMAIL_DEBOUNCE_MS = 300;
const ENDPOINT = "/graphql/";

const PAGE_QUERY = `
query AuditLogPage($filter: AuditLogFilter, $first: Int, $after: String, $last: Int, $before: String) {
  auditLogs(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id event time ip details user { email name } } }
  }
}`;
// A search whose total the server will not count (TOTAL_COUNT_TOO_COSTLY): the page alone.
const PAGE_QUERY_UNCOUNTED = PAGE_QUERY.replace("    totalCount\n", "");
const TYPES_QUERY = "{ auditEventTypes { value description } }";
const FOLLOW = `
subscription Follow($filter: AuditLogFilter, $after: String) {
  auditLogCreated(filter: $filter, after: $after) {
    cursor
    node { id event time ip details user { email name } }
  }
}`;

const $ = (id) => document.getElementById(id);
const ui = {
  log: $("log"),
  paidPlan: $("paid-plan-required"),
  failure: $("failure"),
  failureMessage: $("failure-message"),
  eventType: $("event-type"),
  email: $("user-email"),
  search: $("search"),
  ip: $("ip"),
  filterProblem: $("filter-problem"),
  from: $("date-from"),
  to: $("date-to"),
  clear: $("clear-filters"),
  live: $("live"),
  liveStatus: $("live-status"),
  exportLink: $("export"),
  table: $("entries"),
  rows: document.querySelector("#entries tbody"),
  state: $("state"),
  previous: $("previous"),
  next: $("next"),
  position: $("position"),
  newEntries: $("new-entries"),
  showNew: $("show-new"),
};

const descriptions = new Map();
let current = null; // the page shown: {state, totalCount, edges}
let request = 0; // the latest page request; older answers are dropped
let uncountedFilter = ""; // the last filter whose total the server would not count (JSON)
const TOO_MANY = "too many matches to count; narrow the search or the dates to see a total";

// --- state in the URL ---------------------------------------------------------------------

function readState() {
  const q = new URLSearchParams(window.location.search);
  const page = Math.max(1, Number.parseInt(q.get("page") || "1", 10) || 1);
  return {
    eventType: q.get("eventType") || "",
    userEmail: q.get("userEmail") || "",
    search: q.get("search") || "",
    ip: q.get("ip") || "",
    from: q.get("from") || "",
    to: q.get("to") || "",
    page,
    after: page > 1 ? q.get("after") || "" : "",
    before: q.get("before") || "",
  };
}

function writeState(state, { replace = false } = {}) {
  const q = new URLSearchParams();
  for (const key of ["eventType", "userEmail", "search", "ip", "from", "to"]) {
    if (state[key]) q.set(key, state[key]);
  }
  if (state.page > 1) q.set("page", String(state.page));
  if (state.after) q.set("after", state.after);
  if (state.before) q.set("before", state.before);
  const url = `${window.location.pathname}${q.toString() ? `?${q}` : ""}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
}

// --- filters: whole days in the viewer's time zone ------------------------------------------

function localDay(value, { end = false } = {}) {
  // "2026-11-03" is that day's local midnight; `to` ends one microsecond before the next.
  const [y, m, d] = value.split("-").map(Number);
  if (!y || !m || !d) return null;
  if (!end) return new Date(y, m - 1, d).toISOString();
  const next = new Date(y, m - 1, d + 1);
  return new Date(next.getTime() - 1).toISOString().replace(/\.(\d{3})Z$/, ".$1999Z");
}

function apiFilter(state) {
  const filter = {};
  if (state.eventType) filter.eventType = state.eventType;
  if (state.userEmail.trim()) filter.userEmail = state.userEmail.trim();
  if (state.search.trim()) filter.search = state.search.trim();
  if (state.ip.trim()) filter.ip = state.ip.trim();
  if (state.from) filter.from = localDay(state.from);
  if (state.to) filter.to = localDay(state.to, { end: true });
  return filter;
}

function exportHref(state) {
  const filter = apiFilter(state);
  const q = new URLSearchParams({ format: "csv" });
  if (filter.eventType) q.set("eventType", filter.eventType);
  if (filter.userEmail) q.set("userEmail", filter.userEmail);
  if (filter.search) q.set("search", filter.search);
  if (filter.ip) q.set("ip", filter.ip);
  if (filter.from) q.set("from", filter.from);
  if (filter.to) q.set("to", filter.to);
  return `/audit-logs/export?${q}`;
}

// --- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

async function graphql(query, variables = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const csrf = cookie("csrftoken");
  if (csrf) headers["X-CSRFToken"] = csrf;
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      credentials: "same-origin",
      headers,
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("NETWORK", "The server could not be reached. Check the connection and try again.");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError("INTERNAL_SERVER_ERROR", `The server answered ${response.status}.`);
  }
  if (body.errors && body.errors.length) {
    const [first] = body.errors;
    throw new ApiError(first.extensions?.code || "ERROR", first.message);
  }
  return body.data;
}

function signIn() {
  const next = window.location.pathname + window.location.search;
  window.location.assign(`/accounts/login/?next=${encodeURIComponent(next)}`);
}

function showOnly(section) {
  for (const part of [ui.log, ui.paidPlan, ui.failure]) part.hidden = part !== section;
}

function failed(error) {
  if (error.code === "UNAUTHENTICATED") return signIn();
  if (error.code === "FORBIDDEN" || error.code === "PAID_PLAN_REQUIRED") {
    stopLive();
    return showOnly(ui.paidPlan);
  }
  if (error.code === "BAD_USER_INPUT") {
    // A filter the server refused (an address that is not one, say): the form stays, with
    // the server's reason beside it, and no entries.
    stopLive();
    ui.filterProblem.textContent = error.message;
    ui.filterProblem.hidden = false;
    ui.rows.replaceChildren();
    ui.position.textContent = "";
    ui.previous.disabled = ui.next.disabled = true;
    ui.state.textContent = "";
    return showOnly(ui.log);
  }
  ui.failureMessage.textContent = `${error.message} (${error.code})`;
  showOnly(ui.failure);
}

// --- rendering: text only --------------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});

function element(tag, { text, className, title, attrs } = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  if (title) node.title = title;
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function summary(details) {
  const entries = Object.entries(details || {});
  if (!entries.length) return "";
  const text = entries
    .map(([key, value]) => `${key}: ${typeof value === "object" && value !== null ? JSON.stringify(value) : String(value)}`)
    .join(", ");
  return text.length > 120 ? `${text.slice(0, 119)}…` : text;
}

function row(node) {
  const tr = element("tr", { attrs: { "data-id": node.id } });
  const event = element("td", { className: "event" });
  event.append(element("code", { text: node.event, title: descriptions.get(node.event) || "" }));
  const user = element("td", { className: "user" });
  if (node.user) {
    user.append(element("span", { text: node.user.email || "" }));
    if (node.user.name) user.append(element("span", { className: "name", text: node.user.name }));
  } else {
    user.append(element("span", { className: "system", text: "System (no user)" }));
  }
  const ip = element("td", { className: "ip", text: node.ip || "—" });
  const details = element("td", { className: "details" });
  const text = summary(node.details);
  if (text) {
    const disclosure = element("details");
    disclosure.append(element("summary", { text }));
    disclosure.append(element("pre", { text: JSON.stringify(node.details, null, 2) }));
    details.append(disclosure);
  } else {
    details.append(element("span", { className: "muted", text: "—" }));
  }
  const moment = new Date(node.time);
  const time = element("td", { className: "time" });
  time.append(
    element("time", {
      text: timeFormat.format(moment),
      title: `${node.time} (UTC: ${moment.toISOString()})`,
      attrs: { datetime: node.time },
    }),
  );
  tr.append(event, user, ip, details, time);
  return tr;
}

function pages(totalCount) {
  return Math.max(1, Math.ceil(totalCount / PAGE_SIZE));
}

function render() {
  const { state, totalCount, edges, pageInfo } = current;
  ui.filterProblem.hidden = true;
  ui.rows.replaceChildren(...edges.map((edge) => row(edge.node)));
  ui.state.className = "state";
  ui.state.textContent = edges.length
    ? ""
    : totalCount || (totalCount === null && state.page > 1)
      ? "There are no entries on this page."
      : "No entries match these filters.";
  ui.previous.disabled = state.page <= 1;
  ui.exportLink.href = exportHref(state);
  if (totalCount === null) {
    // Not counted: too many entries match for the server to count them on every page.
    ui.position.textContent = `Page ${state.page} (${current.uncounted})`;
    ui.next.disabled = !edges.length || !pageInfo.hasNextPage;
    return;
  }
  const last = pages(totalCount);
  ui.position.textContent = `Page ${Math.min(state.page, last)} of ${last} (${totalCount.toLocaleString()} total)`;
  ui.next.disabled = state.page >= last || !edges.length;
}

function fillControls(state) {
  ui.eventType.value = state.eventType;
  if (document.activeElement !== ui.email) ui.email.value = state.userEmail;
  if (document.activeElement !== ui.search) ui.search.value = state.search;
  if (document.activeElement !== ui.ip) ui.ip.value = state.ip;
  ui.from.value = state.from;
  ui.to.value = state.to;
}

// --- loading a page --------------------------------------------------------------------------

async function load(state) {
  const mine = ++request;
  fillControls(state);
  ui.table.setAttribute("aria-busy", "true");
  ui.state.className = "state";
  if (!current) ui.state.textContent = "Loading…";
  const variables = { filter: apiFilter(state) };
  if (state.before) Object.assign(variables, { last: PAGE_SIZE, before: state.before });
  else Object.assign(variables, { first: PAGE_SIZE, after: state.after || null });
  try {
    let data;
    let uncounted = "";
    const filterKey = JSON.stringify(variables.filter);
    try {
      // A filter already found too broad to count is not counted again on every page.
      data = await graphql(filterKey === uncountedFilter ? PAGE_QUERY_UNCOUNTED : PAGE_QUERY, variables);
      if (filterKey === uncountedFilter) uncounted = TOO_MANY;
    } catch (error) {
      if (error.code !== "TOTAL_COUNT_TOO_COSTLY") throw error;
      uncounted = TOO_MANY;
      uncountedFilter = filterKey;
      data = await graphql(PAGE_QUERY_UNCOUNTED, variables);
    }
    if (mine !== request) return;
    current = {
      state,
      totalCount: uncounted ? null : data.auditLogs.totalCount,
      uncounted,
      edges: data.auditLogs.edges,
      pageInfo: data.auditLogs.pageInfo,
    };
    showOnly(ui.log);
    render();
    hideNewEntries();
    if (ui.live.checked) follow();
  } catch (error) {
    if (mine === request) failed(error);
  } finally {
    if (mine === request) ui.table.removeAttribute("aria-busy");
  }
}

function go(changes, options) {
  const state = { ...readState(), ...changes };
  writeState(state, options);
  return load(state);
}

function filtersChanged(changes, options) {
  // A new filter starts again at page 1.
  return go({ ...changes, page: 1, after: "", before: "" }, options);
}

// --- live: auditLogCreated over the WebSocket --------------------------------------------------

let socket = null;
let following = ""; // the filter the socket follows (JSON)
let unseen = 0;

function stopLive() {
  if (socket) socket.close(1000);
  socket = null;
  following = "";
  ui.liveStatus.textContent = "";
}

function showingNewest() {
  const state = current?.state;
  return Boolean(state && state.page === 1 && !state.after && !state.before);
}

function follow() {
  const filter = apiFilter(readState());
  // From the newest entry shown, so that nothing recorded since the page was read is
  // missed (the stream replays what is newer, then goes live); elsewhere, from now on.
  const after = showingNewest() ? current.edges[0]?.cursor || null : null;
  const key = JSON.stringify(filter);
  if (socket && following === key) return;
  stopLive();
  following = key;
  const url = new URL(ENDPOINT, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url, "graphql-transport-ws");
  socket = ws;
  ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "connection_init", payload: {} })));
  ws.addEventListener("message", (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "connection_ack") {
      const variables = { filter, after };
      ws.send(JSON.stringify({ id: "live", type: "subscribe", payload: { query: FOLLOW, variables } }));
      ui.liveStatus.textContent = "Live: new entries appear as they are recorded.";
    } else if (data.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    } else if (data.type === "next") {
      if (data.payload.errors) return liveFailed(data.payload.errors[0]);
      arrived(data.payload.data.auditLogCreated);
    } else if (data.type === "error") {
      liveFailed(data.payload[0]);
    }
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    socket = null;
    following = "";
    if (ui.live.checked) {
      ui.liveStatus.textContent = `Live updates stopped (${event.reason || "the connection closed"}). Switch Live off and on to resume.`;
    }
  });
}

function liveFailed(error) {
  const code = error?.extensions?.code || "ERROR";
  if (code === "FORBIDDEN" || code === "PAID_PLAN_REQUIRED" || code === "UNAUTHENTICATED") {
    ui.live.checked = false;
    stopLive();
    return failed(new ApiError(code, error.message));
  }
  ui.liveStatus.textContent = `Live updates stopped: ${error?.message || code}`;
}

function arrived(edge) {
  if (showingNewest()) {
    if (current.edges.some((shown) => shown.node.id === edge.node.id)) return;
    current.edges = [edge, ...current.edges].slice(0, PAGE_SIZE);
    if (current.totalCount !== null) current.totalCount += 1;
    render();
    return;
  }
  unseen += 1;
  ui.showNew.textContent = `${unseen} new ${unseen === 1 ? "entry" : "entries"}: show the newest`;
  ui.newEntries.hidden = false;
}

function hideNewEntries() {
  unseen = 0;
  ui.newEntries.hidden = true;
}

// --- wiring ----------------------------------------------------------------------------------

async function loadEventTypes() {
  try {
    const data = await graphql(TYPES_QUERY);
    for (const { value, description } of data.auditEventTypes) {
      descriptions.set(value, description);
      ui.eventType.append(element("option", { text: `${value} — ${description}`, attrs: { value } }));
    }
  } catch (error) {
    if (error.code === "UNAUTHENTICATED") signIn();
  }
}

function typed(input, key) {
  // A text filter applies once typing pauses (and at once on Enter).
  let timer = 0;
  const apply = () => {
    clearTimeout(timer);
    const value = input.value;
    if (value.trim() !== readState()[key].trim()) filtersChanged({ [key]: value });
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(apply, EMAIL_DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") apply();
  });
}

function wire() {
  ui.eventType.addEventListener("change", () => filtersChanged({ eventType: ui.eventType.value }));
  typed(ui.email, "userEmail");
  typed(ui.search, "search");
  typed(ui.ip, "ip");
  ui.from.addEventListener("change", () => filtersChanged({ from: ui.from.value }));
  ui.to.addEventListener("change", () => filtersChanged({ to: ui.to.value }));
  ui.clear.addEventListener("click", () => {
    ui.email.value = ui.search.value = ui.ip.value = "";
    filtersChanged({ eventType: "", userEmail: "", search: "", ip: "", from: "", to: "" });
  });
  document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  ui.next.addEventListener("click", () => {
    if (!current || !current.edges.length) return;
    const last = current.edges[current.edges.length - 1].cursor;
    go({ page: current.state.page + 1, after: last, before: "" });
  });
  ui.previous.addEventListener("click", () => {
    if (!current || current.state.page <= 1) return;
    const first = current.edges[0]?.cursor;
    go({ page: current.state.page - 1, before: first || "", after: "" });
  });
  ui.showNew.addEventListener("click", () => go({ page: 1, after: "", before: "" }));
  ui.live.addEventListener("change", () => (ui.live.checked ? follow() : stopLive()));
  $("retry").addEventListener("click", () => load(readState()));
  window.addEventListener("popstate", () => load(readState()));
}

wire();
await loadEventTypes();
await load(readState());
