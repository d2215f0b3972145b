//! ZIP archives written as a stream, in bounded memory: each entry is sent as its local
//! header then its bytes, the central directory at the end; nothing is sought back to.
//! Entries are stored, not compressed (images are compressed already). Names are UTF-8
//! (flag bit 11). ZIP64 records are written where a size or an offset reaches 4 GiB, or the
//! entries pass 65,535, so archives of any size open in every unzip tool.

use easel_core::time::Timestamp;

/// Where the 32-bit fields stop (`0xFFFF_FFFF` means "see the ZIP64 record").
const MAX32: u64 = 0xFFFF_FFFF;
const MAX16: u64 = 0xFFFF;
const UTF8: u16 = 1 << 11;
/// Version 4.5: ZIP64.
const VERSION: u16 = 45;
/// Made by Unix (regular files, mode 0644).
const MADE_BY: u16 = (3 << 8) | VERSION;
const FILE_MODE: u32 = 0o100644 << 16;

struct Central {
    name: Vec<u8>,
    crc: u32,
    size: u64,
    offset: u64,
    time: u16,
    date: u16,
}

/// An archive being written: call [`ZipStream::entry`] for each file (send its header, then
/// the file's bytes), then [`ZipStream::finish`] for the directory.
pub struct ZipStream {
    offset: u64,
    entries: Vec<Central>,
    /// Sizes and offsets at or above this take ZIP64 fields (`MAX32`; tests lower it).
    limit: u64,
}

impl Default for ZipStream {
    fn default() -> Self {
        ZipStream::new()
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// MS-DOS time and date (2-second precision, from 1980).
fn dos_time(t: &Timestamp) -> (u16, u16) {
    use chrono::{Datelike, Timelike};
    if t.year() < 1980 {
        return (0, (1 << 5) | 1);
    }
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    let date =
        (((t.year() - 1980).min(127) as u16) << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    (time, date)
}

impl ZipStream {
    pub fn new() -> ZipStream {
        ZipStream {
            offset: 0,
            entries: Vec::new(),
            limit: MAX32,
        }
    }

    /// The local header of a file named `name` holding `data`; the caller sends it, then
    /// `data` itself.
    pub fn entry(&mut self, name: &str, data: &[u8], modified: &Timestamp) -> Vec<u8> {
        let size = data.len() as u64;
        let crc = crc32fast::hash(data);
        let (time, date) = dos_time(modified);
        let big = size >= self.limit;
        let mut out = Vec::with_capacity(30 + name.len() + 20);
        put32(&mut out, 0x0403_4b50);
        put16(&mut out, VERSION);
        put16(&mut out, UTF8);
        put16(&mut out, 0); // stored
        put16(&mut out, time);
        put16(&mut out, date);
        put32(&mut out, crc);
        let small = if big { MAX32 as u32 } else { size as u32 };
        put32(&mut out, small);
        put32(&mut out, small);
        put16(&mut out, name.len() as u16);
        put16(&mut out, if big { 20 } else { 0 });
        out.extend_from_slice(name.as_bytes());
        if big {
            put16(&mut out, 0x0001);
            put16(&mut out, 16);
            put64(&mut out, size);
            put64(&mut out, size);
        }
        self.entries.push(Central {
            name: name.as_bytes().to_vec(),
            crc,
            size,
            offset: self.offset,
            time,
            date,
        });
        self.offset += out.len() as u64 + size;
        out
    }

    /// The central directory and the end records: the archive's last bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            let mut extra = Vec::new();
            if e.size >= self.limit {
                put64(&mut extra, e.size);
                put64(&mut extra, e.size);
            }
            if e.offset >= self.limit {
                put64(&mut extra, e.offset);
            }
            put32(&mut out, 0x0201_4b50);
            put16(&mut out, MADE_BY);
            put16(&mut out, VERSION);
            put16(&mut out, UTF8);
            put16(&mut out, 0);
            put16(&mut out, e.time);
            put16(&mut out, e.date);
            put32(&mut out, e.crc);
            let size = if e.size >= self.limit {
                MAX32 as u32
            } else {
                e.size as u32
            };
            put32(&mut out, size);
            put32(&mut out, size);
            put16(&mut out, e.name.len() as u16);
            put16(
                &mut out,
                if extra.is_empty() {
                    0
                } else {
                    extra.len() as u16 + 4
                },
            );
            put16(&mut out, 0); // comment
            put16(&mut out, 0); // disk
            put16(&mut out, 0); // internal attributes
            put32(&mut out, FILE_MODE);
            put32(
                &mut out,
                if e.offset >= self.limit {
                    MAX32 as u32
                } else {
                    e.offset as u32
                },
            );
            out.extend_from_slice(&e.name);
            if !extra.is_empty() {
                put16(&mut out, 0x0001);
                put16(&mut out, extra.len() as u16);
                out.extend_from_slice(&extra);
            }
        }
        let (start, size, count) = (self.offset, out.len() as u64, self.entries.len() as u64);
        let zip64 = count >= MAX16.min(self.limit) || start >= self.limit || size >= self.limit;
        if zip64 {
            let record = start + size;
            put32(&mut out, 0x0606_4b50);
            put64(&mut out, 44);
            put16(&mut out, MADE_BY);
            put16(&mut out, VERSION);
            put32(&mut out, 0);
            put32(&mut out, 0);
            put64(&mut out, count);
            put64(&mut out, count);
            put64(&mut out, size);
            put64(&mut out, start);
            put32(&mut out, 0x0706_4b50);
            put32(&mut out, 0);
            put64(&mut out, record);
            put32(&mut out, 1);
        }
        put32(&mut out, 0x0605_4b50);
        put16(&mut out, 0);
        put16(&mut out, 0);
        let n = if zip64 { MAX16 as u16 } else { count as u16 };
        put16(&mut out, n);
        put16(&mut out, n);
        put32(&mut out, if zip64 { MAX32 as u32 } else { size as u32 });
        put32(&mut out, if zip64 { MAX32 as u32 } else { start as u32 });
        put16(&mut out, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn write(mut z: ZipStream, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:20:30Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut out = Vec::new();
        for (name, data) in files {
            out.extend(z.entry(name, data, &t));
            out.extend_from_slice(data);
        }
        out.extend(z.finish());
        out
    }

    fn read(bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid archive");
        (0..a.len())
            .map(|i| {
                let mut f = a.by_index(i).unwrap();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                let t = f.last_modified().unwrap();
                assert_eq!(
                    (
                        t.year(),
                        t.month(),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    ),
                    (2026, 12, 7, 10, 20, 30)
                );
                (f.name().to_string(), data)
            })
            .collect()
    }

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("job_1/a.png", b"first file".to_vec()),
            ("empty.txt", Vec::new()),
            ("réglé/ü.webp", (0..=255u8).cycle().take(5000).collect()),
        ]
    }

    #[test]
    fn archives_read_back() {
        let got = read(write(ZipStream::new(), &files()));
        let want: Vec<(String, Vec<u8>)> = files()
            .into_iter()
            .map(|(n, d)| (n.to_string(), d))
            .collect();
        assert_eq!(got, want);
        let empty = read(write(ZipStream::new(), &[]));
        assert!(empty.is_empty());
    }

    #[test]
    fn zip64_records_read_back() {
        // Every size and offset past a lowered limit: the ZIP64 fields and end records.
        let z = ZipStream {
            limit: 8,
            ..ZipStream::new()
        };
        let bytes = write(z, &files());
        assert!(
            bytes.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]),
            "a ZIP64 end record"
        );
        let got = read(bytes);
        let want: Vec<(String, Vec<u8>)> = files()
            .into_iter()
            .map(|(n, d)| (n.to_string(), d))
            .collect();
        assert_eq!(got, want);
    }
}
