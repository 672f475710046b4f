package push

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "prometheus_streams"
	subsystem = "receiver"
)

// Push results.
const (
	pushSuccess  = "success"
	pushRejected = "rejected" // 4xx: acked and not retried
	pushError    = "error"    // network or 5xx: retried while the scrape is younger than max_age
)

type metrics struct {
	pushes        *prometheus.CounterVec // result
	pushDuration  prometheus.Histogram
	delivery      prometheus.Histogram
	stripped      prometheus.Counter
	renamed       prometheus.Counter
	unparseable   prometheus.Counter
	lastMessage   *prometheus.GaugeVec // publisher
	groupsWaiting prometheus.GaugeFunc
	conflicts     prometheus.Counter
	markedDown    prometheus.Counter
	deleted       prometheus.Counter
	groups        prometheus.GaugeFunc
	// The consistency check's (see consistency.go).
	familiesDropped *prometheus.CounterVec // reason
	seriesDropped   *prometheus.CounterVec // reason
	lag             prometheus.GaugeFunc
}

// gauges are the functions behind the receiver's gauge funcs.
type gauges struct {
	waiting, groups, lag func() float64
}

func newMetrics(reg prometheus.Registerer, g gauges) (*metrics, error) {
	latency := prometheus.ExponentialBuckets(0.005, 2.5, 12) // 5ms .. ~5 min
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "pushes_total",
			Help: "Push attempts to the Pushgateway by result (success, rejected: 4xx, error: network or 5xx, retried).",
		}, []string{"result"}),
		pushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "push_duration_seconds",
			Help: "Duration of one push request to the Pushgateway.", Buckets: latency,
		}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "delivery_latency_seconds",
			Help: "Time from the start of a scrape at the poller to its successful push.", Buckets: latency,
		}),
		stripped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "timestamps_stripped_total",
			Help: "Samples whose explicit timestamp was removed because the Pushgateway refuses them.",
		}),
		renamed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "labels_renamed_total",
			Help: "Sample labels renamed to exported_<name> because they had the name of a grouping-key label.",
		}),
		unparseable: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "unparseable_scrapes_total",
			Help: "Scrapes whose body was not a readable exposition; they are pushed as up 0.",
		}),
		lastMessage: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "last_push_timestamp_seconds",
			Help: "Unix time a scrape of each publisher was last pushed to the Pushgateway.",
		}, []string{"publisher"}),
		groupsWaiting: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "groups_waiting",
			Help: "Groups with a scrape waiting for a push worker; a lasting non-zero value means the Pushgateway does not keep up.",
		}, g.waiting),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "publisher_conflicts_total",
			Help: "Scrapes of a group whose previous scrape came from another publisher: without publisher_label, two DCs overwrite each other's group.",
		}),
		markedDown: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "groups_marked_down_total",
			Help: "Groups replaced with up 0 because no scrape of theirs arrived for down_after.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "groups_deleted_total",
			Help: "Groups deleted from the Pushgateway because no scrape of theirs arrived for delete_after.",
		}),
		groups: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "groups",
			Help: "Groups the receiver tracks (pushed, and not yet deleted).",
		}, g.groups),
		familiesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "families_dropped_total",
			Help: "Metric families left out of a push because the Pushgateway's /metrics could not serve them next to what it holds, by reason: type_clash (another type than the group holding the family gave it), name_clash (a histogram or summary next to a family named like one of its series: _count, _sum, _bucket). The rest of the scrape is pushed.",
		}, []string{"reason"}),
		seriesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "series_dropped_total",
			Help: "Series left out of a push, by reason: duplicate (same name and labels as an earlier series of the scrape, which is kept), invalid (the Pushgateway's /metrics could not serve it: a label name repeated or starting with __, a quantile label on a summary, a value not of the family's type).",
		}, []string{"reason"}),
		lag: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "lag_seconds",
			Help: "Age (the receiver's clock minus the scrape's start) of the oldest scrape waiting for a push worker, 0 when none waits. Below the scrape interval, the Pushgateway keeps up; approaching max_age, it does not, and scrapes are dropped as stale.",
		}, g.lag),
	}
	for _, r := range []string{pushSuccess, pushRejected, pushError} {
		m.pushes.WithLabelValues(r)
	}
	for _, r := range []string{clashType, clashName} {
		m.familiesDropped.WithLabelValues(r)
	}
	for _, r := range []string{seriesDuplicate, seriesInvalid} {
		m.seriesDropped.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{
		m.pushes, m.pushDuration, m.delivery,
		m.stripped, m.renamed, m.unparseable, m.lastMessage, m.groupsWaiting,
		m.conflicts, m.markedDown, m.deleted, m.groups, m.familiesDropped, m.seriesDropped, m.lag,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register push output metrics: %w", err)
		}
	}
	return m, nil
}
