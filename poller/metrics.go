package poller

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "prometheus_streams"
	subsystem = "poller"
)

// Scrape failure reasons: a fixed set so the label stays bounded.
const (
	reasonTimeout         = "timeout"
	reasonConnection      = "connection"
	reasonHTTPStatus      = "http_status"
	reasonBodyTooLarge    = "body_too_large"
	reasonRead            = "read"
	reasonMessageTooLarge = "message_too_large"
)

var scrapeFailureReasons = []string{reasonTimeout, reasonConnection, reasonHTTPStatus, reasonBodyTooLarge, reasonRead, reasonMessageTooLarge}

// Publish failure reasons.
const (
	pubNotConnected = "not_connected"
	pubTimeout      = "ack_timeout"
	pubClosed       = "connection_closed"
	// JetStream: no stream stores the subject, the credentials may not
	// publish on it, or the stream refused the message for its size.
	pubNoStream   = "no_stream"
	pubPermission = "permission"
	pubTooLarge   = "too_large"
	pubOther      = "other"
)

var publishFailureReasons = []string{pubNotConnected, pubTimeout, pubClosed, pubNoStream, pubPermission, pubTooLarge, pubOther}

type metrics struct {
	scrapes         *prometheus.CounterVec // job, instance, outcome
	scrapeFailures  *prometheus.CounterVec // job, instance, reason
	scrapeDuration  *prometheus.GaugeVec   // job, instance
	scrapeBytes     *prometheus.GaugeVec   // job, instance
	messageBytes    *prometheus.GaugeVec   // job, instance
	published       prometheus.Counter
	publishFailures *prometheus.CounterVec // reason
	publishLatency  prometheus.Histogram
	replaced        prometheus.Counter
	pending         prometheus.GaugeFunc
	inflight        prometheus.Gauge
	targets         *prometheus.GaugeVec // job
	// jobs are the jobs with a targets series; the Poller's mu guards it.
	jobs map[string]struct{}
}

func newMetrics(reg prometheus.Registerer, pending func() float64) (*metrics, error) {
	target := []string{"job", "instance"}
	m := &metrics{
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "scrapes_total",
			Help: "Scrapes per target by outcome (success, failure). Every scrape becomes one message.",
		}, append(target, "outcome")),
		scrapeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "scrape_failures_total",
			Help: "Failed scrapes per target by reason (timeout, connection, http_status, body_too_large, read, message_too_large).",
		}, append(target, "reason")),
		scrapeDuration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "scrape_duration_seconds",
			Help: "Duration of the target's last scrape.",
		}, target),
		scrapeBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "scrape_body_bytes",
			Help: "Uncompressed size of the target's last scrape body (0 when the scrape failed).",
		}, target),
		messageBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "message_bytes",
			Help: "Size of the target's last message on the stream (envelope and compressed body).",
		}, target),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "published_total",
			Help: "Messages the stream acknowledged.",
		}),
		publishFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "publish_failures_total",
			Help: "Publish attempts that failed by reason (not_connected, ack_timeout, connection_closed, other); the message is kept for another attempt unless a newer scrape replaced it.",
		}, []string{"reason"}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "publish_duration_seconds",
			Help:    "Time from handing a message to the stream to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		replaced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "outbox_replaced_total",
			Help: "Unpublished scrapes dropped because a newer scrape of the same target replaced them (the stream was slow or unreachable).",
		}),
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "outbox_pending",
			Help: "Scrapes waiting to be published (at most one per target).",
		}, pending),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "publish_inflight",
			Help: "Messages published and not yet acknowledged.",
		}),
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "targets",
			Help: "Targets currently scraped per job, static and discovered from files (1.0 had this with the label poller_job).",
		}, []string{"job"}),
		jobs: map[string]struct{}{},
	}
	for _, r := range publishFailureReasons {
		m.publishFailures.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{
		m.scrapes, m.scrapeFailures, m.scrapeDuration, m.scrapeBytes,
		m.messageBytes, m.published, m.publishFailures, m.publishLatency, m.replaced, m.pending, m.inflight, m.targets,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register poller metrics: %w", err)
		}
	}
	return m, nil
}

// targetMetrics are one target's series of the per-target vectors, looked
// up once instead of hashing the target's labels into four vectors every
// scrape. Only the target's own loop uses them.
type targetMetrics struct {
	m                *metrics
	job, instance    string
	success, failure prometheus.Counter
	// The gauges are created by the first scrape, which measures them:
	// before it, no value is better than a 0 that was never measured.
	duration, bodyBytes, messageBytes prometheus.Gauge
}

// forTarget creates a target's counters at zero, so that rates work from
// the start, and returns its series.
func (m *metrics) forTarget(job, instance string) *targetMetrics {
	for _, r := range scrapeFailureReasons {
		m.scrapeFailures.WithLabelValues(job, instance, r)
	}
	return &targetMetrics{
		m: m, job: job, instance: instance,
		success: m.scrapes.WithLabelValues(job, instance, "success"),
		failure: m.scrapes.WithLabelValues(job, instance, "failure"),
	}
}

// observe records a scrape's duration, body size and message size.
func (t *targetMetrics) observe(duration time.Duration, bodyBytes, messageBytes int) {
	if t.duration == nil {
		t.duration = t.m.scrapeDuration.WithLabelValues(t.job, t.instance)
		t.bodyBytes = t.m.scrapeBytes.WithLabelValues(t.job, t.instance)
		t.messageBytes = t.m.messageBytes.WithLabelValues(t.job, t.instance)
	}
	t.duration.Set(duration.Seconds())
	t.bodyBytes.Set(float64(bodyBytes))
	t.messageBytes.Set(float64(messageBytes))
}
