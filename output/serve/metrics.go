package serve

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	namespace = "prometheus_streams"
	subsystem = "serve"
)

// Results of an Offer.
const (
	offerHeld          = "held"
	offerSuperseded    = "superseded" // the group holds a scrape as new or newer
	offerRefusedGroups = "refused_max_groups"
	offerRefusedBytes  = "refused_max_bytes"
	offerRedelivered   = "redelivered" // the group holds this very scrape
	offerInvalid       = "invalid"     // the body does not inflate within body_size_limit
)

// Outcomes of a scrape request.
const (
	scrapeOK         = "ok"
	scrapeFailed     = "failed"      // the scrape at the poller failed: 503
	scrapeStale      = "stale"       // older than max_age: 503
	scrapeNotFound   = "not_found"   // no such group held: 404
	scrapeBadRequest = "bad_request" // parameters missing, repeated, unknown or too long: 400, 414
	scrapeTooMany    = "too_many"    // max_concurrent_scrapes reached: 503
	scrapeCorrupt    = "corrupt"     // the held body does not inflate: 500
	scrapeWriteError = "write_error" // the reader did not take the body within write_timeout, or went away
)

type metrics struct {
	offers         *prometheus.CounterVec // result
	scrapes        *prometheus.CounterVec // outcome
	scrapeDuration prometheus.Histogram
	servedBytes    prometheus.Counter
	sdRequests     prometheus.Counter
	deleted        prometheus.Counter
}

// stateCollector reports the store's gauges from one pass over it.
type stateCollector struct {
	o                                          *Output
	groups, bytes, maxGroups, maxBytes, newest *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.groups
	ch <- c.bytes
	ch <- c.maxGroups
	ch <- c.maxBytes
	ch <- c.newest
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.o.store.count(c.o.now().Add(-c.o.live.Load().MaxAge))
	ch <- prometheus.MustNewConstMetric(c.groups, prometheus.GaugeValue, float64(n.groups-n.failed-n.stale), "ok")
	ch <- prometheus.MustNewConstMetric(c.groups, prometheus.GaugeValue, float64(n.failed), "failed")
	ch <- prometheus.MustNewConstMetric(c.groups, prometheus.GaugeValue, float64(n.stale), "stale")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(n.bytes))
	ch <- prometheus.MustNewConstMetric(c.maxGroups, prometheus.GaugeValue, float64(c.o.opts.MaxGroups))
	ch <- prometheus.MustNewConstMetric(c.maxBytes, prometheus.GaugeValue, float64(c.o.opts.MaxBytes))
	for publisher, t := range n.newest {
		ch <- prometheus.MustNewConstMetric(c.newest, prometheus.GaugeValue, float64(t.UnixNano())/1e9, publisher)
	}
}

func newMetrics(reg prometheus.Registerer, o *Output) (*metrics, error) {
	name := func(n string) string { return prometheus.BuildFQName(namespace, subsystem, n) }
	m := &metrics{
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "offers_total",
			Help: "Scrapes offered to the serving output (replayed ones included), by result: held, redelivered (the group holds this very scrape), superseded (the group holds a newer one), refused_max_groups, refused_max_bytes (serve.max_groups or serve.max_bytes reached), invalid (the body does not inflate within body_size_limit).",
		}, []string{"result"}),
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "scrape_requests_total",
			Help: "Scrape requests for a group by outcome: ok, failed (the scrape at the poller failed, 503), stale (older than max_age, 503), not_found (404), bad_request (400 or 414), too_many (serve.max_concurrent_scrapes reached, 503), corrupt (500), write_error (the reader was too slow or went away).",
		}, []string{"outcome"}),
		scrapeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "scrape_request_duration_seconds",
			Help:    "Time to answer one scrape request: inflating and writing the body.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12), // 0.5ms .. ~12 s
		}),
		servedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "served_bytes_total",
			Help: "Inflated body bytes written to scrape requests.",
		}),
		sdRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "sd_requests_total",
			Help: "Requests to the HTTP service discovery endpoint /sd.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "groups_deleted_total",
			Help: "Groups forgotten (and gone from /sd) because no scrape of theirs arrived for serve.delete_after.",
		}),
	}
	for _, r := range []string{offerHeld, offerSuperseded, offerRefusedGroups, offerRefusedBytes, offerRedelivered, offerInvalid} {
		m.offers.WithLabelValues(r)
	}
	for _, r := range []string{scrapeOK, scrapeFailed, scrapeStale, scrapeNotFound, scrapeBadRequest, scrapeTooMany, scrapeCorrupt, scrapeWriteError} {
		m.scrapes.WithLabelValues(r)
	}
	state := &stateCollector{
		o:         o,
		groups:    prometheus.NewDesc(name("groups"), "Groups held, by state of their newest scrape: ok, failed (the scrape at the poller failed), stale (older than max_age). Each is one target in /sd.", []string{"state"}, nil),
		bytes:     prometheus.NewDesc(name("held_bytes"), "Bytes held: the compressed bodies and names of every group's newest scrape (what serve.max_bytes bounds).", nil, nil),
		maxGroups: prometheus.NewDesc(name("max_groups"), "serve.max_groups: the most groups held.", nil, nil),
		maxBytes:  prometheus.NewDesc(name("max_bytes"), "serve.max_bytes: the most bytes held.", nil, nil),
		// One series per publisher held: as many as DCs (and bounded by
		// max_groups, or the publishers allow-list, for hostile ones).
		newest: prometheus.NewDesc(name("last_scrape_timestamp_seconds"), "Unix time the newest scrape held of each publisher (DC) started at its poller: the DC's freshness as the served targets show it.", []string{"publisher"}, nil),
	}
	conflicts := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "publisher_conflicts_total",
		Help: "Scrapes held over the group's scrape of another publisher: with serve.publisher_label false, two DCs with the same job and instance overwrite each other's group.",
	}, func() float64 { return float64(o.store.publisherConflicts()) })
	for _, c := range []prometheus.Collector{m.offers, m.scrapes, m.scrapeDuration, m.servedBytes, m.sdRequests, m.deleted, state, conflicts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register serve output metrics: %w", err)
		}
	}
	return m, nil
}
