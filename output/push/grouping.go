package push

import (
	"iter"
	"maps"

	dto "github.com/prometheus/client_model/go"

	"github.com/choria-io/prometheus-streams/pushgateway"
)

// grouping is the shape of the output's grouping keys: job, instance and,
// with publisher_label, the publisher under its label name. A scrape's
// names, a group's labels in the Pushgateway and a series' labels become a
// key here and nowhere else, so a group found in the Pushgateway gets the
// very id (the key's path) its scrapes are scheduled under.
type grouping struct {
	// names are the grouping labels' names in the key's order: job,
	// instance and the publisher label's, if any.
	names []string
}

func newGrouping(opts Options) grouping {
	names := []string{"job", "instance"}
	if opts.PublisherLabel {
		names = append(names, opts.PublisherLabelName)
	}
	return grouping{names: names}
}

// groupValues are the values of a group's grouping labels, in the order of
// grouping.names; the publisher is "" without publisher_label.
type groupValues [3]string

// key is the grouping key of a group.
func (g grouping) key(v groupValues) pushgateway.GroupingKey {
	k := pushgateway.GroupingKey{Job: v[0], Labels: make([]pushgateway.Label, 0, len(g.names)-1)}
	for i, name := range g.names[1:] {
		k.Labels = append(k.Labels, pushgateway.Label{Name: name, Value: v[i+1]})
	}
	return k
}

// values picks the grouping labels' values out of a label set. others
// counts the labels that are not grouping labels; ok is false when one of
// the grouping labels is missing.
func (g grouping) values(labels iter.Seq2[string, string]) (v groupValues, others int, ok bool) {
	found := 0
	for name, value := range labels {
		i := -1
		for j, n := range g.names {
			if n == name {
				i = j
				break
			}
		}
		if i < 0 {
			others++
			continue
		}
		v[i] = value
		found++
	}
	return v, others, found == len(g.names)
}

// of returns the key a group in the Pushgateway has, from its labels;
// false for a group of another shape, which is someone else's.
func (g grouping) of(labels map[string]string) (pushgateway.GroupingKey, bool) {
	v, others, ok := g.values(maps.All(labels))
	if !ok || others > 0 {
		return pushgateway.GroupingKey{}, false
	}
	return g.key(v), true
}

// pairs iterates over a series' labels.
func pairs(labels []*dto.LabelPair) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, l := range labels {
			if !yield(l.GetName(), l.GetValue()) {
				return
			}
		}
	}
}
