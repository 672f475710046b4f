package push

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDefaults keeps the README's figures true (16 MiB bodies, 4 pushes at
// once, 10s per push, the label publisher), and checks that New and SetLive
// derive down_after alike: twice max_age.
func TestDefaults(t *testing.T) {
	r, err := New(Options{MaxAge: time.Minute}, nil, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	o := r.opts
	if o.BodyLimit != 16<<20 || o.Concurrency != 4 || o.PushTimeout != 10*time.Second || o.PublisherLabelName != "publisher" {
		t.Errorf("defaults: %+v", o)
	}
	if got := r.live.Load().DownAfter; got != 2*time.Minute {
		t.Errorf("New: down_after %s, want 2m", got)
	}
	if err := r.SetLive(Live{MaxAge: 3 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if got := r.live.Load().DownAfter; got != 6*time.Minute {
		t.Errorf("SetLive: down_after %s, want 6m", got)
	}
}
