package fuzzcorpus

import "testing"

// TestMarshal pins the `go test fuzz v1` encoding: `go test` refuses a corpus file it cannot
// parse, so a drift here would show up as a broken fuzz test, but with a less helpful message.
func TestMarshal(t *testing.T) {
	got, err := Marshal("a\"b", []byte("\x00\xff"), byte('x'), int64(-3), uint32(7), true)
	if err != nil {
		t.Fatal(err)
	}
	want := "go test fuzz v1\nstring(\"a\\\"b\")\n[]byte(\"\\x00\\xff\")\nbyte('x')\nint64(-3)\nuint32(7)\nbool(true)\n"
	if string(got) != want {
		t.Errorf("Marshal = %q, want %q", got, want)
	}
	if _, err := Marshal(1.5); err == nil {
		t.Error("Marshal(float64) succeeded; want an error for an unsupported type")
	}
}
