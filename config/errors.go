package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one configuration error at a position in a file.
//
// Parse and Load return every error they find as an errors.Join of *Error
// values, in file order; use errors.As, or the Unwrap() []error method of
// the joined error, to get at the fields.
type Error struct {
	// File is the path of the configuration file, as given to Load or Parse.
	File string
	// Line and Col are 1-based; 0 when the position is unknown (for
	// instance when the file cannot be read at all).
	Line, Col int
	// Key is the dotted path of the offending key, such as
	// "pools[0].backends[1].address"; empty for errors about the file as a
	// whole (a YAML syntax error, an empty file).
	Key string
	// Msg says what is wrong and what would be valid.
	Msg string
}

// Error formats e as "FILE:LINE:COL: KEY: MSG", leaving out LINE:COL when
// the position is unknown and KEY when the error concerns the whole file.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Line, max(e.Col, 1))
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// sortErrors puts errs in file order and drops exact repeats, which a node
// reached twice through YAML aliases or merge keys can produce.
func sortErrors(errs []*Error) []*Error {
	seen := make(map[Error]bool, len(errs))
	out := errs[:0]
	for _, e := range errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return out
}
