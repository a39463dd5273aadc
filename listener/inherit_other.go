//go:build !unix

package listener

import (
	"errors"
	"os"
)

// inheritFD: descriptors cannot be inherited by number here.
func inheritFD(int) (*os.File, error) {
	return nil, errors.New("inheriting sockets is not supported on this platform")
}
