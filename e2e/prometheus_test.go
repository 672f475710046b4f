package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// promSample is one element of an instant vector from /api/v1/query.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// queryPrometheus runs an instant query against the Prometheus at base
// and returns the vector it answers.
func queryPrometheus(c *http.Client, base, query string) ([]promSample, error) {
	b, err := get(c, base+"/api/v1/query?"+url.Values{"query": {query}}.Encode())
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"` // [unix time, "value"]
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("query %s: %w", query, err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s", query, resp.Status, resp.Error)
	}
	if resp.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", query, resp.Data.ResultType)
	}
	out := make([]promSample, 0, len(resp.Data.Result))
	for _, r := range resp.Data.Result {
		s, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("query %s: value %v is not a string", query, r.Value[1])
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", query, err)
		}
		out = append(out, promSample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// promHas returns nil once query has at least one result that is a
// number: a quantile of a histogram nothing was observed in is NaN, which
// a panel cannot draw.
func promHas(c *http.Client, base, query string) error {
	v, err := queryPrometheus(c, base, query)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(v, func(s promSample) bool { return !math.IsNaN(s.Value) }) {
		return fmt.Errorf("%s: no result that is a number yet (%d NaN)", query, len(v))
	}
	return nil
}

// promValue returns nil once query has exactly one result and it is want.
func promValue(c *http.Client, base, query string, want float64) error {
	v, err := queryPrometheus(c, base, query)
	if err != nil {
		return err
	}
	if len(v) != 1 {
		return fmt.Errorf("%s: %d results %v, want one", query, len(v), v)
	}
	if v[0].Value != want {
		return fmt.Errorf("%s = %v, want %v", query, v[0].Value, want)
	}
	return nil
}
