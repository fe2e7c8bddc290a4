-- Where a session was opened from (the client address `serve` saw), for
-- `rawalite session list`. Sessions opened before this migration have none.
ALTER TABLE sessions ADD COLUMN client TEXT;
