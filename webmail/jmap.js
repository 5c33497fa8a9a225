// A small JMAP client (RFC 8620): the session, batched method calls, blob upload and download.
import { AuthError, authorization, expired } from "./auth.js";

export { AuthError };

export const CORE = "urn:ietf:params:jmap:core";
export const MAIL = "urn:ietf:params:jmap:mail";
export const SUBMISSION = "urn:ietf:params:jmap:submission";

// Every request carries its Authorization header itself. With credentials omitted, a 401 (whose
// WWW-Authenticate: Basic would make the browser ask in a dialog of its own) comes back to us.
const OMIT = { credentials: "omit" };
// The type of the server's answer to a download with redirect=json: where to fetch a large blob
// (mailpipe/jmap/http.py DOWNLOAD_LINK). A blob is never served with this type.
const DOWNLOAD_LINK = "application/vnd.mailpipe.download-link+json";

export class MethodError extends Error {
  constructor(name, error) {
    super(`${name}: ${error.type}${error.description ? ` (${error.description})` : ""}`);
    this.type = error.type;
  }
}

// The session's URLs name the API's own host; the webmail asks its own origin (CloudFront
// routes /jmap/* to the API on AWS), so only the path of each is kept: the CSP's 'self' holds.
function localPath(url) {
  const parsed = new URL(url, location.href);
  return parsed.pathname + parsed.search;
}

async function checked(response) {
  if (response.status === 401) {
    expired(); // the token was refused: the session is over (app.js shows the sign-in form)
    throw new AuthError("signed out");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch {
      // not JSON: keep the status text
    }
    throw new Error(`server answered ${response.status}: ${detail}`);
  }
  return response;
}

export class Jmap {
  constructor(session) {
    this.session = session;
    this.accountId = session.primaryAccounts[MAIL];
    this.using = [CORE, MAIL];
    if (session.capabilities[SUBMISSION]) this.using.push(SUBMISSION);
    this.canSend = Boolean(session.capabilities[SUBMISSION]);
  }

  static async connect() {
    const response = await checked(await fetch("/.well-known/jmap", { ...OMIT, headers: authorization() }));
    return new Jmap(await response.json());
  }

  // calls: [[name, arguments, callId], ...] in one HTTP request; accountId is added.
  // Answers the method responses; a method error stays in the list as ["error", {...}, id].
  async batch(calls) {
    const methodCalls = calls.map(([name, args, id]) => [name, { accountId: this.accountId, ...args }, id]);
    const response = await checked(
      await fetch(localPath(this.session.apiUrl), {
        ...OMIT,
        method: "POST",
        headers: { ...authorization(), "Content-Type": "application/json" },
        body: JSON.stringify({ using: this.using, methodCalls }),
      }),
    );
    return (await response.json()).methodResponses;
  }

  // Like batch, but throws on the first method error and answers {callId: arguments}.
  async request(calls) {
    const answers = {};
    for (const [name, args, id] of await this.batch(calls)) {
      if (name === "error") throw new MethodError(calls.find((c) => c[2] === id)?.[0] || "call", args);
      // A second answer under the same id (EmailSubmission's implicit Email/set) keeps both.
      if (id in answers) answers[`${id}:${name}`] = args;
      else answers[id] = args;
    }
    return answers;
  }

  async upload(file) {
    const url = this.session.uploadUrl.replace("{accountId}", encodeURIComponent(this.accountId));
    const response = await checked(
      await fetch(localPath(url), {
        ...OMIT,
        method: "POST",
        headers: { ...authorization(), "Content-Type": file.type || "application/octet-stream" },
        body: file,
      }),
    );
    return response.json();
  }

  // A blob: {blob} with its bytes, or {url}, a short-lived presigned S3 URL for one too large to
  // come through the function. The server would answer that one with a redirect to S3, which this
  // fetch may not follow (connect-src 'self'); asked with redirect=json, it gives the URL instead,
  // and the page navigates there (a navigation needs no connect-src; S3 answers it with
  // Content-Disposition: attachment, so the page stays).
  async download(blobId, name, type) {
    const url = this.session.downloadUrl
      .replace("{accountId}", encodeURIComponent(this.accountId))
      .replace("{blobId}", encodeURIComponent(blobId))
      .replace("{name}", encodeURIComponent(name || "attachment"))
      .replace("{type}", encodeURIComponent(type || "application/octet-stream"));
    const path = localPath(url);
    const asLink = `${path}${path.includes("?") ? "&" : "?"}redirect=json`;
    const response = await checked(await fetch(asLink, { ...OMIT, headers: authorization() }));
    if (response.headers.get("Content-Type") === DOWNLOAD_LINK) return { url: (await response.json()).url };
    return { blob: await response.blob() };
  }
}

// A back-reference (RFC 8620 3.7) to an earlier call's result.
export function ref(resultOf, name, path) {
  return { resultOf, name, path };
}
