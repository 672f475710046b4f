package receiver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/output"
)

const (
	namespace = "prometheus_streams"
	subsystem = "receiver"
)

// Drop reasons of the receiver's own, beside the envelope's decode reasons
// and the outputs' (output.Reasons).
const (
	dropFuture = "future"
	// Refused by the publishers allow-list.
	dropPublisherNotAllowed = "publisher_not_allowed"
	dropJobNotAllowed       = "job_not_allowed"
	// The envelope names another publisher than the transport binds the
	// message to (JetStream: its subject's publisher token).
	dropPublisherMismatch = "publisher_mismatch"
)

type metrics struct {
	received       prometheus.Counter
	replayed       prometheus.Counter
	acked          prometheus.Counter
	dropped        *prometheus.CounterVec // reason
	outputDrops    *prometheus.CounterVec // output, reason
	messageAge     prometheus.Histogram
	ackFailures    prometheus.Counter
	legacyMessages prometheus.Counter
}

func dropReasons() []string {
	return append(append(envelope.Reasons(), output.Reasons()...), dropFuture, dropPublisherNotAllowed, dropJobNotAllowed, dropPublisherMismatch)
}

// newMetrics registers the receiver's metrics, with a series of
// output_drops_total for each of outputs and each reason an output gives.
func newMetrics(reg prometheus.Registerer, outputs []string) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "messages_received_total",
			Help: "Messages delivered by the stream, including redeliveries (not the replay at start).",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "messages_replayed_total",
			Help: "Messages re-read at start from the stream's last max_age for the serving output; never acknowledged.",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "messages_acked_total",
			Help: "Deliveries acknowledged (taken by the outputs, superseded or dropped) or, on JetStream, terminated (unreadable, or lying about their publisher); received minus acked is what is in flight or will be delivered again.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "messages_dropped_total",
			Help: "Messages acknowledged without any output having taken them, by reason: a decode reason of the envelope, stale (older than max_age), future (starts more than 30s ahead of the receiver's clock), publisher_not_allowed and job_not_allowed (publishers), superseded (a newer scrape of the group was taken or waits), rejected (the Pushgateway answered 4xx), limit (the serving output is full).",
		}, []string{"reason"}),
		outputDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "output_drops_total",
			Help: "Scrapes an output let go without taking them, by output (push, serve) and reason: stale (older than max_age before it could be pushed), superseded (a newer scrape of the group was taken or waits), rejected (the Pushgateway answered 4xx), limit (the serving output is full), or a decode reason of the body. Counts each output's drops, also of messages another output took.",
		}, []string{"output", "reason"}),
		messageAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "message_age_seconds",
			Help:    "Age of a scrape (since its start at the poller) when its message arrives.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12), // 5ms .. ~5 min
		}),
		ackFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "ack_failures_total",
			Help: "Acknowledgements that failed (the connection was lost); the server redelivers those messages.",
		}),
		legacyMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "legacy_messages_total",
			Help: "Messages in the prometheus-streams 1.0 JSON format (pollers not yet upgraded).",
		}),
	}
	for _, r := range dropReasons() {
		m.dropped.WithLabelValues(r)
	}
	for _, o := range outputs {
		for _, r := range output.Reasons() {
			m.outputDrops.WithLabelValues(o, r)
		}
	}
	for _, c := range []prometheus.Collector{m.received, m.replayed, m.acked, m.dropped, m.outputDrops, m.messageAge, m.ackFailures, m.legacyMessages} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register receiver metrics: %w", err)
		}
	}
	return m, nil
}
