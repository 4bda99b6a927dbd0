package httpapi

import (
	"fmt"
	"time"
)

// parseRFC3339 parses an RFC 3339 time as the API's documents define date-time. time.Parse also
// takes UTC offsets of 24 hours (+24:00, +23:60), which RFC 3339 does not allow (its offset
// hours are 00-23): such a time is refused like any other malformed one.
func parseRFC3339(v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, err
	}
	if _, offset := t.Zone(); offset <= -24*3600 || offset >= 24*3600 {
		return time.Time{}, fmt.Errorf("parsing time %q: UTC offset out of range", v)
	}
	return t, nil
}
