-- Tideway schema v1 (SQLite). Append-only: never edit once released; add 0002_… instead.
-- Times are unix milliseconds; JSON is stored as TEXT so both backends share the same SQL.

CREATE TABLE namespaces (
    name        TEXT PRIMARY KEY,
    labels      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    generation  BIGINT NOT NULL
);

CREATE TABLE apps (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace       TEXT NOT NULL REFERENCES namespaces(name),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    labels          TEXT NOT NULL,
    replicas        BIGINT NOT NULL,
    current_version BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    generation      BIGINT NOT NULL,
    CONSTRAINT apps_namespace_name UNIQUE (namespace, name)
);

CREATE TABLE versions (
    app_id          BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    number          BIGINT NOT NULL,
    artifact_digest TEXT NOT NULL,
    spec            TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (app_id, number)
);

CREATE TABLE releases (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    from_versions   TEXT NOT NULL,
    target_version  BIGINT NOT NULL,
    strategy        TEXT NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    generation      BIGINT NOT NULL
);
CREATE INDEX releases_by_app ON releases (app_id, id);
CREATE INDEX releases_by_state ON releases (state);
-- At most one active release per app, even under concurrent writers.
CREATE UNIQUE INDEX releases_one_active ON releases (app_id) WHERE state IN ('pending', 'progressing');

CREATE TABLE instances (
    id          TEXT PRIMARY KEY,
    app_id      BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    state       TEXT NOT NULL,
    address     TEXT,
    pid         BIGINT,
    restarts    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX instances_by_app ON instances (app_id, id);

CREATE TABLE autoscaling_policies (
    app_id      BIGINT PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    namespaces  TEXT,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        BIGINT NOT NULL,
    namespace   TEXT,
    app         TEXT,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX events_by_app ON events (namespace, app, id);
CREATE INDEX events_by_kind ON events (kind, id);
