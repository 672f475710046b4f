package receiver

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// BenchmarkPrepare is the receiver's CPU work per message before the push:
// decode the envelope, inflate the body, parse it, strip timestamps, add up
// and scrape_duration_seconds, and encode the push body.
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
			r, err := New(Options{MaxAge: time.Minute}, nil, nil, nil, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			w := &worker{r: r}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				env, err := envelope.Decode(msg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.prepare(env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
