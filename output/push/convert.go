package push

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"mime"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
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

const (
	upHelp      = "1 if the target's scrape succeeded and its body could be read, else 0."
	samplesHelp = "Samples the target exposed in its scrape."
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
//
// check, when not nil, is given every family of the push, up and the other
// scrape series included, sorted by name, and returns those to encode: the
// consistency check sits between parsing and encoding, so what it leaves
// out is never sent. scrape_samples_scraped counts the samples the target
// exposed, before the check.
func convert(env *envelope.Envelope, body []byte, groupLabels []string, check func([]*dto.MetricFamily) []*dto.MetricFamily, out *bytes.Buffer) (converted, error) {
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
	kept = append(kept,
		gauge(metricUp, upHelp, up),
		gauge(metricDuration, "Duration of the scrape of the target, as the poller measured it.", env.ScrapeDuration.Seconds()),
		gauge(metricSamples, samplesHelp, float64(samples)),
	)
	return res, encode(kept, check, out)
}

// encode escapes names as the push format needs, sorts fams by name, passes
// them through check (when not nil) and writes what it returns to out.
// Escaping comes first so the check sees the names the Pushgateway will
// store: "a.b" and "a_b" are one family there, and so are labels "l.1" and
// "l_1".
func encode(fams []*dto.MetricFamily, check func([]*dto.MetricFamily) []*dto.MetricFamily, out *bytes.Buffer) error {
	for i, mf := range fams {
		if needsEscaping(mf) {
			// As expfmt's encoder does for the push format: names outside
			// the legacy character set are escaped with underscores, which
			// the Pushgateway accepts without --push.enable-utf8-names.
			fams[i] = model.EscapeMetricFamily(mf, pushEscaping)
		}
	}
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	if check != nil {
		fams = check(fams)
	}
	for _, mf := range fams {
		if err := appendDelimited(out, mf); err != nil {
			return fmt.Errorf("encode %s for the pushgateway: %w", mf.GetName(), err)
		}
	}
	return nil
}

// pushEscaping is the escaping expfmt's encoder applies for pushFormat.
var pushEscaping = pushFormat.ToEscapingScheme()

// appendDelimited writes mf as one length-delimited protobuf message, as
// expfmt's encoder does, but into out's own spare room instead of a fresh
// buffer per family (encoding is a fifth of the receiver's work per push).
func appendDelimited(out *bytes.Buffer, mf *dto.MetricFamily) error {
	size := proto.Size(mf)
	out.Grow(size + binary.MaxVarintLen64)
	b := protowire.AppendVarint(out.AvailableBuffer(), uint64(size))
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, mf)
	if err != nil {
		return err
	}
	_, _ = out.Write(b) // b is out's own spare room: no copy, and a bytes.Buffer write cannot fail
	return nil
}

// needsEscaping reports whether a family has a metric or label name outside
// the legacy character set, which is rare: only then is it copied to escape.
func needsEscaping(mf *dto.MetricFamily) bool {
	if !model.LegacyValidation.IsValidMetricName(mf.GetName()) {
		return true
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if !model.LegacyValidation.IsValidLabelName(l.GetName()) {
				return true
			}
		}
	}
	return false
}

// parse reads an exposition in the format its content type names. A
// missing or unknown content type is read as text 0.0.4, as Prometheus
// falls back to it. The body comes from anywhere (an exporter, or anyone who
// can publish to the channel), so a panic in a parser is turned into an
// error rather than taking the receiver down with every redelivery.
func parse(contentType string, body []byte) (fams []*dto.MetricFamily, err error) {
	defer func() {
		if p := recover(); p != nil {
			fams, err = nil, fmt.Errorf("parse exposition: parser panicked: %v", p)
		}
	}()
	mediaType, params, _ := mime.ParseMediaType(contentType)
	if mediaType == expfmt.ProtoType && params["encoding"] == "delimited" {
		return parseDelimited(body)
	}
	return parseText(body)
}

// parseDelimited reads length-delimited MetricFamily messages. It does not
// use expfmt's decoder: that one trusts each frame's length prefix and
// allocates it before reading (a 10-byte body can ask for gigabytes), while
// here a frame can be no longer than the bytes that are actually left.
func parseDelimited(body []byte) ([]*dto.MetricFamily, error) {
	var fams []*dto.MetricFamily
	for rest := body; len(rest) > 0; {
		size, n := protowire.ConsumeVarint(rest)
		if n < 0 {
			return nil, fmt.Errorf("parse protobuf exposition: bad frame length at byte %d", len(body)-len(rest))
		}
		rest = rest[n:]
		if size > uint64(len(rest)) {
			return nil, fmt.Errorf("parse protobuf exposition: frame of %d bytes with %d bytes left", size, len(rest))
		}
		mf := &dto.MetricFamily{}
		if err := proto.Unmarshal(rest[:size], mf); err != nil {
			return nil, fmt.Errorf("parse protobuf exposition: %w", err)
		}
		rest = rest[size:]
		if err := validFamily(mf); err != nil {
			return nil, fmt.Errorf("parse protobuf exposition: %w", err)
		}
		fams = append(fams, mf)
	}
	return fams, nil
}

// validFamily makes the checks expfmt's protobuf decoder makes.
func validFamily(mf *dto.MetricFamily) error {
	if !model.UTF8Validation.IsValidMetricName(mf.GetName()) {
		return fmt.Errorf("invalid metric name %q", mf.GetName())
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if !model.LabelValue(l.GetValue()).IsValid() || !model.UTF8Validation.IsValidLabelName(l.GetName()) {
				return fmt.Errorf("metric %s: invalid label %q=%q", mf.GetName(), l.GetName(), l.GetValue())
			}
		}
	}
	return nil
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
