// Package backend is wsgate's reference WebSocket backend: the small server
// a user copies when writing a service to put behind wsgate.
//
// It serves three routes:
//
//   - /ws echoes every message back with the same message type, up to
//     [Options.MaxMessage] bytes; a bigger message is answered with close
//     code 1009 (message too big).
//   - /ws/chat?room=R broadcasts each message to every member of room R,
//     the sender included. A member that cannot keep up is dropped with close
//     code 1008 instead of slowing the room down.
//   - /healthz answers 200 "OK" while serving and 503 once draining, which is
//     what wsgate's health checks look for (they judge by status code only).
//     Its X-Backend-Connections header tells how many WebSocket connections
//     the server holds, from every proxy: several wsgate processes in front
//     of one pool balance on it (unless [Options.NoLoadReport]).
//
// Every 101 Switching Protocols response carries an X-Backend-Id header, so a
// client (or a test) can tell which backend the proxy picked.
//
// # What to copy
//
// The connection handling follows gorilla/websocket's examples/chat. Each
// connection has exactly two goroutines: readPump, the only reader, and
// writePump, the only writer of data messages and pings. Close frames are
// sent with [websocket.Conn.WriteControl], which gorilla allows concurrently
// with the writer. The timing constants (writeWait, pongWait, pingPeriod =
// 9/10 of pongWait) and the pong handler that pushes the read deadline out
// are the ones from the gorilla example. Chat rooms live in a hub guarded by
// one mutex that is held only for map updates and non-blocking sends into
// each member's bounded queue, never across network I/O.
//
// The part most servers get wrong is shutdown. [Server.Serve] drains instead
// of dropping connections: when its context is cancelled (SIGTERM in
// cmd/wsgate-backend) it
//
//  1. turns /healthz to 503 and answers new upgrades with 503, so wsgate
//     stops sending new connections here and retries them on another backend;
//  2. sends every open WebSocket a close frame with code 1001 (going away),
//     which wsgate passes through unchanged, so clients know to reconnect;
//  3. waits up to [Options.DrainTimeout] for the peers to answer with their
//     own close frames, then closes whatever is left and returns.
//
// net/http's [http.Server.Shutdown] does not do this on its own: it neither
// knows about nor waits for hijacked (upgraded) connections, which is why the
// Server keeps its own registry of them.
//
// To build your own service, copy this package, replace the echo and chat
// handlers (client.handle) with your application's logic, and keep Serve and
// the pumps as they are. cmd/wsgate-backend shows the matching main:
// signal.NotifyContext for SIGTERM and SIGINT, then Serve(ctx, ln).
package backend
