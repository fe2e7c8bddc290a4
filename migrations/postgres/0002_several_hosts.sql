-- Several hosts on one database: the sign-in limiter's counts as rows every
-- host shares, one per key, changed under row locks by each attempt (the
-- single-row snapshot one process kept goes), and jobs claimed per interval.
DROP TABLE host.sign_in_limits;

CREATE TABLE host.sign_in_counts (
    key      text PRIMARY KEY,
    -- Unix milliseconds of each failure in the window, oldest first.
    failures bigint[] NOT NULL,
    -- For a slowed user: when an unfamiliar address may try next.
    next_try bigint,
    -- When the row last changed, for the sweep.
    last     bigint NOT NULL
);
CREATE INDEX sign_in_counts_last ON host.sign_in_counts (last);

CREATE TABLE host.sign_in_familiar (
    username text NOT NULL,
    address  text NOT NULL,
    at       bigint NOT NULL,
    PRIMARY KEY (username, address)
);
CREATE INDEX sign_in_familiar_at ON host.sign_in_familiar (at);

-- Jobs that run once per interval across every host: the host whose
-- claim moves `last_run` on does the work.
CREATE TABLE host.jobs (
    name     text PRIMARY KEY,
    last_run timestamptz NOT NULL
);
