package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9090", true},
		{"127.0.0.53:9090", true},
		{"[::1]:9090", true},
		{"localhost:9090", true},
		{"LOCALHOST.:9090", true},
		{":9090", false},
		{"0.0.0.0:9090", false},
		{"[::]:9090", false},
		{"10.0.0.1:9090", false},
		{"[fe80::1%eth0]:9090", false},
		{"admin.internal:9090", false},
		{"localhost.example.com:9090", false},
		{"not an address", false},
	} {
		if got := isLoopback(tc.addr); got != tc.want {
			t.Errorf("isLoopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestCheckToken(t *testing.T) {
	for _, tc := range []struct {
		token string
		valid bool
	}{
		{"0123456789abcdef", true},
		{"AZaz09-._~+/", true},
		{"dG9rZW4=", true},
		{"dG9rZW==", true},
		{"", false},
		{"==", false},
		{"a=b", false},
		{"two words", false},
		{"line\nline", false},
		{"tab\there", false},
		{"quote\"", false},
		{"é", false},
	} {
		if got := checkToken(tc.token); (got == "") != tc.valid {
			t.Errorf("checkToken(%q) = %q, want valid %v", tc.token, got, tc.valid)
		}
	}
}

// exposedYAML is a file whose admin listener is on every interface.
const exposedYAML = `listen: "127.0.0.1:0"
tls:
  certificates:
    - cert_file: testdata/certs/cert.pem
      key_file: testdata/certs/key.pem
admin:
  listen: "0.0.0.0:0"
%s
pools: [{name: app, backends: [{address: "127.0.0.1:9001"}]}]
routes: [{pool: app}]
`

func TestAdminTokenFromTheEnvironment(t *testing.T) {
	parse := func(extra string) (*Config, error) {
		return Parse("wsgate.yaml", []byte(strings.Replace(exposedYAML, "%s", extra, 1)))
	}

	t.Setenv(AdminTokenEnv, "")
	if _, err := parse(""); err == nil || !strings.Contains(err.Error(), "wsgate.yaml:7:11: admin.listen: \"0.0.0.0:0\" is not a loopback address") {
		t.Errorf("exposed admin listener without a token: error = %v, want one at admin.listen", err)
	}

	t.Setenv(AdminTokenEnv, " from-the-env\n")
	c, err := parse("")
	if err != nil {
		t.Fatalf("exposed admin listener with %s set: %v", AdminTokenEnv, err)
	}
	if c.Admin.Token != "from-the-env" {
		t.Errorf("Admin.Token = %q, want the environment's, trimmed", c.Admin.Token)
	}

	// The environment wins over the file, which is still checked.
	c, err = parse("  token_file: testdata/tokens/admin.token")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "from-the-env" || c.Admin.TokenFile != "testdata/tokens/admin.token" {
		t.Errorf("Admin = %+v, want the environment's token and the file's path", c.Admin)
	}
	if _, err := parse("  token_file: testdata/tokens/missing.token"); err == nil {
		t.Error("a missing token file with the environment's token set: no error, want one")
	}

	t.Setenv(AdminTokenEnv, "not a token")
	_, err = parse("")
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != AdminTokenEnv || ce.Line != 0 || strings.Contains(ce.Msg, "not a token") {
		t.Errorf("invalid %s: error %v; want one for the variable, without a position or the token's text", AdminTokenEnv, err)
	}
}

// TestTokenFileReadAgain shows that loading the file again reads the token
// file again: this is what makes a reload pick up a new token.
func TestTokenFileReadAgain(t *testing.T) {
	t.Setenv(AdminTokenEnv, "")
	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "admin.token")
	cfgPath := filepath.Join(dir, "wsgate.yaml")
	abs, err := filepath.Abs("testdata/certs")
	if err != nil {
		t.Fatal(err)
	}
	data := strings.ReplaceAll(strings.Replace(exposedYAML, "%s", "  token_file: admin.token", 1), "testdata/certs", abs)
	if err := os.WriteFile(cfgPath, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"first", "second"} {
		if err := os.WriteFile(tokenPath, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if c.Admin.Token != token || c.Admin.TokenFile != tokenPath {
			t.Errorf("Load() Admin = %+v, want token %q from %s", c.Admin, token, tokenPath)
		}
	}
}

// TestAdminListenOverride: an admin address given in place of the file's
// (wsgate run -admin) is held to the same rule.
func TestAdminListenOverride(t *testing.T) {
	t.Setenv(AdminTokenEnv, "")
	data := []byte(`listen: "127.0.0.1:0"
tls:
  certificates:
    - cert_file: testdata/certs/cert.pem
      key_file: testdata/certs/key.pem
pools: [{name: app, backends: [{address: "127.0.0.1:9001"}]}]
routes: [{pool: app}]
`)
	if _, err := (Options{AdminListen: "127.0.0.1:0"}).Parse("wsgate.yaml", data); err != nil {
		t.Errorf("a loopback -admin: %v", err)
	}
	_, err := (Options{AdminListen: "0.0.0.0:0"}).Parse("wsgate.yaml", data)
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "admin.listen" || !strings.Contains(ce.Msg, `"0.0.0.0:0" given in place of the file's is not a loopback address`) {
		t.Errorf("-admin 0.0.0.0:0 without a token: error %v, want one at admin.listen", err)
	}
	t.Setenv(AdminTokenEnv, "token")
	if _, err := (Options{AdminListen: "0.0.0.0:0"}).Parse("wsgate.yaml", data); err != nil {
		t.Errorf("-admin 0.0.0.0:0 with %s: %v", AdminTokenEnv, err)
	}
}
