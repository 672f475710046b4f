package lograte

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	tests := []struct {
		name string
		// calls are the keys logged, each after advancing the clock by
		// its step.
		calls []call
		want  []string // the level of each call's line
	}{
		{name: "one key", calls: []call{{"a", 0}, {"a", time.Second}, {"a", Every - 2*time.Second}}, want: []string{"WARN", "DEBUG", "DEBUG"}},
		{name: "again after a minute", calls: []call{{"a", 0}, {"a", Every}, {"a", time.Second}}, want: []string{"WARN", "WARN", "DEBUG"}},
		{name: "keys apart", calls: []call{{"a", 0}, {"b", 0}, {"a", 0}, {"b", 0}}, want: []string{"WARN", "WARN", "DEBUG", "DEBUG"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, logs, clock := newTestLimiter()
			for _, c := range tt.calls {
				*clock = clock.Add(c.step)
				l.Log(c.key, "loud", "quiet", "key", c.key)
			}
			if got := levels(logs.String()); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("levels = %v, want %v:\n%s", got, tt.want, logs)
			}
		})
	}
}

// TestLimiterBoundsKeys: keys past maxKeys share one, so keys made from
// hostile input neither grow the Limiter nor each get a warning.
func TestLimiterBoundsKeys(t *testing.T) {
	l, logs, _ := newTestLimiter()
	for i := range maxKeys + 10 {
		l.Log(strconv.Itoa(i), "loud", "quiet")
	}
	if len(l.last) != maxKeys {
		t.Errorf("%d keys kept, want %d", len(l.last), maxKeys)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != maxKeys+1 {
		t.Errorf("%d warnings, want one per kept key and one for the rest (%d)", n, maxKeys+1)
	}
}

type call struct {
	key  string
	step time.Duration
}

func newTestLimiter() (*Limiter, *bytes.Buffer, *time.Time) {
	var logs bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelWarn)
	clock := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return clock }
	return l, &logs, &clock
}

// levels returns the level of each line, checking that a warning carries
// the loud message and a debug line the quiet one.
func levels(logs string) []string {
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		switch {
		case strings.Contains(line, "level=WARN msg=loud"):
			out = append(out, "WARN")
		case strings.Contains(line, "level=DEBUG msg=quiet"):
			out = append(out, "DEBUG")
		default:
			out = append(out, "?"+line)
		}
	}
	return out
}
