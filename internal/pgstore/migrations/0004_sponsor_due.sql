-- flows.InvitationFilter.SponsorDue: the invitations told, with their
-- sponsor still to record. Resumption lists them on every look (the
-- leader's, every INVITEBOT_LEASE_TTL): through this index, not a scan of
-- every invitation. Its predicate is the one pgstore's query uses.
CREATE INDEX invitations_sponsor_due ON invitations (created_ns, id) WHERE (doc->>'sponsorDue') = 'true';
