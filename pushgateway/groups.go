package pushgateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Group is a group found in the Pushgateway: its grouping labels (job
// included) and when it was last pushed.
type Group struct {
	Labels   map[string]string
	PushTime time.Time
	// Marker is the value of the marker metric in the group.
	Marker float64
}

// pushTimeMetric is the series the Pushgateway adds to every group.
const pushTimeMetric = "push_time_seconds"

// Groups lists the groups in the Pushgateway that carry the metric marker,
// so a caller finds its own groups among everyone's. It reads the
// Pushgateway's /metrics but keeps only the marker's and push_time_seconds'
// lines, so its memory is proportional to the number of groups, not to the
// number of series stored.
func (c *Client) Groups(ctx context.Context, marker string) ([]Group, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("list groups: build request: %w", err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list groups: GET /metrics: %s", resp.Status)
	}
	// Only the two families matter; everything else is skipped line by
	// line without being parsed.
	var kept bytes.Buffer
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer (a huge label value of some
			// other group's series) is not one of ours: skip the rest of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if bytes.HasPrefix(line, []byte(pushTimeMetric+"{")) || bytes.HasPrefix(line, []byte(marker+"{")) {
			kept.Write(bytes.TrimRight(line, "\n"))
			kept.WriteByte('\n')
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list groups: read /metrics: %w", err)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&kept)
	if err != nil {
		return nil, fmt.Errorf("list groups: parse /metrics: %w", err)
	}
	marked := map[string]float64{}
	for _, m := range fams[marker].GetMetric() {
		marked[labelKey(m.GetLabel())] = m.GetUntyped().GetValue() + m.GetGauge().GetValue()
	}
	var groups []Group
	for _, m := range fams[pushTimeMetric].GetMetric() {
		value, ok := marked[labelKey(m.GetLabel())]
		if !ok {
			continue
		}
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		v := m.GetUntyped().GetValue() + m.GetGauge().GetValue()
		groups = append(groups, Group{Labels: labels, PushTime: time.Unix(0, int64(v*1e9)), Marker: value})
	}
	return groups, nil
}

// labelKey identifies a label set.
func labelKey[L interface {
	GetName() string
	GetValue() string
}](labels []L) string {
	var b strings.Builder
	for _, l := range labels {
		b.WriteString(l.GetName())
		b.WriteByte(0)
		b.WriteString(l.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}
