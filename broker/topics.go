package broker

import (
	"sync"

	"github.com/caddy-realtime/realtime/rules"

	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"unicode"
)

// Wildcard is the topic that subscribes to record events of every collection.
// PocketBase matches nothing for it; we deliver every collection's events, each
// checked against that collection's list rule.
const Wildcard = "*"

// TopicKind says which rule guards a subscription to a record event.
type TopicKind uint8

const (
	// KindList guards "c/*", the legacy "c" and "*".
	KindList TopicKind = iota
	// KindView guards "c/RECORD_ID".
	KindView
)

// Options are a topic's "?options=" parameter, as the PocketBase SDK sends it:
// {"query":{...},"headers":{...}}. Values are strings (PocketBase casts them);
// header names are snake_cased and lowercased.
type Options struct {
	Query   map[string]string
	Headers map[string]string

	filterOnce sync.Once
	filter     *rules.Rule
	filterErr  error
}

// compiledFilter compiles options.query.filter once per topic string.
func (o *Options) compiledFilter() (*rules.Rule, error) {
	o.filterOnce.Do(func() {
		o.filter, o.filterErr = rules.Compile(o.Filter())
	})
	return o.filter, o.filterErr
}

// Filter is options.query.filter, narrowing which events a subscription gets.
func (o *Options) Filter() string {
	if o == nil {
		return ""
	}
	return o.Query["filter"]
}

// Fields is options.query.fields, picking which record fields are sent.
func (o *Options) Fields() string {
	if o == nil {
		return ""
	}
	return o.Query["fields"]
}

// TopicBase is the topic without its "?..." suffix: the key of the subscription index.
func TopicBase(topic string) string {
	if i := strings.IndexByte(topic, '?'); i >= 0 {
		return topic[:i]
	}
	return topic
}

// ErrControlCharacter is returned for topics that would break SSE framing.
var ErrControlCharacter = errors.New("topic contains a control character")

// ErrWildcardDisabled is returned for "*" when the broker's wildcard option is off.
var ErrWildcardDisabled = errors.New("the \"*\" topic is disabled on this server")

// ValidateTopic checks one topic string. Empty topics are valid: PocketBase skips them.
func ValidateTopic(topic string, wildcard bool) error {
	for _, r := range topic {
		if unicode.IsControl(r) {
			return ErrControlCharacter
		}
	}
	if !wildcard && TopicBase(topic) == Wildcard {
		return ErrWildcardDisabled
	}
	return nil
}

// ParseOptions extracts the "options" query parameter of a topic the way
// PocketBase does; malformed options are ignored (nil), as PocketBase ignores them.
func ParseOptions(topic string) *Options {
	i := strings.IndexByte(topic, '?')
	if i < 0 {
		return nil
	}
	q, err := url.ParseQuery(topic[i+1:])
	if err != nil && len(q) == 0 {
		return nil
	}
	raw := q.Get("options")
	if raw == "" {
		return nil
	}
	var decoded struct {
		Query   map[string]any `json:"query"`
		Headers map[string]any `json:"headers"`
	}
	if err := json.Unmarshal([]byte(raw), &decoded); err != nil {
		return nil
	}
	opts := &Options{Query: stringify(decoded.Query, false), Headers: stringify(decoded.Headers, true)}
	if len(opts.Query) == 0 && len(opts.Headers) == 0 {
		return nil
	}
	return opts
}

func stringify(m map[string]any, headerNames bool) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if headerNames {
			k = snakeLower(k)
		}
		switch v := v.(type) {
		case string:
			out[k] = v
		case nil:
			out[k] = ""
		default:
			b, _ := json.Marshal(v)
			out[k] = string(b)
		}
	}
	return out
}

// snakeLower names a header as PocketBase's inflector.Snakecase does ("X-Token" and
// "xToken" both become "x_token"): words are runs of ASCII letters and digits joined
// by "_", with a "_" also before an upper-case letter that follows a non-upper-case one.
func snakeLower(s string) string {
	var b strings.Builder
	inWord, prevUpper := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		upper := 'A' <= c && c <= 'Z'
		if !upper && !('a' <= c && c <= 'z') && !('0' <= c && c <= '9') {
			inWord = false
			continue
		}
		if !inWord && b.Len() > 0 || inWord && upper && !prevUpper {
			b.WriteByte('_')
		}
		inWord, prevUpper = true, upper
		if upper {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// recordBases are the topic bases that receive an event for one record: the
// PocketBase prefixes by collection name and id, and our "*".
func recordBases(dst []baseKind, collection, collectionID, recordID string) []baseKind {
	dst = append(dst,
		baseKind{collection + "/" + recordID, KindView},
		baseKind{collection + "/*", KindList},
		baseKind{collection, KindList},
	)
	if collectionID != "" && collectionID != collection {
		dst = append(dst,
			baseKind{collectionID + "/" + recordID, KindView},
			baseKind{collectionID + "/*", KindList},
			baseKind{collectionID, KindList},
		)
	}
	return append(dst, baseKind{Wildcard, KindList})
}

type baseKind struct {
	base string
	kind TopicKind
}
