-- The app's schema and the host's own tables.
--
-- Money is integer cents, tax rates are integer basis points (1900 = 19 %),
-- dates are ISO-8601 text (YYYY-MM-DD), timestamps are UTC ISO-8601 text.

CREATE TABLE customers (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email      TEXT CHECK (email IS NULL OR length(email) <= 254),
    phone      TEXT CHECK (phone IS NULL OR length(phone) <= 50),
    address    TEXT CHECK (address IS NULL OR length(address) <= 500),
    notes      TEXT CHECK (notes IS NULL OR length(notes) <= 2000),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE UNIQUE INDEX customers_email ON customers (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX customers_name ON customers (name COLLATE NOCASE);

CREATE TABLE invoices (
    id             INTEGER PRIMARY KEY,
    -- A gapless sequence: the next number is max(number) + 1, taken in the
    -- same statement that inserts the invoice; invoices are never deleted.
    number         INTEGER NOT NULL UNIQUE CHECK (number > 0),
    customer_id    INTEGER NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    issued_on      TEXT NOT NULL,
    due_on         TEXT,
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid')),
    paid_on        TEXT,
    tax_rate_bp    INTEGER NOT NULL DEFAULT 0 CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    subtotal_cents INTEGER NOT NULL DEFAULT 0 CHECK (subtotal_cents >= 0),
    tax_cents      INTEGER NOT NULL DEFAULT 0 CHECK (tax_cents >= 0),
    total_cents    INTEGER NOT NULL DEFAULT 0 CHECK (total_cents >= 0),
    notes          TEXT CHECK (notes IS NULL OR length(notes) <= 2000),
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX invoices_customer ON invoices (customer_id);
CREATE INDEX invoices_issued_on ON invoices (issued_on);

CREATE TABLE invoice_items (
    id               INTEGER PRIMARY KEY,
    invoice_id       INTEGER NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position         INTEGER NOT NULL CHECK (position > 0),
    description      TEXT NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    line_total_cents INTEGER NOT NULL CHECK (line_total_cents = quantity * unit_price_cents),
    UNIQUE (invoice_id, position)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO settings (key, value) VALUES
    ('company_name', 'RawaLite Demo'),
    ('company_address', ''),
    ('tax_rate_bp', '1900');

-- The host's own tables. No grant can ever name them: the manifest is
-- refused at load if one does, and the authorizer denies them anyway.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    roles         TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE TABLE sessions (
    token_hash   BLOB PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user_id);
