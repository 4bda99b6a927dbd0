DROP TABLE IF EXISTS subscription_entitlements_next;
DROP TABLE IF EXISTS invoice_movements_next;
DROP TABLE IF EXISTS invoice_view_next;
DROP TABLE IF EXISTS subscription_entitlements;
DROP TABLE IF EXISTS invoice_movements;
DROP TABLE IF EXISTS invoice_view;
-- The progress of a projector whose tables are gone would make it skip every event when they
-- come back.
DELETE FROM projection_versions WHERE projector IN ('invoices', 'invoices:rebuild', 'entitlements', 'entitlements:rebuild');
DELETE FROM projection_checkpoints WHERE projector IN ('invoices', 'entitlements');
