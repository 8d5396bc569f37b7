// Verifies runlog checkpoints and proofs with Go's golang.org/x/mod/sumdb/note and tlog,
// unchanged. Reads one JSON case from stdin, prints one JSON verdict per check to stdout.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index    int64    `json:"index"`
	Size     int64    `json:"size"`
	LeafHash string   `json:"leaf_hash"`
	Proof    []string `json:"proof"`
	Root     string   `json:"root"`
}

type consistency struct {
	Old     int64    `json:"old"`
	New     int64    `json:"new"`
	Proof   []string `json:"proof"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
}

type input struct {
	VerifierKey string        `json:"verifier_key"`
	Checkpoint  string        `json:"checkpoint"`
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
}

type output struct {
	CheckpointOK    bool     `json:"checkpoint_ok"`
	CheckpointError string   `json:"checkpoint_error,omitempty"`
	Origin          string   `json:"origin"`
	Size            int64    `json:"size"`
	Root            string   `json:"root"`
	Inclusion       []string `json:"inclusion"`
	Consistency     []string `json:"consistency"`
}

func hash(s string) tlog.Hash {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(h) {
		fmt.Fprintf(os.Stderr, "bad hash %q\n", s)
		os.Exit(2)
	}
	copy(h[:], b)
	return h
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		out[i] = hash(s)
	}
	return out
}

func verdict(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

func openCheckpoint(in input, out *output) {
	v, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		out.CheckpointError = "verifier key: " + err.Error()
		return
	}
	n, err := note.Open([]byte(in.Checkpoint), note.VerifierList(v))
	if err != nil {
		out.CheckpointError = err.Error()
		return
	}
	// C2SP tlog-checkpoint body: origin, decimal size, base64 root, optional extension lines.
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		out.CheckpointError = "checkpoint body has fewer than three lines"
		return
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		out.CheckpointError = "size: " + err.Error()
		return
	}
	hash(lines[2])
	out.CheckpointOK, out.Origin, out.Size, out.Root = true, lines[0], size, lines[2]
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := output{Inclusion: []string{}, Consistency: []string{}}
	if in.Checkpoint != "" {
		openCheckpoint(in, &out)
	}
	for _, c := range in.Inclusion {
		err := tlog.CheckRecord(hashes(c.Proof), c.Size, hash(c.Root), c.Index, hash(c.LeafHash))
		out.Inclusion = append(out.Inclusion, verdict(err))
	}
	for _, c := range in.Consistency {
		err := tlog.CheckTree(hashes(c.Proof), c.New, hash(c.NewRoot), c.Old, hash(c.OldRoot))
		out.Consistency = append(out.Consistency, verdict(err))
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
