package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigParse checks that Parse never panics and that, when it fails,
// every error it returns is an *Error with a position.
func FuzzConfigParse(f *testing.F) {
	f.Setenv(AdminTokenEnv, "") // its errors have no position in the file
	for _, pattern := range []string{"testdata/good/*.yaml", "testdata/bad/*.yaml", "../examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(""))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("<<: {listen: x}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Relative certificate paths resolve against testdata/good, where
		// the seeds expect ../certs.
		c, err := Parse("testdata/good/fuzz.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("Parse() = nil, nil")
			}
			return
		}
		if c != nil {
			t.Fatalf("Parse() returned a *Config and an error: %v", err)
		}
		for _, e := range configErrors(t, err) {
			if e.File != "testdata/good/fuzz.yaml" || e.Msg == "" {
				t.Errorf("error %q: want File testdata/good/fuzz.yaml and a message", e)
			}
		}
	})
}

// TestParseAliasExpansion checks that a document made to expand
// exponentially through aliases and merge keys is rejected quickly.
func TestParseAliasExpansion(t *testing.T) {
	var b strings.Builder
	b.WriteString("listen: \":0\"\nx:\n  - &m0 {listen: \":0\"}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	b.WriteString("admin: {<<: [*m40, *m40]}\n")
	c, err := Parse("laughs.yaml", []byte(b.String()))
	if err == nil {
		t.Fatalf("Parse() = %+v, nil; want errors", c)
	}
	found := false
	for _, e := range configErrors(t, err) {
		found = found || strings.Contains(e.Msg, "too many values through aliases")
	}
	if !found {
		t.Errorf("Parse() errors = %v; want one about alias expansion", err)
	}
}
