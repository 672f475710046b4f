package loadtest

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func TestPatternCounter(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		want   int
	}{
		{"none", []string{"abc", "def"}, 0},
		{"within writes", []string{"x\npush{ y\npush{", "\npush{"}, 3},
		{"across writes", []string{"x\npu", "sh{", "\n", "push{"}, 2},
		{"byte by byte", []string{"\n", "p", "u", "s", "h", "{"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pc := &patternCounter{pattern: []byte("\npush{")}
			for _, w := range c.writes {
				if n, err := pc.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if pc.n != c.want {
				t.Errorf("counted %d, want %d", pc.n, c.want)
			}
		})
	}
}

// TestPrometheusOffset checks the first scrape lands within one interval,
// at the phase the hash gives, as Prometheus's Target.offset does.
func TestPrometheusOffset(t *testing.T) {
	const interval = 15 * time.Second
	now := time.Unix(1_700_000_003, 250_000_000)
	for _, h := range []uint64{0, 1, uint64(interval) - 1, uint64(interval), 1 << 63, fnvHash("http://127.0.0.1:1/scrape?job=a")} {
		off := prometheusOffset(now, interval, h)
		if off < 0 || off > interval {
			t.Errorf("hash %d: offset %s, outside [0, %s]", h, off, interval)
		}
		if phase := now.Add(off).UnixNano() % int64(interval); phase != int64(h%uint64(interval)) {
			t.Errorf("hash %d: first scrape at phase %d, want %d", h, phase, h%uint64(interval))
		}
	}
}

// TestScraperTargets builds the scrape URLs from an /sd document as
// Prometheus does: scheme, address, metrics path and the __param_ labels
// as the query.
func TestScraperTargets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`[
			{"targets": ["recv:9100"], "labels": {"job": "node", "__metrics_path__": "/scrape", "__scheme__": "http",
			  "__param_job": "node", "__param_instance": "a b:9100", "__param_publisher": "dc1"}},
			{"targets": ["recv:9100", "other:9100"], "labels": {"__metrics_path__": "/scrape", "__param_job": "x"}}
		]`))
	}))
	defer srv.Close()
	s := newScraper(srv.URL, time.Second, 0)
	got, err := s.targets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"http://recv:9100/scrape?instance=a+b%3A9100&job=node&publisher=dc1",
		"http://recv:9100/scrape?job=x",
		"http://other:9100/scrape?job=x",
	}
	if !slices.Equal(got, want) {
		t.Errorf("targets\n got %q\nwant %q", got, want)
	}
}
