/** A LIKE pattern matching values that start with `value` literally (wildcards in it are escaped). */
export function likePrefix(value: string): string {
  return `${value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}
