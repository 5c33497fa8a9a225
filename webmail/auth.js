// How the webmail proves who it is to the JMAP server: the one place that knows.
// Now: HTTP Basic, the credentials kept in this page's memory only (a reload signs out).
// The session-token work (branch jmap-push) replaces this module's insides: signIn() trades the
// password for a token, authorization() sends the token; nothing else changes.

let credentials = null;

function base64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function signIn(user, password) {
  credentials = base64(`${user}:${password}`);
}

export function signOut() {
  credentials = null;
}

export function signedIn() {
  return credentials !== null;
}

// Headers to add to every request to the JMAP server.
export function authorization() {
  return credentials ? { Authorization: `Basic ${credentials}` } : {};
}
