package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// apiError is PocketBase's error body; keys are emitted in the order data, message, status.
type apiError struct {
	Data    map[string]any `json:"data"`
	Message string         `json:"message"`
	Status  int            `json:"status"`
}

// fieldError is one ozzo-validation error as PocketBase renders it.
type fieldError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Params  map[string]int `json:"params,omitempty"`
}

const msgGeneric = "Something went wrong while processing your request."

func writeError(w http.ResponseWriter, status int, message string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	body, _ := json.Marshal(apiError{Data: data, Message: message, Status: status})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// setRetryAfter sends Retry-After (whole seconds, at least 1) when err says
// when to try again, as an auth lookup refused by its concurrency limit does
// (auth.LimitError); it reports whether it did.
func setRetryAfter(w http.ResponseWriter, err error) bool {
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) {
		return false
	}
	secs := max(1, int((ra.RetryAfter()+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return true
}

func requiredError() fieldError {
	return fieldError{Code: "validation_required", Message: "Cannot be blank."}
}

// lengthError mirrors ozzo's Length rule: "too long" when min is 0, "out of range" otherwise.
func lengthError(min, max int) fieldError {
	if min == 0 {
		return fieldError{
			Code:    "validation_length_too_long",
			Message: fmt.Sprintf("The length must be no more than %d.", max),
			Params:  map[string]int{"max": max, "min": min},
		}
	}
	return fieldError{
		Code:    "validation_length_out_of_range",
		Message: fmt.Sprintf("The length must be between %d and %d.", min, max),
		Params:  map[string]int{"max": max, "min": min},
	}
}
