// Live updates: JMAP over WebSocket (RFC 8887) with push (RFC 8620 7.1), as the session's
// `urn:ietf:params:jmap:websocket` capability offers it (docs/jmap.md, "Push").
//
// The socket is opened with the `jmap` subprotocol and the session token as its access_token
// parameter: a browser's WebSocket cannot send an Authorization header, and the subprotocol list
// is for protocol names (the server would echo it back). After WebSocketPushEnable for Email and
// Mailbox, each StateChange whose states differ from the last ones seen calls onChange(types),
// the set of those that moved; calls never overlap, and changes that arrive meanwhile make one
// more call (with their types together), not one each.
//
// When the socket closes it is opened again after 1, 2, 4 ... 30 s (with jitter, so that a
// server restart is not met by every page at once). Before each new socket, resync() runs over
// HTTP: it catches up with what changed while no socket listened, and a 401 there (the token was
// revoked or expired) ends the session, which stops push for good. A browser does not tell a page
// why a handshake failed, so the HTTP request is how a refused token is noticed.

import { token } from "./auth.js";

export const WEBSOCKET = "urn:ietf:params:jmap:websocket";
const TYPES = ["Email", "Mailbox"];
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;
// API Gateway and the local server close a socket idle for 10 minutes: a small request now and
// then keeps it open (and shows a dead one sooner).
const KEEPALIVE_MS = 4 * 60 * 1000;

const READY = "push-ready";

function echo(id) {
  return JSON.stringify({ "@type": "Request", id, using: ["urn:ietf:params:jmap:core"], methodCalls: [["Core/echo", {}, "0"]] });
}

// Runs fn() one call at a time; a call asked for while one runs makes one more run after it.
function serial(fn) {
  let running = false;
  let again = false;
  return async function run() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await fn();
      } while (again);
    } finally {
      running = false;
    }
  };
}

function socketUrl(url, accessToken) {
  const parsed = new URL(url, location.href);
  parsed.searchParams.set("access_token", accessToken);
  return parsed.href;
}

// Returns a stop function when the session offers push, or false when the caller must poll.
// onChange(types): the Email and/or Mailbox state moved. resync(): catch up after a gap; may throw.
// onLive(live): the socket is listening (true) or not (false), for the page's status.
export function startPush(jmap, { onChange, resync, onLive = () => {} }) {
  const capability = jmap.session.capabilities[WEBSOCKET];
  if (!capability?.url || !capability.supportsPush || typeof WebSocket === "undefined") return false;

  let moved = new Set(); // types whose state moved since the last onChange
  const changed = serial(async () => {
    const types = moved;
    moved = new Set();
    try {
      await onChange(types);
    } catch {
      // a failed refresh is retried at the next change or reconnect
    }
  });
  let socket = null;
  let stopped = false;
  let delay = FIRST_DELAY_MS;
  let timer = null;
  let keepalive = null;
  let seen = {}; // type → last state told

  function open() {
    const accessToken = token();
    if (stopped || !accessToken) return;
    const ws = new WebSocket(socketUrl(capability.url, accessToken), "jmap");
    socket = ws;
    ws.onopen = () => {
      if (ws.protocol !== "jmap") {
        ws.close(1002, "jmap subprotocol expected");
        return;
      }
      ws.send(JSON.stringify({ "@type": "WebSocketPushEnable", dataTypes: TYPES }));
      // The server answers frames in order: the echo's answer says push is on.
      ws.send(echo(READY));
      keepalive = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(echo("keepalive"));
      }, KEEPALIVE_MS);
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message["@type"] === "Response" && message.requestId === READY) {
        delay = FIRST_DELAY_MS;
        onLive(true);
        for (const type of TYPES) moved.add(type);
        changed(); // what changed between the last look and push being on
        return;
      }
      if (message["@type"] === "RequestError" && message.status === 401) {
        ws.close(); // the token no longer holds: the resync before reconnecting meets the 401
        return;
      }
      if (message["@type"] !== "StateChange") return;
      const states = message.changed?.[jmap.accountId];
      if (!states) return;
      const now = TYPES.filter((type) => type in states && states[type] !== seen[type]);
      seen = { ...seen, ...states };
      for (const type of now) moved.add(type);
      if (now.length) changed();
    };
    ws.onclose = () => {
      clearInterval(keepalive);
      if (socket === ws) socket = null;
      if (stopped) return;
      onLive(false);
      later();
    };
  }

  function later() {
    clearTimeout(timer);
    const wait = delay * (0.75 + Math.random() / 2);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
    timer = setTimeout(async () => {
      try {
        await resync();
      } catch {
        if (stopped) return; // the session ended (401): stop() was called
        later(); // offline: try again later
        return;
      }
      open();
    }, wait);
  }

  open();
  return function stop() {
    stopped = true;
    clearTimeout(timer);
    clearInterval(keepalive);
    if (socket) socket.close(1000, "signed out");
    socket = null;
  };
}
