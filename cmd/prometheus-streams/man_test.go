package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestManWritesAPagePerCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	code, out, errOut := runCmd(t, "man", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, name := range []string{
		"prometheus-streams", "prometheus-streams-poller", "prometheus-streams-receiver",
		"prometheus-streams-demo", "prometheus-streams-bench", "prometheus-streams-check-config",
		"prometheus-streams-version", "prometheus-streams-completion", "prometheus-streams-completion-bash",
	} {
		b, err := os.ReadFile(filepath.Join(dir, name+".1"))
		if err != nil {
			t.Errorf("page %s: %v", name, err)
			continue
		}
		if !strings.Contains(string(b), ".TH \"PROMETHEUS-STREAMS\" \"1\"") {
			t.Errorf("page %s has no section 1 title line:\n%.300s", name, b)
		}
	}
	// Hidden commands get no page; the global flags are on every page.
	for _, name := range []string{"prometheus-streams-man", "prometheus-streams-enroll"} {
		if _, err := os.Stat(filepath.Join(dir, name+".1")); err == nil {
			t.Errorf("hidden command has a page: %s", name)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "prometheus-streams-poller.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "/etc/prometheus-streams/prometheus-streams.yaml") {
		t.Errorf("poller page does not give the default --config:\n%s", b)
	}
}

func TestCompletionScripts(t *testing.T) {
	cases := []struct {
		shell string
		want  string
	}{
		{"bash", "bash completion V2 for prometheus-streams"},
		{"zsh", "#compdef prometheus-streams"},
		{"fish", "fish completion for prometheus-streams"},
	}
	for _, c := range cases {
		t.Run(c.shell, func(t *testing.T) {
			code, out, errOut := runCmd(t, "completion", c.shell)
			if code != 0 {
				t.Fatalf("exit %d\nstderr: %s", code, errOut)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("completion %s does not contain %q:\n%.300s", c.shell, c.want, out)
			}
		})
	}
}
