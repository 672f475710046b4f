package pushgateway_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/choria-io/prometheus-streams/pushgateway"
)

// families reads every family c's Pushgateway serves, by name.
func families(t *testing.T, c *pushgateway.Client, limit int64) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	out := map[string]*dto.MetricFamily{}
	err := c.Families(t.Context(), limit, func(mf *dto.MetricFamily) error {
		if out[mf.GetName()] != nil {
			t.Errorf("family %s served twice", mf.GetName())
		}
		out[mf.GetName()] = mf
		return nil
	})
	return out, err
}

func TestFamiliesReadsTheStore(t *testing.T) {
	gw := startGateway(t, true)
	c := newClient(t, pushgateway.Options{URL: gw.URL()})
	key := func(instance string) pushgateway.GroupingKey {
		return pushgateway.GroupingKey{Job: "node", Labels: []pushgateway.Label{{Name: "instance", Value: instance}}}
	}
	if err := c.Push(t.Context(), key("a"), contentTypeText, []byte("# TYPE x counter\nx 1\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Push(t.Context(), key("b"), contentTypeProto, readFile(t, "../testdata/node_exporter.pb")); err != nil {
		t.Fatal(err)
	}
	var fams map[string]*dto.MetricFamily
	waitFor(t, "both groups in /metrics", func() bool {
		var err error
		fams, err = families(t, c, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		return fams["x"] != nil && fams["node_boot_time_seconds"] != nil
	})
	for name, want := range map[string]dto.MetricType{
		"x": dto.MetricType_COUNTER, "h": dto.MetricType_HISTOGRAM, "push_time_seconds": dto.MetricType_GAUGE,
		"node_cpu_seconds_total": dto.MetricType_COUNTER,
	} {
		if got := fams[name].GetType(); got != want {
			t.Errorf("%s: type %v, want %v", name, got, want)
		}
	}
	if n := len(fams["push_time_seconds"].GetMetric()); n != 2 {
		t.Errorf("push_time_seconds has %d series, want one per group", n)
	}

	// A limit below the size of /metrics.
	if _, err := families(t, c, 1000); !errors.Is(err, pushgateway.ErrMetricsTooLarge) {
		t.Errorf("limit 1000: %v, want ErrMetricsTooLarge", err)
	}
	// fn's error ends the read and comes back wrapped.
	stop := errors.New("stop")
	if err := c.Families(t.Context(), 64<<20, func(*dto.MetricFamily) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error: got %v", err)
	}
}

func TestFamiliesRefusesWhatIsNotAFamilyStream(t *testing.T) {
	var fam bytes.Buffer
	if err := expfmt.NewEncoder(&fam, expfmt.NewFormat(expfmt.TypeProtoDelim)).Encode(&dto.MetricFamily{
		Name: proto.String("ok"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}},
	}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		status      int
		contentType string
		body        []byte
		wantFams    int
		want        string
	}{
		{name: "a family", contentType: contentTypeProto, body: fam.Bytes(), wantFams: 1},
		{name: "empty", contentType: contentTypeProto},
		{name: "text", contentType: contentTypeText, body: []byte("x 1\n"), want: "not delimited protobuf"},
		{name: "broken /metrics", status: http.StatusInternalServerError, contentType: contentTypeText, body: []byte("An error has occurred while serving metrics:\n\ncollected metric \"x\" ..."), want: "500 Internal Server Error: An error has occurred"},
		{name: "length prefix claims 2 GiB", contentType: contentTypeProto, body: []byte{0x80, 0x80, 0x80, 0x80, 0x08, 1, 2, 3}, want: "claims 2147483648 bytes"},
		{name: "length prefix claims 512 MiB, within the limit", contentType: contentTypeProto, body: []byte{0x80, 0x80, 0x80, 0x80, 0x02, 1, 2, 3}, want: "3 of 536870912 bytes"},
		{name: "frame longer than what arrives", contentType: contentTypeProto, body: append(bytes.Clone(fam.Bytes()), 100, 1, 2), wantFams: 1, want: "2 of 100 bytes"},
		{name: "truncated varint", contentType: contentTypeProto, body: []byte{0x80}, want: "unexpected EOF"},
		{name: "varint overflow", contentType: contentTypeProto, body: bytes.Repeat([]byte{0xff}, 11), want: "overflows"},
		{name: "frame that is not a family", contentType: contentTypeProto, body: []byte{3, 0xff, 0xff, 0xff}, want: "frame at byte 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				if tc.status != 0 {
					w.WriteHeader(tc.status)
				}
				_, _ = w.Write(tc.body)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, pushgateway.Options{URL: srv.URL})
			n := 0
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := c.Families(context.Background(), 1<<30, func(*dto.MetricFamily) error { n++; return nil })
			runtime.ReadMemStats(&after)
			if tc.want == "" && err != nil {
				t.Fatalf("Families: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Families: %v, want an error containing %q", err, tc.want)
			}
			if n != tc.wantFams {
				t.Errorf("%d families read, want %d", n, tc.wantFams)
			}
			// The read buffer and the HTTP exchange, never what a length
			// prefix claims.
			if b := after.TotalAlloc - before.TotalAlloc; b > 4<<20 {
				t.Errorf("%d bytes allocated reading %d bytes", b, len(tc.body))
			}
		})
	}
}
