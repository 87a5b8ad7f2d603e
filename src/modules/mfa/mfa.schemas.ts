import { type Static, Type } from '@fastify/type-provider-typebox';
import { TokenPairView } from '../auth/auth.schemas.js';

const Code = Type.String({
  minLength: 6,
  maxLength: 32,
  description:
    'A current 6-digit TOTP code (spaces ignored: "123 456" as authenticator apps show it), or (where stated) one of ' +
    'the recovery codes (case, dashes and spaces ignored).',
});

export const TotpEnrolmentView = Type.Object({
  secret: Type.String({ description: 'Base32 secret; shown only here.' }),
  otpauth_uri: Type.String({ description: '`otpauth://totp/…` URI for a QR code.' }),
});

export const EnrolBody = Type.Object({
  password: Type.String({
    minLength: 1,
    maxLength: 1024,
    description: 'The current password: an access token alone does not turn a second factor on.',
  }),
});

export const EnrolWithChallengeBody = Type.Object({
  mfa_token: Type.String({
    minLength: 1,
    maxLength: 128,
    description: 'The `mfa_token` of a login answered 403 `mfa_enrollment_required`.',
  }),
});

export const CodeBody = Type.Object({ code: Code });
export type CodeInput = Static<typeof CodeBody>;

export const RecoveryCodesView = Type.Object({
  enabled: Type.Literal(true),
  recovery_codes: Type.Array(Type.String(), { description: 'Ten single-use codes; shown only here.' }),
});

/** Only after a second step that enrolled the authenticator (an organization requiring one). */
export const EnrolledRecoveryCodes = Type.Optional(
  Type.Array(Type.String(), {
    description: 'Only when this login enrolled the authenticator: ten single-use codes, shown only here.',
  }),
);

/** The tokens of a second step; after an enrolment also the new authenticator's recovery codes. */
export const MfaLoginView = Type.Intersect([TokenPairView, Type.Object({ recovery_codes: EnrolledRecoveryCodes })]);

export const MfaLoginBody = Type.Object({
  mfa_token: Type.String({ minLength: 1, maxLength: 128 }),
  code: Code,
});
export type MfaLoginInput = Static<typeof MfaLoginBody>;

export const MfaRequiredView = Type.Object({
  mfa_required: Type.Literal(true),
  mfa_token: Type.String({
    description: 'Single use, valid 5 minutes: send it with a code to /api/v1/users/login/mfa/.',
  }),
  methods: Type.Array(Type.Literal('totp')),
  expires_in: Type.Integer(),
});

export const LoginAnswerView = Type.Union([TokenPairView, MfaRequiredView]);

export const UserIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
