//go:build unix

package upgrade

const supported = true
