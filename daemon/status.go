package daemon

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"runtime/debug"
	"time"
)

//go:embed status.html
var statusHTML []byte

//go:embed status.js
var statusJS []byte

// Version returns the module version recorded by the Go toolchain (a tag
// for `go install …@vX`, "(devel)" for a build from a checkout), with the
// VCS revision when the build recorded one.
func Version() string {
	v := "(devel)"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if info.Main.Version != "" {
		v = info.Main.Version
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && v == "(devel)" {
			v += " " + s.Value[:12]
		}
	}
	return v
}

// Info is the node's information: the ready line's, with version, uptime,
// relay reservations and health (the info op, GET /v1/info, the status
// page).
type Info struct {
	Ready
	// Event is "info" as a stdio answer (omitted on GET /v1/info); it
	// hides the ready line's.
	Event         string          `json:"event,omitempty"`
	ID            json.RawMessage `json:"id,omitempty"`
	StartedAt     time.Time       `json:"startedAt"`
	UptimeSeconds int64           `json:"uptimeSeconds"`
	Relays        []RelayInfo     `json:"relays"`
	Health        Health          `json:"health"`
	// Events describes the API's durable event log (omitted without it).
	Events *EventLogInfo `json:"events,omitempty"`
}

// EventLogInfo is the state of the durable event log.
type EventLogInfo struct {
	First    uint64 `json:"first"` // first ID stored (last+1 when empty)
	Last     uint64 `json:"last"`
	Bytes    int64  `json:"bytes"`
	MaxBytes int64  `json:"maxBytes,omitempty"`
	MaxAge   string `json:"maxAge,omitempty"`
}

// Info returns the node's information.
func (d *Daemon) Info() Info {
	inf := Info{Ready: d.Ready(), StartedAt: d.started.UTC().Round(time.Second), UptimeSeconds: int64(time.Since(d.started) / time.Second),
		Relays: relayInfos(d.n.Transport().Relays()), Health: d.health()}
	if d.elog != nil {
		first, head, _ := d.elog.position()
		d.elog.mu.Lock()
		total := d.elog.total
		d.elog.mu.Unlock()
		inf.Events = &EventLogInfo{First: first, Last: head, Bytes: total}
		if d.opts.EventMaxBytes > 0 {
			inf.Events.MaxBytes = d.opts.EventMaxBytes
		}
		if d.opts.EventMaxAge > 0 {
			inf.Events.MaxAge = d.opts.EventMaxAge.String()
		}
	}
	return inf
}

// statusPage serves the status page; its script authenticates with the
// session cookie a one-time login link set.
func (a *apiServer) statusPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "+
		"img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Write(statusHTML)
}

func (a *apiServer) statusScript(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Write(statusJS)
}

// healthz answers 200 {"status":"ok"}, or 503 with the problems when
// relays are configured and none holds a reservation.
func (a *apiServer) healthz(w http.ResponseWriter, _ *http.Request) {
	h := a.d.health()
	status := http.StatusOK
	if h.Status != "ok" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
}
