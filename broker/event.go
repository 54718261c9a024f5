package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"unicode"
)

// Actions of record events, as PocketBase names them.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// Event is one record change posted by the site's backend.
type Event struct {
	// ID is an optional idempotency key: a second event with the same ID is dropped.
	ID           string
	Action       string
	Collection   string
	CollectionID string
	RecordID     string
	// Record is the decoded record (numbers as json.Number), read by rules.
	// It holds collectionName (and collectionId when known). Do not mutate it.
	Record map[string]any

	recordJSON []byte // the record encoded once, keys sorted like PocketBase's export
	// hideEmail: an auth record whose emailVisibility is not true. PocketBase
	// sends its email only to the record's owner and to superusers.
	hideEmail bool

	payloadsMu sync.Mutex
	payloads   map[string][]byte // {"record":...,"action":...} per fields option
}

// wireEvent is the JSON shape accepted by the admin API.
type wireEvent struct {
	ID         *string         `json:"id"`
	Action     *string         `json:"action"`
	Collection *string         `json:"collection"`
	Record     json.RawMessage `json:"record"`
}

// DecodeEvents parses the admin API body: one event object or an array of them.
// Validation is all-or-nothing: the first bad event fails the whole batch with
// an error naming its index ("event 3: record.id is required").
func DecodeEvents(body []byte) ([]*Event, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body: expected an event object or an array of events")
	}
	var raws []json.RawMessage
	single := body[0] == '{'
	if single {
		raws = []json.RawMessage{body}
	} else if body[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("malformed JSON: %s", jsonErrorText(err))
		}
		if len(raws) == 0 {
			return nil, errors.New("empty array: expected at least one event")
		}
	} else {
		return nil, errors.New("malformed JSON: expected an event object or an array of events")
	}
	events := make([]*Event, 0, len(raws))
	for i, raw := range raws {
		ev, err := DecodeEvent(raw)
		if err != nil {
			if single {
				return nil, err
			}
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		events = append(events, ev)
	}
	return events, nil
}

// DecodeEvent parses and validates one event object.
func DecodeEvent(raw []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var w wireEvent
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("malformed event: %s", jsonErrorText(err))
	}
	// More() reports false for a stray '}' or ']', so read one more token instead.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed event: trailing data after the event object")
	}
	ev := &Event{}
	if w.ID != nil {
		if *w.ID == "" || len(*w.ID) > 255 {
			return nil, errors.New("id must be 1 to 255 bytes when given")
		}
		ev.ID = *w.ID
	}
	if w.Action == nil {
		return nil, errors.New("action is required (create, update or delete)")
	}
	switch *w.Action {
	case ActionCreate, ActionUpdate, ActionDelete:
		ev.Action = *w.Action
	default:
		return nil, fmt.Errorf("unknown action %q: expected create, update or delete", *w.Action)
	}
	if len(w.Record) == 0 || string(w.Record) == "null" {
		return nil, errors.New("record is required")
	}
	rdec := json.NewDecoder(bytes.NewReader(w.Record))
	rdec.UseNumber()
	var record map[string]any
	if err := rdec.Decode(&record); err != nil {
		return nil, fmt.Errorf("record must be a JSON object: %s", jsonErrorText(err))
	}
	if record == nil {
		return nil, errors.New("record must be a JSON object")
	}
	id, err := requiredName(record, "id", "record.id")
	if err != nil {
		return nil, err
	}
	ev.RecordID = id

	name, _ := record["collectionName"].(string)
	if v, ok := record["collectionName"]; ok {
		if _, isString := v.(string); !isString {
			return nil, errors.New("record.collectionName must be a string")
		}
	}
	if w.Collection != nil {
		if name != "" && name != *w.Collection {
			return nil, fmt.Errorf("collection %q does not match record.collectionName %q", *w.Collection, name)
		}
		name = *w.Collection
	}
	if name == "" {
		return nil, errors.New("record.collectionName (or a top-level collection) is required")
	}
	if err := checkName("collection", name); err != nil {
		return nil, err
	}
	ev.Collection = name
	record["collectionName"] = name
	if v, ok := record["collectionId"]; ok && v != nil {
		cid, isString := v.(string)
		if !isString {
			return nil, errors.New("record.collectionId must be a string")
		}
		if cid != "" {
			if err := checkName("record.collectionId", cid); err != nil {
				return nil, err
			}
			ev.CollectionID = cid
		}
	}
	ev.Record = record
	if vis, ok := record["emailVisibility"]; ok && vis != true {
		_, ev.hideEmail = record["email"]
	}
	// encoding/json sorts map keys: the record is exported like PocketBase's,
	// once, without the fields PocketBase never sends.
	ev.recordJSON, err = marshalRecord(withoutSecrets(record))
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	return ev, nil
}

func requiredName(record map[string]any, key, label string) (string, error) {
	v, ok := record[key]
	if !ok || v == nil {
		return "", fmt.Errorf("%s is required", label)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s must be a string", label)
	}
	if s == "" {
		return "", fmt.Errorf("%s is required", label)
	}
	return s, checkName(label, s)
}

// checkName refuses characters that would make topics ambiguous or break SSE framing.
func checkName(label, s string) error {
	if len(s) > 255 {
		return fmt.Errorf("%s is longer than 255 bytes", label)
	}
	if strings.ContainsAny(s, "/?*") {
		return fmt.Errorf("%s %q must not contain '/', '?' or '*'", label, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%s %q must not contain spaces or control characters", label, s)
		}
	}
	return nil
}

func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s at byte %d", syn.Error(), syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field != "" {
			return fmt.Sprintf("%s must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
		}
		return fmt.Sprintf("expected %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	case "ptr":
		return "a string"
	}
	return goKind
}

// RecordJSON is the record as sent to subscribers without a fields option.
func (ev *Event) RecordJSON() []byte { return ev.recordJSON }

// view says what a subscriber may not see of a record.
type view uint8

const (
	viewHideEmail  view = 1 << iota // an auth record's email, emailVisibility false, not the owner
	viewHideHidden                  // the collection's hidden fields, for non-superusers
	viewCount      = 4
)

// secretFields are never sent, to anyone, as in PocketBase: rules and auth
// refreshes may read them from the event.
var secretFields = [...]string{"tokenKey", "password"}

func withoutSecrets(rec map[string]any) map[string]any {
	for _, f := range secretFields {
		if _, ok := rec[f]; ok {
			rec = maps.Clone(rec)
			for _, f := range secretFields {
				delete(rec, f)
			}
			return rec
		}
	}
	return rec
}

// payload returns {"record":...,"action":"..."} for the given fields option,
// encoding it once per event, distinct fields value and view (record first,
// as PocketBase). hidden are the collection's hidden fields (viewHideHidden).
func (ev *Event) payload(fields string, pick FieldPicker, v view, hidden []string) []byte {
	key := fields
	if v != 0 {
		key = string(rune('0'+v)) + "\x00" + fields
	}
	ev.payloadsMu.Lock()
	defer ev.payloadsMu.Unlock()
	if p, ok := ev.payloads[key]; ok {
		return p
	}
	record := ev.recordJSON
	if fields != "" && pick != nil || v != 0 {
		rec := withoutSecrets(ev.Record)
		if fields != "" && pick != nil {
			rec = pick(rec, fields)
		}
		if v != 0 {
			rec = maps.Clone(rec)
			if v&viewHideEmail != 0 {
				delete(rec, "email")
			}
			if v&viewHideHidden != 0 {
				for _, f := range hidden {
					delete(rec, f)
				}
			}
		}
		if b, err := marshalRecord(rec); err == nil {
			record = b
		} else if v != 0 || fields != "" {
			record = []byte("{}") // never fall back to more than the subscriber may see
		}
	}
	p := make([]byte, 0, len(record)+len(ev.Action)+24)
	p = append(p, `{"record":`...)
	p = append(p, record...)
	p = append(p, `,"action":"`...)
	p = append(p, ev.Action...)
	p = append(p, `"}`...)
	if ev.payloads == nil {
		ev.payloads = make(map[string][]byte, 1)
	}
	ev.payloads[key] = p
	return p
}

// FieldPicker applies a PocketBase "fields" option to a record.
type FieldPicker func(record map[string]any, fields string) map[string]any

// Message is a custom message for a topic (admin POST /realtime/messages).
type Message struct {
	Name string
	Data json.RawMessage
	// Clients, when set, limits delivery to these client ids.
	Clients []string

	delivered int // clients it was queued for on this node; set at delivery, under pubMu
}

// ValidateMessage checks a custom message and compacts its data onto one line.
func (m *Message) Validate() error {
	if m.Name == "" {
		return errors.New("name is required")
	}
	if len(m.Name) > 2500 {
		return errors.New("name is longer than 2500 bytes")
	}
	if err := ValidateTopic(m.Name, true); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if len(m.Data) == 0 {
		m.Data = json.RawMessage("null")
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, m.Data); err != nil {
		return fmt.Errorf("data is not valid JSON: %s", jsonErrorText(err))
	}
	m.Data = buf.Bytes()
	return nil
}

// seesEmailOf reports whether c may see the email of ev's auth record:
// superusers and the record's owner do, as in PocketBase.
func (c *Client) seesEmailOf(ev *Event) bool {
	a := c.Auth()
	if a == nil {
		return false
	}
	if a.Superuser {
		return true
	}
	// An auth record without a collection (a bare JWT) owns nothing.
	return a.Collection != "" && a.ID == ev.RecordID && (a.Collection == ev.Collection || a.Collection == ev.CollectionID)
}

// marshalRecord encodes a record as PocketBase's JSON responses do: keys
// sorted, and <, > and & left as they are (encoding/json would escape them
// for HTML, which PocketBase's encoder does not).
func marshalRecord(rec map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rec); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MarshalWire encodes ev as the admin API accepts it (DecodeEvent reads it
// back): what a transport shared by several nodes carries.
func (ev *Event) MarshalWire() ([]byte, error) {
	w := struct {
		ID         string         `json:"id,omitempty"`
		Action     string         `json:"action"`
		Collection string         `json:"collection"`
		Record     map[string]any `json:"record"`
	}{ev.ID, ev.Action, ev.Collection, ev.Record}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
