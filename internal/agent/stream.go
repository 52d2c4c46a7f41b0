package agent

import "sync"

// changeSignal tells the API's event stream that the agent loop handled
// something, so its view may have changed. The loop only ever does a
// non-blocking send on a one-slot channel: whatever reads it (one hub per
// API server, however many browsers watch) costs the loop nothing. The zero
// value is ready to use.
type changeSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (c *changeSignal) channel() chan struct{} {
	c.once.Do(func() { c.ch = make(chan struct{}, 1) })
	return c.ch
}

// signal is called by the loop after every event it handled.
func (c *changeSignal) signal() {
	select {
	case c.channel() <- struct{}{}:
	default:
	}
}

// Changed receives a value (coalesced) after the agent loop handled an
// event; the API's event stream then takes a fresh snapshot through Status.
func (a *Agent) Changed() <-chan struct{} { return a.changes.channel() }

// Stopped is closed when the agent loop has ended: the event streams end.
func (a *Agent) Stopped() <-chan struct{} { return a.stopped }

// UIEnabled reports whether the API serves the dashboard (api.ui).
func (a *Agent) UIEnabled() bool { return a.shared.Load().API.UIEnabled() }
