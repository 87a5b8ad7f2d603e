import { type AuthProvider, HttpError } from 'react-admin';
import { api, checkBeforeEachCall, csrfToken, type Problem } from './http';

export interface Profile {
  id: string;
  email: string;
  username: string | null;
  first_name: string;
  last_name: string;
  organization: string;
  is_staff: boolean;
  is_superuser: boolean;
}

export interface Access {
  permissions: string[];
  modules: string[];
  is_superuser: boolean;
}

/** Thrown by login when the password matched and a second factor is due. */
export class MfaRequired extends Error {
  constructor(readonly mfaToken: string) {
    super('Enter the code from your authenticator app.');
  }
}

/**
 * Thrown by login when the password matched but the organization requires a second factor the
 * account lacks: the new authenticator's secret, to be confirmed with its first code.
 */
export class MfaEnrolmentRequired extends Error {
  constructor(
    readonly mfaToken: string,
    readonly secret: string,
    readonly otpauthUri: string,
  ) {
    super('Set up an authenticator app to sign in.');
  }
}

/**
 * Screens for superusers only: organizations are a platform matter, and the mail outbox belongs to no
 * organization and holds other people's reset and invitation links (the server refuses everyone else).
 */
const superuserOnly = new Set(['organizations', 'mail-outbox']);

/**
 * Which permission each console screen needs, mirroring the route checks so the console hides what
 * the server would refuse anyway.
 */
const required: Record<string, { read: string; write: string; delete?: string }> = {
  users: { read: 'users.view', write: 'users.update', delete: 'users.delete' },
  'user-roles': { read: 'users.view', write: 'users.update' },
  'user-sessions': { read: 'sessions.manage', write: 'sessions.manage' },
  // The user-type routes, listing included, all need user_types.manage.
  'user-types': { read: 'user_types.manage', write: 'user_types.manage' },
  roles: { read: 'roles.view', write: 'roles.manage' },
  permissions: { read: 'roles.view', write: 'permissions.manage' },
  modules: { read: 'roles.view', write: 'modules.manage' },
  // The pickers read the catalog and never write through it.
  'assignable-roles': { read: 'roles.view', write: 'roles.manage' },
  'permission-codes': { read: 'roles.view', write: 'roles.manage' },
  'module-codes': { read: 'roles.view', write: 'roles.manage' },
  'api-keys': { read: 'apikeys.manage', write: 'apikeys.manage' },
  activities: { read: 'activities.view', write: 'activities.view' },
  'activity-stats': { read: 'activities.view', write: 'activities.view' },
  'active-users': { read: 'activities.view', write: 'activities.view' },
  integrations: { read: 'integrations.view', write: 'integrations.manage' },
  'integration-health-checks': { read: 'integrations.view', write: 'integrations.manage' },
  'integration-logs': { read: 'integrations.view', write: 'integrations.manage' },
};

/** Whether the signed-in user may do `action` on a console resource. */
export function canDo(access: Access | undefined, resource: string, action: string): boolean {
  if (!access) return false;
  if (access.is_superuser) return true;
  if (superuserOnly.has(resource)) return false;
  const needs = required[resource];
  if (!needs) return false;
  const permission =
    action === 'list' || action === 'show' || action === 'read'
      ? needs.read
      : action === 'delete'
        ? (needs.delete ?? needs.write)
        : needs.write;
  return access.permissions.includes(permission);
}

/** A user with none of the console's read permissions gets the "no access" page, not empty menus. */
export function hasConsoleAccess(access: Access | undefined): boolean {
  return Boolean(access && (access.is_superuser || Object.keys(required).some((r) => canDo(access, r, 'list'))));
}

// The session is an httpOnly cookie the console cannot read: who is signed in comes from the API,
// fetched once per page load and after every login, and kept in memory only.
let profile: Promise<Profile> | undefined;
let access: Promise<Access> | undefined;

/**
 * Whom this page shows, and the CSRF cookie of that session. The cookies are shared by every tab, and
 * the CSRF cookie (derived from the session cookie, and readable) changes whenever another tab signs
 * in or out: comparing it is free, so the profile is read again only when it changed.
 */
let shown: { userId: string; csrf: string | undefined } | undefined;
let checking: Promise<void> | undefined;

const PROFILE = '/api/v1/users/profile/';

function loadProfile(): Promise<Profile> {
  profile ??= (async () => {
    const csrf = csrfToken();
    const me = await api<Profile>(PROFILE, { unchecked: true });
    shown = { userId: me.id, csrf };
    return me;
  })().catch((err) => {
    profile = undefined;
    throw err;
  });
  return profile;
}

/**
 * Reloads the page when the session cookie now belongs to another user (signed in in another tab), so
 * it never shows the previous user's name and menus nor sends a request as the new one unawares.
 */
function followSessionChange(): Promise<void> {
  if (!shown || csrfToken() === shown.csrf) return Promise.resolve();
  checking ??= (async () => {
    const csrf = csrfToken();
    // A 401 is an answer (no session); any other failure fails the call that asked, and the next one checks again.
    const me = await api<Profile>(PROFILE, { unchecked: true }).catch((err) => {
      if (err instanceof HttpError && err.status === 401) return undefined;
      throw err;
    });
    const before = shown;
    if (!before) return;
    if (me && me.id !== before.userId) {
      window.location.reload();
      // Held until the page unloads: the request that asked is not sent under the new identity.
      await new Promise(() => undefined);
    }
    // The same user (signed in again), or no session at all: the request goes ahead, and a 401 signs
    // out (or fails a write, keeping its form) as ever.
    shown = { userId: before.userId, csrf };
  })().finally(() => {
    checking = undefined;
  });
  return checking;
}

checkBeforeEachCall(followSessionChange);
// A tab shown again follows at once rather than at its next request (no polling while hidden); a
// failed check is left to that next request.
const followWhenShown = () => void followSessionChange().catch(() => undefined);
window.addEventListener('focus', followWhenShown);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') followWhenShown();
});

/** Pages a visitor opens without a session: from a mailed link, or from the sign-in page. */
const PUBLIC_PAGES = ['/forgot-password', '/set-password', '/verify-email'];

function onPublicPage(): boolean {
  const path = window.location.pathname.replace(/\/+$/, '');
  return PUBLIC_PAGES.some((page) => path.endsWith(page));
}

function loadAccess(): Promise<Access> {
  access ??= api<Access>('/api/v1/users/profile/permissions/').catch((err) => {
    access = undefined;
    throw err;
  });
  return access;
}

/** The cookie logout's answer to `all: true` when the browser had no working session left. */
function noSessionLeft(err: HttpError): boolean {
  const problem = err.body as Problem | undefined;
  return err.status === 400 && (problem?.errors ?? []).some((e) => e.field === 'all');
}

/**
 * Whether the page was signed out by the server's 401 while it showed a signed-in user (the session was
 * revoked elsewhere, or expired), for the sign-in page to say so. A sign-in, or a sign-out the user
 * asked for, clears it. In memory only: a reloaded page cannot tell an ended session from none.
 */
let endedByServer = false;

/** Whether the last sign-out came from the server ending the session, not from the user. */
export function sessionEndedByServer(): boolean {
  return endedByServer;
}

function forget(): void {
  profile = undefined;
  access = undefined;
  shown = undefined;
}

export const authProvider: AuthProvider = {
  async login(params: {
    username?: string;
    password?: string;
    organization?: string;
    mfaToken?: string;
    code?: string;
    /** The login page finished the second step itself (an enrolment, to show the recovery codes). */
    signedIn?: boolean;
  }) {
    forget();
    endedByServer = false;
    if (params.signedIn) return;
    if (params.mfaToken) {
      await api('/api/login/mfa/', { method: 'POST', body: { mfa_token: params.mfaToken, code: params.code } });
      return;
    }
    // The API's `username` field takes an email address as well.
    const body: Record<string, string> = { username: (params.username ?? '').trim(), password: params.password ?? '' };
    if (params.organization) body.organization = params.organization;
    let answer: { mfa_required?: boolean; mfa_token?: string };
    try {
      answer = await api('/api/login/', { method: 'POST', body });
    } catch (err) {
      const problem = err instanceof HttpError ? (err.body as { code?: string; mfa_token?: string }) : undefined;
      if (problem?.code !== 'mfa_enrollment_required' || !problem.mfa_token) throw err;
      const enrolment = await api<{ secret: string; otpauth_uri: string }>('/api/v1/users/login/mfa/enrol/', {
        method: 'POST',
        body: { mfa_token: problem.mfa_token },
      });
      throw new MfaEnrolmentRequired(problem.mfa_token, enrolment.secret, enrolment.otpauth_uri);
    }
    if (answer.mfa_required && answer.mfa_token) throw new MfaRequired(answer.mfa_token);
  },

  /**
   * `byUser`: the user asked for it (the sign-out menu entries, the no-access page's button);
   * `everywhere` (the user menu's "Sign out everywhere") ends every session of the user.
   */
  async logout(params?: { byUser?: boolean; everywhere?: boolean } | null) {
    try {
      await api('/api/logout/', { method: 'POST', ...(params?.everywhere ? { body: { all: true } } : {}) });
    } catch (err) {
      // 401: there was no session left to end, which is what was asked; so is the 400 naming `all`
      // that signing out everywhere answers without a working session. Anything else (a missing or
      // stale CSRF cookie answers 403) left the session open: showing the sign-in page would hide
      // that, and a reload would find the user still signed in.
      if (!(err instanceof HttpError && (err.status === 401 || (params?.everywhere && noSessionLeft(err))))) {
        throw new Error(`Sign-out failed, you are still signed in: ${(err as Error).message}`);
      }
    }
    forget();
    // After forget(): a request that met the closing session meanwhile (a 401) is the user's doing too.
    if (params?.byUser) endedByServer = false;
  },

  async checkAuth() {
    await loadProfile();
  },

  async checkError(error: { status?: number; body?: { keepPage?: boolean } }) {
    if (error?.status !== 401) return;
    // A 401 to a page that showed someone signed in: their session ended on the server.
    if (shown) endedByServer = true;
    forget();
    // A write refused for an ended session fails as itself, keeping the page (see the data provider):
    // signing out here would have react-admin report it as done. The next read signs out.
    if (error.body?.keepPage) return;
    throw error;
  },

  async getIdentity() {
    const me = await loadProfile();
    const name = `${me.first_name} ${me.last_name}`.trim();
    return {
      id: me.id,
      fullName: `${name || me.username || me.email} (${me.organization})`,
      email: me.email,
      // The organization a new user joins by default (the user form lists its user types).
      organization: me.organization,
      // Staff and superusers may read the export statistics (the dashboard's user counts).
      isStaff: me.is_staff || me.is_superuser,
      // Only superusers make superusers: the user form offers the flag to them alone.
      isSuperuser: me.is_superuser,
    };
  },

  async getPermissions() {
    try {
      return await loadAccess();
    } catch (err) {
      // react-admin asks for permissions on every route, the public pages included, and signs out
      // (leaving for the sign-in page) when the answer fails: there, no session is the expected answer.
      if (onPublicPage() && err instanceof HttpError && err.status === 401) return undefined;
      throw err;
    }
  },

  async canAccess({ resource, action }) {
    return canDo(await loadAccess(), resource, action);
  },
};
