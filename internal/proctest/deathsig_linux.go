package proctest

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill c's process when the test binary
// dies, so a test killed by its -timeout (or by hand) leaves no wsgate or
// backend running with parent 1.
func dieWithTest(c *exec.Cmd) {
	if c.SysProcAttr == nil {
		c.SysProcAttr = &syscall.SysProcAttr{}
	}
	c.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
