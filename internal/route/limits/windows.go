package limits

import (
	"fmt"
	"strconv"
	"time"
)

// Budget periods.
const (
	Hourly  = "hourly"
	Daily   = "daily"
	Weekly  = "weekly"
	Monthly = "monthly"
)

// Periods lists the budget periods, shortest first.
var Periods = []string{Hourly, Daily, Weekly, Monthly}

// parseHHMM parses "HH:MM" (00:00–23:59) into an offset from midnight.
func parseHHMM(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day (00:00–23:59)", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

// window returns the start and end (UTC) of the budget period containing
// now. Days start at reset (time of day), weeks on Monday at reset, months
// on the 1st at reset; hours on the hour.
func window(period string, reset time.Duration, now time.Time) (start, end time.Time) {
	now = now.UTC()
	switch period {
	case Hourly:
		start = now.Truncate(time.Hour)
		return start, start.Add(time.Hour)
	case Daily:
		start = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Add(reset)
		if start.After(now) {
			start = start.AddDate(0, 0, -1)
		}
		return start, start.AddDate(0, 0, 1)
	case Weekly:
		day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		day = day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7)) // back to Monday
		start = day.Add(reset)
		if start.After(now) {
			start = start.AddDate(0, 0, -7)
		}
		return start, start.AddDate(0, 0, 7)
	default: // Monthly
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).Add(reset)
		if start.After(now) {
			start = start.AddDate(0, -1, 0)
		}
		return start, start.AddDate(0, 1, 0)
	}
}

// rateWindow returns the fixed UTC window (a minute or a day) containing now.
func rateWindow(d time.Duration, now time.Time) (start, end time.Time) {
	start = now.UTC().Truncate(d)
	return start, start.Add(d)
}

// usd ↔ micros.
func micros(usd float64) int64 { return int64(usd*1e6 + 0.5) }

func dollars(m int64) float64 { return float64(m) / 1e6 }
