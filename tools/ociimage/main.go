// Command ociimage writes nodekeeper's installer image as an OCI image layout,
// offline and with no base image: one layer per platform holding the static
// binary and the .deb and .rpm built for that platform, nothing else (no shell,
// no libc: the installer chroots into the host and uses the host's tools). The
// layout's index.json names one multi-platform image index, whose digest is
// the image's digest; `make image` prints it.
//
//	go run ./ociimage -out DIR -version V -platform linux/amd64=DIR [-platform linux/arm64=DIR]
//
// Each platform directory holds nodekeeper (the binary), one *.deb and one
// *.rpm. File dates and the image's creation time come from SOURCE_DATE_EPOCH
// (else the Unix epoch), so the same inputs give the same digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// platformFlag collects repeated -platform os/arch[/variant]=DIR values.
type platformFlag []platformInput

func (p *platformFlag) String() string { return fmt.Sprint(*p) }

func (p *platformFlag) Set(v string) error {
	in, err := parsePlatform(v)
	if err != nil {
		return err
	}
	*p = append(*p, in)
	return nil
}

func main() {
	var (
		out       = flag.String("out", "", "directory to write the OCI image layout to (replaced)")
		version   = flag.String("version", "devel", "version recorded in the image's labels and reference name")
		platforms platformFlag
	)
	flag.Var(&platforms, "platform", "os/arch[/variant]=DIR with the binary and packages for it (repeat)")
	flag.Parse()
	if *out == "" || len(platforms) == 0 {
		fmt.Fprintln(os.Stderr, "usage: ociimage -out DIR -version V -platform linux/amd64=DIR [-platform ...]")
		os.Exit(2)
	}
	created, err := sourceDate(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(2)
	}
	digest, err := Build(context.Background(), Spec{Out: *out, Version: *version, Created: created, Platforms: platforms})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
	fmt.Println(digest)
}

// sourceDate turns SOURCE_DATE_EPOCH into a time; empty means the epoch.
func sourceDate(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}
