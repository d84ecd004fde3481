package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration is the one parser of durations, in the environment and in
// the policy file: a Go duration ("72h", "90m", "1h30m"), a number of days
// ("3d"), or days followed by a Go duration ("1d12h").
func ParseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || n > 100000 {
		return 0, fmt.Errorf("%q is not a duration (like 3d or 72h)", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("%q is not a duration (like 3d or 72h)", s)
		}
		d += r
	}
	return d, nil
}

// ParseDays is ParseDuration.
//
// Deprecated: use ParseDuration.
func ParseDays(s string) (time.Duration, error) { return ParseDuration(s) }
