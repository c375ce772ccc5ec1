// Command livesandbox-argocd is Argo CD (github.com/argoproj/argo-cd/v3, the version in go.mod) cut
// down to the two components the cluster runs: the application controller and the repo server.
// Argo CD's own multi-call binary (cmd/main.go) also links the API server, the CLI, Dex, the
// ApplicationSet and notifications controllers; none of them is needed to sync an Application
// that is created and triggered through the Kubernetes API.
//
//	livesandbox-argocd application-controller [flags]   (= argocd-application-controller)
//	livesandbox-argocd repo-server [flags]              (= argocd-repo-server)
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	// As Argo CD's main: klog logs through Argo CD's logger (level and format from its flags/env).
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: livesandbox-argocd application-controller|repo-server [flags]")
		os.Exit(2)
	}
	var command *cobra.Command
	switch os.Args[1] {
	case "application-controller":
		command = appcontroller.NewCommand()
	case "repo-server":
		command = reposerver.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "livesandbox-argocd: unknown component %q (application-controller, repo-server)\n", os.Args[1])
		os.Exit(2)
	}
	command.SetArgs(os.Args[2:])
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
