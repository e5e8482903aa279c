package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// printPeerTable prints a "peers" answer as a table: one peer a line.
func printPeerTable(w io.Writer, answer []byte, now time.Time) error {
	var a struct {
		Peers []struct {
			Peer          string    `json:"peer"`
			State         string    `json:"state"`
			Attempt       int       `json:"attempt"`
			NextRetry     time.Time `json:"nextRetry"`
			LastErrorLine string    `json:"lastErrorLine"`
			NextSeq       uint64    `json:"nextSeq"`
			Acked         uint64    `json:"acked"`
			Unacked       int       `json:"unacked"`
			Parked        int       `json:"parked"`
			Delivered     uint64    `json:"delivered"`
			Since         time.Time `json:"since"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(answer, &a); err != nil {
		return fmt.Errorf("reading the peers answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tFOR\tNEXT RETRY\tSENT\tACKED\tUNACKED\tPARKED\tDELIVERED\tLAST ERROR")
	for _, p := range a.Peers {
		state := p.State
		if p.Attempt > 0 {
			state += fmt.Sprintf(" #%d", p.Attempt)
		}
		retry := "-"
		if !p.NextRetry.IsZero() && (p.State == "connecting" || p.State == "reconnecting" || p.State == "failed") {
			retry = "now"
			if d := p.NextRetry.Sub(now); d > 0 {
				retry = "in " + d.Round(time.Second).String()
			}
		}
		since := "-"
		if !p.Since.IsZero() {
			since = now.Sub(p.Since).Round(time.Second).String()
		}
		errText := p.LastErrorLine
		if r := []rune(errText); len(r) > 60 {
			errText = string(r[:59]) + "…"
		}
		if errText == "" {
			errText = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Peer, state, since, retry, p.NextSeq, p.Acked, p.Unacked, p.Parked,
			p.Delivered, errText)
	}
	if len(a.Peers) == 0 {
		fmt.Fprintln(tw, "(no peers)")
	}
	return tw.Flush()
}
