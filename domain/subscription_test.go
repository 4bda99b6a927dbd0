package domain

import (
	"testing"
	"time"
)

func TestMRR(t *testing.T) {
	yearly := catalogPlan(t, "pro_yearly").Terms() // 49000/year = 4083.33/month
	tests := []struct {
		status Status
		want   int64
	}{
		{StatusTrialing, 0},
		{StatusActive, 12250}, // 3 × 49000 / 12
		{StatusPastDue, 12250},
		{StatusPaused, 0},
		{StatusCanceled, 0},
	}
	for _, tt := range tests {
		s := Subscription{Plan: yearly, Seats: 3, Status: tt.status, Version: 1}
		if got := s.MRR(); got != tt.want {
			t.Errorf("MRR() while %s = %d, want %d", tt.status, got, tt.want)
		}
	}
}

func TestFold(t *testing.T) {
	if got := Fold(nil); got.Exists() {
		t.Errorf("Fold(nil) = %+v, want the zero state", got)
	}
	s, created := apply(t, Subscription{}, Create{SubscriptionID: "sub_1", CustomerID: "cus_1", Plan: catalogPlan(t, "pro_monthly"), Seats: 2}, t0)
	_, changed := apply(t, s, ChangeSeats{Seats: 3}, t0.Add(time.Hour))
	got := Fold(append(created, changed...))
	if !got.Exists() || got.Version != 2 || got.Seats != 3 || got.UpdatedAt != t0.Add(time.Hour) || got.CreatedAt != t0 {
		t.Errorf("Fold = %+v, want version 2 with 3 seats, updated an hour after creation", got)
	}
}
