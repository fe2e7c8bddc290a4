-- Several hosts on one shared data directory: what each root holds, as
-- its quota counts it, one row per root every host changes under the
-- row's lock (see host/src/capabilities/paths/shared.rs).
CREATE TABLE host.root_usage (
    root    text PRIMARY KEY,
    bytes   bigint NOT NULL,
    entries bigint NOT NULL
);
