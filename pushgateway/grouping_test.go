package pushgateway

import (
	"errors"
	"testing"
)

func TestGroupingKeyPath(t *testing.T) {
	tests := []struct {
		name string
		key  GroupingKey
		want string
	}{
		{
			name: "job only",
			key:  GroupingKey{Job: "node"},
			want: "/metrics/job/node",
		},
		{
			name: "plain job instance publisher",
			key:  GroupingKey{Job: "node", Labels: []Label{{"instance", "host-1.example.com:9100"}, {"publisher", "dc_1"}}},
			want: "/metrics/job/node/instance/host-1.example.com:9100/publisher/dc_1",
		},
		{
			name: "slash in value (pushgateway README example)",
			key:  GroupingKey{Job: "directory_cleaner", Labels: []Label{{"path", "/var/tmp"}}},
			want: "/metrics/job/directory_cleaner/path@base64/L3Zhci90bXA",
		},
		{
			name: "unicode value (pushgateway README example)",
			key:  GroupingKey{Job: "titan", Labels: []Label{{"name", "Προμηθεύς"}}},
			want: "/metrics/job/titan/name@base64/zqDPgc6_zrzOt864zrXPjc-C",
		},
		{
			name: "empty value",
			key:  GroupingKey{Job: "example", Labels: []Label{{"first_label", ""}, {"second_label", "foobar"}}},
			want: "/metrics/job/example/first_label@base64/=/second_label/foobar",
		},
		{
			name: "dot segments",
			key:  GroupingKey{Job: "j", Labels: []Label{{"a", "."}, {"b", ".."}, {"c", "..."}}},
			want: "/metrics/job/j/a@base64/Lg/b@base64/Li4/c/...",
		},
		{
			name: "job needing base64",
			key:  GroupingKey{Job: "a/b", Labels: []Label{{"instance", "i"}}},
			want: "/metrics/job@base64/YS9i/instance/i",
		},
		{
			name: "empty job",
			key:  GroupingKey{},
			want: "/metrics/job@base64/=",
		},
		{
			name: "characters a URL would escape",
			key:  GroupingKey{Job: "j", Labels: []Label{{"q", "a b?#%"}}},
			want: "/metrics/job/j/q@base64/YSBiPyMl",
		},
		{
			name: "base64url alphabet, not standard",
			key:  GroupingKey{Job: "j", Labels: []Label{{"v", "\xfb\xff"}}},
			want: "/metrics/job/j/v@base64/-_8",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.key.Path(); got != tc.want {
				t.Errorf("Path() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGroupingKeyString(t *testing.T) {
	k := GroupingKey{Job: "node", Labels: []Label{{"instance", `h:9100`}, {"publisher", `a"b`}}}
	want := `job="node",instance="h:9100",publisher="a\"b"`
	if got := k.String(); got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
}

func TestGroupingKeyValidate(t *testing.T) {
	tests := []struct {
		name    string
		key     GroupingKey
		wantErr bool
	}{
		{name: "valid", key: GroupingKey{Job: "j", Labels: []Label{{"instance", ""}, {"_x9", "v"}}}},
		{name: "empty job", key: GroupingKey{}, wantErr: true},
		{name: "empty label name", key: GroupingKey{Job: "j", Labels: []Label{{"", "v"}}}, wantErr: true},
		{name: "label name with dash", key: GroupingKey{Job: "j", Labels: []Label{{"a-b", "v"}}}, wantErr: true},
		{name: "label name starting with digit", key: GroupingKey{Job: "j", Labels: []Label{{"1a", "v"}}}, wantErr: true},
		{name: "reserved label name", key: GroupingKey{Job: "j", Labels: []Label{{"__name__", "v"}}}, wantErr: true},
		{name: "job as a label", key: GroupingKey{Job: "j", Labels: []Label{{"job", "v"}}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.key.validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("validate() = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidGroupingKey) {
				t.Errorf("validate() = %v, want ErrInvalidGroupingKey", err)
			}
		})
	}
}
