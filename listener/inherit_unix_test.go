//go:build unix

package listener

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// child is a run of the test binary as runChild.
type child struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

// startChild starts the test binary as runChild with files as descriptors
// 3, 4, … and env added to its environment; wrap, if not empty, is a
// command line that runs it (the binary and its arguments are appended).
// It waits for the child to be ready.
func startChild(t *testing.T, files []*os.File, specs []Spec, env []string, wrap ...string) *child {
	t.Helper()
	pairs := make([]string, len(specs))
	for i, sp := range specs {
		pairs[i] = sp.Name + "=" + sp.Address
	}
	args := append(wrap, os.Args[0], "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), append(env, envChild+"="+strings.Join(pairs, ","))...)
	cmd.ExtraFiles = files
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	})
	c := &child{cmd: cmd, out: bufio.NewReader(stdout)}
	line, err := c.out.ReadString('\n')
	if line != "ready\n" {
		_ = cmd.Wait()
		t.Fatalf("child said %q, %v; want ready (stderr: %s)", line, err, stderr.String())
	}
	return c
}

// greeting dials addr and returns what the child answers there.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// answers checks that the child, and no other process, answers on each
// address of nameAddrs (name, address, name, address, … in the order of
// the child's specs) as the listener of that name, inherited from from;
// and that it then exits 0.
func (c *child) answers(t *testing.T, from string, nameAddrs ...string) {
	t.Helper()
	pid := strconv.Itoa(c.cmd.Process.Pid)
	for i := 0; i+1 < len(nameAddrs); i += 2 {
		name, addr := nameAddrs[i], nameAddrs[i+1]
		if got, want := greeting(t, addr), name+" "+pid+" "+from; got != want {
			t.Errorf("%s answered %q, want %q", addr, got, want)
		}
	}
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("child: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("child did not exit")
	}
}

// A process started with Set.Handover's files and environment adopts the
// listeners and accepts on their addresses, after the parent closed its
// own.
func TestHandoverToChildProcess(t *testing.T) {
	s := open(t, Spec{Name: TLS, Address: "127.0.0.1:0"}, Spec{Name: Admin, Address: "127.0.0.1:0"})
	files, env, err := s.Handover()
	if err != nil {
		t.Fatal(err)
	}
	if want := EnvHandover + "=tls=3,admin=4"; env != want {
		t.Errorf("Handover env = %q, want %q", env, want)
	}
	tlsAddr, adminAddr := s.Get(TLS).Addr().String(), s.Get(Admin).Addr().String()
	c := startChild(t, files, []Spec{{Name: TLS, Address: tlsAddr}, {Name: Admin, Address: "127.0.0.1:0"}}, []string{env})
	for _, f := range files {
		f.Close()
	}
	// From now on only the child holds the sockets.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.answers(t, FromHandover, TLS, tlsAddr, Admin, adminAddr)
}

// systemd socket activation: LISTEN_PID is the pid of the process that
// runs after exec, which a shell sets for itself before exec'ing the test
// binary, as systemd does in the child it forks.
func TestSystemdSocketActivation(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	s := open(t, Spec{Name: Admin, Address: "127.0.0.1:0"}, Spec{Name: TLS, Address: "127.0.0.1:0"})
	files, _, err := s.Handover()
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, tlsAddr := s.Get(Admin).Addr().String(), s.Get(TLS).Addr().String()
	c := startChild(t, files,
		[]Spec{{Name: TLS, Address: tlsAddr}, {Name: Admin, Address: adminAddr}},
		[]string{"LISTEN_FDS=2", "LISTEN_FDNAMES=admin:tls"},
		sh, "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$@"`, "sh")
	for _, f := range files {
		f.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.answers(t, FromSystemd, TLS, tlsAddr, Admin, adminAddr)
}
