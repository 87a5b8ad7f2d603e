-- rotate_refresh_token (migration 0002) also answers the user's email_verified, so a refreshed access
-- token carries the same claims as one issued at login. A function's result type cannot be changed in
-- place: drop and create, in the migration's one transaction.
DROP FUNCTION rotate_refresh_token(text, uuid, text, timestamptz);
--> statement-breakpoint
CREATE FUNCTION rotate_refresh_token(
  p_token_hash text,
  p_successor_id uuid,
  p_successor_hash text,
  p_expires_at timestamptz
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
      (s.revoked_at IS NULL AND s.expires_at > now() AND u.status = 'active' AND o.is_active) AS usable
    FROM consumed c
    JOIN sessions s ON s.id = c.session_id
    JOIN users u ON u.id = s.user_id
    JOIN organizations o ON o.id = s.organization_id
  ), successor AS (
    INSERT INTO refresh_tokens (organization_id, id, session_id, token_hash, expires_at)
    SELECT st.organization_id, p_successor_id, st.session_id, p_successor_hash, p_expires_at
    FROM state st WHERE st.usable
    RETURNING id
  ), touched AS (
    UPDATE sessions SET last_activity_at = now(), expires_at = p_expires_at
    WHERE id IN (SELECT st.session_id FROM state st WHERE st.usable)
    RETURNING id
  )
  SELECT st.session_id, st.user_id, st.organization_id, st.organization_code, st.organization_active,
    st.user_status, st.email, st.username, st.first_name, st.last_name, st.is_staff, st.is_superuser,
    st.email_verified, st.revoked_at, st.expires_at, EXISTS (SELECT 1 FROM successor)
  FROM state st;
END
$$;
