//go:build !unix

package upgrade

// Descriptors cannot be handed to a new process here (exec.Cmd.ExtraFiles
// is Unix-only).
const supported = false
