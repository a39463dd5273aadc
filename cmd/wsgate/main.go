// Command wsgate is a WebSocket edge proxy: it terminates TLS, balances new
// WebSocket connections over backend pools by least connections, and keeps
// an admin API beside them.
//
//	wsgate run -config FILE       run the proxy
//	wsgate validate -config FILE  check a config file, print every error
//	wsgate status                 print the backends of a running wsgate
//	wsgate demo                   run a self-contained demo, no files needed
//	wsgate version                print the version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: wsgate <command> [flags]

commands:
  run -config FILE       run the proxy
  validate -config FILE  check a config file; print ok, or every error as FILE:LINE:COL: message
  status                 print the backends of a running wsgate (its admin API)
  demo                   run a demo: self-signed TLS, three in-process backends, no files needed
  version                print the version

Run 'wsgate <command> -h' for a command's flags.
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "validate":
		return validateCmd(args[1:], stdout, stderr)
	case "status":
		return statusCmd(ctx, args[1:], stdout, stderr)
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "wsgate %s\n", version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "wsgate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// version is the module version when built from a tagged module, else
// the VCS revision, else "dev"; with the Go version.
func version() string {
	v := "dev"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	} else {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v = "dev-" + s.Value[:12]
			}
		}
	}
	return v + " (" + bi.GoVersion + ")"
}
