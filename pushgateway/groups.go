package pushgateway

import (
	"context"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Families the Pushgateway adds to every group it holds: gauges of the
// Unix time of the group's last successful and last failed push.
const (
	PushTimeMetric        = "push_time_seconds"
	PushFailureTimeMetric = "push_failure_time_seconds"
)

// Group is a group found in the Pushgateway: its grouping labels (job
// included) and when it was last pushed.
type Group struct {
	Labels   map[string]string
	PushTime time.Time
	// Marker is the value of the marker metric in the group.
	Marker float64
}

// Groups lists the groups in the Pushgateway that carry the metric marker,
// so a caller finds its own groups among everyone's. It reads the
// Pushgateway's /metrics (at most limit bytes, as Families) but decodes
// only the marker's and PushTimeMetric's families, so its memory is
// proportional to the number of groups, not to the number of series
// stored. An error is an *Error.
func (c *Client) Groups(ctx context.Context, marker string, limit int64) ([]Group, error) {
	f := NewGroupFinder(marker)
	err := c.families(ctx, "list groups", limit, f.wants, func(mf *dto.MetricFamily) error {
		f.Add(mf)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f.Groups(), nil
}

// GroupFinder finds the groups that carry a marker metric among the
// families of the Pushgateway's /metrics, for a caller that reads them with
// Families for more than the groups: one read then serves both. It is not
// safe for concurrent use.
type GroupFinder struct {
	marker  string
	markers map[string]float64 // the marker's value by its series' labels
	pushed  []*dto.Metric      // the PushTimeMetric series
}

// NewGroupFinder returns a GroupFinder for the groups carrying marker.
func NewGroupFinder(marker string) *GroupFinder {
	return &GroupFinder{marker: marker, markers: map[string]float64{}}
}

// Add looks at one family; only the marker's and PushTimeMetric's matter.
// It keeps their series, never modifies them.
func (f *GroupFinder) Add(mf *dto.MetricFamily) {
	switch mf.GetName() {
	case f.marker:
		for _, m := range mf.GetMetric() {
			f.markers[labelKey(m.GetLabel())] = value(m)
		}
	case PushTimeMetric:
		f.pushed = append(f.pushed, mf.GetMetric()...)
	}
}

// wants reports whether Add needs the family of that name.
func (f *GroupFinder) wants(name string) bool { return name == f.marker || name == PushTimeMetric }

// Groups returns the groups of the families added that carry the marker:
// the Pushgateway gives the marker's series, as every series of a group,
// exactly the group's grouping labels.
func (f *GroupFinder) Groups() []Group {
	var groups []Group
	for _, m := range f.pushed {
		marker, ok := f.markers[labelKey(m.GetLabel())]
		if !ok {
			continue
		}
		labels := make(map[string]string, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		groups = append(groups, Group{Labels: labels, PushTime: time.Unix(0, int64(value(m)*1e9)), Marker: marker})
	}
	return groups
}

// value is a gauge's or an untyped series' value.
func value(m *dto.Metric) float64 { return m.GetGauge().GetValue() + m.GetUntyped().GetValue() }

// labelKey identifies a label set.
func labelKey(labels []*dto.LabelPair) string {
	var b strings.Builder
	for _, l := range labels {
		b.WriteString(l.GetName())
		b.WriteByte(0)
		b.WriteString(l.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}
