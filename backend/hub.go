package backend

import "sync"

// hub holds the chat rooms.
//
// Unlike gorilla's chat example, which runs one goroutine per hub, the rooms
// are guarded by a single mutex: there is then no goroutine whose lifetime
// has to be tied to Serve. mu is held only to update the maps and to make
// non-blocking sends into members' bounded queues, never across network I/O,
// so one slow member cannot stall a room. Every send into a chat client's
// queue happens under mu, and so does the close of its dropped channel.
type hub struct {
	mu    sync.Mutex
	rooms map[string]map[*client]struct{}
}

func (h *hub) init() {
	h.rooms = make(map[string]map[*client]struct{})
}

// join adds c to the room it asked for.
func (h *hub) join(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	members := h.rooms[c.room]
	if members == nil {
		members = make(map[*client]struct{})
		h.rooms[c.room] = members
	}
	members[c] = struct{}{}
}

// leave removes c from its room. It is a no-op for echo clients and for
// clients that were already dropped or left.
func (h *hub) leave(c *client) {
	if !c.chat {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(c)
}

// remove deletes c from its room, and the room once empty. h.mu must be held.
func (h *hub) remove(c *client) bool {
	members := h.rooms[c.room]
	if _, ok := members[c]; !ok {
		return false
	}
	delete(members, c)
	if len(members) == 0 {
		delete(h.rooms, c.room)
	}
	return true
}

// broadcast queues m for every member of from's room, from included. A member
// whose queue is full is dropped from the room: its dropped channel is
// closed, and its writePump sends it close 1008 (policy violation) as soon
// as its current write finishes. Messages from a client that is no longer a
// member (it was dropped) are discarded. It returns the number of members
// dropped.
func (h *hub) broadcast(from *client, m message) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	members := h.rooms[from.room]
	if _, ok := members[from]; !ok {
		return 0
	}
	dropped := 0
	for c := range members {
		select {
		case c.send <- m:
		default:
			h.remove(c)
			close(c.dropped)
			dropped++
		}
	}
	return dropped
}
