package sockio

// Waker is what a Parker wakes: Wake is called once, on the Parker's
// goroutine, when the socket it was parked on becomes readable (data, EOF
// or an error). It must be fast: it should hand the work to a goroutine.
type Waker interface {
	Wake()
}
