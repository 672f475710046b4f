package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/prometheus/discovery/targetgroup"
	yamlv2 "go.yaml.in/yaml/v2"

	"github.com/choria-io/prometheus-streams/config"
)

// readFile reads a file in the file_sd format as Prometheus's
// discovery/file does (JSON or strict YAML by extension; its readFile is
// unexported), naming each group as it does, "<file>:<index>", so that
// the watcher's later updates replace these groups. A running Discovery
// uses it to start from the files' content at once instead of an empty
// job until the watcher's first read; check-config, to list the targets.
// promtool reads file_sd files itself for the same reason.
func readFile(path string) ([]*targetgroup.Group, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var groups []*targetgroup.Group
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json":
		err = json.Unmarshal(content, &groups)
	case ".yml", ".yaml":
		err = yamlv2.UnmarshalStrict(content, &groups)
	default:
		// config refuses such names; a glob cannot match another extension.
		return nil, fmt.Errorf("extension %q is neither .json, .yml nor .yaml", ext)
	}
	if err != nil {
		return nil, err
	}
	for i, g := range groups {
		if g == nil {
			return nil, errors.New("an empty item in the list of target groups")
		}
		g.Source = fmt.Sprintf("%s:%d", path, i)
	}
	return groups, nil
}

// readAll reads every file an entry's globs match now, returning the groups
// by source and, for each file that could not be read, its error.
func readAll(sd config.FileSDConfig) (map[string]*targetgroup.Group, map[string]error) {
	groups := map[string]*targetgroup.Group{}
	failed := map[string]error{}
	for _, pattern := range sd.Files {
		files, err := filepath.Glob(pattern)
		if err != nil {
			failed[pattern] = err // config checked the pattern already
			continue
		}
		for _, f := range files {
			gs, err := readFile(f)
			if err != nil {
				failed[f] = err
				continue
			}
			for _, g := range gs {
				groups[g.Source] = g
			}
		}
	}
	return groups, failed
}

// Read reads the file_sd files of cfg's jobs once and returns every job's
// targets merged with static (the static targets, as config.Targets returns
// them, possibly adjusted by the caller), and the entries and files
// refused. It starts nothing: check-config lists what a poller would
// scrape with it.
func Read(cfg *config.Config, static []config.Target) (map[string][]config.Target, []Refusal) {
	inputs := inputsFor(cfg, static)
	var unreadable []Refusal
	for job, j := range cfg.Jobs {
		for _, sd := range j.FileSDConfigs {
			groups, failed := readAll(sd)
			for src, g := range groups {
				inputs[job].groups[src] = g
			}
			for f, err := range failed {
				unreadable = append(unreadable, Refusal{Job: job, File: f, Target: "(whole file)", Reason: ReasonUnreadable, Err: err})
			}
		}
	}
	m := merge(inputs)
	return m.jobs, append(unreadable, m.refused...)
}

// inputsFor returns an input for every job of cfg and every job of
// static (the self-scrape job), with the static targets and the job's
// HTTP client settings, and no groups yet.
func inputsFor(cfg *config.Config, static []config.Target) map[string]*jobInput {
	inputs := map[string]*jobInput{}
	for job, j := range cfg.Jobs {
		inputs[job] = &jobInput{settings: j.ClientSettings(), groups: map[string]*targetgroup.Group{}}
	}
	for _, t := range static {
		in := inputs[t.Job]
		if in == nil {
			in = &jobInput{settings: t.HTTPClient, groups: map[string]*targetgroup.Group{}}
			inputs[t.Job] = in
		}
		in.static = append(in.static, t)
	}
	return inputs
}
