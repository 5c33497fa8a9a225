// How the webmail proves who it is to the JMAP server: the one place that knows.
//
// The password is sent once, to POST /jmap/login, which answers a session token (docs/jmap.md,
// "Signing in"); every later request carries `Authorization: Bearer <token>`, and the WebSocket
// carries it as its access_token parameter (push.js). Signing out revokes the token on the server
// (POST /jmap/logout); a 401 at any time (token expired, password changed, user disabled) ends
// the session here too, and the page goes back to its sign-in form.
//
// The token is kept in sessionStorage, not localStorage: sessionStorage belongs to this one tab
// and is gone when the tab or browser closes, so a token is never left behind on a shared
// computer nor handed to every other tab of the origin, while a reload of the page still finds
// it. (Either storage is readable by script of this origin: the CSP, which allows no inline or
// foreign script, and the sandboxed message frame are what keep script out. An HttpOnly cookie
// would hide it from script, but would be sent by the browser on its own and so need CSRF
// defences the Authorization header does not.)

const KEY = "mailpipe.token";
const OMIT = { credentials: "omit" };

export class AuthError extends Error {}

let sessionEnded = () => {};

function stored() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the page still works until it is reloaded
  }
}

let memory = stored();

function keep(token) {
  memory = token;
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: kept in memory only
  }
}

// Trades the password for a session token; throws AuthError for a wrong one.
export async function signIn(user, password) {
  const response = await fetch("/jmap/login", {
    ...OMIT,
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: user, password }),
  });
  if (response.status === 401) throw new AuthError("wrong address or password");
  if (response.status === 429) throw new Error("Too many failed sign-ins: try again later.");
  if (!response.ok) throw new Error(`server answered ${response.status}`);
  const answer = await response.json();
  keep(answer.accessToken);
}

// Revokes the token on the server (best effort: it is forgotten here whatever happens).
export async function signOut() {
  const token = memory;
  keep(null);
  if (!token) return;
  try {
    await fetch("/jmap/logout", { ...OMIT, method: "POST", headers: { Authorization: `Bearer ${token}` } });
  } catch {
    // offline: the token expires on its own (a week)
  }
}

export function signedIn() {
  return memory !== null;
}

export function token() {
  return memory;
}

// Called by jmap.js when the server answers 401: the token is no good any more.
export function expired() {
  if (memory === null) return;
  keep(null);
  sessionEnded();
}

// What to do when the session ends without the user signing out (app.js: the sign-in form).
export function onSessionEnd(callback) {
  sessionEnded = callback;
}

// Headers to add to every request to the JMAP server.
export function authorization() {
  return memory ? { Authorization: `Bearer ${memory}` } : {};
}
