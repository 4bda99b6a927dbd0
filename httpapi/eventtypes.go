package httpapi

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// eventTypeJSON describes one event type in the event catalog.
type eventTypeJSON struct {
	Type             string         `json:"type"`
	SchemaVersion    int            `json:"schema_version"`
	Description      string         `json:"description"`
	Schema           map[string]any `json:"schema"`
	ReadableVersions []int          `json:"readable_versions"`
}

type eventTypesJSON struct {
	Data []eventTypeJSON `json:"data"`
}

// eventCatalog is built once: it depends only on the code.
var eventCatalog = sync.OnceValues(func() (eventTypesJSON, error) {
	out := eventTypesJSON{Data: []eventTypeJSON{}}
	for _, typ := range domain.EventTypes() {
		version, ok := eventstore.CurrentSchemaVersion(typ)
		if !ok {
			return out, fmt.Errorf("event catalog: %s has no schema version", typ)
		}
		schema, err := domain.EventSchema(typ)
		if err != nil {
			return out, fmt.Errorf("event catalog: %w", err)
		}
		out.Data = append(out.Data, eventTypeJSON{Type: typ, SchemaVersion: version,
			Description: domain.EventDescription(typ), Schema: schema,
			ReadableVersions: eventstore.ReadableSchemaVersions(typ)})
	}
	return out, nil
})

// listEventTypes serves the event catalog: every event type, its current schema version, the
// JSON Schema of its data and the older versions still readable through upcasters.
func (a *API) listEventTypes(w http.ResponseWriter, r *http.Request) {
	catalog, err := eventCatalog()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, catalog)
}
