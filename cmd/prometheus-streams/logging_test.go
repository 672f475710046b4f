package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/choria-io/prometheus-streams/config"
)

func TestLoggerLevelAndDestination(t *testing.T) {
	cases := []struct {
		name      string
		flags     globalFlags
		cfg       *config.Config
		wantDebug bool
		wantInfo  bool
	}{
		{"default is info", globalFlags{}, &config.Config{}, false, true},
		{"debug: true in the file", globalFlags{}, &config.Config{Debug: true}, true, true},
		{"--log-level wins over the file", globalFlags{logLevel: "warn"}, &config.Config{Debug: true}, false, false},
		{"--debug wins over everything", globalFlags{logLevel: "error", debug: true}, &config.Config{}, true, true},
		{"verbose changes nothing", globalFlags{}, &config.Config{Verbose: true}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger, closeLog, err := newLogger(&c.flags, c.cfg, &buf)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = closeLog() }()
			ctx := context.Background()
			if got := logger.Enabled(ctx, slog.LevelDebug); got != c.wantDebug {
				t.Errorf("debug enabled = %v, want %v", got, c.wantDebug)
			}
			if got := logger.Enabled(ctx, slog.LevelInfo); got != c.wantInfo {
				t.Errorf("info enabled = %v, want %v", got, c.wantInfo)
			}
		})
	}
}

func TestLoggerWritesTheLogfileInTheChosenFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prometheus-streams.log")
	logger, closeLog, err := newLogger(&globalFlags{}, &config.Config{LogFile: path, LogFormat: config.LogFormatJSON, Debug: true}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("hello", "k", "v")
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"level":"DEBUG"`) || !strings.Contains(string(b), `"msg":"hello"`) {
		t.Fatalf("logfile holds %q, want a JSON debug line", b)
	}
	if _, _, err := newLogger(&globalFlags{}, &config.Config{LogFile: filepath.Join(path, "not-a-dir", "x.log")}, os.Stderr); err == nil {
		t.Fatal("an unwritable logfile was accepted")
	}
}
