package push

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// expfmtFamilies is what expfmt's TextParser, which the receiver used
// before, makes of body, in a canonical order.
func expfmtFamilies(body []byte) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	fams := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		fams = append(fams, mf)
	}
	return canonical(fams), nil
}

// canonical sorts families by name, metrics by labels and labels by name,
// the orders the Pushgateway does not care about.
func canonical(fams []*dto.MetricFamily) []*dto.MetricFamily {
	for _, mf := range fams {
		for _, m := range mf.Metric {
			slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
		slices.SortFunc(mf.Metric, func(a, b *dto.Metric) int { return strings.Compare(fmt.Sprint(a.Label), fmt.Sprint(b.Label)) })
	}
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return fams
}

// TestParseTextMatchesExpfmt holds the receiver's text parser to expfmt's
// results on the corpus and on the shapes it groups or refuses.
func TestParseTextMatchesExpfmt(t *testing.T) {
	bodies := map[string]string{
		"summary":                                "# HELP s a summary\n# TYPE s summary\ns{quantile=\"0.5\",a=\"1\"} 1\ns{quantile=\"0.9\",a=\"1\"} 2\ns_sum{a=\"1\"} 3\ns_count{a=\"1\"} 4\ns{quantile=\"0.5\",a=\"2\"} 5\ns_sum{a=\"2\"} 6\ns_count{a=\"2\"} 7\n",
		"histogram":                              "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
		"untyped suffixes":                       "x_count 1\nx_sum 2\nx_bucket{le=\"1\"} 3\n",
		"summary bucket is its own":              "# TYPE s summary\ns_sum 1\ns_count 2\ns_bucket 3\n",
		"timestamps":                             "# TYPE g gauge\ng 1 1700000000000\ng{a=\"b\"} 2 5\n",
		"escapes":                                "# HELP e with \\\\ and \\n escapes\ne{a=\"q\\\"uote\\\\back\\nline\"} 1\n",
		"special values":                         "v{a=\"1\"} NaN\nv{a=\"2\"} +Inf\nv{a=\"3\"} -Inf\nv{a=\"4\"} 1e300\n",
		"type without samples":                   "# TYPE nothing counter\n# HELP nothing at all\nc 1\n",
		"help only":                              "# HELP h2 only help\nh2 5\n",
		"comments":                               "# just a comment\n\nc 1\n# another\n",
		"summary without quantile":               "# TYPE s summary\ns 1\ns_sum 2\n",
		"histogram without le":                   "# TYPE h histogram\nh_bucket 1\nh 2\nh_count 3\n",
		"histogram series differing in quantile": "# TYPE h histogram\nh_bucket{quantile=\"a\",le=\"1\"} 1\nh_bucket{quantile=\"b\",le=\"1\"} 2\nh_count{quantile=\"a\"} 1\nh_count{quantile=\"b\"} 2\n",
		"summary series differing in le":         "# TYPE s summary\ns{le=\"1\",quantile=\"0.5\"} 1\ns{le=\"2\",quantile=\"0.5\"} 2\n",
		"quoted names in TYPE and HELP":          "# HELP \"my\\\"odd.metric\" help\n# TYPE \"my\\\"odd.metric\" counter\n{\"my\\\"odd.metric\"} 1\n",
		"utf-8 names":                            "{\"my.metric\",\"some.label\"=\"v\"} 1\n",
	}
	for _, f := range []string{"node_exporter.prom", "prometheus.prom", "pushgateway.prom"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		bodies[f] = string(b)
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			want, err := expfmtFamilies([]byte(body))
			if err != nil {
				t.Fatalf("expfmt: %v", err)
			}
			got, err := parseText([]byte(body))
			if err != nil {
				t.Fatalf("parseText: %v", err)
			}
			got = canonical(got)
			if len(got) != len(want) {
				t.Fatalf("%d families, expfmt %d", len(got), len(want))
			}
			for i := range want {
				if !proto.Equal(got[i], want[i]) {
					t.Errorf("family %s:\n got %v\nwant %v", want[i].GetName(), got[i], want[i])
				}
			}
		})
	}
}

// TestParseTextRefuses lists what both parsers refuse.
func TestParseTextRefuses(t *testing.T) {
	for name, body := range map[string]string{
		"second TYPE":               "# TYPE a counter\n# TYPE a gauge\na 1\n",
		"TYPE after samples":        "a 1\n# TYPE a counter\n",
		"second HELP":               "# HELP a x\n# HELP a y\na 1\n",
		"unknown type":              "# TYPE a fancy\na 1\n",
		"bad quantile":              "# TYPE s summary\ns{quantile=\"x\"} 1\n",
		"NUL bytes":                 "\x00\x00\x00\x00",
		"cut by a NUL":              "m 1\n\x00garbage{{{\n",
		"invalid UTF-8 metric name": "{\"a\xff\"} 1\n",
		"invalid UTF-8 label name":  "a{\"b\xff\"=\"1\"} 1\n",
		"__name__ in the braces":    "foo{__name__=\"bar\"} 1\n",
		"garbage":                   "this is not { an exposition\n",
		"missing value":             "a{b=\"c\"}\n",
		"duplicate label name":      "a{b=\"1\",b=\"2\"} 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := expfmtFamilies([]byte(body)); err == nil {
				t.Errorf("expfmt accepts %q", body)
			}
			if _, err := parseText([]byte(body)); err == nil {
				t.Errorf("parseText accepts %q", body)
			}
		})
	}
}

func BenchmarkParseText(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "node_exporter.prom"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("promparser", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := parseText(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("expfmt", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			p := expfmt.NewTextParser(model.UTF8Validation)
			if _, err := p.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestEncodeMatchesExpfmt holds the receiver's push encoding to expfmt's
// encoder byte for byte, escaping of UTF-8 names included.
func TestEncodeMatchesExpfmt(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "node_exporter.prom"))
	if err != nil {
		t.Fatal(err)
	}
	body = append(body, "{\"my.metric\",\"some.label\"=\"v\"} 1\n# TYPE ok_total counter\nok_total{\"odd.label\"=\"x\"} 2\n"...)
	fams, err := parseText(body)
	if err != nil {
		t.Fatal(err)
	}
	var got, want bytes.Buffer
	if err := encode(fams, nil, &got); err != nil { // sorts fams
		t.Fatal(err)
	}
	enc := expfmt.NewEncoder(&want, pushFormat)
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("push body differs from expfmt's: %d bytes, expfmt %d", got.Len(), want.Len())
	}
	if !bytes.Contains(got.Bytes(), []byte("my_metric")) {
		t.Error("the UTF-8 metric name was not escaped")
	}
}

// TestEncodeChecksEscapedNames: names that differ only in characters the
// push format escapes are one family (or label) in the Pushgateway, so the
// check must see them escaped.
func TestEncodeChecksEscapedNames(t *testing.T) {
	body := "# TYPE a_b gauge\na_b 1\n# TYPE \"a.b\" counter\n{\"a.b\"} 2\nc{\"l.1\"=\"x\",l_1=\"y\"} 3\n"
	fams, err := parseText([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	c := newChecker(newBook())
	var out bytes.Buffer
	if err := encode(fams, func(f []*dto.MetricFamily) []*dto.MetricFamily { return c.check("g", f) }, &out); err != nil {
		t.Fatal(err)
	}
	dec := expfmt.NewDecoder(bytes.NewReader(out.Bytes()), pushFormat)
	seen := map[string]dto.MetricType{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			break
		}
		if _, dup := seen[mf.GetName()]; dup {
			t.Errorf("family %s pushed twice", mf.GetName())
		}
		seen[mf.GetName()] = mf.GetType()
		for _, m := range mf.GetMetric() {
			names := map[string]bool{}
			for _, l := range m.GetLabel() {
				if names[l.GetName()] {
					t.Errorf("family %s: label %s twice in one series", mf.GetName(), l.GetName())
				}
				names[l.GetName()] = true
			}
		}
	}
	if _, ok := seen["a_b"]; !ok {
		t.Errorf("a_b was not pushed at all: %v", seen)
	}
}
