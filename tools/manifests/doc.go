// Package manifests checks the Kubernetes manifests under deploy/kubernetes:
// `kubectl kustomize` renders them and every rendered object decodes strictly
// (no unknown or misspelt field) into its Kubernetes type, and the DaemonSets
// carry what installing onto a managed node needs. It lives in the tools module
// because k8s.io/api is a test-only dependency that the daemon's module graph
// should not carry.
package manifests
