-- The sign-in limiter's counts, so a restart does not hand an attacker a
-- fresh budget of guesses: one row, a JSON snapshot `serve` writes when
-- the counts changed (every few seconds, and when it stops).
CREATE TABLE sign_in_limits (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
