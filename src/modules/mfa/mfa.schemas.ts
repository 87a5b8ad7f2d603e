import { type Static, Type } from '@fastify/type-provider-typebox';
import { TokenPairView } from '../auth/auth.schemas.js';

const Code = Type.String({
  minLength: 6,
  maxLength: 32,
  description: 'A current 6-digit TOTP code, or (where stated) one of the recovery codes.',
});

export const TotpEnrolmentView = Type.Object({
  secret: Type.String({ description: 'Base32 secret; shown only here.' }),
  otpauth_uri: Type.String({ description: '`otpauth://totp/…` URI for a QR code.' }),
});

export const CodeBody = Type.Object({ code: Code });
export type CodeInput = Static<typeof CodeBody>;

export const RecoveryCodesView = Type.Object({
  enabled: Type.Literal(true),
  recovery_codes: Type.Array(Type.String(), { description: 'Ten single-use codes; shown only here.' }),
});

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
