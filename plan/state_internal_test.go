package plan

import (
	"testing"
	"unsafe"
)

// TestStateSize: the middleware's per-request state stays within the
// allocator's 896-byte size class, which holds 888 bytes of an object
// with pointers (the rest is the allocator's header); a field added to it
// should take its bytes from buf, or be worth the next class (1,024
// bytes).
func TestStateSize(t *testing.T) {
	n := unsafe.Sizeof(reqState{})
	t.Logf("reqState: %d bytes", n)
	if n > 888 {
		t.Errorf("reqState is %d bytes; want at most 888", n)
	}
}
