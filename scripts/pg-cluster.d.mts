export interface Cluster {
  /** postgres://postgres@127.0.0.1:<port>/postgres (trust auth, loopback only). */
  url: string;
  /** `postgres --version` output. */
  version: string;
  /** Folder of the PostgreSQL binaries used. */
  bin: string;
  dir: string;
  /** Stops the server and removes its folder; idempotent, also runs at process exit. */
  stop(): void;
}

export function findPgBin(): string | undefined;
export function freePort(): Promise<number>;
export function startCluster(options?: { durable?: boolean; settings?: Record<string, string> }): Promise<Cluster>;
