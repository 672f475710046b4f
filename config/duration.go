package config

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration read from YAML. It accepts a Prometheus
// duration string ("60s", "1m30s", "1d"), a Go duration string ("1.5m",
// which 1.0 accepted because it used time.ParseDuration), or an unquoted
// integer meaning seconds (1.0 wrote max_age that way; every Duration key
// accepts it so there is one rule to remember). Negative values are refused.
type Duration time.Duration

// maxSeconds is the largest integer number of seconds a time.Duration holds.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// UnmarshalYAML implements yaml.Unmarshaler. Unlike the sections, the
// leaves (Duration, ByteSize, URLList) take the *yaml.Node form: they need
// the tag (an unquoted integer means seconds) and decode no keys, so the
// fresh decoder it implies loses nothing. An error names no position:
// Parse finds the key.
func (d *Duration) UnmarshalYAML(value *yaml.Node) error {
	if value.Kind != yaml.ScalarNode {
		return errors.New("must be a duration such as 60s or 1m30s, or an integer number of seconds")
	}
	if value.ShortTag() == "!!int" {
		var n int64
		if err := value.Decode(&n); err != nil {
			return fmt.Errorf("invalid number of seconds %q", value.Value)
		}
		if n < 0 || n > maxSeconds {
			return fmt.Errorf("%d seconds is out of range", n)
		}
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	}
	md, err := model.ParseDuration(value.Value)
	if err == nil {
		*d = Duration(md)
		return nil
	}
	// Fall back to Go's syntax so that 1.0 files (time.ParseDuration) keep working.
	if td, terr := time.ParseDuration(value.Value); terr == nil {
		if td < 0 {
			return fmt.Errorf("duration %q is negative", value.Value)
		}
		*d = Duration(td)
		return nil
	}
	return fmt.Errorf("invalid duration %q: %w", value.Value, err)
}

// MarshalYAML implements yaml.Marshaler; the result parses back to the same value.
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// String formats d the Prometheus way ("1m30s") when it is a whole number of
// milliseconds, which model.Duration requires, and the Go way otherwise.
func (d Duration) String() string {
	if time.Duration(d)%time.Millisecond == 0 {
		return model.Duration(d).String()
	}
	return time.Duration(d).String()
}

// ByteSize is a size in bytes read from YAML: an unquoted integer is bytes, a
// string uses base-2 units ("512KiB", "16MiB", "1GiB"; "16MB" also means
// 16MiB, as github.com/alecthomas/units parses it).
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(value *yaml.Node) error {
	if value.Kind != yaml.ScalarNode {
		return errors.New("must be a size such as 16MiB or an integer number of bytes")
	}
	if value.ShortTag() == "!!int" {
		var n int64
		if err := value.Decode(&n); err != nil {
			return fmt.Errorf("invalid number of bytes %q", value.Value)
		}
		*b = ByteSize(n)
		return nil
	}
	n, err := units.ParseBase2Bytes(value.Value)
	if err != nil {
		return fmt.Errorf("invalid size %q: %w", value.Value, err)
	}
	*b = ByteSize(n)
	return nil
}

// MarshalYAML implements yaml.Marshaler; the result parses back to the same value.
func (b ByteSize) MarshalYAML() (any, error) {
	return b.String(), nil
}

// String formats b with the largest exact base-2 unit, e.g. "16MiB".
func (b ByteSize) String() string {
	return units.Base2Bytes(b).String()
}
