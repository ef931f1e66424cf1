package irqbalance

import (
	"fmt"
	"strings"
)

// CompareDebianVersions orders two Debian package versions
// ([epoch:]upstream[-revision]) the way dpkg does, and returns -1, 0 or +1.
//
// The epoch compares numerically (absent = 0); upstream and revision compare
// with dpkg's algorithm: alternating runs of non-digits, compared character by
// character with '~' before everything (even the end of the string) and
// letters before all other characters, and runs of digits, compared as numbers
// of any length. An absent revision equals "0". Leading and trailing white
// space is ignored. Malformed versions are not rejected: they still get a
// consistent order (cmp(a, b) == -cmp(b, a)).
func CompareDebianVersions(a, b string) int {
	ea, ua, ra := splitDebianVersion(a)
	eb, ub, rb := splitDebianVersion(b)
	if c := verrevcmp(ea, eb); c != 0 {
		return c
	}
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(ra, rb)
}

// splitDebianVersion splits [epoch:]upstream[-revision]: the epoch ends at the
// first colon, the revision starts after the last hyphen.
func splitDebianVersion(v string) (epoch, upstream, revision string) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ':'); i >= 0 {
		epoch, v = v[:i], v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v, revision = v[:i], v[i+1:]
	}
	return epoch, v, revision
}

// order is dpkg's weight of one character in a non-digit run; the end of the
// string (and a digit, which ends the run) weighs 0.
func order(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return int(c)
	case c == '~':
		return -1
	}
	return int(c) + 256
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// verrevcmp is dpkg's comparison of an upstream version or a revision, with
// digit runs compared as decimal strings so that no length overflows.
func verrevcmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			if oa, ob := order(a, i), order(b, j); oa != ob {
				return sign(oa - ob)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		si, sj := i, j
		for i < len(a) && isDigit(a[i]) {
			i++
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
		da, db := a[si:i], b[sj:j]
		if len(da) != len(db) {
			return sign(len(da) - len(db))
		}
		if c := strings.Compare(da, db); c != 0 {
			return c
		}
	}
	return 0
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// The releases with the never-migrate bug, and Ubuntu's first fixed build.
const (
	buggyFrom       = "1.7.0" // upstream commit e9e2811 first released
	fixedIn         = "1.9.0" // upstream commit 2a66a66
	ubuntuBuggyBase = "1.8.0"
	ubuntuFixed     = "1.8.0-1ubuntu0.1" // Launchpad bug 2038573
)

// KnownBuggy reports whether an installed irqbalance version (a Debian
// package version) is a release in which an IRQ is never migrated once placed:
// upstream 1.7.0 up to, not including, 1.9.0, unless it is an Ubuntu 1.8.0
// build carrying the fix (1.8.0-1ubuntu0.1 and later 1.8.0-*ubuntu* builds).
// The epoch is ignored: it only restarts a distribution's numbering. why is
// one sentence for the journal, given either way.
func KnownBuggy(version string) (buggy bool, why string) {
	v := strings.TrimSpace(version)
	if v == "" {
		return false, "version unknown"
	}
	_, upstream, revision := splitDebianVersion(v)
	if upstream == "" || !isDigit(upstream[0]) {
		return false, fmt.Sprintf("irqbalance version %q is not a Debian package version", v)
	}
	switch {
	case verrevcmp(upstream, buggyFrom) < 0:
		return false, fmt.Sprintf("irqbalance %s predates the release that stopped IRQs from migrating (%s)", v, buggyFrom)
	case verrevcmp(upstream, fixedIn) >= 0:
		return false, fmt.Sprintf("irqbalance %s has the fix that lets IRQs migrate again (%s)", v, fixedIn)
	case verrevcmp(upstream, ubuntuBuggyBase) == 0 && strings.Contains(revision, "ubuntu") &&
		CompareDebianVersions(ubuntuBuggyBase+"-"+revision, ubuntuFixed) >= 0:
		return false, fmt.Sprintf("irqbalance %s carries Ubuntu's fix that lets IRQs migrate again (%s, LP #2038573)", v, ubuntuFixed)
	}
	return true, fmt.Sprintf("irqbalance %s never migrates an IRQ once placed (fixed in %s and Ubuntu %s): a restart only helps until the next VM pause",
		v, fixedIn, ubuntuFixed)
}
