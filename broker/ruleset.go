package broker

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/rules"
)

// RuleSet is the Access of a broker configured with PocketBase rules: a list
// and a view rule per collection, who counts as a superuser, and who may
// subscribe to custom topics.
type RuleSet struct {
	// Open makes every collection without configured rules readable by
	// everyone (a broker with no access configuration at all). Otherwise an
	// unknown collection is superusers-only, as an unset PocketBase rule.
	Open bool
	// Superusers bypass collection rules; nil means nobody does.
	Superusers *rules.Rule
	// Collections by name (or id, as the config names them).
	Collections map[string]*CollectionRules
	// Topics guard subscriptions to custom (non-collection) topics; the first
	// matching pattern wins, and a topic no pattern matches is open.
	Topics []TopicRule
	Logger *zap.Logger

	evaluations atomic.Uint64
	warned      sync.Map // collections already warned about

	authFieldsOnce sync.Once
	authFields     []string
}

// CollectionRules are a collection's list and view rules; nil = superusers only.
type CollectionRules struct {
	List, View *rules.Rule
	// Hidden are fields PocketBase marks hidden: rules may read them, but
	// only superusers receive them, and a filter on them matches nothing.
	Hidden []string

	requiredOnce sync.Once
	required     []requiredField
}

// requiredField is a record field a collection's rule reads.
type requiredField struct{ field, rule string }

// requiredFields are the record fields the list and view rules read, list first.
func (c *CollectionRules) requiredFields() []requiredField {
	c.requiredOnce.Do(func() {
		for _, r := range []struct {
			label string
			rule  *rules.Rule
		}{{"list_rule", c.List}, {"view_rule", c.View}} {
			for _, f := range r.rule.RecordFields() {
				c.required = append(c.required, requiredField{f, r.label})
			}
		}
	})
	return c.required
}

// TopicRule guards custom topics whose base matches Pattern (path.Match syntax, e.g. "admin_*").
type TopicRule struct {
	Pattern string
	Rule    *rules.Rule
}

var allowEveryone = rules.MustCompile("")

// Evaluations is how many rule and filter evaluations have run.
func (rs *RuleSet) Evaluations() uint64 { return rs.evaluations.Load() }

// IsSuperuser applies the superusers rule to an auth record.
func (rs *RuleSet) IsSuperuser(a *Auth) bool {
	if a == nil || rs.Superusers == nil {
		return false
	}
	rs.evaluations.Add(1)
	return rs.Superusers.Eval(&rules.Env{Auth: a.Record, Method: "GET", Context: "realtime"})
}

func (rs *RuleSet) collection(name string) *CollectionRules { return rs.Collections[name] }

// CanSubscribe applies topic rules to custom topics. Collection topics are
// always accepted: their events are checked one by one.
func (rs *RuleSet) CanSubscribe(a *Auth, topic string) error {
	base := TopicBase(topic)
	if base == Wildcard {
		return nil
	}
	if name, _, _ := strings.Cut(base, "/"); rs.collection(name) != nil {
		return nil
	}
	for _, tr := range rs.Topics {
		if ok, _ := path.Match(tr.Pattern, base); !ok {
			continue
		}
		if a != nil && a.Superuser {
			return nil
		}
		rs.evaluations.Add(1)
		if tr.Rule.Eval(rs.env(a, nil, ParseOptions(topic))) {
			return nil
		}
		return fmt.Errorf("topic %q is restricted", topic)
	}
	return nil
}

// CanReceive applies the collection's list or view rule, then the
// subscription's filter option. Superusers bypass the rule, not the filter.
func (rs *RuleSet) CanReceive(a *Auth, ev *Event, kind TopicKind, opts *Options) bool {
	superuser := a != nil && a.Superuser
	var env *rules.Env
	if !superuser {
		rule, known := rs.rule(ev, kind)
		if !known {
			rs.warnUnruled(ev.Collection)
		}
		if rule == nil {
			return false
		}
		if !rule.AllowsAll() {
			env = rs.env(a, ev, opts)
			rs.evaluations.Add(1)
			if !rule.Eval(env) {
				return false
			}
		}
	}
	filter := opts.Filter()
	if filter == "" {
		return true
	}
	f, err := opts.compiledFilter()
	if err != nil || (!superuser && (f.UsesRequest() || opts.SuperuserOnly() != "")) {
		return false // PocketBase refuses such filters from non-superusers: no events
	}
	if opts.MissingFilterField(ev.Record) != "" {
		return false // PocketBase refuses a filter on a field it does not have (or hides)
	}
	if rs.filterReadsHidden(opts, ev) {
		return false
	}
	if env == nil {
		env = rs.env(a, ev, opts)
	}
	env.NoJoins = !superuser
	rs.evaluations.Add(1)
	return f.Eval(env)
}

// HiddenFields are the hidden fields of ev's collection, left out of what
// non-superusers receive.
func (rs *RuleSet) HiddenFields(ev *Event) []string {
	if c := rs.eventCollection(ev); c != nil {
		return c.Hidden
	}
	return nil
}

// filterReadsHidden: PocketBase matches nothing for a subscription filter on
// a hidden field, or on the email of an auth record whose emailVisibility is
// off (its filter adds "emailVisibility = true"): otherwise who receives an
// event would tell the hidden value, one guess at a time. Superusers too.
func (rs *RuleSet) filterReadsHidden(opts *Options, ev *Event) bool {
	hidden := rs.HiddenFields(ev)
	if !ev.hideEmail && len(hidden) == 0 {
		return false
	}
	for _, field := range opts.filterFields { // computed once, when the filter was compiled
		if ev.hideEmail && field == "email" || slices.Contains(hidden, field) {
			return true
		}
	}
	return false
}

// eventCollection finds the rules of ev's collection, by name and then by id.
func (rs *RuleSet) eventCollection(ev *Event) *CollectionRules {
	c := rs.collection(ev.Collection)
	if c == nil && ev.CollectionID != "" {
		c = rs.collection(ev.CollectionID)
	}
	return c
}

// rule returns the rule guarding kind for ev's collection (by name, then id);
// known is false when no collection block names it.
func (rs *RuleSet) rule(ev *Event, kind TopicKind) (rule *rules.Rule, known bool) {
	c := rs.eventCollection(ev)
	if c == nil {
		if rs.Open {
			return allowEveryone, true
		}
		return nil, false
	}
	if kind == KindView {
		return c.View, true
	}
	return c.List, true
}

func (rs *RuleSet) warnUnruled(collection string) {
	if _, seen := rs.warned.LoadOrStore(collection, true); seen || rs.Logger == nil {
		return
	}
	rs.Logger.Warn("realtime event for a collection without rules: only superusers receive it",
		zap.String("collection", collection))
}

func (rs *RuleSet) env(a *Auth, ev *Event, opts *Options) *rules.Env {
	env := &rules.Env{Method: "GET", Context: "realtime"}
	if a != nil {
		env.Auth = a.Record
	}
	if ev != nil {
		env.Record = ev.Record
	}
	if opts != nil {
		env.Query, env.Headers = opts.Query, opts.Headers
	}
	return env
}

// CheckEvent refuses an event that lacks a record field its collection's
// rules read. PocketBase judges the stored row; we can only judge the record
// the upstream sent, so a partial record (an update with only the changed
// fields, a delete with only the id) cannot be judged and is refused rather
// than guessed about. An explicit null counts as present.
func (rs *RuleSet) CheckEvent(ev *Event) error {
	c := rs.eventCollection(ev)
	if c == nil {
		return nil
	}
	for _, rf := range c.requiredFields() {
		if _, ok := ev.Record[rf.field]; !ok {
			return fmt.Errorf("record.%s is required by %s' %s (send full records: rules are judged on the record as sent)",
				rf.field, ev.Collection, rf.rule)
		}
	}
	return nil
}

// AuthFields are the auth record fields any rule reads through @request.auth.*:
// an auth record refreshed from an event must carry all of them.
func (rs *RuleSet) AuthFields() []string {
	rs.authFieldsOnce.Do(func() {
		seen := map[string]bool{}
		add := func(r *rules.Rule) {
			for _, f := range r.AuthFields() {
				if !seen[f] {
					seen[f] = true
					rs.authFields = append(rs.authFields, f)
				}
			}
		}
		add(rs.Superusers)
		for _, c := range rs.Collections {
			add(c.List)
			add(c.View)
		}
		for _, t := range rs.Topics {
			add(t.Rule)
		}
		slices.Sort(rs.authFields)
	})
	return rs.authFields
}

// PickFields is PocketBase's fields option.
func (rs *RuleSet) PickFields() FieldPicker { return rules.PickFields }

// Describe lists collections and their effective rules, for the startup log.
func (rs *RuleSet) Describe() []string {
	show := func(r *rules.Rule) string {
		if r == nil {
			return "superusers only"
		}
		if r.AllowsAll() {
			return "everyone"
		}
		return fmt.Sprintf("%q", r.String())
	}
	var out []string
	for name, c := range rs.Collections {
		out = append(out, fmt.Sprintf("%s: list %s, view %s", name, show(c.List), show(c.View)))
	}
	return out
}
