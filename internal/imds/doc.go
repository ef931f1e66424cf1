// Package imds owns nodekeeper's conversation with the Azure Instance Metadata
// Service: polling Scheduled Events (Client, Parse, Watcher), learning this VM's
// name from instance metadata, approving a Freeze event when asked to, and
// telling whether the machine is an Azure VM at all (DetectAzure).
//
// The Watcher reports through an Observer and keeps no metrics of its own: the
// daemon wires what it reports to its registry and to the freeze correlator.
// Nothing IMDS returns can make this package panic: bodies are capped, parsed
// leniently, and every failure is classified, backed off and logged once.
package imds
