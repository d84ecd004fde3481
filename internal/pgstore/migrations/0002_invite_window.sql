-- flows.InviteWindow: Graph's per-tenant invitation window, shared by every
-- replica. One row says until when Graph throttled invitations (a 429's
-- Retry-After); invite_slots holds when each recent POST /invitations was
-- let through. TakeInviteSlot locks the row, so replicas take slots one at a
-- time.
CREATE TABLE invite_window (
    id               smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    throttled_until  timestamptz NOT NULL DEFAULT 'epoch'
);

INSERT INTO invite_window DEFAULT VALUES;

CREATE TABLE invite_slots (
    at  timestamptz NOT NULL
);

CREATE INDEX invite_slots_at ON invite_slots (at);
