package ntp_test

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// server is how one in-test NTP server behaves. The zero value is an
// honest stratum 2 server on the real time.
type server struct {
	now       func() time.Time // the server's clock; nil: time.Now
	offset    time.Duration    // added to now
	stratum   uint8            // 0: 2 (or 0 with kiss)
	kiss      string           // a kiss-o'-death: stratum 0 with this reference ID
	leap      uint8            // leap indicator, 3 is "not synchronised"
	rootDisp  time.Duration    // root dispersion
	badOrigin bool             // answer with an origin timestamp that is not the request's
	silent    bool             // read requests, answer nothing
	garbage   []byte           // answer with these bytes instead of a packet
}

// start serves NTPv4 on 127.0.0.1 at a random port until the test ends
// and returns its HOST:PORT.
func (s server) start(t *testing.T) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFromUDP(buf)
			if err != nil {
				return // closed at the end of the test
			}
			if reply := s.answer(buf[:n]); reply != nil {
				conn.WriteToUDP(reply, peer)
			}
		}
	}()
	return conn.LocalAddr().String()
}

// answer builds the reply to one request as an NTPv4 server would
// (RFC 5905 section 7.3), or nil for none.
func (s server) answer(req []byte) []byte {
	if s.silent || len(req) < 48 || req[0]&7 != 3 { // mode 3: client
		return nil
	}
	if s.garbage != nil {
		return s.garbage
	}
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	recv := now().Add(s.offset)
	p := make([]byte, 48)
	stratum := s.stratum
	if stratum == 0 && s.kiss == "" {
		stratum = 2
	}
	p[0] = s.leap<<6 | 4<<3 | 4 // leap, version 4, mode 4: server
	p[1] = stratum
	p[2] = 6          // poll: 64 s
	p[3] = byte(0xec) // precision: 2^-20 s
	binary.BigEndian.PutUint32(p[4:], short(10*time.Millisecond))
	binary.BigEndian.PutUint32(p[8:], short(s.rootDisp+5*time.Millisecond))
	if s.kiss != "" {
		copy(p[12:16], s.kiss)
	} else {
		copy(p[12:16], []byte{192, 0, 2, 1}) // upstream server's address
	}
	binary.BigEndian.PutUint64(p[16:], stamp(recv.Add(-30*time.Second))) // reference: last synchronised
	copy(p[24:32], req[40:48])                                           // origin: the client's transmit timestamp
	if s.badOrigin {
		p[31] ^= 1
	}
	binary.BigEndian.PutUint64(p[32:], stamp(recv))
	binary.BigEndian.PutUint64(p[40:], stamp(now().Add(s.offset)))
	return p
}

// stamp is t as an NTP timestamp: seconds since 1900 (mod 2^32, so eras
// wrap as on the wire) and a 32-bit fraction.
func stamp(t time.Time) uint64 {
	sec := uint64(t.Unix()+2208988800) & 0xffffffff
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// short is d in NTP's 16.16 short format.
func short(d time.Duration) uint32 { return uint32(d * (1 << 16) / time.Second) }

// since gives a clock that reads t0 when it is made and runs from there.
func since(t0 time.Time) func() time.Time {
	start := time.Now()
	return func() time.Time { return t0.Add(time.Since(start)) }
}
