import type { FastifyRequest } from 'fastify';
import { newId } from '../../platform/db/ids.js';
import { apiKeyRowId } from '../api-keys/env-key.js';
import type { ActivityBuffer } from './activity-buffer.js';
import { redactDetails } from './redact.js';
import { type SeedSeverity, type Severity, storedSeverity } from './severity.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Seed 002's ActivityTracker: buffered application events and tracked units of work. */
    tracker: Tracker;
  }
}

/** Seed 002's `ActivityTracker.track(...)` arguments. */
export interface TrackInput {
  type: string;
  /** The user the activity is about: an id, or `{ id, organizationId }`; defaults to the request's user. */
  user?: string | { id: string; organizationId?: string | null } | null;
  organizationId?: string | null;
  description: string;
  category?: string;
  /** Seed 002's low/normal/high are understood too. */
  severity?: Severity | SeedSeverity;
  success?: boolean;
  /** Redacted before storage. */
  details?: Record<string, unknown>;
  tags?: string[];
  /** Supplies the actor, organization, IP and user agent. */
  request?: FastifyRequest;
}

export interface Tracker {
  /** Queues one activity for the bulk writer; returns at once (not for audit events: see recordAudit). */
  track(input: TrackInput): void;
  /**
   * Seed 002's `@track_activity` decorator: runs `work`, then tracks its duration and outcome
   * (success, or failure with the error's name and message) and returns or rethrows its result.
   */
  trackWork<T>(meta: Omit<TrackInput, 'success'>, work: () => Promise<T> | T): Promise<T>;
  /** Wraps a function so that every call is tracked as by `trackWork`. */
  tracked<A extends unknown[], T>(
    meta: Omit<TrackInput, 'success'>,
    fn: (...args: A) => Promise<T> | T,
  ): (...args: A) => Promise<T>;
}

const MAX_USER_AGENT = 512;

export function createTracker(buffer: ActivityBuffer): Tracker {
  const track = (input: TrackInput): void => {
    const actor = input.request?.actor;
    const signedIn = actor && actor.kind !== 'anonymous' ? actor : undefined;
    const user = typeof input.user === 'string' ? { id: input.user } : (input.user ?? undefined);
    const userId = user ? user.id : signedIn?.kind === 'user' ? signedIn.userId : null;
    const organizationId =
      input.organizationId !== undefined
        ? input.organizationId
        : (user?.organizationId ?? signedIn?.organizationId ?? null);
    const userAgent = input.request?.headers['user-agent'];
    buffer.push({
      timestamp: new Date(),
      id: newId(),
      kind: 'event',
      activityType: input.type,
      category: input.category ?? 'general',
      severity: storedSeverity(input.severity ?? 'info'),
      success: input.success ?? true,
      organizationId,
      userId,
      actorType: signedIn ? signedIn.kind : 'system',
      actorId: signedIn?.kind === 'user' ? signedIn.userId : null,
      apiKeyId: signedIn?.kind === 'api_key' ? apiKeyRowId(signedIn.apiKeyId) : null,
      description: input.description,
      details: redactDetails(input.details),
      tags: input.tags ?? null,
      ipAddress: input.request?.ip ?? null,
      userAgent: userAgent ? userAgent.slice(0, MAX_USER_AGENT) : null,
      method: null,
      path: null,
      status: null,
      durationMs: null,
    });
  };

  const trackWork = async <T>(meta: Omit<TrackInput, 'success'>, work: () => Promise<T> | T): Promise<T> => {
    const started = performance.now();
    try {
      const result = await work();
      track({ ...meta, success: true, details: { ...meta.details, duration_ms: performance.now() - started } });
      return result;
    } catch (err) {
      const error = err instanceof Error ? { name: err.name, message: err.message } : { message: String(err) };
      track({
        ...meta,
        success: false,
        severity: meta.severity ?? 'warning',
        details: { ...meta.details, duration_ms: performance.now() - started, error },
      });
      throw err;
    }
  };

  return {
    track,
    trackWork,
    tracked:
      (meta, fn) =>
      (...args) =>
        trackWork(meta, () => fn(...args)),
  };
}
