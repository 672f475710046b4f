package config

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestFileSDConfigs(t *testing.T) {
	const head = "poller_stream: {cluster_id: c, urls: 'a:1', topic: t}\njobs:\n  node:\n"
	tests := []struct {
		name    string
		input   string
		want    []FileSDConfig
		wantErr string
	}{
		{
			name:  "relative glob resolved, refresh_interval defaulted",
			input: head + "    file_sd_configs:\n      - files: [targets/*.yml, /abs/b.json]\n",
			want:  []FileSDConfig{{Files: []string{filepath.Join("dir", "targets", "*.yml"), "/abs/b.json"}, RefreshInterval: Duration(5 * time.Minute)}},
		},
		{
			name:  "next to static targets, own refresh_interval",
			input: head + "    targets: [{url: 'http://a:9100/metrics'}]\n    file_sd_configs:\n      - files: [/t/a.yaml]\n        refresh_interval: 30s\n",
			want:  []FileSDConfig{{Files: []string{"/t/a.yaml"}, RefreshInterval: Duration(30 * time.Second)}},
		},
		{
			name:    "no files",
			input:   head + "    file_sd_configs:\n      - refresh_interval: 1m\n",
			wantErr: "dir/config.yaml:5: jobs.node.file_sd_configs[0].files: at least one file name or glob is required",
		},
		{
			name:    "a * in a directory",
			input:   head + "    file_sd_configs:\n      - files:\n          - /t/a.yml\n          - /t/*/a.yml\n",
			wantErr: `dir/config.yaml:7: jobs.node.file_sd_configs[0].files[1]: "/t/*/a.yml" is not valid for file discovery: only the file name may hold a *, and it must end in .json, .yml or .yaml`,
		},
		{
			name:    "no extension",
			input:   head + "    file_sd_configs:\n      - files: [/t/targets]\n",
			wantErr: `dir/config.yaml:5: jobs.node.file_sd_configs[0].files[0]: "/t/targets" is not valid for file discovery: only the file name may hold a *, and it must end in .json, .yml or .yaml`,
		},
		{
			name:    "bad glob",
			input:   head + "    file_sd_configs:\n      - files: ['/t/[a.yml']\n",
			wantErr: `dir/config.yaml:5: jobs.node.file_sd_configs[0].files[0]: "/t/[a.yml": syntax error in pattern`,
		},
		{
			name:    "zero refresh_interval",
			input:   head + "    file_sd_configs:\n      - files: [/t/a.yml]\n        refresh_interval: 0s\n",
			wantErr: "dir/config.yaml:6: jobs.node.file_sd_configs[0].refresh_interval: must be greater than 0",
		},
		{
			name:    "unknown key",
			input:   head + "    file_sd_configs:\n      - files: [/t/a.yml]\n        refresh: 1m\n",
			wantErr: "dir/config.yaml:6: jobs.node.file_sd_configs[0].refresh: field refresh not found in type config.plain",
		},
		{
			name:    "not a list",
			input:   head + "    file_sd_configs: {files: [/t/a.yml]}\n",
			wantErr: "dir/config.yaml:4: jobs.node.file_sd_configs: cannot unmarshal !!map into []config.FileSDConfig",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.input), "dir/config.yaml")
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			if got := c.Jobs["node"].FileSDConfigs; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("file_sd_configs = %+v, want %+v", got, tt.want)
			}
			// A job with only file_sd_configs is a valid poller, and is not
			// warned about as a job without targets.
			if err := c.Validate(RolePoller); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if len(c.Warnings) != 0 {
				t.Errorf("warnings: %q", c.Warnings)
			}
		})
	}
}
