-- Where a release is in its plan (step, absolute pause deadlines, weights, analysis results),
-- persisted with every transition so a restarted control plane resumes at the same step.
ALTER TABLE releases ADD COLUMN progress TEXT NOT NULL DEFAULT '{}';
