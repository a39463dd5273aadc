package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/wsgate/wsgate/discovery"
	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/internal/gcpolicy"
	"github.com/wsgate/wsgate/listener"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
	wstls "github.com/wsgate/wsgate/tls"
)

// The keys each mapping accepts, in the order messages list them.
var (
	rootKeys        = []string{"listen", "reuse_port", "tls", "admin", "pools", "routes", "shutdown", "limits", "tunnels", "log", "proxy_protocol", "runtime"}
	tlsKeys         = []string{"certificates", "acme", "http_listen", "session_tickets"}
	ticketKeys      = []string{"disabled", "secret_file", "rotate"}
	acmeKeys        = []string{"domains", "email", "cache_dir", "directory_url", "directory_ca_file", "renew_before"}
	certificateKeys = []string{"cert_file", "key_file"}
	adminKeys       = []string{"listen", "pprof", "token_file"}
	poolKeys        = []string{"name", "backends", "discover", "health_check", "policy", "slow_start"}
	backendKeys     = []string{"address", "weight"}
	discoverKeys    = []string{"name", "type", "port", "interval", "resolver"}
	healthKeys      = []string{"path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold", "expected_status"}
	routeKeys       = []string{"host", "path_prefix", "pool", "allowed_origins"}
	shutdownKeys    = []string{"drain_timeout", "close_spread", "upgrade_timeout"}
	limitsKeys      = []string{"max_header_bytes", "header_timeout", "dial_timeout", "max_attempts", "max_connections",
		"max_connections_per_ip", "handshake_rate_per_ip", "handshake_burst", "max_message_bytes", "tls_handshake_timeout"}
	tunnelsKeys    = []string{"write_timeout", "ping_interval", "ping_timeout", "idle_timeout", "max_lifetime"}
	logKeys        = []string{"format"}
	runtimeKeys    = []string{"gc_percent", "memory_limit"}
	proxyProtoKeys = []string{"trusted_cidrs"}

	// policies are the values of pools[].policy, the balancer's policy
	// names; the first is its default.
	policies = []string{"least_connections", "power_of_two"}
)

const (
	listenHint   = `use host:port such as "127.0.0.1:8443" or ":8443" (port 0-65535)`
	backendHint  = `use host:port such as "127.0.0.1:9001" (port 1-65535) or unix:/absolute/path.sock`
	cidrHint     = "write ADDRESS/BITS, such as 10.0.0.0/8, or 192.0.2.7/32 for one address"
	dnsNameHint  = "write a DNS name such as app.internal, or for SRV the full record name such as _ws._tcp.app.internal"
	resolverHint = `use the DNS server's host:port such as "10.0.0.2:53", or leave resolver out to ask the system's resolver`
)

// root decodes the top-level mapping n.
func (d *decoder) root(n *yaml.Node) *Config {
	f, ok := d.fields(n, "", "", rootKeys)
	if !ok {
		return nil
	}
	c := &Config{
		Path:     d.file,
		Admin:    Admin{Listen: DefaultAdminListen},
		Shutdown: Shutdown{DrainTimeout: proxy.DefaultDrainTimeout, UpgradeTimeout: DefaultUpgradeTimeout},
		Tunnels:  Tunnels{WriteTimeout: proxy.DefaultWriteTimeout},
		Limits: Limits{
			MaxHeaderBytes:      proxy.DefaultMaxHeaderBytes,
			HeaderTimeout:       proxy.DefaultHeaderTimeout,
			DialTimeout:         proxy.DefaultDialTimeout,
			MaxAttempts:         proxy.DefaultMaxAttempts,
			MaxConnectionsPerIP: proxy.DefaultMaxConnectionsPerIP,
			HandshakeRatePerIP:  proxy.DefaultHandshakeRatePerIP,
			HandshakeBurst:      proxy.DefaultHandshakeBurst,
			TLSHandshakeTimeout: proxy.DefaultHandshakeTimeout,
		},
		Log:     Log{Format: DefaultLogFormat},
		Runtime: gcpolicy.Default(),
	}
	if v := f["listen"]; v != nil {
		c.Listen = d.listenAddr(v, "listen")
	} else {
		d.missing(n, "listen", `set the TLS listener's address, such as listen: "127.0.0.1:8443"`)
	}
	if v := f["reuse_port"]; v != nil {
		var ok bool
		if c.ReusePort, ok = d.boolean(v, "reuse_port"); ok && c.ReusePort && !listener.ReusePortSupported {
			d.errorf(d.resolve(v), "reuse_port", "SO_REUSEPORT is not available on %s; remove reuse_port, and run one wsgate process per address", runtime.GOOS)
		}
	}
	if v := f["tls"]; v != nil {
		c.TLS = d.tls(v, "tls", c.Listen)
	} else if len(d.opts.Certificates) == 0 {
		d.missing(n, "tls", "add tls.certificates with at least one cert_file and key_file, or tls.acme")
	}
	c.TLS.Certs = d.opts.Certificates
	var adminListen *yaml.Node
	var tokenFile bool
	if v := f["admin"]; v != nil {
		adminListen, tokenFile = d.admin(v, &c.Admin)
	}
	if a := d.opts.AdminListen; a != "" {
		if problem := checkListenAddr(a); problem != "" {
			d.errs = append(d.errs, &Error{File: d.file, Key: "admin.listen",
				Msg: fmt.Sprintf("invalid listen address %q given in place of the file's: %s; %s", a, problem, listenHint)})
		}
		c.Admin.Listen = a
	}
	d.adminAccess(&c.Admin, adminListen, d.opts.AdminListen != "", tokenFile)
	if v := f["log"]; v != nil {
		d.logSection(v, &c.Log)
	}
	pools, poolsOK := []registry.PoolSpec(nil), false
	if v := f["pools"]; v != nil {
		pools, poolsOK = d.pools(v, "pools")
		c.Pools = pools
	} else {
		d.missing(n, "pools", "add at least one pool with a name and backends")
	}
	if v := f["routes"]; v != nil {
		c.Routes = d.routes(v, "routes", pools, poolsOK)
	} else {
		d.missing(n, "routes", "add at least one route naming a pool, such as routes: [{path_prefix: /, pool: app}]")
	}
	spreadSet := false
	if v := f["shutdown"]; v != nil {
		if sf, ok := d.fields(v, "shutdown", "the shutdown section", shutdownKeys); ok {
			if v := sf["drain_timeout"]; v != nil {
				c.Shutdown.DrainTimeout, _, _ = d.duration(v, "shutdown.drain_timeout")
			}
			if v := sf["upgrade_timeout"]; v != nil {
				c.Shutdown.UpgradeTimeout, _, _ = d.duration(v, "shutdown.upgrade_timeout")
			}
			if v := sf["close_spread"]; v != nil {
				spreadSet = true
				c.Shutdown.CloseSpread = d.durationOrOff(v, "shutdown.close_spread")
				if c.Shutdown.CloseSpread >= c.Shutdown.DrainTimeout && c.Shutdown.DrainTimeout > 0 {
					d.errorf(d.resolve(v), "shutdown.close_spread", "%v is not shorter than shutdown.drain_timeout (%v); the closes must leave the last tunnels time for their close handshakes", c.Shutdown.CloseSpread, c.Shutdown.DrainTimeout)
				}
			}
		}
	}
	if !spreadSet {
		c.Shutdown.CloseSpread = c.Shutdown.DrainTimeout / 3
	}
	if v := f["limits"]; v != nil {
		d.limits(v, "limits", &c.Limits)
	}
	if v := f["tunnels"]; v != nil {
		if tf, ok := d.fields(v, "tunnels", "the tunnels section", tunnelsKeys); ok {
			if v := tf["write_timeout"]; v != nil {
				c.Tunnels.WriteTimeout = d.durationOrOff(v, "tunnels.write_timeout")
			}
			if v := tf["ping_interval"]; v != nil {
				c.Tunnels.PingInterval = d.durationOrOff(v, "tunnels.ping_interval")
			}
			if v := tf["ping_timeout"]; v != nil {
				c.Tunnels.PingTimeout, _, _ = d.duration(v, "tunnels.ping_timeout")
				if c.Tunnels.PingInterval == 0 {
					d.errorf(d.resolve(v), "tunnels.ping_timeout", "set without tunnels.ping_interval, so no ping is ever sent; set ping_interval too, or remove ping_timeout")
				}
			}
			if v := tf["idle_timeout"]; v != nil {
				c.Tunnels.IdleTimeout = d.durationOrOff(v, "tunnels.idle_timeout")
			}
			if v := tf["max_lifetime"]; v != nil {
				c.Tunnels.MaxLifetime = d.durationOrOff(v, "tunnels.max_lifetime")
			}
		}
	}
	if v := f["proxy_protocol"]; v != nil {
		c.ProxyProtocol = d.proxyProtocol(v, "proxy_protocol")
	}
	if v := f["runtime"]; v != nil {
		d.runtimeSection(v, &c.Runtime)
	}
	return c
}

// proxyProtocol decodes the proxy_protocol section.
func (d *decoder) proxyProtocol(n *yaml.Node, path string) ProxyProtocol {
	var pp ProxyProtocol
	f, ok := d.fields(n, path, "the proxy_protocol section", proxyProtoKeys)
	if !ok {
		return pp
	}
	path = join(path, "trusted_cidrs")
	v := f["trusted_cidrs"]
	if v == nil {
		d.missing(d.resolve(n), path, "list the address blocks of the load balancers that send PROXY protocol headers, such as trusted_cidrs: [10.0.0.0/8], or remove proxy_protocol")
		return pp
	}
	items, ok := d.list(v, path, "a list of address blocks such as [10.0.0.0/8]")
	if !ok {
		return pp
	}
	if len(items) == 0 {
		d.errorf(d.resolve(v), path, "the list is empty; list the address blocks of the load balancers that send PROXY protocol headers, such as [10.0.0.0/8], or remove proxy_protocol")
	}
	seen := make(map[netip.Prefix]*yaml.Node)
	for i, item := range items {
		ipath := index(path, i)
		s, ok := d.checkedStr(item, ipath, "an address block such as 10.0.0.0/8", "CIDR", checkCIDR, "; "+cidrHint)
		if !ok {
			continue
		}
		p := netip.MustParsePrefix(s)
		if prev, dup := seen[p]; dup {
			d.errorf(d.resolve(item), ipath, "duplicate CIDR %q, first at line %d; list each block once", s, prev.Line)
			continue
		}
		seen[p] = d.resolve(item)
		pp.TrustedCIDRs = append(pp.TrustedCIDRs, p)
	}
	return pp
}

// tls decodes the tls section; listen is the TLS listener's address, which
// http_listen must differ from.
func (d *decoder) tls(n *yaml.Node, path, listen string) TLS {
	var t TLS
	f, ok := d.fields(n, path, "the tls section", tlsKeys)
	if !ok {
		return t
	}
	hasACME := f["acme"] != nil
	optional := hasACME || len(d.opts.Certificates) > 0
	if hasACME {
		t.ACME = d.acme(f["acme"], join(path, "acme"))
	}
	if v := f["session_tickets"]; v != nil {
		t.Tickets = d.tickets(v, join(path, "session_tickets"))
	}
	if v := f["http_listen"]; v != nil {
		t.HTTPListen = d.listenAddr(v, join(path, "http_listen"))
		if _, port, _ := net.SplitHostPort(listen); t.HTTPListen != "" && t.HTTPListen == listen && port != "0" {
			d.errorf(v, join(path, "http_listen"), "%q is also the TLS listener's address (listen); use another port, such as \":80\"", listen)
		}
	}
	v := f["certificates"]
	if v == nil {
		if !optional {
			d.missing(d.resolve(n), join(path, "certificates"), "list at least one certificate, each with cert_file and key_file, or configure tls.acme")
		}
		return t
	}
	path = join(path, "certificates")
	items, ok := d.list(v, path, "a list of certificates, each with cert_file and key_file")
	if !ok {
		return t
	}
	if len(items) == 0 && !optional {
		d.errorf(v, path, "the list is empty; list at least one certificate, each with cert_file and key_file, or configure tls.acme")
	}
	for i, item := range items {
		t.Certificates = append(t.Certificates, d.certificate(item, index(path, i)))
	}
	return t
}

func (d *decoder) acme(n *yaml.Node, path string) *wstls.ACMEOptions {
	f, ok := d.fields(n, path, "the acme section", acmeKeys)
	if !ok {
		return nil
	}
	n = d.resolve(n)
	a := &wstls.ACMEOptions{DirectoryURL: wstls.LetsEncryptURL}
	if v := f["domains"]; v != nil {
		a.Domains = d.acmeDomains(v, join(path, "domains"))
	} else {
		d.missing(n, join(path, "domains"), "list the names to obtain certificates for, such as domains: [ws.example.com]; no other name is ever asked of the CA")
	}
	if v := f["email"]; v != nil {
		a.Email, _ = d.checkedStr(v, join(path, "email"), "a contact address such as ops@example.com",
			"email", checkEmail, "; write an address such as ops@example.com")
	}
	if v := f["cache_dir"]; v != nil {
		s, sn, ok := d.str(v, join(path, "cache_dir"), "a directory path such as /var/lib/wsgate/acme")
		switch {
		case ok && s == "":
			d.errorf(sn, join(path, "cache_dir"), "the path is empty; set it to a directory that keeps the account key and certificates across restarts, such as /var/lib/wsgate/acme")
		case ok:
			a.CacheDir = d.abs(s)
			if fi, err := os.Stat(a.CacheDir); err == nil && !fi.IsDir() {
				d.errorf(sn, join(path, "cache_dir"), "%q is not a directory; set it to a directory (created with mode 0700 if missing)", a.CacheDir)
			}
		}
	} else {
		d.missing(n, join(path, "cache_dir"), "set it to a directory that keeps the account key and certificates across restarts, such as /var/lib/wsgate/acme; without it every restart asks the CA again and soon hits its rate limits")
	}
	if v := f["directory_url"]; v != nil {
		a.DirectoryURL, _ = d.checkedStr(v, join(path, "directory_url"), "the https URL of an ACME directory",
			"directory_url", checkDirectoryURL, "; use the https URL of an ACME directory, such as "+wstls.LetsEncryptURL+" (the default) or https://acme-staging-v02.api.letsencrypt.org/directory")
	}
	if v := f["directory_ca_file"]; v != nil {
		s, sn, ok := d.str(v, join(path, "directory_ca_file"), "the path of a PEM file of CA certificates")
		switch {
		case ok && s == "":
			d.errorf(sn, join(path, "directory_ca_file"), "the path is empty; set it to a PEM file of the CA certificates that sign the directory's HTTPS certificate, or leave it out to use the system roots")
		case ok:
			a.DirectoryCAFile = d.abs(s)
			d.checkCAFile(a.DirectoryCAFile, sn, join(path, "directory_ca_file"))
		}
	}
	if v := f["renew_before"]; v != nil {
		a.RenewBefore, _, _ = d.duration(v, join(path, "renew_before"))
	}
	return a
}

func (d *decoder) acmeDomains(n *yaml.Node, path string) []string {
	const want = "a list of domain names such as [ws.example.com]"
	items, ok := d.list(n, path, want)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(d.resolve(n), path, "the list is empty; list at least one domain name, such as [ws.example.com]")
	}
	seen := make(map[string]*yaml.Node)
	out := make([]string, 0, len(items))
	for i, item := range items {
		ipath := index(path, i)
		s, sn, ok := d.str(item, ipath, "a domain name such as ws.example.com")
		if !ok {
			continue
		}
		if problem := checkACMEDomain(s); problem != "" {
			d.errorf(sn, ipath, "invalid domain %q: %s", s, problem)
			continue
		}
		key := strings.ToLower(strings.TrimSuffix(s, "."))
		if prev, dup := seen[key]; dup {
			d.errorf(sn, ipath, "duplicate domain %q, first at line %d; list each name once", s, prev.Line)
			continue
		}
		seen[key] = sn
		out = append(out, s)
	}
	return out
}

func (d *decoder) certificate(n *yaml.Node, path string) wstls.CertFile {
	var c wstls.CertFile
	f, ok := d.fields(n, path, "a certificate", certificateKeys)
	if !ok {
		return c
	}
	n = d.resolve(n)
	certNode, certOK := d.filePath(f["cert_file"], n, join(path, "cert_file"), "certificate")
	keyNode, keyOK := d.filePath(f["key_file"], n, join(path, "key_file"), "private key")
	if certOK {
		c.CertFile = d.abs(certNode.Value)
	}
	if keyOK {
		c.KeyFile = d.abs(keyNode.Value)
	}
	if certOK && keyOK {
		d.checkKeyPair(c, certNode, keyNode, path)
	}
	return c
}

// filePath checks the value v of a file key of mapping parent.
func (d *decoder) filePath(v, parent *yaml.Node, path, what string) (*yaml.Node, bool) {
	if v == nil {
		d.missing(parent, path, fmt.Sprintf("set it to the path of the PEM %s file", what))
		return nil, false
	}
	s, n, ok := d.str(v, path, fmt.Sprintf("the path of the PEM %s file", what))
	if ok && s == "" {
		d.errorf(n, path, "the path is empty; set it to the path of the PEM %s file", what)
		ok = false
	}
	return n, ok
}

func (d *decoder) pools(n *yaml.Node, path string) ([]registry.PoolSpec, bool) {
	items, ok := d.list(n, path, "a list of pools, each with a name and backends")
	if !ok {
		return nil, false
	}
	if len(items) == 0 {
		d.errorf(d.resolve(n), path, "the list is empty; add at least one pool with a name and backends")
	}
	pools := make([]registry.PoolSpec, 0, len(items))
	names := make(map[string]*yaml.Node)
	for i, item := range items {
		p, nameNode := d.pool(item, index(path, i))
		if nameNode != nil {
			if prev, dup := names[p.Name]; dup {
				d.errorf(nameNode, index(path, i)+".name", "duplicate pool name %q, first at line %d; give each pool its own name", p.Name, prev.Line)
			} else {
				names[p.Name] = nameNode
			}
		}
		pools = append(pools, p)
	}
	return pools, true
}

// pool decodes one pool and returns the node of its name, nil when the
// name is missing or invalid.
func (d *decoder) pool(n *yaml.Node, path string) (registry.PoolSpec, *yaml.Node) {
	var p registry.PoolSpec
	f, ok := d.fields(n, path, "a pool", poolKeys)
	if !ok {
		return p, nil
	}
	n = d.resolve(n)
	var nameNode *yaml.Node
	if v := f["name"]; v != nil {
		var ok bool
		p.Name, nameNode, ok = d.str(v, join(path, "name"), "a pool name such as app")
		switch {
		case ok && p.Name == "":
			d.errorf(nameNode, join(path, "name"), "the name is empty; give the pool a name such as app")
			nameNode = nil
		case !ok:
			nameNode = nil
		}
	} else {
		d.missing(n, join(path, "name"), "give the pool a name that routes refer to, such as name: app")
	}
	discover := f["discover"]
	if v := f["backends"]; v != nil {
		p.Backends = d.backends(v, join(path, "backends"), discover != nil)
	} else if discover == nil {
		d.missing(n, join(path, "backends"), `list at least one backend, such as backends: [{address: "127.0.0.1:9001"}], or find them in DNS with discover`)
	}
	if discover != nil {
		p.Discover = d.discover(discover, join(path, "discover"))
	}
	if v := f["health_check"]; v != nil {
		p.Check = d.healthCheck(v, join(path, "health_check"))
	} else if discover != nil {
		d.errorf(n, join(path, "health_check"), "required with discover: a discovered address gets connections only once a health probe passes; add a health_check block, such as health_check: {path: /healthz}")
	}
	if v := f["policy"]; v != nil {
		p.Policy = d.policy(v, join(path, "policy"))
	}
	if v := f["slow_start"]; v != nil {
		p.SlowStart = d.durationOrOff(v, join(path, "slow_start"))
	}
	return p, nameNode
}

// policy decodes a pool's balancing policy.
func (d *decoder) policy(n *yaml.Node, path string) string {
	valid := policies[0] + " (the default), " + strings.Join(policies[1:], ", ")
	s, sn, ok := d.str(n, path, "a balancing policy: "+valid)
	if ok && !slices.Contains(policies, s) {
		msg := fmt.Sprintf("unknown policy %q", s)
		if sg := suggest(s, policies); sg != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", sg)
		}
		d.errorf(sn, path, "%s; valid policies: %s", msg, valid)
	}
	return s
}

// backends decodes a pool's backends; the list may be empty when the pool
// discovers others.
func (d *decoder) backends(n *yaml.Node, path string, discovers bool) []registry.BackendSpec {
	items, ok := d.list(n, path, "a list of backends, each with an address")
	if !ok {
		return nil
	}
	if len(items) == 0 && !discovers {
		d.errorf(d.resolve(n), path, "the list is empty; list at least one backend, such as [{address: \"127.0.0.1:9001\"}], or find them in DNS with discover")
	}
	var out []registry.BackendSpec
	seen := make(map[string]*yaml.Node)
	for i, item := range items {
		ipath := index(path, i)
		f, ok := d.fields(item, ipath, "a backend", backendKeys)
		if !ok {
			continue
		}
		be := registry.BackendSpec{Weight: registry.DefaultWeight}
		if v := f["address"]; v != nil {
			addr, an, ok := d.str(v, join(ipath, "address"), `a backend address such as "127.0.0.1:9001" or unix:/path/to.sock`)
			if ok {
				if problem := checkBackendAddr(addr); problem != "" {
					d.errorf(an, join(ipath, "address"), "invalid backend address %q: %s; %s", addr, problem, backendHint)
				} else if prev, dup := seen[addr]; dup {
					d.errorf(an, join(ipath, "address"), "duplicate backend address %q, first at line %d; list each backend once and use weight to send it more connections", addr, prev.Line)
				} else {
					seen[addr] = an
				}
				be.Address = addr
			}
		} else {
			d.missing(d.resolve(item), join(ipath, "address"), "set it to "+strings.TrimPrefix(backendHint, "use "))
		}
		if v := f["weight"]; v != nil {
			be.Weight, _ = d.integer(v, join(ipath, "weight"), 1, 0)
		}
		out = append(out, be)
	}
	return out
}

// discover decodes a pool's DNS discovery.
func (d *decoder) discover(n *yaml.Node, path string) *registry.Discover {
	f, ok := d.fields(n, path, "a discover block with name, type and (for A and AAAA) port", discoverKeys)
	if !ok {
		return nil
	}
	n = d.resolve(n)
	ds := &registry.Discover{Interval: discovery.DefaultInterval}
	if v := f["name"]; v != nil {
		ds.Name, _ = d.checkedStr(v, join(path, "name"), "a DNS name such as app.internal", "DNS name", checkDNSName, "; "+dnsNameHint)
	} else {
		d.missing(n, join(path, "name"), "set the DNS name to resolve; "+dnsNameHint)
	}
	types := discovery.Types()
	typesHint := strings.Join(types, ", ")
	typeOK := false
	if v := f["type"]; v != nil {
		s, sn, ok := d.str(v, join(path, "type"), "a record type: "+typesHint)
		switch {
		case ok && !slices.Contains(types, s):
			msg := fmt.Sprintf("unknown record type %q", s)
			if i := slices.IndexFunc(types, func(t string) bool { return strings.EqualFold(t, s) }); i >= 0 {
				msg += fmt.Sprintf(" (did you mean %q?)", types[i])
			}
			d.errorf(sn, join(path, "type"), "%s; valid types: %s", msg, typesHint)
		case ok:
			ds.Type, typeOK = s, true
		}
	} else {
		d.missing(n, join(path, "type"), "set the record type to ask for: "+typesHint)
	}
	port := f["port"]
	if port != nil {
		ds.Port, _ = d.integer(port, join(path, "port"), 1, 65535)
	}
	switch {
	case !typeOK:
	case ds.Type == discovery.TypeSRV && port != nil:
		d.errorf(d.resolve(port), join(path, "port"), "SRV records carry each target's port; remove port")
	case ds.Type != discovery.TypeSRV && port == nil:
		d.missing(n, join(path, "port"), fmt.Sprintf("set the backends' port, such as port: 9001 (%s records carry no port)", ds.Type))
	}
	if v := f["interval"]; v != nil {
		ds.Interval, _, _ = d.duration(v, join(path, "interval"))
	}
	if v := f["resolver"]; v != nil {
		ds.Resolver, _ = d.checkedStr(v, join(path, "resolver"), "the host:port of a DNS server", "resolver address", checkResolverAddr, "; "+resolverHint)
	}
	return ds
}

func (d *decoder) healthCheck(n *yaml.Node, path string) *registry.HealthCheck {
	f, ok := d.fields(n, path, "a health check", healthKeys)
	if !ok {
		return nil
	}
	hc := new(healthcheck.DefaultCheck())
	if v := f["path"]; v != nil {
		s, sn, ok := d.str(v, join(path, "path"), "an HTTP path such as /healthz")
		if ok && !strings.HasPrefix(s, "/") {
			d.errorf(sn, join(path, "path"), "path %q must start with '/'; use an HTTP path such as /healthz", s)
		}
		hc.Path = s
	}
	var intervalNode, timeoutNode *yaml.Node
	intervalOK, timeoutOK := true, true
	if v := f["interval"]; v != nil {
		hc.Interval, intervalNode, intervalOK = d.duration(v, join(path, "interval"))
	}
	if v := f["timeout"]; v != nil {
		hc.Timeout, timeoutNode, timeoutOK = d.duration(v, join(path, "timeout"))
	}
	if intervalOK && timeoutOK && hc.Timeout > hc.Interval {
		switch {
		case timeoutNode != nil:
			d.errorf(timeoutNode, join(path, "timeout"), "timeout %v is longer than the interval %v%s; use a timeout no longer than the interval",
				hc.Timeout, hc.Interval, defaultNote(intervalNode))
		default:
			d.errorf(intervalNode, join(path, "interval"), "interval %v is shorter than the timeout %v (the default); set a longer interval, or a timeout no longer than it",
				hc.Interval, hc.Timeout)
		}
	}
	if v := f["healthy_threshold"]; v != nil {
		hc.HealthyThreshold, _ = d.integer(v, join(path, "healthy_threshold"), 1, 0)
	}
	if v := f["unhealthy_threshold"]; v != nil {
		hc.UnhealthyThreshold, _ = d.integer(v, join(path, "unhealthy_threshold"), 1, 0)
	}
	if v := f["expected_status"]; v != nil {
		hc.ExpectedStatus, _ = d.integer(v, join(path, "expected_status"), 100, 599)
	}
	return hc
}

func defaultNote(n *yaml.Node) string {
	if n == nil {
		return " (the default)"
	}
	return ""
}

func (d *decoder) routes(n *yaml.Node, path string, pools []registry.PoolSpec, poolsOK bool) []proxy.Route {
	items, ok := d.list(n, path, "a list of routes, each naming a pool")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(d.resolve(n), path, "the list is empty; add at least one route, such as [{path_prefix: /, pool: app}]")
	}
	var names []string
	for _, p := range pools {
		if p.Name != "" && !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	type routeKey struct{ host, prefix string }
	seen := make(map[routeKey]*yaml.Node)
	var out []proxy.Route
	for i, item := range items {
		ipath := index(path, i)
		f, ok := d.fields(item, ipath, "a route", routeKeys)
		if !ok {
			continue
		}
		item = d.resolve(item)
		r := proxy.Route{PathPrefix: proxy.DefaultPathPrefix}
		valid := true
		if v := f["host"]; v != nil {
			s, ok := d.checkedStr(v, join(ipath, "host"), `a host name such as ws.example.com, or "" for any host`,
				"host", checkRouteHost, "")
			r.Host, valid = s, valid && ok
		}
		if v := f["path_prefix"]; v != nil {
			s, ok := d.checkedStr(v, join(ipath, "path_prefix"), "a path prefix such as / or /ws",
				"path_prefix", checkPathPrefix, "; use a path such as / or /ws")
			r.PathPrefix, valid = s, valid && ok
		}
		if v := f["pool"]; v != nil {
			s, sn, ok := d.str(v, join(ipath, "pool"), "the name of a pool")
			switch {
			case ok && s == "":
				d.errorf(sn, join(ipath, "pool"), "the pool name is empty; name the pool to send matching connections to, such as pool: app")
			case ok && poolsOK && len(names) > 0 && !slices.Contains(names, s):
				// With no valid pool name at all, the pools' own errors say it.
				d.errorf(sn, join(ipath, "pool"), "no pool named %q; defined pools: %s", s, strings.Join(names, ", "))
			}
			r.Pool = s
		} else {
			d.missing(item, join(ipath, "pool"), "name the pool to send matching connections to, such as pool: app")
		}
		if v := f["allowed_origins"]; v != nil {
			r.AllowedOrigins = d.origins(v, join(ipath, "allowed_origins"))
		}
		if valid {
			k := routeKey{strings.ToLower(r.Host), r.PathPrefix}
			if prev, dup := seen[k]; dup {
				d.errorf(item, ipath, "duplicate route for host %q and path_prefix %q, first at line %d; each host and path_prefix pair may be routed once", r.Host, r.PathPrefix, prev.Line)
			} else {
				seen[k] = item
			}
		}
		out = append(out, r)
	}
	return out
}

func (d *decoder) origins(n *yaml.Node, path string) []string {
	const want = "a list of origins such as [https://app.example.com]"
	items, ok := d.list(n, path, want)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		ipath := index(path, i)
		s, _ := d.checkedStr(item, ipath, "an origin such as https://app.example.com",
			"origin", checkOrigin, "; use scheme://host[:port] such as https://app.example.com")
		out = append(out, s)
	}
	return out
}

func (d *decoder) limits(n *yaml.Node, path string, l *Limits) {
	f, ok := d.fields(n, path, "the limits section", limitsKeys)
	if !ok {
		return
	}
	if v := f["max_header_bytes"]; v != nil {
		l.MaxHeaderBytes, _ = d.integer(v, join(path, "max_header_bytes"), 1024, 0)
	}
	if v := f["header_timeout"]; v != nil {
		l.HeaderTimeout, _, _ = d.duration(v, join(path, "header_timeout"))
	}
	if v := f["dial_timeout"]; v != nil {
		l.DialTimeout, _, _ = d.duration(v, join(path, "dial_timeout"))
	}
	if v := f["max_connections"]; v != nil {
		l.MaxConnections, _ = d.integer(v, join(path, "max_connections"), 1, 0)
	}
	if v := f["max_attempts"]; v != nil {
		l.MaxAttempts, _ = d.integer(v, join(path, "max_attempts"), 1, 10)
	}
	if v := f["max_connections_per_ip"]; v != nil {
		l.MaxConnectionsPerIP, _ = d.integer(v, join(path, "max_connections_per_ip"), 0, 0)
	}
	if v := f["handshake_rate_per_ip"]; v != nil {
		l.HandshakeRatePerIP = d.number(v, join(path, "handshake_rate_per_ip"))
	}
	if v := f["handshake_burst"]; v != nil {
		l.HandshakeBurst, _ = d.integer(v, join(path, "handshake_burst"), 1, 0)
	}
	if v := f["max_message_bytes"]; v != nil {
		n, _ := d.integer(v, join(path, "max_message_bytes"), 0, 0)
		l.MaxMessageBytes = int64(n)
	}
	if v := f["tls_handshake_timeout"]; v != nil {
		l.TLSHandshakeTimeout, _, _ = d.duration(v, join(path, "tls_handshake_timeout"))
	}
}

// listenAddr returns the listener address in n.
func (d *decoder) listenAddr(n *yaml.Node, path string) string {
	s, _ := d.checkedStr(n, path, `a listen address such as "127.0.0.1:8443" or ":8443"`,
		"listen address", checkListenAddr, "; "+listenHint)
	return s
}

// checkedStr decodes string scalar n (described by what) and checks it
// with check; a problem is reported as `invalid LABEL "VALUE": PROBLEM`
// followed by hint. It returns the string as written and whether it is
// a valid value.
func (d *decoder) checkedStr(n *yaml.Node, path, what, label string, check func(string) string, hint string) (string, bool) {
	s, sn, ok := d.str(n, path, what)
	if !ok {
		return s, false
	}
	if problem := check(s); problem != "" {
		d.errorf(sn, path, "invalid %s %q: %s%s", label, s, problem, hint)
		return s, false
	}
	return s, true
}
