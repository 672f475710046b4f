package push

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
	"github.com/choria-io/prometheus-streams/pushgateway"
)

// BenchmarkPrepare is the receiver's CPU work per message before the push:
// decode the envelope, inflate the body, parse it, strip timestamps, add up
// and scrape_duration_seconds, check consistency, and encode the push body.
func BenchmarkPrepare(b *testing.B) {
	for _, c := range []struct{ name, file, contentType string }{
		{"text", "node_exporter.prom", testenv.TextContentType},
		{"protobuf", "node_exporter.pb", testenv.ProtoContentType},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := testenv.Sample(b, c.file)
			msg, err := envelope.Append(nil, &envelope.Envelope{
				Job: "node", Instance: "n1", Publisher: "dc1",
				ScrapeStart: time.Now(), ScrapeDuration: time.Millisecond, Outcome: envelope.OutcomeSuccess,
				ContentType: c.contentType, Codec: envelope.CodecSnappy, Payload: envelope.Compress(nil, body),
			})
			if err != nil {
				b.Fatal(err)
			}
			r, err := New(Options{MaxAge: time.Minute}, nil, nil, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			w := &worker{r: r}
			g := &group{id: "/metrics/job/node/instance/n1", key: pushgateway.GroupingKey{Job: "node"}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				env, err := envelope.Decode(msg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.prepare(g, env); err != nil {
					b.Fatal(err)
				}
				r.book.settle(g.id, pushApplied)
			}
		})
	}
}

// BenchmarkConsistency is the consistency check of one push of the node
// exporter sample (families reserved and settled, series checked), in a
// book that holds nothing else and in one that holds 10,000 groups pushing
// the same families: its cost follows the push, not the store.
func BenchmarkConsistency(b *testing.B) {
	fams, err := parse(testenv.TextContentType, testenv.Sample(b, "node_exporter.prom"))
	if err != nil {
		b.Fatal(err)
	}
	slices.SortFunc(fams, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
	series := 0
	for _, mf := range fams {
		series += len(mf.GetMetric())
	}
	for _, others := range []int{0, 10000} {
		b.Run(fmt.Sprintf("groups=%d", others), func(b *testing.B) {
			bk := newBook()
			for i := range others {
				id := fmt.Sprint("other", i)
				bk.reserve(id, slices.Clone(fams), func(familyClash) {})
				bk.settle(id, pushApplied)
			}
			chk := newChecker(bk)
			b.ReportAllocs()
			for b.Loop() {
				// The sample has no clash, so the check leaves fams as
				// they are and each iteration sees the same push.
				if kept := chk.check("node", fams); len(kept) != len(fams) {
					b.Fatalf("%d of %d families kept", len(kept), len(fams))
				}
				bk.settle("node", pushApplied)
			}
			b.ReportMetric(float64(len(fams)), "families")
			b.ReportMetric(float64(series), "series")
		})
	}
}
