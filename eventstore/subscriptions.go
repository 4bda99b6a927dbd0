package eventstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
)

// SubscriptionStream is the stream type of subscription aggregates.
const SubscriptionStream = "subscription"

// subscriptionSchemaVersion is the schema version written for subscription events. A reader
// meets only versions it knows; anything else fails loudly rather than being misread.
const subscriptionSchemaVersion = 1

// LoadSubscription rebuilds a subscription by folding its events (bounded by opts) and returns
// the events it folded. A stream with no events gives the zero Subscription (Exists() false).
func LoadSubscription(ctx context.Context, q Querier, id uuid.UUID, opts LoadOptions) (domain.Subscription, []Event, error) {
	events, err := Load(ctx, q, id, opts)
	if err != nil {
		return domain.Subscription{}, nil, err
	}
	var s domain.Subscription
	for _, e := range events {
		de, err := DecodeSubscriptionEvent(e)
		if err != nil {
			return domain.Subscription{}, nil, err
		}
		s = domain.Evolve(s, de)
	}
	return s, events, nil
}

// DecodeSubscriptionEvent turns a stored event back into the domain event it records.
func DecodeSubscriptionEvent(e Event) (domain.Event, error) {
	if e.SchemaVersion != subscriptionSchemaVersion {
		return nil, fmt.Errorf("event %s (%s, stream %s version %d): unsupported schema version %d",
			e.ID, e.Type, e.StreamID, e.Version, e.SchemaVersion)
	}
	de, err := domain.DecodeEvent(e.Type, e.Data)
	if err != nil {
		return nil, fmt.Errorf("event %s (stream %s version %d): %w", e.ID, e.StreamID, e.Version, err)
	}
	return de, nil
}

// EncodeSubscriptionEvents prepares domain events for Append, each carrying meta.
func EncodeSubscriptionEvents(events []domain.Event, meta Metadata) ([]NewEvent, error) {
	out := make([]NewEvent, len(events))
	for i, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
		}
		out[i] = NewEvent{
			ID:            uuid.Must(uuid.NewV7()),
			Type:          e.EventType(),
			SchemaVersion: subscriptionSchemaVersion,
			Data:          data,
			Metadata:      meta,
			OccurredAt:    e.OccurredAt(),
		}
	}
	return out, nil
}
