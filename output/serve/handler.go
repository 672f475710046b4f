package serve

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/choria-io/prometheus-streams/envelope"
)

// The paths the output serves on the monitor endpoint.
const (
	// SDPath lists the groups in Prometheus's http_sd format.
	SDPath = "/sd"
	// ScrapePath answers one group's scrape, named by the query
	// parameters job, instance and (with the publisher label) publisher.
	ScrapePath = "/scrape"
)

// maxQueryLen bounds a scrape's query string: three names of at most
// envelope.MaxNameLen bytes each, escaped (up to three bytes a byte), with
// room to spare. Longer cannot name a group.
const maxQueryLen = 3*3*envelope.MaxNameLen + 256

// defaultContentType is what a body whose exporter sent no Content-Type is
// served with: the text format, as Prometheus assumes.
const defaultContentType = "text/plain; version=0.0.4; charset=utf-8"

// targetGroup is one entry of the http_sd format.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// SDHandler answers GET /sd: one target per group held and not yet silent
// past delete_after, labelled job, instance and (with the publisher label)
// the publisher, whose address is this receiver and whose metrics path and
// parameters name the group, so Prometheus scrapes each group through
// ScrapeHandler.
func (o *Output) SDHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.metrics.sdRequests.Inc()
		addr := o.opts.Address
		if addr == "" {
			addr = requestAddr(r)
		}
		ids := o.store.list(o.now().Add(-o.live.Load().DeleteAfter))
		groups := make([]targetGroup, 0, len(ids))
		for _, id := range ids {
			labels := map[string]string{
				"job": id.job, "instance": id.instance,
				"__metrics_path__": ScrapePath, "__scheme__": o.opts.Scheme,
				"__param_job": id.job, "__param_instance": id.instance,
			}
			if o.opts.PublisherLabel {
				labels[o.opts.PublisherLabelName] = id.publisher
				labels["__param_publisher"] = id.publisher
			}
			groups = append(groups, targetGroup{Targets: []string{addr}, Labels: labels})
		}
		body, err := json.Marshal(groups)
		if err != nil {
			http.Error(w, "encode /sd: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// requestAddr is the address the client reached us at: the Host it sent,
// or the local address of its connection.
func requestAddr(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return ""
}

// ScrapeHandler answers GET /scrape?job=J&instance=I[&publisher=P]: the
// group's newest scrape body, inflated, with the Content-Type the target
// answered with, so Prometheus parses it as if it had scraped the target.
// A scrape that failed at the poller, or is older than max_age, answers
// 503 with the reason, which Prometheus records as up 0. Every answer is
// counted by outcome.
func (o *Output) ScrapeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := o.now()
		outcome := o.scrape(w, r)
		o.metrics.scrapes.WithLabelValues(outcome).Inc()
		o.metrics.scrapeDuration.Observe(o.now().Sub(start).Seconds())
	})
}

// scrape answers one scrape request and returns its outcome.
func (o *Output) scrape(w http.ResponseWriter, r *http.Request) string {
	if len(r.URL.RawQuery) > maxQueryLen {
		http.Error(w, fmt.Sprintf("query string of %d bytes, more than %d: it cannot name a group", len(r.URL.RawQuery), maxQueryLen), http.StatusRequestURITooLong)
		return scrapeBadRequest
	}
	id, err := o.parseGroup(r.URL.RawQuery)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return scrapeBadRequest
	}
	select {
	case o.slots <- struct{}{}:
		defer func() { <-o.slots }()
	default:
		http.Error(w, fmt.Sprintf("more than %d scrapes at once (serve.max_concurrent_scrapes)", cap(o.slots)), http.StatusServiceUnavailable)
		return scrapeTooMany
	}
	env := o.store.get(id)
	if env == nil {
		http.Error(w, "no scrape of this group is held: unknown, or silent for longer than delete_after", http.StatusNotFound)
		return scrapeNotFound
	}
	if age := o.now().Sub(env.ScrapeStart); age > o.live.Load().MaxAge {
		http.Error(w, fmt.Sprintf("stale: the newest scrape started %s ago, longer than max_age %s", age.Round(time.Second), o.live.Load().MaxAge), http.StatusServiceUnavailable)
		return scrapeStale
	}
	if env.Outcome != envelope.OutcomeSuccess {
		http.Error(w, "the scrape at the poller failed: "+env.Error, http.StatusServiceUnavailable)
		return scrapeFailed
	}
	buf := o.bufs.get()
	defer o.bufs.put(buf)
	body, err := env.Body((*buf)[:0], int(o.opts.BodyLimit))
	if err != nil {
		http.Error(w, "the held body does not inflate: "+err.Error(), http.StatusInternalServerError)
		return scrapeCorrupt
	}
	*buf = body
	ct := env.ContentType
	if ct == "" {
		ct = defaultContentType
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	// A deadline for this response only: the monitor's other endpoints
	// (pprof profiles) legitimately take longer.
	_ = http.NewResponseController(w).SetWriteDeadline(o.now().Add(o.opts.WriteTimeout))
	if _, err := w.Write(body); err != nil {
		return scrapeWriteError
	}
	o.metrics.servedBytes.Add(float64(len(body)))
	return scrapeOK
}

// parseGroup reads the group a scrape names: job and instance, and
// publisher with the publisher label, each exactly once and nothing else.
func (o *Output) parseGroup(rawQuery string) (groupID, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return groupID{}, fmt.Errorf("query string: %w", err)
	}
	want := []string{"job", "instance"}
	if o.opts.PublisherLabel {
		want = append(want, "publisher")
	}
	for _, name := range want {
		switch n := len(q[name]); {
		case n == 0 || q[name][0] == "":
			return groupID{}, fmt.Errorf("parameter %s is missing or empty", name)
		case n > 1:
			return groupID{}, fmt.Errorf("parameter %s is given %d times", name, n)
		}
	}
	if len(q) != len(want) {
		var extra []string
		for name := range q {
			if !slices.Contains(want, name) {
				extra = append(extra, name)
			}
		}
		slices.Sort(extra)
		return groupID{}, fmt.Errorf("unknown parameters %q (want %s)", extra, strings.Join(want, ", "))
	}
	id := groupID{job: q.Get("job"), instance: q.Get("instance")}
	if o.opts.PublisherLabel {
		id.publisher = q.Get("publisher")
	}
	return id, nil
}

// maxPooledBuffer is the largest buffer kept for reuse: one huge body must
// not pin its size for the life of the process.
const maxPooledBuffer = 4 << 20

// bufferPool reuses the buffers bodies are inflated into, so a scrape
// costs an inflate and a write, not an allocation of the body's size.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) get() *[]byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return v
	}
	buf := make([]byte, 0, 64<<10)
	return &buf
}

func (b *bufferPool) put(buf *[]byte) {
	if cap(*buf) <= maxPooledBuffer {
		b.p.Put(buf)
	}
}
