// Command fakeimds is a tiny stand-in for Azure's Instance Metadata Service,
// for end-to-end tests that run nodekeeper on a whole system (a VM guest)
// where the test cannot drive a fake in its own process.
//
//	fakeimds serve -listen ADDR -vm NAME -dir DIR
//	fakeimds get [-bare] URL
//
// serve answers GET /metadata/scheduledevents and GET /metadata/instance on
// ADDR, and refuses (400) every request without the "Metadata: true" header,
// as IMDS does. Its scheduled events document walks one Freeze for the VM
// NAME through its life, driven by control files in DIR:
//
//	(neither file)   the Freeze is Scheduled (NotBefore 15 minutes after serve started)
//	DIR/start        the Freeze is Started
//	DIR/remove       the Freeze is gone: its impact is over
//	DIR/churn        hostile input: 4 000 Freeze events for the VM, under new
//	                 ids and a new DocumentIncarnation at every request
//
// A Freeze of another VM stays Scheduled all along (nodekeeper must ignore
// it). DocumentIncarnation grows with each step. Every request is logged on
// stderr, refused ones with "refused".
//
// get fetches URL with the Metadata header (without it when -bare), prints
// the body and exits 0 on 200, 1 on any other status or error: a curl for a
// guest that has none.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/imds/imdstest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fakeimds serve -listen ADDR -vm NAME -dir DIR | fakeimds get [-bare] URL")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "get":
		os.Exit(get(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "fakeimds: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// churnEvents is how many events the churn document lists: far more than
// the handful Azure lists per VM.
const churnEvents = 4000

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8254", "address to listen on")
	name := fs.String("vm", "vm-0", "this VM's name (compute.name, the Freeze's resource)")
	dir := fs.String("dir", "/run/fakeimds", "directory of the control files start and remove")
	_ = fs.Parse(args)
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	notBefore := time.Now().Add(15 * time.Minute).UTC().Format(http.TimeFormat)
	exists := func(f string) bool { _, err := os.Stat(filepath.Join(*dir, f)); return err == nil }
	freeze := func(id, vm, status string) imdstest.Event {
		e := imdstest.Event{
			EventID: id, EventType: "Freeze", ResourceType: "VirtualMachine", Resources: []string{vm},
			EventStatus: status, EventSource: "Platform", DurationInSeconds: 5,
			Description: "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
		}
		if status == "Scheduled" {
			e.NotBefore = notBefore
		}
		return e
	}
	log.SetFlags(log.Lmicroseconds)
	var mu sync.Mutex
	round := 1000 // above the walk's incarnations
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" || r.Header.Get("X-Forwarded-For") != "" {
			log.Printf("refused %s %s: no Metadata header", r.Method, r.URL)
			http.Error(w, `{"error":"Bad request. Required metadata header not specified"}`, http.StatusBadRequest)
			return
		}
		var body any
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/metadata/scheduledevents":
			step, events := 1, []imdstest.Event{freeze("0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9", "some-other-vm", "Scheduled")}
			switch {
			case exists("churn"):
				mu.Lock()
				round++
				step, events = round, imdstest.ChurnEvents(churnEvents, round, *name)
				mu.Unlock()
			case exists("remove"):
				step = 3
			case exists("start"):
				step = 2
				events = append(events, freeze("C7061BAC-AFDC-4513-B24B-AA5F13A16123", *name, "Started"))
			default:
				events = append(events, freeze("C7061BAC-AFDC-4513-B24B-AA5F13A16123", *name, "Scheduled"))
			}
			body = map[string]any{"DocumentIncarnation": step, "Events": events}
		case r.Method == http.MethodGet && r.URL.Path == "/metadata/instance":
			body = map[string]any{"compute": map[string]any{"name": *name, "location": "westeurope"}}
		default:
			log.Printf("not found %s %s", r.Method, r.URL)
			http.Error(w, `{"error":"Not found"}`, http.StatusNotFound)
			return
		}
		log.Printf("%s %s", r.Method, r.URL)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(body)
	})
	log.Printf("serving on %s for VM %q, control files in %s", *listen, *name, *dir)
	log.Fatal(http.ListenAndServe(*listen, nil))
}

func get(args []string) int {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	bare := fs.Bool("bare", false, "send no Metadata header")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: fakeimds get [-bare] URL")
		return 2
	}
	req, err := http.NewRequest(http.MethodGet, fs.Arg(0), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeimds:", err)
		return 1
	}
	if !*bare {
		req.Header.Set("Metadata", "true")
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeimds:", err)
		return 1
	}
	defer resp.Body.Close()
	_, err = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode != http.StatusOK || err != nil {
		fmt.Fprintf(os.Stderr, "fakeimds: GET %s: %s %v\n", fs.Arg(0), resp.Status, err)
		return 1
	}
	return 0
}
