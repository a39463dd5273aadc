package backend_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/backend"
)

func TestChatBroadcast(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	a1, _ := dial(t, nil, ts.url("ws", "/ws/chat?room=a"), nil)
	a2, _ := dial(t, nil, ts.url("ws", "/ws/chat?room=a"), nil)
	a3, _ := dial(t, nil, ts.url("ws", "/ws/chat?room=a"), nil)
	b1, _ := dial(t, nil, ts.url("ws", "/ws/chat?room=b"), nil)

	tests := []struct {
		name string
		from *websocket.Conn
		typ  int
		data string
	}{
		{name: "text from a1", from: a1, typ: websocket.TextMessage, data: "hello from a1"},
		{name: "binary from a3", from: a3, typ: websocket.BinaryMessage, data: "\x00\x01 from a3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeMessage(t, tc.from, tc.typ, []byte(tc.data))
			for i, member := range []*websocket.Conn{a1, a2, a3} {
				typ, got, err := readMessage(t, member)
				if err != nil {
					t.Fatalf("member %d: ReadMessage() = %v, want the broadcast", i+1, err)
				}
				if typ != tc.typ || string(got) != tc.data {
					t.Errorf("member %d got (%d, %q), want (%d, %q)", i+1, typ, got, tc.typ, tc.data)
				}
			}
		})
	}

	// Every broadcast to room a has been queued for all its members (each of
	// them received it), so if b1 had been sent any, it would come before the
	// message b1 now sends to its own room.
	t.Run("rooms are isolated", func(t *testing.T) {
		writeMessage(t, b1, websocket.TextMessage, []byte("only room b"))
		_, got, err := readMessage(t, b1)
		if err != nil {
			t.Fatalf("b1: ReadMessage() = %v, want its own message", err)
		}
		if string(got) != "only room b" {
			t.Errorf("b1's first message = %q, want %q (room a leaked into room b)", got, "only room b")
		}
	})
}

// A member that stops reading is dropped with close 1008 once its queue is
// full, while the rest of the room keeps going.
func TestChatDropsSlowMember(t *testing.T) {
	t.Parallel()
	dropped := newEventHandler("dropped slow chat members")
	ts := start(t, backend.Options{Logger: slog.New(dropped)})
	fast, _ := dial(t, nil, ts.url("ws", "/ws/chat?room=r"), nil)
	slow, _ := dial(t, nil, ts.url("ws", "/ws/chat?room=r"), nil) // does not read until dropped

	// Keep sending until the slow member's socket buffers and queue are full.
	// The fast member reads every message back, so it is never behind.
	payload := bytes.Repeat([]byte{'x'}, 32<<10)
	deadline := time.Now().Add(30 * time.Second)
	sent := 0
	for ; ; sent++ {
		select {
		case <-dropped.fired:
		default:
			if time.Now().After(deadline) {
				t.Fatalf("slow member not dropped after %d messages of %d bytes", sent, len(payload))
			}
			writeMessage(t, fast, websocket.BinaryMessage, payload)
			if _, _, err := readMessage(t, fast); err != nil {
				t.Fatalf("fast member: ReadMessage() after %d messages = %v, want its broadcast", sent, err)
			}
			continue
		}
		break
	}

	writeMessage(t, fast, websocket.TextMessage, []byte("still here"))
	if _, got, err := readMessage(t, fast); err != nil || string(got) != "still here" {
		t.Errorf("fast member after the drop: ReadMessage() = %q, %v, want %q", got, err, "still here")
	}

	// The slow member reads what was already on its way, then the close.
	var err error
	for n := 0; err == nil; n++ {
		if n > sent+1 {
			t.Fatalf("slow member read %d messages, more than the %d sent", n, sent)
		}
		_, _, err = readMessage(t, slow)
	}
	if got := closeCode(err); got != websocket.ClosePolicyViolation {
		t.Errorf("slow member: ReadMessage() = %v, want close %d", err, websocket.ClosePolicyViolation)
	}
}

func TestChatRoomsManyMembers(t *testing.T) {
	t.Parallel()
	ts := start(t, backend.Options{})
	const rooms, members = 3, 4
	conns := make([][]*websocket.Conn, rooms)
	for r := range rooms {
		for range members {
			c, _ := dial(t, nil, ts.url("ws", fmt.Sprintf("/ws/chat?room=room-%d", r)), nil)
			conns[r] = append(conns[r], c)
		}
	}
	for r := range rooms {
		msg := fmt.Sprintf("to room-%d", r)
		writeMessage(t, conns[r][0], websocket.TextMessage, []byte(msg))
	}
	for r := range rooms {
		want := fmt.Sprintf("to room-%d", r)
		for m, c := range conns[r] {
			if _, got, err := readMessage(t, c); err != nil || string(got) != want {
				t.Errorf("room-%d member %d: ReadMessage() = %q, %v, want %q", r, m, got, err, want)
			}
		}
	}
}
