package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
)

// readBody reads a JSON request body of at most MaxBodyBytes.
// A Content-Type, when given, must be application/json (parameters allowed);
// anything else is 415.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, errorf(http.StatusUnsupportedMediaType,
				"unsupported Content-Type %q: send application/json", ct)
		}
	}
	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(mbe.Limit)
		}
		return nil, errorf(http.StatusBadRequest, "reading request body: %v", err)
	}
	return body, nil
}

func tooLarge(limit int64) error {
	return errorf(http.StatusRequestEntityTooLarge,
		"request body is too large: the limit is %d bytes", limit)
}

// checkJSON refuses an empty body or one that is not exactly one JSON value.
func checkJSON(body []byte, expected string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(http.StatusBadRequest, "empty body: expected %s", expected)
	}
	if !json.Valid(body) {
		var v json.RawMessage
		err := json.Unmarshal(body, &v) // reports the syntax error and its offset
		return errorf(http.StatusBadRequest, "malformed JSON: %s", jsonErrorText(err))
	}
	return nil
}

// decodeObject decodes one JSON object into v, refusing unknown fields and trailing data.
func decodeObject(body []byte, v any) error {
	if err := checkJSON(body, "a JSON object"); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "%s", jsonErrorText(err))
	}
	return nil
}

// compact returns raw on one line, in a fresh slice (raw may alias the request body).
func compact(raw []byte) (json.RawMessage, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func jsonErrorText(err error) string {
	if err == nil {
		return "invalid JSON"
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s at byte %d", syn.Error(), syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		want := jsonKind(typ.Type)
		if typ.Field == "" {
			return fmt.Sprintf("expected %s, not %s", want, typ.Value)
		}
		return fmt.Sprintf("%s must be %s, not %s", typ.Field, want, typ.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}

// writeJSON writes v with status 200. Once headers are out nothing can be
// reported to the client, so a failed write is not an error.
func writeJSON(w http.ResponseWriter, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return errorf(http.StatusInternalServerError, "encoding response: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
	return nil
}
