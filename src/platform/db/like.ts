/** `value` with LIKE's wildcards and escape character escaped, to match literally inside a pattern. */
export function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** A LIKE pattern matching values that start with `value` literally. */
export function likePrefix(value: string): string {
  return `${escapeLike(value)}%`;
}
