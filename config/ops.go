package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/wsgate/wsgate/internal/gcpolicy"
	wstls "github.com/wsgate/wsgate/tls"
)

// The operator's side of the file: the admin section with its access
// token, the log section, and the runtime section (the garbage
// collector's policy).

// AdminTokenEnv is the environment variable that may hold the admin token.
// When it is set (not empty), it is the token and admin.token_file is only
// checked, not used.
const AdminTokenEnv = "WSGATE_ADMIN_TOKEN"

// Log formats.
const (
	LogText = "text"
	LogJSON = "json"
)

// DefaultLogFormat applies when the file has no log.format.
const DefaultLogFormat = LogText

// maxTokenFileSize bounds how much of a token file is read.
const maxTokenFileSize = 4096

const tokenHint = "write one token on one line, such as the output of: openssl rand -hex 32"

// admin decodes the admin section n into a. It returns the node of
// admin.listen, nil when the file leaves it out, and whether the file
// names a token file (valid or not).
func (d *decoder) admin(n *yaml.Node, a *Admin) (listen *yaml.Node, tokenFile bool) {
	f, ok := d.fields(n, "admin", "the admin section", adminKeys)
	if !ok {
		return nil, false
	}
	if v := f["listen"]; v != nil {
		a.Listen = d.listenAddr(v, "admin.listen")
		listen = d.resolve(v)
	}
	if v := f["pprof"]; v != nil {
		a.Pprof, _ = d.boolean(v, "admin.pprof")
	}
	if v := f["token_file"]; v != nil {
		a.TokenFile, a.Token = d.tokenFile(v, "admin.token_file")
	}
	return listen, f["token_file"] != nil
}

// tokenFile checks the token file named by n and returns its absolute
// path and the token in it; the token is "" after an error.
func (d *decoder) tokenFile(n *yaml.Node, path string) (file, token string) {
	s, sn, ok := d.str(n, path, "the path of a file holding the admin token")
	if !ok {
		return "", ""
	}
	if s == "" {
		d.errorf(sn, path, "the path is empty; set it to a file holding the admin token, or leave token_file out")
		return "", ""
	}
	file = d.abs(s)
	data, err := readSmallFile(file, maxTokenFileSize)
	if err != nil {
		d.errorf(sn, path, "cannot read token file %q: %v; set token_file to a readable file (mode 0600) holding the token", file, err)
		return file, ""
	}
	token = strings.TrimSpace(string(data))
	if problem := checkToken(token); problem != "" {
		d.errorf(sn, path, "token file %q %s; %s", file, problem, tokenHint)
		return file, ""
	}
	return file, token
}

// adminAccess sets the token from the environment when it is there, and
// refuses an admin listener beyond loopback that no token guards. listen
// is the node of admin.listen, nil when the file leaves it out (the
// default is loopback); overridden says that Options.AdminListen replaced
// it. With tokenFile set, a token was meant, and the token file's own
// errors say what is wrong.
func (d *decoder) adminAccess(a *Admin, listen *yaml.Node, overridden, tokenFile bool) {
	if env := strings.TrimSpace(os.Getenv(AdminTokenEnv)); env != "" {
		if problem := checkToken(env); problem != "" {
			// Not in the file: no position to give.
			d.errs = append(d.errs, &Error{File: d.file, Key: AdminTokenEnv, Msg: fmt.Sprintf("the environment variable %s; %s", problem, tokenHint)})
		}
		a.Token = env
	}
	if (listen == nil && !overridden) || a.Token != "" || tokenFile || isLoopback(a.Listen) || checkListenAddr(a.Listen) != "" {
		return
	}
	const problem = "%q%s is not a loopback address and no admin token is set, so anyone who reaches it could read the backends and drain them; set admin.token_file (or the %s environment variable), or listen on 127.0.0.1"
	if overridden {
		// Not in the file: no position to give.
		d.errs = append(d.errs, &Error{File: d.file, Key: "admin.listen", Msg: fmt.Sprintf(problem, a.Listen, " given in place of the file's", AdminTokenEnv)})
		return
	}
	d.errorf(listen, "admin.listen", problem, a.Listen, "", AdminTokenEnv)
}

// checkToken checks a bearer token: RFC 6750's b64token, letters, digits
// and -._~+/ with = only at the end. The message never quotes the token.
func checkToken(t string) string {
	if t == "" {
		return "is empty"
	}
	body := strings.TrimRight(t, "=")
	if body == "" {
		return "holds only '=' characters"
	}
	for _, r := range body {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~+/", r)) {
			return "holds a character a bearer token cannot have (a space, a second line or punctuation)"
		}
	}
	return ""
}

// isLoopback reports whether listen address addr accepts connections from
// this machine only: a loopback IP address, or localhost. An empty host
// is every interface; another name may resolve to anything.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i > 0 {
		host = host[:i]
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logSection decodes the log section n into l.
func (d *decoder) logSection(n *yaml.Node, l *Log) {
	f, ok := d.fields(n, "log", "the log section", logKeys)
	if !ok {
		return
	}
	if v := f["format"]; v != nil {
		if s, ok := d.checkedStr(v, "log.format", "a log format, text or json", "log format", checkLogFormat, "; use text or json"); ok {
			l.Format = s
		}
	}
}

// maxGCPercent bounds runtime.gc_percent: past it the heap may grow
// tenfold between collections, which a memory limit, not a percent, is
// the way to allow.
const maxGCPercent = 1000

// runtimeSection decodes the runtime section n into p, which holds the
// defaults.
func (d *decoder) runtimeSection(n *yaml.Node, p *gcpolicy.Policy) {
	f, ok := d.fields(n, "runtime", "the runtime section", runtimeKeys)
	if !ok {
		return
	}
	var offAt *yaml.Node
	if v := f["gc_percent"]; v != nil {
		if r := d.resolve(v); r.Kind == yaml.ScalarNode && r.ShortTag() == tagStr && r.Value == "off" {
			p.GCPercent, offAt = gcpolicy.Off, r
		} else if pct, ok := d.integer(v, "runtime.gc_percent", 1, maxGCPercent); ok {
			p.GCPercent = pct
		}
	}
	if v := f["memory_limit"]; v != nil {
		const hint = "; use bytes with a unit such as 512MiB or 2GiB, a percent of the memory available (the cgroup's limit, else the host's) such as 90%, or off"
		s, sn, ok := d.str(v, "runtime.memory_limit", "a memory limit such as 512MiB or 90%")
		if ok {
			if l, err := gcpolicy.ParseLimit(s); err != nil {
				d.errorf(sn, "runtime.memory_limit", "invalid memory limit %q: %v%s", s, err, hint)
			} else {
				p.MemoryLimit = l
			}
		}
	}
	if offAt != nil && p.MemoryLimit.IsZero() {
		d.errorf(offAt, "runtime.gc_percent", "off with no memory limit lets the heap grow without bound; set runtime.memory_limit too, or give a percent such as %d", gcpolicy.DefaultGCPercent)
	}
}

func checkLogFormat(s string) string {
	if s != LogText && s != LogJSON {
		return "not a format wsgate writes"
	}
	return ""
}

// readSmallFile reads a regular file of at most limit bytes (so that a
// path such as /dev/zero or a FIFO cannot hang the check).
func readSmallFile(name string, limit int64) ([]byte, error) {
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		return nil, unwrapPath(err)
	case !fi.Mode().IsRegular():
		return nil, errors.New("not a regular file")
	case fi.Size() > limit:
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	data, err := os.ReadFile(name)
	return data, unwrapPath(err)
}

// maxTicketSecretFile bounds tls.session_tickets.secret_file's size.
const maxTicketSecretFile = 4 << 10

// tickets decodes tls.session_tickets.
func (d *decoder) tickets(n *yaml.Node, path string) wstls.TicketOptions {
	var t wstls.TicketOptions
	f, ok := d.fields(n, path, "the session_tickets section", ticketKeys)
	if !ok {
		return t
	}
	if v := f["disabled"]; v != nil {
		t.Disabled, _ = d.boolean(v, join(path, "disabled"))
	}
	if v := f["rotate"]; v != nil {
		t.Rotate, _, _ = d.duration(v, join(path, "rotate"))
		if t.Rotate > wstls.TicketLifetime {
			d.errorf(d.resolve(v), join(path, "rotate"), "%v is longer than the %v a ticket key is kept; use %v or less", t.Rotate, wstls.TicketLifetime, wstls.TicketLifetime)
		}
	}
	if v := f["secret_file"]; v != nil {
		key := join(path, "secret_file")
		s, sn, ok := d.str(v, key, "the path of a file holding the session ticket secret")
		if !ok {
			return t
		}
		file := d.abs(s)
		data, err := readSmallFile(file, maxTicketSecretFile)
		switch {
		case err != nil:
			d.errorf(sn, key, "cannot read %q: %v; set secret_file to a readable file (mode 0600) holding at least %d random bytes, such as `openssl rand -base64 48`", file, err, wstls.MinTicketSecret)
		case len(bytes.TrimSpace(data)) < wstls.MinTicketSecret:
			d.errorf(sn, key, "%q holds %d bytes; the secret must be at least %d, such as `openssl rand -base64 48`", file, len(bytes.TrimSpace(data)), wstls.MinTicketSecret)
		default:
			t.Secret = bytes.TrimSpace(data)
		}
	}
	return t
}
