package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/common/promslog"

	"github.com/choria-io/prometheus-streams/config"
)

// newLogger builds the logger from the flags and the file: --log-level and
// --log-format win over the file; --debug or debug: true mean debug level.
// The returned closer closes the log file, if one was opened.
func newLogger(g *globalFlags, cfg *config.Config, stderr io.Writer) (*slog.Logger, func() error, error) {
	level := promslog.NewLevel()
	name := "info"
	if cfg != nil && cfg.Debug {
		name = "debug"
	}
	if g.logLevel != "" {
		name = g.logLevel
	}
	if g.debug {
		name = "debug"
	}
	if err := level.Set(name); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	formatName := config.LogFormatText
	if cfg != nil && cfg.LogFormat != "" {
		formatName = cfg.LogFormat
	}
	if g.logFormat != "" {
		formatName = g.logFormat
	}
	format := promslog.NewFormat()
	switch formatName {
	case config.LogFormatText:
		_ = format.Set("logfmt")
	case config.LogFormatJSON:
		_ = format.Set("json")
	default:
		return nil, nil, fmt.Errorf("--log-format: %q is not text or json", formatName)
	}
	w, closer := stderr, func() error { return nil }
	if cfg != nil && cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("open logfile: %w", err)
		}
		w, closer = f, f.Close
	}
	return promslog.New(&promslog.Config{Level: level, Format: format, Writer: w}), closer, nil
}
