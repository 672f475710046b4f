package config

import (
	"path/filepath"
	"regexp"
	"time"

	commoncfg "github.com/prometheus/common/config"
)

// DefaultFileSDConfig holds the defaults of a file_sd_configs entry, those
// of Prometheus. UnmarshalYAML copies it; it is never modified.
var DefaultFileSDConfig = FileSDConfig{RefreshInterval: Duration(5 * time.Minute)}

// FileSDConfig is one entry of a job's file_sd_configs: files in
// Prometheus's file_sd format (YAML or JSON lists of {targets, labels})
// whose targets are scraped under the job, next to its static targets.
// The shape is Prometheus's, so the same files can feed both.
type FileSDConfig struct {
	// Files are paths or globs; only the last path element may hold a *,
	// and it must end in .json, .yml or .yaml, as in Prometheus. Parse
	// resolves relative ones against the configuration file's directory.
	Files []string `yaml:"files"`
	// RefreshInterval is how often the files are read again besides when
	// the file system reports a change (a watch can miss one, or fail).
	RefreshInterval Duration `yaml:"refresh_interval"`
}

// UnmarshalYAML decodes the section over a copy of DefaultFileSDConfig.
func (f *FileSDConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*f = DefaultFileSDConfig
	type plain FileSDConfig
	return unmarshal((*plain)(f))
}

// fileSDName is the pattern Prometheus's discovery/file accepts for a
// path: a * only in the last element, and a .json, .yml or .yaml
// extension, which says how the file is read.
var fileSDName = regexp.MustCompile(`^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$`)

// checkFileSD checks a job's file_sd_configs at p and resolves their
// relative paths against the configuration file's directory, in place.
func checkFileSD(k *checker, p keyPath, sds []FileSDConfig) {
	for i := range sds {
		sp := p.with("file_sd_configs").with(i)
		sd := &sds[i]
		if len(sd.Files) == 0 {
			k.errorf(sp.with("files"), "at least one file name or glob is required")
		}
		for j, f := range sd.Files {
			fp := sp.with("files").with(j)
			if !fileSDName.MatchString(f) {
				k.errorf(fp, "%q is not valid for file discovery: only the file name may hold a *, and it must end in .json, .yml or .yaml", f)
				continue
			}
			if _, err := filepath.Match(f, ""); err != nil {
				k.errorf(fp, "%q: %w", f, err)
				continue
			}
			sd.Files[j] = commoncfg.JoinDir(configDir(k.c.filename), f)
		}
		if sd.RefreshInterval <= 0 {
			k.errorf(sp.with("refresh_interval"), "must be greater than 0")
		}
	}
}

// HasFileSD reports whether any job discovers targets from files, which
// can then be the only targets a poller has.
func (c *Config) HasFileSD() bool {
	for _, j := range c.Jobs {
		if len(j.FileSDConfigs) > 0 {
			return true
		}
	}
	return false
}
