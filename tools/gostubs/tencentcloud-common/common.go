// Package common is a stand-in for the TencentCloud SDK's common package (see ../README.md).
package common

// StringPtr returns a pointer to s.
func StringPtr(s string) *string { return &s }

// StringPtrs returns pointers to each element of vals.
func StringPtrs(vals []string) []*string {
	out := make([]*string, len(vals))
	for i := range vals {
		out[i] = &vals[i]
	}
	return out
}

// BoolPtr returns a pointer to b.
func BoolPtr(b bool) *bool { return &b }
