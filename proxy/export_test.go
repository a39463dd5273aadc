package proxy

import "testing"

// BenchTunnelEcho runs BenchmarkTunnelEcho's cases through a proxy with
// opts, for the external test package, which may import packages that
// import proxy (the metrics observer).
func BenchTunnelEcho(b *testing.B, opts Options) { benchTunnelEcho(b, opts) }
