package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// promAPI is a client of the HTTP API of the Prometheus at base, over c:
// c's Timeout bounds every call.
func promAPI(c *http.Client, base string) (promv1.API, error) {
	client, err := api.NewClient(api.Config{Address: base, Client: c})
	if err != nil {
		return nil, fmt.Errorf("prometheus API at %s: %w", base, err)
	}
	return promv1.NewAPI(client), nil
}

// queryPrometheus runs an instant query against the Prometheus at base
// and returns the vector it answers. Prometheus's warnings are not errors:
// a query a dashboard runs may draw one (a counter's name on a gauge) and
// still answer what a panel draws.
func queryPrometheus(c *http.Client, base, query string) (model.Vector, error) {
	p, err := promAPI(c, base)
	if err != nil {
		return nil, err
	}
	v, _, err := p.Query(context.Background(), query, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", query, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %s: result %T, want a vector", query, v)
	}
	// A native histogram's sample has Value 0, which promValue could take
	// for an answer.
	for _, s := range vec {
		if s.Histogram != nil {
			return nil, fmt.Errorf("query %s: %v is a histogram, want a float", query, s)
		}
	}
	return vec, nil
}

// promHas returns nil once query has at least one result that is a
// number: a quantile of a histogram nothing was observed in is NaN, which
// a panel cannot draw.
func promHas(c *http.Client, base, query string) error {
	v, err := queryPrometheus(c, base, query)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(v, func(s *model.Sample) bool { return !math.IsNaN(float64(s.Value)) }) {
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
	if float64(v[0].Value) != want {
		return fmt.Errorf("%s = %v, want %v", query, v[0].Value, want)
	}
	return nil
}
