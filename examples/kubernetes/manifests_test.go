// The Kubernetes example's manifests, checked without a cluster: every
// document decodes strictly (no unknown or duplicate field) into the
// Kubernetes API type of its kind, and the settings that graceful
// shutdown, reload and client addresses depend on hold.
//
// A module of its own, so that k8s.io/api and its dependencies stay out
// of wsgate's go.mod; .ci/run runs it.
package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// shutdownMargin is the least time terminationGracePeriodSeconds leaves
// beyond preStop and the drain: the process's exit, a slow node.
const shutdownMargin = 5 * time.Second

// objects are the example's decoded documents by kind and name.
type objects struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	namespaces  map[string]*corev1.Namespace
	pdbs        map[string]*policyv1.PodDisruptionBudget
}

// typeMeta is what says which type a document is.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// decodeStrict decodes one YAML document into the API type of its kind,
// refusing duplicate keys and any field the type does not have, and
// records it.
func (o *objects) decodeStrict(doc []byte) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	var tm typeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return err
	}
	strict := func(v any) error {
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
		}
		return nil
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		return decodeInto(strict, o.deployments)
	case "v1 Service":
		return decodeInto(strict, o.services)
	case "v1 ConfigMap":
		return decodeInto(strict, o.configMaps)
	case "v1 Secret":
		return decodeInto(strict, o.secrets)
	case "v1 Namespace":
		return decodeInto(strict, o.namespaces)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(strict, o.pdbs)
	}
	return fmt.Errorf("apiVersion %q kind %q: not a type this test knows; add it", tm.APIVersion, tm.Kind)
}

// named is an API object with ObjectMeta.
type named interface{ GetName() string }

func decodeInto[T any, PT interface {
	*T
	named
}](strict func(any) error, into map[string]PT) error {
	v := PT(new(T))
	if err := strict(v); err != nil {
		return err
	}
	if _, dup := into[v.GetName()]; dup || v.GetName() == "" {
		return fmt.Errorf("name %q: empty or used twice", v.GetName())
	}
	into[v.GetName()] = v
	return nil
}

// loadManifests decodes every document of every *.yaml file here.
func loadManifests(t *testing.T) *objects {
	t.Helper()
	o := &objects{
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		namespaces:  map[string]*corev1.Namespace{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			if err := o.decodeStrict(doc); err != nil {
				t.Errorf("%s: document %d: %v", file, i, err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return o
}

// stripComments drops whole-line comments, to tell an empty document.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

func TestManifestsDecodeStrictly(t *testing.T) {
	o := loadManifests(t)
	for _, want := range []struct {
		kind  string
		names []string
		got   []string
	}{
		{"Deployment", []string{"wsgate", "wsgate-backend"}, keys(o.deployments)},
		{"Service", []string{"wsgate", "wsgate-backend"}, keys(o.services)},
		{"ConfigMap", []string{"wsgate-config"}, keys(o.configMaps)},
		{"Secret", []string{"wsgate-admin", "wsgate-tls"}, keys(o.secrets)},
		{"Namespace", []string{"wsgate"}, keys(o.namespaces)},
		{"PodDisruptionBudget", []string{"wsgate"}, keys(o.pdbs)},
	} {
		if !slices.Equal(want.got, want.names) {
			t.Errorf("%s objects = %v, want %v", want.kind, want.got, want.names)
		}
	}
	// The strict decoding is strict: a misspelt field fails.
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  externalTraficPolicy: Local\n")
	if err := (&objects{services: map[string]*corev1.Service{}}).decodeStrict(bad); err == nil || !strings.Contains(err.Error(), "externalTraficPolicy") {
		t.Errorf("decodeStrict(a misspelt field) error = %v, want it named", err)
	}
}

func keys[V any](m map[string]V) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

// The namespace every object is in, and the one the discover name names.
const namespace = "wsgate"

func TestManifestsNamespace(t *testing.T) {
	o := loadManifests(t)
	var metas []interface {
		GetName() string
		GetNamespace() string
	}
	for _, m := range o.deployments {
		metas = append(metas, m)
	}
	for _, m := range o.services {
		metas = append(metas, m)
	}
	for _, m := range o.configMaps {
		metas = append(metas, m)
	}
	for _, m := range o.secrets {
		metas = append(metas, m)
	}
	for _, m := range o.pdbs {
		metas = append(metas, m)
	}
	for _, m := range metas {
		if m.GetNamespace() != namespace {
			t.Errorf("%s: namespace %q, want %q", m.GetName(), m.GetNamespace(), namespace)
		}
	}
}

// wsgateConfig is the part of the ConfigMap's wsgate.yaml the manifests
// must agree with. (wsgate's own test, cmd/wsgate, validates all of it.)
type wsgateConfig struct {
	Listen string `json:"listen"`
	TLS    struct {
		Certificates []struct {
			CertFile string `json:"cert_file"`
			KeyFile  string `json:"key_file"`
		} `json:"certificates"`
	} `json:"tls"`
	Admin struct {
		Listen string `json:"listen"`
	} `json:"admin"`
	Pools []struct {
		Discover struct {
			Name string `json:"name"`
			Type string `json:"type"`
			Port int    `json:"port"`
		} `json:"discover"`
	} `json:"pools"`
	Shutdown struct {
		DrainTimeout string `json:"drain_timeout"`
	} `json:"shutdown"`
}

func loadWsgateConfig(t *testing.T, o *objects) wsgateConfig {
	t.Helper()
	var c wsgateConfig
	if err := yaml.Unmarshal([]byte(o.configMaps["wsgate-config"].Data["wsgate.yaml"]), &c); err != nil {
		t.Fatalf("the ConfigMap's wsgate.yaml: %v", err)
	}
	return c
}

// container returns the one container of a Deployment's pods.
func container(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment %s has %d containers, want 1", d.Name, n)
	}
	return &d.Spec.Template.Spec.Containers[0]
}

// port returns the port of the container named by p, a name or a number.
func port(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// listenPort is the port of a host:port listen address.
func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var p int32
	if _, err := fmt.Sscan(addr[i+1:], &p); i < 0 || err != nil {
		t.Fatalf("listen address %q has no port", addr)
	}
	return p
}

// flagValue is the value after flag in args.
func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("args %q have no %s", args, flag)
	}
	return args[i+1]
}

// checkPod checks what every pod of the example must have: a non-root,
// locked-down security context, resources, and a grace period that covers
// preStop plus drain.
func checkPod(t *testing.T, d *appsv1.Deployment, drain time.Duration) {
	t.Helper()
	spec := d.Spec.Template.Spec
	c := container(t, d)
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext must set runAsNonRoot: true and a non-zero runAsUser", d.Name)
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: container securityContext must forbid privilege escalation, make the root file system read-only and drop ALL capabilities", d.Name)
	}
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("%s: resources must request cpu and memory and limit memory; got %v", d.Name, r)
	}
	var preStop time.Duration
	if l := c.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Sleep.Seconds <= 0 {
		t.Errorf("%s: no preStop sleep", d.Name)
	} else {
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	grace := spec.TerminationGracePeriodSeconds
	if need := preStop + drain + shutdownMargin; grace == nil || time.Duration(*grace)*time.Second < need {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want at least preStop %v + drain %v + margin %v = %v",
			d.Name, deref(grace), preStop, drain, shutdownMargin, need)
	}
	if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: readinessProbe must GET /healthz", d.Name)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestWsgateDeployment(t *testing.T) {
	o := loadManifests(t)
	cfg := loadWsgateConfig(t, o)
	d := o.deployments["wsgate"]
	c := container(t, d)

	drain, err := time.ParseDuration(cfg.Shutdown.DrainTimeout)
	if err != nil {
		t.Fatalf("shutdown.drain_timeout %q: %v", cfg.Shutdown.DrainTimeout, err)
	}
	checkPod(t, d, drain)
	if got, want := port(t, c, c.ReadinessProbe.HTTPGet.Port), listenPort(t, cfg.Admin.Listen); got != want {
		t.Errorf("readinessProbe port %d, want the admin listener's %d", got, want)
	}
	if lp := c.LivenessProbe; lp != nil && lp.HTTPGet != nil && lp.HTTPGet.Path == "/healthz" {
		t.Error("livenessProbe on /healthz: a draining wsgate answers 503 and would be restarted mid-drain")
	}

	// Started on the ConfigMap's file, watching it.
	if got := flagValue(t, c.Args, "-config"); got != "/etc/wsgate/config/wsgate.yaml" {
		t.Errorf("-config %s, want /etc/wsgate/config/wsgate.yaml", got)
	}
	if w, err := time.ParseDuration(flagValue(t, c.Args, "-watch-config")); err != nil || w <= 0 {
		t.Errorf("-watch-config %v, %v: want a positive interval, or a ConfigMap edit is never applied", w, err)
	}
	mounts := map[string]string{} // volume name → mount path
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("volume %s mounted with subPath: such a mount never sees updates", m.Name)
		}
		mounts[m.Name] = m.MountPath
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil && v.ConfigMap.Name == "wsgate-config":
			if mounts[v.Name] != "/etc/wsgate/config" {
				t.Errorf("ConfigMap volume mounted at %q, want /etc/wsgate/config", mounts[v.Name])
			}
		case v.Secret != nil && v.Secret.SecretName == "wsgate-tls":
			for _, cf := range cfg.TLS.Certificates {
				if filepath.Dir(cf.CertFile) != mounts[v.Name] || filepath.Dir(cf.KeyFile) != mounts[v.Name] {
					t.Errorf("certificate %s / %s not in the Secret's mount %q", cf.CertFile, cf.KeyFile, mounts[v.Name])
				}
			}
			if len(cfg.TLS.Certificates) == 0 {
				t.Error("the ConfigMap's wsgate.yaml names no certificate")
			}
		default:
			t.Errorf("volume %s: neither the ConfigMap nor the TLS Secret", v.Name)
		}
	}
	if len(mounts) != 2 {
		t.Errorf("volume mounts %v, want the config and the TLS Secret", mounts)
	}
	var token bool
	for _, e := range c.Env {
		if e.Name == "WSGATE_ADMIN_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "wsgate-admin" {
			token = true
		}
	}
	if !token {
		t.Error("no WSGATE_ADMIN_TOKEN from the Secret wsgate-admin: an admin listener on the pod's address needs a token")
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("rollingUpdate.maxUnavailable must be 0: a new pod is ready before an old one drains")
	}
}

func TestWsgateService(t *testing.T) {
	o := loadManifests(t)
	cfg := loadWsgateConfig(t, o)
	s := o.services["wsgate"]
	d := o.deployments["wsgate"]
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("Service wsgate type %q, want LoadBalancer", s.Spec.Type)
	}
	if s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("externalTrafficPolicy %q, want Local: with Cluster, nodes SNAT and wsgate sees node addresses, not clients", s.Spec.ExternalTrafficPolicy)
	}
	if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the wsgate pods %v", s.Spec.Selector, d.Spec.Template.Labels)
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("Service wsgate ports %v, want only the TLS listener (never the admin one)", s.Spec.Ports)
	}
	if got, want := port(t, container(t, d), s.Spec.Ports[0].TargetPort), listenPort(t, cfg.Listen); got != want {
		t.Errorf("Service targets port %d, want the TLS listener's %d", got, want)
	}
	if pdb := o.pdbs["wsgate"]; !selects(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Error("the PodDisruptionBudget does not select the wsgate pods")
	}
}

func TestBackendManifests(t *testing.T) {
	o := loadManifests(t)
	cfg := loadWsgateConfig(t, o)
	d, s := o.deployments["wsgate-backend"], o.services["wsgate-backend"]
	c := container(t, d)
	drain, err := time.ParseDuration(flagValue(t, c.Args, "-drain-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	checkPod(t, d, drain)

	if s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service wsgate-backend clusterIP %q, want None (headless: one A record per pod)", s.Spec.ClusterIP)
	}
	if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the backend pods %v", s.Spec.Selector, d.Spec.Template.Labels)
	}
	listen := listenPort(t, flagValue(t, c.Args, "-listen"))
	if got := port(t, c, c.ReadinessProbe.HTTPGet.Port); got != listen {
		t.Errorf("backend readinessProbe port %d, want its -listen port %d", got, listen)
	}
	if len(cfg.Pools) != 1 {
		t.Fatalf("the ConfigMap's wsgate.yaml has %d pools, want 1", len(cfg.Pools))
	}
	disc := cfg.Pools[0].Discover
	if want := s.Name + "." + s.Namespace + ".svc.cluster.local"; disc.Name != want || disc.Type != "A" {
		t.Errorf("pools[0].discover %s type %s, want %s type A (the headless Service)", disc.Name, disc.Type, want)
	}
	if int32(disc.Port) != listen {
		t.Errorf("pools[0].discover.port %d, want the backends' port %d", disc.Port, listen)
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The example TLS Secret is examples/certs, the pair the other examples
// use.
func TestTLSSecret(t *testing.T) {
	o := loadManifests(t)
	s := o.secrets["wsgate-tls"]
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret wsgate-tls type %q, want %q", s.Type, corev1.SecretTypeTLS)
	}
	for key, file := range map[string]string{corev1.TLSCertKey: "../certs/cert.pem", corev1.TLSPrivateKeyKey: "../certs/key.pem"} {
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.StringData[key]; got != string(want) {
			t.Errorf("Secret wsgate-tls %s is not %s", key, file)
		}
	}
}
