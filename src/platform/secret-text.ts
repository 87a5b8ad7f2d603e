const REDACTED = '[REDACTED]';

/**
 * `text` with every occurrence of each secret replaced by "[REDACTED]", as written and as a JSON
 * string escapes it (a peer that echoes a request body quotes it), non-ASCII escaped or not. Every
 * non-empty secret is cut, however short: a mangled message is the lesser harm. Longest first, so a
 * secret that contains another is not left half shown.
 */
export function withoutSecrets(text: string, secrets: readonly string[]): string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    forms.add(secret);
    const escaped = JSON.stringify(secret).slice(1, -1);
    forms.add(escaped);
    // As encoders that keep to ASCII write it (Python's json.dumps by default): \uXXXX beyond it.
    forms.add(escaped.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  }
  let out = text;
  for (const form of [...forms].sort((a, b) => b.length - a.length)) out = out.split(form).join(REDACTED);
  return out;
}
