package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
)

// maxBodyBytes bounds every request body.
const maxBodyBytes = 1 << 20

// decodeJSON reads the request body strictly into dst, a pointer to a struct: application/json
// only, at most 1 MiB, one JSON object, no unknown fields (field names match exactly, case
// included), every value of the declared type. An empty body decodes as {} so that commands
// without parameters need none.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) *Problem {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return problem(http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large",
				fmt.Sprintf("the body must be at most %d bytes", maxBodyBytes))
		}
		return problem(http.StatusBadRequest, "unreadable-body", "Request body could not be read", err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	} else if p := checkContentType(r); p != nil {
		return p
	}

	if p := checkFields(body, dst); p != nil {
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return bodyProblem(err)
	}
	if dec.More() {
		return problem(http.StatusBadRequest, "malformed-json", "Malformed JSON", "the body must hold exactly one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return problem(http.StatusBadRequest, "malformed-json", "Malformed JSON", "unexpected data after the JSON object")
	}
	return nil
}

// checkFields refuses a null body or a null field: encoding/json would silently read null as
// the zero value, so {"at_period_end": null} would cancel immediately. It also refuses a field
// whose name matches one of dst's only when case is ignored, as encoding/json would accept it:
// {"SEATS": 3} is not the documented seats.
func checkFields(body []byte, dst any) *Problem {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil // not an object: the strict decode explains what is wrong
	}
	if fields == nil {
		return problem(http.StatusBadRequest, "malformed-json", "Malformed JSON", "the body must be a JSON object, not null")
	}
	known := jsonFieldNames(dst)
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !known[name] {
			p := problem(http.StatusBadRequest, "unknown-field", "Unknown field in request body",
				fmt.Sprintf("field %q is not part of this request", name))
			p.Errors = []FieldError{{Pointer: "/" + name, Detail: "unknown field"}}
			return p
		}
		if string(fields[name]) == "null" {
			p := problem(http.StatusBadRequest, "invalid-type", "Wrong type in request body",
				fmt.Sprintf("field %q must not be null; leave it out to use its default", name))
			p.Errors = []FieldError{{Pointer: "/" + name, Detail: "must not be null"}}
			return p
		}
	}
	return nil
}

// jsonFieldNames returns the JSON names of the fields of the struct dst points to.
func jsonFieldNames(dst any) map[string]bool {
	names := map[string]bool{}
	t := reflect.TypeOf(dst)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return names
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
		case name == "":
			names[f.Name] = true
		default:
			names[name] = true
		}
	}
	return names
}

func checkContentType(r *http.Request) *Problem {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && mediaType == "application/json" {
		return nil
	}
	return problem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
		"send the body as application/json")
}

// bodyProblem explains a json decoding error in the client's terms.
func bodyProblem(err error) *Problem {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntaxErr):
		return problem(http.StatusBadRequest, "malformed-json", "Malformed JSON",
			fmt.Sprintf("%s (at byte %d)", syntaxErr.Error(), syntaxErr.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem(http.StatusBadRequest, "malformed-json", "Malformed JSON", "the body ends in the middle of a JSON value")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return problem(http.StatusBadRequest, "malformed-json", "Malformed JSON", "the body must be a JSON object")
		}
		p := problem(http.StatusBadRequest, "invalid-type", "Wrong type in request body",
			fmt.Sprintf("field %q must be %s, got %s", typeErr.Field, jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value))
		p.Errors = []FieldError{{Pointer: "/" + strings.ReplaceAll(typeErr.Field, ".", "/"), Detail: p.Detail}}
		return p
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		p := problem(http.StatusBadRequest, "unknown-field", "Unknown field in request body",
			fmt.Sprintf("field %q is not part of this request", field))
		p.Errors = []FieldError{{Pointer: "/" + field, Detail: "unknown field"}}
		return p
	default:
		return problem(http.StatusBadRequest, "malformed-json", "Malformed JSON", err.Error())
	}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer in range"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	default:
		return "a " + kind
	}
}

// pathUUID reads a UUID path parameter.
func pathUUID(r *http.Request, name string) (uuid.UUID, *Problem) {
	raw := chi.URLParam(r, name)
	id, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		p := problem(http.StatusBadRequest, "invalid-id", "Invalid id", fmt.Sprintf("%q is not a UUID", raw))
		p.Errors = []FieldError{{Pointer: name, Detail: "must be a UUID like 0190f5c2-7d5e-7c3a-9a51-2f4d1c9e8b7a"}}
		return uuid.Nil, p
	}
	return id, nil
}
