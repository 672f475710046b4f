package push

import (
	"maps"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// TestGroupingTurnsLabelsIntoTheScrapesKey: a group found in the
// Pushgateway, and a series of it, get the id its scrapes are scheduled
// under; groups of another shape get none.
func TestGroupingTurnsLabelsIntoTheScrapesKey(t *testing.T) {
	tests := []struct {
		name      string
		publisher bool
		labels    map[string]string
		want      string // the key's path; "" for someone else's group
	}{
		{name: "job and instance", labels: map[string]string{"job": "node", "instance": "a:9100"}, want: "/metrics/job/node/instance/a:9100"},
		{name: "with the publisher", publisher: true, labels: map[string]string{"job": "node", "instance": "a", "dc": "dc1"}, want: "/metrics/job/node/instance/a/dc/dc1"},
		{name: "publisher missing", publisher: true, labels: map[string]string{"job": "node", "instance": "a"}},
		{name: "a label more", labels: map[string]string{"job": "node", "instance": "a", "dc": "dc1"}},
		{name: "no instance", labels: map[string]string{"job": "node"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGrouping(Options{PublisherLabel: tt.publisher, PublisherLabelName: "dc"})
			key, ok := g.of(tt.labels)
			if got := key.Path(); ok != (tt.want != "") || (ok && got != tt.want) {
				t.Fatalf("of(%v) = %s, %v; want %q", tt.labels, got, ok, tt.want)
			}
			if !ok {
				return
			}
			// A scrape of the group gets the same key.
			v := groupValues{tt.labels["job"], tt.labels["instance"], tt.labels["dc"]}
			if got := g.key(v).Path(); got != tt.want {
				t.Errorf("key(%v) = %s, want %s", v, got, tt.want)
			}
			// So does a series of it, whatever labels of its own it has.
			series := maps.Clone(tt.labels)
			series["cpu"] = "0"
			r := &Output{grouping: g}
			if id, ok := r.seedGroupOf()(labelPairs(series)); !ok || id != tt.want {
				t.Errorf("seedGroupOf(%v) = %s, %v; want %s", series, id, ok, tt.want)
			}
		})
	}
}

func labelPairs(labels map[string]string) []*dto.LabelPair {
	var out []*dto.LabelPair
	for name, value := range labels {
		out = append(out, &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)})
	}
	return out
}
