package realtime

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-realtime/realtime/broker"
)

// collector reads every broker's counters at scrape time. It is created once;
// ctx.GetMetricsRegistry() is new on every config load, so Provision registers
// it again each time. Labels are the broker name and eviction reason only:
// never client ids or topics.
var collector = newBrokerCollector()

func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	if err := reg.Register(collector); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return err
		}
	}
	return nil
}

type brokerCollector struct {
	clients, subscriptions, queued, connects, eventsIn, messagesIn, messagesOut, bytesOut, evictions, refused, fanout *prometheus.Desc
	authLookups, ruleEvaluations                                                                                      *prometheus.Desc
}

func newBrokerCollector() *brokerCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("caddy_realtime_"+name, help, append([]string{"broker"}, labels...), nil)
	}
	return &brokerCollector{
		clients:       d("clients", "Connected realtime clients."),
		subscriptions: d("subscriptions", "Active topic subscriptions."),
		queued:        d("queued_bytes", "Memory held by frames waiting for clients, as max_queued_bytes counts it (each client's own bytes, each shared frame once)."),
		connects:      d("connects_total", "Streams opened."),
		eventsIn:      d("events_total", "Record events published through the admin API."),
		messagesIn:    d("custom_messages_total", "Custom messages posted through the admin API."),
		messagesOut:   d("messages_sent_total", "Messages written to client streams."),
		bytesOut:      d("sent_bytes_total", "Bytes written to client streams."),
		evictions:     d("evictions_total", "Clients evicted by the server.", "reason"),
		refused:       d("refused_total", "Requests refused by a budget (max_clients, max_clients_per_ip, max_subscription_bytes, max_topic_variants).", "budget"),
		fanout:        d("fanout_duration_seconds", "Time to queue one event for every matching client."),
		authLookups: d("auth_lookups_total",
			"Credential lookups of subscription POSTs by outcome (hit: cache, miss: a lookup was made, shared: waited for another's lookup, refused: guest, error: 503, limited: 503 by max_concurrent); since the last config load.", "outcome"),
		ruleEvaluations: d("rule_evaluations_total", "Access rule and filter evaluations since the last config load."),
	}
}

func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.clients, c.subscriptions, c.queued, c.connects, c.eventsIn, c.messagesIn, c.messagesOut, c.bytesOut, c.evictions, c.refused, c.fanout, c.authLookups, c.ruleEvaluations} {
		ch <- d
	}
}

func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range allBrokers() {
		c.collect(ch, b.Stats())
	}
}

func (c *brokerCollector) collect(ch chan<- prometheus.Metric, s broker.Stats) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{s.Broker}, labels...)...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{s.Broker}, labels...)...)
	}
	gauge(c.clients, float64(s.Clients))
	gauge(c.subscriptions, float64(s.Subscriptions))
	gauge(c.queued, float64(s.QueuedBytes))
	counter(c.connects, s.Connects)
	counter(c.eventsIn, s.EventsIn)
	counter(c.messagesIn, s.MessagesIn)
	counter(c.messagesOut, s.MessagesOut)
	counter(c.bytesOut, s.BytesOut)
	for reason, n := range s.Evictions {
		counter(c.evictions, n, reason)
	}
	for budget, n := range s.Refused {
		counter(c.refused, n, budget)
	}
	ch <- prometheus.MustNewConstHistogram(c.fanout, s.Fanout.Count, s.Fanout.SumSeconds, s.Fanout.Buckets, s.Broker)
	if v, ok := accessStats.Load(s.Broker); ok {
		st := v.(*accessState)
		counter(c.ruleEvaluations, st.rules.Evaluations())
		if st.authn != nil {
			a := st.authn.Stats()
			for outcome, n := range map[string]uint64{"hit": a.Hits, "miss": a.Misses, "shared": a.Shared, "refused": a.Refused, "error": a.Errors, "limited": a.Limited} {
				counter(c.authLookups, n, outcome)
			}
		}
	}
}
