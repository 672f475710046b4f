package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
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

// sdDoc is an encoded /sd document and what it was built from: the
// address and the groups listed (their number and fingerprint).
type sdDoc struct {
	addr        string
	fingerprint uint64
	groups      int
	body        []byte
}

// SDHandler answers GET /sd: one target per group held and not yet silent
// past delete_after, labelled job, instance and (with the publisher label,
// for a group whose scrapes name one) the publisher, whose address is this
// receiver and whose metrics path and parameters name the group, so
// Prometheus scrapes each group through ScrapeHandler.
//
// Until the replay at start has ended (ReplayDone) it answers 503: http_sd
// keeps the targets it had on an error, and a list without the groups not
// replayed yet would make Prometheus drop them. The document is rebuilt
// only when the groups listed or the address asked for changed, one at a
// time, so that however many clients ask, it costs one encoding of every
// group.
func (o *Output) SDHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.metrics.sdRequests.Inc()
		if !o.replayed.Load() {
			http.Error(w, "replaying the stream's recent scrapes after a start; ask again shortly", http.StatusServiceUnavailable)
			return
		}
		addr := o.opts.Address
		if addr == "" {
			addr = requestAddr(r)
		}
		body := o.sdDocument(addr)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}

// sdDocument returns the /sd document for addr, from the cache when it is
// current.
func (o *Output) sdDocument(addr string) []byte {
	o.sdMu.Lock()
	defer o.sdMu.Unlock()
	ids, fp := o.store.list(o.now().Add(-o.live.Load().DeleteAfter))
	if d := o.sd; d.body != nil && d.addr == addr && d.fingerprint == fp && d.groups == len(ids) {
		return d.body
	}
	o.sd = sdDoc{addr: addr, fingerprint: fp, groups: len(ids), body: o.encodeSD(addr, ids)}
	return o.sd.body
}

// encodeSD writes the http_sd document of ids: a JSON array of
// {"targets": [addr], "labels": {...}}, written field by field rather than
// through a map per group, which costs a tenth of the allocations.
func (o *Output) encodeSD(addr string, ids []groupID) []byte {
	var b bytes.Buffer
	b.Grow(len(ids) * 256)
	str := func(s string) {
		q, _ := json.Marshal(s) // a string always encodes
		b.Write(q)
	}
	label := func(name, value string) {
		b.WriteByte(',')
		str(name)
		b.WriteByte(':')
		str(value)
	}
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"targets":[`)
		str(addr)
		b.WriteString(`],"labels":{"__metrics_path__":`)
		str(ScrapePath)
		label("__scheme__", o.opts.Scheme)
		label("job", id.job)
		label("instance", id.instance)
		label("__param_job", id.job)
		label("__param_instance", id.instance)
		// Prometheus drops an empty label, and with it the parameter: a
		// group of a 1.0 poller that named no publisher has neither.
		if o.opts.PublisherLabel && id.publisher != "" {
			label(o.opts.PublisherLabelName, id.publisher)
			label("__param_publisher", id.publisher)
		}
		b.WriteString("}}")
	}
	b.WriteByte(']')
	return b.Bytes()
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
	buf := o.bufs.Get()
	defer o.bufs.Put(buf)
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
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	// A deadline for this response only: the monitor's other endpoints
	// (pprof profiles) legitimately take longer.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(o.opts.WriteTimeout))
	if _, err := w.Write(body); err != nil {
		return scrapeWriteError
	}
	o.metrics.servedBytes.Add(float64(len(body)))
	return scrapeOK
}

// parseGroup reads the group a scrape names: job and instance, each
// exactly once and not empty, and, with the publisher label, publisher at
// most once (absent or empty for a group whose scrapes name none, as /sd
// lists it); nothing else.
func (o *Output) parseGroup(rawQuery string) (groupID, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return groupID{}, fmt.Errorf("query string: %w", err)
	}
	known := []string{"job", "instance"}
	for _, name := range known {
		switch n := len(q[name]); {
		case n == 0 || q[name][0] == "":
			return groupID{}, fmt.Errorf("parameter %s is missing or empty", name)
		case n > 1:
			return groupID{}, fmt.Errorf("parameter %s is given %d times", name, n)
		}
	}
	if o.opts.PublisherLabel {
		known = append(known, "publisher")
		if n := len(q["publisher"]); n > 1 {
			return groupID{}, fmt.Errorf("parameter publisher is given %d times", n)
		}
	}
	var extra []string
	for name := range q {
		if !slices.Contains(known, name) {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return groupID{}, fmt.Errorf("unknown parameters %q (want %s)", extra, strings.Join(known, ", "))
	}
	id := groupID{job: q.Get("job"), instance: q.Get("instance")}
	if o.opts.PublisherLabel {
		id.publisher = q.Get("publisher")
	}
	return id, nil
}
