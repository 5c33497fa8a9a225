// The webmail: sign-in, mailboxes, the message list, the reader and keyboard shortcuts.
// Everything goes through JMAP (jmap.js); auth.js holds the session token; compose.js writes and
// sends; push.js (JMAP over WebSocket) keeps the view current, or polling where the server offers
// no push.
import { onSessionEnd, signIn, signOut, signedIn } from "./auth.js";
import { openCompose, setupCompose } from "./compose.js";
import { AuthError, Jmap, ref } from "./jmap.js";
import { startPush } from "./push.js";
import { sanitize, srcdoc } from "./sanitize.js";

const PAGE = 50;
const POLL_MS = 5000;
const ROLE_ORDER = ["inbox", "drafts", "sent", "archive", "flagged", "all", "junk", "trash"];
const LIST_PROPERTIES = ["id", "threadId", "mailboxIds", "keywords", "from", "subject", "preview", "receivedAt", "hasAttachment"];
const READ_PROPERTIES = [
  "id", "blobId", "threadId", "mailboxIds", "keywords", "from", "to", "cc", "replyTo", "subject", "sentAt",
  "receivedAt", "messageId", "references", "textBody", "htmlBody", "attachments", "bodyValues",
];

const $ = (id) => document.getElementById(id);

export const state = {
  jmap: null,
  mailboxes: [],
  mailboxId: null,
  search: "",
  position: 0,
  total: 0,
  emails: [],
  threads: {},
  selected: -1,
  open: null, // the Email shown in the reader
  remoteHtml: null,
  emailState: null,
  stopLive: null,
};

export function status(text) {
  $("status").textContent = text;
}

export function mailboxByRole(role) {
  return state.mailboxes.find((m) => m.role === role);
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function addressText(list) {
  return (list || []).map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(", ");
}

function shortDate(iso) {
  const date = new Date(iso);
  const now = new Date();
  if (date.toDateString() === now.toDateString()) return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return date.toLocaleDateString([], { year: date.getFullYear() === now.getFullYear() ? undefined : "numeric", month: "short", day: "numeric" });
}

// --- sign-in -------------------------------------------------------------------------------

async function onLogin(event) {
  event.preventDefault();
  const user = $("login-user").value.trim();
  $("login-error").textContent = "";
  $("login-submit").disabled = true;
  try {
    await signIn(user, $("login-password").value);
    state.jmap = await Jmap.connect();
  } catch (error) {
    await signOut();
    $("login-error").textContent = error instanceof AuthError ? "Wrong address or password." : String(error.message || error);
    return;
  } finally {
    $("login-submit").disabled = false;
  }
  $("login-password").value = "";
  await enterApp();
}

// A reload finds the tab's token (auth.js) and goes on without asking for the password again.
async function resume() {
  if (!signedIn()) return;
  $("login-view").hidden = true;
  try {
    state.jmap = await Jmap.connect();
  } catch (error) {
    showLogin(error instanceof AuthError ? "" : String(error.message || error));
    return;
  }
  await enterApp();
}

async function enterApp() {
  $("login-view").hidden = true;
  $("app").hidden = false;
  $("whoami").textContent = state.jmap.session.username;
  await loadMailboxes();
  await showMailbox(mailboxByRole("inbox")?.id || state.mailboxes[0]?.id);
  startLive();
}

function showLogin(message) {
  if (state.stopLive) state.stopLive();
  state.stopLive = null;
  state.jmap = null;
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  // Nothing of the mailbox stays in the page, even hidden.
  closeReader();
  for (const id of ["mailbox-list", "message-list", "page-info", "whoami"]) $(id).replaceChildren();
  $("app").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  $("login-password").value = "";
  $("login-password").focus();
}

// The server refused the token (revoked, expired, password changed): back to the sign-in form.
function sessionEnded() {
  showLogin("Your session has ended: sign in again.");
}

async function onSignOut() {
  if (state.stopLive) state.stopLive();
  state.stopLive = null;
  await signOut(); // revokes the token on the server
  location.reload(); // a clean page: nothing of the mailbox is left in memory
}

// --- mailboxes -----------------------------------------------------------------------------

function sortMailboxes(list) {
  const rank = (m) => (m.role && ROLE_ORDER.includes(m.role) ? ROLE_ORDER.indexOf(m.role) : ROLE_ORDER.length);
  return list.sort((a, b) => rank(a) - rank(b) || (a.sortOrder || 0) - (b.sortOrder || 0) || a.name.localeCompare(b.name));
}

async function loadMailboxes() {
  const answers = await state.jmap.request([["Mailbox/get", { properties: ["id", "name", "role", "parentId", "sortOrder", "totalEmails", "unreadEmails"] }, "m"]]);
  setMailboxes(answers.m.list);
}

function setMailboxes(list) {
  state.mailboxes = sortMailboxes(list);
  const ul = $("mailbox-list");
  ul.replaceChildren(
    ...state.mailboxes.map((m) => {
      const count = m.unreadEmails ? element("span", { class: "count", "aria-label": `${m.unreadEmails} unread` }, String(m.unreadEmails)) : null;
      const link = element("a", { href: "#", dataset: { id: m.id, role: m.role || "" }, onclick: (e) => { e.preventDefault(); showMailbox(m.id); } }, element("span", { class: "name" }, m.name), count);
      if (m.id === state.mailboxId && !state.search) link.setAttribute("aria-current", "true");
      return element("li", {}, link);
    }),
  );
  const move = $("move");
  move.replaceChildren(element("option", { value: "" }, "…"), ...state.mailboxes.map((m) => element("option", { value: m.id }, m.name)));
}

async function showMailbox(id) {
  state.mailboxId = id;
  state.search = "";
  $("search-input").value = "";
  state.position = 0;
  closeReader();
  setMailboxes(state.mailboxes);
  await loadList();
}

// --- the message list ----------------------------------------------------------------------

function listFilter() {
  if (state.search) return { text: state.search };
  return { inMailbox: state.mailboxId };
}

// keepSelection: a refresh in the background, which leaves the selection and the status line be.
export async function loadList(keepSelection = false) {
  if (!keepSelection) status("Loading…");
  showList(await state.jmap.request(listCalls()), keepSelection);
  if (!keepSelection) status("");
}

// The list view's calls, answered under the ids q, g and t.
function listCalls() {
  return [
    ["Email/query", { filter: listFilter(), sort: [{ property: "receivedAt", isAscending: false }], collapseThreads: true, position: state.position, limit: PAGE, calculateTotal: true }, "q"],
    ["Email/get", { "#ids": ref("q", "Email/query", "/ids"), properties: LIST_PROPERTIES }, "g"],
    ["Thread/get", { "#ids": ref("g", "Email/get", "/list/*/threadId") }, "t"],
  ];
}

function showList(answers, keepSelection) {
  // The selection as it is now: the user may have moved it while the request was out.
  const selectedId = state.emails[state.selected]?.id;
  state.total = answers.q.total ?? answers.g.list.length;
  const byId = new Map(answers.g.list.map((e) => [e.id, e]));
  state.emails = answers.q.ids.map((id) => byId.get(id)).filter(Boolean);
  state.threads = Object.fromEntries(answers.t.list.map((t) => [t.id, t.emailIds.length]));
  state.emailState = answers.g.state;
  let index = keepSelection ? state.emails.findIndex((e) => e.id === selectedId) : -1;
  if (index < 0 && keepSelection) index = Math.min(state.selected, state.emails.length - 1);
  state.selected = index;
  renderList();
}

function renderList() {
  const mailbox = state.mailboxes.find((m) => m.id === state.mailboxId);
  $("list-title").textContent = state.search ? `Search: ${state.search}` : mailbox?.name || "";
  const ul = $("message-list");
  ul.replaceChildren(
    ...state.emails.map((email, index) => {
      const unread = !email.keywords?.$seen;
      const flagged = Boolean(email.keywords?.$flagged);
      const count = state.threads[email.threadId];
      const from = addressText((email.from || []).map((a) => ({ email: a.name || a.email })));
      const li = element(
        "li",
        { role: "option", id: `msg-${index}`, "aria-selected": String(index === state.selected), class: [unread ? "unread" : "", flagged ? "flagged" : ""].join(" ").trim(), dataset: { id: email.id, index: String(index) }, onclick: () => { select(index); openSelected(); } },
        element("span", { class: "from" }, flagged ? element("span", { class: "mark", "aria-label": "flagged" }, "★") : null, unread ? element("span", { class: "mark", "aria-label": "unread" }, "●") : null, from || "(no sender)", count > 1 ? ` (${count})` : ""),
        element("time", { class: "date", datetime: email.receivedAt }, shortDate(email.receivedAt)),
        element("span", { class: "subject" }, email.hasAttachment ? "📎 " : "", email.subject || "(no subject)"),
        element("span", { class: "preview" }, email.preview || ""),
      );
      return li;
    }),
  );
  if (state.selected >= 0) ul.setAttribute("aria-activedescendant", `msg-${state.selected}`);
  const last = Math.min(state.position + PAGE, state.total);
  $("page-info").textContent = state.total ? `${state.position + 1}–${last} of ${state.total}` : "No messages";
  $("newer").disabled = state.position === 0;
  $("older").disabled = last >= state.total;
}

function select(index) {
  if (index < 0 || index >= state.emails.length) return;
  state.selected = index;
  for (const li of $("message-list").children) li.setAttribute("aria-selected", String(Number(li.dataset.index) === index));
  $("message-list").setAttribute("aria-activedescendant", `msg-${index}`);
  $(`msg-${index}`)?.scrollIntoView({ block: "nearest" });
}

async function page(delta) {
  const position = Math.max(0, state.position + delta * PAGE);
  if (position >= state.total && delta > 0) return;
  state.position = position;
  state.selected = -1;
  await loadList();
}

// --- reading -------------------------------------------------------------------------------

function openSelected() {
  const email = state.emails[state.selected];
  if (email) openEmail(email.id);
}

export async function openEmail(id) {
  status("Opening…");
  const answers = await state.jmap.request([
    ["Email/get", { ids: [id], properties: READ_PROPERTIES, fetchHTMLBodyValues: true, fetchTextBodyValues: true }, "r"],
    ["Thread/get", { "#ids": ref("r", "Email/get", "/list/*/threadId") }, "t"],
    ["Email/get", { "#ids": ref("t", "Thread/get", "/list/*/emailIds"), properties: ["id", "from", "subject", "receivedAt", "mailboxIds"] }, "te"],
  ]);
  const email = answers.r.list[0];
  if (!email) {
    status("That message is gone.");
    return;
  }
  state.open = email;
  renderReader(email, answers.te.list);
  status("");
  if (!email.keywords?.$seen) {
    await state.jmap.request([["Email/set", { update: { [id]: { "keywords/$seen": true } } }, "s"]]);
    email.keywords = { ...email.keywords, $seen: true };
    await refresh();
  }
}

function bodyText(email, parts) {
  return (parts || []).map((p) => email.bodyValues?.[p.partId]?.value || "").join("\n");
}

export function readableText(email) {
  const text = bodyText(email, email.textBody);
  if (text.trim()) return text;
  const html = bodyText(email, (email.htmlBody || []).filter((p) => p.type === "text/html"));
  return new DOMParser().parseFromString(html, "text/html").body.textContent || "";
}

function renderReader(email, threadEmails) {
  $("reader").hidden = false;
  $("reader-subject").textContent = email.subject || "(no subject)";
  const meta = [["From", addressText(email.from)], ["To", addressText(email.to)], ["Cc", addressText(email.cc)], ["Date", new Date(email.sentAt || email.receivedAt).toLocaleString()]];
  $("reader-meta").replaceChildren(...meta.filter(([, v]) => v).flatMap(([k, v]) => [element("dt", {}, k), element("dd", {}, v)]));
  const htmlParts = (email.htmlBody || []).filter((p) => p.type === "text/html");
  const frame = $("reader-html");
  const text = $("reader-text");
  if (htmlParts.length) {
    state.remoteHtml = bodyText(email, htmlParts);
    const clean = sanitize(state.remoteHtml);
    // Shown before it is filled: Chromium leaves a sandboxed frame filled while display:none blank.
    frame.hidden = false;
    frame.srcdoc = srcdoc(clean.html);
    text.hidden = true;
    $("remote-images").hidden = clean.remoteImages === 0;
  } else {
    state.remoteHtml = null;
    frame.hidden = true;
    frame.srcdoc = "";
    text.textContent = bodyText(email, email.textBody);
    text.hidden = false;
    $("remote-images").hidden = true;
  }
  $("attachments").replaceChildren(
    ...(email.attachments || []).map((a) =>
      element("li", {}, element("a", { href: "#", class: "attachment", dataset: { blobId: a.blobId }, onclick: (e) => { e.preventDefault(); guard(download)(a); } }, `⬇ ${a.name || "attachment"} (${Math.ceil((a.size || 0) / 1024)} KB)`)),
    ),
  );
  const others = (threadEmails || []).filter((e) => e.id !== email.id);
  $("thread").replaceChildren(
    ...(others.length ? [element("li", {}, `${others.length + 1} messages in this conversation:`)] : []),
    ...others.map((e) => element("li", {}, element("a", { href: "#", onclick: (ev) => { ev.preventDefault(); openEmail(e.id); } }, `${addressText(e.from)} — ${e.subject || ""} — ${shortDate(e.receivedAt)}`))),
  );
  const flagged = Boolean(email.keywords?.$flagged);
  $("flag").setAttribute("aria-pressed", String(flagged));
  $("flag").textContent = flagged ? "Unflag" : "Flag";
  $("edit-draft").hidden = !email.keywords?.$draft;
  $("move").value = "";
}

function loadRemoteImages() {
  if (state.remoteHtml === null) return;
  $("reader-html").srcdoc = srcdoc(sanitize(state.remoteHtml, { remoteImages: true }).html);
  $("remote-images").hidden = true;
}

// Saves a blob as a file: small ones come as bytes and are saved from an object URL; large ones
// come as a presigned S3 URL, opened in this tab (S3 answers with Content-Disposition: attachment,
// so the browser saves it and the page stays).
async function download(file) {
  const name = file.name || "attachment";
  status(`Downloading ${name}…`);
  const got = await state.jmap.download(file.blobId, name, file.type);
  const href = got.url || URL.createObjectURL(got.blob);
  const link = element("a", { href, download: name, rel: "noreferrer" });
  document.body.append(link);
  link.click();
  link.remove();
  if (!got.url) setTimeout(() => URL.revokeObjectURL(href), 10000);
  status("");
}

// The open message as it is stored (RFC 5322), as SUBJECT.eml.
function downloadMessage() {
  const email = state.open;
  if (!email) return Promise.resolve();
  const subject = (email.subject || "").replace(/[\\/:*?"<>|\u0000-\u001f]+/g, " ").trim().slice(0, 80);
  return download({ blobId: email.blobId, name: `${subject || "message"}.eml`, type: "message/rfc822" });
}

function closeReader() {
  state.open = null;
  state.remoteHtml = null;
  $("reader-html").srcdoc = "";
  $("reader").hidden = true;
  $("message-list").focus();
}

// --- actions -------------------------------------------------------------------------------

function target() {
  return state.open || state.emails[state.selected] || null;
}

async function setKeyword(keyword, value) {
  const email = target();
  if (!email) return;
  await state.jmap.request([["Email/set", { update: { [email.id]: { [`keywords/${keyword}`]: value ? true : null } } }, "k"]]);
  email.keywords = { ...email.keywords, [keyword]: value || undefined };
  if (state.open?.id === email.id) renderReader(state.open, []);
  await refresh();
}

async function moveTo(mailboxId) {
  const email = target();
  if (!email || !mailboxId) return;
  // One Email is in one mailbox here (docs/jmap.md): a move replaces mailboxIds; the Email gets a new id.
  await state.jmap.request([["Email/set", { update: { [email.id]: { mailboxIds: { [mailboxId]: true } } } }, "m"]]);
  closeReader();
  await refresh(true);
  status("Moved.");
}

async function remove() {
  const email = target();
  if (!email) return;
  const trash = mailboxByRole("trash");
  const inTrash = trash && email.mailboxIds?.[trash.id];
  if (!trash || inTrash) {
    await state.jmap.request([["Email/set", { destroy: [email.id] }, "d"]]);
  } else {
    await state.jmap.request([["Email/set", { update: { [email.id]: { mailboxIds: { [trash.id]: true } } } }, "d"]]);
  }
  closeReader();
  await refresh(true);
  status(inTrash || !trash ? "Deleted for good." : "Moved to Trash.");
}

async function search(event) {
  event.preventDefault();
  state.search = $("search-input").value.trim();
  state.position = 0;
  closeReader();
  if (!state.search) return showMailbox(state.mailboxId);
  setMailboxes(state.mailboxes);
  await loadList();
}

// --- live updates ----------------------------------------------------------------------------

const MAILBOX_GET = ["Mailbox/get", { properties: ["id", "name", "role", "parentId", "sortOrder", "totalEmails", "unreadEmails"] }, "m"];

// On push: the server said which states moved, so no Email/changes is needed to know that the
// list may have: one request, the counts and (if Emails moved) the list again.
async function pushed(types) {
  const calls = [MAILBOX_GET, ...(types.has("Email") ? listCalls() : [])];
  const answers = await state.jmap.request(calls);
  setMailboxes(answers.m.list);
  if (answers.q) showList(answers, true);
}

// Counts and the list again, keeping the selection.
export async function refresh(force = false) {
  const calls = [MAILBOX_GET];
  if (state.emailState) calls.push(["Email/changes", { sinceState: state.emailState, maxChanges: 200 }, "c"]);
  const responses = await state.jmap.batch(calls);
  let changed = force || !state.emailState;
  for (const [name, args] of responses) {
    if (name === "Mailbox/get") setMailboxes(args.list);
    else if (name === "Email/changes") changed ||= args.created.length + args.updated.length + args.destroyed.length > 0;
    else if (name === "error") changed = true; // cannotCalculateChanges: list again
  }
  if (changed) await loadList(true);
}

function startLive() {
  const stop = startPush(state.jmap, {
    onChange: pushed,
    resync: () => refresh(),
    onLive: (live) => {
      document.body.dataset.live = live ? "push" : "reconnecting";
      $("live").textContent = live ? "" : "Reconnecting…";
    },
  });
  if (stop) {
    state.stopLive = () => {
      stop();
      delete document.body.dataset.live;
    };
    return;
  }
  // No push offered: poll (one small request: Mailbox/get + Email/changes) while the page is visible.
  document.body.dataset.live = "poll";
  const timer = setInterval(() => {
    if (document.visibilityState === "visible") refresh().catch((e) => status(`Offline? ${e.message || e}`));
  }, POLL_MS);
  state.stopLive = () => {
    clearInterval(timer);
    delete document.body.dataset.live;
  };
}

// --- keyboard ------------------------------------------------------------------------------

async function markUnread() {
  await setKeyword("$seen", false);
  closeReader();
}

function next(step) {
  select(Math.min(Math.max(state.selected + step, 0), state.emails.length - 1));
  if (state.open) openSelected();
}

function toggleHelp() {
  const help = $("help");
  if (help.open) help.close();
  else help.showModal();
}

// The one list of shortcuts: the key map and the help dialog (?) are both made from it.
// Keys are KeyboardEvent.key values; the first of each is the one shown first in the help.
const SHORTCUTS = [
  [["j"], "Next message", () => next(1)],
  [["k"], "Previous message", () => next(-1)],
  [["Enter", "o"], "Open the message", () => openSelected()],
  [["Escape"], "Close the message, back to the list", () => closeReader()],
  [["r"], "Reply", () => state.open && openCompose("reply", state.open)],
  [["a"], "Reply to all", () => state.open && openCompose("replyAll", state.open)],
  [["f"], "Forward", () => state.open && openCompose("forward", state.open)],
  [["c"], "Compose a new message", () => openCompose("new")],
  [["#", "Delete"], "Delete (to Trash; from Trash for good)", () => remove()],
  [["s"], "Flag or unflag (star)", () => { const e = target(); if (e) return setKeyword("$flagged", !e.keywords?.$flagged); }],
  [["u"], "Mark unread", () => target() && markUnread()],
  [["/"], "Search", () => $("search-input").focus()],
  [["?"], "Show or hide these shortcuts", () => toggleHelp()],
];
const KEYS = Object.fromEntries(SHORTCUTS.flatMap(([keys, , action]) => keys.map((key) => [key, action])));
const KEY_NAMES = { Escape: "Esc" };

function renderHelp() {
  $("help-keys").replaceChildren(
    ...SHORTCUTS.flatMap(([keys, text]) => [
      element("dt", {}, ...keys.flatMap((key, i) => [i ? " or " : null, element("kbd", {}, KEY_NAMES[key] || key)])),
      element("dd", {}, text),
    ]),
  );
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || $("app").hidden || $("compose").open) return;
  if ($("help").open) {
    if (event.key === "?") $("help").close(); // and Escape, the dialog's own
    return;
  }
  const tag = event.target.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if (event.key === "Enter" && tag === "BUTTON") return;
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  Promise.resolve(action()).catch(failed);
}

// --- wiring --------------------------------------------------------------------------------

// An action failed: told in the status line, unless the session ended (the sign-in form says so).
function failed(error) {
  if (!(error instanceof AuthError)) status(String(error.message || error));
}

function guard(fn) {
  return (...args) => Promise.resolve(fn(...args)).catch(failed);
}

function start() {
  $("login-form").addEventListener("submit", onLogin);
  $("sign-out").addEventListener("click", onSignOut);
  $("search-form").addEventListener("submit", guard(search));
  $("newer").addEventListener("click", guard(() => page(-1)));
  $("older").addEventListener("click", guard(() => page(1)));
  $("back").addEventListener("click", closeReader);
  $("reply").addEventListener("click", () => openCompose("reply", state.open));
  $("reply-all").addEventListener("click", () => openCompose("replyAll", state.open));
  $("forward").addEventListener("click", () => openCompose("forward", state.open));
  $("edit-draft").addEventListener("click", () => openCompose("draft", state.open));
  $("flag").addEventListener("click", guard(() => setKeyword("$flagged", !state.open?.keywords?.$flagged)));
  $("unread").addEventListener("click", guard(markUnread));
  $("download-message").addEventListener("click", guard(downloadMessage));
  $("move").addEventListener("change", guard((e) => moveTo(e.target.value)));
  $("delete").addEventListener("click", guard(remove));
  $("load-images").addEventListener("click", loadRemoteImages);
  $("compose-button").addEventListener("click", () => openCompose("new"));
  $("help-button").addEventListener("click", toggleHelp);
  $("help-close").addEventListener("click", () => $("help").close());
  document.addEventListener("keydown", onKey);
  // A 401 from anywhere (a click, a key, a refresh on push) lands here rather than in a console.
  window.addEventListener("unhandledrejection", (event) => {
    if (event.reason instanceof AuthError) event.preventDefault();
  });
  onSessionEnd(sessionEnded);
  setupCompose();
  renderHelp();
  resume().catch(failed);
}

start();
