/**
 * Text a tenant controls (image strings, and the scanner's stop rows, which quote package names and
 * paths from the tenant's image) on its way into denials, warnings, Kubernetes events and log lines.
 * Pure.
 */

/** The longest reference the grammar allows: name (255) + ":" + tag (128) + "@" + "sha512:" + 128 hex. */
export const MAX_REFERENCE_LENGTH = 255 + 1 + 128 + 1 + 'sha512:'.length + 128;

/** How much of a text longer than any valid reference a message or a log line shows. */
const SHOWN_OF_OVERLONG = 96;

// C0 and C1 controls (ESC, CSI 0x9b, BEL, CR, ...), DEL, the line and paragraph separators, zero-width
// characters, bidirectional overrides and isolates ("Trojan Source"), and the byte-order mark: anything
// a terminal or a log viewer may act on, or that makes a text read differently from what it is.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;
// eslint-disable-next-line no-control-regex
const UNSAFE_TEST = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** `\x1b[31m` for ESC [ 3 1 m: every unsafe character spelled out, the rest unchanged. */
export function escapeControls(text: string): string {
  // Most texts are clean: test first, so the hot path allocates nothing.
  return UNSAFE_TEST.test(text) ? text.replace(UNSAFE, escapeChar) : text;
}

/**
 * An image string as a denial or a log line may show it: escaped, and, when longer than any valid
 * reference, cut to its first characters plus its length (it is never shown, stored or logged in full).
 */
export function displayImage(image: string): string {
  return displayText(image, MAX_REFERENCE_LENGTH);
}

/**
 * Any text a tenant controls, escaped and at most about `maxChars` long once escaped; a longer one is
 * cut to its first characters plus its length.
 */
export function displayText(text: string, maxChars: number): string {
  if (text.length <= maxChars) {
    const escaped = escapeControls(text);
    if (escaped.length <= maxChars) return escaped;
  }
  const shown = Math.min(SHOWN_OF_OVERLONG, Math.floor(maxChars / 4));
  return `${escapeControls(text.slice(0, shown))}… (${text.length} characters)`;
}
