package pushgateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/pushgateway"
)

func TestGroupsFindsTheMarkedGroups(t *testing.T) {
	gw := startGateway(t, false)
	c := newClient(t, pushgateway.Options{URL: gw.URL()})
	const marker = "scrape_samples_scraped"
	key := func(instance string) pushgateway.GroupingKey {
		return pushgateway.GroupingKey{Job: "node", Labels: []pushgateway.Label{{Name: "instance", Value: instance}}}
	}
	before := time.Now().Add(-time.Second) // the Pushgateway's clock, in milliseconds
	for instance, body := range map[string]string{
		"a": "# TYPE scrape_samples_scraped gauge\nscrape_samples_scraped 5\nx 1\n",
		"b": "# TYPE scrape_samples_scraped gauge\nscrape_samples_scraped 0\n",
		"c": "x 2\n", // someone else's group: no marker
	} {
		if err := c.Push(t.Context(), key(instance), contentTypeText, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	var groups []pushgateway.Group
	waitFor(t, "the pushed groups in /metrics", func() bool {
		var err error
		groups, err = c.Groups(t.Context(), marker, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		return len(groups) == 2
	})
	slices.SortFunc(groups, func(a, b pushgateway.Group) int { return strings.Compare(a.Labels["instance"], b.Labels["instance"]) })
	for i, want := range []struct {
		instance string
		marker   float64
	}{{"a", 5}, {"b", 0}} {
		g := groups[i]
		if len(g.Labels) != 2 || g.Labels["job"] != "node" || g.Labels["instance"] != want.instance || g.Marker != want.marker {
			t.Errorf("group %d = %v marker %v, want node/%s marker %v", i, g.Labels, g.Marker, want.instance, want.marker)
		}
		if g.PushTime.Before(before) || g.PushTime.After(time.Now()) {
			t.Errorf("group %s pushed at %v, want between %v and now", want.instance, g.PushTime, before)
		}
	}

	// The whole /metrics counts against the limit, not only the families
	// decoded.
	_, err := c.Groups(t.Context(), marker, 100)
	var pe *pushgateway.Error
	if !errors.Is(err, pushgateway.ErrMetricsTooLarge) || !errors.As(err, &pe) || pe.Op != "list groups" {
		t.Errorf("limit 100: %v, want an *Error of list groups wrapping ErrMetricsTooLarge", err)
	}
}

// TestErrorsAreOfOneType: whatever fails, a request's error is an *Error
// naming the operation, with the status of a refusal.
func TestErrorsAreOfOneType(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadRequest)
	}))
	t.Cleanup(refusing.Close)
	requests := []struct {
		op string
		do func(context.Context, *pushgateway.Client, pushgateway.GroupingKey) error
	}{
		{"push", func(ctx context.Context, c *pushgateway.Client, k pushgateway.GroupingKey) error {
			return c.Push(ctx, k, contentTypeText, []byte("x 1\n"))
		}},
		{"delete", func(ctx context.Context, c *pushgateway.Client, k pushgateway.GroupingKey) error {
			return c.Delete(ctx, k)
		}},
		{"read families", func(ctx context.Context, c *pushgateway.Client, _ pushgateway.GroupingKey) error {
			return c.Families(ctx, 1<<20, func(*dto.MetricFamily) error { return nil })
		}},
		{"list groups", func(ctx context.Context, c *pushgateway.Client, _ pushgateway.GroupingKey) error {
			_, err := c.Groups(ctx, "m", 1<<20)
			return err
		}},
	}
	failures := []struct {
		name     string
		url      string
		key      pushgateway.GroupingKey
		wantCode int
		wantIs   error
	}{
		{name: "refused", url: refusing.URL, key: pushgateway.GroupingKey{Job: "j"}, wantCode: http.StatusBadRequest},
		{name: "nothing listens", url: "http://" + closedAddr(t), key: pushgateway.GroupingKey{Job: "j"}},
		{name: "invalid key", url: refusing.URL, wantIs: pushgateway.ErrInvalidGroupingKey},
	}
	for _, f := range failures {
		for _, r := range requests {
			if f.wantIs != nil && !strings.HasPrefix(r.op, "push") && r.op != "delete" {
				continue // reads take no key
			}
			t.Run(f.name+"/"+r.op, func(t *testing.T) {
				err := r.do(t.Context(), newClient(t, pushgateway.Options{URL: f.url}), f.key)
				var pe *pushgateway.Error
				if !errors.As(err, &pe) {
					t.Fatalf("%v (%T), want an *Error", err, err)
				}
				if !strings.HasPrefix(pe.Op, r.op) || !strings.HasPrefix(err.Error(), r.op) {
					t.Errorf("Op %q, error %q, want them to start with %q", pe.Op, err, r.op)
				}
				if pe.Code != f.wantCode || (f.wantIs != nil && !errors.Is(err, f.wantIs)) {
					t.Errorf("%v: code %d, want %d and %v", err, pe.Code, f.wantCode, f.wantIs)
				}
			})
		}
	}
}
