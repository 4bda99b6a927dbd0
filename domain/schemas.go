package domain

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// JSONSchemaDialect is the JSON Schema draft EventSchema describes events in.
const JSONSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// eventCatalog describes every event type: its value type (the shape of its data, which
// EventSchema derives from the Go struct and its json tags) and a one-line description. A test
// checks that its keys are exactly EventTypes().
var eventCatalog = map[string]struct {
	prototype   Event
	description string
}{
	SubscriptionCreated{}.EventType():   {SubscriptionCreated{}, "A subscription started, on a plan's terms, with or without a trial."},
	PlanChanged{}.EventType():           {PlanChanged{}, "The plan (and possibly the seats) changed immediately, with proration lines for the rest of the period."},
	PlanChangeScheduled{}.EventType():   {PlanChangeScheduled{}, "A plan change was scheduled for the period end, replacing any change scheduled before."},
	SeatsChanged{}.EventType():          {SeatsChanged{}, "The seat count changed immediately, with proration lines (none during a trial)."},
	CancellationScheduled{}.EventType(): {CancellationScheduled{}, "Cancellation at the period end was requested."},
	CancellationUndone{}.EventType():    {CancellationUndone{}, "A scheduled cancellation was withdrawn."},
	Canceled{}.EventType():              {Canceled{}, "The subscription ended; nothing can follow."},
	Paused{}.EventType():                {Paused{}, "An active subscription was suspended."},
	Resumed{}.EventType():               {Resumed{}, "A paused subscription became active again."},
	PaymentMethodChanged{}.EventType():  {PaymentMethodChanged{}, "The default payment method was replaced."},
	Renewed{}.EventType():               {Renewed{}, "The next period started (a trial converted, a scheduled change took effect), with its invoice."},
	TrialWillEnd{}.EventType():          {TrialWillEnd{}, "The trial ends in three days; the customer should be told."},
	PastDue{}.EventType():               {PastDue{}, "An invoice's payment failed; dunning retries it."},
	PaymentRecovered{}.EventType():      {PaymentRecovered{}, "A failed invoice was paid; the subscription is active again."},
	MarkedUnpaid{}.EventType():          {MarkedUnpaid{}, "Dunning gave up; the subscription stays, unpaid."},
	UpgradeFailed{}.EventType():         {UpgradeFailed{}, "A paid plan or seat change failed and was compensated; the reason says why."},

	InvoiceCreated{}.EventType():             {InvoiceCreated{}, "An invoice was issued, numbered, with the customer's credit applied."},
	InvoicePaymentSucceeded{}.EventType():    {InvoicePaymentSucceeded{}, "A charge paid the invoice."},
	InvoicePaymentFailed{}.EventType():       {InvoicePaymentFailed{}, "A charge of the invoice was declined; next_attempt_at says when dunning retries."},
	InvoiceRefunded{}.EventType():            {InvoiceRefunded{}, "Money was refunded on the invoice's charge."},
	InvoiceVoided{}.EventType():              {InvoiceVoided{}, "The invoice was voided: nothing is owed on it."},
	InvoiceMarkedUncollectible{}.EventType(): {InvoiceMarkedUncollectible{}, "Dunning gave up collecting the invoice."},

	InvoiceIssued{}.EventType(): {InvoiceIssued{}, "An invoice took the next number of the customer's series and used its credit."},
	CreditGranted{}.EventType(): {CreditGranted{}, "Credit was added to the customer's balance."},

	UpgradeStarted{}.EventType():      {UpgradeStarted{}, "A paid change began: the upgrade saga will invoice, charge, apply and activate it."},
	UpgradeInvoiced{}.EventType():     {UpgradeInvoiced{}, "The upgrade's proration invoice was issued."},
	UpgradeCharged{}.EventType():      {UpgradeCharged{}, "The upgrade's invoice was paid."},
	UpgradePlanApplied{}.EventType():  {UpgradePlanApplied{}, "The change was applied to the subscription."},
	UpgradeCompleted{}.EventType():    {UpgradeCompleted{}, "The new plan's features are visible; the upgrade is done."},
	UpgradeCompensating{}.EventType(): {UpgradeCompensating{}, "The change cannot be applied after the charge; a refund is due."},
	UpgradeAborted{}.EventType():      {UpgradeAborted{}, "The upgrade failed; everything it did was compensated."},
}

// enums lists the values of the domain's string enumerations, for EventSchema.
var enums = map[reflect.Type][]any{
	reflect.TypeFor[Status]():        {StatusTrialing, StatusActive, StatusPastDue, StatusPaused, StatusCanceled, StatusUnpaid},
	reflect.TypeFor[InvoiceReason](): {InvoiceForCreate, InvoiceForCycle, InvoiceForUpdate},
	reflect.TypeFor[Direction]():     {DirectionUpgrade, DirectionDowngrade, DirectionLateral},
	reflect.TypeFor[Interval]():      {IntervalMonth, IntervalYear},
}

// EventDescription is a one-line description of an event type ("" if the type is unknown).
func EventDescription(eventType string) string { return eventCatalog[eventType].description }

// EventSchema returns the JSON Schema (draft 2020-12) of the data of an event type, as
// json.Marshal writes it: derived from the event's Go struct and json tags, so it cannot drift
// from the code. Times are date-time strings; every field without omitempty is required; no
// other properties are allowed (DecodeEvent refuses unknown fields too). An unknown type is an
// *UnknownEventTypeError.
func EventSchema(eventType string) (map[string]any, error) {
	entry, ok := eventCatalog[eventType]
	if !ok {
		return nil, &UnknownEventTypeError{Type: eventType}
	}
	s, err := schemaOf(reflect.TypeOf(entry.prototype))
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", eventType, err)
	}
	s["$schema"] = JSONSchemaDialect
	s["title"] = eventType
	s["description"] = entry.description
	return s, nil
}

func schemaOf(t reflect.Type) (map[string]any, error) {
	if t == reflect.TypeFor[time.Time]() {
		return map[string]any{"type": "string", "format": "date-time"}, nil
	}
	if values, ok := enums[t]; ok {
		return map[string]any{"type": "string", "enum": values}, nil
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Pointer:
		// Only reached for pointers without omitempty: nil is written as null.
		inner, err := schemaOf(t.Elem())
		if err != nil {
			return nil, err
		}
		return nullable(inner), nil
	case reflect.Slice:
		items, err := schemaOf(t.Elem())
		if err != nil {
			return nil, err
		}
		// json.Marshal writes a nil slice as null.
		return map[string]any{"type": []any{"array", "null"}, "items": items}, nil
	case reflect.Struct:
		props := map[string]any{}
		required := []any{}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" || f.Anonymous {
				return nil, fmt.Errorf("%s.%s: untagged or embedded fields are not supported", t.Name(), f.Name)
			}
			omitempty := strings.Contains(","+opts+",", ",omitempty,")
			ft := f.Type
			if omitempty && ft.Kind() == reflect.Pointer {
				ft = ft.Elem() // omitted when nil, so never null
			}
			fs, err := schemaOf(ft)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", t.Name(), f.Name, err)
			}
			props[name] = fs
			if !omitempty {
				required = append(required, name)
			}
		}
		return map[string]any{"type": "object", "properties": props, "required": required,
			"additionalProperties": false}, nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

func nullable(s map[string]any) map[string]any {
	if typ, ok := s["type"].(string); ok {
		s["type"] = []any{typ, "null"}
		return s
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}
