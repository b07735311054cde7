//! Classic libpcap files (the format `tcpdump -w` writes), with `LINKTYPE_RAW`: each record is
//! one IPv4 packet as it crossed a TUN device. No dependency: the format is a 24-byte file
//! header and a 16-byte header per record, in the writer's byte order (little endian here,
//! with the standard magic so readers detect it), microsecond timestamps.

use std::io::{self, Read, Write};

/// `LINKTYPE_RAW`: packets start with their IP header.
pub const LINKTYPE_RAW: u32 = 101;
const MAGIC_US: u32 = 0xa1b2_c3d4;
/// Records keep whole packets up to this many bytes.
pub const SNAPLEN: u32 = 65_535;

/// Writes a pcap stream to `W`.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_US.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    /// Appends one packet seen at `unix_ns` nanoseconds since the epoch.
    pub fn write(&mut self, unix_ns: u64, packet: &[u8]) -> io::Result<()> {
        let caplen = packet.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((unix_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((unix_ns % 1_000_000_000 / 1000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(packet.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&packet[..caplen])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Microseconds since the epoch.
    pub unix_us: u64,
    /// Length on the wire (the record may hold fewer bytes).
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Reads a whole pcap stream written by [`PcapWriter`] (or any little-endian microsecond pcap):
/// its link type and records.
pub fn read_all(mut input: impl Read) -> io::Result<(u32, Vec<Record>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut all = Vec::new();
    input.read_to_end(&mut all)?;
    if all.len() < 24 {
        return Err(bad("pcap: shorter than its header"));
    }
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if u32_at(&all, 0) != MAGIC_US {
        return Err(bad("pcap: not a little-endian microsecond pcap"));
    }
    let linktype = u32_at(&all, 20);
    let mut recs = Vec::new();
    let mut i = 24;
    while i < all.len() {
        if i + 16 > all.len() {
            return Err(bad("pcap: truncated record header"));
        }
        let (sec, usec, caplen, orig) = (
            u32_at(&all, i),
            u32_at(&all, i + 4),
            u32_at(&all, i + 8) as usize,
            u32_at(&all, i + 12),
        );
        i += 16;
        if i + caplen > all.len() {
            return Err(bad("pcap: truncated record"));
        }
        recs.push(Record {
            unix_us: u64::from(sec) * 1_000_000 + u64::from(usec),
            orig_len: orig,
            data: all[i..i + caplen].to_vec(),
        });
        i += caplen;
    }
    Ok((linktype, recs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records_by_hand() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_700_000_000_123_456_789, &[0x45, 0, 0, 20])
            .unwrap();
        let bytes = w.out;
        // 24-byte header: magic d4 c3 b2 a1, version 2.4, zone 0, sigfigs 0, snaplen, type 101.
        assert_eq!(
            &bytes[..24],
            &[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101,
                0, 0, 0
            ]
        );
        // Record: 1700000000 s = 0x6553f100, 123456 µs = 0x1e240, caplen = len = 4.
        assert_eq!(
            &bytes[24..40],
            &[0x00, 0xf1, 0x53, 0x65, 0x40, 0xe2, 0x01, 0, 4, 0, 0, 0, 4, 0, 0, 0]
        );
        let (lt, recs) = read_all(&bytes[..]).unwrap();
        assert_eq!(lt, LINKTYPE_RAW);
        assert_eq!(
            recs,
            vec![Record {
                unix_us: 1_700_000_000_123_456,
                orig_len: 4,
                data: vec![0x45, 0, 0, 20]
            }]
        );
        assert!(read_all(&bytes[..30]).is_err());
    }
}
