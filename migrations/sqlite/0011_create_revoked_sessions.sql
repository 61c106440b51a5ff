-- Dashboard sign-out revokes the session server-side (issue 15). The session cookie is
-- signed and stateless (any process accepts it); signing out records its nonce here until
-- the cookie would have expired anyway, and every process refuses a revoked nonce, so a
-- copied cookie stops working everywhere at sign-out. Rows are removed once expired.
-- Same number as migrations/postgres/0011.
CREATE TABLE revoked_sessions (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
