package main

import (
	"slices"
	"testing"
)

func TestPositiveInts(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"1,2,3", []int{1, 2, 3}, false},
		{" 2 , 4,", []int{2, 4}, false},
		{"1,0", nil, true},
		{"1,x", nil, true},
		{"-1", nil, true},
	} {
		got, err := positiveInts(c.in)
		if (err != nil) != c.wantErr || !slices.Equal(got, c.want) {
			t.Errorf("positiveInts(%q) = %v, %v; want %v, error %t", c.in, got, err, c.want, c.wantErr)
		}
	}
}
