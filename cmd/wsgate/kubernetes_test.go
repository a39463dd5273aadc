package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// k8sDoc is the part of a Kubernetes manifest this test reads.
type k8sDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

// k8sObject returns the document of kind and name in a multi-document
// manifest of examples/kubernetes.
func k8sObject(t *testing.T, file, kind, name string) k8sDoc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d k8sDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d.Kind == kind && d.Metadata.Name == name {
			return d
		}
	}
	t.Fatalf("%s: no %s %s", file, kind, name)
	return k8sDoc{}
}

// podRoot is where the example pod mounts its ConfigMap and Secrets.
const podRoot = "/etc/wsgate/"

// The wsgate.yaml of the Kubernetes example's ConfigMap passes wsgate
// validate as the pod would run it: the TLS Secret's files where the pod
// mounts them (under a temporary directory standing for /etc/wsgate), and
// the admin token the Deployment passes from the other Secret (the
// file's admin listener is not loopback, so it needs one).
// examples/kubernetes checks the manifests themselves.
func TestKubernetesConfigMapValidates(t *testing.T) {
	cm := k8sObject(t, "30-wsgate.yaml", "ConfigMap", "wsgate-config")
	token := k8sObject(t, "10-secrets.yaml", "Secret", "wsgate-admin").StringData["token"]
	certs := k8sObject(t, "10-secrets.yaml", "Secret", "wsgate-tls").StringData
	cfg, ok := cm.Data["wsgate.yaml"]
	if !ok || token == "" || len(certs) != 2 || !strings.Contains(cfg, podRoot+"tls/") {
		t.Fatalf("want a ConfigMap with wsgate.yaml naming files in %stls/, a Secret with a token, and one with tls.crt and tls.key", podRoot)
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range certs {
		if err := os.WriteFile(filepath.Join(root, "tls", name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(root, "wsgate.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg, podRoot, root+"/")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wsgateBin, "validate", "-config", path)
	cmd.Env = append(os.Environ(), "WSGATE_ADMIN_TOKEN="+token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("wsgate validate on the ConfigMap's wsgate.yaml = %q, %v; errors:\n%s", out, err, stderr.String())
	}

	// Without the token it must fail: the check above is not vacuous.
	cmd = exec.Command(wsgateBin, "validate", "-config", path)
	cmd.Env = append(os.Environ(), "WSGATE_ADMIN_TOKEN=")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("wsgate validate without the admin token passed: %s", out)
	}
}
