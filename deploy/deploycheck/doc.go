// Package deploycheck checks the deployment files under deploy/ offline, since neither
// Docker nor a Kubernetes cluster runs where the tests do: the Dockerfiles against the setup
// task (deploy/scripts/setup.sh) and the repository, deploy/compose.yaml decoded strictly
// into typed structs, every kustomize overlay of deploy/k8s built with the kustomize Go API
// and decoded strictly into its Kubernetes type, the users of deploy/nats/nats-server.conf
// (one per lae command, each able to look up every stream), and the NATS Helm values against
// that config. Each check returns every problem it finds, so one run of
// `task deploy-check` lists them all.
package deploycheck
