package discovery

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	refused *prometheus.CounterVec // job, reason
	ignored *prometheus.GaugeVec   // job
	jobs    map[string]bool        // jobs with file_sd_configs seen; guarded by Discovery.mu
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "prometheus_streams", Subsystem: "poller", Name: "file_sd_targets_refused_total",
			Help: "Entries of file_sd files that are not scraped, by job and reason (bad_address, bad_scheme, bad_url, bad_instance, duplicate); each counted once when it appears.",
		}, []string{"job", "reason"}),
		ignored: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "prometheus_streams", Subsystem: "poller", Name: "file_sd_targets_labels_ignored",
			Help: "Targets from file_sd files scraped without some of their labels: a scrape carries only job and instance.",
		}, []string{"job"}),
		jobs: map[string]bool{},
	}
	for _, c := range []prometheus.Collector{m.refused, m.ignored} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register discovery metrics: %w", err)
		}
	}
	return m, nil
}

// forJob creates a job's series at zero.
func (m *metrics) forJob(job string) {
	if m.jobs[job] {
		return
	}
	m.jobs[job] = true
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(job, r)
	}
	m.ignored.WithLabelValues(job)
}
