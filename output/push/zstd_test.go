package push

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

// zstdScrape is scrape with the body compressed as a zstd poller sends it;
// a nil body is a frame header alone that claims claim bytes.
func zstdScrape(t *testing.T, instance string, body []byte, claim uint64) []byte {
	t.Helper()
	e := &envelope.Envelope{
		Job: "node", Instance: instance, Publisher: "dc1", ScrapeStart: time.Now(),
		ScrapeDuration: 12 * time.Millisecond, Outcome: envelope.OutcomeSuccess,
		ContentType: testenv.TextContentType, Codec: envelope.CodecZstd,
	}
	if body != nil {
		z, err := envelope.NewZstdEncoder()
		if err != nil {
			t.Fatal(err)
		}
		e.Payload = z.Compress(nil, body)
	} else {
		// Magic, single segment with an 8-byte size, then one stray byte.
		e.Payload = append(binary.LittleEndian.AppendUint64([]byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0}, claim), 0)
	}
	msg, err := envelope.Append(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestPushesZstdScrapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, "")
	sample := testenv.Sample(t, "node_exporter.prom")
	e.publish(t, zstdScrape(t, "bomb", nil, 1<<40))
	e.publish(t, scrape(t, "node", "snappy", time.Now(), testenv.TextContentType, sample))
	e.publish(t, zstdScrape(t, "zstd", sample, 0))

	fams, err := parse(testenv.TextContentType, sample)
	if err != nil {
		t.Fatal(err)
	}
	want := fams[slices.IndexFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == "node_boot_time_seconds" })]
	// The same receiver reads both codecs.
	for _, inst := range []string{"snappy", "zstd"} {
		labels := map[string]string{"job": "node", "instance": inst}
		e.waitGateway(t, "up", labels, 1)
		e.waitGateway(t, "node_boot_time_seconds", labels, want.GetMetric()[0].GetGauge().GetValue())
	}
	testenv.WaitFor(t, "the zstd bomb dropped as body_too_large", 5*time.Second, func() bool {
		return e.receiver.dropped("body_too_large") >= 1
	})
}
