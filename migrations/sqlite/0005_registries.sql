-- Service registry connections and sync jobs of a namespace (the registry bridge issue).
-- `spec` is the object as created, secrets included: the API never returns them.
CREATE TABLE registry_objects (
    namespace   TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, kind, name)
);
