package serve

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmarks
// measure the handler and not a recorder's buffer.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return io.Discard.Write(b) }
func (d *discardWriter) WriteHeader(int)             {}

// benchOutput holds n node exporter scrapes (testdata/node_exporter.prom,
// snappy), as one receiver of n targets does.
func benchOutput(b *testing.B, n int) *Output {
	b.Helper()
	o, err := New(Options{MaxAge: time.Hour, PublisherLabel: true}, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	o.ReplayDone()
	body := testenv.Sample(b, "node_exporter.prom")
	payload := envelope.Compress(nil, body)
	now := time.Now()
	for i := range n {
		o.Offer(&envelope.Envelope{
			Job: "node", Instance: fmt.Sprintf("web%d.dc1.example.net:9100", i), Publisher: "dc1", ScrapeStart: now,
			Outcome: envelope.OutcomeSuccess, ContentType: testenv.TextContentType, Codec: envelope.CodecSnappy, Payload: payload,
		}, discardDelivery{})
	}
	return o
}

type discardDelivery struct{}

func (discardDelivery) Done(string, error) {}

// BenchmarkScrape is one scrape of a held node exporter group: parameters
// parsed, the body inflated and written.
func BenchmarkScrape(b *testing.B) {
	o := benchOutput(b, 1)
	h := o.ScrapeHandler()
	req := httptest.NewRequest(http.MethodGet, groupQuery("dc1", "node", "web0.dc1.example.net:9100"), nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
	if n := testutil.ToFloat64(o.metrics.scrapes.WithLabelValues(scrapeOK)); n == 0 {
		b.Fatal("no scrape answered ok")
	}
}

// BenchmarkSD encodes /sd for 10,000 groups, as after every change of the
// groups (an unchanged list is answered from the cache).
func BenchmarkSD(b *testing.B) {
	o := benchOutput(b, 10_000)
	ids, _ := o.store.list(time.Time{})
	b.ReportAllocs()
	var size int
	for b.Loop() {
		size = len(o.encodeSD("receiver.central:10000", ids))
	}
	b.ReportMetric(float64(size), "bytes/doc")
}

// BenchmarkOffer holds a new scrape of a held group: the body checked by
// inflating it, the payload copied.
func BenchmarkOffer(b *testing.B) {
	o := benchOutput(b, 1)
	body := testenv.Sample(b, "node_exporter.prom")
	env := &envelope.Envelope{
		Job: "node", Instance: "web0.dc1.example.net:9100", Publisher: "dc1",
		Outcome: envelope.OutcomeSuccess, ContentType: testenv.TextContentType, Codec: envelope.CodecSnappy, Payload: envelope.Compress(nil, body),
	}
	start := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		env.ScrapeStart = start.Add(time.Duration(i))
		o.Offer(env, discardDelivery{})
	}
}
