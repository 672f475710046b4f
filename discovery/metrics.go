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

// setJobs makes jobs the jobs with series: a new one's are created at
// zero, those of a job no longer in jobs are deleted.
func (m *metrics) setJobs(jobs map[string]bool) {
	for job := range m.jobs {
		if !jobs[job] {
			m.refused.DeletePartialMatch(prometheus.Labels{"job": job})
			m.ignored.DeleteLabelValues(job)
			delete(m.jobs, job)
		}
	}
	for job := range jobs {
		if m.jobs[job] {
			continue
		}
		m.jobs[job] = true
		for _, r := range refusalReasons {
			m.refused.WithLabelValues(job, r)
		}
		m.ignored.WithLabelValues(job)
	}
}
