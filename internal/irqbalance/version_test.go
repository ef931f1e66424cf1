package irqbalance

import (
	"strings"
	"testing"
)

func TestCompareDebianVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		// Equal, and equal by the rules.
		{"1.0", "1.0", 0},
		{"1.0", "1.0-0", 0}, // absent revision is 0
		{"0:1.0", "1.0", 0}, // absent epoch is 0
		{"1.01", "1.1", 0},  // digit runs are numbers
		{"1.0-001", "1.0-1", 0},
		{" 1.0-1 ", "1.0-1", 0},
		{"", "", 0},

		// Tilde sorts before everything, even the end.
		{"1.0~rc1", "1.0", -1},
		{"1.0~rc1", "1.0~rc2", -1},
		{"1.0~~", "1.0~", -1},
		{"1.0~~a", "1.0~", -1},
		{"1.0~", "1.0", -1},
		{"1.0-1~bpo1", "1.0-1", -1},
		{"1.8.0-1ubuntu0.1~20.04", "1.8.0-1ubuntu0.1", -1},

		// Epoch first.
		{"1:0.1", "2.0", 1},
		{"2:1.0", "10:0.1", -1},
		{"1:1.9.3-2", "1.9.3-2", 1},

		// Letters before non-letters; the end before letters.
		{"1.0a", "1.0+", -1},
		{"1.0a", "1.0.", -1},
		{"1.0", "1.0a", -1},
		{"1.0+dfsg", "1.0", 1},
		{"1.0.1", "1.0a", 1}, // '.' sorts after any letter
		{"1.0A", "1.0a", -1},

		// Digit runs numerically, of any length.
		{"1.10", "1.9", 1},
		{"1.2.10", "1.2.9", 1},
		{"2.0", "10.0", -1},
		{"1.99999999999999999999999", "1.100000000000000000000000", -1},
		{"1.0-10", "1.0-9", 1},

		// Revision last, with the last hyphen starting it.
		{"1.0-2", "1.0-10", -1},
		{"1.0-1-2", "1.0-1-10", -1}, // upstream 1.0-1, revisions 2 and 10
		{"1.0-1", "1.0", 1},

		// The irqbalance builds that matter.
		{"1.8.0-1build1", "1.8.0-1ubuntu0.1", -1},
		{"1.8.0-1ubuntu0.1", "1.8.0-1ubuntu0.2", -1},
		{"1.8.0-1ubuntu0.1", "1.8.0-1ubuntu1", -1},
		{"1.8.0-1", "1.8.0-1build1", -1},
		{"1.8.0-1ubuntu0.1", "1.9.0-1", -1},
		{"1.9.2-1", "1.9.3-2", -1},
		{"1.7.0-1", "1.6.0-2ubuntu1", 1},
	} {
		if got := CompareDebianVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareDebianVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareDebianVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareDebianVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// A list in dpkg's order: every pair must compare by position.
func TestCompareDebianVersionsSorted(t *testing.T) {
	sorted := []string{
		"1.0~~", "1.0~~a", "1.0~", "1.0", "1.0-1", "1.0a", "1.0+", "1.0.1",
		"1.6.0-2ubuntu1", "1.7.0~rc1", "1.7.0", "1.7.0-1", "1.8.0-1", "1.8.0-1build1",
		"1.8.0-1ubuntu0.1~20.04", "1.8.0-1ubuntu0.1", "1.8.0-1ubuntu0.2", "1.8.0-1ubuntu1",
		"1.9.0", "1.9.2-1", "1.9.3-2", "1.10.0", "1:0.1", "1:1.9.3-2", "2:0",
	}
	for i := range sorted {
		for j := range sorted {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := CompareDebianVersions(sorted[i], sorted[j]); got != want {
				t.Errorf("CompareDebianVersions(%q, %q) = %d, want %d", sorted[i], sorted[j], got, want)
			}
		}
	}
}

func FuzzCompareDebianVersions(f *testing.F) {
	for _, s := range [][2]string{
		{"1.0~rc1", "1.0"}, {"1:0.1", "2.0"}, {"1.8.0-1build1", "1.8.0-1ubuntu0.1"},
		{"1.8.0-1ubuntu0.1", "1.8.0-1ubuntu0.2"}, {"1.0a", "1.0+"}, {"00", ""}, {"1:", ":1-"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := CompareDebianVersions(a, b), CompareDebianVersions(b, a)
		if ab != -ba {
			t.Fatalf("cmp(%q, %q) = %d but cmp(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if ab < -1 || ab > 1 {
			t.Fatalf("cmp(%q, %q) = %d, want -1, 0 or 1", a, b, ab)
		}
		if c := CompareDebianVersions(a, a); c != 0 {
			t.Fatalf("cmp(%q, %q) = %d, want 0", a, a, c)
		}
		// A version is below itself with ~ appended and above itself with a letter appended
		// (in the revision when there is one, else in the upstream part).
		if !strings.ContainsAny(a, " \t\n\v\f\r\u0085\u00a0") && !strings.HasSuffix(a, ":") {
			if c := CompareDebianVersions(a+"~", a); c != -1 {
				t.Fatalf("cmp(%q, %q) = %d, want -1", a+"~", a, c)
			}
			if c := CompareDebianVersions(a+"a", a); c != 1 {
				t.Fatalf("cmp(%q, %q) = %d, want 1", a+"a", a, c)
			}
		}
	})
}

func TestKnownBuggy(t *testing.T) {
	for _, tc := range []struct {
		version string
		buggy   bool
		why     string // a substring of the reason
	}{
		{"", false, "version unknown"},
		{"  ", false, "version unknown"},
		{"1.8.0-1build1", true, "irqbalance 1.8.0-1build1 never migrates an IRQ once placed (fixed in 1.9.0 and Ubuntu 1.8.0-1ubuntu0.1): a restart only helps until the next VM pause"},
		{"1.8.0-1ubuntu0.1", false, "Ubuntu"},
		{"1.8.0-1ubuntu0.2", false, "Ubuntu"},
		{"1.8.0-1ubuntu1", false, "Ubuntu"},
		{"1.8.0-1ubuntu0.1~20.04", true, "never migrates"}, // a backport before the fix
		{"1.8.0-1ubuntu0", true, "never migrates"},
		{"1.8.0-1", true, "never migrates"},
		{"1.8.0", true, "never migrates"},
		{"1:1.8.0-1build1", true, "never migrates"},
		{"1.8.0+git20220301-1", true, "never migrates"},
		{"1.7.0-1", true, "never migrates"},
		{"1.7.0", true, "never migrates"},
		{"1.7.0-1ubuntu0.1", true, "never migrates"}, // only Ubuntu's 1.8.0 carries the fix
		{"1.7.0~rc1-1", false, "predates"},
		{"1.6.0-2ubuntu1", false, "predates"},
		{"1.9.0", false, "fix"},
		{"1.9.0~rc1-1", true, "never migrates"},
		{"1.9.2-1", false, "fix"},
		{"1:1.9.3-2", false, "fix"},
		{"1.10.0-1", false, "fix"},
		{"unknown", false, "not a Debian package version"},
		{"1:", false, "not a Debian package version"},
	} {
		buggy, why := KnownBuggy(tc.version)
		if buggy != tc.buggy || !strings.Contains(why, tc.why) {
			t.Errorf("KnownBuggy(%q) = %v, %q; want %v, …%q…", tc.version, buggy, why, tc.buggy, tc.why)
		}
	}
}
