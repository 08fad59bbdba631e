-- Where a release is in its plan (step, absolute pause deadlines, weights, analysis results),
-- persisted with every transition so a restarted control plane resumes at the same step.
ALTER TABLE releases ADD COLUMN progress TEXT NOT NULL DEFAULT '{}';

-- A paused release is still the app's one active release.
DROP INDEX releases_one_active;
CREATE UNIQUE INDEX releases_one_active ON releases (app_id)
    WHERE state IN ('pending', 'progressing', 'paused');
