// Package projections will hold the CQRS read models: consumers of the event stream that
// maintain denormalised tables for the dashboard queries.
//
// It is empty until the event pipeline lands (relay to Redis Streams, consumer groups,
// projectors); until then every read goes to the event store itself.
package projections
