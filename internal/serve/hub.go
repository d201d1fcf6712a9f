package serve

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// event is one Server-Sent Event: its id, type and JSON data.
type event struct {
	ID   string
	Name string
	Data []byte
}

// hub fans events out to the connected event streams. A client too slow to keep up with its
// buffer is disconnected (its channel closed) rather than slowing the pipeline down;
// EventSource reconnects by itself with the Last-Event-ID it saw, and the hub replays what
// it missed from a ring of recent events. Event ids are "<epoch>-<seq>": the epoch names this
// process, so an id from before a restart (or from another replica) is known as foreign
// instead of being mistaken for a sequence number of this one.
type hub struct {
	mu    sync.Mutex
	subs  map[chan event]struct{}
	epoch string
	seq   uint64
	// ring holds the last ringSize events: event seq sits at ring[(seq-1)%ringSize].
	ring []event
}

// clientBuffer is how many events a client may lag behind before it is dropped; ringSize is
// how many past events a reconnecting client can be sent (a few seconds of a busy server).
const (
	clientBuffer = 256
	ringSize     = 2048
)

// eventReset tells a resuming client that the events it missed are gone: reload the list.
const eventReset = "reset"

func newHub() *hub {
	return &hub{subs: map[chan event]struct{}{}, epoch: strconv.FormatInt(time.Now().UnixNano(), 36)}
}

func (h *hub) subscribe() chan event {
	c, _, _ := h.subscribeFrom("")
	return c
}

// subscribeFrom subscribes and, for a client resuming after lastID, returns the events it
// missed (to send before the channel's). reset is true when lastID cannot be resumed from: it
// is malformed, from another epoch, or older than the ring.
func (h *hub) subscribeFrom(lastID string) (c chan event, replay []event, reset bool) {
	c = make(chan event, clientBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[c] = struct{}{}
	if lastID == "" {
		return c, nil, false
	}
	epoch, seq, ok := parseEventID(lastID)
	if !ok || epoch != h.epoch || seq > h.seq {
		return c, nil, true
	}
	first := h.seq - uint64(len(h.ring)) + 1 // the oldest sequence in the ring
	if seq+1 < first {
		return c, nil, true
	}
	for n := seq + 1; n <= h.seq; n++ {
		replay = append(replay, h.ring[(n-1)%ringSize])
	}
	return c, replay, false
}

// parseEventID reads a Last-Event-ID header: "<epoch>-<decimal seq>".
func parseEventID(s string) (epoch string, seq uint64, ok bool) {
	epoch, num, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found || epoch == "" || len(epoch) > 20 || num == "" || len(num) > 20 {
		return "", 0, false
	}
	for _, r := range epoch {
		if (r < '0' || r > '9') && (r < 'a' || r > 'z') {
			return "", 0, false
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 {
		return "", 0, false
	}
	return epoch, n, true
}

func (h *hub) unsubscribe(c chan event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[c]; ok {
		delete(h.subs, c)
		close(c)
	}
}

func (h *hub) publish(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return // only NaN gets here; the aggregator never stores one
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	e := event{ID: fmt.Sprintf("%s-%d", h.epoch, h.seq), Name: name, Data: data}
	if len(h.ring) < ringSize {
		h.ring = append(h.ring, e)
	} else {
		h.ring[(h.seq-1)%ringSize] = e
	}
	for c := range h.subs {
		select {
		case c <- e:
		default:
			delete(h.subs, c)
			close(c)
		}
	}
}
