// Mail's HTML made safe to show. Two walls: this sanitizer, and the sandboxed iframe it is shown
// in (no allow-scripts, no allow-same-origin, the page's CSP inherited by srcdoc): a payload the
// sanitizer misses still cannot run or reach the page.

// Elements dropped whole, content and all: active content, forms, frames, remote media, and
// what changes the document (meta refresh, base).
const DROP = new Set([
  "script", "style", "link", "meta", "base", "title", "iframe", "frame", "frameset", "object",
  "embed", "applet", "form", "input", "button", "select", "textarea", "option", "noscript",
  "template", "svg", "math", "audio", "video", "source", "track", "portal", "dialog",
]);
// Attributes that hold a URL the browser may fetch or follow.
const URL_ATTRIBUTES = ["href", "src", "action", "formaction", "xlink:href", "background", "poster",
  "lowsrc", "dynsrc", "longdesc", "ping", "cite", "srcset", "usemap", "manifest", "codebase", "data"];
const SAFE_LINK = /^(https?:|mailto:|#)/i;
const DATA_IMAGE = /^data:image\/(png|gif|jpe?g|webp|bmp);/i;
const REMOTE = /^(https?:)?\/\//i;
// CSS that loads or runs something.
const BAD_STYLE = /url\s*\(|expression\s*\(|@import|behavior\s*:|-moz-binding|javascript:/i;

function cleanElement(element, options, found) {
  for (const attribute of [...element.attributes]) {
    const name = attribute.name.toLowerCase();
    const value = attribute.value.trim();
    if (name.startsWith("on") || name === "formaction" || name === "http-equiv") {
      element.removeAttribute(attribute.name);
    } else if (name === "style" && BAD_STYLE.test(value)) {
      element.removeAttribute(attribute.name);
    } else if (name === "href") {
      if (!SAFE_LINK.test(value)) element.removeAttribute(attribute.name);
    } else if (name === "src" && element.localName === "img") {
      if (DATA_IMAGE.test(value)) continue;
      element.removeAttribute("src");
      if (REMOTE.test(value)) {
        found.remote += 1;
        if (options.remoteImages) element.setAttribute("src", value);
        else element.setAttribute("data-src", value);
      }
    } else if (URL_ATTRIBUTES.includes(name)) {
      element.removeAttribute(attribute.name);
    }
  }
  if (element.localName === "a" && element.hasAttribute("href")) {
    element.setAttribute("target", "_blank");
    element.setAttribute("rel", "noopener noreferrer");
  }
}

function walk(node, options, found) {
  for (const child of [...node.children]) {
    if (DROP.has(child.localName)) {
      child.remove();
      continue;
    }
    cleanElement(child, options, found);
    walk(child, options, found);
  }
}

// Returns {html, remoteImages}: the body's markup, cleaned, and how many remote images it has
// (kept as data-src unless options.remoteImages).
export function sanitize(html, options = {}) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  const found = { remote: 0 };
  walk(doc.body, options, found);
  return { html: doc.body.innerHTML, remoteImages: found.remote };
}

// The whole document for an iframe's srcdoc.
export function srcdoc(bodyHtml) {
  return `<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/webmail/message.css"></head><body>${bodyHtml}</body></html>`;
}
