//go:build !linux || wsgate_portable

package sockio

const fastPath = false
