package config

import "testing"

// FuzzParse checks that no input makes Parse panic, and that Validate and
// the accessors do not panic on whatever Parse accepts. The seed corpus is
// in testdata/fuzz/FuzzParse, the 1.0 sample among it.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Fatal("a Config returned with an error")
			}
			return
		}
		for _, role := range []Role{RolePoller, RoleReceiver} {
			_ = c.Validate(role)
			_ = c.ClientID(role)
			_, _, _ = c.StreamTLS(role).Files()
		}
		_ = c.Roles()
		_ = c.Targets()
		_ = c.MonitorAddress()
	})
}
