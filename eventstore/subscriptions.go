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

// LoadSubscription rebuilds a subscription by folding its events (bounded by opts) and returns
// the events it folded. A stream with no events gives the zero Subscription (Exists() false).
func LoadSubscription(ctx context.Context, q Querier, id uuid.UUID, opts LoadOptions) (domain.Subscription, []Event, error) {
	events, err := Load(ctx, q, id, opts)
	if err != nil {
		return domain.Subscription{}, nil, err
	}
	var s domain.Subscription
	for _, e := range events {
		de, err := DecodeEvent(e)
		if err != nil {
			return domain.Subscription{}, nil, err
		}
		s = domain.Evolve(s, de)
	}
	return s, events, nil
}

// DecodeEvent turns a stored event back into the domain event it records: it upcasts
// the data from the event's schema version to the current one of its type (see upcast.go), then
// decodes it strictly. An event it cannot read — unknown type, unknown schema version, data that
// does not decode — is an *UnreadableEventError naming the event; nothing is skipped.
func DecodeEvent(e Event) (domain.Event, error) {
	data, err := Upcast(e)
	if err != nil {
		return nil, err
	}
	de, err := domain.DecodeEvent(e.Type, data)
	if err != nil {
		return nil, &UnreadableEventError{EventID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion,
			StreamID: e.StreamID, StreamVersion: e.Version, Err: err}
	}
	return de, nil
}

// EncodeEvents prepares domain events for Append, each carrying meta.
func EncodeEvents(events []domain.Event, meta Metadata) ([]NewEvent, error) {
	out := make([]NewEvent, len(events))
	for i, e := range events {
		version, ok := CurrentSchemaVersion(e.EventType())
		if !ok {
			return nil, fmt.Errorf("encode %s: no schema version for this event type", e.EventType())
		}
		data, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
		}
		out[i] = NewEvent{
			ID:            uuid.Must(uuid.NewV7()),
			Type:          e.EventType(),
			SchemaVersion: version,
			Data:          data,
			Metadata:      meta,
			OccurredAt:    e.OccurredAt(),
		}
	}
	return out, nil
}
