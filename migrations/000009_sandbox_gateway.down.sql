-- Only the sandbox gateway's test-mode records: billing's own history of money movements is in
-- the events.
DROP TABLE IF EXISTS sandbox_refunds;
DROP TABLE IF EXISTS sandbox_charges;
