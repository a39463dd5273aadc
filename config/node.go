package config

import (
	"fmt"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Generic walking of yaml.Node trees: aliases, mappings with strict keys,
// and the scalar kinds the configuration uses. Each helper reports its own
// errors, naming what would be valid, and returns ok == false after one.

const (
	tagNull  = "!!null"
	tagStr   = "!!str"
	tagInt   = "!!int"
	tagMerge = "!!merge"
)

// resolve follows an alias to the node it names, and charges one visit
// against the decoder's budget.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	if d.budget--; d.budget < 0 {
		panic(errBudget{n})
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// describe names what n is, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case tagNull:
			return "no value"
		case tagStr:
			return fmt.Sprintf("the string %q", n.Value)
		case tagInt:
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
		}
	}
	return "an unresolved alias"
}

// join appends key to the dotted path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index appends [i] to the path.
func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// entry is one key: value pair of a mapping.
type entry struct {
	key, val *yaml.Node
}

// fields checks that n is a mapping whose keys are all in valid, each
// written once, and returns the value node of each key present. YAML merge
// keys (<<: *anchor) are honoured: keys written out win over merged ones,
// and earlier merged mappings win over later ones.
func (d *decoder) fields(n *yaml.Node, path, what string, valid []string) (map[string]*yaml.Node, bool) {
	n = d.resolve(n)
	if n.Kind != yaml.MappingNode && path == "" {
		d.errorf(n, path, "the top level must be a mapping with keys %s; got %s", strings.Join(valid, ", "), describe(n))
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want %s: a mapping with keys %s; got %s", what, strings.Join(valid, ", "), describe(n))
		return nil, false
	}
	out := make(map[string]*yaml.Node)
	for _, e := range d.entries(n, path, map[*yaml.Node]bool{n: true}) {
		name := e.key.Value
		if !isKey(name, valid) {
			msg := fmt.Sprintf("unknown key %q", name)
			if s := suggest(name, valid); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(e.key, join(path, name), "%s; valid keys: %s", msg, strings.Join(valid, ", "))
			continue
		}
		if _, dup := out[name]; !dup {
			out[name] = e.val
		}
	}
	return out, true
}

// entries lists the pairs of mapping n, expanding merge keys, and reports
// duplicate keys and keys that are not strings.
func (d *decoder) entries(n *yaml.Node, path string, active map[*yaml.Node]bool) []entry {
	var own, merged []entry
	first := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "a key must be a plain string; got %s", describe(k))
			continue
		}
		if k.ShortTag() == tagMerge {
			merged = append(merged, d.merge(v, path, active)...)
			continue
		}
		if prev, dup := first[k.Value]; dup {
			d.errorf(k, join(path, k.Value), "duplicate key %q, first at line %d; write each key once", k.Value, prev.Line)
			continue
		}
		first[k.Value] = k
		own = append(own, entry{k, v})
	}
	for _, e := range merged {
		if _, dup := first[e.key.Value]; !dup {
			first[e.key.Value] = e.key
			own = append(own, e)
		}
	}
	return own
}

// merge returns the entries that the value v of a merge key brings in: a
// mapping, or a list of mappings.
func (d *decoder) merge(v *yaml.Node, path string, active map[*yaml.Node]bool) []entry {
	v = d.resolve(v)
	srcs := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		srcs = nil
		for _, s := range v.Content {
			srcs = append(srcs, d.resolve(s))
		}
	}
	var out []entry
	for _, s := range srcs {
		switch {
		case s.Kind != yaml.MappingNode:
			d.errorf(s, path, "a merge key (<<) takes a mapping or a list of mappings; got %s", describe(s))
		case active[s]:
			d.errorf(s, path, "a merge key (<<) merges a mapping into itself; merge a different mapping")
		default:
			active[s] = true
			out = append(out, d.entries(s, path, active)...)
			delete(active, s)
		}
	}
	return out
}

func isKey(name string, valid []string) bool {
	for _, v := range valid {
		if v == name {
			return true
		}
	}
	return false
}

// suggest returns the valid key closest to name when it is a likely typo.
func suggest(name string, valid []string) string {
	best, bestDist := "", 3
	for _, v := range valid {
		if dist := editDistance(strings.ToLower(name), v); dist < bestDist {
			best, bestDist = v, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// list checks that n is a list and returns its items.
func (d *decoder) list(n *yaml.Node, path, what string) ([]*yaml.Node, bool) {
	n = d.resolve(n)
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "want %s; got %s", what, describe(n))
		return nil, false
	}
	return n.Content, true
}

// str returns the text of scalar n. Numbers and booleans are taken as
// written (a pool may be called 1); no value, lists and mappings are
// errors.
func (d *decoder) str(n *yaml.Node, path, what string) (string, *yaml.Node, bool) {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == tagNull {
		d.errorf(n, path, "want %s; got %s", what, describe(n))
		return "", n, false
	}
	switch n.ShortTag() {
	case tagStr, tagInt, "!!float", "!!bool", "!!timestamp":
		return n.Value, n, true
	}
	d.errorf(n, path, "want %s; got %s (the YAML tag %s is not supported here)", what, describe(n), n.Tag)
	return "", n, false
}

// boolean returns the value of boolean scalar n (true or false).
func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	n = d.resolve(n)
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		d.errorf(n, path, "want true or false; got %s", describe(n))
		return false, false
	}
	return v, true
}

// integer returns the value of integer scalar n, which must be at least lo
// and, when hi > lo, at most hi.
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	n = d.resolve(n)
	want := fmt.Sprintf("an integer of at least %d", lo)
	if hi > lo {
		want = fmt.Sprintf("an integer from %d to %d", lo, hi)
	}
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != tagInt || n.Decode(&v) != nil {
		d.errorf(n, path, "want %s; got %s", want, describe(n))
		return 0, false
	}
	if v < lo || (hi > lo && v > hi) {
		d.errorf(n, path, "%d is out of range; want %s", v, want)
		return 0, false
	}
	return v, true
}

// number returns the value of n, a number of zero or more (an integer or a
// decimal such as 0.5).
func (d *decoder) number(n *yaml.Node, path string) float64 {
	n = d.resolve(n)
	var v float64
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != tagInt && n.ShortTag() != "!!float") || n.Decode(&v) != nil {
		d.errorf(n, path, "want a number of zero or more, such as 50 or 0.5; got %s", describe(n))
		return 0
	}
	if v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		d.errorf(n, path, "%s is out of range; want a number of zero or more, such as 50 or 0.5", n.Value)
		return 0
	}
	return v
}

const durationHint = "use a Go duration such as 500ms, 10s or 1m"

// durationOrOff returns the value of n, a Go duration string of zero or
// more; 0 (with or without a unit) turns the setting off.
func (d *decoder) durationOrOff(n *yaml.Node, path string) time.Duration {
	if r := d.resolve(n); r.Kind == yaml.ScalarNode && r.ShortTag() != tagNull {
		v, err := time.ParseDuration(r.Value)
		switch {
		case r.Value == "0" || (err == nil && v == 0):
			return 0
		case err == nil && v < 0:
			d.errorf(r, path, "duration %q must not be negative; 0 turns it off, or %s", r.Value, durationHint)
			return 0
		}
	}
	v, _, _ := d.duration(n, path)
	return v
}

// duration returns the value of n, a Go duration string greater than zero.
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, *yaml.Node, bool) {
	n = d.resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == tagNull {
		d.errorf(n, path, "want a duration; got %s; %s", describe(n), durationHint)
		return 0, n, false
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case n.ShortTag() == tagInt || n.ShortTag() == "!!float":
		d.errorf(n, path, "invalid duration %s: a number needs a unit; %s", n.Value, durationHint)
	case err != nil:
		d.errorf(n, path, "invalid duration %q; %s", n.Value, durationHint)
	case v <= 0:
		d.errorf(n, path, "duration %q must be greater than zero; %s", n.Value, durationHint)
	default:
		return v, n, true
	}
	return 0, n, false
}
