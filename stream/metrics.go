package stream

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// connMetrics are a stream connection's, of either transport: registered
// once per role (poller, receiver, follower) through connBasics.
type connMetrics struct {
	connected  prometheus.Gauge
	attempts   *prometheus.CounterVec
	lost       prometheus.Counter
	reconnects prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	m := &connMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "connected",
			Help: "1 while the connection to the stream is up.",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "connect_attempts_total",
			Help: "Connection attempts to the stream by result (success, failure).",
		}, []string{"result"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "connections_lost_total",
			Help: "Established stream connections that were lost (server gone, pings unanswered, session forgotten).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "nats_reconnects_total",
			Help: "Times the NATS connection under a stream connection was re-established by itself; the stream session may have survived it (then connections_lost_total does not count it).",
		}),
	}
	m.attempts.WithLabelValues("success")
	m.attempts.WithLabelValues("failure")
	for _, c := range []prometheus.Collector{m.connected, m.attempts, m.lost, m.reconnects} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register stream metrics: %w", err)
		}
	}
	return m, nil
}

const (
	namespace = "prometheus_streams"
	subsystem = "stream"
)
