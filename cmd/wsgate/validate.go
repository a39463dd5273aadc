package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/wsgate/wsgate/config"
)

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file to check (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "wsgate validate: -config FILE is required")
		return 2
	}
	if _, err := config.Load(*path); err != nil {
		printErrors(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// printErrors prints each error joined in err on a line of its own.
func printErrors(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			printErrors(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}
