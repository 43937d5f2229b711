package flist

import (
	"bytes"
	"testing"
)

func FuzzDecode(f *testing.F) {
	good, err := sample(f).Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, n := range []int{0, 4, 8, 9, 12, len(good) / 2, len(good) - 1} {
		f.Add(good[:n])
	}
	for _, i := range []int{4, 6, 8, 10, 13, 20, len(good) / 2, len(good) - 1} {
		b := append([]byte(nil), good...)
		b[i] ^= 0x01
		f.Add(b)
		b = append([]byte(nil), good...)
		b[i] ^= 0x80
		f.Add(b)
	}
	f.Add(append([]byte("ZBFX"), good[4:]...))
	if p, err := packedSample(f).Encode(); err == nil {
		f.Add(p)
		f.Add(p[:len(p)-1])
	}
	f.Add(append([]byte("ZBFL\x02\x00"), good[6:]...))
	if b3, err := withHash(f, packedSample(f), BLAKE3).Encode(); err == nil {
		f.Add(b3)
		f.Add(append([]byte("ZBFL\x02\x00"), b3[6:]...))
	}
	f.Add(encodeRaw([]Entry{{Path: "a", Type: TypeDir}, {Path: "a", Type: TypeDir}}))
	f.Add(encodeRaw([]Entry{{Path: "..", Type: TypeDir}}))
	f.Add(encodeRaw([]Entry{{Path: "a", Type: TypeDir}, {Path: "a/../b", Type: TypeFile}}))

	f.Fuzz(func(t *testing.T, in []byte) {
		fl, err := Decode(in)
		if err != nil {
			return
		}
		out, err := fl.Encode()
		if err != nil {
			t.Fatalf("decoded flist does not encode: %v", err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", in, out)
		}
	})
}
