package e2e

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// fileLogger returns a debug-level logger writing to dir/name, for the
// servers the test runs in-process. The file is logged when the test
// fails; call it before starting the servers that use it, so that its
// cleanup runs after theirs and sees their last lines.
func fileLogger(t *testing.T, dir, name string) *slog.Logger {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = f.Close()
		if !t.Failed() {
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("%s: %v", name, err)
			return
		}
		t.Logf("==== in-process servers: %s ====\n%s", name, b)
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
