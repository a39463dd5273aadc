package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// The event stream, GET /api/events, is what the dashboard lives on: a
// text/event-stream of "snapshot" events, each a Snapshot in JSON. One is
// sent at once, one whenever the registry changes (a backend's health,
// draining or weight, a reload), and one every second for the counts,
// which are the balancer's atomics and change without the registry
// knowing. The handler's own goroutine is the stream's only one: it
// blocks in a select between snapshots, and it ends when the client goes,
// when a write stalls, or when the server closes (Close).
//
// The dashboard reads it with fetch() rather than EventSource, because
// EventSource cannot send the Authorization header the admin token needs.
const (
	// countsEvery is how often the counts are sent while nothing in the
	// registry changes. It is also the resolution of the dashboard's
	// charts, which keep their history in the page.
	countsEvery = time.Second
	// maxStreams bounds the event streams served at once; more get 503.
	// A dashboard holds one; a few people watching need a handful.
	maxStreams = 32
	// streamWriteTimeout bounds one event's write: a client that takes no
	// bytes for this long loses its stream.
	streamWriteTimeout = 10 * time.Second
)

// Snapshot is one event of GET /api/events.
type Snapshot struct {
	// Time is when the snapshot was taken, in Unix milliseconds: the page
	// computes rates from successive Totals with it.
	Time int64 `json:"time"`
	// Generation is the config generation (1 for the config at start,
	// incremented by each reload).
	Generation uint64 `json:"generation"`
	// ShuttingDown is true from the moment shutdown begins.
	ShuttingDown bool         `json:"shutting_down"`
	Pools        []PoolStatus `json:"pools"`
	// Totals is nil when Options.Totals is.
	Totals *Totals `json:"totals,omitempty"`
}

// PoolStatus is a pool with its backends, ordered by address.
type PoolStatus struct {
	Name     string          `json:"name"`
	Backends []BackendStatus `json:"backends"`
}

// Totals are cumulative counts since start (see Options.Totals).
type Totals struct {
	Upgrades map[string]int64 `json:"upgrades"`
	Closes   map[string]int64 `json:"closes"`
}

// snapshot reads the registry and the counts, and returns the channels
// that close when the registry's pools or backends change.
func (s *Server) snapshot() (snap Snapshot, poolsChanged, backendsChanged <-chan struct{}) {
	pools, poolsChanged := s.store.Pools()
	all, backendsChanged := s.store.Backends()
	snap = Snapshot{
		Time:         time.Now().UnixMilli(),
		Generation:   s.store.Generation(),
		ShuttingDown: s.shuttingDown.Load(),
		Pools:        make([]PoolStatus, 0, len(pools)),
	}
	index := make(map[string]int, len(pools))
	for _, p := range pools {
		index[p.Name] = len(snap.Pools)
		snap.Pools = append(snap.Pools, PoolStatus{Name: p.Name, Backends: []BackendStatus{}})
	}
	for _, b := range all {
		i, ok := index[b.Pool]
		if !ok {
			// The two reads straddled a reload; the next change event
			// brings the pool.
			continue
		}
		snap.Pools[i].Backends = append(snap.Pools[i].Backends, s.status(b))
	}
	if s.totals != nil {
		up, cl := s.totals()
		snap.Totals = &Totals{Upgrades: up, Closes: cl}
		if up == nil {
			snap.Totals.Upgrades = map[string]int64{}
		}
		if cl == nil {
			snap.Totals.Closes = map[string]int64{}
		}
	}
	return snap, poolsChanged, backendsChanged
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.closed:
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	default:
	}
	if s.streams.Add(1) > int64(s.maxStreams) {
		s.streams.Add(-1)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too many event streams open (at most "+strconv.Itoa(s.maxStreams)+")")
		return
	}
	defer s.streams.Add(-1)

	// The server's WriteTimeout would end the stream: writeEvent moves the
	// write deadline for each event instead. (Its ReadTimeout does not
	// matter here: net/http lifts the read deadline once a request
	// without a body is being handled.)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	// Tell a buffering reverse proxy in front (nginx) to pass events on.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	tick := time.NewTicker(s.countsEvery)
	defer tick.Stop()
	stopping := s.stopping
	for {
		snap, poolsChanged, backendsChanged := s.snapshot()
		if err := writeEvent(w, rc, "snapshot", snap); err != nil {
			return
		}
		select {
		case <-poolsChanged:
		case <-backendsChanged:
		case <-tick.C:
		case <-stopping:
			stopping = nil // sent once; the flag stays in every snapshot
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		}
	}
}

// writeEvent writes one server-sent event whose data is v in JSON (one
// line: encoding/json escapes newlines inside strings) and flushes it.
func writeEvent(w http.ResponseWriter, rc *http.ResponseController, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil {
		return err
	}
	buf := make([]byte, 0, len(data)+len(name)+16)
	buf = append(buf, "event: "...)
	buf = append(buf, name...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return rc.Flush()
}
