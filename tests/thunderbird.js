// Chrome-context helpers that tests/thunderbird.py runs inside Thunderbird through Marionette.
// Each exported step is an async function of plain JSON arguments that resolves to JSON; the driver
// prepends this file to every script, so no state is kept between calls but Thunderbird's own.
/* global ChromeUtils, Ci, Cc, Services, NetUtil */
"use strict";

const { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const { NetUtil } = ChromeUtils.importESModule("resource://gre/modules/NetUtil.sys.mjs");
const { setTimeout } = ChromeUtils.importESModule("resource://gre/modules/Timer.sys.mjs");

const SPECIAL = {
  Inbox: Ci.nsMsgFolderFlags.Inbox,
  Sent: Ci.nsMsgFolderFlags.SentMail,
  Drafts: Ci.nsMsgFolderFlags.Drafts,
  Trash: Ci.nsMsgFolderFlags.Trash,
  Archive: Ci.nsMsgFolderFlags.Archive,
  Junk: Ci.nsMsgFolderFlags.Junk,
};

function server() {
  return MailServices.accounts.getIncomingServer("server1");
}

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms));
}

// Polls until check() returns something truthy; the deadline only bounds a failing test.
async function until(check, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`Thunderbird: timed out waiting for ${what}`);
    }
    await sleep(100);
  }
}

function urlListener() {
  let done;
  const finished = new Promise((resolve, reject) => {
    done = { resolve, reject };
  });
  return {
    finished,
    OnStartRunningUrl() {},
    OnStopRunningUrl(url, status) {
      if (Components.isSuccessCode(status)) {
        done.resolve();
      } else {
        done.reject(new Error(`${url.spec} failed: 0x${(status >>> 0).toString(16)}`));
      }
    },
    QueryInterface: ChromeUtils.generateQI(["nsIUrlListener"]),
  };
}

// Server-side name of a folder (what LIST says, decoded), e.g. "Projekte/Übersicht".
function folderPath(folder) {
  return decodeURIComponent(new URL(folder.URI).pathname.slice(1));
}

function folderByPath(path) {
  const found = server().rootFolder.descendants.find(f => folderPath(f) == path);
  if (!found) {
    throw new Error(`Thunderbird has no folder ${path}`);
  }
  return found;
}

function header(hdr) {
  return {
    uid: hdr.messageKey,
    messageId: hdr.messageId,
    subject: hdr.mime2DecodedSubject,
    read: hdr.isRead,
    flagged: hdr.isFlagged,
  };
}

// The account came from prefs with no password (those live in the login manager, not prefs);
// Thunderbird started offline so that nothing connected before this.
async function goOnline(password) {
  server().password = password;
  const outgoing = MailServices.outgoingServer.getServerByKey("smtp1");
  outgoing.password = password;
  Services.io.manageOfflineStatus = false;
  Services.io.offline = false;
  const imap = server().QueryInterface(Ci.nsIImapIncomingServer);
  return {
    accounts: MailServices.accounts.accounts.map(a => a.key),
    outgoing: [outgoing.serverURI, outgoing.username],
    useIdle: imap.useIdle,
  };
}

// LIST, as Thunderbird sees it: every folder with its special use.
async function listFolders() {
  const listener = urlListener();
  MailServices.imap.discoverAllFolders(server().rootFolder, listener, null);
  await listener.finished;
  const folders = server().rootFolder.descendants;
  return folders.map(f => ({
    path: folderPath(f),
    name: f.localizedName,
    special: Object.keys(SPECIAL).filter(k => f.getFlag(SPECIAL[k])),
  }));
}

// Selects a folder and reads its headers, as opening it in the folder pane does.
async function openFolder(path) {
  const folder = folderByPath(path);
  const listener = urlListener();
  folder.QueryInterface(Ci.nsIMsgImapMailFolder).updateFolderWithListener(null, listener);
  await listener.finished;
  return [...folder.messages].map(header);
}

// Messages are named by UID: Thunderbird's message key for IMAP.

// The message's octets as Thunderbird fetched them (a "binary string": one char per octet).
async function readMessage(path, uid) {
  const folder = folderByPath(path);
  const hdr = folder.msgDatabase.getMsgHdrForKey(uid);
  const uri = folder.getUriForMsg(hdr);
  const chunks = [];
  await new Promise((resolve, reject) => {
    const consumer = {
      onStartRequest() {},
      onDataAvailable(request, stream, offset, count) {
        chunks.push(NetUtil.readInputStreamToString(stream, count));
      },
      onStopRequest(request, status) {
        if (Components.isSuccessCode(status)) {
          resolve();
        } else {
          reject(new Error(`reading ${uri} failed: 0x${(status >>> 0).toString(16)}`));
        }
      },
      QueryInterface: ChromeUtils.generateQI(["nsIStreamListener"]),
    };
    MailServices.messageServiceFromURI(uri).streamMessage(uri, consumer, null, null, false, "", false);
  });
  folder.markMessagesRead([hdr], true);
  return chunks.join("");
}

async function flagMessage(path, uid) {
  const folder = folderByPath(path);
  folder.markMessagesFlagged([folder.msgDatabase.getMsgHdrForKey(uid)], true);
  return true;
}

async function moveMessage(path, uid, target) {
  const source = folderByPath(path);
  const hdr = source.msgDatabase.getMsgHdrForKey(uid);
  await new Promise((resolve, reject) => {
    const listener = {
      onStartCopy() {},
      onProgress() {},
      setMessageKey() {},
      getMessageId() {
        return null;
      },
      onStopCopy(status) {
        if (Components.isSuccessCode(status)) {
          resolve();
        } else {
          reject(new Error(`move failed: 0x${(status >>> 0).toString(16)}`));
        }
      },
      QueryInterface: ChromeUtils.generateQI(["nsIMsgCopyServiceListener"]),
    };
    MailServices.copy.copyMessages(source, [hdr], folderByPath(target), true, listener, null, false);
  });
  return true;
}

// Composes and sends (or saves as a draft) without a compose window: nsIMsgSend, as the
// compose window itself does. Resolves when the copy to Sent (or Drafts) is done.
async function compose(to, subject, body, draft) {
  const identity = MailServices.accounts.getIdentity("id1");
  const fields = Cc["@mozilla.org/messengercompose/composefields;1"].createInstance(
    Ci.nsIMsgCompFields
  );
  fields.from = `${identity.fullName} <${identity.email}>`;
  fields.to = to;
  fields.subject = subject;
  const mode = draft ? Ci.nsIMsgSend.nsMsgSaveAsDraft : Ci.nsIMsgSend.nsMsgDeliverNow;
  const send = Cc["@mozilla.org/messengercompose/send;1"].createInstance(Ci.nsIMsgSend);
  let messageId = null;
  await new Promise((resolve, reject) => {
    const fail = (what, status) =>
      reject(new Error(`${what} failed: 0x${(status >>> 0).toString(16)}`));
    const listener = {
      onStartSending() {},
      onProgress() {},
      onStatus() {},
      onStopSending(id, status) {
        messageId = id;
        if (!Components.isSuccessCode(status)) {
          fail("sending", status);
        }
      },
      onGetDraftFolderURI() {},
      onSendNotPerformed(id, status) {
        fail("sending (not performed)", status);
      },
      onTransportSecurityError() {
        reject(new Error("transport security error"));
      },
      onStartCopy() {},
      setMessageKey() {},
      getMessageId() {
        return null;
      },
      onStopCopy(status) {
        if (Components.isSuccessCode(status)) {
          resolve();
        } else {
          fail(draft ? "saving the draft" : "saving to Sent", status);
        }
      },
      QueryInterface: ChromeUtils.generateQI(["nsIMsgSendListener", "nsIMsgCopyServiceListener"]),
    };
    send.createAndSendMessage(
      null, identity, "account1", fields, false, false, mode, null, "text/plain", body,
      null, null, listener, null, null, Ci.nsIMsgCompType.New
    );
  });
  return messageId;
}

// Waits, without asking the server for anything, until a message with this subject is in the
// folder: only IDLE (or a poll, which the profile turns off) can bring it.
async function awaitNewMessage(path, subject) {
  const folder = folderByPath(path);
  return header(
    await until(() => [...folder.messages].find(h => h.mime2DecodedSubject == subject), subject)
  );
}
