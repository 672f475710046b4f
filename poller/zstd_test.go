package poller

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
	"github.com/choria-io/prometheus-streams/embedded"
	"github.com/choria-io/prometheus-streams/envelope"
	"github.com/choria-io/prometheus-streams/internal/testenv"
)

func TestZstdScrapeIsPublished(t *testing.T) {
	h := newHarness(t, testenv.Streaming(t, embedded.StreamingOptions{}))
	h.subscribe(t)
	sample := testenv.Sample(t, "node_exporter.prom")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", testenv.TextContentType)
		_, _ = w.Write(sample)
	}))
	defer srv.Close()

	p, _ := newPoller(t, h.pub, Options{Targets: []config.Target{
		{Job: "node", Name: "a", URL: srv.URL + "/metrics"},
		{Job: "node", Name: "b", URL: srv.URL + "/metrics"},
	}, Codec: envelope.CodecZstd})
	testenv.Run(t, p.Run)
	// Two targets share the poller's encoder; two scrapes each reuse it.
	testenv.WaitFor(t, "two messages from each target", 5*time.Second, func() bool {
		return h.count("a") >= 2 && h.count("b") >= 2
	})
	for _, instance := range []string{"a", "b"} {
		env := h.latest(instance)
		if env.Codec != envelope.CodecZstd || env.Outcome != envelope.OutcomeSuccess {
			t.Fatalf("%s: codec %v outcome %v, want zstd success", instance, env.Codec, env.Outcome)
		}
		body, err := env.Body(nil, 1<<20)
		if err != nil || !bytes.Equal(body, sample) {
			t.Fatalf("%s: body: err %v, %d bytes, want the %d bytes served unchanged", instance, err, len(body), len(sample))
		}
	}
}

func TestNewRefusesUnknownCodec(t *testing.T) {
	tests := []struct {
		name    string
		codec   envelope.Codec
		want    envelope.Codec
		wantErr bool
	}{
		{"zero is snappy", 0, envelope.CodecSnappy, false},
		{"snappy", envelope.CodecSnappy, envelope.CodecSnappy, false},
		{"zstd", envelope.CodecZstd, envelope.CodecZstd, false},
		{"legacy gzip", envelope.CodecLegacyGzip, 0, true},
		{"unassigned", 3, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Options{Interval: time.Second, Codec: tc.codec}, nil, nil, prometheus.NewRegistry())
			if (err != nil) != tc.wantErr {
				t.Fatalf("New error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && p.opts.Codec != tc.want {
				t.Errorf("codec = %v, want %v", p.opts.Codec, tc.want)
			}
		})
	}
}
