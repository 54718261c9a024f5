package broker

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"unicode"

	"github.com/caddy-realtime/realtime/rules"
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

	// The filter is compiled when the options are parsed, on the
	// subscription path, so that publishing never compiles; Options built
	// by hand compile it on first use.
	filterOnce   sync.Once
	filter       *rules.Rule
	filterErr    error
	filterFields []string // top-level record fields the filter reads
}

// compiledFilter is options.query.filter compiled (nil, nil without one).
// Invalid filters, and filters PocketBase refuses (more than 200
// expressions), give an error: such a subscription receives nothing.
func (o *Options) compiledFilter() (*rules.Rule, error) {
	o.filterOnce.Do(func() {
		if f := o.Filter(); f != "" {
			o.filter, o.filterErr = CompileFilter(f)
			o.filterFields = o.filter.RecordFields()
		}
	})
	return o.filter, o.filterErr
}

// FilterError is options.query.filter's compile error, nil when there is no
// filter or it is valid.
func (o *Options) FilterError() error {
	if o == nil {
		return nil
	}
	_, err := o.compiledFilter()
	return err
}

// MissingFilterField returns a top-level record field the filter reads that
// record lacks, or "". PocketBase's filter resolver refuses fields the
// collection does not have (or hides), and the subscription then gets no
// event (observed on PocketBase v0.40.4 for an unknown field and for a hidden
// field, even for superusers); the in-memory evaluation would read them as
// NULL instead, so callers must not deliver when this is non-empty.
func (o *Options) MissingFilterField(record map[string]any) string {
	if o.Filter() == "" {
		return ""
	}
	f, err := o.compiledFilter()
	if err != nil || f == nil {
		return ""
	}
	for _, name := range o.filterFields {
		if _, ok := record[name]; !ok {
			return name
		}
	}
	return ""
}

// SuperuserOnly names the identifier ("@collection." or "@request.") that
// makes PocketBase refuse the filter of a subscriber who is not a superuser,
// or returns "". PocketBase (apis/record_helpers.go,
// checkForSuperuserOnlyRuleFields) looks for those strings anywhere in the
// filter and sort options, even inside a string literal, and only when a
// filter is set; the event is then not sent. Observed on PocketBase v0.40.4:
// a guest's subscription with such a filter is accepted (204) and gets no
// events.
func (o *Options) SuperuserOnly() string {
	if o.Filter() == "" {
		return ""
	}
	for _, param := range [...]string{"filter", "sort"} {
		v := o.Query[param]
		for _, field := range [...]string{"@collection.", "@request."} {
			if strings.Contains(v, field) {
				return field
			}
		}
	}
	return ""
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
// PocketBase v0.40.4 does (tools/subscriptions.DefaultClient.Subscribe):
// url.Parse the whole topic (a topic it refuses, such as "a:b" with a digit
// first or a bad %-escape before the "?", has no options; a "#" starts a
// fragment that is not part of the query), take the first "options" value
// (names are case-sensitive, pairs containing ";" are dropped, "+" is a
// space), then decode it with decodeOptions. It returns nil when there are
// no options. A filter is compiled (through a shared cache) before
// ParseOptions returns.
func ParseOptions(topic string) *Options {
	if strings.IndexByte(topic, '?') < 0 {
		return nil
	}
	u, err := url.Parse(topic)
	if err != nil {
		return nil
	}
	raw := u.Query().Get("options")
	if raw == "" {
		return nil
	}
	query, headers := decodeOptions([]byte(raw))
	opts := &Options{Query: query}
	if len(headers) > 0 {
		opts.Headers = make(map[string]string, len(headers))
		for k, v := range headers {
			opts.Headers[snakeLower(k)] = v
		}
	}
	if len(opts.Query) == 0 && len(opts.Headers) == 0 {
		return nil
	}
	_, _ = opts.compiledFilter()
	return opts
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
