package serve

import (
	"encoding/json"
	"sync"
)

// event is one Server-Sent Event: its type and JSON data.
type event struct {
	Name string
	Data []byte
}

// hub fans events out to the connected event streams. A client too slow to keep up with its
// buffer is disconnected (its channel closed) rather than slowing the pipeline down;
// EventSource reconnects by itself and the page reloads the scan list when it does.
type hub struct {
	mu   sync.Mutex
	subs map[chan event]struct{}
}

// clientBuffer is how many events a client may lag behind before it is dropped.
const clientBuffer = 256

func newHub() *hub { return &hub{subs: map[chan event]struct{}{}} }

func (h *hub) subscribe() chan event {
	c := make(chan event, clientBuffer)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	return c
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
	for c := range h.subs {
		select {
		case c <- event{Name: name, Data: data}:
		default:
			delete(h.subs, c)
			close(c)
		}
	}
}
