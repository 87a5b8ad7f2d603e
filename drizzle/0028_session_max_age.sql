-- rotate_refresh_token (migration 0007) slid a session's expiry with every refresh, without end: a
-- session refreshed in time lived for ever, and a policy that applies at login (a required second
-- factor, a verified address) never reached it. It now takes the session's greatest age: the session
-- and the successor token expire at the earlier of the sliding expiry and the session's start plus that
-- age, and a session past it is no longer usable (no successor). Drop and create, as 0007 did.
DROP FUNCTION rotate_refresh_token(text, uuid, text, timestamptz);
--> statement-breakpoint
CREATE FUNCTION rotate_refresh_token(
  p_token_hash text,
  p_successor_id uuid,
  p_successor_hash text,
  p_expires_at timestamptz,
  p_max_age_seconds integer
) RETURNS TABLE (
  session_id uuid,
  user_id uuid,
  organization_id uuid,
  organization_code text,
  organization_active boolean,
  user_status text,
  email text,
  username text,
  first_name text,
  last_name text,
  is_staff boolean,
  is_superuser boolean,
  email_verified boolean,
  revoked_at timestamptz,
  expires_at timestamptz,
  rotated boolean
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH consumed AS (
    UPDATE refresh_tokens SET used_at = now()
    WHERE token_hash = p_token_hash AND used_at IS NULL AND expires_at > now()
    RETURNING session_id
  ), state AS (
    SELECT s.id AS session_id, s.user_id, s.organization_id, o.code AS organization_code,
      o.is_active AS organization_active, u.status AS user_status, u.email, u.username,
      u.first_name, u.last_name, u.is_staff, u.is_superuser, u.email_verified, s.revoked_at, s.expires_at,
      LEAST(p_expires_at, s.created_at + make_interval(secs => p_max_age_seconds)) AS next_expires_at,
      (s.revoked_at IS NULL AND s.expires_at > now() AND u.status = 'active' AND o.is_active
        AND s.created_at + make_interval(secs => p_max_age_seconds) > now()) AS usable
    FROM consumed c
    JOIN sessions s ON s.id = c.session_id
    JOIN users u ON u.id = s.user_id
    JOIN organizations o ON o.id = s.organization_id
  ), successor AS (
    INSERT INTO refresh_tokens (organization_id, id, session_id, token_hash, expires_at)
    SELECT st.organization_id, p_successor_id, st.session_id, p_successor_hash, st.next_expires_at
    FROM state st WHERE st.usable
    RETURNING id
  ), touched AS (
    UPDATE sessions SET last_activity_at = now(), expires_at = st.next_expires_at
    FROM state st
    WHERE sessions.id = st.session_id AND st.usable
    RETURNING sessions.id
  )
  SELECT st.session_id, st.user_id, st.organization_id, st.organization_code, st.organization_active,
    st.user_status, st.email, st.username, st.first_name, st.last_name, st.is_staff, st.is_superuser,
    st.email_verified, st.revoked_at, st.expires_at, EXISTS (SELECT 1 FROM successor)
  FROM state st;
END
$$;
