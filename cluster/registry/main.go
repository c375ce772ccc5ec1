// livesandbox-registry: the cluster's OCI registry, from github.com/google/go-containerregistry.
//
//	livesandbox-registry serve -addr 127.0.0.1:5000 -dir DIR [-basic-auth FILE]
//	livesandbox-registry push ARCHIVE HOST:PORT/REPO:TAG     (a docker-archive tar, e.g. from build-images)
//
// serve: go-containerregistry's pkg/registry (the OCI distribution API) with blobs on disk under
// DIR/blobs; manifests are kept in memory by that package, so every accepted manifest PUT is also
// appended to DIR/manifests.log and replayed at start (a restart keeps every pushed image).
// -basic-auth FILE (one "user:password" line) makes every /v2/ request need those credentials
// (Basic challenge, as docker login expects): tests use it to try a refusing registry.
// push: uploads a docker-archive (what `docker load` reads) over plain HTTP; no Docker engine needed.
package main

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: livesandbox-registry serve|push ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "push":
		push(os.Args[2:])
	case "version":
		fmt.Println("github.com/google/go-containerregistry/pkg/registry (see go.mod)")
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q: use serve or push\n", os.Args[1])
		os.Exit(2)
	}
}

// record is one accepted manifest PUT, as appended to manifests.log.
type record struct {
	Path string `json:"path"`
	Type string `json:"type"`
	Body []byte `json:"body"`
}

type persisting struct {
	inner http.Handler
	mu    sync.Mutex
	log   *os.File
}

func (p *persisting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
		p.inner.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	p.inner.ServeHTTP(rec, r)
	if rec.Code == http.StatusCreated {
		line, _ := json.Marshal(record{Path: r.URL.Path, Type: r.Header.Get("Content-Type"), Body: body})
		p.mu.Lock()
		_, werr := p.log.Write(append(line, '\n'))
		p.mu.Unlock()
		if werr != nil {
			log.Printf("could not persist manifest %s: %v", r.URL.Path, werr)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func replay(h http.Handler, path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 128<<20)
	for sc.Scan() {
		var rec record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		req := httptest.NewRequest(http.MethodPut, rec.Path, bytes.NewReader(rec.Body))
		req.Header.Set("Content-Type", rec.Type)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code == http.StatusCreated {
			n++
		}
	}
	return n
}

func basicAuth(inner http.Handler, file string) http.Handler {
	raw, err := os.ReadFile(file)
	if err != nil {
		log.Fatalf("-basic-auth: %v", err)
	}
	want := strings.TrimSpace(string(raw))
	user, pass, ok := strings.Cut(want, ":")
	if !ok || user == "" {
		log.Fatalf("-basic-auth %s: expected one user:password line", file)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="livesandbox-registry"`)
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		inner.ServeHTTP(w, r)
	})
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "listen address (keep it on loopback)")
	dir := fs.String("dir", "", "data folder (blobs/ and manifests.log)")
	auth := fs.String("basic-auth", "", "file with one user:password line: require those credentials")
	_ = fs.Parse(args)
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	blobs := filepath.Join(*dir, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		log.Fatal(err)
	}
	quiet := log.New(io.Discard, "", 0)
	inner := registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)), registry.Logger(quiet))
	logPath := filepath.Join(*dir, "manifests.log")
	n := replay(inner, logPath)
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	var h http.Handler = &persisting{inner: inner, log: lf}
	if *auth != "" {
		h = basicAuth(h, *auth)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving the OCI distribution API on %s (data %s, %d manifests restored)", listener.Addr(), *dir, n)
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(s.Serve(listener))
}

func push(args []string) {
	if len(args) != 2 {
		log.Fatal("usage: livesandbox-registry push ARCHIVE HOST:PORT/REPO:TAG")
	}
	ref, err := name.ParseReference(args[1], name.Insecure)
	if err != nil {
		log.Fatal(err)
	}
	img, err := tarball.ImageFromPath(args[0], nil)
	if err != nil {
		log.Fatalf("%s: %v", args[0], err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(authn.Anonymous)); err != nil {
		log.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s@%s\n", ref.Context(), d)
}
