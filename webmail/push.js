// Live updates. The push work (branch jmap-push) fills startPush() with an EventSource
// (RFC 8620 7.3) or a JMAP WebSocket (RFC 8887) that calls onChange(changedTypes) on each
// StateChange; until it does, startPush() answers false and the webmail polls (app.js) instead.

// Returns a stop function when push is running, or false when the caller must poll.
export function startPush(_jmap, _onChange) {
  return false;
}
