package serve

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDefaults keeps the README's figures true (100,000 groups, 1 GiB, 64
// scrapes at once, 10s to write a body, 16 MiB bodies, the label
// publisher), and checks that New and SetLive derive delete_after alike:
// 1h, or max_age when that is longer.
func TestDefaults(t *testing.T) {
	o, err := New(Options{MaxAge: time.Minute}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	d := o.opts
	if d.MaxGroups != 100_000 || d.MaxBytes != 1<<30 || d.MaxConcurrentScrapes != 64 || d.WriteTimeout != 10*time.Second ||
		d.BodyLimit != 16<<20 || d.PublisherLabelName != "publisher" {
		t.Errorf("defaults: %+v", d)
	}
	tests := []struct {
		name   string
		maxAge time.Duration
		want   time.Duration
	}{
		{name: "short max_age", maxAge: time.Minute, want: time.Hour},
		{name: "long max_age", maxAge: 3 * time.Hour, want: 3 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(Options{MaxAge: tt.maxAge}, nil, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			if got := n.live.Load().DeleteAfter; got != tt.want {
				t.Errorf("New: delete_after %s, want %s", got, tt.want)
			}
			if err := o.SetLive(Live{MaxAge: tt.maxAge}); err != nil {
				t.Fatal(err)
			}
			if got := o.live.Load().DeleteAfter; got != tt.want {
				t.Errorf("SetLive: delete_after %s, want %s", got, tt.want)
			}
		})
	}
}
