package rules

import (
	"sync/atomic"
	"time"
)

// macro is one of PocketBase's @ datetime macros. All are UTC based.
type macro uint8

const (
	macroNow macro = iota
	macroYesterday
	macroTomorrow
	macroTodayStart
	macroTodayEnd
	macroMonthStart
	macroMonthEnd
	macroYearStart
	macroYearEnd
	numDateMacros // the macros above are datetime strings, the ones below numbers

	macroSecond
	macroMinute
	macroHour
	macroDay
	macroMonth
	macroWeekday
	macroYear
)

var macros = map[string]macro{
	"@now":        macroNow,
	"@yesterday":  macroYesterday,
	"@tomorrow":   macroTomorrow,
	"@todayStart": macroTodayStart,
	"@todayEnd":   macroTodayEnd,
	"@monthStart": macroMonthStart,
	"@monthEnd":   macroMonthEnd,
	"@yearStart":  macroYearStart,
	"@yearEnd":    macroYearEnd,
	"@second":     macroSecond,
	"@minute":     macroMinute,
	"@hour":       macroHour,
	"@day":        macroDay,
	"@month":      macroMonth,
	"@weekday":    macroWeekday,
	"@year":       macroYear,
}

// dateLayout is how PocketBase stores and prints datetimes; the macros
// produce the same text so they compare as text with record dates.
const dateLayout = "2006-01-02 15:04:05.000Z"

// dateSnapshot holds the datetime macros of one millisecond.
type dateSnapshot struct {
	milli int64
	text  [numDateMacros]string
}

// lastDates caches the latest snapshot: formatting allocates, and every
// evaluation within the same millisecond wants the same strings.
var lastDates atomic.Pointer[dateSnapshot]

// macroValue returns the value of m at now (time.Now() when zero).
func macroValue(m macro, now time.Time) value {
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC()
	switch m {
	case macroSecond:
		return intValue(int(now.Second()))
	case macroMinute:
		return intValue(int(now.Minute()))
	case macroHour:
		return intValue(int(now.Hour()))
	case macroDay:
		return intValue(int(now.Day()))
	case macroMonth:
		return intValue(int(now.Month()))
	case macroWeekday:
		return intValue(int(now.Weekday()))
	case macroYear:
		return intValue(int(now.Year()))
	}
	if m >= numDateMacros {
		return nullValue
	}
	milli := now.UnixMilli()
	snap := lastDates.Load()
	if snap == nil || snap.milli != milli {
		snap = newDateSnapshot(now)
		lastDates.Store(snap)
	}
	return textValue(snap.text[m])
}

func newDateSnapshot(now time.Time) *dateSnapshot {
	y, mo, d := now.Date()
	dayStart := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	dayEnd := time.Date(y, mo, d, 23, 59, 59, 999999999, time.UTC)
	s := &dateSnapshot{milli: now.UnixMilli()}
	s.text[macroNow] = now.Format(dateLayout)
	s.text[macroYesterday] = now.AddDate(0, 0, -1).Format(dateLayout)
	s.text[macroTomorrow] = now.AddDate(0, 0, 1).Format(dateLayout)
	s.text[macroTodayStart] = dayStart.Format(dateLayout)
	s.text[macroTodayEnd] = dayEnd.Format(dateLayout)
	s.text[macroMonthStart] = time.Date(y, mo, 1, 0, 0, 0, 0, time.UTC).Format(dateLayout)
	s.text[macroMonthEnd] = time.Date(y, mo, 1, 23, 59, 59, 999999999, time.UTC).AddDate(0, 1, -1).Format(dateLayout)
	s.text[macroYearStart] = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Format(dateLayout)
	s.text[macroYearEnd] = time.Date(y, 12, 31, 23, 59, 59, 999999999, time.UTC).Format(dateLayout)
	return s
}
