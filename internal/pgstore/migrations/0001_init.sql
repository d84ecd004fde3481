-- invitebot's PostgreSQL schema, version 1.
--
-- Records are the JSON documents the bbolt store keeps
-- (doc); the columns beside them are what SQL must see: keys, the
-- uniqueness invitebot relies on, and ordering. Times used for ordering
-- are Unix nanoseconds (timestamptz keeps microseconds, bbolt orders by
-- nanoseconds).

CREATE TABLE invitations (
    id           text PRIMARY KEY,
    -- flows.Origin: kind, key, and their UniqueKey (NULL without a key):
    -- one invitation per submission, bulk row, workflow step
    origin_kind  text NOT NULL,
    origin_key   text NOT NULL,
    origin_uniq  text UNIQUE,
    inviter      text NOT NULL,
    -- flows.NormalizeEmail of the invitee's address
    email_key    text NOT NULL,
    state        text NOT NULL,
    -- the state is not terminal: at most one per address
    in_flight    boolean NOT NULL,
    -- flows.Invitation.Tracked: background work looks at it
    tracked      boolean NOT NULL,
    created_ns   bigint NOT NULL,
    doc          jsonb NOT NULL
);

CREATE UNIQUE INDEX invitations_in_flight_email ON invitations (email_key) WHERE in_flight;
CREATE INDEX invitations_email ON invitations (email_key);
CREATE INDEX invitations_inviter ON invitations (inviter);
CREATE INDEX invitations_origin ON invitations (origin_kind, origin_key);
CREATE INDEX invitations_tracked ON invitations (created_ns) WHERE tracked;
CREATE INDEX invitations_order ON invitations (created_ns, id);

CREATE TABLE guests (
    object_id  text PRIMARY KEY,
    doc        jsonb NOT NULL
);

-- The audit log: append-only, in the order events were written.
CREATE TABLE audit (
    seq            bigserial PRIMARY KEY,
    at_ns          bigint NOT NULL,
    invitation_id  text NOT NULL,
    doc            jsonb NOT NULL
);

CREATE INDEX audit_at ON audit (at_ns);

-- Leases (flows.Leaser): who runs the background work, until when, and the
-- epoch that fences a replica that lost it.
CREATE TABLE leases (
    name     text PRIMARY KEY,
    holder   text NOT NULL,
    epoch    bigint NOT NULL,
    expires  timestamptz NOT NULL
);

-- flows.SignInStore: the sign-in adapter's records, opaque (sealed by it).
CREATE TABLE signin (
    key    text PRIMARY KEY,
    value  bytea NOT NULL
);
