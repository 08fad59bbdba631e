-- Observed instances belong to the runtime driver (as a kubelet owns pod status); the API
-- serves them from the driver's live snapshot, so the table from 0001 is retired.
DROP TABLE instances;
