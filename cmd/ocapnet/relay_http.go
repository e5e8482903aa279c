package main

import (
	"fmt"
	"net/http"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ocapnet/ocapnet/relay"
)

// relayHTTP serves /metrics from reg and /healthz: 200 "ok" while the relay
// serves, else 503 with the reason.
func relayHTTP(srv *relay.Server, reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := srv.Health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// allowList is the union of the --allow-peer flags and the
// --allow-peers-file entries; nil when neither is given (everyone).
func allowList(flags []string, file string) ([]peer.ID, error) {
	var ids []peer.ID
	for _, f := range flags {
		id, err := peer.Decode(f)
		if err != nil {
			return nil, fmt.Errorf("--allow-peer %q is not a peer ID: %w", f, err)
		}
		ids = append(ids, id)
	}
	if file != "" {
		more, err := relay.ReadAllowList(file)
		if err != nil {
			return nil, fmt.Errorf("--allow-peers-file: %w", err)
		}
		if len(more) == 0 && len(ids) == 0 {
			return nil, fmt.Errorf("--allow-peers-file %s lists no peer: nobody could use the relay", file)
		}
		ids = append(ids, more...)
	}
	return ids, nil
}
