// Command reaper deletes pytest-livesandbox sandbox namespaces whose lease lapsed or whose TTL
// passed: the in-cluster reaper (`livesandbox reaper install` runs it as a CronJob), so a CI
// runner killed mid-run leaves nothing behind even if nobody ever runs `livesandbox gc`.
//
// Standard library only. It talks to the API server as its ServiceAccount and touches only
// namespaces labelled app.kubernetes.io/managed-by=pytest-livesandbox (plus REAPER_SELECTOR, if
// set); each delete carries the resourceVersion it was decided on, so a namespace a run claimed
// or renewed in between is left alone. One JSON line per namespace deleted.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

const (
	saDir        = "/var/run/secrets/kubernetes.io/serviceaccount"
	managedBy    = "app.kubernetes.io/managed-by"
	ours         = "pytest-livesandbox"
	leaseExpires = "livesandbox/lease-expires-at"
	expiresAt    = "livesandbox/expires-at"
)

type namespace struct {
	Metadata struct {
		Name            string            `json:"name"`
		ResourceVersion string            `json:"resourceVersion"`
		Labels          map[string]string `json:"labels"`
		Annotations     map[string]string `json:"annotations"`
	} `json:"metadata"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

func past(value string, now time.Time) bool {
	at, err := time.Parse(time.RFC3339, value)
	return err == nil && at.Before(now)
}

// reason says why ns goes ("lapsed", "expired") or "" when it stays.
func reason(ns namespace, now time.Time) string {
	if ns.Metadata.Labels[managedBy] != ours || ns.Status.Phase == "Terminating" {
		return ""
	}
	if lease, ok := ns.Metadata.Annotations[leaseExpires]; ok && past(lease, now) {
		return "lapsed"
	}
	if past(ns.Metadata.Annotations[expiresAt], now) {
		return "expired"
	}
	return ""
}

func main() {
	token, err := os.ReadFile(saDir + "/token")
	check(err)
	ca, err := os.ReadFile(saDir + "/ca.crt")
	check(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	api := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
	selector := managedBy + "=" + ours
	if extra := os.Getenv("REAPER_SELECTOR"); extra != "" {
		selector += "," + extra
	}
	call := func(method, path string, body []byte) (int, []byte) {
		req, err := http.NewRequest(method, api+path, bytes.NewReader(body))
		check(err)
		req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		check(err)
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}
	status, data := call("GET", "/api/v1/namespaces?labelSelector="+url.QueryEscape(selector), nil)
	if status != http.StatusOK {
		check(fmt.Errorf("listing namespaces: HTTP %d: %s", status, data))
	}
	var list struct {
		Items []namespace `json:"items"`
	}
	check(json.Unmarshal(data, &list))
	now := time.Now()
	for _, ns := range list.Items {
		why := reason(ns, now)
		if why == "" {
			continue
		}
		options, _ := json.Marshal(map[string]any{
			"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
			"preconditions": map[string]string{"resourceVersion": ns.Metadata.ResourceVersion},
		})
		code, _ := call("DELETE", "/api/v1/namespaces/"+url.PathEscape(ns.Metadata.Name), options)
		line, _ := json.Marshal(map[string]any{"namespace": ns.Metadata.Name, "reason": why, "status": code})
		fmt.Println(string(line))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		os.Exit(1)
	}
}
