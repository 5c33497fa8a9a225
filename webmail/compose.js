// Writing mail: new, reply, reply-all, forward and drafts; saved with Email/set into Drafts
// ($draft), sent with EmailSubmission/set, which then moves it to Sent (RFC 8621 7.5).
import { addressText, mailboxByRole, readableText, refresh, state, status } from "./app.js";

const $ = (id) => document.getElementById(id);

// The message being written: what the form does not hold.
let draft = { mode: "new", source: null, draftId: null, attachments: [], inReplyTo: null, references: null };

function parseAddresses(text) {
  return text
    .split(/[,;]/)
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const match = s.match(/^(.*)<([^>]+)>$/);
      return match ? { name: match[1].trim().replace(/^"|"$/g, "") || null, email: match[2].trim() } : { name: null, email: s };
    });
}

function prefixed(prefix, subject) {
  const s = subject || "";
  return s.toLowerCase().startsWith(prefix.toLowerCase()) ? s : `${prefix} ${s}`;
}

function quote(email) {
  const who = addressText(email.from) || "someone";
  const when = new Date(email.sentAt || email.receivedAt).toLocaleString();
  const body = readableText(email).split("\n").map((line) => `> ${line}`).join("\n");
  return `\n\nOn ${when}, ${who} wrote:\n${body}`;
}

function mine() {
  return state.jmap.session.username.toLowerCase();
}

export function openCompose(mode, source = null) {
  if (mode !== "new" && !source) return;
  draft = { mode, source, draftId: null, attachments: [], inReplyTo: null, references: null };
  let to = "", cc = "", subject = "", body = "";
  if (mode === "reply" || mode === "replyAll") {
    to = addressText(source.replyTo?.length ? source.replyTo : source.from);
    if (mode === "replyAll") {
      const seen = new Set([mine(), ...parseAddresses(to).map((a) => a.email.toLowerCase())]);
      cc = addressText([...(source.to || []), ...(source.cc || [])].filter((a) => !seen.has(a.email.toLowerCase()) && seen.add(a.email.toLowerCase())));
    }
    subject = prefixed("Re:", source.subject);
    body = quote(source);
    draft.inReplyTo = source.messageId || null;
    draft.references = [...(source.references || []), ...(source.messageId || [])];
  } else if (mode === "forward") {
    subject = prefixed("Fwd:", source.subject);
    body = `\n\n---------- Forwarded message ----------\nFrom: ${addressText(source.from)}\nDate: ${new Date(source.sentAt || source.receivedAt).toLocaleString()}\nSubject: ${source.subject || ""}\nTo: ${addressText(source.to)}\n\n${readableText(source)}`;
    draft.attachments = (source.attachments || []).map((a) => ({ blobId: a.blobId, type: a.type, name: a.name, size: a.size }));
  } else if (mode === "draft") {
    to = addressText(source.to);
    cc = addressText(source.cc);
    subject = source.subject || "";
    body = readableText(source);
    draft.draftId = source.id;
    draft.attachments = (source.attachments || []).map((a) => ({ blobId: a.blobId, type: a.type, name: a.name, size: a.size }));
  }
  $("compose-title").textContent = { new: "New message", reply: "Reply", replyAll: "Reply to all", forward: "Forward", draft: "Draft" }[mode];
  $("compose-to").value = to;
  $("compose-cc").value = cc;
  $("compose-subject").value = subject;
  $("compose-body").value = body;
  $("compose-files").value = "";
  $("compose-error").textContent = "";
  renderAttachments();
  $("compose").showModal();
  (to ? $("compose-body") : $("compose-to")).focus();
  if (mode !== "new" && mode !== "draft") $("compose-body").setSelectionRange(0, 0);
}

function renderAttachments() {
  $("compose-attachments").replaceChildren(
    ...draft.attachments.map((a, index) => {
      const li = document.createElement("li");
      const drop = document.createElement("button");
      drop.type = "button";
      drop.textContent = `✕ ${a.name || "attachment"}`;
      drop.setAttribute("aria-label", `Remove ${a.name || "attachment"}`);
      drop.addEventListener("click", () => { draft.attachments.splice(index, 1); renderAttachments(); });
      li.append(drop);
      return li;
    }),
  );
}

async function onFiles() {
  for (const file of $("compose-files").files) {
    status(`Uploading ${file.name}…`);
    const uploaded = await state.jmap.upload(file);
    draft.attachments.push({ blobId: uploaded.blobId, type: uploaded.type || file.type, name: file.name, size: uploaded.size });
  }
  $("compose-files").value = "";
  renderAttachments();
  status("");
}

async function identity() {
  const answers = await state.jmap.request([["Identity/get", {}, "i"]]);
  const list = answers.i.list;
  return list.find((i) => i.email.toLowerCase() === mine()) || list[0];
}

function emailObject(from, drafts) {
  const email = {
    mailboxIds: { [drafts.id]: true },
    keywords: { $draft: true, $seen: true },
    from: [from],
    to: parseAddresses($("compose-to").value),
    cc: parseAddresses($("compose-cc").value),
    subject: $("compose-subject").value,
    textBody: [{ partId: "text", type: "text/plain" }],
    bodyValues: { text: { value: $("compose-body").value } },
  };
  if (draft.inReplyTo) email.inReplyTo = draft.inReplyTo;
  if (draft.references?.length) email.references = draft.references;
  if (draft.attachments.length) {
    email.attachments = draft.attachments.map((a) => ({ blobId: a.blobId, type: a.type || "application/octet-stream", name: a.name, disposition: "attachment" }));
  }
  return email;
}

async function save(send) {
  const drafts = mailboxByRole("drafts");
  if (!drafts) throw new Error("no Drafts mailbox");
  const me = send ? await identity() : null;
  const from = me ? { name: me.name || null, email: me.email } : { name: null, email: state.jmap.session.username };
  const calls = [["Email/set", { create: { draft: emailObject(from, drafts) }, ...(draft.draftId ? { destroy: [draft.draftId] } : {}) }, "0"]];
  if (send) {
    const sent = mailboxByRole("sent");
    const after = sent ? { onSuccessUpdateEmail: { "#send": { mailboxIds: { [sent.id]: true }, "keywords/$draft": null } } } : { onSuccessDestroyEmail: ["#send"] };
    calls.push(["EmailSubmission/set", { create: { send: { identityId: me.id, emailId: "#draft" } }, ...after }, "1"]);
    if (draft.mode === "reply" || draft.mode === "replyAll") {
      calls.push(["Email/set", { update: { [draft.source.id]: { "keywords/$answered": true } } }, "2"]);
    }
  }
  const answers = await state.jmap.request(calls);
  const created = answers["0"].created?.draft;
  if (!created) throw new Error(`not saved: ${JSON.stringify(answers["0"].notCreated?.draft || {})}`);
  draft.draftId = created.id;
  if (send && !answers["1"].created?.send) {
    throw new Error(`not sent: ${JSON.stringify(answers["1"].notCreated?.send || {})}`);
  }
}

async function run(send) {
  $("compose-error").textContent = "";
  $("compose-send").disabled = $("compose-save").disabled = true;
  try {
    status(send ? "Sending…" : "Saving…");
    await save(send);
    $("compose").close();
    await refresh(true);
    status(send ? "Sent." : "Draft saved.");
  } catch (error) {
    $("compose-error").textContent = String(error.message || error);
    status("");
  } finally {
    $("compose-send").disabled = $("compose-save").disabled = false;
  }
}

export function setupCompose() {
  $("compose-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(true);
  });
  $("compose-save").addEventListener("click", () => run(false));
  $("compose-discard").addEventListener("click", () => $("compose").close());
  $("compose-files").addEventListener("change", () => onFiles().catch((e) => { $("compose-error").textContent = String(e.message || e); }));
}
