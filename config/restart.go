package config

import (
	"reflect"
	"strings"
)

// liveKeys are the keys a reload applies to a running process of each
// role, as dotted paths. Everything else the role uses needs a restart.
// push_gateway.down_after and serve.delete_after are live because their
// defaults derive from max_age, which is: were they not, changing max_age
// alone would be refused whenever they are left at their defaults.
var liveKeys = map[Role]map[string]bool{
	RolePoller: {"jobs": true, "scrape_interval": true, "scrape_timeout": true},
	RoleReceiver: {
		"publishers": true, "max_age": true,
		"push_gateway.down_after": true, "push_gateway.delete_after": true,
		"serve.delete_after": true,
	},
}

// unusedKeys are the keys a role does not read at all. A change to one of
// them means nothing to that process, so it neither applies nor refuses a
// reload (one file may serve a poller and a receiver, as in 1.0).
// management is ignored by both.
var unusedKeys = map[Role]map[string]bool{
	RolePoller: {
		"max_age": true, "receiver_stream": true, "push_gateway": true, "serve_targets": true, "serve": true,
		"publishers": true, "management": true,
	},
	RoleReceiver: {"scrape_interval": true, "scrape_timeout": true, "compression": true, "poller_stream": true, "jobs": true, "management": true},
}

// RestartKeys returns the keys, as dotted paths in file order, whose value
// differs between old and new and that a running process of role cannot
// apply without a restart: a reload must be refused when the list is not
// empty, so that an operator never believes a change applied when it did
// not. Keys the role applies live (jobs, scrape_interval and
// scrape_timeout for the poller; publishers, max_age,
// push_gateway.down_after and delete_after, and serve.delete_after for the
// receiver) and keys it
// does not use are left out. Values are compared after defaults and
// relative paths are resolved, so a key written differently with the same
// meaning is no change. A section is compared key by key one level down
// (poller_stream.urls); settings written inline (push_gateway's HTTP
// client settings) are reported as the section.
func RestartKeys(old, new *Config, role Role) []string {
	var keys []string
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	for i := range ov.NumField() {
		f := ov.Type().Field(i)
		name := yamlName(f)
		if name == "" || unusedKeys[role][name] || liveKeys[role][name] {
			continue
		}
		keys = append(keys, diffKey(role, name, ov.Field(i), nv.Field(i))...)
	}
	return keys
}

// diffKey compares one top-level key. A section present in both files is
// compared field by field so that the message names what changed.
func diffKey(role Role, name string, o, n reflect.Value) []string {
	if o.Kind() != reflect.Pointer || o.IsNil() || n.IsNil() || o.Elem().Kind() != reflect.Struct {
		if reflect.DeepEqual(o.Interface(), n.Interface()) {
			return nil
		}
		return []string{name}
	}
	o, n = o.Elem(), n.Elem()
	var keys []string
	inlineChanged := false
	for i := range o.NumField() {
		f := o.Type().Field(i)
		if !f.IsExported() || reflect.DeepEqual(o.Field(i).Interface(), n.Field(i).Interface()) {
			continue
		}
		sub := yamlName(f)
		switch {
		case isInline(yamlOpts(f)):
			inlineChanged = true
		case sub == "":
		case !liveKeys[role][name+"."+sub]:
			keys = append(keys, name+"."+sub)
		}
	}
	if inlineChanged {
		keys = append(keys, name)
	}
	return keys
}

// yamlName is the YAML key of an exported field, "" for fields that are
// not read from the file (yaml:"-", unexported) or are inlined.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || isInline(opts) {
		return ""
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func yamlOpts(f reflect.StructField) string {
	_, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return opts
}

// isInline reports whether the options of a yaml struct tag include inline.
func isInline(opts string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == "inline" {
			return true
		}
	}
	return false
}
