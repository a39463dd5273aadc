package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Options adjust how a document is read. The zero value reads it as
// written.
type Options struct {
	// AdminListen, when not empty, replaces admin.listen (wsgate run
	// -admin ADDR, so that several processes can share one file), and is
	// checked like it.
	AdminListen string
	// Certificates are in-memory certificate/key pairs (the demo's
	// self-signed one) to serve after the document's tls.certificates.
	// With any, tls.certificates, or the whole tls section, may be left
	// out. They end up in TLS.Certs, unchecked: tls.NewProvider checks
	// them.
	Certificates []tls.Certificate
}

// Load reads and parses the file at path. See Parse.
func Load(path string) (*Config, error) {
	return Options{}.Load(path)
}

// Parse parses data as if read from path: path appears in every error, and
// relative certificate paths are resolved against filepath.Dir(path).
//
// Parse checks everything it can, including that each certificate file and
// key file can be read and form a pair. On failure it returns a nil *Config
// and an errors.Join of every *Error found, in file order.
func Parse(path string, data []byte) (*Config, error) {
	return Options{}.Parse(path, data)
}

// Load is the package's Load with o.
func (o Options) Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read configuration file: %v", err)}
	}
	return o.Parse(path, data)
}

// Parse is the package's Parse with o.
func (o Options) Parse(path string, data []byte) (*Config, error) {
	d := &decoder{file: path, dir: filepath.Dir(path), opts: o}
	c := d.parse(data)
	if len(d.errs) > 0 {
		errs := sortErrors(d.errs)
		joined := make([]error, len(errs))
		for i, e := range errs {
			joined[i] = e
		}
		return nil, errors.Join(joined...)
	}
	return c, nil
}

// decoder walks one file's yaml.Node tree, collecting errors as it goes.
type decoder struct {
	file string // as given to Parse, for errors
	dir  string // against which relative certificate paths resolve
	opts Options
	errs []*Error

	// budget bounds the nodes visited, which aliases could otherwise
	// multiply far beyond the size of the file.
	budget int
}

// errBudget is panicked by resolve when the budget runs out and recovered
// by parse; it never leaves the package.
type errBudget struct{ n *yaml.Node }

func (d *decoder) parse(data []byte) (c *Config) {
	doc, ok := d.document(data)
	if !ok {
		return nil
	}
	d.budget = 4*countNodes(doc) + 1000
	defer func() {
		if v := recover(); v != nil {
			eb, ok := v.(errBudget)
			if !ok {
				panic(v)
			}
			d.errorf(eb.n, "", "the document expands to too many values through aliases; write the repeated parts out or use fewer aliases")
			c = nil
		}
	}()
	return d.root(doc)
}

// document parses data into the node of its single YAML document.
func (d *decoder) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeYAML(dec, &doc); err != nil {
		if err == io.EOF {
			d.errs = append(d.errs, d.emptyError())
		} else {
			d.errs = append(d.errs, d.syntaxError(data, err))
		}
		return nil, false
	}
	n := &doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		d.errs = append(d.errs, d.emptyError())
		return nil, false
	}
	// A file holds one document; a second one would be silently ignored.
	for {
		var extra yaml.Node
		err := decodeYAML(dec, &extra)
		if err == io.EOF {
			break
		}
		if err != nil {
			d.errs = append(d.errs, d.syntaxError(data, err))
			return nil, false
		}
		if len(extra.Content) == 1 && extra.Content[0].ShortTag() == "!!null" {
			continue // a trailing "---" or an empty document
		}
		d.errorf(&extra, "", "a second YAML document; a configuration file holds exactly one, so remove this \"---\" and what follows or merge it into the first")
		return nil, false
	}
	return n, true
}

// decodeYAML is dec.Decode, turning a panic inside the YAML library (it
// has had a few on malformed input) into an error.
func decodeYAML(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("yaml: %v", v)
		}
	}()
	return dec.Decode(n)
}

func (d *decoder) emptyError() *Error {
	return &Error{File: d.file, Line: 1, Col: 1, Msg: "the configuration is empty; it needs at least listen, tls.certificates, pools and routes (see examples/minimal.yaml)"}
}

var (
	yamlLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlAnchorRE = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// parserProblems are the messages of the YAML library's parser (as opposed
// to its scanner). For these the library reports the 0-based line of the
// enclosing collection, and omits the line altogether when that is 0.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// syntaxError converts an error of the YAML library ("yaml: line N: msg")
// into an *Error at FILE:N:1. The library gives no line for problems on the
// first line, which is where those are reported.
func (d *decoder) syntaxError(data []byte, err error) *Error {
	msg := err.Error()
	line, col := 1, 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserProblems[msg] {
			line++
		}
	} else if m := yamlAnchorRE.FindStringSubmatch(msg); m != nil {
		line, col = position(data, "*"+m[1])
		msg = strings.TrimPrefix(msg, "yaml: ")
		msg += "; define it first with &" + m[1] + " on an earlier value"
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if parserProblems[msg] {
			line = 1
		}
	}
	return &Error{File: d.file, Line: max(line, 1), Col: col, Msg: "invalid YAML: " + msg}
}

// position returns the 1-based line and column of the first occurrence of
// s in data, or 1, 1.
func position(data []byte, s string) (line, col int) {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		return 1, 1
	}
	line = 1 + bytes.Count(data[:i], []byte("\n"))
	col = 1 + i - (bytes.LastIndexByte(data[:i], '\n') + 1)
	return line, col
}

// countNodes counts the nodes of the tree under n without following aliases.
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

// errorf records an error at n's position.
func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	e := &Error{File: d.file, Line: 1, Col: 1, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil && n.Line > 0 {
		e.Line, e.Col = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// missing records that the mapping parent lacks the required key.
func (d *decoder) missing(parent *yaml.Node, key, want string) {
	d.errorf(parent, key, "required key is missing; %s", want)
}
