-- flows.SignInStore: a record's expiry (NULL: kept until deleted). The
-- background work deletes the expired records (connect links, sign-ins in
-- progress) through the index, without reading any value.
ALTER TABLE signin ADD COLUMN expires timestamptz;

CREATE INDEX signin_expires ON signin (expires) WHERE expires IS NOT NULL;

-- The connect links and sign-ins in progress written before this version
-- lasted 10 minutes at most. (A previous release still running during a
-- rolling deploy writes its links without an expiry; so few are left.)
UPDATE signin SET expires = now() + interval '10 minutes' WHERE key LIKE 'link/%' OR key LIKE 'flow/%';
