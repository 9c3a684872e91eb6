//! Classic libpcap files: the writer `pktgen` uses and the reader `bench`
//! scans a file with before EAL starts (net_pcap reads it again itself).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

/// A classic libpcap file writer (microsecond timestamps, Ethernet).
pub struct PcapWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        out.write_all(&h)?;
        Ok(PcapWriter { out, written: 0 })
    }

    /// Appends one frame, stamped one microsecond after the previous one.
    pub fn frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let ts_sec = (self.written / 1_000_000) as u32;
        let ts_usec = (self.written % 1_000_000) as u32;
        let len = frame.len() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ts_sec.to_le_bytes());
        h[4..8].copy_from_slice(&ts_usec.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)?;
        self.written += 1;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Calls `f` with every frame of the classic pcap file at `path` (either
/// byte order, micro- or nanosecond timestamps). Returns the frame count.
pub fn for_each_frame(path: &Path, mut f: impl FnMut(&[u8])) -> Result<u64, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut h = [0u8; 24];
    r.read_exact(&mut h)
        .map_err(|e| format!("{}: no pcap header: {e}", path.display()))?;
    let magic = [h[0], h[1], h[2], h[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(format!("{}: not a classic pcap file", path.display())),
    };
    let u32_at = |b: &[u8], at: usize| {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    if u32_at(&h, 20) != 1 {
        return Err(format!(
            "{}: link type {} is not Ethernet",
            path.display(),
            u32_at(&h, 20)
        ));
    }
    let mut buf = vec![0u8; 65536];
    let mut n = 0u64;
    loop {
        let mut rh = [0u8; 16];
        match r.read_exact(&mut rh) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let len = u32_at(&rh, 8) as usize;
        if len > buf.len() {
            return Err(format!("{}: record {n} of {len} bytes is too long", path.display()));
        }
        r.read_exact(&mut buf[..len])
            .map_err(|e| format!("{}: record {n} truncated: {e}", path.display()))?;
        f(&buf[..len]);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("ss-pcap-{name}-{}.pcap", std::process::id()));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn read_all(path: &Path) -> Result<Vec<Vec<u8>>, String> {
        let mut frames = Vec::new();
        for_each_frame(path, |f| frames.push(f.to_vec())).map(|_| frames)
    }

    #[test]
    fn frames_read_back_as_written() {
        let mut w = PcapWriter::new(Vec::new()).expect("header");
        let frames = [vec![1u8; 60], vec![2u8; 1514], vec![3u8; 14]];
        for f in &frames {
            w.frame(f).expect("frame");
        }
        let bytes = w.finish().expect("finish");
        assert_eq!(bytes.len(), 24 + frames.iter().map(|f| 16 + f.len()).sum::<usize>());
        let path = temp("roundtrip", &bytes);
        let read = read_all(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(read.expect("reads"), frames);
    }

    #[test]
    fn big_endian_files_are_read_and_other_files_refused() {
        // A big-endian, nanosecond file with one 3-byte frame.
        let mut be = Vec::new();
        be.extend_from_slice(&[0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4]);
        be.extend_from_slice(&[0; 8]);
        be.extend_from_slice(&65535u32.to_be_bytes());
        be.extend_from_slice(&1u32.to_be_bytes());
        be.extend_from_slice(&[0; 8]);
        be.extend_from_slice(&3u32.to_be_bytes());
        be.extend_from_slice(&3u32.to_be_bytes());
        be.extend_from_slice(&[7, 8, 9]);
        let path = temp("be", &be);
        assert_eq!(read_all(&path), Ok(vec![vec![7, 8, 9]]));
        // Raw IP (link type 101) is not Ethernet.
        be[20..24].copy_from_slice(&101u32.to_be_bytes());
        std::fs::write(&path, &be).expect("write");
        assert!(read_all(&path).expect_err("refused").contains("not Ethernet"));
        // A truncated record.
        be[20..24].copy_from_slice(&1u32.to_be_bytes());
        be.pop();
        std::fs::write(&path, &be).expect("write");
        assert!(read_all(&path).expect_err("refused").contains("truncated"));
        std::fs::write(&path, b"not a pcap file at all, no").expect("write");
        assert!(read_all(&path).expect_err("refused").contains("not a classic pcap"));
        let _ = std::fs::remove_file(&path);
    }
}
