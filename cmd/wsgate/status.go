package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wsgate/wsgate/admin"
	"github.com/wsgate/wsgate/config"
)

// statusTimeout bounds the whole exchange with the admin listener.
const statusTimeout = 5 * time.Second

// statusCmd prints the backends table of a running wsgate's admin API.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	adminURL := fs.String("admin", "http://"+config.DefaultAdminListen, "the admin listener's `URL` (or host:port)")
	tokenFile := fs.String("token-file", "", "`file` holding the admin token (default: the "+config.AdminTokenEnv+" environment variable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wsgate status: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	token := strings.TrimSpace(os.Getenv(config.AdminTokenEnv))
	if *tokenFile != "" {
		data, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "wsgate status: read the token file:", err)
			return 1
		}
		token = strings.TrimSpace(string(data))
	}
	base := strings.TrimSuffix(*adminURL, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	backends, err := fetchBackends(ctx, base, token)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate status:", err)
		return 1
	}
	writeStatus(stdout, backends)
	return 0
}

// writeStatus prints the backends as aligned columns. REPORTED (the
// backend's own count from its health check, reported load) and INHERITED
// (what an older generation still holds, during a binary upgrade) appear
// only when some backend has them.
func writeStatus(w io.Writer, backends []admin.BackendStatus) {
	var reported, inherited bool
	for _, b := range backends {
		reported = reported || b.ReportedConnections != nil
		inherited = inherited || b.InheritedConnections != 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "POOL\tBACKEND\tSTATE\tACTIVE\tTOTAL"
	if reported {
		header += "\tREPORTED"
	}
	if inherited {
		header += "\tINHERITED"
	}
	fmt.Fprintln(tw, header)
	for _, b := range backends {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d", b.Pool, b.Address, b.State, b.ActiveConnections, b.TotalConnections)
		if reported {
			if b.ReportedConnections != nil {
				fmt.Fprintf(tw, "\t%d", *b.ReportedConnections)
			} else {
				fmt.Fprint(tw, "\t-")
			}
		}
		if inherited {
			fmt.Fprintf(tw, "\t%d", b.InheritedConnections)
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush() // errors of w show in the caller's exit status
}

// errUnauthorized is the admin listener's 401.
var errUnauthorized = errors.New("401 Unauthorized")

// fetchBackends gets /api/backends from the admin listener at base.
func fetchBackends(ctx context.Context, base, token string) ([]admin.BackendStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	url := base + "/api/backends"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad -admin %q: %w", base, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin listener at %s (is wsgate running, and is -admin its admin.listen?): %w", base, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized && token == "":
		return nil, fmt.Errorf("the admin listener at %s needs a token (%w): give -token-file FILE or set %s", base, errUnauthorized, config.AdminTokenEnv)
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("the admin listener at %s refused the token (%w): check -token-file or %s against its admin.token_file", base, errUnauthorized, config.AdminTokenEnv)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var out []admin.BackendStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("GET %s: bad answer: %w", url, err)
	}
	return out, nil
}
