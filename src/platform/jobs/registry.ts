import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../../config.js';
import type { Database, Db } from '../db/client.js';

/** One job as its handler sees it. `data` is what `enqueueJob` was given, after a JSON round trip. */
export interface Job<T> {
  id: string;
  name: string;
  data: T;
  /** Retries already used: 0 on the first attempt. */
  retryCount: number;
  /** Retries allowed after the first attempt; the attempt with `retryCount === retryLimit` is the last. */
  retryLimit: number;
}

export type JobLog = Pick<FastifyBaseLogger, 'debug' | 'info' | 'warn' | 'error'>;

/** What the worker hands every handler: the same database and configuration the HTTP side uses. */
export interface JobContext {
  db: Db;
  database: Database;
  config: Config;
  log: JobLog;
  /** Aborted when the worker starts stopping: long handlers stop between units of work and throw. */
  signal: AbortSignal;
}

/** Throws to fail the attempt (pg-boss retries it); returns to complete the job. */
export type JobHandler<T> = (job: Job<T>, ctx: JobContext) => Promise<void>;

export interface JobOptions {
  /** Retries after the first attempt. */
  retryLimit?: number;
  /** Seconds before a retry; with `retryBackoff` the base of an exponential, jittered delay. */
  retryDelay?: number;
  retryBackoff?: boolean;
  /** An attempt running longer than this is failed (and retried). */
  expireInSeconds?: number;
  /** Attempts this process runs at once for this queue. */
  concurrency?: number;
  /** pg-boss queue policy; `singleton` and `stately` deduplicate by `singletonKey`. */
  policy?: 'standard' | 'short' | 'singleton' | 'stately';
}

export interface JobDefinition {
  name: string;
  handler: JobHandler<unknown>;
  options: Required<Omit<JobOptions, 'policy'>> & Pick<JobOptions, 'policy'>;
}

const DEFAULTS = { retryLimit: 3, retryDelay: 10, retryBackoff: true, expireInSeconds: 300, concurrency: 1 };

const definitions = new Map<string, JobDefinition>();

/**
 * Declares a job queue and the function that does its work. Call it at the top level of the module
 * that owns the work (imported before the app is built), so the queue exists in every process
 * that enqueues and the worker finds the handler; the worker itself only dispatches.
 */
export function registerJobHandler<T>(name: string, handler: JobHandler<T>, options: JobOptions = {}): void {
  if (!/^[a-z][a-z0-9_.-]*$/.test(name)) throw new Error(`job name "${name}" must be lower-case words joined by . - _`);
  if (definitions.has(name)) throw new Error(`job "${name}" already has a handler`);
  definitions.set(name, { name, handler: handler as JobHandler<unknown>, options: { ...DEFAULTS, ...options } });
}

/** The registered handler and settings of one queue, if any. */
export function jobDefinition(name: string): JobDefinition | undefined {
  return definitions.get(name);
}

/** Every registered queue, in registration order. */
export function jobDefinitions(): JobDefinition[] {
  return [...definitions.values()];
}
