// Package listener opens wsgate's listening sockets, or adopts the ones the
// process inherited.
//
// wsgate has up to three TCP listeners, each known by a name: TLS (the
// proxy), Admin and HTTP (tls.http_listen). Open returns a Set of them from
// their configured addresses. A new listener gets its socket options before
// bind(2) — SO_REUSEPORT when asked for (Linux, macOS and FreeBSD; an error
// elsewhere), and on Linux TCP keep-alive on the listening socket, which
// accepted connections inherit (see KeepAlive), and TCP_DEFER_ACCEPT (see
// DeferAccept).
//
// A listener may instead be inherited as a file descriptor, in one of two
// ways, both read by Inherit:
//
//   - systemd socket activation: LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES,
//     with each socket named after its listener (FileDescriptorName=tls,
//     admin or http in the socket unit);
//   - wsgate's own hand-over to a process it starts (a binary upgrade):
//     Set.Handover gives the listeners' files for exec.Cmd.ExtraFiles and
//     the WSGATE_LISTENERS entry that names them in the new process.
//
// Open adopts an inherited socket in place of opening one when the names
// match, and checks that its address is the configured one: a socket unit
// or a parent that disagrees with the configuration is an error, never a
// silent surprise.
//
// The package knows nothing of YAML, TLS or HTTP.
package listener
