package reload

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a reload: the result label of reloads_total.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// metrics are Prometheus's prometheus_config_last_reload_* under our
// namespace, so the same alerts carry over.
type metrics struct {
	successful  prometheus.Gauge
	successTime prometheus.Gauge
	reloads     *prometheus.CounterVec // result
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		successful: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "prometheus_streams", Subsystem: "config", Name: "last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful (1) or refused (0); 1 at start.",
		}),
		successTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "prometheus_streams", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration load, at start or by a reload.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "prometheus_streams", Subsystem: "config", Name: "reloads_total",
			Help: "Configuration reloads by result (success, failure).",
		}, []string{"result"}),
	}
	m.reloads.WithLabelValues(resultSuccess)
	m.reloads.WithLabelValues(resultFailure)
	for _, c := range []prometheus.Collector{m.successful, m.successTime, m.reloads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register reload metrics: %w", err)
		}
	}
	return m, nil
}

// succeeded records a successful load at t (the start, or a reload).
func (m *metrics) succeeded(t time.Time) {
	m.successful.Set(1)
	m.successTime.Set(float64(t.UnixNano()) / 1e9)
}

// failed records a refused reload.
func (m *metrics) failed() {
	m.successful.Set(0)
	m.reloads.WithLabelValues(resultFailure).Inc()
}
