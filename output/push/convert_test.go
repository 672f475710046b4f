package push

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func decodePush(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	dec := expfmt.NewDecoder(bytes.NewReader(b), pushFormat)
	out := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("push body does not decode: %v", err)
		}
		out[mf.GetName()] = mf
	}
}

func TestConvert(t *testing.T) {
	histogram := "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"
	cases := []struct {
		name         string
		outcome      envelope.Outcome
		contentType  string
		body         []byte
		wantUp       float64
		wantSamples  float64
		wantStripped int
		wantRenamed  int
		wantParseErr bool
		wantFamily   string
	}{
		{
			name: "text", outcome: envelope.OutcomeSuccess, contentType: testenv.TextContentType,
			body: []byte("a 1\nb{x=\"y\"} 2 1700000000000\n"), wantUp: 1, wantSamples: 2, wantStripped: 1, wantFamily: "b",
		},
		{
			name: "histogram samples as Prometheus counts them", outcome: envelope.OutcomeSuccess, contentType: testenv.TextContentType,
			body: []byte(histogram), wantUp: 1, wantSamples: 4, wantFamily: "h",
		},
		{
			name: "the target's own up is replaced", outcome: envelope.OutcomeSuccess, contentType: testenv.TextContentType,
			body: []byte("up 0\nscrape_duration_seconds 99\nc 1\n"), wantUp: 1, wantSamples: 1, wantFamily: "c",
		},
		{
			name: "grouping labels renamed", outcome: envelope.OutcomeSuccess, contentType: "",
			body: []byte("d{job=\"a\",exported_job=\"b\",instance=\"i\"} 1\n"), wantUp: 1, wantSamples: 1, wantRenamed: 2, wantFamily: "d",
		},
		{
			name: "protobuf", outcome: envelope.OutcomeSuccess, contentType: testenv.ProtoContentType,
			body: testenv.Sample(t, "node_exporter.pb"), wantUp: 1, wantFamily: "node_boot_time_seconds",
		},
		{
			name: "openmetrics falls back to the text parser", outcome: envelope.OutcomeSuccess,
			contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8",
			body:        testenv.Sample(t, "prometheus.openmetrics"), wantUp: 1, wantFamily: "prometheus_build_info",
		},
		{name: "failed scrape", outcome: envelope.OutcomeFailure, wantUp: 0},
		{
			name: "not an exposition", outcome: envelope.OutcomeSuccess, contentType: testenv.TextContentType,
			body: []byte("<html>oops</html>"), wantUp: 0, wantParseErr: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := &envelope.Envelope{Outcome: c.outcome, ContentType: c.contentType, ScrapeDuration: 250 * time.Millisecond}
			var out bytes.Buffer
			res, err := convert(env, c.body, []string{"job", "instance"}, nil, &out)
			if err != nil {
				t.Fatal(err)
			}
			if (res.parseErr != nil) != c.wantParseErr || res.stripped != c.wantStripped || res.renamed != c.wantRenamed {
				t.Fatalf("result %+v, want parse error %v, stripped %d, renamed %d", res, c.wantParseErr, c.wantStripped, c.wantRenamed)
			}
			fams := decodePush(t, out.Bytes())
			if v, _ := testenv.Value(fams, "up", nil); v != c.wantUp {
				t.Errorf("up = %v, want %v", v, c.wantUp)
			}
			if v, _ := testenv.Value(fams, "scrape_duration_seconds", nil); v != 0.25 {
				t.Errorf("scrape_duration_seconds = %v, want 0.25", v)
			}
			if c.wantSamples > 0 {
				if v, _ := testenv.Value(fams, "scrape_samples_scraped", nil); v != c.wantSamples {
					t.Errorf("scrape_samples_scraped = %v, want %v", v, c.wantSamples)
				}
			}
			if c.wantFamily != "" && fams[c.wantFamily] == nil {
				t.Errorf("family %s missing from the push", c.wantFamily)
			}
			for _, mf := range fams {
				for _, m := range mf.GetMetric() {
					if m.TimestampMs != nil {
						t.Errorf("%s kept a timestamp", mf.GetName())
					}
				}
			}
		})
	}
}

func TestParseRefusesHostileProtobufFrames(t *testing.T) {
	cases := map[string][]byte{
		"length prefix claims 2 GiB":     {0x80, 0x80, 0x80, 0x80, 0x08, 1, 2, 3},
		"length prefix out of int range": {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"truncated varint":               {0x80},
		"frame longer than what is left": {10, 1, 2},
		"frame that is not a family":     {3, 0xff, 0xff, 0xff},
		"invalid UTF-8 in a metric name": append([]byte{4, 0x0a, 2}, 0xff, 0xfe),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(1, func() {
				if _, err := parse(testenv.ProtoContentType, body); err == nil {
					t.Fatal("parsed without an error")
				}
			})
			if allocs > 50 {
				t.Fatalf("%v allocations refusing %d bytes", allocs, len(body))
			}
		})
	}
	// The real sample still parses, frame by frame.
	fams, err := parse(testenv.ProtoContentType, testenv.Sample(t, "node_exporter.pb"))
	if err != nil || len(fams) < 100 {
		t.Fatalf("node_exporter.pb: %d families, %v", len(fams), err)
	}
}
