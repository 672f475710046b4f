package receiver

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"mime"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/choria-io/prometheus-streams/envelope"
)

// pushFormat is what the receiver sends to the Pushgateway: delimited
// protobuf carries every metric type the exporters can send, and the
// Pushgateway decodes it without a text parse.
var pushFormat = expfmt.NewFormat(expfmt.TypeProtoDelim)

// The series Prometheus itself adds to every scrape; the receiver adds
// them because the central Prometheus scrapes the Pushgateway, not the
// target, and would otherwise never see a target as down.
const (
	metricUp       = "up"
	metricDuration = "scrape_duration_seconds"
	metricSamples  = "scrape_samples_scraped"
)

// converted is the result of turning a scrape into a push body.
type converted struct {
	// stripped counts samples whose explicit timestamps were removed
	// (the Pushgateway refuses pushes with timestamps).
	stripped int
	// parseErr is set when the body was not an exposition the receiver can
	// read; the push then carries up 0, as Prometheus shows such a scrape.
	parseErr error
	// renamed counts labels renamed to exported_<name> because they
	// clashed with a grouping-key label.
	renamed int
}

// convert writes the push body for env (body is its decompressed
// exposition) into out. groupLabels are the grouping key's label names: a
// metric's own label of such a name is renamed to exported_<name>, as
// Prometheus does with honor_labels off, because the Pushgateway would
// otherwise overwrite it with the group's value and refuse the resulting
// duplicate series (the poller's own per-target metrics carry job and
// instance labels, for one).
func convert(env *envelope.Envelope, body []byte, groupLabels []string, out *bytes.Buffer) (converted, error) {
	var res converted
	var fams []*dto.MetricFamily
	up := 0.0
	if env.Outcome == envelope.OutcomeSuccess {
		var err error
		fams, err = parse(env.ContentType, body)
		if err != nil {
			res.parseErr = err
			fams = nil
		} else {
			up = 1
		}
	}
	samples := 0
	kept := fams[:0]
	for _, mf := range fams {
		switch mf.GetName() {
		case metricUp, metricDuration, metricSamples:
			continue // ours describe the scrape; the target's would clash
		}
		for _, m := range mf.GetMetric() {
			if m.TimestampMs != nil {
				m.TimestampMs = nil
				res.stripped++
			}
			res.renamed += renameClashes(m, groupLabels)
			samples += sampleCount(mf.GetType(), m)
		}
		kept = append(kept, mf)
	}
	slices.SortFunc(kept, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	kept = append(kept,
		gauge(metricUp, "1 if the target's scrape succeeded and its body could be read, else 0.", up),
		gauge(metricDuration, "Duration of the scrape of the target, as the poller measured it.", env.ScrapeDuration.Seconds()),
		gauge(metricSamples, "Samples the target exposed in its scrape.", float64(samples)),
	)
	enc := expfmt.NewEncoder(out, pushFormat)
	for _, mf := range kept {
		if err := enc.Encode(mf); err != nil {
			return res, fmt.Errorf("encode %s for the pushgateway: %w", mf.GetName(), err)
		}
	}
	return res, nil
}

// parse reads an exposition in the format its content type names. A
// missing or unknown content type is read as text 0.0.4, as Prometheus
// falls back to it.
func parse(contentType string, body []byte) ([]*dto.MetricFamily, error) {
	mediaType, params, _ := mime.ParseMediaType(contentType)
	if mediaType == expfmt.ProtoType && params["encoding"] == "delimited" {
		dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.NewFormat(expfmt.TypeProtoDelim))
		var fams []*dto.MetricFamily
		for {
			mf := &dto.MetricFamily{}
			if err := dec.Decode(mf); err != nil {
				if err == io.EOF {
					return fams, nil
				}
				return nil, fmt.Errorf("parse protobuf exposition: %w", err)
			}
			fams = append(fams, mf)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	m, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse text exposition: %w", err)
	}
	fams := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		fams = append(fams, mf)
	}
	return fams, nil
}

// renameClashes renames m's labels that clash with a grouping-key label
// to exported_<name> (again prefixed while that name is taken too).
func renameClashes(m *dto.Metric, groupLabels []string) int {
	n := 0
	for _, l := range m.GetLabel() {
		if !slices.Contains(groupLabels, l.GetName()) {
			continue
		}
		name := "exported_" + l.GetName()
		for hasLabel(m, name) {
			name = "exported_" + name
		}
		l.Name = proto.String(name)
		n++
	}
	return n
}

func hasLabel(m *dto.Metric, name string) bool {
	return slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == name })
}

// sampleCount counts samples as Prometheus's scrape_samples_scraped does.
func sampleCount(t dto.MetricType, m *dto.Metric) int {
	switch t {
	case dto.MetricType_SUMMARY:
		return len(m.GetSummary().GetQuantile()) + 2
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		n := len(m.GetHistogram().GetBucket()) + 2
		if b := m.GetHistogram().GetBucket(); len(b) == 0 || !math.IsInf(b[len(b)-1].GetUpperBound(), 1) {
			n++ // the implicit +Inf bucket
		}
		return n
	}
	return 1
}

func gauge(name, help string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{
		Name:   proto.String(name),
		Help:   proto.String(help),
		Type:   dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(v)}}},
	}
}
