package planner

import (
	"encoding/base64"
	"encoding/json"
	"math/bits"
)

// bitset is a compact set of task indexes, kept in the job record so a job of
// ten thousand nodes needs about a kilobyte per state.
type bitset []byte

func newBitset(n int) bitset { return make(bitset, (n+7)/8) }

// set adds i and reports whether it was absent.
func (b bitset) set(i int) bool {
	if i < 0 || i/8 >= len(b) {
		return false
	}
	m := byte(1) << (i % 8)
	if b[i/8]&m != 0 {
		return false
	}
	b[i/8] |= m
	return true
}

// add adds i, growing the set as needed, and reports whether it was absent.
func (b *bitset) add(i int) bool {
	if i < 0 {
		return false
	}
	if need := i/8 + 1; need > len(*b) {
		*b = append(*b, make(bitset, need-len(*b))...)
	}
	return b.set(i)
}

func (b bitset) has(i int) bool {
	return i >= 0 && i/8 < len(b) && b[i/8]&(byte(1)<<(i%8)) != 0
}

func (b bitset) count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

func (b bitset) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawStdEncoding.EncodeToString(b))
}

func (b *bitset) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
