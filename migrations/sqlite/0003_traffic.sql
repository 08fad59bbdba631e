-- Traffic splitting, app routing and request-metric rollups (the gateway issue).

-- Custom domains and path prefixes of an app: {"domains": [...], "path_prefixes": [...]}.
ALTER TABLE apps ADD COLUMN routing TEXT NOT NULL DEFAULT '{}';

CREATE TABLE traffic_policies (
    app_id      BIGINT PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Per-minute rollups of the gateway's per-second metrics, kept 14 days.
CREATE TABLE metrics_minutely (
    app_id          BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    minute          BIGINT NOT NULL,
    requests        BIGINT NOT NULL,
    responses_2xx   BIGINT NOT NULL,
    responses_3xx   BIGINT NOT NULL,
    responses_4xx   BIGINT NOT NULL,
    responses_5xx   BIGINT NOT NULL,
    concurrency     DOUBLE PRECISION NOT NULL,
    p50_ms          DOUBLE PRECISION,
    p90_ms          DOUBLE PRECISION,
    p99_ms          DOUBLE PRECISION,
    PRIMARY KEY (app_id, version, minute)
);
CREATE INDEX metrics_minutely_by_minute ON metrics_minutely (minute);
