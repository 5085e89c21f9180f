-- What the background sweep needs. Keep in step with ../postgres/0009_sweep.sql.

-- A registered MCP client lapses (and is swept) after `kept_until`: 30 days after its
-- registration, moved by each authorization to 30 days after that authorization's
-- refresh-token family expires. Clients registered before this migration are kept 60 days
-- from it (they may have been authorized at any time).
ALTER TABLE oauth_clients ADD COLUMN kept_until INTEGER NOT NULL DEFAULT 0;
UPDATE oauth_clients SET kept_until = CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 5184000000;
CREATE INDEX oauth_clients_kept_until ON oauth_clients (kept_until);

-- The times the sweep selects rows by (flows, auth_grants, idempotency_keys and events have
-- theirs already).
CREATE INDEX login_codes_expires_at ON login_codes (expires_at);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_revoked_at ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
