DROP TABLE IF EXISTS mrr_movements_next;
DROP TABLE IF EXISTS subscription_view_next;
DROP TABLE IF EXISTS mrr_movements;
DROP TABLE IF EXISTS subscription_view;
-- The progress of a projector whose tables are gone would make it skip every event when they
-- come back.
DELETE FROM projection_versions WHERE projector IN ('subscriptions', 'subscriptions:rebuild');
DELETE FROM projection_checkpoints WHERE projector = 'subscriptions';
