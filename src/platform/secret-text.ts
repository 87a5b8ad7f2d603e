const REDACTED = '[REDACTED]';

/**
 * `text` with every occurrence of each secret replaced by "[REDACTED]", as written and as a JSON
 * string escapes it (a peer that echoes a request body quotes it). Every non-empty secret is cut,
 * however short: a mangled message is the lesser harm. Longest first, so a secret that contains
 * another is not left half shown.
 */
export function withoutSecrets(text: string, secrets: readonly string[]): string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
  }
  let out = text;
  for (const form of [...forms].sort((a, b) => b.length - a.length)) out = out.split(form).join(REDACTED);
  return out;
}
