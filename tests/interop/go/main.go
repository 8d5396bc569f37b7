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
	Receipts    []string      `json:"receipts"`
}

type output struct {
	CheckpointOK    bool     `json:"checkpoint_ok"`
	CheckpointError string   `json:"checkpoint_error,omitempty"`
	Origin          string   `json:"origin"`
	Size            int64    `json:"size"`
	Root            string   `json:"root"`
	Inclusion       []string `json:"inclusion"`
	Consistency     []string `json:"consistency"`
	Receipts        []string `json:"receipts"`
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

// checkReceipt follows docs/FORMAT.md "Receipts" (version 2): the batch note after the first blank
// line must be signed by the log key; the statement (six lines), at the receipt's index, must lead
// through the proof to the batch note's root in a tree of the batch note's size.
func checkReceipt(verifierKey, receipt string) string {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return "verifier key: " + err.Error()
	}
	head, batch, found := strings.Cut(receipt, "\n\n")
	if !found {
		return "no batch note"
	}
	n, err := note.Open([]byte(batch), note.VerifierList(v))
	if err != nil {
		return err.Error()
	}
	body := strings.Split(n.Text, "\n")
	if len(body) != 5 || body[0] != "runlog-receipt-batch/v2" {
		return "batch note body"
	}
	size, err := strconv.ParseInt(body[2], 10, 64)
	if err != nil {
		return "batch size: " + err.Error()
	}
	lines := strings.Split(head, "\n")
	if len(lines) < 7 || lines[0] != "runlog-receipt/v2" || lines[1] != body[1] || !strings.HasPrefix(lines[6], "index ") {
		return "statement"
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(lines[6], "index "), 10, 64)
	if err != nil {
		return "index: " + err.Error()
	}
	statement := strings.Join(lines[:6], "\n") + "\n"
	return verdict(tlog.CheckRecord(hashes(lines[7:]), size, hash(body[3]), index, tlog.RecordHash([]byte(statement))))
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	out := output{Inclusion: []string{}, Consistency: []string{}, Receipts: []string{}}
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
	for _, r := range in.Receipts {
		out.Receipts = append(out.Receipts, checkReceipt(in.VerifierKey, r))
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
