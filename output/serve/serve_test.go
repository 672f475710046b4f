package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/output"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// settled records how an output settled a delivery.
type settled struct {
	mu      sync.Mutex
	reasons []string
	errs    []error
}

func (s *settled) Done(reason string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reasons, s.errs = append(s.reasons, reason), append(s.errs, err)
}

func (s *settled) last() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reasons) == 0 {
		return "<none>", nil
	}
	return s.reasons[len(s.reasons)-1], s.errs[len(s.errs)-1]
}

// scrapeOf is a decoded scrape of job/instance by publisher, as the receiver
// hands it over: the body compressed with codec.
func scrapeOf(t *testing.T, publisher, job, instance string, start time.Time, contentType string, body []byte, codec envelope.Codec) *envelope.Envelope {
	t.Helper()
	e := &envelope.Envelope{
		Job: job, Instance: instance, Publisher: publisher, ScrapeStart: start, ScrapeDuration: 5 * time.Millisecond,
		Outcome: envelope.OutcomeSuccess, ContentType: contentType, Codec: codec,
	}
	switch {
	case body == nil:
		e.Outcome, e.Error = envelope.OutcomeFailure, `Get "http://web1:9100/metrics": connection refused`
	case codec == envelope.CodecZstd:
		enc, err := envelope.NewZstdEncoder()
		if err != nil {
			t.Fatal(err)
		}
		e.Payload = enc.Compress(nil, body)
	default:
		e.Payload = envelope.Compress(nil, body)
	}
	// Through the wire format, as the receiver gets it.
	msg, err := envelope.Append(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	d, err := envelope.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// served is an Output behind an HTTP server, as on the monitor endpoint.
type served struct {
	o   *Output
	reg *prometheus.Registry
	srv *httptest.Server
}

func newServed(t *testing.T, opts Options) *served {
	t.Helper()
	if opts.MaxAge == 0 {
		opts.MaxAge = time.Minute
	}
	reg := prometheus.NewRegistry()
	o, err := New(opts, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	o.ReplayDone()
	mux := http.NewServeMux()
	mux.Handle("GET "+SDPath, o.SDHandler())
	mux.Handle("GET "+ScrapePath, o.ScrapeHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &served{o: o, reg: reg, srv: srv}
}

// hold offers env and fails the test unless it is held.
func (s *served) hold(t *testing.T, env *envelope.Envelope) {
	t.Helper()
	if reason, err := s.offer(env); reason != "" {
		t.Fatalf("%s/%s not held: %s %v", env.Job, env.Instance, reason, err)
	}
}

// offer offers env and returns how it was settled.
func (s *served) offer(env *envelope.Envelope) (string, error) {
	d := &settled{}
	s.o.Offer(env, d)
	return d.last()
}

func (s *served) get(t *testing.T, pathQuery string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(s.srv.URL + pathQuery)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func (s *served) scrapes(outcome string) float64 {
	return testutil.ToFloat64(s.o.metrics.scrapes.WithLabelValues(outcome))
}

// waitScrapes waits until n scrapes with outcome are counted: the handler
// counts a scrape once it has written the answer, which the client may
// have read by then.
func (s *served) waitScrapes(t *testing.T, outcome string, n float64) {
	t.Helper()
	testenv.WaitFor(t, fmt.Sprintf("%v scrapes counted %s", n, outcome), 5*time.Second, func() bool { return s.scrapes(outcome) == n })
}

func groupQuery(publisher, job, instance string) string {
	q := url.Values{"job": {job}, "instance": {instance}}
	if publisher != "" {
		q.Set("publisher", publisher)
	}
	return ScrapePath + "?" + q.Encode()
}

func TestScrapeServesTheBodyAsTheTargetServedIt(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name, sample, contentType string
		codec                     envelope.Codec
	}{
		{"text, snappy", "node_exporter.prom", testenv.TextContentType, envelope.CodecSnappy},
		{"protobuf, zstd", "node_exporter.pb", testenv.ProtoContentType, envelope.CodecZstd},
		{"protobuf with a native histogram", "", testenv.ProtoContentType, envelope.CodecSnappy},
		{"openmetrics", "prometheus.openmetrics", "application/openmetrics-text; version=1.0.0; charset=utf-8", envelope.CodecSnappy},
		{"no content type", "prometheus.prom", "", envelope.CodecSnappy},
	}
	s := newServed(t, Options{PublisherLabel: true})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := nativeHistogramBody(t)
			if c.sample != "" {
				body = testenv.Sample(t, c.sample)
			}
			inst := fmt.Sprintf("web%d:9100", i)
			if reason, err := s.offer(scrapeOf(t, "dc1", "node", inst, now, c.contentType, body, c.codec)); reason != "" {
				t.Fatalf("not held: %s %v", reason, err)
			}
			code, h, got := s.get(t, groupQuery("dc1", "node", inst))
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, got)
			}
			if !bytes.Equal(got, body) {
				t.Errorf("body differs from the target's (%d bytes, want %d)", len(got), len(body))
			}
			want := c.contentType
			if want == "" {
				want = defaultContentType
			}
			if ct := h.Get("Content-Type"); ct != want {
				t.Errorf("Content-Type %q, want %q", ct, want)
			}
		})
	}
	s.waitScrapes(t, scrapeOK, float64(len(cases)))
}

func TestScrapeRefusals(t *testing.T) {
	now := time.Now()
	s := newServed(t, Options{PublisherLabel: true, MaxAge: time.Minute})
	s.hold(t, scrapeOf(t, "dc1", "node", "ok", now, testenv.TextContentType, []byte("up_value 1\n"), envelope.CodecSnappy))
	s.hold(t, scrapeOf(t, "dc1", "node", "down", now, "", nil, envelope.CodecSnappy))
	// Held while it was young; max_age has passed since.
	s.hold(t, scrapeOf(t, "dc1", "node", "old", now.Add(-2*time.Minute), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	long := strings.Repeat("x", maxQueryLen)
	cases := []struct {
		name, query string
		code        int
		outcome     string
		says        string
	}{
		{"failed at the poller", groupQuery("dc1", "node", "down"), 503, scrapeFailed, "connection refused"},
		{"stale", groupQuery("dc1", "node", "old"), 503, scrapeStale, "stale"},
		{"unknown group", groupQuery("dc1", "node", "nope"), 404, scrapeNotFound, "no scrape of this group"},
		{"other publisher", groupQuery("dc2", "node", "ok"), 404, scrapeNotFound, "no scrape of this group"},
		{"publisher missing: a group without one", groupQuery("", "node", "ok"), 404, scrapeNotFound, "no scrape of this group"},
		{"publisher twice", groupQuery("dc1", "node", "ok") + "&publisher=dc1", 400, scrapeBadRequest, "publisher is given 2 times"},
		{"job empty", ScrapePath + "?job=&instance=ok&publisher=dc1", 400, scrapeBadRequest, "job is missing or empty"},
		{"instance twice", ScrapePath + "?job=node&instance=ok&instance=ok&publisher=dc1", 400, scrapeBadRequest, "instance is given 2 times"},
		{"unknown parameter", groupQuery("dc1", "node", "ok") + "&extra=1", 400, scrapeBadRequest, `unknown parameters ["extra"]`},
		{"bad escape", ScrapePath + "?job=%zz", 400, scrapeBadRequest, "query string"},
		{"oversized query", ScrapePath + "?job=" + long, 414, scrapeBadRequest, "cannot name a group"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.scrapes(c.outcome)
			code, _, body := s.get(t, c.query)
			if code != c.code || !strings.Contains(string(body), c.says) {
				t.Errorf("got %d %q, want %d saying %q", code, body, c.code, c.says)
			}
			s.waitScrapes(t, c.outcome, before+1)
		})
	}
	// The others were answered and the good group still is.
	if code, _, body := s.get(t, groupQuery("dc1", "node", "ok")); code != 200 || string(body) != "up_value 1\n" {
		t.Errorf("the good group: %d %q", code, body)
	}
}

func TestTooManyConcurrentScrapes(t *testing.T) {
	s := newServed(t, Options{MaxConcurrentScrapes: 2})
	s.hold(t, scrapeOf(t, "dc1", "node", "a", time.Now(), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	// Both slots taken, as by two scrapes being answered.
	s.o.slots <- struct{}{}
	s.o.slots <- struct{}{}
	code, _, body := s.get(t, groupQuery("", "node", "a"))
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "serve.max_concurrent_scrapes") {
		t.Errorf("got %d %q, want 503 naming serve.max_concurrent_scrapes", code, body)
	}
	s.waitScrapes(t, scrapeTooMany, 1)
	<-s.o.slots
	if code, _, _ := s.get(t, groupQuery("", "node", "a")); code != http.StatusOK {
		t.Errorf("with a slot free: %d", code)
	}
	<-s.o.slots
}

func TestSlowReaderIsCutOffByTheWriteTimeout(t *testing.T) {
	s := newServed(t, Options{WriteTimeout: 100 * time.Millisecond, BodyLimit: 64 << 20})
	// A body larger than what the kernel buffers between the two ends of
	// a loopback connection whose reader takes nothing.
	body := bytes.Repeat([]byte("node_slow_reader_padding_total 1\n"), (32<<20)/33)
	s.hold(t, scrapeOf(t, "dc1", "node", "big", time.Now(), testenv.TextContentType, body, envelope.CodecSnappy))
	conn, err := net.Dial("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", groupQuery("", "node", "big")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the slow reader to be cut off", 10*time.Second, func() bool { return s.scrapes(scrapeWriteError) == 1 })
	// Its slot is free again, and others are served.
	s.hold(t, scrapeOf(t, "dc1", "node", "small", time.Now(), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	if code, _, _ := s.get(t, groupQuery("", "node", "small")); code != http.StatusOK {
		t.Errorf("after the slow reader: %d", code)
	}
}

func TestOfferKeepsTheNewestAndRespectsTheBounds(t *testing.T) {
	now := time.Now()
	body := []byte("v 1\n")
	s := newServed(t, Options{PublisherLabel: true, MaxGroups: 2})
	if r, _ := s.offer(scrapeOf(t, "dc1", "node", "a", now, testenv.TextContentType, body, envelope.CodecSnappy)); r != "" {
		t.Fatalf("first scrape: %q", r)
	}
	if r, _ := s.offer(scrapeOf(t, "dc1", "node", "a", now.Add(-time.Second), testenv.TextContentType, []byte("v 0\n"), envelope.CodecSnappy)); r != output.ReasonSuperseded {
		t.Errorf("an older scrape: %q, want superseded", r)
	}
	if r, _ := s.offer(scrapeOf(t, "dc1", "node", "a", now, testenv.TextContentType, body, envelope.CodecSnappy)); r != "" {
		t.Errorf("a redelivery of the scrape held: %q, want taken", r)
	}
	if r, _ := s.offer(scrapeOf(t, "dc2", "node", "a", now, testenv.TextContentType, body, envelope.CodecSnappy)); r != "" {
		t.Errorf("another publisher's group: %q", r)
	}
	r, err := s.offer(scrapeOf(t, "dc3", "node", "a", now, testenv.TextContentType, body, envelope.CodecSnappy))
	if r != output.ReasonLimit || !errors.Is(err, ErrTooManyGroups) {
		t.Errorf("a third group: %q %v, want limit and ErrTooManyGroups", r, err)
	}
	// A newer scrape of a held group still replaces it.
	if r, _ := s.offer(scrapeOf(t, "dc1", "node", "a", now.Add(time.Second), testenv.TextContentType, []byte("v 2\n"), envelope.CodecSnappy)); r != "" {
		t.Errorf("a newer scrape: %q", r)
	}
	if _, _, got := s.get(t, groupQuery("dc1", "node", "a")); string(got) != "v 2\n" {
		t.Errorf("serves %q, want the newest", got)
	}
	for result, want := range map[string]float64{offerHeld: 3, offerSuperseded: 1, offerRedelivered: 1, offerRefusedGroups: 1} {
		if got := testutil.ToFloat64(s.o.metrics.offers.WithLabelValues(result)); got != want {
			t.Errorf("offers{%s} = %v, want %v", result, got, want)
		}
	}
}

func TestMaxBytes(t *testing.T) {
	now := time.Now()
	small := scrapeOf(t, "dc1", "node", "a", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy)
	limit := heldSize(small)*2 + 10
	s := newServed(t, Options{MaxBytes: limit})
	s.hold(t, small)
	s.hold(t, scrapeOf(t, "dc1", "node", "b", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	big := scrapeOf(t, "dc1", "node", "c", now, testenv.TextContentType, bytes.Repeat([]byte("x 1\n"), 100), envelope.CodecSnappy)
	if r, err := s.offer(big); r != output.ReasonLimit || !errors.Is(err, ErrTooManyBytes) {
		t.Errorf("past max_bytes: %q %v", r, err)
	}
	if got := s.o.store.count(time.Time{}).bytes; got > limit {
		t.Errorf("holds %d bytes, more than max_bytes %d", got, limit)
	}
	if n := testutil.ToFloat64(s.o.metrics.offers.WithLabelValues(offerRefusedBytes)); n != 1 {
		t.Errorf("refused_max_bytes = %v", n)
	}
}

func TestSDListsEveryGroupUntilDeleteAfter(t *testing.T) {
	now := time.Now()
	s := newServed(t, Options{PublisherLabel: true, PublisherLabelName: "dc", MaxAge: time.Minute, DeleteAfter: 10 * time.Minute})
	s.hold(t, scrapeOf(t, "dc1", "node", "web1:9100", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	s.hold(t, scrapeOf(t, "dc2", "node", "web1:9100", now.Add(-5*time.Minute), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	s.o.now = func() time.Time { return now } // the dc2 scrape was held while young; now it is stale

	code, h, body := s.get(t, SDPath)
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("/sd: %d %s", code, h.Get("Content-Type"))
	}
	var groups []targetgroup.Group
	if err := json.Unmarshal(body, &groups); err != nil {
		t.Fatal(err)
	}
	addr := []model.LabelSet{{model.AddressLabel: model.LabelValue(s.srv.Listener.Addr().String())}}
	want := []targetgroup.Group{
		{Targets: addr, Labels: model.LabelSet{"job": "node", "instance": "web1:9100", "dc": "dc1", "__metrics_path__": ScrapePath, "__scheme__": "http", "__param_job": "node", "__param_instance": "web1:9100", "__param_publisher": "dc1"}},
		{Targets: addr, Labels: model.LabelSet{"job": "node", "instance": "web1:9100", "dc": "dc2", "__metrics_path__": ScrapePath, "__scheme__": "http", "__param_job": "node", "__param_instance": "web1:9100", "__param_publisher": "dc2"}},
	}
	// A Group prints as its Source, empty here: the message shows both as
	// JSON, labels sorted.
	if !reflect.DeepEqual(groups, want) {
		g, _ := json.Marshal(groups)
		w, _ := json.Marshal(want)
		t.Errorf("/sd:\n got %s\nwant %s", g, w)
	}
	// Past delete_after, dc2's group leaves /sd; the sweep then forgets it.
	s.o.now = func() time.Time { return now.Add(6 * time.Minute) }
	_, _, body = s.get(t, SDPath)
	if err := json.Unmarshal(body, &groups); err != nil || len(groups) != 1 || groups[0].Labels["dc"] != "dc1" {
		t.Errorf("/sd past dc2's delete_after: %s", body)
	}
	if n := s.o.store.removeBefore(s.o.now().Add(-10 * time.Minute)); n != 1 {
		t.Errorf("swept %d groups, want 1", n)
	}
}

func TestSDAddressAndScheme(t *testing.T) {
	s := newServed(t, Options{Address: "receiver.central:10000", Scheme: "https"})
	s.hold(t, scrapeOf(t, "dc1", "node", "a", time.Now(), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	_, _, body := s.get(t, SDPath)
	var groups []targetgroup.Group
	if err := json.Unmarshal(body, &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Targets[0][model.AddressLabel] != "receiver.central:10000" || groups[0].Labels["__scheme__"] != "https" {
		t.Errorf("/sd: %s", body)
	}
	if _, ok := groups[0].Labels["__param_publisher"]; ok {
		t.Errorf("without the publisher label, /sd names a publisher: %s", body)
	}
}

func TestRunForgetsSilentGroups(t *testing.T) {
	s := newServed(t, Options{MaxAge: 50 * time.Millisecond, DeleteAfter: 100 * time.Millisecond})
	s.hold(t, scrapeOf(t, "dc1", "node", "a", time.Now(), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	testenv.Run(t, s.o.Run)
	testenv.WaitFor(t, "the silent group to be forgotten", 5*time.Second, func() bool {
		return testutil.ToFloat64(s.o.metrics.deleted) == 1
	})
	if code, _, _ := s.get(t, groupQuery("", "node", "a")); code != http.StatusNotFound {
		t.Errorf("a forgotten group answers %d, want 404", code)
	}
	if n := s.o.store.count(time.Time{}); n.groups != 0 || n.bytes != 0 {
		t.Errorf("still holds %+v", n)
	}
}

func TestGauges(t *testing.T) {
	now := time.Now()
	s := newServed(t, Options{MaxAge: time.Minute, MaxGroups: 10, MaxBytes: 1 << 20})
	s.hold(t, scrapeOf(t, "dc1", "node", "ok", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	s.hold(t, scrapeOf(t, "dc1", "node", "down", now, "", nil, envelope.CodecSnappy))
	s.hold(t, scrapeOf(t, "dc1", "node", "old", now.Add(-2*time.Minute), "", nil, envelope.CodecSnappy))
	want := `
# HELP prometheus_streams_serve_groups Groups held, by state of their newest scrape: ok, failed (the scrape at the poller failed), stale (older than max_age). Each is one target in /sd.
# TYPE prometheus_streams_serve_groups gauge
prometheus_streams_serve_groups{state="failed"} 1
prometheus_streams_serve_groups{state="ok"} 1
prometheus_streams_serve_groups{state="stale"} 1
# HELP prometheus_streams_serve_max_groups serve.max_groups: the most groups held.
# TYPE prometheus_streams_serve_max_groups gauge
prometheus_streams_serve_max_groups 10
`
	want += fmt.Sprintf(`# HELP prometheus_streams_serve_last_scrape_timestamp_seconds Unix time the newest scrape held of each publisher (DC) started at its poller: the DC's freshness as the served targets show it.
# TYPE prometheus_streams_serve_last_scrape_timestamp_seconds gauge
prometheus_streams_serve_last_scrape_timestamp_seconds{publisher="dc1"} %v
`, float64(now.UnixNano())/1e9)
	if err := testutil.GatherAndCompare(s.reg, strings.NewReader(want), "prometheus_streams_serve_groups", "prometheus_streams_serve_max_groups", "prometheus_streams_serve_last_scrape_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if got := s.o.store.count(time.Time{}).bytes; got <= 0 {
		t.Errorf("held bytes %d", got)
	}
}

// A 1.0 poller may name no publisher: its groups are listed without the
// label and the parameter (Prometheus would drop both, being empty) and
// scraped without them.
func TestGroupWithoutPublisher(t *testing.T) {
	s := newServed(t, Options{PublisherLabel: true})
	s.hold(t, scrapeOf(t, "", "node", "old:9100", time.Now(), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	_, _, body := s.get(t, SDPath)
	var groups []targetgroup.Group
	if err := json.Unmarshal(body, &groups); err != nil || len(groups) != 1 {
		t.Fatalf("/sd: %s (%v)", body, err)
	}
	if _, ok := groups[0].Labels["publisher"]; ok {
		t.Errorf("an empty publisher label: %v", groups[0].Labels)
	}
	if _, ok := groups[0].Labels["__param_publisher"]; ok {
		t.Errorf("an empty publisher parameter: %v", groups[0].Labels)
	}
	for _, q := range []string{groupQuery("", "node", "old:9100"), groupQuery("", "node", "old:9100") + "&publisher="} {
		if code, _, got := s.get(t, q); code != http.StatusOK || string(got) != "v 1\n" {
			t.Errorf("%s: %d %q", q, code, got)
		}
	}
}

func TestSDWaitsForTheReplay(t *testing.T) {
	o, err := New(Options{MaxAge: time.Minute}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	o.SDHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, SDPath, nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "replaying") {
		t.Errorf("/sd before the replay ended: %d %q, want 503", rec.Code, rec.Body)
	}
	o.ReplayDone()
	rec = httptest.NewRecorder()
	o.SDHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, SDPath, nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "[]" {
		t.Errorf("/sd after: %d %q, want an empty list", rec.Code, rec.Body)
	}
}

func TestSDDocumentFollowsTheGroups(t *testing.T) {
	now := time.Now()
	s := newServed(t, Options{})
	s.o.now = func() time.Time { return now }
	count := func() int {
		_, _, body := s.get(t, SDPath)
		var groups []targetgroup.Group
		if err := json.Unmarshal(body, &groups); err != nil {
			t.Fatal(err)
		}
		return len(groups)
	}
	s.hold(t, scrapeOf(t, "dc1", "node", "a", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	if n := count(); n != 1 {
		t.Fatalf("%d groups, want 1", n)
	}
	// A new group shows at once, cached document or not.
	s.hold(t, scrapeOf(t, "dc1", "node", "b", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	if n := count(); n != 2 {
		t.Errorf("%d groups after a new one, want 2", n)
	}
	// One group comes back from past delete_after as another leaves: the
	// same number of groups, another list.
	swap := newServed(t, Options{DeleteAfter: time.Hour})
	swap.o.now = func() time.Time { return now }
	swap.hold(t, scrapeOf(t, "dc1", "node", "back", now.Add(-2*time.Hour), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	swap.hold(t, scrapeOf(t, "dc1", "node", "going", now.Add(-50*time.Minute), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	if _, _, body := swap.get(t, SDPath); !strings.Contains(string(body), `"going"`) || strings.Contains(string(body), `"back"`) {
		t.Fatalf("/sd before: %s", body)
	}
	swap.hold(t, scrapeOf(t, "dc1", "node", "back", now.Add(15*time.Minute), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	swap.o.now = func() time.Time { return now.Add(15 * time.Minute) }
	if _, _, body := swap.get(t, SDPath); strings.Contains(string(body), `"going"`) || !strings.Contains(string(body), `"back"`) {
		t.Errorf("/sd after one group came back and another left: %s", body)
	}
	// Another address asked for gets its own document.
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+SDPath, nil)
	req.Host = "receiver.example.net:10000"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), `"targets":["receiver.example.net:10000"]`) {
		t.Errorf("/sd asked as receiver.example.net:10000: %s", body)
	}
}

func TestOfferRefusesABodyThatDoesNotInflate(t *testing.T) {
	s := newServed(t, Options{BodyLimit: 1 << 10})
	good := scrapeOf(t, "dc1", "node", "a", time.Now(), testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy)
	s.hold(t, good)
	big := scrapeOf(t, "dc1", "node", "a", time.Now().Add(time.Second), testenv.TextContentType, bytes.Repeat([]byte("x 1\n"), 1<<10), envelope.CodecSnappy)
	if r, err := s.offer(big); r != "body_too_large" || err == nil {
		t.Errorf("a body over the limit: %q %v", r, err)
	}
	corrupt := *good
	corrupt.ScrapeStart = good.ScrapeStart.Add(2 * time.Second)
	corrupt.Payload = []byte{0x10, 0xff, 0xff}
	if r, _ := s.offer(&corrupt); r != "corrupt_body" {
		t.Errorf("a corrupt body: %q", r)
	}
	if code, _, got := s.get(t, groupQuery("", "node", "a")); code != 200 || string(got) != "v 1\n" {
		t.Errorf("the good scrape was replaced: %d %q", code, got)
	}
	if n := testutil.ToFloat64(s.o.metrics.offers.WithLabelValues(offerInvalid)); n != 2 {
		t.Errorf("invalid offers %v, want 2", n)
	}
}

// nativeHistogramBody is a delimited protobuf exposition with a native
// histogram, as client_golang serves one to a Prometheus that asks for
// protobuf.
func nativeHistogramBody(t *testing.T) []byte {
	t.Helper()
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "request_duration_seconds", Help: "A native histogram.", NativeHistogramBucketFactor: 1.1,
	})
	reg.MustRegister(h)
	for _, v := range []float64{0.01, 0.02, 0.5, 3} {
		h.Observe(v)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams[0].GetMetric()[0].GetHistogram().GetPositiveSpan()) == 0 {
		t.Fatal("the histogram has no native buckets")
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestPublisherConflictsAreCounted(t *testing.T) {
	now := time.Now()
	s := newServed(t, Options{PublisherLabel: false})
	s.hold(t, scrapeOf(t, "dc1", "node", "web1", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy))
	s.hold(t, scrapeOf(t, "dc1", "node", "web1", now.Add(time.Second), testenv.TextContentType, []byte("v 2\n"), envelope.CodecSnappy))
	s.hold(t, scrapeOf(t, "dc2", "node", "web1", now.Add(2*time.Second), testenv.TextContentType, []byte("v 3\n"), envelope.CodecSnappy))
	want := `
# HELP prometheus_streams_serve_publisher_conflicts_total Scrapes held over the group's scrape of another publisher: with serve.publisher_label false, two DCs with the same job and instance overwrite each other's group.
# TYPE prometheus_streams_serve_publisher_conflicts_total counter
prometheus_streams_serve_publisher_conflicts_total 1
`
	if err := testutil.GatherAndCompare(s.reg, strings.NewReader(want), "prometheus_streams_serve_publisher_conflicts_total"); err != nil {
		t.Error(err)
	}
}

// A redelivery or an older scrape is settled on its start alone: its body
// costs no inflate, so even a corrupt one is no invalid offer.
func TestOfferSettlesRedeliveriesBeforeTheBody(t *testing.T) {
	now := time.Now()
	s := newServed(t, Options{})
	good := scrapeOf(t, "dc1", "node", "a", now, testenv.TextContentType, []byte("v 1\n"), envelope.CodecSnappy)
	s.hold(t, good)
	for _, start := range []time.Time{now, now.Add(-time.Second)} {
		again := *good
		again.ScrapeStart, again.Payload = start, []byte{0x10, 0xff, 0xff}
		_, _ = s.offer(&again) // settled as counted below
	}
	for result, want := range map[string]float64{offerRedelivered: 1, offerSuperseded: 1, offerInvalid: 0} {
		if got := testutil.ToFloat64(s.o.metrics.offers.WithLabelValues(result)); got != want {
			t.Errorf("offers{%s} = %v, want %v", result, got, want)
		}
	}
}
