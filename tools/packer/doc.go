// Package packer checks the Packer template under image/packer: it parses as
// HCL, builds both azure-arm sources, uses only declared variables and runs the
// install script. It lives in the tools module because its HCL parser is a
// test-only dependency that the daemon's module graph should not carry.
package packer
